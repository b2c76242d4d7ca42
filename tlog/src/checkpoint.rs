//! Checkpoints: the C2SP `tlog-checkpoint` body (origin, tree size, base64 root hash) signed as
//! a C2SP signed note with Ed25519, under a key in Go's `sumdb/note` format
//! (`PRIVATE+KEY+<name>+<id>+<base64(0x01 ‖ seed)>`; its verifier key
//! `<name>+<id>+<base64(0x01 ‖ public key)>`). The key's name is the log's origin.

use crate::tree::Hash;
use signed_note::{Note, Signer, StandardSigner, StandardVerifier, Verifier, VerifierList};

/// Why a checkpoint or a key was refused.
#[derive(Debug, thiserror::Error)]
pub enum CheckpointError {
    #[error("the key is not a signed-note Ed25519 key: {0}")]
    Key(String),
    #[error("the note is not a signed note: {0}")]
    Note(String),
    #[error("no signature of the pinned key verifies")]
    Signature,
    #[error("the note is not a checkpoint")]
    Malformed,
    #[error("the checkpoint's origin `{found}` is not the key's `{expected}`")]
    Origin { expected: String, found: String },
}

/// A log's signing key.
pub struct LogKey {
    signer: StandardSigner,
    verifier_key: String,
}

impl std::fmt::Debug for LogKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The private key is never shown.
        f.debug_struct("LogKey")
            .field("verifier_key", &self.verifier_key)
            .finish_non_exhaustive()
    }
}

impl LogKey {
    /// A new key named `origin`: the key and its private-key line (to be written to a file
    /// only its owner reads).
    pub fn generate(origin: &str) -> Result<(LogKey, String), CheckpointError> {
        if !signed_note::is_key_name_valid(origin) {
            return Err(CheckpointError::Key(format!("`{origin}` is no key name")));
        }
        let (skey, vkey) = signed_note::generate_key(&mut rand::rngs::OsRng, origin);
        let key = LogKey::from_private(&skey)?;
        debug_assert_eq!(key.verifier_key, vkey);
        Ok((key, skey))
    }

    /// The key from its private-key line (`PRIVATE+KEY+…`).
    pub fn from_private(line: &str) -> Result<LogKey, CheckpointError> {
        let line = line.trim();
        let signer = StandardSigner::new(line).map_err(|e| CheckpointError::Key(e.to_string()))?;
        let verifier_key = verifier_key_of(line)?;
        Ok(LogKey {
            signer,
            verifier_key,
        })
    }

    /// The log's origin: the key's name.
    pub fn origin(&self) -> &str {
        self.signer.name()
    }

    /// The verifier key to give auditors (`<name>+<id>+<base64>`).
    pub fn verifier_key(&self) -> &str {
        &self.verifier_key
    }

    /// Signs the checkpoint of a tree: the signed note's text.
    pub fn sign(&self, size: u64, root: Hash) -> Result<String, CheckpointError> {
        let body = tlog_tiles::checkpoint::Checkpoint::new(self.origin(), size, root, "")
            .map_err(|_| CheckpointError::Malformed)?
            .to_bytes();
        let mut note = Note::new(&body, &[]).map_err(|e| CheckpointError::Note(e.to_string()))?;
        note.add_sigs(&[&self.signer])
            .map_err(|e| CheckpointError::Note(e.to_string()))?;
        String::from_utf8(note.to_bytes()).map_err(|_| CheckpointError::Malformed)
    }
}

/// The verifier key of a private-key line: the public key derived from the seed.
fn verifier_key_of(private: &str) -> Result<String, CheckpointError> {
    // PRIVATE+KEY+<name>+<id>+<base64(0x01 ‖ seed)>
    let rest = private
        .strip_prefix("PRIVATE+KEY+")
        .ok_or_else(|| CheckpointError::Key("not a private key line".into()))?;
    let mut parts = rest.splitn(3, '+');
    let (Some(name), Some(_id), Some(key)) = (parts.next(), parts.next(), parts.next()) else {
        return Err(CheckpointError::Key("not name+id+key".into()));
    };
    use base64::Engine;
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(key)
        .map_err(|_| CheckpointError::Key("the key is not base64".into()))?;
    let seed: [u8; 32] = match bytes.split_first() {
        Some((1, seed)) => seed
            .try_into()
            .map_err(|_| CheckpointError::Key("an Ed25519 seed is 32 bytes".into()))?,
        _ => return Err(CheckpointError::Key("not an Ed25519 key".into())),
    };
    let public = ed25519_dalek::SigningKey::from_bytes(&seed).verifying_key();
    Ok(signed_note::new_ed25519_verifier_key(name, &public))
}

/// Checks that `key` is a signed-note Ed25519 verifier key (`<name>+<id>+<base64>`).
pub fn check_verifier_key(key: &str) -> Result<(), CheckpointError> {
    StandardVerifier::new(key.trim())
        .map(|_| ())
        .map_err(|e| CheckpointError::Key(e.to_string()))
}

/// A checkpoint, once its signature verified.
#[derive(Clone, Debug, PartialEq)]
pub struct Checkpoint {
    pub origin: String,
    pub size: u64,
    pub root: Hash,
}

impl Checkpoint {
    /// Opens a signed checkpoint with the one verifier key the caller pins: its signature
    /// must verify, its origin must be the key's name, and its body must be a checkpoint.
    /// Signatures of other keys (witnesses' cosignatures) are ignored.
    pub fn open(note: &str, verifier_key: &str) -> Result<Checkpoint, CheckpointError> {
        let verifier = StandardVerifier::new(verifier_key.trim())
            .map_err(|e| CheckpointError::Key(e.to_string()))?;
        let expected = verifier.name().to_owned();
        let list = VerifierList::new(vec![Box::new(verifier)]);
        let note =
            Note::from_bytes(note.as_bytes()).map_err(|e| CheckpointError::Note(e.to_string()))?;
        note.verify(&list).map_err(|_| CheckpointError::Signature)?;
        let body = tlog_tiles::checkpoint::Checkpoint::from_bytes(note.text())
            .map_err(|_| CheckpointError::Malformed)?;
        if body.origin() != expected {
            return Err(CheckpointError::Origin {
                expected,
                found: body.origin().to_owned(),
            });
        }
        Ok(Checkpoint {
            origin: body.origin().to_owned(),
            size: body.size(),
            root: *body.hash(),
        })
    }
}

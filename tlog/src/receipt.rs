//! Erasure receipts: a `tlog-proof@v1` document whose leaf is the chain hash of the event
//! that erased an account's profile, and whose `extra` is that hash's preimage
//! (`prev_hash ‖ the event's canonical bytes`: a JSON array of position, stream, version,
//! event id, type, schema version, time, actor, correlation id, causation id and the stored
//! data). Verifying one needs the log's verifier key and nothing else.

use crate::checkpoint::{Checkpoint, CheckpointError};
use crate::proof::{FormatError, TlogProof};
use crate::tree::{check_inclusion, leaf_hash, Hash, ProofError};
use sha2::{Digest, Sha256};

/// Why a receipt does not verify.
#[derive(Debug, thiserror::Error)]
pub enum ReceiptError {
    #[error("not a tlog-proof document: {0}")]
    Format(#[from] FormatError),
    #[error("its checkpoint does not verify: {0}")]
    Checkpoint(#[from] CheckpointError),
    #[error("it carries no extra data: the event's preimage is needed")]
    NoExtra,
    #[error("the extra data is not an event's chain-hash preimage: {0}")]
    Preimage(String),
    #[error("the leaf is not in the signed tree: {0}")]
    Inclusion(#[from] ProofError),
}

/// What a verified receipt shows.
#[derive(Clone, Debug, PartialEq)]
pub struct Receipt {
    pub checkpoint: Checkpoint,
    /// The signed checkpoint as it appears in the receipt.
    pub note: String,
    pub index: u64,
    /// The event's chain hash (SHA-256 of the preimage): the leaf's data.
    pub chain_hash: Hash,
    pub position: u64,
    pub stream: String,
    pub event_type: String,
    pub recorded_at: String,
}

/// Verifies a receipt offline with the log's verifier key: the checkpoint's signature and
/// origin, that the preimage hashes to a leaf at `index`, and that the leaf's inclusion path
/// leads to the signed root.
pub fn verify(text: &str, verifier_key: &str) -> Result<Receipt, ReceiptError> {
    let proof = TlogProof::parse(text)?;
    let checkpoint = Checkpoint::open(&proof.checkpoint, verifier_key)?;
    let preimage = proof.extra.as_deref().ok_or(ReceiptError::NoExtra)?;
    let chain_hash = Hash(Sha256::digest(preimage).into());
    if proof.index >= checkpoint.size {
        return Err(ReceiptError::Inclusion(ProofError::Invalid(format!(
            "index {} is outside a tree of {} leaves",
            proof.index, checkpoint.size
        ))));
    }
    check_inclusion(
        &proof.path,
        checkpoint.size,
        checkpoint.root,
        proof.index,
        leaf_hash(&chain_hash.0),
    )?;
    let fields = event_fields(preimage)?;
    let position = fields.0;
    if position != proof.index + 1 {
        return Err(ReceiptError::Preimage(format!(
            "the event's position {position} is not index + 1"
        )));
    }
    Ok(Receipt {
        checkpoint,
        note: proof.checkpoint,
        index: proof.index,
        chain_hash,
        position,
        stream: fields.1,
        event_type: fields.2,
        recorded_at: fields.3,
    })
}

/// Position, stream, type and time from a preimage (32 bytes of `prev_hash`, then the
/// canonical JSON array).
fn event_fields(preimage: &[u8]) -> Result<(u64, String, String, String), ReceiptError> {
    let bad = |why: &str| ReceiptError::Preimage(why.to_owned());
    let json = preimage
        .get(32..)
        .ok_or_else(|| bad("shorter than a previous hash"))?;
    let v: Vec<serde_json::Value> =
        serde_json::from_slice(json).map_err(|_| bad("not a JSON array after the hash"))?;
    let text = |i: usize| v.get(i).and_then(|x| x.as_str()).map(str::to_owned);
    match (
        v.first().and_then(|p| p.as_u64()),
        text(1),
        text(4),
        text(6),
    ) {
        (Some(p), Some(s), Some(t), Some(at)) if v.len() == 11 => Ok((p, s, t, at)),
        _ => Err(bad("not an event envelope")),
    }
}

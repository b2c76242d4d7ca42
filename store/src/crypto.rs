//! Keys and sealing. A master key (32 bytes, `LW_MASTER_KEY`) wraps the data keys; a data key
//! (one per subject and category) seals personal fields. Both use XChaCha20-Poly1305, whose
//! 192-bit random nonces can be drawn freely without a counter.

use base64::Engine;
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use rand::RngCore;
use std::fmt;

const NONCE_LEN: usize = 24;

/// The key that wraps every data key. Its `Debug` prints nothing of it.
#[derive(Clone)]
pub struct MasterKey([u8; 32]);

impl fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("MasterKey(..)")
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum KeyError {
    #[error("the master key must be 32 bytes in base64 (got {0} bytes)")]
    BadLength(usize),
    #[error("the master key is not valid base64")]
    BadBase64,
    #[error("a data key could not be unwrapped: wrong master key or corrupted key row")]
    Unwrap,
}

impl MasterKey {
    pub fn generate() -> Self {
        let mut k = [0u8; 32];
        rand::rngs::OsRng.fill_bytes(&mut k);
        MasterKey(k)
    }

    pub fn from_base64(s: &str) -> Result<Self, KeyError> {
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(s.trim())
            .map_err(|_| KeyError::BadBase64)?;
        let arr: [u8; 32] = bytes
            .as_slice()
            .try_into()
            .map_err(|_| KeyError::BadLength(bytes.len()))?;
        Ok(MasterKey(arr))
    }

    pub fn to_base64(&self) -> String {
        base64::engine::general_purpose::STANDARD.encode(self.0)
    }

    /// A key for another purpose, derived from this one (HMAC-SHA256 of the purpose under the
    /// master key): the same master key always derives the same key, and a derived key
    /// reveals nothing of the master key.
    pub fn derive(&self, purpose: &str) -> [u8; 32] {
        use hmac::Mac;
        let mut mac = <hmac::Hmac<sha2::Sha256> as hmac::Mac>::new_from_slice(&self.0)
            .expect("HMAC takes a key of any length");
        mac.update(purpose.as_bytes());
        mac.finalize().into_bytes().into()
    }

    /// Wraps a data key; `context` (subject, category, key id) is bound as associated data
    /// so that a wrapped key cannot be moved to another row.
    pub fn wrap(&self, key: &DataKey, context: &[u8]) -> Vec<u8> {
        seal_with(&self.0, &key.0, context)
    }

    pub fn unwrap_key(&self, wrapped: &[u8], context: &[u8]) -> Result<DataKey, KeyError> {
        let bytes = open_with(&self.0, wrapped, context).ok_or(KeyError::Unwrap)?;
        let arr: [u8; 32] = bytes.as_slice().try_into().map_err(|_| KeyError::Unwrap)?;
        Ok(DataKey(arr))
    }
}

/// The key of one (subject, category). Dropping every copy and deleting its wrapped row is
/// what erasure means here.
#[derive(Clone)]
pub struct DataKey([u8; 32]);

impl fmt::Debug for DataKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("DataKey(..)")
    }
}

impl DataKey {
    pub fn generate() -> Self {
        let mut k = [0u8; 32];
        rand::rngs::OsRng.fill_bytes(&mut k);
        DataKey(k)
    }

    pub fn seal(&self, plaintext: &[u8], aad: &[u8]) -> Vec<u8> {
        seal_with(&self.0, plaintext, aad)
    }

    pub fn open(&self, sealed: &[u8], aad: &[u8]) -> Option<Vec<u8>> {
        open_with(&self.0, sealed, aad)
    }
}

fn seal_with(key: &[u8; 32], plaintext: &[u8], aad: &[u8]) -> Vec<u8> {
    let cipher = XChaCha20Poly1305::new(key.into());
    let mut nonce = [0u8; NONCE_LEN];
    // The thread's CSPRNG (ChaCha12, reseeded from the OS), not a system call per seal: a
    // page view seals several fields. 192 random bits make a repeated nonce negligible.
    rand::thread_rng().fill_bytes(&mut nonce);
    // Encryption with a valid key and nonce length cannot fail; an empty ciphertext would be
    // refused by `open`, never mistaken for data.
    let ct = cipher
        .encrypt(
            XNonce::from_slice(&nonce),
            Payload {
                msg: plaintext,
                aad,
            },
        )
        .unwrap_or_default();
    let mut out = Vec::with_capacity(NONCE_LEN + ct.len());
    out.extend_from_slice(&nonce);
    out.extend_from_slice(&ct);
    out
}

fn open_with(key: &[u8; 32], sealed: &[u8], aad: &[u8]) -> Option<Vec<u8>> {
    if sealed.len() <= NONCE_LEN {
        return None;
    }
    let (nonce, ct) = sealed.split_at(NONCE_LEN);
    XChaCha20Poly1305::new(key.into())
        .decrypt(XNonce::from_slice(nonce), Payload { msg: ct, aad })
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seal_open_round_trip_and_aad_binds() {
        let k = DataKey::generate();
        let sealed = k.seal(b"hello", b"ctx");
        assert_eq!(k.open(&sealed, b"ctx").as_deref(), Some(&b"hello"[..]));
        assert_eq!(k.open(&sealed, b"other"), None);
        assert_eq!(DataKey::generate().open(&sealed, b"ctx"), None);
    }

    #[test]
    fn wrap_unwrap() {
        let m = MasterKey::generate();
        let k = DataKey::generate();
        let w = m.wrap(&k, b"s|c|id");
        let k2 = m.unwrap_key(&w, b"s|c|id").expect("unwrap");
        assert_eq!(k2.0, k.0);
        assert_eq!(m.unwrap_key(&w, b"x").err(), Some(KeyError::Unwrap));
        assert_eq!(
            MasterKey::generate().unwrap_key(&w, b"s|c|id").err(),
            Some(KeyError::Unwrap)
        );
    }

    #[test]
    fn derived_keys_are_stable_and_apart() {
        let m = MasterKey::generate();
        assert_eq!(m.derive("a"), m.derive("a"));
        assert_ne!(m.derive("a"), m.derive("b"));
        assert_ne!(m.derive("a"), MasterKey::generate().derive("a"));
        assert_ne!(m.derive("a"), m.0);
    }

    #[test]
    fn master_key_parsing() {
        let m = MasterKey::generate();
        assert_eq!(
            MasterKey::from_base64(&m.to_base64()).expect("parse").0,
            m.0
        );
        assert_eq!(
            MasterKey::from_base64("AAAA").err(),
            Some(KeyError::BadLength(3))
        );
        assert_eq!(
            MasterKey::from_base64("***").err(),
            Some(KeyError::BadBase64)
        );
    }
}

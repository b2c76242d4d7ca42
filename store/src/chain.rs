//! The hash chain: `hash = SHA-256(prev_hash ‖ canonical bytes of the stored envelope)`.
//! The canonical bytes are the envelope's fields as a JSON array, with `data` as the exact
//! stored (sealed) text, so erasing a key changes nothing that is hashed.

use crate::StoredEvent;
use serde::Serialize;
use sha2::{Digest, Sha256};

pub type Hash = [u8; 32];

/// The `prev_hash` of position 1.
pub const GENESIS: Hash = [0u8; 32];

/// The bytes the chain hashes for one stored event.
pub fn canonical_bytes(e: &StoredEvent) -> Vec<u8> {
    #[derive(Serialize)]
    struct Canonical<'a>(
        u64,
        &'a str,
        u64,
        String,
        &'a str,
        u32,
        String,
        &'a str,
        String,
        Option<String>,
        &'a str,
    );
    let c = Canonical(
        e.position,
        &e.stream,
        e.version,
        e.event_id.to_string(),
        &e.event_type,
        e.schema_version,
        crate::format_time(e.recorded_at),
        &e.actor,
        e.correlation_id.to_string(),
        e.causation_id.map(|c| c.to_string()),
        &e.data,
    );
    serde_json::to_vec(&c).unwrap_or_default()
}

pub fn chain_hash(prev: &Hash, e: &StoredEvent) -> Hash {
    let mut h = Sha256::new();
    h.update(prev);
    h.update(canonical_bytes(e));
    h.finalize().into()
}

/// What `verify` found.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct VerifyReport {
    pub ok: bool,
    pub events_checked: u64,
    pub head_position: u64,
    #[serde(serialize_with = "hex_ser")]
    pub head_hash: Hash,
    pub first_bad_position: Option<u64>,
    /// Why the first bad position is bad (ids and positions only).
    pub problem: Option<String>,
}

fn hex_ser<S: serde::Serializer>(h: &Hash, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&hex::encode(h))
}

/// Recomputes the chain over events fed in position order.
#[derive(Debug)]
pub struct ChainVerifier {
    expected_position: u64,
    prev: Hash,
    checked: u64,
    bad: Option<(u64, String)>,
}

impl Default for ChainVerifier {
    fn default() -> Self {
        ChainVerifier {
            expected_position: 1,
            prev: GENESIS,
            checked: 0,
            bad: None,
        }
    }
}

impl ChainVerifier {
    /// A verifier that expects the chain to go on from `head` (an import's check).
    pub fn continuing(head: crate::Head) -> Self {
        ChainVerifier {
            expected_position: head.position + 1,
            prev: head.hash,
            checked: 0,
            bad: None,
        }
    }

    /// Checks that `events` continue the chain of a log whose head is `head`: the reason
    /// otherwise (positions and hashes only).
    pub fn check_continues(head: crate::Head, events: &[StoredEvent]) -> Result<(), String> {
        let mut v = ChainVerifier::continuing(head);
        for e in events {
            if !v.feed(e) {
                let (at, why) = v.bad.unwrap_or_default();
                return Err(format!("at position {at}: {why}"));
            }
        }
        Ok(())
    }

    /// Feeds the next stored event; returns false once a problem was found (stop feeding).
    pub fn feed(&mut self, e: &StoredEvent) -> bool {
        if self.bad.is_some() {
            return false;
        }
        self.checked += 1;
        let fail = |me: &mut Self, why: String| {
            me.bad = Some((me.expected_position, why));
            false
        };
        if e.position != self.expected_position {
            let why = format!(
                "position {} is missing (next stored is {})",
                self.expected_position, e.position
            );
            return fail(self, why);
        }
        if e.prev_hash != self.prev {
            return fail(
                self,
                "prev_hash does not match the previous event's hash".into(),
            );
        }
        let h = chain_hash(&self.prev, e);
        if h != e.hash {
            return fail(
                self,
                "stored hash does not match the envelope's content".into(),
            );
        }
        self.prev = h;
        self.expected_position += 1;
        true
    }

    /// Ends the walk against the head row the store keeps.
    pub fn finish(mut self, head_position: u64, head_hash: Hash) -> VerifyReport {
        if self.bad.is_none() {
            let last = self.expected_position - 1;
            if last != head_position {
                self.bad = Some((
                    last.min(head_position) + 1,
                    format!("the head says {head_position}, the log ends at {last}"),
                ));
            } else if head_hash != self.prev {
                self.bad = Some((head_position, "the head hash does not match the log".into()));
            }
        }
        let (first_bad_position, problem) = match self.bad {
            Some((p, why)) => (Some(p), Some(why)),
            None => (None, None),
        };
        VerifyReport {
            ok: first_bad_position.is_none(),
            events_checked: self.checked,
            head_position,
            head_hash,
            first_bad_position,
            problem,
        }
    }
}

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
    let mut out = Vec::with_capacity(e.data.len() + 256);
    write_canonical(e, &mut out);
    out
}

/// A time as the chain hashes it (`format_time`: RFC 3339, microseconds, `Z`), written
/// without an allocation.
struct CanonicalTime(chrono::DateTime<chrono::Utc>);

impl Serialize for CanonicalTime {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use chrono::{Datelike, Timelike};
        let t = self.0;
        let year = t.year();
        if !(0..=9999).contains(&year) {
            // Beyond four digits chrono writes a sign: its own formatting, rarely.
            return s.serialize_str(&crate::format_time(t));
        }
        // YYYY-MM-DDTHH:MM:SS.ffffffZ
        let mut b = *b"0000-00-00T00:00:00.000000Z";
        let mut put = |at: usize, width: usize, mut v: u32| {
            for i in (0..width).rev() {
                b[at + i] = b'0' + (v % 10) as u8;
                v /= 10;
            }
        };
        put(0, 4, year as u32);
        put(5, 2, t.month());
        put(8, 2, t.day());
        put(11, 2, t.hour());
        put(14, 2, t.minute());
        // A leap second's nanoseconds run past 10^9: chrono writes it as second 60.
        let nanos = t.nanosecond();
        let (second, micros) = if nanos >= 1_000_000_000 {
            (t.second() + 1, (nanos - 1_000_000_000) / 1000)
        } else {
            (t.second(), nanos / 1000)
        };
        put(17, 2, second);
        put(20, 6, micros);
        s.serialize_str(std::str::from_utf8(&b).unwrap_or_default())
    }
}

/// Appends the bytes the chain hashes for one stored event to `out`: the envelope's fields
/// as a compact JSON array, `data` as the exact stored text (a JSON string). Written straight
/// into the buffer — ids and the time from the stack, no copy of a field.
pub fn write_canonical(e: &StoredEvent, out: &mut Vec<u8>) {
    #[derive(Serialize)]
    struct Canonical<'a>(
        u64,
        &'a str,
        u64,
        uuid::Uuid,
        &'a str,
        u32,
        CanonicalTime,
        &'a str,
        uuid::Uuid,
        Option<uuid::Uuid>,
        &'a str,
    );
    let c = Canonical(
        e.position,
        &e.stream,
        e.version,
        e.event_id,
        &e.event_type,
        e.schema_version,
        CanonicalTime(e.recorded_at),
        &e.actor,
        e.correlation_id,
        e.causation_id,
        &e.data,
    );
    // Writing to a Vec cannot fail, nor can these fields' serialization.
    let _ = serde_json::to_writer(out, &c);
}

pub fn chain_hash(prev: &Hash, e: &StoredEvent) -> Hash {
    let mut buf = Vec::with_capacity(e.data.len() + 256);
    chain_hash_with(prev, e, &mut buf)
}

/// [`chain_hash`] with a buffer the caller keeps from one event to the next.
pub fn chain_hash_with(prev: &Hash, e: &StoredEvent, buf: &mut Vec<u8>) -> Hash {
    buf.clear();
    write_canonical(e, buf);
    let mut h = Sha256::new();
    h.update(prev);
    h.update(&buf[..]);
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
    /// The canonical bytes of the event being hashed, kept from one event to the next.
    buf: Vec<u8>,
}

impl Default for ChainVerifier {
    fn default() -> Self {
        ChainVerifier {
            expected_position: 1,
            prev: GENESIS,
            checked: 0,
            bad: None,
            buf: Vec::new(),
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
            buf: Vec::new(),
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
        let h = chain_hash_with(&self.prev, e, &mut self.buf);
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

    /// Feeds events in order; false once a problem was found.
    pub fn feed_all(&mut self, events: &[StoredEvent]) -> bool {
        events.iter().all(|e| self.feed(e))
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

/// Recomputes the chain of `store`'s log from position 1 and compares it with the head,
/// calling `progress` with the number of events of each page checked. The next page is read
/// while the current one is hashed on a blocking thread, so that reading and decoding
/// overlap with hashing; memory stays at two pages.
pub async fn verify_log<S: crate::EventStore + ?Sized>(
    store: &S,
    mut progress: impl FnMut(u64) + Send,
) -> Result<VerifyReport, crate::StoreError> {
    let head = store.head().await?;
    let mut verifier = ChainVerifier::default();
    let mut batch = store.read_all_raw(0, crate::LOG_PAGE).await?;
    while let Some(last) = batch.last() {
        let after = last.position;
        let n = batch.len() as u64;
        let hashing = tokio::task::spawn_blocking(move || {
            let ok = verifier.feed_all(&batch);
            (verifier, ok)
        });
        let (next, hashed) = tokio::join!(store.read_all_raw(after, crate::LOG_PAGE), hashing);
        let (v, ok) = hashed
            .map_err(|e| crate::StoreError::Unavailable(format!("verification stopped: {e}")))?;
        verifier = v;
        progress(n);
        if !ok {
            break;
        }
        batch = next?;
    }
    Ok(verifier.finish(head.position, head.hash))
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{TimeZone, Utc};

    /// The canonical form as first defined: serde's JSON of the envelope with every field
    /// turned to a string first. The written form must match it byte for byte, or every
    /// stored hash breaks.
    fn reference(e: &StoredEvent) -> Vec<u8> {
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
        serde_json::to_vec(&Canonical(
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
        ))
        .expect("json")
    }

    fn event(data: &str, at: chrono::DateTime<Utc>, caused: bool) -> StoredEvent {
        StoredEvent {
            position: 18_446_744_073_709_551_615,
            stream: "account-ü\"\\/\u{1}".into(),
            version: 0,
            event_id: uuid::Uuid::now_v7(),
            event_type: "WidgetViewed".into(),
            schema_version: u32::MAX,
            recorded_at: at,
            actor: "owner:\u{7f}\u{2028}😀".into(),
            correlation_id: uuid::Uuid::new_v4(),
            causation_id: caused.then(uuid::Uuid::new_v4),
            data: data.into(),
            prev_hash: GENESIS,
            hash: GENESIS,
        }
    }

    #[test]
    fn the_written_form_is_the_canonical_form_byte_for_byte() {
        let times = [
            Utc.with_ymd_and_hms(2026, 12, 7, 9, 5, 3)
                .single()
                .expect("t"),
            Utc.timestamp_opt(0, 0).single().expect("epoch"),
            Utc.timestamp_opt(1_765_000_000, 123_456_000)
                .single()
                .expect("t"),
            Utc.timestamp_opt(1_765_000_000, 999_999_000)
                .single()
                .expect("t"),
            Utc.with_ymd_and_hms(1, 1, 1, 0, 0, 0)
                .single()
                .expect("year 1"),
            Utc.with_ymd_and_hms(9999, 12, 31, 23, 59, 59)
                .single()
                .expect("9999"),
            Utc.with_ymd_and_hms(10000, 1, 1, 0, 0, 0)
                .single()
                .expect("10000"),
            Utc.with_ymd_and_hms(-5, 1, 1, 0, 0, 0)
                .single()
                .expect("before 0"),
            // A leap second, as chrono represents one.
            chrono::NaiveDate::from_ymd_opt(2016, 12, 31)
                .and_then(|d| d.and_hms_micro_opt(23, 59, 59, 1_500_000))
                .expect("leap")
                .and_utc(),
        ];
        let datas = [
            r#"{"v":1,"s":"quote \" backslash \\ tab \t nl \n"}"#,
            "",
            "\u{0}\u{1f}\u{7f}\u{80}\u{ffff}\u{10ffff} é 漢 😀 \u{2028}",
            r#"{"sealed":{"c":"AQID","k":"4a6f2b1e-5a5e-4c8e-9a0e-1d2c3b4a5f60"}}"#,
        ];
        let mut n = 0;
        for at in times {
            for data in datas {
                for caused in [false, true] {
                    let e = event(data, at, caused);
                    assert_eq!(
                        String::from_utf8_lossy(&canonical_bytes(&e)),
                        String::from_utf8_lossy(&reference(&e)),
                        "{at:?}"
                    );
                    n += 1;
                }
            }
        }
        assert_eq!(n, times.len() * datas.len() * 2);
    }
}

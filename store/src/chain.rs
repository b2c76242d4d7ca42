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
#[derive(Clone, Copy, Debug)]
pub struct CanonicalTime(pub chrono::DateTime<chrono::Utc>);

impl CanonicalValue for CanonicalTime {
    fn write_value(&self, out: &mut Vec<u8>) {
        use chrono::{Datelike, Timelike};
        let t = self.0;
        let year = t.year();
        if !(0..=9999).contains(&year) {
            // Beyond four digits chrono writes a sign: its own formatting, rarely.
            return write_json_str(out, &crate::format_time(t));
        }
        // "YYYY-MM-DDTHH:MM:SS.ffffffZ"
        let mut b = *b"\"0000-00-00T00:00:00.000000Z\"";
        let mut put = |at: usize, width: usize, mut v: u32| {
            for i in (0..width).rev() {
                b[1 + at + i] = b'0' + (v % 10) as u8;
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
        out.extend_from_slice(&b);
    }
}

/// Appends the bytes the chain hashes for one stored event to `out`: the envelope's fields
/// as a compact JSON array, `data` as the exact stored text (a JSON string). Written straight
/// into the buffer — ids and the time from the stack, no copy of a field.
pub fn write_canonical(e: &StoredEvent, out: &mut Vec<u8>) {
    write_canonical_fields(
        &TypedFields {
            position: e.position,
            stream: &e.stream,
            version: e.version,
            event_id: e.event_id,
            event_type: &e.event_type,
            schema_version: e.schema_version,
            recorded_at: CanonicalTime(e.recorded_at),
            actor: &e.actor,
            correlation_id: e.correlation_id,
            causation_id: e.causation_id,
            data: &e.data,
        },
        out,
    )
}

/// The envelope's fields borrowed from where a store read them: ids of type `Id` and the time
/// of type `Time`, each written as the chain hashes it.
#[derive(Clone, Copy, Debug)]
pub struct Fields<'a, Id, Time> {
    pub position: u64,
    pub stream: &'a str,
    pub version: u64,
    pub event_id: Id,
    pub event_type: &'a str,
    pub schema_version: u32,
    pub recorded_at: Time,
    pub actor: &'a str,
    pub correlation_id: Id,
    pub causation_id: Option<Id>,
    pub data: &'a str,
}

/// Fields as a store keeps them in text (ids hyphenated, the time as `format_time` writes
/// it): written as they are, without parsing them.
pub type StoredFields<'a> = Fields<'a, &'a str, &'a str>;

/// Fields with ids and the time decoded (PostgreSQL's binary columns, or a [`StoredEvent`]).
pub type TypedFields<'a> = Fields<'a, uuid::Uuid, CanonicalTime>;

/// Appends the canonical bytes of one event's fields to `out`, no field copied. For
/// [`StoredFields`]: the same bytes as [`write_canonical`] for fields stored as it formats
/// them, and other bytes (so another hash) for fields that are not.
pub fn write_canonical_fields<Id: CanonicalValue + Copy, Time: CanonicalValue + Copy>(
    f: &Fields<'_, Id, Time>,
    out: &mut Vec<u8>,
) {
    // A JSON array, written as serde_json writes it (the test below holds the two equal
    // byte for byte).
    out.push(b'[');
    value(out, &f.position);
    out.push(b',');
    write_json_str(out, f.stream);
    out.push(b',');
    value(out, &f.version);
    out.push(b',');
    f.event_id.write_value(out);
    out.push(b',');
    write_json_str(out, f.event_type);
    out.push(b',');
    value(out, &f.schema_version);
    out.push(b',');
    f.recorded_at.write_value(out);
    out.push(b',');
    write_json_str(out, f.actor);
    out.push(b',');
    f.correlation_id.write_value(out);
    out.push(b',');
    f.causation_id.write_value(out);
    out.push(b',');
    write_json_str(out, f.data);
    out.push(b']');
}

/// `s` as a JSON string, byte for byte as serde_json writes it. Most of what is hashed is
/// the sealed payload, JSON text with a quote every few bytes: serde_json's escaping, a byte
/// at a time, was the largest cost of verification after SHA-256 itself (issue 28). Here the
/// quotes and backslashes are found with `memchr` and the runs between them copied whole;
/// a string with a control character (never in what this system writes) goes to serde_json.
fn write_json_str(out: &mut Vec<u8>, s: &str) {
    let bytes = s.as_bytes();
    // A fold, not `any`: without an early exit it compiles to a vector loop.
    if bytes.iter().fold(false, |seen, &b| seen | (b < 0x20)) {
        let _ = serde_json::to_writer(out, s);
        return;
    }
    out.reserve(bytes.len() + 2);
    out.push(b'"');
    let mut run = 0;
    for at in memchr::memchr2_iter(b'"', b'\\', bytes) {
        out.extend_from_slice(&bytes[run..at]);
        out.push(b'\\');
        // The quote or backslash itself starts the next run.
        run = at;
    }
    out.extend_from_slice(&bytes[run..]);
    out.push(b'"');
}

/// A number, written by serde_json.
fn value<T: Serialize>(out: &mut Vec<u8>, v: &T) {
    // Writing to a Vec cannot fail, nor can a number's serialization.
    let _ = serde_json::to_writer(out, v);
}

/// An id or a time of the canonical form, written as a JSON value (a string, or `null`)
/// the way serde_json writes it, without going through its escaping.
pub trait CanonicalValue {
    fn write_value(&self, out: &mut Vec<u8>);
}

/// As stored in text: written as it is, escaped.
impl CanonicalValue for &str {
    fn write_value(&self, out: &mut Vec<u8>) {
        write_json_str(out, self)
    }
}

/// Hyphenated, lower case: `Uuid`'s own serialization.
impl CanonicalValue for uuid::Uuid {
    fn write_value(&self, out: &mut Vec<u8>) {
        let mut buf = uuid::Uuid::encode_buffer();
        out.push(b'"');
        out.extend_from_slice(self.hyphenated().encode_lower(&mut buf).as_bytes());
        out.push(b'"');
    }
}

impl<T: CanonicalValue> CanonicalValue for Option<T> {
    fn write_value(&self, out: &mut Vec<u8>) {
        match self {
            Some(v) => v.write_value(out),
            None => out.extend_from_slice(b"null"),
        }
    }
}

/// One event of a [`CanonicalPage`]: its position, its stored hashes, and where its
/// canonical bytes end in the page's buffer (they start where the previous one's end).
#[derive(Clone, Copy, Debug)]
pub struct CanonicalEvent {
    pub position: u64,
    pub prev_hash: Hash,
    pub hash: Hash,
    pub end: usize,
}

/// About the canonical size of an event of this system, sealed payload included (the scale
/// benchmark's log averages about 810 bytes).
const TYPICAL_CANONICAL_BYTES: usize = 1024;

/// A page of the chain's input as a store reads it: what verification hashes, written once
/// into one buffer.
#[derive(Debug, Default)]
pub struct CanonicalPage {
    pub events: Vec<CanonicalEvent>,
    pub bytes: Vec<u8>,
}

impl CanonicalPage {
    /// The page of these stored events.
    pub fn of(events: &[StoredEvent]) -> Self {
        let mut page = CanonicalPage {
            events: Vec::with_capacity(events.len()),
            bytes: Vec::with_capacity(events.iter().map(|e| e.data.len() + 256).sum()),
        };
        for e in events {
            write_canonical(e, &mut page.bytes);
            page.push(e.position, e.prev_hash, e.hash);
        }
        page
    }

    /// An empty page with room for `events` events (at most a [`crate::LOG_PAGE`]) of a
    /// typical size, so that filling it rarely copies what it holds.
    pub fn with_capacity(events: usize) -> Self {
        let events = events.min(crate::LOG_PAGE);
        CanonicalPage {
            events: Vec::with_capacity(events),
            bytes: Vec::with_capacity(events * TYPICAL_CANONICAL_BYTES),
        }
    }

    /// Records an event whose canonical bytes were just written to `bytes`.
    pub fn push(&mut self, position: u64, prev_hash: Hash, hash: Hash) {
        self.events.push(CanonicalEvent {
            position,
            prev_hash,
            hash,
            end: self.bytes.len(),
        });
    }
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
        let mut buf = std::mem::take(&mut self.buf);
        buf.clear();
        write_canonical(e, &mut buf);
        let ok = self.check(e.position, &e.prev_hash, &e.hash, &buf);
        self.buf = buf;
        ok
    }

    /// Feeds a page of the chain's input in order; false once a problem was found.
    pub fn feed_page(&mut self, page: &CanonicalPage) -> bool {
        let mut start = 0;
        for e in &page.events {
            let bytes = page.bytes.get(start..e.end).unwrap_or_default();
            if !self.check(e.position, &e.prev_hash, &e.hash, bytes) {
                return false;
            }
            start = e.end;
        }
        true
    }

    /// Checks the next event: its position, its link to the previous hash, and its hash over
    /// `canonical` (its canonical bytes).
    fn check(&mut self, position: u64, prev_hash: &Hash, hash: &Hash, canonical: &[u8]) -> bool {
        if self.bad.is_some() {
            return false;
        }
        self.checked += 1;
        let fail = |me: &mut Self, why: String| {
            me.bad = Some((me.expected_position, why));
            false
        };
        if position != self.expected_position {
            let why = format!(
                "position {} is missing (next stored is {position})",
                self.expected_position
            );
            return fail(self, why);
        }
        if *prev_hash != self.prev {
            return fail(
                self,
                "prev_hash does not match the previous event's hash".into(),
            );
        }
        let mut h = Sha256::new();
        h.update(self.prev);
        h.update(canonical);
        let h: Hash = h.finalize().into();
        if h != *hash {
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

/// Pages read at once while one is hashed: two readers and the hasher keep a 2-core machine
/// busy.
const READS_AHEAD: usize = 3;

/// Recomputes the chain of `store`'s log from position 1 and compares it with the head,
/// calling `progress` with the number of events of each page checked. The next pages are
/// read ([`READS_AHEAD`] at once, as canonical bytes: [`crate::EventStore::read_canonical`])
/// while the current one is hashed on a blocking thread, so that reading overlaps with
/// hashing; memory stays at a few pages (as many read as wait to be hashed, and one hashed).
pub async fn verify_log<S: crate::EventStore + ?Sized>(
    store: &S,
    mut progress: impl FnMut(u64) + Send,
) -> Result<VerifyReport, crate::StoreError> {
    let head = store.head().await?;
    // Pages by position: a sound log holds every position, so page `i` starts after
    // `i * LOG_PAGE`. A gap makes a page overlap the next, and the verifier stops at the
    // gap's first missing position before that matters.
    let page = crate::LOG_PAGE as u64;
    // The reader and the hasher run side by side, pages passing from one to the other:
    // reading goes on while a page is hashed, and the next reads start as soon as one ends.
    let (pass, mut passed) = tokio::sync::mpsc::channel(READS_AHEAD);
    let reading = async move {
        use futures::StreamExt;
        let mut pages = futures::stream::iter(0u64..)
            .map(|i| store.read_canonical(i * page, crate::LOG_PAGE))
            .buffered(READS_AHEAD);
        while let Some(read) = pages.next().await {
            let current = read?;
            // At the end of the log, or the hasher has stopped.
            if current.events.is_empty() || pass.send(current).await.is_err() {
                break;
            }
        }
        Ok::<(), crate::StoreError>(())
    };
    let hashing = async move {
        let mut verifier = ChainVerifier::default();
        while let Some(current) = passed.recv().await {
            let n = current.events.len() as u64;
            let (v, ok) = tokio::task::spawn_blocking(move || {
                let ok = verifier.feed_page(&current);
                (verifier, ok)
            })
            .await
            .map_err(|e| crate::StoreError::Unavailable(format!("verification stopped: {e}")))?;
            verifier = v;
            progress(n);
            if !ok {
                break;
            }
        }
        Ok::<ChainVerifier, crate::StoreError>(verifier)
    };
    let (read, hashed) = tokio::join!(reading, hashing);
    let verifier = hashed?;
    // A break in the chain found before a read failed is the answer; else the failure is.
    if verifier.bad.is_none() {
        read?;
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

    /// Every ASCII character, alone, between others, doubled and at either end, and
    /// strings of quotes, backslashes and text beyond ASCII: as serde_json writes them.
    #[test]
    fn strings_are_written_as_serde_json_writes_them() {
        let mut cases: Vec<String> = vec![
            String::new(),
            "\"".into(),
            "\\".into(),
            "\"\"\\\\\"".into(),
            r#"{"$personal":{"sealed":"AQID+/==","key_id":"k"}}"#.into(),
            "é 漢 😀 \u{2028} \u{7f} \u{80}".into(),
            "x".repeat(1000) + "\"" + &"\\".repeat(3),
        ];
        // A quote or backslash at every place of an eight-byte word, and after it.
        for n in 0..20 {
            cases.push("x".repeat(n) + "\"" + &"y".repeat(20 - n));
            cases.push("\\".repeat(n) + &"z".repeat(n % 9));
        }
        for c in (0u8..0x80).map(char::from) {
            cases.push(c.to_string());
            cases.push(format!("ab{c}cd"));
            cases.push(format!("{c}{c}xyz{c}"));
        }
        for s in cases {
            let mut ours = b"prefix".to_vec();
            write_json_str(&mut ours, &s);
            let theirs = [b"prefix".to_vec(), serde_json::to_vec(&s).expect("json")].concat();
            assert_eq!(
                String::from_utf8_lossy(&ours),
                String::from_utf8_lossy(&theirs),
                "{s:?}"
            );
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

    /// Fields held as text, as the embedded store keeps them, write the same bytes; a field
    /// stored otherwise than it was hashed (an id in capitals) writes other bytes.
    #[test]
    fn fields_as_stored_write_the_canonical_form() {
        let at = Utc
            .timestamp_opt(1_765_000_000, 123_456_000)
            .single()
            .expect("t");
        for caused in [false, true] {
            let e = event(r#"{"a":"\"q\"\n"}"#, at, caused);
            let (id, correlation, time) = (
                e.event_id.to_string(),
                e.correlation_id.to_string(),
                crate::format_time(e.recorded_at),
            );
            let causation = e.causation_id.map(|c| c.to_string());
            let mut fields = StoredFields {
                position: e.position,
                stream: &e.stream,
                version: e.version,
                event_id: &id,
                event_type: &e.event_type,
                schema_version: e.schema_version,
                recorded_at: &time,
                actor: &e.actor,
                correlation_id: &correlation,
                causation_id: causation.as_deref(),
                data: &e.data,
            };
            let mut written = Vec::new();
            write_canonical_fields(&fields, &mut written);
            assert_eq!(written, reference(&e));
            let upper = id.to_uppercase();
            fields.event_id = &upper;
            let mut other = Vec::new();
            write_canonical_fields(&fields, &mut other);
            assert_ne!(other, written);
        }
    }
}

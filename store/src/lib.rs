//! The persistence ports of the LightWidget ledger and their adapters.
//!
//! * [`EventStore`]: the append-only, hash-chained log. Appends go through one writer per
//!   process that groups concurrent requests into one transaction; across processes each
//!   transaction locks the log head row first, so positions are gap-free and in commit order.
//! * [`KeyStore`]: the data keys, one per (subject, category), wrapped by the master key.
//!   Shredding a key erases every personal field it sealed.
//!
//! Adapters: [`postgres::PgEventStore`] (tokio-postgres + deadpool) and
//! [`embedded::SqliteEventStore`] (rusqlite, WAL, `secure_delete`). Both run the same writer
//! logic ([`writer`]) and pass the same conformance suite (`tests/conformance.rs`).

pub mod chain;
pub mod clock;
pub mod crypto;
pub mod embedded;
mod error;
pub mod metered;
pub mod postgres;
pub mod sealing;
pub mod tree;
pub mod views;
mod writer;

pub use chain::{Hash, VerifyReport};
pub use clock::{Clock, ManualClock, SystemClock};
pub use crypto::{DataKey, MasterKey};
pub use error::StoreError;
pub use sealing::KeyRef;
pub use views::{DocChange, Lease, ViewDoc, ViewQuery, ViewStore};

use async_trait::async_trait;
use chrono::{DateTime, SecondsFormat, SubsecRound, Utc};
use lightwidget_domain::{Category, DomainEvent, EventDecodeError, Subject};
use serde::Serialize;
use std::collections::{HashMap, HashSet};
use std::fmt;
use std::time::Duration;
use uuid::Uuid;

/// How many events of one stream a whole-stream read takes at a time.
pub const STREAM_PAGE: usize = 1000;
/// How many events a scan of the whole log (verify, a time's position) reads at a time.
pub const LOG_PAGE: usize = 1000;
/// At most this many events in one append.
pub const MAX_EVENTS_PER_APPEND: usize = 1000;
/// At most this many bytes of sealed data in one event.
pub const MAX_EVENT_DATA_BYTES: usize = 1024 * 1024;

/// What the appender believes a stream's version to be.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub enum ExpectedVersion {
    /// No check.
    Any,
    /// The stream must not exist yet.
    NoStream,
    /// The stream's last event must have this version (0 = no stream).
    Exact(u64),
}

impl fmt::Display for ExpectedVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ExpectedVersion::Any => f.write_str("any"),
            ExpectedVersion::NoStream => f.write_str("no stream"),
            ExpectedVersion::Exact(v) => write!(f, "{v}"),
        }
    }
}

impl ExpectedVersion {
    pub fn admits(&self, actual: u64) -> bool {
        match self {
            ExpectedVersion::Any => true,
            ExpectedVersion::NoStream => actual == 0,
            ExpectedVersion::Exact(v) => *v == actual,
        }
    }
}

/// Who and why, carried into every envelope of an append.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Metadata {
    pub actor: String,
    pub correlation_id: Uuid,
    pub causation_id: Option<Uuid>,
}

/// The actor of what nobody signed in did: a page view, a click, a comment, a ticket.
pub const ANONYMOUS_ACTOR: &str = "anonymous";

impl Metadata {
    pub fn system() -> Self {
        Metadata {
            actor: "system".into(),
            correlation_id: Uuid::new_v4(),
            causation_id: None,
        }
    }

    /// The envelope of what nobody signed in did ([`ANONYMOUS_ACTOR`]), with a correlation
    /// id of its own.
    pub fn anonymous() -> Self {
        Metadata {
            actor: ANONYMOUS_ACTOR.into(),
            ..Metadata::system()
        }
    }
}

/// An event to append. `data` is the plaintext payload; personal fields in it are sealed by
/// the store before anything is written.
#[derive(Clone, Debug, PartialEq)]
pub struct NewEvent {
    pub event_id: Uuid,
    pub event_type: String,
    pub schema_version: u32,
    pub data: serde_json::Value,
    pub actor: String,
    pub correlation_id: Uuid,
    pub causation_id: Option<Uuid>,
}

impl NewEvent {
    pub fn from_domain(event: &DomainEvent, meta: &Metadata) -> Self {
        NewEvent {
            // Time-ordered (v7): the `event_id` index takes each new id at its right edge
            // instead of at a random page (the time is in the event's `recorded_at` anyway).
            event_id: Uuid::now_v7(),
            event_type: event.event_type().to_owned(),
            schema_version: event.schema_version(),
            data: event.to_data(),
            actor: meta.actor.clone(),
            correlation_id: meta.correlation_id,
            causation_id: meta.causation_id,
        }
    }

    /// The same event with a caller-chosen id (its idempotency key).
    pub fn with_id(mut self, event_id: Uuid) -> Self {
        self.event_id = event_id;
        self
    }
}

/// Events for one stream, with the version the appender expects. A write with no events
/// (and an expected version other than `Any`) appends nothing to its stream but makes the
/// whole append depend on that stream's version: a fence against a concurrent change.
#[derive(Clone, Debug, PartialEq)]
pub struct StreamWrite {
    pub stream: String,
    pub expected: ExpectedVersion,
    pub events: Vec<NewEvent>,
}

impl StreamWrite {
    /// A fence: nothing written, the append refused unless `stream` is at `version`.
    pub fn fence(stream: impl Into<String>, version: u64) -> Self {
        StreamWrite {
            stream: stream.into(),
            expected: ExpectedVersion::Exact(version),
            events: vec![],
        }
    }

    /// The write of domain events to `stream`, each with the caller's metadata.
    pub fn of(
        stream: impl Into<String>,
        expected: ExpectedVersion,
        events: &[DomainEvent],
        meta: &Metadata,
    ) -> Self {
        StreamWrite {
            stream: stream.into(),
            expected,
            events: events
                .iter()
                .map(|e| NewEvent::from_domain(e, meta))
                .collect(),
        }
    }
}

/// One atomic append: writes to one or more streams and, in the same transaction, data keys
/// to shred.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct AppendRequest {
    pub writes: Vec<StreamWrite>,
    pub shred: Vec<KeyRef>,
}

impl AppendRequest {
    pub fn single(
        stream: impl Into<String>,
        expected: ExpectedVersion,
        events: Vec<NewEvent>,
    ) -> Self {
        AppendRequest {
            writes: vec![StreamWrite {
                stream: stream.into(),
                expected,
                events,
            }],
            shred: vec![],
        }
    }

    pub fn event_count(&self) -> usize {
        self.writes.iter().map(|w| w.events.len()).sum()
    }
}

/// Where an append landed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AppendResult {
    pub first_position: u64,
    pub last_position: u64,
    /// Each written stream's version after the append, in the order of the writes.
    pub versions: Vec<(String, u64)>,
    /// True when every event id was already stored: nothing new was written.
    pub duplicate: bool,
}

/// An event exactly as stored: `data` is the sealed JSON text the chain hashes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredEvent {
    pub position: u64,
    pub stream: String,
    pub version: u64,
    pub event_id: Uuid,
    pub event_type: String,
    pub schema_version: u32,
    pub recorded_at: DateTime<Utc>,
    pub actor: String,
    pub correlation_id: Uuid,
    pub causation_id: Option<Uuid>,
    pub data: String,
    pub prev_hash: Hash,
    pub hash: Hash,
}

/// A checkpoint of the log's tree as the server signed it: the C2SP signed note, with its
/// size and root for look-ups.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SignedCheckpoint {
    pub size: u64,
    pub root: Hash,
    pub note: String,
    pub signed_at: DateTime<Utc>,
}

/// An event as readers see it: personal fields opened, or marked erased.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct RecordedEvent {
    pub position: u64,
    pub stream: String,
    pub version: u64,
    pub event_id: Uuid,
    #[serde(rename = "type")]
    pub event_type: String,
    pub schema_version: u32,
    pub recorded_at: DateTime<Utc>,
    pub actor: String,
    pub correlation_id: Uuid,
    pub causation_id: Option<Uuid>,
    pub data: serde_json::Value,
    #[serde(serialize_with = "hex_ser")]
    pub prev_hash: Hash,
    #[serde(serialize_with = "hex_ser")]
    pub hash: Hash,
}

fn hex_ser<S: serde::Serializer>(h: &Hash, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&hex::encode(h))
}

impl RecordedEvent {
    pub fn to_domain(&self) -> Result<DomainEvent, EventDecodeError> {
        lightwidget_schemas::upcast_and_decode(
            &self.event_type,
            self.schema_version,
            self.data.clone(),
        )
    }
}

/// The log's head: the last position and its hash (position 0 and zeros for an empty log).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Head {
    pub position: u64,
    pub hash: Hash,
}

/// How far a read of some types after `after` scanned: to its last event when it returned
/// `limit` (more may follow), else to `head` (read before it), past every other event.
pub fn scanned_to(returned: &[StoredEvent], limit: usize, head: u64, after: u64) -> u64 {
    match returned.last() {
        Some(last) if returned.len() >= limit => last.position,
        _ => head.max(after),
    }
}

/// The canonical text of a stored time: RFC 3339, UTC, microseconds.
pub fn format_time(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Micros, true)
}

/// Times are stored with microsecond precision (PostgreSQL's); the store rounds once, at
/// append, so that what is hashed is what is read back.
pub fn store_time(t: DateTime<Utc>) -> DateTime<Utc> {
    t.trunc_subsecs(6)
}

/// A stream name: 1–200 printable ASCII characters without white space.
pub fn validate_stream(name: &str) -> Result<(), StoreError> {
    if name.is_empty() || name.len() > 200 || !name.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(StoreError::InvalidStream(
            "a stream name is 1 to 200 printable ASCII characters without spaces".into(),
        ));
    }
    Ok(())
}

/// The data keys. Every adapter implements it beside its [`EventStore`].
#[async_trait]
pub trait KeyStore: Send + Sync {
    /// The unwrapped keys among `ids` that still exist.
    async fn data_keys(&self, ids: &[Uuid]) -> Result<HashMap<Uuid, DataKey>, StoreError>;
    /// Deletes the keys of these (subject, category) pairs: every field they sealed now reads
    /// as erased. Prefer [`AppendRequest::shred`], which records the erasure in the same
    /// transaction.
    async fn shred(&self, refs: &[KeyRef]) -> Result<(), StoreError>;
    /// Whether a key exists for this (subject, category).
    async fn has_key(&self, subject: &Subject, category: Category) -> Result<bool, StoreError>;
    /// Archives the keys of these (subject, category) pairs under a legal hold (R21): from
    /// then on [`KeyStore::data_keys`] no longer returns them, so every ordinary reader sees
    /// their fields as erased; only [`KeyStore::archived_keys`] does. Archiving twice is
    /// archiving once; a key that does not exist is left alone. Shredding works as before.
    async fn archive(&self, refs: &[KeyRef]) -> Result<(), StoreError>;
    /// The unwrapped archived keys among `ids`: for the compliance read of a hold's data.
    async fn archived_keys(&self, ids: &[Uuid]) -> Result<HashMap<Uuid, DataKey>, StoreError>;
}

/// The append-only, hash-chained log.
#[async_trait]
pub trait EventStore: KeyStore + Send + Sync + fmt::Debug {
    /// Appends atomically; see the crate docs for ordering and idempotency.
    async fn append(&self, request: AppendRequest) -> Result<AppendResult, StoreError>;
    /// Stored events of one stream with version > `after_version`, at most `limit`.
    async fn read_stream_raw(
        &self,
        stream: &str,
        after_version: u64,
        limit: usize,
    ) -> Result<Vec<StoredEvent>, StoreError>;
    /// Stored events with position > `after`, at most `limit`, in position order.
    async fn read_all_raw(&self, after: u64, limit: usize) -> Result<Vec<StoredEvent>, StoreError>;
    /// Like [`EventStore::read_all_raw`], but reading only what a projection uses: position,
    /// stream, version, type, schema version, time and data. The ids, actor and hashes are
    /// not read (nil, empty and zero) — never use these events to verify anything.
    async fn read_all_light(
        &self,
        after: u64,
        limit: usize,
    ) -> Result<Vec<StoredEvent>, StoreError> {
        self.read_all_raw(after, limit).await
    }
    /// How many events of `types` lie after position `after`, up to `head`: what a reader of
    /// those types has left to read. By default every position up to `head` (an upper bound);
    /// the stores count from their index on (type, position).
    async fn count_of(&self, after: u64, head: u64, types: &[&str]) -> Result<u64, StoreError> {
        let _ = types;
        Ok(head.saturating_sub(after))
    }
    /// Like [`EventStore::read_all_light`], keeping only events whose type is in `types`;
    /// also returns the position up to which the log was scanned: the last event returned
    /// when `limit` were, else the head as it stood before the read. A reader of some types
    /// moves its checkpoint there, past every event it does not read.
    async fn read_all_light_of(
        &self,
        after: u64,
        limit: usize,
        types: &[&str],
    ) -> Result<(Vec<StoredEvent>, u64), StoreError> {
        let raw = self.read_all_light(after, limit).await?;
        let end = raw.last().map(|e| e.position).unwrap_or(after);
        Ok((
            raw.into_iter()
                .filter(|e| types.contains(&e.event_type.as_str()))
                .collect(),
            end,
        ))
    }
    async fn head(&self) -> Result<Head, StoreError>;
    /// Appends events exactly as another store stored them (an audit archive read back):
    /// positions, ids, sealed payloads and hashes kept. They must continue this log's chain —
    /// the first at head + 1 with the head's hash before it, every hash recomputing — or
    /// nothing is written. No data keys come with them: here their personal fields read as
    /// erased. Returns the new head.
    async fn import(&self, events: &[StoredEvent]) -> Result<Head, StoreError> {
        let _ = events;
        Err(StoreError::Internal(
            "this store cannot import events".into(),
        ))
    }
    /// Removes what the storage engine may still keep of erased data outside its live rows
    /// (R23): the embedded store checkpoints and truncates its write-ahead log, whose old
    /// page images would otherwise hold view documents as they were before an erasure;
    /// PostgreSQL rewrites the read models' and the keys' tables, whose dead tuples would
    /// otherwise stay in the pages' free space. Returns false when the engine was too busy to
    /// finish (try again later).
    async fn scrub(&self) -> Result<bool, StoreError> {
        Ok(true)
    }
    /// The log's Merkle tree: its stored hashes at these indexes (Go's stored-hash layout;
    /// leaf `i` is the chain hash of position `i + 1`), in their order. A root or a proof
    /// reads O(log n) of them (`lightwidget_tlog::tree`).
    async fn tree_hashes(&self, indexes: &[u64]) -> Result<Vec<[u8; 32]>, StoreError> {
        let _ = indexes;
        Err(StoreError::Internal("this store keeps no tree".into()))
    }
    /// Records a checkpoint the server signed (insert-only; the key never comes here).
    async fn record_checkpoint(&self, checkpoint: &SignedCheckpoint) -> Result<(), StoreError> {
        let _ = checkpoint;
        Err(StoreError::Internal(
            "this store keeps no checkpoints".into(),
        ))
    }
    /// The checkpoints signed with a size above `after`, in size order (then signing order),
    /// at most `limit`.
    async fn checkpoints(
        &self,
        after: u64,
        limit: usize,
    ) -> Result<Vec<SignedCheckpoint>, StoreError> {
        let _ = (after, limit);
        Err(StoreError::Internal(
            "this store keeps no checkpoints".into(),
        ))
    }
    /// The checkpoint signed last, if any.
    async fn latest_checkpoint(&self) -> Result<Option<SignedCheckpoint>, StoreError> {
        Err(StoreError::Internal(
            "this store keeps no checkpoints".into(),
        ))
    }
    /// Returns when the head may have moved past `after`, or after `timeout`. Notified by the
    /// store's own writer, by other processes where the backend can tell, else by polling.
    async fn wait_for(&self, after: u64, timeout: Duration);

    /// Events of one stream, opened.
    async fn read_stream(
        &self,
        stream: &str,
        after_version: u64,
        limit: usize,
    ) -> Result<Vec<RecordedEvent>, StoreError> {
        let raw = self.read_stream_raw(stream, after_version, limit).await?;
        open_events(self, raw).await
    }

    /// A whole stream, opened, read [`STREAM_PAGE`] events at a time.
    async fn read_whole_stream(&self, stream: &str) -> Result<Vec<RecordedEvent>, StoreError> {
        let mut out: Vec<RecordedEvent> = Vec::new();
        loop {
            let after = out.last().map(|e| e.version).unwrap_or(0);
            let page = self.read_stream(stream, after, STREAM_PAGE).await?;
            let done = page.len() < STREAM_PAGE;
            out.extend(page);
            if done {
                return Ok(out);
            }
        }
    }

    /// A whole stream as stored (sealed), read [`STREAM_PAGE`] events at a time.
    async fn read_whole_stream_raw(&self, stream: &str) -> Result<Vec<StoredEvent>, StoreError> {
        let mut out: Vec<StoredEvent> = Vec::new();
        loop {
            let after = out.last().map(|e| e.version).unwrap_or(0);
            let page = self.read_stream_raw(stream, after, STREAM_PAGE).await?;
            let done = page.len() < STREAM_PAGE;
            out.extend(page);
            if done {
                return Ok(out);
            }
        }
    }

    /// Events after a position, opened.
    async fn read_all(&self, after: u64, limit: usize) -> Result<Vec<RecordedEvent>, StoreError> {
        let raw = self.read_all_raw(after, limit).await?;
        open_events(self, raw).await
    }

    /// What the hash chain hashes for the events after `after`, at most `limit`: their
    /// canonical bytes, positions and stored hashes ([`chain::verify_log`]'s input). By
    /// default built from [`EventStore::read_all_raw`]; a store that keeps the envelope as
    /// text writes it from its rows without parsing it.
    async fn read_canonical(
        &self,
        after: u64,
        limit: usize,
    ) -> Result<chain::CanonicalPage, StoreError> {
        let raw = self.read_all_raw(after, limit).await?;
        Ok(chain::CanonicalPage::of(&raw))
    }

    /// Recomputes the hash chain from position 1 and compares it with the head
    /// ([`chain::verify_log`]).
    async fn verify(&self) -> Result<VerifyReport, StoreError> {
        chain::verify_log(self, |_| {}).await
    }
}

impl StoredEvent {
    /// Decodes the payload as stored, without opening anything: every personal field reads
    /// as erased. One parse, no key look-up — for readers that need no personal data.
    pub fn decode_sealed(&self) -> Result<DomainEvent, EventDecodeError> {
        lightwidget_schemas::decode_str(&self.event_type, self.schema_version, &self.data)
    }

    /// The envelope without its payload (`data` is null): what goes with an event decoded by
    /// [`StoredEvent::decode_sealed`].
    pub fn into_envelope(self) -> RecordedEvent {
        self.with_data(serde_json::Value::Null)
    }

    /// The envelope with `data` as readers see it.
    fn with_data(self, data: serde_json::Value) -> RecordedEvent {
        RecordedEvent {
            data,
            position: self.position,
            stream: self.stream,
            version: self.version,
            event_id: self.event_id,
            event_type: self.event_type,
            schema_version: self.schema_version,
            recorded_at: self.recorded_at,
            actor: self.actor,
            correlation_id: self.correlation_id,
            causation_id: self.causation_id,
            prev_hash: self.prev_hash,
            hash: self.hash,
        }
    }
}

/// Opens a batch of stored events with one key look-up.
pub async fn open_events<S: KeyStore + ?Sized>(
    store: &S,
    raw: Vec<StoredEvent>,
) -> Result<Vec<RecordedEvent>, StoreError> {
    open_events_of(store, raw, None).await
}

/// Opens only the personal fields of the given categories (every field with `None`); the
/// keys of the others are never fetched, and their fields read as erased.
pub async fn open_events_of<S: KeyStore + ?Sized>(
    store: &S,
    raw: Vec<StoredEvent>,
    only: Option<&[Category]>,
) -> Result<Vec<RecordedEvent>, StoreError> {
    open_with(store, raw, only, false).await
}

/// Opens only the fields of the given categories sealed by keys archived under a legal hold
/// (R21); every other field reads as erased. For the compliance read of a hold's data alone.
pub async fn open_archived<S: KeyStore + ?Sized>(
    store: &S,
    raw: Vec<StoredEvent>,
    only: &[Category],
) -> Result<Vec<RecordedEvent>, StoreError> {
    open_with(store, raw, Some(only), true).await
}

async fn open_with<S: KeyStore + ?Sized>(
    store: &S,
    raw: Vec<StoredEvent>,
    only: Option<&[Category]>,
    archived: bool,
) -> Result<Vec<RecordedEvent>, StoreError> {
    let mut parsed = Vec::with_capacity(raw.len());
    let mut ids = HashSet::new();
    for e in &raw {
        let data: serde_json::Value = serde_json::from_str(&e.data).map_err(|_| {
            StoreError::Corrupt(format!(
                "event at position {} holds invalid JSON",
                e.position
            ))
        })?;
        sealing::sealed_key_ids_of(&data, only, &mut ids);
        parsed.push(data);
    }
    let ids: Vec<Uuid> = ids.into_iter().collect();
    let keys = match (ids.is_empty(), archived) {
        (true, _) => HashMap::new(),
        (false, false) => store.data_keys(&ids).await?,
        (false, true) => store.archived_keys(&ids).await?,
    };
    Ok(raw
        .into_iter()
        .zip(parsed)
        .map(|(e, data)| e.with_data(sealing::open(&data, &keys)))
        .collect())
}

/// The AAD of a wrapped key row.
pub(crate) fn key_context(subject: &Subject, category: Category, key_id: Uuid) -> Vec<u8> {
    format!("key|{subject}|{category}|{key_id}").into_bytes()
}

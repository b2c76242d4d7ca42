//! Idempotency keys. A command sent with a key is recorded, in the same atomic append as its
//! events, as a `CommandRecorded` event on the stream `idempotency-<sha256(key)>` (the key
//! itself is never stored). A repeat with the same key and the same request answers with the
//! first result and appends nothing; the same key with another request is refused.

use crate::unit::{transact, Keyed};
use crate::{CommandError, Decide, Outcome};
use lightwidget_domain::event::CommandRecorded;
use lightwidget_domain::{Aggregate, DomainEvent};
use lightwidget_store::{Clock, EventStore, ExpectedVersion, Metadata, StoreError, StreamWrite};
use sha2::{Digest, Sha256};

/// The hex SHA-256 of a text: how keys and request fingerprints are kept.
pub fn sha256_hex(text: &str) -> String {
    hex::encode(Sha256::digest(text.as_bytes()))
}

/// The stream that records an idempotency key.
pub fn key_stream(key: &str) -> String {
    lightwidget_domain::streams::idempotency(&sha256_hex(key))
}

/// What a key already recorded says.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Recorded {
    pub fingerprint: String,
    pub stream: String,
    pub version: u64,
    /// The position of the command's last event.
    pub position: u64,
}

/// Reads the record of `key`, if any.
pub async fn recorded(store: &dyn EventStore, key: &str) -> Result<Option<Recorded>, StoreError> {
    let events = store.read_stream(&key_stream(key), 0, 1).await?;
    let Some(e) = events.first() else {
        return Ok(None);
    };
    match e.to_domain() {
        Ok(DomainEvent::CommandRecorded(r)) => Ok(Some(Recorded {
            fingerprint: r.fingerprint,
            stream: r.stream,
            version: r.version,
            position: e.position.saturating_sub(1),
        })),
        _ => Err(StoreError::Corrupt(format!(
            "idempotency stream at position {} holds another event",
            e.position
        ))),
    }
}

/// The write that records a keyed command beside its events, on the key's own stream (which
/// must not exist yet: a concurrent repeat conflicts there).
pub(crate) fn record_write(
    key: &str,
    fingerprint: &str,
    stream: &str,
    events: usize,
    version: u64,
    meta: &Metadata,
) -> StreamWrite {
    let record: DomainEvent = CommandRecorded {
        key_hash: sha256_hex(key),
        fingerprint: fingerprint.to_owned(),
        stream: stream.to_owned(),
        events: events as u32,
        version,
    }
    .into();
    StreamWrite::of(key_stream(key), ExpectedVersion::NoStream, &[record], meta)
}

/// Runs `command` against the aggregate in `stream` once per `key`: see the module docs.
/// `fingerprint` identifies the request (for HTTP: method, path and a hash of the body).
pub async fn execute_once<A>(
    store: &dyn EventStore,
    clock: &dyn Clock,
    stream: &str,
    command: A::Command,
    meta: &Metadata,
    key: &str,
    fingerprint: &str,
) -> Result<Outcome, CommandError>
where
    A: Aggregate + Send + Sync,
    A::Command: Clone + Send + Sync,
    A::Error: std::fmt::Display,
    CommandError: From<A::Error>,
{
    let keyed = Keyed { key, fingerprint };
    let work = Decide::<A> {
        stream: stream.to_owned(),
        command,
    };
    let done = transact(store, clock, meta, Some(keyed), &work).await?;
    Ok(Outcome::from(done))
}

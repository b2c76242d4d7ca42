//! Idempotency keys. A command sent with a key is recorded, in the same atomic append as its
//! events, as a `CommandRecorded` event on the stream `idempotency-<sha256(key)>` (the key
//! itself is never stored). A repeat with the same key and the same request answers with the
//! first result and appends nothing; the same key with another request is refused.

use crate::{load, CommandError, Outcome};
use lightwidget_domain::event::CommandRecorded;
use lightwidget_domain::{Aggregate, DomainEvent};
use lightwidget_store::{
    AppendRequest, Clock, EventStore, ExpectedVersion, Metadata, StoreError, StreamWrite,
};
use sha2::{Digest, Sha256};

/// The hex SHA-256 of a text: how keys and request fingerprints are kept.
pub fn sha256_hex(text: &str) -> String {
    hex::encode(Sha256::digest(text.as_bytes()))
}

/// The stream that records an idempotency key.
pub fn key_stream(key: &str) -> String {
    format!("idempotency-{}", sha256_hex(key))
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

/// Runs `command` once per `key`: see the module docs. `fingerprint` identifies the request
/// (for HTTP: method, path and a hash of the body).
/// The answer to a repeat of a recorded command: its outcome, or `KeyReused` when the key
/// was used for another request (`fingerprint` is the hashed one).
fn replay<E: std::fmt::Debug + std::fmt::Display>(
    r: Recorded,
    fingerprint: &str,
    stream: &str,
    attempt: u32,
) -> Result<Outcome, CommandError<E>> {
    if r.fingerprint != fingerprint || r.stream != stream {
        return Err(CommandError::KeyReused);
    }
    Ok(Outcome {
        events: vec![],
        version: r.version,
        position: r.position,
        attempts: attempt,
        replayed: true,
    })
}

/// The write that records a keyed command beside its events, on the key's own stream (which
/// must not exist yet: a concurrent repeat conflicts there).
fn record_write(
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

pub async fn execute_once<A>(
    store: &dyn EventStore,
    clock: &dyn Clock,
    stream: &str,
    command: A::Command,
    meta: &Metadata,
    key: &str,
    fingerprint: &str,
) -> Result<Outcome, CommandError<A::Error>>
where
    A: Aggregate,
    A::Command: Clone,
    A::Error: std::fmt::Display,
{
    let fingerprint = sha256_hex(fingerprint);
    let replay = |r: Recorded, attempt| replay(r, &fingerprint, stream, attempt);
    for attempt in 1..=crate::DEFAULT_MAX_ATTEMPTS {
        if let Some(r) = recorded(store, key).await.map_err(CommandError::Store)? {
            return replay(r, attempt);
        }
        let loaded = load::<A>(store, stream).await?;
        let events = match loaded.state.decide(command.clone(), clock.now()) {
            Ok(events) => events,
            Err(e) => {
                // The same keyed command may have committed since the record was read (its
                // effect is why this decision is refused): then it is a replay.
                return match recorded(store, key).await.map_err(CommandError::Store)? {
                    Some(r) => replay(r, attempt),
                    None => Err(CommandError::Rejected(e)),
                };
            }
        };
        if events.is_empty() {
            return Ok(Outcome {
                events,
                version: loaded.version,
                position: loaded.position,
                attempts: attempt,
                replayed: false,
            });
        }
        let version = loaded.version + events.len() as u64;
        let request = AppendRequest {
            writes: vec![
                StreamWrite::of(
                    stream,
                    ExpectedVersion::Exact(loaded.version),
                    &events,
                    meta,
                ),
                record_write(key, &fingerprint, stream, events.len(), version, meta),
            ],
            shred: vec![],
        };
        match store.append(request).await {
            Ok(r) => {
                return Ok(Outcome {
                    events,
                    version,
                    position: r.last_position.saturating_sub(1),
                    attempts: attempt,
                    replayed: false,
                })
            }
            // The aggregate moved, or the same key is being recorded concurrently: look again.
            Err(StoreError::Conflict { .. }) => {}
            Err(e) => return Err(CommandError::Store(e)),
        }
    }
    Err(CommandError::Conflict {
        stream: stream.to_owned(),
        attempts: crate::DEFAULT_MAX_ATTEMPTS,
    })
}

/// Appends events that need no decision (to a stream written with `Any`, like an article's
/// comments) once per key: a repeat with the same key and request answers with the first
/// append's position and appends nothing; the same key with another request is `KeyReused`.
pub async fn append_once(
    store: &dyn EventStore,
    stream: &str,
    events: &[DomainEvent],
    meta: &Metadata,
    key: &str,
    fingerprint: &str,
) -> Result<Outcome, CommandError<std::convert::Infallible>> {
    let fingerprint = sha256_hex(fingerprint);
    for attempt in 1..=crate::DEFAULT_MAX_ATTEMPTS {
        if let Some(r) = recorded(store, key).await.map_err(CommandError::Store)? {
            return replay(r, &fingerprint, stream, attempt);
        }
        let request = AppendRequest {
            writes: vec![
                StreamWrite::of(stream, ExpectedVersion::Any, events, meta),
                record_write(key, &fingerprint, stream, events.len(), 0, meta),
            ],
            shred: vec![],
        };
        match store.append(request).await {
            Ok(r) => {
                return Ok(Outcome {
                    events: events.to_vec(),
                    version: r.versions.first().map(|v| v.1).unwrap_or(0),
                    position: r.last_position.saturating_sub(1),
                    attempts: attempt,
                    replayed: false,
                })
            }
            // The same key is being recorded concurrently: look again.
            Err(StoreError::Conflict { .. }) => {}
            Err(e) => return Err(CommandError::Store(e)),
        }
    }
    Err(CommandError::Conflict {
        stream: stream.to_owned(),
        attempts: crate::DEFAULT_MAX_ATTEMPTS,
    })
}

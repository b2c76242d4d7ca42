//! The unit of work every use case runs in.
//!
//! A use case is a named command implementing [`UseCase`]: over a [`Unit`], it loads the aggregates it needs (the unit
//! records the version of each stream read), decides through them (the unit queues their
//! events, expecting the versions read), and returns what its caller is to be told.
//! [`transact`] then appends everything in one atomic append: the events of each stream
//! written with the version it was read at, and a fence on every stream read but not
//! written, so a decision taken on something that changed meanwhile is never stored. When
//! the append conflicts the whole use case runs again on fresh reads, a bounded number of
//! times; under an idempotency key, a repeat of a recorded command answers the first result
//! and appends nothing.
//!
//! This is the only retry loop of the application layer.

use crate::error::CommandError;
use crate::idempotency::{record_write, recorded, sha256_hex, Recorded};
use crate::{load, Loaded, DEFAULT_MAX_ATTEMPTS};
use lightwidget_domain::{Aggregate, DomainEvent, Now};
use lightwidget_store::{
    AppendRequest, Clock, EventStore, ExpectedVersion, KeyRef, Metadata, StoreError, StreamWrite,
};
use std::collections::BTreeSet;

/// A use case: a command with what it needs to decide, run by [`transact`] once per
/// attempt on a fresh [`Unit`]. It reads through the unit, decides through the aggregates'
/// `decide`, and returns what the caller is to be told; it appends nothing itself.
#[async_trait::async_trait]
pub trait UseCase: Send + Sync {
    type Output: Send;
    async fn run(&self, unit: &mut Unit<'_>) -> Result<Self::Output, CommandError>;
}

/// A command's idempotency key (already scoped to its caller) and what identifies the
/// request (for HTTP: method, path and the SHA-256 of the body).
#[derive(Clone, Copy, Debug)]
pub struct Keyed<'k> {
    pub key: &'k str,
    pub fingerprint: &'k str,
}

/// What a unit of work came to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Done<T> {
    /// What the use case returned; `None` when an idempotency key replayed an earlier
    /// command (nothing was decided or appended this time).
    pub value: Option<T>,
    /// The position of the last event appended (of the command's last event under a key;
    /// when nothing was appended, of the last event read).
    pub position: u64,
    /// The version, after the unit, of the first stream written (when nothing was written,
    /// of the first stream read).
    pub version: u64,
    /// How many times the use case ran (1 without conflicts).
    pub attempts: u32,
}

impl<T> Done<T> {
    /// True when an idempotency key matched an earlier command.
    pub fn replayed(&self) -> bool {
        self.value.is_none()
    }
}

/// A stream read, at the version read.
#[derive(Clone, Debug)]
struct StreamRead {
    stream: String,
    version: u64,
    /// Taken to be new without reading it (see [`Unit::assume_new`]).
    assumed: bool,
}

/// Events decided for one stream, with the version they were decided on.
#[derive(Clone, Debug)]
struct PendingWrite {
    stream: String,
    expected: ExpectedVersion,
    events: Vec<DomainEvent>,
}

/// One attempt of a use case: what it read and what it decided.
pub struct Unit<'a> {
    store: &'a dyn EventStore,
    now: Now,
    attempt: u32,
    /// Streams taken to be new in an earlier attempt that turned out to exist.
    existing: &'a BTreeSet<String>,
    reads: Vec<StreamRead>,
    writes: Vec<PendingWrite>,
    shred: Vec<KeyRef>,
    /// The highest position among the events read.
    position: u64,
}

impl std::fmt::Debug for Unit<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Unit")
            .field("attempt", &self.attempt)
            .field("reads", &self.reads)
            .field("writes", &self.writes.len())
            .finish()
    }
}

impl<'a> Unit<'a> {
    /// The time every decision of this attempt is taken at.
    pub fn now(&self) -> Now {
        self.now
    }

    /// 1 on the first attempt, then 2, 3, … after conflicts.
    pub fn attempt(&self) -> u32 {
        self.attempt
    }

    /// The store, for reads that decide nothing (a read model, a token). What a decision
    /// depends on is read with [`Unit::load`].
    pub fn store(&self) -> &'a dyn EventStore {
        self.store
    }

    /// Loads an aggregate, recording the version read: the append will be refused if the
    /// stream moved on meanwhile.
    pub async fn load<A: Aggregate>(&mut self, stream: &str) -> Result<Loaded<A>, CommandError>
    where
        A::Error: std::fmt::Display,
    {
        let loaded = load::<A>(self.store, stream).await?;
        self.read(stream, loaded.version, false);
        self.position = self.position.max(loaded.position);
        Ok(loaded)
    }

    /// A stream this use case creates under a fresh id: taken to be new without reading it
    /// (the append expects it new). When it turns out to exist, the next attempt loads it.
    pub async fn assume_new<A: Aggregate>(
        &mut self,
        stream: &str,
    ) -> Result<Loaded<A>, CommandError>
    where
        A::Error: std::fmt::Display,
    {
        if self.existing.contains(stream) {
            return self.load::<A>(stream).await;
        }
        self.read(stream, 0, true);
        Ok(Loaded::new_stream())
    }

    /// Records a read made elsewhere (a cached one): the append is refused unless `stream`
    /// is still at `version`.
    pub fn fence(&mut self, stream: &str, version: u64) {
        self.read(stream, version, false);
    }

    fn read(&mut self, stream: &str, version: u64, assumed: bool) {
        match self.reads.iter_mut().find(|r| r.stream == stream) {
            Some(r) => {
                r.version = version;
                r.assumed = assumed;
            }
            None => self.reads.push(StreamRead {
                stream: stream.to_owned(),
                version,
                assumed,
            }),
        }
    }

    /// Decides `command` on a loaded aggregate and queues its events for `stream`, expecting
    /// the version it was loaded at. A refusal is the use case's error.
    pub fn decide<A: Aggregate>(
        &mut self,
        stream: &str,
        loaded: &Loaded<A>,
        command: A::Command,
    ) -> Result<Vec<DomainEvent>, CommandError>
    where
        CommandError: From<A::Error>,
    {
        Ok(self.try_decide(stream, loaded, command)?)
    }

    /// [`Unit::decide`], with the aggregate's refusal handed back for the use case to weigh
    /// (nothing is queued then).
    pub fn try_decide<A: Aggregate>(
        &mut self,
        stream: &str,
        loaded: &Loaded<A>,
        command: A::Command,
    ) -> Result<Vec<DomainEvent>, A::Error> {
        let events = loaded.state.decide(command, self.now)?;
        self.queue(stream, ExpectedVersion::Exact(loaded.version), &events);
        Ok(events)
    }

    /// Decides on an aggregate whose decisions never depend on its stream (an article's
    /// comments) and queues the events without a version check, so that concurrent writers
    /// never conflict.
    pub fn decide_unversioned<A: Aggregate>(
        &mut self,
        stream: &str,
        command: A::Command,
    ) -> Result<Vec<DomainEvent>, CommandError>
    where
        CommandError: From<A::Error>,
    {
        let events = A::default().decide(command, self.now)?;
        self.queue(stream, ExpectedVersion::Any, &events);
        Ok(events)
    }

    /// Shreds the data keys of these (subject, category) pairs in the same append.
    pub fn shred(&mut self, refs: impl IntoIterator<Item = KeyRef>) {
        self.shred.extend(refs);
    }

    /// Drops everything decided so far in this attempt: the use case came to nothing to
    /// append after all (a purge a hold refuses after its erasures were decided).
    pub fn discard(&mut self) {
        self.writes.clear();
        self.shred.clear();
    }

    fn queue(&mut self, stream: &str, expected: ExpectedVersion, events: &[DomainEvent]) {
        if events.is_empty() {
            return;
        }
        match self.writes.iter_mut().find(|w| w.stream == stream) {
            Some(w) => w.events.extend_from_slice(events),
            None => self.writes.push(PendingWrite {
                stream: stream.to_owned(),
                expected,
                events: events.to_vec(),
            }),
        }
    }

    fn assumed_new(&self, stream: &str) -> bool {
        self.reads.iter().any(|r| r.assumed && r.stream == stream)
    }

    /// The append this attempt comes to: the writes first (in the order decided), then a
    /// fence for every stream read and not written. `None` when nothing was decided.
    fn request(&self, meta: &Metadata) -> Option<AppendRequest> {
        if self.writes.is_empty() && self.shred.is_empty() {
            return None;
        }
        let mut writes: Vec<StreamWrite> = self
            .writes
            .iter()
            .map(|w| StreamWrite::of(&w.stream, w.expected, &w.events, meta))
            .collect();
        for r in &self.reads {
            if !self.writes.iter().any(|w| w.stream == r.stream) {
                writes.push(StreamWrite::fence(&r.stream, r.version));
            }
        }
        Some(AppendRequest {
            writes,
            shred: self.shred.clone(),
        })
    }

    /// The first stream written, with how many events and the version they bring it to.
    fn first_write(&self) -> Option<(&str, usize, u64)> {
        let w = self.writes.first()?;
        let before = match w.expected {
            ExpectedVersion::Exact(v) => v,
            _ => 0,
        };
        Some((&w.stream, w.events.len(), before + w.events.len() as u64))
    }
}

/// Runs `work` as one unit of work: see the module docs. `meta` goes into every envelope.
pub async fn transact<U: UseCase>(
    store: &dyn EventStore,
    clock: &dyn Clock,
    meta: &Metadata,
    keyed: Option<Keyed<'_>>,
    work: &U,
) -> Result<Done<U::Output>, CommandError> {
    transact_with_attempts(store, clock, meta, keyed, DEFAULT_MAX_ATTEMPTS, work).await
}

/// [`transact`] with another bound on the attempts.
pub async fn transact_with_attempts<U: UseCase>(
    store: &dyn EventStore,
    clock: &dyn Clock,
    meta: &Metadata,
    keyed: Option<Keyed<'_>>,
    max_attempts: u32,
    work: &U,
) -> Result<Done<U::Output>, CommandError> {
    let fingerprint = keyed.map(|k| sha256_hex(k.fingerprint));
    let replay = |r: Recorded, attempts| -> Result<Done<U::Output>, CommandError> {
        if Some(&r.fingerprint) != fingerprint.as_ref() {
            return Err(CommandError::KeyReused);
        }
        Ok(Done {
            value: None,
            position: r.position,
            version: r.version,
            attempts,
        })
    };
    let mut existing = BTreeSet::new();
    let mut conflicted = String::new();
    for attempt in 1..=max_attempts.max(1) {
        if let Some(k) = keyed {
            if let Some(r) = recorded(store, k.key).await? {
                return replay(r, attempt);
            }
        }
        let mut unit = Unit {
            store,
            now: clock.now(),
            attempt,
            existing: &existing,
            reads: Vec::new(),
            writes: Vec::new(),
            shred: Vec::new(),
            position: 0,
        };
        let value = match work.run(&mut unit).await {
            Ok(value) => value,
            Err(e) => {
                // The same keyed command may have committed since the record was read (its
                // effect is why this attempt was refused): then it is a replay.
                if let (Some(k), CommandError::Rejected(_) | CommandError::Stale { .. }) =
                    (keyed, &e)
                {
                    if let Some(r) = recorded(store, k.key).await? {
                        return replay(r, attempt);
                    }
                }
                return Err(e);
            }
        };
        let Some(mut request) = unit.request(meta) else {
            let version = unit.reads.first().map(|r| r.version).unwrap_or(0);
            return Ok(Done {
                value: Some(value),
                position: unit.position,
                version,
                attempts: attempt,
            });
        };
        let first = unit.first_write();
        if let (Some(fingerprint), Some(keyed)) = (&fingerprint, keyed) {
            let (stream, events, version) = first.unwrap_or(("", 0, 0));
            // The record goes last: the position before it is the command's last event.
            request.writes.push(record_write(
                keyed.key,
                fingerprint,
                stream,
                events,
                version,
                meta,
            ));
        }
        match store.append(request).await {
            Ok(r) => {
                let position = match keyed {
                    Some(_) => r.last_position.saturating_sub(1),
                    None => r.last_position,
                };
                let version = r
                    .versions
                    .first()
                    .map(|v| v.1)
                    .or(first.map(|f| f.2))
                    .unwrap_or(0);
                return Ok(Done {
                    value: Some(value),
                    position,
                    version,
                    attempts: attempt,
                });
            }
            Err(StoreError::Conflict { stream, .. }) => {
                if unit.assumed_new(&stream) {
                    existing.insert(stream.clone());
                }
                tracing::debug!(stream = %stream, attempt, "conflict; deciding again");
                conflicted = stream;
            }
            Err(e) => return Err(e.into()),
        }
    }
    Err(CommandError::Conflict {
        stream: conflicted,
        attempts: max_attempts.max(1),
    })
}

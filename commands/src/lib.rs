//! Command handling: load an aggregate's stream, `decide`, append the new events with the
//! version the decision was based on, and on a conflict reload and decide again — a bounded
//! number of times, then report the conflict. Correlation and causation ids flow from the
//! caller's [`Metadata`] into every envelope; every outcome carries the position of its last
//! event.

pub mod idempotency;
pub mod payment;
pub mod recorder;

pub use idempotency::execute_once;
pub use recorder::HitRecorder;

use lightwidget_domain::{Aggregate, DomainEvent, EventDecodeError};
use lightwidget_store::{
    AppendRequest, Clock, EventStore, ExpectedVersion, Metadata, StoreError, StreamWrite,
};

/// How many times a command is decided before a conflict is reported.
pub const DEFAULT_MAX_ATTEMPTS: u32 = 32;

/// The result of a command.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Outcome {
    /// The events the decision produced (empty when the command changed nothing).
    pub events: Vec<DomainEvent>,
    /// The stream's version after the command.
    pub version: u64,
    /// The log position of the last event appended, or of the stream's last event when the
    /// command appended nothing (0 for an empty stream).
    pub position: u64,
    /// How many times the command was decided (1 without conflicts).
    pub attempts: u32,
    /// True when an idempotency key matched an earlier command: nothing was appended and
    /// `version`/`position` are that command's.
    pub replayed: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum CommandError<E: std::fmt::Debug + std::fmt::Display> {
    /// The aggregate refused the command.
    #[error("{0}")]
    Rejected(E),
    /// Other writers kept changing the stream; every attempt conflicted.
    #[error("stream `{stream}` kept changing; gave up after {attempts} attempts")]
    Conflict { stream: String, attempts: u32 },
    /// The idempotency key was used before for another request.
    #[error("the idempotency key was already used for another request")]
    KeyReused,
    #[error(transparent)]
    Store(StoreError),
    #[error("stored event could not be decoded: {0}")]
    Decode(#[from] EventDecodeError),
}

/// A loaded aggregate: its state, version, and the position of its last event.
#[derive(Clone, Debug)]
pub struct Loaded<A> {
    pub state: A,
    pub version: u64,
    pub position: u64,
}

impl<A: Default> Loaded<A> {
    /// A stream that does not exist yet: what a create with a fresh id decides on, without
    /// reading it (see [`execute_guessed`]).
    pub fn new_stream() -> Self {
        Loaded {
            state: A::default(),
            version: 0,
            position: 0,
        }
    }
}

/// Folds a stream into its aggregate, reading it in pages.
pub async fn load<A: Aggregate>(
    store: &dyn EventStore,
    stream: &str,
) -> Result<Loaded<A>, CommandError<A::Error>>
where
    A::Error: std::fmt::Display,
{
    let mut state = A::default();
    let mut version = 0;
    let mut position = 0;
    loop {
        // An aggregate that reads no personal values is folded from the stored text as it
        // is: no key is looked up and nothing is decrypted.
        let (count, last) = if A::READS_PERSONAL_DATA {
            let page = store
                .read_stream(stream, version, 1000)
                .await
                .map_err(CommandError::Store)?;
            for e in &page {
                state = state.evolve(&e.to_domain()?);
            }
            (page.len(), page.last().map(|e| (e.version, e.position)))
        } else {
            let page = store
                .read_stream_raw(stream, version, 1000)
                .await
                .map_err(CommandError::Store)?;
            for e in &page {
                state = state.evolve(&e.decode_sealed()?);
            }
            (page.len(), page.last().map(|e| (e.version, e.position)))
        };
        let Some((v, p)) = last else { break };
        version = v;
        position = p;
        if count < 1000 {
            break;
        }
    }
    Ok(Loaded {
        state,
        version,
        position,
    })
}

/// Runs `command` against the aggregate in `stream`.
pub async fn execute<A>(
    store: &dyn EventStore,
    clock: &dyn Clock,
    stream: &str,
    command: A::Command,
    meta: &Metadata,
) -> Result<Outcome, CommandError<A::Error>>
where
    A: Aggregate,
    A::Command: Clone,
    A::Error: std::fmt::Display,
{
    execute_with_attempts::<A>(store, clock, stream, command, meta, DEFAULT_MAX_ATTEMPTS).await
}

pub async fn execute_with_attempts<A>(
    store: &dyn EventStore,
    clock: &dyn Clock,
    stream: &str,
    command: A::Command,
    meta: &Metadata,
    max_attempts: u32,
) -> Result<Outcome, CommandError<A::Error>>
where
    A: Aggregate,
    A::Command: Clone,
    A::Error: std::fmt::Display,
{
    decide_and_append::<A>(store, clock, stream, command, meta, None, &[], max_attempts).await
}

/// Like [`execute`], with what the caller already knows, so that nothing is read that the
/// append checks anyway:
///
/// * `guess`: the state to decide on first instead of loading the stream — a create's fresh
///   stream ([`Loaded::new_stream`]). The append expects the guessed version; when the
///   stream is elsewhere it conflicts, and the stream is loaded and the command decided
///   again, as after any conflict.
/// * `fences`: other streams the command read, at the versions it read them
///   ([`StreamWrite::fence`]); the append is refused unless each is still there. When a
///   fence conflicts the command is not decided again (what it read is stale, and only the
///   caller can read it again): the error is [`CommandError::Conflict`] naming the fenced
///   stream.
pub async fn execute_guessed<A>(
    store: &dyn EventStore,
    clock: &dyn Clock,
    stream: &str,
    command: A::Command,
    meta: &Metadata,
    guess: Option<Loaded<A>>,
    fences: &[StreamWrite],
) -> Result<Outcome, CommandError<A::Error>>
where
    A: Aggregate,
    A::Command: Clone,
    A::Error: std::fmt::Display,
{
    decide_and_append::<A>(
        store,
        clock,
        stream,
        command,
        meta,
        guess,
        fences,
        DEFAULT_MAX_ATTEMPTS,
    )
    .await
}

#[allow(clippy::too_many_arguments)]
async fn decide_and_append<A>(
    store: &dyn EventStore,
    clock: &dyn Clock,
    stream: &str,
    command: A::Command,
    meta: &Metadata,
    mut guess: Option<Loaded<A>>,
    fences: &[StreamWrite],
    max_attempts: u32,
) -> Result<Outcome, CommandError<A::Error>>
where
    A: Aggregate,
    A::Command: Clone,
    A::Error: std::fmt::Display,
{
    let mut attempts = 0;
    loop {
        attempts += 1;
        let loaded = match guess.take() {
            Some(guessed) => guessed,
            None => load::<A>(store, stream).await?,
        };
        let events = loaded
            .state
            .decide(command.clone(), clock.now())
            .map_err(CommandError::Rejected)?;
        if events.is_empty() {
            return Ok(Outcome {
                events,
                version: loaded.version,
                position: loaded.position,
                attempts,
                replayed: false,
            });
        }
        let mut writes = vec![StreamWrite::of(
            stream,
            ExpectedVersion::Exact(loaded.version),
            &events,
            meta,
        )];
        writes.extend(fences.iter().cloned());
        let request = AppendRequest {
            writes,
            shred: vec![],
        };
        match store.append(request).await {
            Ok(r) => {
                return Ok(Outcome {
                    events,
                    version: r.versions.first().map(|v| v.1).unwrap_or(loaded.version),
                    position: r.last_position,
                    attempts,
                    replayed: false,
                })
            }
            Err(StoreError::Conflict { stream: fenced, .. })
                if fences.iter().any(|f| f.stream == fenced) =>
            {
                return Err(CommandError::Conflict {
                    stream: fenced,
                    attempts,
                })
            }
            Err(StoreError::Conflict { .. }) if attempts < max_attempts => {
                tracing::debug!(stream, attempts, "conflict; deciding again");
            }
            Err(StoreError::Conflict { .. }) => {
                return Err(CommandError::Conflict {
                    stream: stream.to_owned(),
                    attempts,
                })
            }
            Err(e) => return Err(CommandError::Store(e)),
        }
    }
}

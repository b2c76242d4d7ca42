//! The application layer: every use case of the ledger. Each runs as one unit of work
//! ([`unit::transact`]): it loads the aggregates it needs, decides through them, and appends
//! their events atomically with the versions read, deciding again on a conflict — a bounded
//! number of times, then reporting it. Correlation and causation ids flow from the caller's
//! [`Metadata`] into every envelope; every outcome carries the position of its last event.

pub mod accounts;
pub mod breaches;
pub mod consent;
pub mod context;
pub mod error;
pub mod idempotency;
pub mod instagram;
pub mod media;
pub mod outbox;
pub mod payment;
pub mod policies;
pub mod processors;
pub mod receipts;
pub mod recorder;
pub mod staff;
pub mod tokens;
pub mod unit;
pub mod visitors;
pub mod widgets;

pub use context::{Context, Invocation};
pub use error::{CommandError, Rejection};
pub use idempotency::execute_once;
pub use recorder::HitRecorder;
pub use unit::{transact, Done, Keyed, Unit, UseCase};

use lightwidget_domain::{Aggregate, DomainEvent};
use lightwidget_store::{Clock, EventStore, Metadata};

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
) -> Result<Loaded<A>, CommandError> {
    let mut state = A::default();
    let mut version = 0;
    let mut position = 0;
    loop {
        // An aggregate that reads no personal values is folded from the stored text as it
        // is: no key is looked up and nothing is decrypted.
        let (count, last) = if A::READS_PERSONAL_DATA {
            let page = store.read_stream(stream, version, LOAD_PAGE).await?;
            for e in &page {
                state = state.evolve(&e.to_domain()?);
            }
            (page.len(), page.last().map(|e| (e.version, e.position)))
        } else {
            let page = store.read_stream_raw(stream, version, LOAD_PAGE).await?;
            for e in &page {
                state = state.evolve(&e.decode_sealed()?);
            }
            (page.len(), page.last().map(|e| (e.version, e.position)))
        };
        let Some((v, p)) = last else { break };
        version = v;
        position = p;
        if count < LOAD_PAGE {
            break;
        }
    }
    Ok(Loaded {
        state,
        version,
        position,
    })
}

/// How many events of a stream are read at a time when an aggregate is loaded.
pub const LOAD_PAGE: usize = 1000;

/// Runs `command` against the aggregate in `stream`: the use case of one aggregate.
pub async fn execute<A>(
    store: &dyn EventStore,
    clock: &dyn Clock,
    stream: &str,
    command: A::Command,
    meta: &Metadata,
) -> Result<Outcome, CommandError>
where
    A: Aggregate + Send + Sync,
    A::Command: Clone + Send + Sync,
    A::Error: std::fmt::Display,
    CommandError: From<A::Error>,
{
    execute_with_attempts::<A>(store, clock, stream, command, meta, DEFAULT_MAX_ATTEMPTS).await
}

/// [`execute`] with another bound on the attempts.
pub async fn execute_with_attempts<A>(
    store: &dyn EventStore,
    clock: &dyn Clock,
    stream: &str,
    command: A::Command,
    meta: &Metadata,
    max_attempts: u32,
) -> Result<Outcome, CommandError>
where
    A: Aggregate + Send + Sync,
    A::Command: Clone + Send + Sync,
    A::Error: std::fmt::Display,
    CommandError: From<A::Error>,
{
    let work = Decide::<A> {
        stream: stream.to_owned(),
        command,
    };
    let done = unit::transact_with_attempts(store, clock, meta, None, max_attempts, &work).await?;
    Ok(Outcome::from(done))
}

/// The use case of one aggregate: load `stream`, decide `command`, append what it decides.
#[derive(Debug)]
pub struct Decide<A: Aggregate> {
    pub stream: String,
    pub command: A::Command,
}

#[async_trait::async_trait]
impl<A> UseCase for Decide<A>
where
    A: Aggregate + Send + Sync,
    A::Command: Clone + Send + Sync,
    A::Error: std::fmt::Display,
    CommandError: From<A::Error>,
{
    type Output = Vec<DomainEvent>;

    async fn run(&self, u: &mut Unit<'_>) -> Result<Vec<DomainEvent>, CommandError> {
        let loaded = u.load::<A>(&self.stream).await?;
        u.decide(&self.stream, &loaded, self.command.clone())
    }
}

impl From<Done<Vec<DomainEvent>>> for Outcome {
    fn from(done: Done<Vec<DomainEvent>>) -> Self {
        Outcome {
            replayed: done.replayed(),
            events: done.value.unwrap_or_default(),
            version: done.version,
            position: done.position,
            attempts: done.attempts,
        }
    }
}

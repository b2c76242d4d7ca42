//! The batching path for views and clicks (R1, R2): producers hand views and clicks to a
//! recorder task that stores whatever has queued — up to 1,000 — in one atomic append, as
//! `HitsRecorded` events of up to [`HITS_PER_EVENT`] hits each on the `hits` stream. A
//! producer's `record` returns only once its hit is stored: nothing acknowledged is lost.
//!
//! One event per batch rather than one per hit: the log's per-event costs (a row, its index
//! entries, a link of the hash chain, and each projection runner reading and decoding it)
//! are paid once per batch; what each hit costs is its own sealed access log.

use lightwidget_domain::event::HitsRecorded;
use lightwidget_domain::DomainEvent;
use lightwidget_store::{
    AppendRequest, EventStore, ExpectedVersion, Metadata, NewEvent, StoreError, StreamWrite,
};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};

type Reply = oneshot::Sender<Result<u64, StoreError>>;

/// A hit, the message it causes (a consented page view's analytics, R3), and its reply.
type Queued = (DomainEvent, Option<DomainEvent>, Reply);

/// The actor every batch of hits is recorded under: hits carry no caller.
pub const HITS_ACTOR: &str = lightwidget_store::ANONYMOUS_ACTOR;

/// How long the recorder waits for more events before appending a batch.
pub const DEFAULT_LINGER: Duration = Duration::from_millis(2);

/// The stream hits are recorded on.
pub const HITS_STREAM: &str = lightwidget_domain::streams::HITS;

/// At most this many hits go into one `HitsRecorded`: with every access-log field at its
/// longest (a sealed hit under 2 KiB) an event stays well within the store's 1 MiB.
pub const HITS_PER_EVENT: usize = 256;

/// Appends of hits under way at once: while one waits for its commit (an fsync, a round
/// trip) the next batch gathers and goes to the store, which commits them together.
pub const APPENDS_IN_FLIGHT: usize = 4;

#[derive(Clone, Debug)]
pub struct HitRecorder {
    queue: mpsc::Sender<Queued>,
}

impl HitRecorder {
    /// Starts the recorder task. It ends when every `HitRecorder` clone is dropped, after
    /// storing what was queued.
    pub fn spawn(store: Arc<dyn EventStore>, max_batch: usize) -> Self {
        Self::spawn_with_linger(store, max_batch, DEFAULT_LINGER)
    }

    /// Like [`HitRecorder::spawn`]; after the first event of a batch arrives the recorder
    /// keeps taking events while producers keep adding them — yielding to let them run — for
    /// at most `linger` (or until `max_batch`): larger appends under load, no wait when idle.
    pub fn spawn_with_linger(
        store: Arc<dyn EventStore>,
        max_batch: usize,
        linger: Duration,
    ) -> Self {
        let (tx, rx) = mpsc::channel(16_384);
        tokio::spawn(run(
            store,
            rx,
            max_batch.clamp(1, lightwidget_store::MAX_EVENTS_PER_APPEND),
            linger,
        ));
        HitRecorder { queue: tx }
    }

    /// Stores a `WidgetViewed` or `WidgetClicked`; returns the log position of the event
    /// that holds it. Hits are anonymous: each batch gets one envelope ([`HITS_ACTOR`], a
    /// correlation id of its own), drawn once per batch rather than once per hit.
    pub async fn record(&self, event: DomainEvent) -> Result<u64, StoreError> {
        self.record_with(event, None).await
    }

    /// [`HitRecorder::record`], with the message the hit causes (a `MessageQueued`), stored
    /// in the same append on the message's own stream.
    pub async fn record_with(
        &self,
        event: DomainEvent,
        message: Option<DomainEvent>,
    ) -> Result<u64, StoreError> {
        if !matches!(
            event,
            DomainEvent::WidgetViewed(_) | DomainEvent::WidgetClicked(_)
        ) {
            return Err(StoreError::InvalidPayload(
                "only views and clicks are recorded here".into(),
            ));
        }
        if message
            .as_ref()
            .is_some_and(|m| !matches!(m, DomainEvent::MessageQueued(_)))
        {
            return Err(StoreError::InvalidPayload(
                "only a queued message goes with a hit".into(),
            ));
        }
        let (reply, answer) = oneshot::channel();
        self.queue
            .send((event, message, reply))
            .await
            .map_err(|_| StoreError::Unavailable("the hit recorder has stopped".into()))?;
        answer
            .await
            .map_err(|_| StoreError::Unavailable("the hit recorder has stopped".into()))?
    }
}

async fn run(
    store: Arc<dyn EventStore>,
    mut rx: mpsc::Receiver<Queued>,
    max: usize,
    linger: Duration,
) {
    let in_flight = Arc::new(tokio::sync::Semaphore::new(APPENDS_IN_FLIGHT));
    while let Some(first) = rx.recv().await {
        let mut batch = vec![first];
        let deadline = tokio::time::Instant::now() + linger;
        // Take what is queued; then let the producers run and take what they add, as long as
        // they keep adding and the linger lasts. An idle yield ends the batch.
        while batch.len() < max {
            match rx.try_recv() {
                Ok(item) => batch.push(item),
                Err(_) => {
                    if tokio::time::Instant::now() >= deadline {
                        break;
                    }
                    let before = batch.len();
                    tokio::task::yield_now().await;
                    while batch.len() < max {
                        match rx.try_recv() {
                            Ok(item) => batch.push(item),
                            Err(_) => break,
                        }
                    }
                    if batch.len() == before {
                        break;
                    }
                }
            }
        }
        let meta = Metadata::anonymous();
        // Hits in order, HITS_PER_EVENT to an event; each reply learns its event's index.
        let mut events = Vec::new();
        let mut messages = Vec::new();
        let mut replies = Vec::with_capacity(batch.len());
        let mut queued = batch.into_iter().peekable();
        while queued.peek().is_some() {
            let mut hits = HitsRecorded {
                views: Vec::new(),
                clicks: Vec::new(),
            };
            let index = events.len() as u64;
            for (event, message, reply) in queued.by_ref().take(HITS_PER_EVENT) {
                if let Some(DomainEvent::MessageQueued(m)) = &message {
                    messages.push(StreamWrite {
                        stream: m.message_id.stream(),
                        expected: ExpectedVersion::Exact(0),
                        events: vec![NewEvent::from_domain(
                            &DomainEvent::MessageQueued(m.clone()),
                            &meta,
                        )],
                    });
                }
                match event {
                    DomainEvent::WidgetViewed(v) => hits.views.push(v),
                    DomainEvent::WidgetClicked(c) => hits.clicks.push(c),
                    // `record` lets nothing else in.
                    _ => continue,
                }
                replies.push((index, reply));
            }
            events.push(NewEvent::from_domain(&hits.into(), &meta));
        }
        // The next batch gathers while this one is stored.
        let Ok(permit) = in_flight.clone().acquire_owned().await else {
            break;
        };
        tokio::spawn(store_batch(
            store.clone(),
            events,
            messages,
            replies,
            permit,
        ));
    }
    // Every clone is gone: wait for what is still being stored.
    let _ = in_flight.acquire_many(APPENDS_IN_FLIGHT as u32).await;
}

/// Appends one batch and answers its producers.
async fn store_batch(
    store: Arc<dyn EventStore>,
    events: Vec<NewEvent>,
    messages: Vec<StreamWrite>,
    replies: Vec<(u64, Reply)>,
    _permit: tokio::sync::OwnedSemaphorePermit,
) {
    // The hits first, so that each reply's index counts from the append's first position.
    let mut writes = vec![StreamWrite {
        stream: HITS_STREAM.to_owned(),
        expected: ExpectedVersion::Any,
        events,
    }];
    writes.extend(messages);
    let result = store
        .append(AppendRequest {
            writes,
            shred: vec![],
        })
        .await;
    match result {
        Ok(r) => {
            for (index, reply) in replies {
                let _ = reply.send(Ok(r.first_position + index));
            }
        }
        Err(e) => {
            let message = e.to_string();
            for (_, reply) in replies {
                let _ = reply.send(Err(StoreError::Unavailable(message.clone())));
            }
        }
    }
}

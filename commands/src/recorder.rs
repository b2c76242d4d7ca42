//! The batching path for views and clicks (R1, R2): producers hand views and clicks to a
//! recorder task that stores whatever has queued — up to 1,000 — in one atomic append, as
//! `HitsRecorded` events of up to [`HITS_PER_EVENT`] hits each on the `hits` stream.
//!
//! Two kinds of producer (issue 23's decision): a click's `record` returns only once its hit
//! is stored; a page view is `queue`d and its page answered at once. The recorder stores what
//! is queued within [`FLUSH_WITHIN`] (the linger, then one append), retrying a failed append
//! of queued views; `drain` (a graceful stop) stores everything queued before it returns.
//!
//! What a crash can lose is bounded by time, not by count: a view is admitted only while
//! the oldest queued view not yet stored is younger than [`ADMIT_WITHIN`]; otherwise the
//! page waits until the store catches up (for at most [`ADMIT_WAIT`], then it is refused as
//! unavailable). So the views unstored at any moment were all queued within [`ADMIT_WITHIN`]
//! of each other, however slow the store: a crash loses at most that much of the page's
//! traffic, and no view is dropped silently. The queue's count ([`QUEUE`]) is only a
//! backstop.
//!
//! One event per batch rather than one per hit: the log's per-event costs (a row, its index
//! entries, a link of the hash chain, and each projection runner reading and decoding it)
//! are paid once per batch; what each hit costs is its own sealed access log.

use lightwidget_domain::event::HitsRecorded;
use lightwidget_domain::DomainEvent;
use lightwidget_store::{
    AppendRequest, EventStore, ExpectedVersion, Metadata, NewEvent, StoreError, StreamWrite,
};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, oneshot, Notify};

type Reply = oneshot::Sender<Result<u64, StoreError>>;

/// How a hit is answered: a click's reply once stored, or a queued view's ticket among the
/// unstored ones.
#[derive(Debug)]
enum Answer {
    Reply(Reply),
    Queued(u64),
}

/// A hit, the message it causes (a consented page view's analytics, R3), and how it is
/// answered.
type Queued = (DomainEvent, Option<DomainEvent>, Answer);

/// How soon a queued view is stored when the store keeps up (the bound of what a crash can
/// lose): the linger plus one append.
pub const FLUSH_WITHIN: Duration = Duration::from_millis(100);

/// How many hits may wait in the queue: a backstop behind [`ADMIT_WITHIN`], about what the
/// recorder stores in [`FLUSH_WITHIN`] on this machine.
pub const QUEUE: usize = 4096;

/// A view is admitted only while the oldest queued view not yet stored was queued less than
/// this long ago: half of [`FLUSH_WITHIN`], the other half being the append that stores it.
pub const ADMIT_WITHIN: Duration = Duration::from_millis(50);

/// How long a page waits to be admitted before it is refused as unavailable: the store has
/// stored nothing for that long (it is down, or far behind).
pub const ADMIT_WAIT: Duration = Duration::from_secs(5);

/// How long a failed append of queued views is tried again before they are given up (and
/// counted in the log as lost).
pub const RETRY_FOR: Duration = Duration::from_secs(60);

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

/// The queued views not yet stored, by ticket, with when each was queued; and a wake-up for
/// pages waiting to be admitted whenever some are stored.
#[derive(Debug, Default)]
struct Unstored {
    queued_at: Mutex<(u64, BTreeMap<u64, Instant>)>,
    stored: Notify,
}

impl Unstored {
    /// Takes a ticket for a view queued now.
    fn admit(&self) -> u64 {
        let mut g = self.queued_at.lock().unwrap_or_else(|e| e.into_inner());
        let (next, map) = &mut *g;
        *next += 1;
        map.insert(*next, Instant::now());
        *next
    }

    /// How long ago the oldest unstored view was queued (zero when none is).
    fn oldest(&self) -> Duration {
        let g = self.queued_at.lock().unwrap_or_else(|e| e.into_inner());
        g.1.values()
            .next()
            .map(|at| at.elapsed())
            .unwrap_or_default()
    }

    /// These views are stored (or given up): pages waiting may be admitted.
    fn done(&self, tickets: impl IntoIterator<Item = u64>) {
        {
            let mut g = self.queued_at.lock().unwrap_or_else(|e| e.into_inner());
            for t in tickets {
                g.1.remove(&t);
            }
        }
        self.stored.notify_waiters();
    }

    /// Waits until a view may be admitted: the oldest unstored one is younger than
    /// [`ADMIT_WITHIN`]. Refused once it has waited [`ADMIT_WAIT`].
    async fn admission(&self) -> Result<(), StoreError> {
        let deadline = tokio::time::Instant::now() + ADMIT_WAIT;
        let mut waited = false;
        loop {
            let stored = self.stored.notified();
            tokio::pin!(stored);
            stored.as_mut().enable();
            let oldest = self.oldest();
            if oldest < ADMIT_WITHIN {
                return Ok(());
            }
            if !waited {
                // Counted once per page that has to wait.
                waited = true;
                metrics::counter!("lw_page_views_waited_total").increment(1);
            }
            // Woken when views are stored; or checked again when the oldest would have aged
            // out (it may have been stored by an append that notified before we listened).
            let recheck = tokio::time::Instant::now() + ADMIT_WITHIN;
            tokio::select! {
                _ = stored => {}
                _ = tokio::time::sleep_until(recheck.min(deadline)) => {}
            }
            if tokio::time::Instant::now() >= deadline && self.oldest() >= ADMIT_WITHIN {
                return Err(StoreError::Unavailable(
                    "page views cannot be stored now; try again shortly".into(),
                ));
            }
        }
    }
}

#[derive(Clone, Debug)]
pub struct HitRecorder {
    queue: mpsc::Sender<Queued>,
    unstored: Arc<Unstored>,
    /// Set to ask the recorder to store what is queued and stop.
    stop: Arc<tokio::sync::watch::Sender<bool>>,
    /// Turns true once the recorder stored everything and stopped.
    done: tokio::sync::watch::Receiver<bool>,
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
        let (tx, rx) = mpsc::channel(QUEUE);
        let (stop, stop_rx) = tokio::sync::watch::channel(false);
        let (done_tx, done) = tokio::sync::watch::channel(false);
        let unstored = Arc::new(Unstored::default());
        let u = unstored.clone();
        tokio::spawn(async move {
            run(
                store,
                u,
                rx,
                stop_rx,
                max_batch.clamp(1, lightwidget_store::MAX_EVENTS_PER_APPEND),
                linger,
            )
            .await;
            let _ = done_tx.send(true);
        });
        HitRecorder {
            queue: tx,
            unstored,
            stop: Arc::new(stop),
            done,
        }
    }

    /// Queues a page view (and the message it causes) to be stored within
    /// [`FLUSH_WITHIN`]; returns once it is queued. It waits first while the oldest view not
    /// yet stored is older than [`ADMIT_WITHIN`] (refused as unavailable after
    /// [`ADMIT_WAIT`]), and for room when the queue is full.
    pub async fn queue(
        &self,
        event: DomainEvent,
        message: Option<DomainEvent>,
    ) -> Result<(), StoreError> {
        check(&event, message.as_ref())?;
        self.unstored.admission().await?;
        let ticket = self.unstored.admit();
        let sent = self
            .queue
            .send((event, message, Answer::Queued(ticket)))
            .await;
        if sent.is_err() {
            self.unstored.done([ticket]);
            return Err(StoreError::Unavailable(
                "the hit recorder has stopped".into(),
            ));
        }
        Ok(())
    }

    /// How long ago the oldest queued view not yet stored was queued (zero when all are
    /// stored).
    pub fn oldest_unstored(&self) -> Duration {
        self.unstored.oldest()
    }

    /// Stores every hit queued so far and stops the recorder (a graceful stop): returns once
    /// they are stored (or given up after [`RETRY_FOR`]). Hits sent after it are refused.
    pub async fn drain(&self) {
        let _ = self.stop.send(true);
        let mut done = self.done.clone();
        let _ = done.wait_for(|d| *d).await;
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
        check(&event, message.as_ref())?;
        let (reply, answer) = oneshot::channel();
        self.queue
            .send((event, message, Answer::Reply(reply)))
            .await
            .map_err(|_| StoreError::Unavailable("the hit recorder has stopped".into()))?;
        answer
            .await
            .map_err(|_| StoreError::Unavailable("the hit recorder has stopped".into()))?
    }
}

/// Only views and clicks are recorded here, each with at most a queued message.
fn check(event: &DomainEvent, message: Option<&DomainEvent>) -> Result<(), StoreError> {
    if !matches!(
        event,
        DomainEvent::WidgetViewed(_) | DomainEvent::WidgetClicked(_)
    ) {
        return Err(StoreError::InvalidPayload(
            "only views and clicks are recorded here".into(),
        ));
    }
    if message.is_some_and(|m| !matches!(m, DomainEvent::MessageQueued(_))) {
        return Err(StoreError::InvalidPayload(
            "only a queued message goes with a hit".into(),
        ));
    }
    Ok(())
}

async fn run(
    store: Arc<dyn EventStore>,
    unstored: Arc<Unstored>,
    mut rx: mpsc::Receiver<Queued>,
    mut stop: tokio::sync::watch::Receiver<bool>,
    max: usize,
    linger: Duration,
) {
    let in_flight = Arc::new(tokio::sync::Semaphore::new(APPENDS_IN_FLIGHT));
    loop {
        let next = tokio::select! {
            biased;
            item = rx.recv() => Some(item),
            _ = stop.wait_for(|s| *s) => None,
        };
        let first = match next {
            Some(Some(item)) => item,
            Some(None) => break,
            None => {
                // A graceful stop: nothing more comes in; what is queued is stored.
                rx.close();
                match rx.recv().await {
                    Some(item) => item,
                    None => break,
                }
            }
        };
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
        // The next batch gathers while this one is stored.
        let Ok(permit) = in_flight.clone().acquire_owned().await else {
            break;
        };
        tokio::spawn(store_batch(store.clone(), unstored.clone(), batch, permit));
    }
    // Every clone is gone, or a graceful stop emptied the queue: wait for what is still
    // being stored.
    let _ = in_flight.acquire_many(APPENDS_IN_FLIGHT as u32).await;
}

/// The append of a batch of hits (and the messages they cause), with each hit's event index.
fn batch_request(batch: &[Queued]) -> (AppendRequest, Vec<u64>) {
    let meta = Metadata::anonymous();
    // Hits in order, HITS_PER_EVENT to an event; each hit learns its event's index.
    let mut events = Vec::new();
    let mut messages = Vec::new();
    let mut indexes = Vec::with_capacity(batch.len());
    for chunk in batch.chunks(HITS_PER_EVENT) {
        let mut hits = HitsRecorded {
            views: Vec::new(),
            clicks: Vec::new(),
        };
        let index = events.len() as u64;
        for (event, message, _) in chunk {
            if let Some(DomainEvent::MessageQueued(m)) = message {
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
                DomainEvent::WidgetViewed(v) => hits.views.push(v.clone()),
                DomainEvent::WidgetClicked(c) => hits.clicks.push(c.clone()),
                // `check` lets nothing else in.
                _ => {}
            }
            indexes.push(index);
        }
        events.push(NewEvent::from_domain(&hits.into(), &meta));
    }
    // The hits first, so that each index counts from the append's first position.
    let mut writes = vec![StreamWrite {
        stream: HITS_STREAM.to_owned(),
        expected: ExpectedVersion::Any,
        events,
    }];
    writes.extend(messages);
    (
        AppendRequest {
            writes,
            shred: vec![],
        },
        indexes,
    )
}

/// Appends one batch and answers its producers. When the append fails, those waiting are
/// answered the error at once, and the queued views (nobody waits for them) are appended
/// again, as the same events, until they are stored or [`RETRY_FOR`] has passed.
async fn store_batch(
    store: Arc<dyn EventStore>,
    unstored: Arc<Unstored>,
    batch: Vec<Queued>,
    _permit: tokio::sync::OwnedSemaphorePermit,
) {
    let (request, indexes) = batch_request(&batch);
    match store.append(request).await {
        Ok(r) => {
            let mut tickets = Vec::new();
            for ((_, _, answer), index) in batch.into_iter().zip(indexes) {
                match answer {
                    Answer::Reply(reply) => {
                        let _ = reply.send(Ok(r.first_position + index));
                    }
                    Answer::Queued(ticket) => tickets.push(ticket),
                }
            }
            if !tickets.is_empty() {
                unstored.done(tickets);
            }
        }
        Err(e) => {
            let message = e.to_string();
            let mut queued = Vec::new();
            for (event, msg, answer) in batch {
                match answer {
                    Answer::Reply(reply) => {
                        let _ = reply.send(Err(StoreError::Unavailable(message.clone())));
                    }
                    Answer::Queued(ticket) => queued.push((event, msg, Answer::Queued(ticket))),
                }
            }
            if !queued.is_empty() {
                retry_queued(&*store, &queued).await;
                unstored.done(queued.iter().filter_map(|(_, _, a)| match a {
                    Answer::Queued(t) => Some(*t),
                    Answer::Reply(_) => None,
                }));
            }
        }
    }
}

/// Appends queued views until they are stored, backing off from 100 ms to 2 s, for at most
/// [`RETRY_FOR`]. The same request each time (its event ids fixed): an append that was
/// stored but not answered is not stored twice.
async fn retry_queued(store: &dyn EventStore, queued: &[Queued]) {
    let (request, _) = batch_request(queued);
    let started = tokio::time::Instant::now();
    let mut wait = Duration::from_millis(100);
    loop {
        tokio::time::sleep(wait).await;
        match store.append(request.clone()).await {
            Ok(_) => return,
            Err(e) if started.elapsed() >= RETRY_FOR => {
                tracing::error!(
                    views = queued.len(),
                    error = %e,
                    "queued page views could not be stored and are lost"
                );
                return;
            }
            Err(e) => tracing::warn!(error = %e, "storing queued page views; trying again"),
        }
        wait = (wait * 2).min(Duration::from_secs(2));
    }
}

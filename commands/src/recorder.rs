//! The batching path for views and clicks (R1, R2): producers hand events to a recorder task
//! that appends whatever has queued — up to 1,000 events — as one atomic append, one stream
//! write per widget (`views-<widget>`). A producer's `record` returns only once its event is
//! stored: nothing acknowledged is lost.

use lightwidget_domain::DomainEvent;
use lightwidget_store::{
    AppendRequest, EventStore, ExpectedVersion, Metadata, NewEvent, StoreError, StreamWrite,
};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};

type Reply = oneshot::Sender<Result<u64, StoreError>>;

/// How long the recorder waits for more events before appending a batch.
pub const DEFAULT_LINGER: Duration = Duration::from_millis(2);

/// The stream a widget's views and clicks go to.
pub fn hits_stream(e: &DomainEvent) -> Option<String> {
    match e {
        DomainEvent::WidgetViewed(v) => Some(format!("views-{}", v.widget_id)),
        DomainEvent::WidgetClicked(c) => Some(format!("views-{}", c.widget_id)),
        _ => None,
    }
}

#[derive(Clone, Debug)]
pub struct HitRecorder {
    queue: mpsc::Sender<(NewEvent, String, Reply)>,
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

    /// Stores a `WidgetViewed` or `WidgetClicked`; returns its log position.
    pub async fn record(&self, event: &DomainEvent, meta: &Metadata) -> Result<u64, StoreError> {
        let stream = hits_stream(event).ok_or_else(|| {
            StoreError::InvalidPayload("only views and clicks are recorded here".into())
        })?;
        let (reply, answer) = oneshot::channel();
        self.queue
            .send((NewEvent::from_domain(event, meta), stream, reply))
            .await
            .map_err(|_| StoreError::Unavailable("the hit recorder has stopped".into()))?;
        answer
            .await
            .map_err(|_| StoreError::Unavailable("the hit recorder has stopped".into()))?
    }
}

async fn run(
    store: Arc<dyn EventStore>,
    mut rx: mpsc::Receiver<(NewEvent, String, Reply)>,
    max: usize,
    linger: Duration,
) {
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
        // One write per stream; remember where each event went.
        let mut by_stream: BTreeMap<String, Vec<(NewEvent, Reply)>> = BTreeMap::new();
        for (event, stream, reply) in batch {
            by_stream.entry(stream).or_default().push((event, reply));
        }
        let mut writes = Vec::with_capacity(by_stream.len());
        let mut replies = Vec::new();
        for (stream, items) in by_stream {
            let mut events = Vec::with_capacity(items.len());
            for (event, reply) in items {
                events.push(event);
                replies.push(reply);
            }
            writes.push(StreamWrite {
                stream,
                expected: ExpectedVersion::Any,
                events,
            });
        }
        match store
            .append(AppendRequest {
                writes,
                shred: vec![],
            })
            .await
        {
            Ok(r) => {
                // Events were written in the order of `replies`, from first_position on.
                for (i, reply) in replies.into_iter().enumerate() {
                    let _ = reply.send(Ok(r.first_position + i as u64));
                }
            }
            Err(e) => {
                let message = e.to_string();
                for reply in replies {
                    let _ = reply.send(Err(StoreError::Unavailable(message.clone())));
                }
            }
        }
    }
}

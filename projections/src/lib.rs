//! Read models as projections of the log, and the runner that keeps them in a [`ViewStore`].
//!
//! A projection has a name, says which of its documents an event needs to read
//! ([`Projection::reads`]), and turns the event into document changes
//! ([`Projection::handle`]). The [`Runner`] reads the log after the view's checkpoint in
//! batches, prefetches the documents the batch reads, applies the projection in memory, and
//! commits the changes together with the new checkpoint in one transaction: a crash can
//! neither lose nor double-apply an event. A conditional checkpoint (`from` → `to`) makes two
//! runners of one view harmless: the slower one's commit is refused and it reloads.

pub mod models;

use lightwidget_domain::DomainEvent;
use lightwidget_store::{DocChange, EventStore, RecordedEvent, StoreError, ViewDoc, ViewStore};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

/// Read access to a view's current documents while an event is handled.
pub trait ViewReader {
    fn get(&self, key: &str) -> Option<&ViewDoc>;
}

impl ViewReader for BTreeMap<String, ViewDoc> {
    fn get(&self, key: &str) -> Option<&ViewDoc> {
        BTreeMap::get(self, key)
    }
}

/// A read model. `handle` must be deterministic: the same history yields the same documents,
/// which is what makes rebuilds and "as of" replays agree with the live view.
pub trait Projection: Send + Sync {
    fn name(&self) -> &'static str;
    /// The keys of the documents `handle` reads for this event. The runner asks again with
    /// the documents it loaded so far (up to four rounds), so a projection can follow a
    /// reference: first the index document, then the one it names. Documents created earlier
    /// in the same batch are always visible to `handle`.
    fn reads(
        &self,
        event: &RecordedEvent,
        domain: &DomainEvent,
        loaded: &dyn ViewReader,
    ) -> Vec<String>;
    fn handle(
        &self,
        event: &RecordedEvent,
        domain: &DomainEvent,
        view: &dyn ViewReader,
    ) -> Vec<DocChange>;
}

#[derive(Debug, thiserror::Error)]
pub enum ProjectionError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("event at position {position} could not be decoded: {message}")]
    Decode { position: u64, message: String },
    #[error(
        "view `{view}` did not reach position {wanted} within the time allowed (at {reached})"
    )]
    NotReached {
        view: String,
        wanted: u64,
        reached: u64,
    },
}

fn decode(e: &RecordedEvent) -> Result<DomainEvent, ProjectionError> {
    e.to_domain().map_err(|err| ProjectionError::Decode {
        position: e.position,
        message: err.to_string(),
    })
}

/// Applies changes to an in-memory view.
pub fn apply(view: &mut BTreeMap<String, ViewDoc>, changes: Vec<DocChange>) {
    for c in changes {
        match c {
            DocChange::Put(doc) => {
                view.insert(doc.key.clone(), doc);
            }
            DocChange::Delete(key) => {
                view.remove(&key);
            }
        }
    }
}

/// The projection's documents as they stood after position `at` (inclusive), computed by
/// streaming the log in batches — the log is never loaded whole.
pub async fn evaluate_as_of(
    store: &dyn EventStore,
    projection: &dyn Projection,
    at: u64,
) -> Result<BTreeMap<String, ViewDoc>, ProjectionError> {
    let mut view = BTreeMap::new();
    let mut after = 0;
    while after < at {
        let limit = (at - after).min(1000) as usize;
        let batch = store.read_all(after, limit).await?;
        let Some(last) = batch.last() else { break };
        after = last.position;
        for e in &batch {
            let domain = decode(e)?;
            let changes = projection.handle(e, &domain, &view);
            apply(&mut view, changes);
        }
    }
    Ok(view)
}

/// The first position whose event was recorded after `time`, minus one: "as of a time" is
/// "as of the last position recorded at or before it".
pub async fn position_at_time(
    store: &dyn EventStore,
    time: chrono::DateTime<chrono::Utc>,
) -> Result<u64, ProjectionError> {
    let mut after = 0;
    loop {
        let batch = store.read_all_raw(after, 1000).await?;
        let Some(last) = batch.last() else {
            return Ok(after);
        };
        if let Some(e) = batch.iter().find(|e| e.recorded_at > time) {
            return Ok(e.position - 1);
        }
        after = last.position;
    }
}

/// What one step of a runner did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Step {
    /// A batch was applied; the view is now at `checkpoint`.
    Applied { events: usize, checkpoint: u64 },
    /// Nothing new after `checkpoint`.
    CaughtUp { checkpoint: u64 },
    /// Another runner moved the checkpoint first; nothing was applied.
    Raced,
}

/// Keeps one view of one projection up to date.
pub struct Runner {
    events: Arc<dyn EventStore>,
    views: Arc<dyn ViewStore>,
    projection: Arc<dyn Projection>,
    view: String,
    batch_size: usize,
}

impl std::fmt::Debug for Runner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Runner").field("view", &self.view).finish()
    }
}

impl Runner {
    pub fn new(
        events: Arc<dyn EventStore>,
        views: Arc<dyn ViewStore>,
        projection: Arc<dyn Projection>,
    ) -> Self {
        let view = projection.name().to_owned();
        Runner {
            events,
            views,
            projection,
            view,
            batch_size: 1000,
        }
    }

    /// Writes into another view name (a rebuild builds beside the live view).
    pub fn into_view(mut self, view: impl Into<String>) -> Self {
        self.view = view.into();
        self
    }

    pub fn with_batch_size(mut self, n: usize) -> Self {
        self.batch_size = n.max(1);
        self
    }

    pub fn view(&self) -> &str {
        &self.view
    }

    /// Applies at most one batch.
    pub async fn step(&self) -> Result<Step, ProjectionError> {
        let from = self.views.checkpoint(&self.view).await?;
        let batch = self.events.read_all(from, self.batch_size).await?;
        let Some(last) = batch.last() else {
            return Ok(Step::CaughtUp { checkpoint: from });
        };
        let to = last.position;
        let decoded = batch.iter().map(decode).collect::<Result<Vec<_>, _>>()?;
        let mut view: BTreeMap<String, ViewDoc> = BTreeMap::new();
        let mut requested = BTreeSet::new();
        for _round in 0..4 {
            let mut keys = BTreeSet::new();
            for (e, d) in batch.iter().zip(&decoded) {
                for k in self.projection.reads(e, d, &view) {
                    if !requested.contains(&k) {
                        keys.insert(k);
                    }
                }
            }
            if keys.is_empty() {
                break;
            }
            requested.extend(keys.iter().cloned());
            let docs = self
                .views
                .get_many(&self.view, &keys.into_iter().collect::<Vec<_>>())
                .await?;
            view.extend(docs.into_iter().map(|d| (d.key.clone(), d)));
        }
        let mut changes = Vec::new();
        for (e, d) in batch.iter().zip(&decoded) {
            let c = self.projection.handle(e, d, &view);
            apply(&mut view, c.clone());
            changes.extend(c);
        }
        match self.views.commit(&self.view, from, to, &changes).await {
            Ok(()) => Ok(Step::Applied {
                events: batch.len(),
                checkpoint: to,
            }),
            Err(StoreError::Conflict { .. }) => Ok(Step::Raced),
            Err(e) => Err(e.into()),
        }
    }

    /// Applies batches until the view has reached the log's head as it was read.
    pub async fn catch_up(&self) -> Result<u64, ProjectionError> {
        loop {
            match self.step().await? {
                Step::CaughtUp { checkpoint } => return Ok(checkpoint),
                Step::Applied { .. } | Step::Raced => {}
            }
        }
    }

    /// Catches up, then follows the log until `stop` resolves; stops between batches, at a
    /// checkpoint.
    pub async fn run(
        &self,
        stop: impl std::future::Future<Output = ()>,
    ) -> Result<(), ProjectionError> {
        tokio::pin!(stop);
        loop {
            let step = tokio::select! {
                _ = &mut stop => return Ok(()),
                s = self.step() => s?,
            };
            if let Step::CaughtUp { checkpoint } = step {
                tokio::select! {
                    _ = &mut stop => return Ok(()),
                    _ = self.events.wait_for(checkpoint, Duration::from_millis(500)) => {}
                }
            }
        }
    }
}

/// Rebuilds a projection from position 0 beside the live view, then swaps it in: queries keep
/// reading the old documents until the new ones are complete.
pub async fn rebuild(
    events: Arc<dyn EventStore>,
    views: Arc<dyn ViewStore>,
    projection: Arc<dyn Projection>,
) -> Result<u64, ProjectionError> {
    let live = projection.name().to_owned();
    let building = format!("{live}#rebuild");
    views.drop_view(&building).await?;
    let runner = Runner::new(events, views.clone(), projection).into_view(building.clone());
    let checkpoint = runner.catch_up().await?;
    views.swap(&building, &live).await?;
    Ok(checkpoint)
}

/// Waits until `view` has reached `position` (read-your-writes), at most `timeout`.
pub async fn wait_for_position(
    views: &dyn ViewStore,
    view: &str,
    position: u64,
    timeout: Duration,
) -> Result<(), ProjectionError> {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let reached = views.checkpoint(view).await?;
        if reached >= position {
            return Ok(());
        }
        if tokio::time::Instant::now() >= deadline {
            return Err(ProjectionError::NotReached {
                view: view.to_owned(),
                wanted: position,
                reached,
            });
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

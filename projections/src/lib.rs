//! Read models as projections of the log, and the runner that keeps them in a [`ViewStore`].
//!
//! A projection has a name, says which of its documents an event needs to read
//! ([`Projection::reads`]), and turns the event into document changes
//! ([`Projection::handle`]). The [`Runner`] reads the log after the view's checkpoint in
//! batches, prefetches the documents the batch reads, applies the projection in memory, and
//! commits the changes together with the new checkpoint in one transaction: a crash can
//! neither lose nor double-apply an event. A conditional checkpoint (`from` → `to`) makes two
//! runners of one view harmless: the slower one's commit is refused and it reloads.

pub mod cache;
pub mod docs;
pub mod gate;
pub mod models;
pub mod tail;

use docs::{DocMap, InFlight};
use lightwidget_domain::DomainEvent;
use lightwidget_store::{
    DocChange, EventStore, RecordedEvent, StoreError, StoredEvent, ViewDoc, ViewStore,
};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;
use tail::{LogTail, TailEvent};

/// Read access to a view's current documents while an event is handled.
pub trait ViewReader {
    fn get(&self, key: &str) -> Option<&ViewDoc>;
}

impl ViewReader for BTreeMap<String, ViewDoc> {
    fn get(&self, key: &str) -> Option<&ViewDoc> {
        BTreeMap::get(self, key)
    }
}

/// The documents a batch works on, changed in place by `handle`, remembering what it
/// touched so that the runner commits each touched document once, as it ended up.
#[derive(Debug, Default)]
pub struct Overlay {
    docs: BTreeMap<String, ViewDoc>,
    touched: BTreeSet<String>,
    owners: BTreeSet<String>,
}

impl ViewReader for Overlay {
    fn get(&self, key: &str) -> Option<&ViewDoc> {
        self.docs.get(key)
    }
}

impl Overlay {
    pub fn get(&self, key: &str) -> Option<&ViewDoc> {
        self.docs.get(key)
    }

    /// The document to change in place.
    pub fn get_mut(&mut self, key: &str) -> Option<&mut ViewDoc> {
        let doc = self.docs.get_mut(key)?;
        if !self.touched.contains(key) {
            self.touched.insert(key.to_owned());
        }
        Some(doc)
    }

    pub fn put(&mut self, doc: ViewDoc) {
        self.touched.insert(doc.key.clone());
        self.docs.insert(doc.key.clone(), doc);
    }

    pub fn delete(&mut self, key: &str) {
        self.touched.insert(key.to_owned());
        self.docs.remove(key);
    }

    /// Deletes every document of `owner`, also those never loaded.
    pub fn delete_owner(&mut self, owner: &str) {
        self.owners.insert(owner.to_owned());
        let gone: Vec<String> = self
            .docs
            .values()
            .filter(|d| d.owner.as_deref() == Some(owner))
            .map(|d| d.key.clone())
            .collect();
        for k in gone {
            self.delete(&k);
        }
    }

    /// Applies a list of changes, for projections that compute new documents whole.
    pub fn apply(&mut self, changes: Vec<DocChange>) {
        for c in changes {
            match c {
                DocChange::Put(doc) => self.put(doc),
                DocChange::Delete(key) => self.delete(&key),
                DocChange::DeleteOwner(owner) => self.delete_owner(&owner),
            }
        }
    }

    fn load(&mut self, docs: Vec<ViewDoc>) {
        self.docs
            .extend(docs.into_iter().map(|d| (d.key.clone(), d)));
    }

    /// What to commit — owners deleted first, then each touched key as it ended up — and
    /// the documents loaded but left untouched.
    fn into_changes(mut self) -> (Vec<DocChange>, Vec<ViewDoc>) {
        let mut out: Vec<DocChange> = std::mem::take(&mut self.owners)
            .into_iter()
            .map(DocChange::DeleteOwner)
            .collect();
        for k in std::mem::take(&mut self.touched) {
            out.push(match self.docs.remove(&k) {
                Some(doc) => DocChange::Put(doc),
                None => DocChange::Delete(k),
            });
        }
        (out, self.docs.into_values().collect())
    }

    pub fn into_docs(self) -> BTreeMap<String, ViewDoc> {
        self.docs
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
    /// Applies one event to the documents, in place.
    fn handle(&self, event: &RecordedEvent, domain: &DomainEvent, view: &mut Overlay);
    /// Applies consecutive events of the log, in order. The default hands them to `handle`
    /// one at a time. A projection may fold a run of events whose combined effect it can
    /// compute with less work, as long as the documents come out exactly as `handle` one
    /// event at a time would leave them.
    fn handle_batch(&self, events: &[RecordedEvent], domain: &[DomainEvent], view: &mut Overlay) {
        for (e, d) in events.iter().zip(domain) {
            self.handle(e, d, view);
        }
    }
    /// The event types `handle` reacts to, or `None` for all. The runner neither opens nor
    /// decodes the others (it still moves the checkpoint past them): a projection of
    /// accounts does not pay for every view of every widget.
    fn event_types(&self) -> Option<&'static [&'static str]> {
        None
    }
    /// How long a following runner lets new events gather after the log moves, before it
    /// reads them: larger batches, so fewer document writes per event, for read models that
    /// can lag a little (counters). Zero: read at once.
    fn linger(&self) -> Duration {
        Duration::ZERO
    }
    /// Whether `reads` may name further documents once the first ones are loaded (a
    /// reference to follow). A projection whose keys come from the event alone says no, and
    /// the runner asks it once per event instead of once per round.
    fn follows_references(&self) -> bool {
        true
    }
    /// Whether `handle` reads personal fields. A projection that does not is fed events with
    /// every personal field erased, decoded straight from the stored text with no key
    /// touched; `event.data` is null (read the domain event instead) and the envelope holds
    /// only position, stream, version, type, schema version and time.
    fn needs_personal_data(&self) -> bool {
        true
    }
    /// Whether `handle` reads personal fields of events of this type: by default
    /// [`Projection::needs_personal_data`] for every type. The runner opens only the events
    /// of types that say yes; the others it decodes as for a projection that needs none (every
    /// personal field erased, `event.data` null), with no key looked up or unwrapped.
    fn opens(&self, event_type: &str) -> bool {
        let _ = event_type;
        self.needs_personal_data()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ProjectionError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("event at position {position} could not be decoded: {message}")]
    Decode { position: u64, message: String },
    #[error("a runner task failed: {0}")]
    Task(String),
    #[error(
        "view `{view}` did not reach position {wanted} within the time allowed (at {reached})"
    )]
    NotReached {
        view: String,
        wanted: u64,
        reached: u64,
    },
}

/// A batch of events after `after`, decoded — opened when the projection needs personal
/// data, else straight from the stored text — keeping only the types the projection handles;
/// and the position of the batch's last event, handled or not (`None`: nothing to read).
async fn read_decoded(
    store: &dyn EventStore,
    projection: &dyn Projection,
    after: u64,
    limit: usize,
) -> Result<Batch, ProjectionError> {
    read_decoded_from(store, None, projection, after, limit).await
}

/// [`read_decoded`], from the process's [`LogTail`] when it holds the events after `after`.
async fn read_decoded_from(
    store: &dyn EventStore,
    tail: Option<&LogTail>,
    projection: &dyn Projection,
    after: u64,
    limit: usize,
) -> Result<Batch, ProjectionError> {
    if let Some(tail) = tail {
        if let Some(events) = tail.after(after, limit).await? {
            return from_tail(store, projection, &events, limit).await;
        }
    }
    let (raw, end) = match projection.event_types() {
        Some(types) => {
            let (raw, end) = store.read_all_light_of(after, limit, types).await?;
            (raw, (end > after).then_some(end))
        }
        None => {
            let raw = store.read_all_light(after, limit).await?;
            let end = raw.last().map(|e| e.position);
            (raw, end)
        }
    };
    let full = raw.len() >= limit;
    // The events of types the projection opens are opened together (one key look-up), the
    // others decoded sealed; then both go back into log order.
    let opens: Vec<bool> = raw
        .iter()
        .map(|e| projection.opens(&e.event_type))
        .collect();
    let (to_open, sealed): (Vec<_>, Vec<_>) = raw
        .into_iter()
        .partition(|e| projection.opens(&e.event_type));
    let mut opened = if to_open.is_empty() {
        Vec::new()
    } else {
        lightwidget_store::open_events(store, to_open).await?
    }
    .into_iter();
    let mut sealed = sealed.into_iter();
    let mut batch = Vec::with_capacity(opens.len());
    let mut decoded = Vec::with_capacity(opens.len());
    for open in opens {
        let next = if open {
            opened.next().map(|e| decode(&e).map(|d| (e, d)))
        } else {
            sealed.next().map(|e| {
                let d = e.decode_sealed().map_err(|err| ProjectionError::Decode {
                    position: e.position,
                    message: err.to_string(),
                })?;
                Ok((e.into_envelope(), d))
            })
        };
        // Each flag has its event in one of the two lists.
        let Some(next) = next else { break };
        let (e, d) = next?;
        batch.push(e);
        decoded.push(d);
    }
    Ok(Batch {
        events: batch,
        decoded,
        scanned_to: end,
        full,
    })
}

/// A batch from events of the tail: the projection's types only, those it opens opened (by
/// this runner, with one key look-up), the others decoded sealed once for every runner.
async fn from_tail(
    store: &dyn EventStore,
    projection: &dyn Projection,
    scanned: &[Arc<TailEvent>],
    limit: usize,
) -> Result<Batch, ProjectionError> {
    let types = projection.event_types();
    let wanted: Vec<&TailEvent> = scanned
        .iter()
        .map(|e| &**e)
        .filter(|e| types.is_none_or(|t| t.contains(&e.stored.event_type.as_str())))
        .collect();
    let to_open: Vec<StoredEvent> = wanted
        .iter()
        .filter(|e| projection.opens(&e.stored.event_type))
        .map(|e| e.stored.clone())
        .collect();
    let mut opened = if to_open.is_empty() {
        Vec::new()
    } else {
        lightwidget_store::open_events(store, to_open).await?
    }
    .into_iter();
    let mut events = Vec::with_capacity(wanted.len());
    let mut decoded = Vec::with_capacity(wanted.len());
    for e in wanted {
        let (event, domain) = if projection.opens(&e.stored.event_type) {
            let Some(event) = opened.next() else { break };
            let domain = decode(&event)?;
            (event, domain)
        } else {
            let domain = e.sealed().map_err(|message| ProjectionError::Decode {
                position: e.stored.position,
                message: message.to_owned(),
            })?;
            (e.stored.clone().into_envelope(), domain.clone())
        };
        events.push(event);
        decoded.push(domain);
    }
    Ok(Batch {
        events,
        decoded,
        scanned_to: scanned.last().map(|e| e.stored.position),
        full: scanned.len() >= limit,
    })
}

fn decode(e: &RecordedEvent) -> Result<DomainEvent, ProjectionError> {
    e.to_domain().map_err(|err| ProjectionError::Decode {
        position: e.position,
        message: err.to_string(),
    })
}

/// A projection fed no personal data: every personal field reads erased, no key is touched.
/// What a replay computes for a reader who did not ask to see personal data: the documents
/// that differ from the opened ones are the ones personal data shaped.
pub struct WithoutPersonalData<'a>(pub &'a dyn Projection);

impl Projection for WithoutPersonalData<'_> {
    fn name(&self) -> &'static str {
        self.0.name()
    }
    fn reads(
        &self,
        event: &RecordedEvent,
        domain: &DomainEvent,
        loaded: &dyn ViewReader,
    ) -> Vec<String> {
        self.0.reads(event, domain, loaded)
    }
    fn handle(&self, event: &RecordedEvent, domain: &DomainEvent, view: &mut Overlay) {
        self.0.handle(event, domain, view)
    }
    fn handle_batch(&self, events: &[RecordedEvent], domain: &[DomainEvent], view: &mut Overlay) {
        self.0.handle_batch(events, domain, view)
    }
    fn event_types(&self) -> Option<&'static [&'static str]> {
        self.0.event_types()
    }
    fn follows_references(&self) -> bool {
        self.0.follows_references()
    }
    fn needs_personal_data(&self) -> bool {
        false
    }
    fn opens(&self, _event_type: &str) -> bool {
        false
    }
}

/// The projection's documents as they stood after position `at` (inclusive), computed by
/// streaming the log in batches — the log is never loaded whole.
pub async fn evaluate_as_of(
    store: &dyn EventStore,
    projection: &dyn Projection,
    at: u64,
) -> Result<BTreeMap<String, ViewDoc>, ProjectionError> {
    let mut view = Overlay::default();
    let mut after = 0;
    while after < at {
        let limit = (at - after).min(1000) as usize;
        let Batch {
            events: mut batch,
            mut decoded,
            scanned_to,
            ..
        } = read_decoded(store, projection, after, limit).await?;
        let Some(end) = scanned_to else { break };
        // A read of some types scans to the head: keep what is at or before `at`.
        let keep = batch.iter().take_while(|e| e.position <= at).count();
        batch.truncate(keep);
        decoded.truncate(keep);
        after = end.min(at);
        projection.handle_batch(&batch, &decoded, &mut view);
        // Nothing is committed here: forget what was touched as it goes.
        view.touched.clear();
        view.owners.clear();
    }
    Ok(view.into_docs())
}

/// The first position whose event was recorded after `time`, minus one: "as of a time" is
/// "as of the last position recorded at or before it".
pub async fn position_at_time(
    store: &dyn EventStore,
    time: chrono::DateTime<chrono::Utc>,
) -> Result<u64, ProjectionError> {
    let mut after = 0;
    loop {
        let batch = store
            .read_all_raw(after, lightwidget_store::LOG_PAGE)
            .await?;
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
    /// The documents as this runner last committed them, valid while the view's checkpoint
    /// is still the one it committed: a commit by anyone else moves the checkpoint, and the
    /// cache is dropped. `None` = known absent.
    cache: std::sync::Mutex<Option<DocCache>>,
    /// The process's tail of the log, shared with its other runners, read from while this
    /// runner follows the log near its head.
    tail: Option<Arc<LogTail>>,
    /// The bytes of documents the cache holds at most.
    cache_bytes: u64,
    /// The batch size of [`Runner::run`]'s catch-up when it finds itself behind.
    catch_up_batch: usize,
    /// Turns among the process's runners far behind the head, shared with them.
    gate: Option<Arc<gate::CatchUpGate>>,
}

struct DocCache {
    checkpoint: u64,
    docs: DocMap,
}

/// How long a following runner lets events gather after a batch that held none of its
/// projection's events.
pub const PASSED_OVER_LINGER: Duration = Duration::from_millis(20);

/// The batch size of a following runner's catch-up when it finds itself behind: a
/// rebuild's, so that a fresh server (or one behind after a restart) catches up at the speed
/// of a rebuild rather than a live batch's (issue 28).
pub const CATCH_UP_BATCH: usize = 10_000;

/// A batch of events read for a runner.
struct Batch {
    /// The events the projection handles, in log order.
    events: Vec<RecordedEvent>,
    /// Their decoded form, one for each event.
    decoded: Vec<DomainEvent>,
    /// The position the read scanned to, handled or not (`None`: nothing new).
    scanned_to: Option<u64>,
    /// Whether the read stopped at its limit (more may follow at once).
    full: bool,
}

/// How a catch-up ended.
enum CaughtUp {
    /// At the log's head as it was read: the view's checkpoint.
    To(u64),
    /// Stopped between commits; what landed stays.
    Stopped,
}

/// Waits for a spawned task; a task that panicked or was cancelled is an error.
async fn join<T>(task: tokio::task::JoinHandle<T>) -> Result<T, ProjectionError> {
    task.await.map_err(|e| ProjectionError::Task(e.to_string()))
}

/// A catch-up's commit in flight: it takes the view's checkpoint to `to`, and the next batch
/// reads the documents it writes from `docs`, since the store has not got them yet.
struct Pending {
    to: u64,
    task: tokio::task::JoinHandle<Result<(), StoreError>>,
    docs: InFlight,
}

/// What became of a commit in flight once awaited.
enum Landed {
    /// None was in flight.
    Nothing,
    /// It landed: the checkpoint is its `to`.
    At(u64),
    /// Refused: another runner moved the checkpoint first.
    Refused,
}

/// Awaits the commit in flight, if any; when it landed, its documents go into `cached`.
async fn land(pending: Option<Pending>, cached: &mut DocMap) -> Result<Landed, ProjectionError> {
    let Some(p) = pending else {
        return Ok(Landed::Nothing);
    };
    match join(p.task).await? {
        Ok(()) => {
            p.docs.land(cached);
            Ok(Landed::At(p.to))
        }
        Err(StoreError::Conflict { .. }) => Ok(Landed::Refused),
        Err(e) => Err(e.into()),
    }
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
        // What the storage says suits a runner that follows the log (rebuilds ask for more).
        let batch_size = views.live_batch_size();
        Runner {
            events,
            views,
            projection,
            view,
            batch_size,
            cache: std::sync::Mutex::new(None),
            tail: None,
            cache_bytes: docs::RUNNER_CACHE_BYTES,
            catch_up_batch: CATCH_UP_BATCH,
            gate: None,
        }
    }

    /// Takes turns through `gate` with the process's other runners while far behind the
    /// head: the least remaining work first (see [`gate`]).
    pub fn with_catch_up_gate(mut self, gate: Arc<gate::CatchUpGate>) -> Self {
        self.gate = Some(gate);
        self
    }

    /// Catches up in batches of `n` when [`Runner::run`] finds itself behind
    /// ([`CATCH_UP_BATCH`] by default).
    pub fn with_catch_up_batch(mut self, n: usize) -> Self {
        self.catch_up_batch = n.max(1);
        self
    }

    /// Holds at most `bytes` of documents in memory (as [`docs::doc_bytes`] counts them).
    pub fn with_cache_bytes(mut self, bytes: u64) -> Self {
        self.cache_bytes = bytes;
        self
    }

    /// Follows the log through `tail`, shared with the process's other runners.
    pub fn with_tail(mut self, tail: Arc<LogTail>) -> Self {
        self.tail = Some(tail);
        self
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
        Ok(self.step_from(None).await?.0)
    }

    /// One batch from `known` (the checkpoint this runner committed last; read from the
    /// store when `None`), and whether the read stopped at its limit (more may follow).
    async fn step_from(&self, known: Option<u64>) -> Result<(Step, bool), ProjectionError> {
        let from = match known {
            Some(at) => at,
            None => self.views.checkpoint(&self.view).await?,
        };
        let batch = read_decoded_from(
            &*self.events,
            self.tail.as_deref(),
            &*self.projection,
            from,
            self.batch_size,
        )
        .await?;
        let more = batch.full;
        let Some(to) = batch.scanned_to else {
            return Ok((Step::CaughtUp { checkpoint: from }, false));
        };
        let mut cached = self.take_cache(from);
        let changes = self.prepare(&batch, &mut cached, None).await?;
        match self.views.commit(&self.view, from, to, &changes).await {
            Ok(()) => {
                // The documents committed become the cache as they are: moved, not copied.
                cached.absorb(changes);
                self.keep_cache(to, cached);
                Ok((
                    Step::Applied {
                        events: batch.events.len(),
                        checkpoint: to,
                    },
                    more,
                ))
            }
            // Another runner moved the checkpoint (or `known` was stale): nothing applied.
            Err(StoreError::Conflict { .. }) => Ok((Step::Raced, false)),
            Err(e) => Err(e.into()),
        }
    }

    /// Applies batches until the view has reached the log's head as it was read, as a
    /// pipeline: while batch N commits, N+1 is handled and N+2 read. Handling N+1 builds on
    /// N's documents as committed in memory; should N's commit be refused, the work built on
    /// it is dropped and the runner starts again from the stored checkpoint.
    pub async fn catch_up(&self) -> Result<u64, ProjectionError> {
        let never = std::pin::pin!(std::future::pending::<()>());
        match self.catch_up_in(self.batch_size, never).await? {
            CaughtUp::To(at) => Ok(at),
            // `never` does not resolve; were it to, the stored checkpoint is where it stopped.
            CaughtUp::Stopped => Ok(self.views.checkpoint(&self.view).await?),
        }
    }

    /// [`Runner::catch_up`] in batches of `batch_size` events, until `stop` resolves. A stop
    /// is heard while the next batch is read; the commit in flight then lands (or is refused)
    /// before this returns, so nothing this runner started still writes after it.
    async fn catch_up_in<S: std::future::Future<Output = ()>>(
        &self,
        batch_size: usize,
        mut stop: std::pin::Pin<&mut S>,
    ) -> Result<CaughtUp, ProjectionError> {
        // Far behind the head, batches are read, handled and committed on this runner's turn
        // (see [`gate`]).
        let mut pace = gate::Pace::default();
        let mut turn = None;
        'restart: loop {
            let mut from = self.views.checkpoint(&self.view).await?;
            // Where the log ends, for the turns' estimates (read again once passed).
            let mut head = match self.gate {
                Some(_) => self.events.head().await?.position,
                None => 0,
            };
            // The events of this runner's types up to there, and those handled since.
            let mut left = self.events_left(from, head).await?;
            tracing::debug!(view = %self.view, from, head, left, "catch-up: counted");
            // Far behind with few events of its types: no turns, and none for the others
            // until this catch-up ends.
            let _light = self
                .gate
                .as_deref()
                .filter(|g| left > 0 && left < g.behind())
                .map(|g| g.light());
            let mut handled = 0u64;
            let mut cached = self.take_cache(from);
            // Far behind, even the first read waits for this runner's turn.
            if let Some(gate) = self.far_behind(left) {
                if turn.is_none() {
                    let remaining = pace.remaining(left);
                    tokio::select! {
                        biased;
                        _ = stop.as_mut() => return Ok(CaughtUp::Stopped),
                        t = gate.turn(remaining, 0) => turn = Some(t),
                    }
                    tracing::debug!(view = %self.view, ?remaining, "catch-up: first turn");
                }
            }
            let mut reading = self.spawn_read(from, read_size(batch_size, &turn, &pace));
            let mut pending: Option<Pending> = None;
            loop {
                let batch = tokio::select! {
                    biased;
                    _ = stop.as_mut() => {
                        reading.abort();
                        None
                    }
                    read = &mut reading => {
                        Some(read.map_err(|e| ProjectionError::Task(e.to_string()))??)
                    }
                };
                // At the head (a batch that scanned nothing), or stopped (none read).
                let next_batch = batch.as_ref().and_then(|b| b.scanned_to.map(|to| (b, to)));
                let Some((batch, to)) = next_batch else {
                    // The commit in flight lands before this returns.
                    match land(pending.take(), &mut cached).await? {
                        Landed::At(done) => {
                            self.keep_cache(done, cached);
                            from = done;
                        }
                        Landed::Refused if batch.is_some() => continue 'restart,
                        // Stopped, and the commit refused: another runner moved the
                        // checkpoint; the next start reads it.
                        Landed::Refused => return Ok(CaughtUp::Stopped),
                        Landed::Nothing => {}
                    }
                    tracing::debug!(view = %self.view, at = from, handled, "catch-up: ended");
                    return Ok(match batch {
                        Some(_) => CaughtUp::To(from),
                        None => CaughtUp::Stopped,
                    });
                };
                if to >= head && self.gate.is_some() {
                    let now = self.events.head().await?.position;
                    left += self.events_left(head, now).await?;
                    head = now;
                }
                // Far behind, this runner reads, handles and commits only on its turn: it
                // keeps the turn, or lands its commit in flight and gives the turn up to a
                // runner with less work waiting, then waits for it again.
                match self.far_behind(left.saturating_sub(handled)) {
                    None => turn = None,
                    Some(gate) => {
                        if let Some(held) = turn.as_mut() {
                            pace.record_since(held, handled);
                        }
                        let remaining = pace.remaining(left.saturating_sub(handled));
                        if turn.is_none() || gate.others_first(remaining) {
                            if let Landed::Refused = land(pending.take(), &mut cached).await? {
                                continue 'restart;
                            }
                            // Given up before the wait: the gate is free for the others.
                            drop(turn.take());
                            tokio::select! {
                                biased;
                                _ = stop.as_mut() => {
                                    // Nothing in flight: the commit before `batch` landed.
                                    self.keep_cache(from, cached);
                                    return Ok(CaughtUp::Stopped);
                                }
                                t = gate.turn(remaining, handled) => turn = Some(t),
                            }
                            tracing::debug!(view = %self.view, handled, ?remaining, "catch-up: turn");
                        }
                    }
                }
                reading = self.spawn_read(to, read_size(batch_size, &turn, &pace));
                let in_flight = pending.as_mut().map(|p| &mut p.docs);
                let changes = self.prepare(batch, &mut cached, in_flight).await?;
                handled += batch.events.len() as u64;
                let docs = InFlight::of(&changes);
                let landed = land(pending.take(), &mut cached).await;
                if !matches!(landed, Ok(Landed::Nothing | Landed::At(_))) {
                    reading.abort();
                }
                if let Landed::Refused = landed? {
                    continue 'restart;
                }
                let (views, view) = (self.views.clone(), self.view.clone());
                let commit_from = from;
                pending = Some(Pending {
                    to,
                    task: tokio::spawn(async move {
                        views.commit(&view, commit_from, to, &changes).await
                    }),
                    docs,
                });
                from = to;
            }
        }
    }

    /// The gate, when this runner takes turns through one and has `left` events of its
    /// types to handle before the head: as many as the gate's threshold or more.
    fn far_behind(&self, left: u64) -> Option<&gate::CatchUpGate> {
        self.gate.as_deref().filter(|g| left >= g.behind())
    }

    /// With a gate, the events of this runner's types after `from` up to `head` when those
    /// are far enough apart for turns (else 0: no turns are taken). Fewer positions than the
    /// gate's threshold hold fewer events of any types, and are not counted.
    async fn events_left(&self, from: u64, head: u64) -> Result<u64, ProjectionError> {
        let Some(gate) = self.gate.as_deref() else {
            return Ok(0);
        };
        if head.saturating_sub(from) < gate.behind() {
            return Ok(0);
        }
        Ok(match self.projection.event_types() {
            Some(types) => self.events.count_of(from, head, types).await?,
            None => head - from,
        })
    }

    fn spawn_read(
        &self,
        after: u64,
        n: usize,
    ) -> tokio::task::JoinHandle<Result<Batch, ProjectionError>> {
        let (events, projection) = (self.events.clone(), self.projection.clone());
        tokio::spawn(async move { read_decoded(&*events, &*projection, after, n).await })
    }

    /// The cached documents, if they are those of checkpoint `at`.
    fn take_cache(&self, at: u64) -> DocMap {
        self.cache
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take()
            .filter(|c| c.checkpoint == at)
            .map(|c| c.docs)
            .unwrap_or_else(|| DocMap::new(self.cache_bytes))
    }

    fn keep_cache(&self, at: u64, docs: DocMap) {
        *self.cache.lock().unwrap_or_else(|p| p.into_inner()) = Some(DocCache {
            checkpoint: at,
            docs,
        });
    }

    /// Handles a batch against the documents known (`cached`, fetching what it lacks) and
    /// returns the changes to commit; `cached` gets the documents the batch read and left
    /// alone, and [`absorb`] brings it to after the batch.
    async fn prepare(
        &self,
        batch: &Batch,
        cached: &mut DocMap,
        mut in_flight: Option<&mut InFlight>,
    ) -> Result<Vec<DocChange>, ProjectionError> {
        let Batch {
            events: batch,
            decoded,
            ..
        } = batch;
        let mut view = Overlay::default();
        let mut requested = std::collections::HashSet::new();
        let mut absent = Vec::new();
        for _round in 0..4 {
            let mut keys = std::collections::HashSet::new();
            for (e, d) in batch.iter().zip(decoded) {
                for k in self.projection.reads(e, d, &view) {
                    if !requested.contains(&k) {
                        keys.insert(k);
                    }
                }
            }
            if keys.is_empty() {
                break;
            }
            let last_round = !self.projection.follows_references();
            requested.extend(keys.iter().cloned());
            let mut fetch = Vec::new();
            for k in keys {
                // What the commit in flight wrote, else what the cache holds; a cached
                // document whose owner the commit in flight deletes is absent.
                let known = match in_flight.as_deref_mut().and_then(|f| f.remove(&k)) {
                    Some(written) => Some(written),
                    None => match (cached.remove(&k), in_flight.as_deref()) {
                        (Some(Some(doc)), Some(f)) if f.deletes(&doc) => Some(None),
                        (held, _) => held,
                    },
                };
                match known {
                    Some(Some(doc)) => view.load(vec![doc]),
                    Some(None) => absent.push(k),
                    None => fetch.push(k),
                }
            }
            if !fetch.is_empty() {
                let mut docs = self.views.get_many(&self.view, &fetch).await?;
                if let Some(f) = in_flight.as_deref() {
                    docs.retain(|d| !f.deletes(d));
                }
                let found: BTreeSet<&str> = docs.iter().map(|d| d.key.as_str()).collect();
                absent.extend(
                    fetch
                        .iter()
                        .filter(|k| !found.contains(k.as_str()))
                        .cloned(),
                );
                view.load(docs);
            }
            if last_round {
                break;
            }
        }
        // Handling a large batch is CPU work of milliseconds: on a multi-threaded runtime
        // the worker hands its other tasks (requests) to another thread meanwhile.
        let span = tracing::debug_span!("runner batch", view = %self.view, events = batch.len());
        let handle_all = || {
            let _in = span.enter();
            self.projection.handle_batch(batch, decoded, &mut view);
            view.into_changes()
        };
        let (changes, untouched) = match tokio::runtime::Handle::current().runtime_flavor() {
            tokio::runtime::RuntimeFlavor::MultiThread => tokio::task::block_in_place(handle_all),
            _ => handle_all(),
        };
        for k in absent {
            cached.insert(k, None);
        }
        for doc in untouched {
            cached.insert(doc.key.clone(), Some(doc));
        }
        Ok(changes)
    }

    /// Catches up, then follows the log until `stop` resolves; stops between batches, at a
    /// checkpoint.
    ///
    /// Behind the head — at its start, or whenever a batch came back full — the runner
    /// catches up as a rebuild does ([`Runner::catch_up`]: reads, handling and commits
    /// overlapped, batches of [`CATCH_UP_BATCH`]) before it follows the log batch
    /// by batch again (issue 28). A stop during a catch-up drops it between commits: each
    /// commit moves the checkpoint with its documents, so what landed stays and the rest is
    /// read again on the next start.
    pub async fn run(
        &self,
        stop: impl std::future::Future<Output = ()>,
    ) -> Result<(), ProjectionError> {
        tokio::pin!(stop);
        // The checkpoint this runner committed last: no need to ask the store for it again
        // (a commit from a stale one is refused, and then it is read afresh).
        let mut known = None;
        let mut behind = true;
        loop {
            if behind {
                let batch_size = self.batch_size.max(self.catch_up_batch);
                match self.catch_up_in(batch_size, stop.as_mut()).await? {
                    CaughtUp::To(at) => known = Some(at),
                    CaughtUp::Stopped => return Ok(()),
                }
            }
            let (step, more) = tokio::select! {
                _ = &mut stop => return Ok(()),
                s = self.step_from(known) => s?,
            };
            behind = more;
            let idle_at = match step {
                Step::CaughtUp { checkpoint } => Some(checkpoint),
                // A batch short of the limit reached what was there: wait for more rather
                // than read again at once.
                Step::Applied { checkpoint, .. } => (!more).then_some(checkpoint),
                Step::Raced => None,
            };
            known = match step {
                Step::CaughtUp { checkpoint } | Step::Applied { checkpoint, .. } => {
                    Some(checkpoint)
                }
                Step::Raced => None,
            };
            // A batch that held none of this projection's events (it only moved the
            // checkpoint) means the log is busy with others' events: let them gather
            // rather than wake for each append.
            let passed_over = matches!(step, Step::Applied { events: 0, .. });
            if let Some(checkpoint) = idle_at {
                tokio::select! {
                    _ = &mut stop => return Ok(()),
                    _ = self.events.wait_for(checkpoint, Duration::from_millis(500)) => {}
                }
                let linger = if passed_over {
                    self.projection.linger().max(PASSED_OVER_LINGER)
                } else {
                    self.projection.linger()
                };
                if !linger.is_zero() {
                    tokio::select! {
                        _ = &mut stop => return Ok(()),
                        _ = tokio::time::sleep(linger) => {}
                    }
                }
            }
        }
    }
}

/// The events to read next: until its pace is measured, a runner on its turn reads small
/// batches, so that its first turn is short and its first measure is of a small batch read
/// and handled (see [`gate`]).
fn read_size(batch_size: usize, turn: &Option<gate::Turn<'_>>, pace: &gate::Pace) -> usize {
    match turn {
        Some(_) if !pace.measured() => batch_size.min(gate::FIRST_BATCH),
        _ => batch_size,
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
    // Large batches: a rebuild touches each document once per batch, not once per event.
    let runner = Runner::new(events, views.clone(), projection)
        .into_view(building.clone())
        .with_batch_size(CATCH_UP_BATCH)
        .with_cache_bytes(docs::REBUILD_CACHE_BYTES);
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

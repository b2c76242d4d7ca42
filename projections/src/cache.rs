//! Documents of a view held in memory for the hot read paths (the public widget page reads
//! one widget document per view), with the log as the authority on when one is stale.
//!
//! A follower reads the log's events of the projection's types — from every process that
//! appends, not only this one — and remembers for each document key the position of the last
//! event that may change it (the projection's [`Projection::reads`], for a projection whose
//! keys come from the event alone). A document is cached with the view's checkpoint read
//! just before it, `c`: the document reflects at least every event up to `c`. It is served
//! while no event after `c` that touches its key has been seen. So a cached document is never
//! older than what the follower has read: it trails the log by the follower's lag, as the
//! view itself trails it by the runner's. A reader that asks for `min_position` is served
//! from memory only once the follower has read that far.
//!
//! Memory is bounded two ways, neither by starting over. The documents are weighed in bytes
//! and evicted one at a time (quick_cache's S3-FIFO); an evicted one is read from the store
//! again. The changes seen are kept oldest first up to a count; forgetting the oldest raises
//! the floor to its position, so only documents cached before it are read again (any change
//! after the floor is still known).

use crate::{Projection, ViewReader};
use lightwidget_store::{EventStore, ViewDoc, ViewStore};
use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// How many changes the cache remembers; past it the oldest is forgotten (and the floor
/// rises to it).
const CHANGES: usize = 100_000;

/// The bytes of documents a cache holds by default.
pub const VIEW_CACHE_BYTES: u64 = 64 << 20;

/// A cached document (or its known absence) with the checkpoint read before it, and its
/// weight.
#[derive(Clone)]
struct Cached {
    at: u64,
    doc: Option<Arc<ViewDoc>>,
    bytes: u64,
}

#[derive(Clone)]
struct ByBytes;

impl quick_cache::Weighter<String, Cached> for ByBytes {
    fn weight(&self, _key: &String, c: &Cached) -> u64 {
        c.bytes
    }
}

/// What a cache did so far and holds now.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CacheStats {
    pub hits: u64,
    pub misses: u64,
    /// The documents' bytes held, as weighed.
    pub bytes: u64,
    pub documents: usize,
}

pub struct ViewCache {
    projection: Arc<dyn Projection>,
    views: Arc<dyn ViewStore>,
    state: Mutex<State>,
    hits: AtomicU64,
    misses: AtomicU64,
    /// How many changes it remembers ([`CHANGES`] but in tests).
    changes: usize,
}

struct State {
    /// The follower has read every event up to here.
    seen: u64,
    /// Cached documents are valid only if read at or after this checkpoint: the follower
    /// knows nothing of the events before it (it started, or started over, there). `MAX`
    /// while there is no follower.
    floor: u64,
    /// The position of the last event seen that touches each key, for the changes after
    /// `floor`.
    changed: HashMap<String, u64>,
    /// The same changes oldest first (a key touched again is in it again): what to forget.
    order: VecDeque<(u64, String)>,
    /// The documents (or their absence) with the checkpoint read before each.
    docs: quick_cache::unsync::Cache<String, Cached, ByBytes>,
}

struct NoDocs;

impl ViewReader for NoDocs {
    fn get(&self, _key: &str) -> Option<&ViewDoc> {
        None
    }
}

impl std::fmt::Debug for ViewCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ViewCache")
            .field("view", &self.projection.name())
            .finish()
    }
}

impl ViewCache {
    /// A cache of `projection`'s view holding [`VIEW_CACHE_BYTES`] of documents; it serves
    /// from memory once [`ViewCache::follow`] runs.
    pub fn new(projection: Arc<dyn Projection>, views: Arc<dyn ViewStore>) -> Self {
        Self::with_budget(projection, views, VIEW_CACHE_BYTES)
    }

    /// A cache holding at most `bytes` of documents (as [`crate::docs::doc_bytes`] weighs them).
    pub fn with_budget(
        projection: Arc<dyn Projection>,
        views: Arc<dyn ViewStore>,
        bytes: u64,
    ) -> Self {
        let items = (bytes / 1024).clamp(16, 1 << 20) as usize;
        ViewCache {
            projection,
            views,
            state: Mutex::new(State {
                seen: 0,
                floor: u64::MAX,
                changed: HashMap::new(),
                order: VecDeque::new(),
                docs: quick_cache::unsync::Cache::with_weighter(items, bytes.max(1), ByBytes),
            }),
            hits: AtomicU64::new(0),
            misses: AtomicU64::new(0),
            changes: CHANGES,
        }
    }

    /// Remembers at most `changes` changes (the oldest forgotten first).
    pub fn remembering(mut self, changes: usize) -> Self {
        self.changes = changes.max(1);
        self
    }

    pub fn stats(&self) -> CacheStats {
        let s = self.state();
        CacheStats {
            hits: self.hits.load(Ordering::Relaxed),
            misses: self.misses.load(Ordering::Relaxed),
            bytes: s.docs.weight(),
            documents: s.docs.len(),
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The document at `key` (`None`: there is none), from memory when it is known current
    /// (and the follower has read up to `min`), else from the view store.
    pub async fn get(
        &self,
        key: &str,
        min: Option<u64>,
    ) -> Result<Option<Arc<ViewDoc>>, lightwidget_store::StoreError> {
        {
            let s = self.state();
            if s.seen >= min.unwrap_or(0) {
                if let Some(c) = s.docs.get(key) {
                    let untouched = s.changed.get(key).is_none_or(|p| *p <= c.at);
                    if c.at >= s.floor && untouched {
                        self.hits.fetch_add(1, Ordering::Relaxed);
                        return Ok(c.doc.clone());
                    }
                }
            }
        }
        self.misses.fetch_add(1, Ordering::Relaxed);
        let view = self.projection.name();
        let at = self.views.checkpoint(view).await?;
        let doc = self
            .views
            .get_many(view, &[key.to_owned()])
            .await?
            .into_iter()
            .next()
            .map(Arc::new);
        let mut s = self.state();
        if at >= s.floor {
            let bytes = key.len() as u64 + 64 + doc.as_deref().map_or(0, crate::docs::doc_bytes);
            let cached = Cached {
                at,
                doc: doc.clone(),
                bytes,
            };
            s.docs.insert(key.to_owned(), cached);
        }
        Ok(doc)
    }

    /// Follows the log from its head until `stop` resolves. While it runs the cache serves
    /// from memory; when a read fails everything cached is dropped and nothing is served
    /// from memory until the follower reads again.
    pub async fn follow(
        &self,
        events: Arc<dyn EventStore>,
        stop: impl std::future::Future<Output = ()>,
    ) {
        tokio::pin!(stop);
        let mut after = None;
        loop {
            let step = async {
                let from = match after {
                    Some(p) => p,
                    None => {
                        let head = events.head().await?.position;
                        self.start_over(head);
                        head
                    }
                };
                let types = self.projection.event_types().unwrap_or(&[]);
                let (raw, end) = events.read_all_light_of(from, 1000, types).await?;
                let full = raw.len() >= 1000;
                let relevant = !raw.is_empty();
                let mut touched = Vec::new();
                for e in raw {
                    let position = e.position;
                    // An event that does not decode changes nothing the runner could apply.
                    if let Ok(d) = e.decode_sealed() {
                        let e = e.into_envelope();
                        for key in self.projection.reads(&e, &d, &NoDocs) {
                            touched.push((key, position));
                        }
                    }
                }
                self.saw(touched, end.max(from));
                Ok::<_, lightwidget_store::StoreError>((end.max(from), full, relevant))
            };
            tokio::select! {
                _ = &mut stop => return,
                r = step => match r {
                    Ok((end, full, relevant)) => {
                        after = Some(end);
                        if !full {
                            tokio::select! {
                                _ = &mut stop => return,
                                _ = events.wait_for(end, Duration::from_secs(1)) => {}
                            }
                            if !relevant {
                                // Others' events: let them gather, as the runners do.
                                tokio::select! {
                                    _ = &mut stop => return,
                                    _ = tokio::time::sleep(crate::PASSED_OVER_LINGER) => {}
                                }
                            }
                        }
                    }
                    Err(e) => {
                        tracing::warn!(view = self.projection.name(), error = %e,
                            "view cache cannot follow the log; reading from the store");
                        self.state().floor = u64::MAX;
                        after = None;
                        tokio::select! {
                            _ = &mut stop => return,
                            _ = tokio::time::sleep(Duration::from_millis(500)) => {}
                        }
                    }
                },
            }
        }
    }

    /// How far the follower has read the log.
    pub fn followed(&self) -> u64 {
        self.state().seen
    }

    /// Forgets everything: from `head` on the follower knows every change.
    fn start_over(&self, head: u64) {
        let mut s = self.state();
        s.docs.clear();
        s.changed.clear();
        s.order.clear();
        s.seen = head;
        s.floor = head;
    }

    fn saw(&self, touched: Vec<(String, u64)>, seen: u64) {
        let mut s = self.state();
        for (key, position) in touched {
            s.order.push_back((position, key.clone()));
            s.changed.insert(key, position);
        }
        // Forget the oldest changes past the count: a document cached before one of them
        // might have missed it, so the floor rises to it; every change after the floor is
        // still known.
        while s.order.len() > self.changes {
            let Some((position, key)) = s.order.pop_front() else {
                break;
            };
            if s.changed.get(&key) == Some(&position) {
                s.changed.remove(&key);
            }
            s.floor = s.floor.max(position);
        }
        s.seen = seen;
    }
}

//! The log's latest events, read once per process for every runner that follows it.
//!
//! Each following runner used to read the log after its own checkpoint and decode what it
//! read on its own: nine runners, nine reads of the same new events, and a decode of each
//! event by every runner that handles its type. A [`LogTail`] reads the new events once, keeps
//! the last few thousand in memory, and decodes each one (with its personal fields sealed,
//! as a projection that needs no personal data sees it) at most once, on first use.
//!
//! Opening personal fields stays with each runner: an opened event is not kept here, so no
//! personal data outlives the read of the runner that asked for it, and an erasure is seen
//! by the next open as it would be without the tail.
//!
//! A runner behind the tail's oldest event (catching up after a start, or a rebuild) reads
//! the store itself, as before; the tail serves it again once it is near the head.

use lightwidget_domain::DomainEvent;
use lightwidget_store::{EventStore, StoreError, StoredEvent};
use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

/// How many of the latest events a tail keeps by default.
pub const TAIL_EVENTS: usize = 8192;

/// One event of the tail: as stored, and its sealed decode once somebody asked for it.
#[derive(Debug)]
pub struct TailEvent {
    pub stored: StoredEvent,
    sealed: OnceLock<Result<DomainEvent, String>>,
}

impl TailEvent {
    /// The event decoded with every personal field sealed (erased to the reader), decoded on
    /// the first call only.
    pub fn sealed(&self) -> Result<&DomainEvent, &str> {
        self.sealed
            .get_or_init(|| self.stored.decode_sealed().map_err(|e| e.to_string()))
            .as_ref()
            .map_err(|e| e.as_str())
    }
}

#[derive(Default)]
struct Events {
    /// The tail holds every event after `start` that the log held when it last read.
    start: u64,
    /// In log order.
    events: VecDeque<Arc<TailEvent>>,
}

impl Events {
    fn end(&self) -> u64 {
        self.events.back().map_or(self.start, |e| e.stored.position)
    }

    /// The events after `after`, at most `limit`: `None` when `after` is older than the tail.
    fn after(&self, after: u64, limit: usize) -> Option<Vec<Arc<TailEvent>>> {
        if after < self.start {
            return None;
        }
        let first = self.events.partition_point(|e| e.stored.position <= after);
        Some(self.events.range(first..).take(limit).cloned().collect())
    }
}

/// The latest events of one store's log, shared by the runners of a process.
pub struct LogTail {
    store: Arc<dyn EventStore>,
    capacity: usize,
    events: Mutex<Events>,
    /// One read of the store at a time: the others wait for it and take its events.
    reading: tokio::sync::Mutex<()>,
    /// Calls answered with events held already, and reads of the store.
    served: AtomicU64,
    store_reads: AtomicU64,
}

/// What a tail did so far.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TailStats {
    /// Calls answered from the events held, without a read of the store.
    pub served: u64,
    /// Reads of the store (one per batch of new events, whoever asked).
    pub store_reads: u64,
}

impl std::fmt::Debug for LogTail {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let ev = self.lock();
        f.debug_struct("LogTail")
            .field("start", &ev.start)
            .field("events", &ev.events.len())
            .finish()
    }
}

impl LogTail {
    /// An empty tail of `store`'s log keeping `capacity` events; it starts where its first
    /// caller stands.
    pub fn new(store: Arc<dyn EventStore>, capacity: usize) -> Self {
        LogTail {
            store,
            capacity: capacity.max(1),
            events: Mutex::new(Events::default()),
            reading: tokio::sync::Mutex::new(()),
            served: AtomicU64::new(0),
            store_reads: AtomicU64::new(0),
        }
    }

    pub fn stats(&self) -> TailStats {
        TailStats {
            served: self.served.load(Ordering::Relaxed),
            store_reads: self.store_reads.load(Ordering::Relaxed),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Events> {
        self.events.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The events after `after`, at most `limit`, reading the store once for every caller
    /// when the tail has none yet. `None`: `after` is older than the tail holds; read the
    /// store instead. An empty list: nothing after `after` in the log.
    pub async fn after(
        &self,
        after: u64,
        limit: usize,
    ) -> Result<Option<Vec<Arc<TailEvent>>>, StoreError> {
        if let Some(found) = self.held(after, limit) {
            return Ok(found);
        }
        let _reading = self.reading.lock().await;
        // Another caller may have read while this one waited.
        if let Some(found) = self.held(after, limit) {
            return Ok(found);
        }
        self.store_reads.fetch_add(1, Ordering::Relaxed);
        let from = {
            let mut ev = self.lock();
            if after > ev.end() {
                // A caller that read the store itself is ahead of the tail: start again
                // from there, so that the tail stays gap-free.
                ev.events.clear();
                ev.start = after;
            }
            ev.end()
        };
        let read = self
            .store
            .read_all_light(from, lightwidget_store::LOG_PAGE)
            .await?;
        let mut ev = self.lock();
        // The tail did not move while this caller held `reading`.
        for stored in read {
            ev.events.push_back(Arc::new(TailEvent {
                stored,
                sealed: OnceLock::new(),
            }));
        }
        while ev.events.len() > self.capacity {
            if let Some(old) = ev.events.pop_front() {
                ev.start = old.stored.position;
            }
        }
        Ok(ev.after(after, limit))
    }

    /// What the tail holds after `after`: `Some(None)` when `after` is older than the tail,
    /// `None` when it holds nothing after `after` yet.
    #[allow(clippy::option_option)]
    fn held(&self, after: u64, limit: usize) -> Option<Option<Vec<Arc<TailEvent>>>> {
        let ev = self.lock();
        match ev.after(after, limit) {
            None => Some(None),
            Some(found) if !found.is_empty() => {
                self.served.fetch_add(1, Ordering::Relaxed);
                Some(Some(found))
            }
            Some(_) => None,
        }
    }
}

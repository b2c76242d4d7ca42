//! A runner's documents in memory: bounded by their weight in bytes, evicted one by one by
//! quick_cache's S3-FIFO policy, never all at once. A document that is not held is read from
//! the view store, so eviction costs a read, never a wrong answer — with one exception the
//! runner's pipeline handles: the documents of a commit still in flight are not in the store
//! yet, so they are held apart ([`InFlight`]) and never evicted until it lands.

use lightwidget_store::{DocChange, ViewDoc};
use std::collections::{HashMap, HashSet};

/// The bytes a runner's cache holds by default: a live runner of each of the server's read
/// models at once.
pub const RUNNER_CACHE_BYTES: u64 = 16 << 20;

/// The bytes a rebuild's cache holds: one runner at a time, over the whole log.
pub const REBUILD_CACHE_BYTES: u64 = 64 << 20;

/// A document as a runner knows it: present, or known absent (`None`), with its weight.
struct Entry {
    bytes: u64,
    doc: Option<ViewDoc>,
}

#[derive(Clone)]
struct ByBytes;

impl quick_cache::Weighter<String, Entry> for ByBytes {
    fn weight(&self, _key: &String, entry: &Entry) -> u64 {
        entry.bytes
    }
}

/// Documents by key, at most `budget` bytes of them (as [`doc_bytes`] counts them).
pub struct DocMap {
    docs: quick_cache::unsync::Cache<String, Entry, ByBytes>,
}

impl DocMap {
    pub fn new(budget: u64) -> Self {
        // quick_cache sizes its table from an estimate of the items: a document of 1 KiB.
        let items = (budget / 1024).clamp(16, 1 << 20) as usize;
        DocMap {
            docs: quick_cache::unsync::Cache::with_weighter(items, budget.max(1), ByBytes),
        }
    }

    /// Takes the document out: `Some(None)` when it is known absent, `None` when unknown.
    pub fn remove(&mut self, key: &str) -> Option<Option<ViewDoc>> {
        self.docs.remove(key).map(|(_, e)| e.doc)
    }

    pub fn insert(&mut self, key: String, doc: Option<ViewDoc>) {
        let bytes = key.len() as u64 + doc.as_ref().map_or(0, doc_bytes) + ENTRY_BYTES;
        self.docs.insert(key, Entry { bytes, doc });
    }

    /// Forgets every document of `owner` (some may never have been loaded: they are read
    /// from the store, where the owner's deletion has landed).
    pub fn forget_owner(&mut self, owner: &str) {
        self.docs.retain(|_, e| {
            e.doc
                .as_ref()
                .is_none_or(|d| d.owner.as_deref() != Some(owner))
        });
    }

    /// `self` as after `changes`, committed: documents put are held as put (moved, not
    /// copied), deleted ones as absent, an owner's documents forgotten.
    pub fn absorb(&mut self, changes: impl IntoIterator<Item = DocChange>) {
        for change in changes {
            match change {
                DocChange::Put(doc) => self.insert(doc.key.clone(), Some(doc)),
                DocChange::Delete(key) => self.insert(key, None),
                DocChange::DeleteOwner(owner) => self.forget_owner(&owner),
            }
        }
    }

    pub fn len(&self) -> usize {
        self.docs.len()
    }

    pub fn is_empty(&self) -> bool {
        self.docs.is_empty()
    }

    /// The bytes held, as counted.
    pub fn bytes(&self) -> u64 {
        self.docs.weight()
    }
}

/// What an entry costs beside its key and document: the table's slot and the entry's fields.
const ENTRY_BYTES: u64 = 64;

/// The heap a document takes, estimated from its JSON tree: each node's size and the bytes
/// of its strings. Not exact (allocators round up), but proportional to what it holds.
pub fn doc_bytes(doc: &ViewDoc) -> u64 {
    let text = |s: &Option<String>| s.as_ref().map_or(0, |s| s.len() as u64);
    std::mem::size_of::<ViewDoc>() as u64
        + doc.key.len() as u64
        + text(&doc.owner)
        + text(&doc.state)
        + value_bytes(&doc.doc)
}

fn value_bytes(v: &serde_json::Value) -> u64 {
    use serde_json::Value;
    const NODE: u64 = std::mem::size_of::<Value>() as u64;
    NODE + match v {
        Value::Null | Value::Bool(_) | Value::Number(_) => 0,
        Value::String(s) => s.len() as u64,
        Value::Array(items) => items.iter().map(value_bytes).sum(),
        // A map entry: its key's string and a share of the tree's node.
        Value::Object(map) => map
            .iter()
            .map(|(k, v)| 24 + k.len() as u64 + value_bytes(v))
            .sum(),
    }
}

/// The changes of a commit still in flight, which the next batch must see although the store
/// does not hold them yet: the documents as put or deleted, and the owners deleted.
#[derive(Default)]
pub struct InFlight {
    docs: HashMap<String, Option<ViewDoc>>,
    owners: HashSet<String>,
}

impl InFlight {
    pub fn of(changes: &[DocChange]) -> Self {
        let mut f = InFlight::default();
        for change in changes {
            match change {
                DocChange::Put(doc) => {
                    f.docs.insert(doc.key.clone(), Some(doc.clone()));
                }
                DocChange::Delete(key) => {
                    f.docs.insert(key.clone(), None);
                }
                DocChange::DeleteOwner(owner) => {
                    f.docs
                        .retain(|_, d| d.as_ref().is_none_or(|d| d.owner.as_ref() != Some(owner)));
                    f.owners.insert(owner.clone());
                }
            }
        }
        f
    }

    /// Takes the document out if the commit in flight wrote it.
    pub fn remove(&mut self, key: &str) -> Option<Option<ViewDoc>> {
        self.docs.remove(key)
    }

    /// Whether the commit in flight deletes this document (read elsewhere) by its owner.
    pub fn deletes(&self, doc: &ViewDoc) -> bool {
        doc.owner.as_ref().is_some_and(|o| self.owners.contains(o))
    }

    /// Once the commit has landed: `cache` as after it.
    pub fn land(self, cache: &mut DocMap) {
        for owner in &self.owners {
            cache.forget_owner(owner);
        }
        for (key, doc) in self.docs {
            cache.insert(key, doc);
        }
    }
}

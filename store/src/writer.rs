//! The append logic both adapters share: checks, idempotency, sealing, hashing. An adapter
//! supplies a [`LogTx`] (its transaction with the head row locked) and a loop that hands
//! [`commit_batch`] every request that queued up while the previous batch committed — the
//! group commit of DESIGN.md.

use crate::chain::{chain_hash, Hash};
use crate::crypto::{DataKey, MasterKey};
use crate::sealing::{self, KeyRef};
use crate::{
    key_context, store_time, validate_stream, AppendRequest, AppendResult, ExpectedVersion, Head,
    StoreError, StoredEvent, MAX_EVENTS_PER_APPEND, MAX_EVENT_DATA_BYTES,
};
use chrono::{DateTime, Utc};
use std::collections::{BTreeSet, HashMap, HashSet};
use tokio::sync::oneshot;
use uuid::Uuid;

/// A queued append and where its answer goes.
pub(crate) struct Pending {
    pub request: AppendRequest,
    pub reply: oneshot::Sender<Result<AppendResult, StoreError>>,
}

/// An event id already stored.
#[derive(Clone, Debug)]
pub(crate) struct Existing {
    pub stream: String,
    pub version: u64,
    pub position: u64,
}

/// A data key row: wrapped by the master key.
#[derive(Clone, Debug)]
pub(crate) struct KeyRow {
    pub subject: lightwidget_domain::Subject,
    pub category: lightwidget_domain::Category,
    pub key_id: Uuid,
    pub wrapped: Vec<u8>,
}

/// What the checks read, under the head lock.
pub(crate) struct Snapshot {
    pub head: Head,
    /// Bumped by every deletion of data keys.
    pub key_epoch: u64,
    pub versions: HashMap<String, u64>,
    pub existing: HashMap<Uuid, Existing>,
}

/// What [`LogTx::peek`] read, from one snapshot and without a lock.
pub(crate) struct Peek {
    pub position: u64,
    pub key_epoch: u64,
    /// The versions of the streams asked for that exist.
    pub versions: HashMap<String, u64>,
    /// The key rows asked for that exist.
    pub keys: Vec<KeyRow>,
}

/// Everything one transaction writes.
pub(crate) struct Write<'a> {
    pub delete_keys: &'a [Uuid],
    pub new_keys: &'a [KeyRow],
    pub events: &'a [StoredEvent],
    /// The Merkle tree's new stored hashes, by stored-hash index (insert-only).
    pub tree: &'a [(u64, [u8; 32])],
    pub head: Head,
    pub key_epoch: u64,
}

/// One backend's write transaction.
pub(crate) trait LogTx {
    /// Begins, locks the head row, and reads the streams' versions and the ids already stored.
    async fn begin(
        &mut self,
        streams: &[String],
        event_ids: &[Uuid],
    ) -> Result<Snapshot, StoreError>;
    /// The key rows of these (subject, category) pairs that exist.
    async fn keys_for(&mut self, refs: &[KeyRef]) -> Result<Vec<KeyRow>, StoreError>;
    /// The tree's stored hashes at these indexes, in their order (inside `begin`'s
    /// transaction); a missing one is an error.
    async fn tree_hashes(&mut self, indexes: &[u64]) -> Result<Vec<[u8; 32]>, StoreError>;
    /// Reads, without locking and outside any write, the head's position and key epoch,
    /// the versions of `streams` and the key rows of `refs`, all from one snapshot: what the
    /// writer's cache lacks to decide a batch on its own.
    async fn peek(&mut self, streams: &[String], refs: &[KeyRef]) -> Result<Peek, StoreError>;
    /// Deletes and inserts keys, inserts events, moves the head, commits the transaction
    /// `begin` opened.
    async fn commit(&mut self, write: &Write<'_>) -> Result<(), StoreError>;
    /// Opens a transaction, locks the head and checks it is still at `expected` (position,
    /// key epoch), writes and commits — in one round trip where the backend can pipeline.
    /// When the head moved nothing is written and an error is returned.
    async fn commit_if_head(
        &mut self,
        expected: HeadAt,
        write: &Write<'_>,
    ) -> Result<(), StoreError>;
    async fn rollback(&mut self);
}

/// Where the log's head row stands: its position and its key epoch (bumped by every
/// deletion of data keys). An optimistic write is taken only if the head is still there.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct HeadAt {
    pub position: u64,
    pub key_epoch: u64,
}

/// Checks that need no database: run before a request is queued.
pub(crate) fn precheck(req: &AppendRequest) -> Result<(), StoreError> {
    let n = req.event_count();
    if n == 0 && req.shred.is_empty() {
        return Err(StoreError::EmptyBatch);
    }
    if n > MAX_EVENTS_PER_APPEND {
        return Err(StoreError::BatchTooLarge {
            events: n,
            max: MAX_EVENTS_PER_APPEND,
        });
    }
    let mut ids = HashSet::with_capacity(n);
    for w in &req.writes {
        validate_stream(&w.stream)?;
        // A write without events only asserts its stream's version (a fence): it needs one.
        if w.events.is_empty() && w.expected == crate::ExpectedVersion::Any {
            return Err(StoreError::EmptyBatch);
        }
        for e in &w.events {
            if !ids.insert(e.event_id) {
                return Err(StoreError::IdempotencyMismatch(e.event_id));
            }
            if e.event_type.is_empty() || e.event_type.len() > 100 {
                return Err(StoreError::InvalidPayload(
                    "event type must be 1 to 100 characters".into(),
                ));
            }
        }
    }
    Ok(())
}

enum Idempotency {
    New,
    Duplicate(AppendResult),
}

fn classify(
    req: &AppendRequest,
    existing: &HashMap<Uuid, Existing>,
) -> Result<Idempotency, StoreError> {
    let mut found = 0usize;
    let mut first_missing = None;
    for w in &req.writes {
        for e in &w.events {
            match existing.get(&e.event_id) {
                Some(x) if x.stream == w.stream => found += 1,
                Some(_) => return Err(StoreError::IdempotencyMismatch(e.event_id)),
                None => first_missing = first_missing.or(Some(e.event_id)),
            }
        }
    }
    if found == 0 {
        return Ok(Idempotency::New);
    }
    if let Some(id) = first_missing {
        // Part of the request is stored, part is not: it is not the request stored before.
        return Err(StoreError::IdempotencyMismatch(id));
    }
    let mut first = u64::MAX;
    let mut last = 0;
    let mut versions = Vec::new();
    for w in &req.writes {
        let mut v = 0;
        for e in &w.events {
            let x = &existing[&e.event_id];
            first = first.min(x.position);
            last = last.max(x.position);
            v = v.max(x.version);
        }
        versions.push((w.stream.clone(), v));
    }
    Ok(Idempotency::Duplicate(AppendResult {
        first_position: first,
        last_position: last,
        versions,
        duplicate: true,
    }))
}

/// Working state of one batch: requests are applied to it one by one; a refused request
/// leaves it as it was.
struct Batch<'a> {
    master: &'a MasterKey,
    now: DateTime<Utc>,
    head: Head,
    versions: HashMap<String, u64>,
    existing: HashMap<Uuid, Existing>,
    keys: HashMap<KeyRef, (Uuid, DataKey)>,
    new_keys: Vec<KeyRow>,
    delete_keys: Vec<Uuid>,
    shredded: Vec<KeyRef>,
    rows: Vec<StoredEvent>,
    key_epoch: u64,
    /// The tree's new stored hashes, and its right edge after them (set by [`Batch::grow`]).
    tree: Vec<(u64, [u8; 32])>,
    frontier: Option<Frontier>,
}

impl<'a> Batch<'a> {
    fn new(
        master: &'a MasterKey,
        now: DateTime<Utc>,
        snap: Snapshot,
        keys: HashMap<KeyRef, (Uuid, DataKey)>,
    ) -> Self {
        Batch {
            master,
            now: store_time(now),
            head: snap.head,
            versions: snap.versions,
            existing: snap.existing,
            keys,
            new_keys: Vec::new(),
            delete_keys: Vec::new(),
            shredded: Vec::new(),
            rows: Vec::new(),
            key_epoch: snap.key_epoch,
            tree: Vec::new(),
            frontier: None,
        }
    }

    fn is_empty(&self) -> bool {
        self.rows.is_empty() && self.delete_keys.is_empty() && self.new_keys.is_empty()
    }

    /// Adds the tree's hashes for the batch's events to what it writes.
    fn grow(&mut self, frontier: &Frontier) -> Result<(), StoreError> {
        let (rows, next) = frontier.extend(self.rows.iter().map(|e| e.hash))?;
        self.tree = rows;
        self.frontier = Some(next);
        Ok(())
    }

    fn write(&self) -> Write<'_> {
        Write {
            delete_keys: &self.delete_keys,
            new_keys: &self.new_keys,
            events: &self.rows,
            tree: &self.tree,
            head: self.head,
            key_epoch: self.key_epoch + u64::from(!self.delete_keys.is_empty()),
        }
    }

    fn apply(&mut self, req: &AppendRequest) -> Result<AppendResult, StoreError> {
        if let Idempotency::Duplicate(r) = classify(req, &self.existing)? {
            return Ok(r);
        }
        let mut versions: HashMap<&str, u64> = HashMap::new();
        for w in &req.writes {
            let actual = *versions
                .entry(&w.stream)
                .or_insert_with(|| self.versions.get(&w.stream).copied().unwrap_or(0));
            if !w.expected.admits(actual) {
                return Err(StoreError::Conflict {
                    stream: w.stream.clone(),
                    expected: w.expected,
                    actual,
                });
            }
            versions.insert(&w.stream, actual + w.events.len() as u64);
        }
        // Seal and chain into staging; nothing touches `self` until all of it succeeded.
        let mut created: Vec<(KeyRef, Uuid, DataKey, KeyRow)> = Vec::new();
        let mut rows = Vec::with_capacity(req.event_count());
        let mut position = self.head.position;
        let mut prev: Hash = self.head.hash;
        let mut result_versions = Vec::with_capacity(req.writes.len());
        let mut stream_version: HashMap<&str, u64> = HashMap::new();
        for w in &req.writes {
            let mut v = *stream_version
                .entry(&w.stream)
                .or_insert_with(|| self.versions.get(&w.stream).copied().unwrap_or(0));
            for e in &w.events {
                let mut refs = BTreeSet::new();
                sealing::plaintext_refs(&e.data, &mut refs)?;
                let mut key_map: HashMap<KeyRef, (Uuid, DataKey)> = HashMap::new();
                for r in refs {
                    let k = match self.keys.get(&r) {
                        Some(k) => k.clone(),
                        None => match created.iter().find(|c| c.0 == r) {
                            Some(c) => (c.1, c.2.clone()),
                            None => {
                                // Time-ordered, as event ids: new keys land at the
                                // right edge of the key table's index.
                                let key_id = Uuid::now_v7();
                                let key = DataKey::generate();
                                let wrapped = self
                                    .master
                                    .wrap(&key, &key_context(&r.subject, r.category, key_id));
                                let row = KeyRow {
                                    subject: r.subject.clone(),
                                    category: r.category,
                                    key_id,
                                    wrapped,
                                };
                                created.push((r.clone(), key_id, key.clone(), row));
                                (key_id, key)
                            }
                        },
                    };
                    key_map.insert(r, k);
                }
                let data = sealing::seal_to_string(&e.data, &key_map)?;
                if data.len() > MAX_EVENT_DATA_BYTES {
                    return Err(StoreError::EventTooLarge {
                        bytes: data.len(),
                        max: MAX_EVENT_DATA_BYTES,
                    });
                }
                position += 1;
                v += 1;
                let mut row = StoredEvent {
                    position,
                    stream: w.stream.clone(),
                    version: v,
                    event_id: e.event_id,
                    event_type: e.event_type.clone(),
                    schema_version: e.schema_version,
                    recorded_at: self.now,
                    actor: e.actor.clone(),
                    correlation_id: e.correlation_id,
                    causation_id: e.causation_id,
                    data,
                    prev_hash: prev,
                    hash: [0; 32],
                };
                row.hash = chain_hash(&prev, &row);
                prev = row.hash;
                rows.push(row);
            }
            stream_version.insert(&w.stream, v);
            result_versions.push((w.stream.clone(), v));
        }
        // Commit the staging into the batch.
        for (r, id, key, row) in created {
            self.keys.insert(r, (id, key));
            self.new_keys.push(row);
        }
        for r in &req.shred {
            self.shredded.push(r.clone());
            if let Some((key_id, _)) = self.keys.remove(r) {
                if let Some(i) = self.new_keys.iter().position(|k| k.key_id == key_id) {
                    self.new_keys.remove(i);
                } else {
                    self.delete_keys.push(key_id);
                }
            }
        }
        for (s, v) in stream_version {
            self.versions.insert(s.to_owned(), v);
        }
        for row in &rows {
            self.existing.insert(
                row.event_id,
                Existing {
                    stream: row.stream.clone(),
                    version: row.version,
                    position: row.position,
                },
            );
        }
        let first_position = rows
            .first()
            .map(|r| r.position)
            .unwrap_or(self.head.position);
        self.head = Head {
            position,
            hash: prev,
        };
        self.rows.extend(rows);
        Ok(AppendResult {
            first_position,
            last_position: position,
            versions: result_versions,
            duplicate: false,
        })
    }
}

/// Streams, keys and the head as this writer last saw them. Valid as of `head`: as long as
/// the head's position and key epoch have not moved, nobody else has written, so the cached
/// versions and keys are exact and a batch can be written in one optimistic round trip.
#[derive(Default)]
pub(crate) struct WriterCache {
    head: Option<(Head, u64)>,
    /// The tree's right edge at `head`, once read.
    frontier: Option<Frontier>,
    versions: HashMap<String, u64>,
    keys: HashMap<KeyRef, (Uuid, DataKey)>,
    /// Benchmark hook: appends store no tree (the append benchmark's baseline only).
    without_tree: bool,
}

/// Unwrapped data keys by (subject, category).
type KeyMap = HashMap<KeyRef, (Uuid, DataKey)>;

/// What the cache says about a batch.
enum Vouch {
    /// It knows everything the batch needs decided.
    Ready(Snapshot, KeyMap),
    /// It lacks these streams and keys (and knows the head it is valid at).
    Lacks {
        streams: Vec<String>,
        refs: Vec<KeyRef>,
    },
    /// It cannot vouch: no head yet, or a payload it cannot read.
    No,
}

/// How many leaves the stored tree covers, from how many interior nodes it holds (at most
/// `head`): the largest size with that many, since the nodes of a leaf are stored only with
/// those of every leaf before it (a leaf completing no node adds none, so the next leaf to
/// grow from is the first that completes one).
pub(crate) fn covered_by(interior: u64, head: u64) -> Result<u64, StoreError> {
    use lightwidget_tlog::tree::interior_count;
    let (mut lo, mut hi) = (0u64, head);
    while lo < hi {
        let mid = lo + (hi - lo).div_ceil(2);
        if interior_count(mid) <= interior {
            lo = mid;
        } else {
            hi = mid - 1;
        }
    }
    if interior_count(lo) != interior {
        return Err(StoreError::Corrupt(format!(
            "the tree holds {interior} interior nodes, which is no tree's count"
        )));
    }
    Ok(lo)
}

/// A stored hash of the tree: its stored-hash index and the hash.
pub type TreeRow = (u64, [u8; 32]);

/// At most this many hashes in one stored run (3 KiB: a row that stays in its page).
pub const RUN_HASHES: usize = 96;

/// New stored hashes as the stores keep them: a leaf's hash is not kept (it is
/// SHA-256(0x00 ‖ the event's chain hash)); the interior nodes go in runs of consecutive
/// ranks (`lightwidget_tlog::tree::interior_rank`): (first rank, the hashes concatenated), at
/// most [`RUN_HASHES`] each.
pub fn interior_runs(rows: &[TreeRow]) -> Vec<(i64, Vec<u8>)> {
    use lightwidget_tlog::tree::{interior_rank, split_index};
    let mut out: Vec<(i64, Vec<u8>)> = Vec::new();
    let mut next = None;
    for (idx, hash) in rows {
        let (level, n) = split_index(*idx);
        if level == 0 {
            continue;
        }
        let rank = interior_rank(level, n);
        match out.last_mut() {
            Some((_, bytes)) if next == Some(rank) && bytes.len() < RUN_HASHES * 32 => {
                bytes.extend_from_slice(hash)
            }
            _ => out.push((rank as i64, hash.to_vec())),
        }
        next = Some(rank + 1);
    }
    out
}

/// How many interior nodes the stored runs hold, from the last run (`None`: no run): the
/// runs are consecutive from rank 0, so the last one ends where the tree does.
pub fn stored_in_runs(last: Option<(i64, usize)>) -> u64 {
    last.map_or(0, |(first, bytes)| first as u64 + (bytes / 32) as u64)
}

/// Where the tree's stored hash at `index` is: a leaf (its position in the log), or an
/// interior node (its rank).
pub enum Stored {
    Leaf(u64),
    Interior(u64),
}

pub fn locate(index: u64) -> Stored {
    use lightwidget_tlog::tree::{interior_rank, split_index};
    match split_index(index) {
        (0, n) => Stored::Leaf(n + 1),
        (level, n) => Stored::Interior(interior_rank(level, n)),
    }
}

/// The stored hash of a leaf from its event's chain hash.
pub fn leaf_of(chain_hash: &[u8; 32]) -> [u8; 32] {
    lightwidget_tlog::tree::leaf_hash(chain_hash).0
}

/// The right edge of the log's Merkle tree (leaf `i` is the chain hash of position `i + 1`):
/// the stored hashes of the complete subtrees making up the tree of `size` leaves. A batch's
/// new tree hashes are computed from it alone: O(log n) per append.
#[derive(Clone, Debug, Default)]
pub struct Frontier {
    pub size: u64,
    pub hashes: std::collections::BTreeMap<u64, [u8; 32]>,
}

impl Frontier {
    /// The frontier of the tree of `size` leaves, from its stored hashes (`read` answers
    /// them in the order asked).
    pub fn of(size: u64, read: Vec<[u8; 32]>) -> Result<Frontier, StoreError> {
        let indexes = lightwidget_tlog::tree::frontier_indexes(size);
        if read.len() != indexes.len() {
            return Err(StoreError::Corrupt(format!(
                "the tree of {size} leaves lacks stored hashes"
            )));
        }
        Ok(Frontier {
            size,
            hashes: indexes.into_iter().zip(read).collect(),
        })
    }

    /// Appends these leaves (chain hashes, in position order): the rows to store, and the
    /// frontier after them.
    pub fn extend(
        &self,
        leaves: impl IntoIterator<Item = [u8; 32]>,
    ) -> Result<(Vec<TreeRow>, Frontier), StoreError> {
        use lightwidget_tlog::tree;
        let mut known = self.hashes.clone();
        let mut rows = Vec::new();
        let mut size = self.size;
        for leaf in leaves {
            let read = |idx: &[u64]| -> Result<Vec<tree::Hash>, String> {
                idx.iter()
                    .map(|i| {
                        known
                            .get(i)
                            .map(|h| tree::Hash(*h))
                            .ok_or_else(|| format!("no stored hash {i}"))
                    })
                    .collect()
            };
            let new = tree::hashes_to_store(size, tree::leaf_hash(&leaf), &read)
                .map_err(|e| StoreError::Internal(format!("tree hashes: {e}")))?;
            let first = tree::stored_count(size);
            for (k, h) in new.into_iter().enumerate() {
                known.insert(first + k as u64, h.0);
                rows.push((first + k as u64, h.0));
            }
            size += 1;
        }
        let mut hashes = std::collections::BTreeMap::new();
        for i in tree::frontier_indexes(size) {
            let h = known
                .get(&i)
                .ok_or_else(|| StoreError::Internal(format!("frontier hash {i} missing")))?;
            hashes.insert(i, *h);
        }
        Ok((rows, Frontier { size, hashes }))
    }
}

/// Past this many streams or keys the cache starts over (it only saves round trips).
const CACHE_LIMIT: usize = 100_000;

impl WriterCache {
    /// The cache of a writer; `without_tree` is the append benchmark's hook (a store whose
    /// appends keep no Merkle tree has no proofs: never in production).
    pub(crate) fn new(without_tree: bool) -> WriterCache {
        WriterCache {
            without_tree,
            ..WriterCache::default()
        }
    }

    fn clear(&mut self) {
        *self = WriterCache::new(self.without_tree);
    }

    fn absorb(&mut self, batch: &Batch<'_>, key_epoch: u64) {
        if self.versions.len() > CACHE_LIMIT {
            self.versions.clear();
        }
        if self.keys.len() > CACHE_LIMIT {
            self.keys.clear();
        }
        self.head = Some((batch.head, key_epoch));
        self.frontier = batch.frontier.clone();
        self.versions
            .extend(batch.versions.iter().map(|(s, v)| (s.clone(), *v)));
        self.keys
            .extend(batch.keys.iter().map(|(r, k)| (r.clone(), k.clone())));
        for r in &batch.shredded {
            self.keys.remove(r);
        }
    }

    /// Learns what a [`LogTx::peek`] read, if it read the head this cache is valid at (then
    /// nobody has written since, and what it read is exact as of that head). A stream it
    /// did not find does not exist: version 0. Returns whether it learned.
    fn learn(
        &mut self,
        at: HeadAt,
        streams: &[String],
        versions: &HashMap<String, u64>,
        keys: KeyMap,
    ) -> bool {
        match self.head {
            Some((head, key_epoch))
                if HeadAt {
                    position: head.position,
                    key_epoch,
                } == at =>
            {
                for s in streams {
                    let v = versions.get(s).copied().unwrap_or(0);
                    self.versions.insert(s.clone(), v);
                }
                self.keys.extend(keys);
                true
            }
            _ => false,
        }
    }

    /// The snapshot the cache vouches for, when it covers every stream, key and shred of
    /// the batch. A stream it does not know is taken as new only when the request expects it
    /// new: if it exists, its version 1 does too, and the insert fails on the unique key.
    /// An event's key it does not know is taken as new when the event opens a new stream or
    /// when `keys_looked_up` (a peek at the cache's head found none): a key made anew while
    /// one exists fails the write on the (subject, category) unique key. Otherwise what it
    /// lacks: the streams, and every key (of events and shreds) it has not seen.
    fn snapshot(&self, requests: &[&AppendRequest], keys_looked_up: bool) -> Vouch {
        let Some((head, key_epoch)) = self.head else {
            return Vouch::No;
        };
        let mut versions = HashMap::new();
        let mut keys = HashMap::new();
        let (mut lack_streams, mut lack_refs) = (BTreeSet::new(), BTreeSet::new());
        let mut lack_shred = false;
        let mut lack_look = false;
        for r in requests {
            for w in &r.writes {
                match self.versions.get(&w.stream) {
                    Some(v) => {
                        versions.insert(w.stream.clone(), *v);
                    }
                    None if matches!(
                        w.expected,
                        ExpectedVersion::NoStream | ExpectedVersion::Exact(0)
                    ) => {}
                    None => {
                        lack_streams.insert(w.stream.clone());
                    }
                }
                // A new stream's events most likely name new subjects: their keys are made
                // without a look (should one exist, the write fails on the unique key and the
                // locked path decides again). Elsewhere an unseen key is looked up first.
                let new_stream = matches!(
                    w.expected,
                    ExpectedVersion::NoStream | ExpectedVersion::Exact(0)
                );
                for e in &w.events {
                    let mut refs = BTreeSet::new();
                    if sealing::plaintext_refs(&e.data, &mut refs).is_err() {
                        return Vouch::No;
                    }
                    for k in refs {
                        match self.keys.get(&k) {
                            Some(key) => {
                                keys.insert(k, key.clone());
                            }
                            None => {
                                lack_look |= !new_stream;
                                lack_refs.insert(k);
                            }
                        }
                    }
                }
            }
            for k in &r.shred {
                match self.keys.get(k) {
                    Some(key) => {
                        keys.insert(k.clone(), key.clone());
                    }
                    None => {
                        lack_shred = true;
                        lack_refs.insert(k.clone());
                    }
                }
            }
        }
        if !lack_streams.is_empty() || lack_shred || (lack_look && !keys_looked_up) {
            return Vouch::Lacks {
                streams: lack_streams.into_iter().collect(),
                refs: lack_refs.into_iter().collect(),
            };
        }
        Vouch::Ready(
            Snapshot {
                head,
                key_epoch,
                versions,
                existing: HashMap::new(),
            },
            keys,
        )
    }
}

/// Runs one group-commit batch; returns one result per request, in order.
///
/// First, when the cache vouches for everything the batch touches, the batch is decided from
/// the cache and written with [`LogTx::commit_if_head`]. If that is refused (another writer
/// moved the head, an event id or key already exists, or any request was refused on cached
/// knowledge), the batch is decided again from what [`LogTx::begin`] reads under the lock.
pub(crate) async fn commit_batch<T: LogTx>(
    tx: &mut T,
    cache: &mut WriterCache,
    master: &MasterKey,
    now: DateTime<Utc>,
    requests: &[&AppendRequest],
) -> Result<Vec<Result<AppendResult, StoreError>>, StoreError> {
    let mut vouched = cache.snapshot(requests, false);
    if let Vouch::Lacks { streams, refs } = &vouched {
        // A stream or key the cache has not seen: read what it lacks without the lock, and
        // if nobody has written since the cache's head, stay on the one-round-trip path.
        match tx.peek(streams, refs).await {
            Ok(peek) => {
                let at = HeadAt {
                    position: peek.position,
                    key_epoch: peek.key_epoch,
                };
                if let Ok(keys) = unwrap_rows(master, peek.keys) {
                    if cache.learn(at, streams, &peek.versions, keys) {
                        // What it still lacks of keys does not exist at its head.
                        vouched = cache.snapshot(requests, true);
                    }
                }
            }
            Err(e) => tracing::debug!(error = %e, "peek failed; reading under the lock"),
        }
    }
    // The tree's right edge must be known at the cache's head to write optimistically.
    let frontier = match (&vouched, &cache.frontier) {
        _ if cache.without_tree => Some(None),
        (Vouch::Ready(snap, _), Some(f)) if f.size == snap.head.position => Some(Some(f.clone())),
        _ => None,
    };
    if let (Vouch::Ready(snap, keys), Some(frontier)) = (vouched, frontier) {
        let expected = HeadAt {
            position: snap.head.position,
            key_epoch: snap.key_epoch,
        };
        let mut batch = Batch::new(master, now, snap, keys);
        let results: Vec<_> = requests.iter().map(|r| batch.apply(r)).collect();
        if results.iter().all(Result::is_ok)
            && !batch.is_empty()
            && frontier.as_ref().is_none_or(|f| batch.grow(f).is_ok())
        {
            let write = batch.write();
            let epoch = write.key_epoch;
            match tx.commit_if_head(expected, &write).await {
                Ok(()) => {
                    cache.absorb(&batch, epoch);
                    return Ok(results);
                }
                Err(e) => {
                    tracing::debug!(error = %e, "optimistic append refused; reading under the lock")
                }
            }
        }
        cache.clear();
    }

    let mut streams: Vec<String> = requests
        .iter()
        .flat_map(|r| r.writes.iter().map(|w| w.stream.clone()))
        .collect();
    streams.sort();
    streams.dedup();
    let ids: Vec<Uuid> = requests
        .iter()
        .flat_map(|r| {
            r.writes
                .iter()
                .flat_map(|w| w.events.iter().map(|e| e.event_id))
        })
        .collect();
    let snap = tx.begin(&streams, &ids).await?;
    if cache.head != Some((snap.head, snap.key_epoch)) {
        cache.clear();
    }

    let mut refs = BTreeSet::new();
    for r in requests {
        for w in &r.writes {
            for e in &w.events {
                // A malformed personal field fails its own request in `apply`, not the batch.
                let _ = sealing::plaintext_refs(&e.data, &mut refs);
            }
        }
        refs.extend(r.shred.iter().cloned());
    }
    let mut keys = HashMap::new();
    if !refs.is_empty() {
        let rows = match tx.keys_for(&refs.into_iter().collect::<Vec<_>>()).await {
            Ok(rows) => rows,
            Err(e) => {
                tx.rollback().await;
                return Err(e);
            }
        };
        keys = match unwrap_rows(master, rows) {
            Ok(keys) => keys,
            Err(e) => {
                tx.rollback().await;
                return Err(e);
            }
        };
    }

    let size = snap.head.position;
    let mut batch = Batch::new(master, now, snap, keys);
    let results: Vec<_> = requests.iter().map(|r| batch.apply(r)).collect();
    if batch.is_empty() {
        tx.rollback().await;
        return Ok(results);
    }
    let frontier = match cache.frontier.as_ref().filter(|f| f.size == size) {
        _ if cache.without_tree => None,
        Some(f) => Some(f.clone()),
        None => {
            let indexes = lightwidget_tlog::tree::frontier_indexes(size);
            let read = match tx.tree_hashes(&indexes).await {
                Ok(read) => read,
                Err(e) => {
                    tx.rollback().await;
                    return Err(e);
                }
            };
            match Frontier::of(size, read) {
                Ok(f) => Some(f),
                Err(e) => {
                    tx.rollback().await;
                    return Err(e);
                }
            }
        }
    };
    if let Some(Err(e)) = frontier.map(|f| batch.grow(&f)) {
        tx.rollback().await;
        return Err(e);
    }
    let write = batch.write();
    let epoch = write.key_epoch;
    if let Err(e) = tx.commit(&write).await {
        cache.clear();
        return Err(e);
    }
    cache.absorb(&batch, epoch);
    Ok(results)
}

/// Unwraps key rows with the master key.
fn unwrap_rows(master: &MasterKey, rows: Vec<KeyRow>) -> Result<KeyMap, StoreError> {
    let mut keys = HashMap::with_capacity(rows.len());
    for row in rows {
        let key = master
            .unwrap_key(
                &row.wrapped,
                &key_context(&row.subject, row.category, row.key_id),
            )
            .map_err(|_| {
                StoreError::Corrupt(format!(
                    "data key {} cannot be unwrapped with this master key",
                    row.key_id
                ))
            })?;
        keys.insert(KeyRef::new(row.subject, row.category), (row.key_id, key));
    }
    Ok(keys)
}

/// Runs a batch, and when the batch as a whole fails, each request on its own, so that one
/// request that breaks a transaction cannot take the others down with it. Returns the last
/// position written, if any.
pub(crate) async fn run_batch<T: LogTx>(
    tx: &mut T,
    cache: &mut WriterCache,
    master: &MasterKey,
    now: impl Fn() -> DateTime<Utc>,
    pending: Vec<Pending>,
) -> Option<u64> {
    let requests: Vec<&AppendRequest> = pending.iter().map(|p| &p.request).collect();
    let outcome = commit_batch(tx, cache, master, now(), &requests).await;
    let mut head = None;
    match outcome {
        Ok(results) => {
            for (p, r) in pending.into_iter().zip(results) {
                if let Ok(res) = &r {
                    head = head.max(Some(res.last_position));
                }
                let _ = p.reply.send(r);
            }
        }
        Err(e) if pending.len() == 1 => {
            if let Some(p) = pending.into_iter().next() {
                let _ = p.reply.send(Err(e));
            }
        }
        Err(_) => {
            for p in pending {
                let r = commit_batch(tx, cache, master, now(), &[&p.request])
                    .await
                    .and_then(|mut v| {
                        v.pop()
                            .unwrap_or(Err(StoreError::Internal("no result".into())))
                    });
                if let Ok(res) = &r {
                    head = head.max(Some(res.last_position));
                }
                let _ = p.reply.send(r);
            }
        }
    }
    head
}

#[cfg(test)]
mod runs_tests {
    use super::{covered_by, interior_runs, stored_in_runs, RUN_HASHES};
    use lightwidget_tlog::tree::{interior_count, stored_count, stored_index};

    #[test]
    fn interior_nodes_become_runs_of_at_most_96_and_leaves_are_not_kept() {
        // The hashes 300 leaves store, as an append of them all writes them.
        let rows: Vec<(u64, [u8; 32])> = (0..stored_count(300))
            .map(|i| (i, [(i % 251) as u8; 32]))
            .collect();
        let out = interior_runs(&rows);
        let shape: Vec<(i64, usize)> = out.iter().map(|(i, b)| (*i, b.len() / 32)).collect();
        let total = interior_count(300) as usize;
        assert_eq!(
            shape,
            [
                (0, RUN_HASHES),
                (96, RUN_HASHES),
                (192, RUN_HASHES),
                (288, total - 288)
            ]
        );
        // Rank 0 is the node of level 1 over leaves 0 and 1.
        let first = stored_index(1, 0) as usize;
        assert_eq!(&out[0].1[..32], &rows[first].1);
        assert_eq!(stored_in_runs(None), 0);
        assert_eq!(
            stored_in_runs(Some((288, (total - 288) * 32))),
            total as u64
        );
    }

    #[test]
    fn the_size_covered_is_the_largest_with_that_many_interior_nodes() {
        assert_eq!(covered_by(0, 0).ok(), Some(0));
        assert_eq!(covered_by(0, 1).ok(), Some(1));
        assert_eq!(covered_by(0, 5).ok(), Some(1));
        assert_eq!(covered_by(1, 5).ok(), Some(3));
        assert_eq!(covered_by(interior_count(300), 300).ok(), Some(300));
        assert_eq!(covered_by(interior_count(300), 1000).ok(), Some(301));
        assert!(covered_by(1000, 10).is_err());
    }
}

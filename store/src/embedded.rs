//! The embedded adapter: SQLite through rusqlite (bundled), in WAL mode with
//! `secure_delete=ON`, in two files of the data directory: the log (`synchronous=FULL`) and
//! the read models (`synchronous=NORMAL`).
//!
//! A dedicated writer thread owns the write connection and runs the same group-commit logic
//! as the PostgreSQL adapter; `BEGIN IMMEDIATE` takes SQLite's write lock, which plays the
//! head-row lock's part against other processes. Reads run on a small pool of read-only
//! connections on the blocking thread pool.

use crate::crypto::MasterKey;
use crate::sealing::KeyRef;
use crate::views::{DocChange, ViewDoc, ViewQuery, ViewStore};
use crate::writer::{
    self, Existing, HeadAt, KeyRow, LogTx, Peek, Pending, Snapshot, Write, WriterCache,
};
use crate::{
    format_time, key_context, AppendRequest, AppendResult, Clock, DataKey, EventStore, Head,
    KeyStore, StoreError, StoredEvent,
};
use async_trait::async_trait;
use lightwidget_domain::{Category, Subject};
use lightwidget_schemas::Migration;
use rusqlite::{params, Connection, OptionalExtension, Row};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{mpsc, oneshot, watch};
use uuid::Uuid;

/// The log's database file inside the data directory: events, data keys, the head.
pub const DB_FILE: &str = "ledger.db";

/// The read models' database file inside the data directory: documents and checkpoints. A
/// file of its own, so that the projections' write transactions never hold the lock the
/// log's writer needs, and the log's flush to disk carries only the log.
pub const VIEWS_FILE: &str = "views.db";
const MAX_REQUESTS_PER_BATCH: usize = 256;

#[derive(Clone, Debug, Default)]
pub struct SqliteOptions {
    /// Test hook: hold every write transaction open this long before its COMMIT.
    pub pre_commit_delay: Option<Duration>,
    /// Test hook: the log's database may grow to this many pages (`PRAGMA max_page_count`,
    /// set on the writer's connection before each batch), as if its disk were that full.
    pub page_limit: Option<Arc<std::sync::atomic::AtomicU64>>,
    /// Benchmark hook: appends keep no Merkle tree (the append benchmark's baseline). Such a
    /// store has no proofs; never in production.
    pub bench_without_tree: bool,
    /// The bytes SQLite's page caches of every connection of the process may hold together
    /// (`PRAGMA soft_heap_limit`, process-wide): past it, each connection's cache gives pages
    /// back before it takes more. `None` leaves SQLite's default (no limit: up to 2 MiB a
    /// connection, and the store keeps up to 128 of them).
    pub heap_limit: Option<u64>,
}

/// Opens a connection with the pragmas every connection of the store uses: every commit
/// flushed to disk before it returns (`synchronous = FULL`).
pub fn open_connection(path: &Path) -> Result<Connection, StoreError> {
    open_with(path, Durability::Full)
}

/// Whether a connection's commits wait for the disk.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Durability {
    /// Every commit is on disk when it returns: the log, the data keys.
    Full,
    /// Commits are atomic and ordered but reach the disk with the next flush of the
    /// write-ahead log (the next append's, at the latest): the read models, which a power
    /// loss could only set back to an earlier checkpoint together with its documents.
    Normal,
}

fn open_with(path: &Path, sync: Durability) -> Result<Connection, StoreError> {
    let conn = Connection::open(path)?;
    conn.busy_handler(Some(busy_wait))?;
    // No connection checkpoints on its own commit: the store's checkpointer thread does it
    // (`checkpointer`), so an append never waits for a WAL checkpoint.
    conn.execute_batch(
        "PRAGMA journal_mode = WAL;
         PRAGMA secure_delete = ON;
         PRAGMA foreign_keys = ON;
         PRAGMA wal_autocheckpoint = 0;",
    )?;
    let synchronous = match sync {
        Durability::Full => "FULL",
        Durability::Normal => "NORMAL",
    };
    conn.pragma_update(None, "synchronous", synchronous)?;
    Ok(conn)
}

/// How often the checkpointer copies the WAL into the database file.
const CHECKPOINT_EVERY: Duration = Duration::from_millis(50);
/// Past this many WAL frames (about 16 MiB at 4 KiB pages) the checkpointer restarts the WAL.
const RESTART_AT_FRAMES: i64 = 4096;

/// The WAL checkpoints of one database file, off the writers' commits (issue 23: the SQLite
/// p99 was checkpoints run inside a commit, holding every append behind them). Every 50 ms a
/// PASSIVE checkpoint copies what it can without waiting for anyone; once the WAL holds more
/// than [`RESTART_AT_FRAMES`], a RESTART checkpoint (which waits, at most 20 ms, for the
/// writer and the readers; most frames are copied already) lets the next commit write from
/// the WAL's start, so the file does not grow without bound. Runs until `stop` is set.
fn checkpointer(path: PathBuf, stop: Arc<std::sync::atomic::AtomicBool>) {
    use std::sync::atomic::Ordering;
    let Ok(conn) = Connection::open(&path) else {
        return;
    };
    let _ = conn.busy_timeout(Duration::from_millis(20));
    while !stop.load(Ordering::Relaxed) {
        std::thread::sleep(CHECKPOINT_EVERY);
        let passive = conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |r| {
            Ok((r.get::<_, i64>(1)?, r.get::<_, i64>(2)?))
        });
        if let Ok((frames, _copied)) = passive {
            if frames >= RESTART_AT_FRAMES {
                let _ =
                    conn.query_row("PRAGMA wal_checkpoint(RESTART)", [], |r| r.get::<_, i64>(0));
            }
        }
    }
    // A last full checkpoint, so that a store closed cleanly leaves a short WAL.
    let _ = conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |r| {
        r.get::<_, i64>(0)
    });
}

/// How often a connection retries a locked database before it gives up: about 10 s in all.
const BUSY_RETRIES: i32 = 100 + 10_000;

/// SQLite's own busy timeout sleeps 1, 2, 5, 10 … ms between retries; the write lock is
/// held for a millisecond or two per commit here (the event writer and the projection
/// runners take turns), so a waiter slept longer than the lock was held — measured on the
/// public page at 64 connections: p99 43 ms with SQLite's timeout, 19 ms with this. This one
/// retries every 50 µs for the first 100 tries (5 ms), then every millisecond, for about
/// 10 s in all.
fn busy_wait(attempt: i32) -> bool {
    if attempt >= BUSY_RETRIES {
        return false;
    }
    std::thread::sleep(if attempt < 100 {
        Duration::from_micros(50)
    } else {
        Duration::from_millis(1)
    });
    true
}

/// The tree's stored hashes at these indexes, in their order; a missing one is an error.
fn read_tree(conn: &Connection, indexes: &[u64]) -> Result<Vec<[u8; 32]>, StoreError> {
    use writer::{leaf_of, locate, Stored};
    // An interior node is cut from the run that starts at or before its rank (one index
    // probe); a leaf is its event's chain hash, hashed.
    let mut node = conn.prepare_cached(
        "SELECT substr(hashes, (?1 - first_rank) * 32 + 1, 32) FROM tree_runs \
         WHERE first_rank <= ?1 ORDER BY first_rank DESC LIMIT 1",
    )?;
    let mut leaf = conn.prepare_cached("SELECT hash FROM events WHERE position = ?1")?;
    indexes
        .iter()
        .map(|i| {
            let lacks = || StoreError::Corrupt(format!("the tree lacks stored hash {i}"));
            let (stmt, key, is_leaf) = match locate(*i) {
                Stored::Leaf(p) => (&mut leaf, p, true),
                Stored::Interior(r) => (&mut node, r, false),
            };
            let h: Vec<u8> = stmt
                .query_row([key as i64], |r| r.get(0))
                .map_err(|e| match e {
                    rusqlite::Error::QueryReturnedNoRows => lacks(),
                    e => e.into(),
                })?;
            let h = to_hash(h).map_err(|_| lacks())?;
            Ok(if is_leaf { leaf_of(&h) } else { h })
        })
        .collect()
}

fn insert_tree(conn: &Connection, rows: &[(u64, [u8; 32])]) -> Result<(), StoreError> {
    let mut ins =
        conn.prepare_cached("INSERT INTO tree_runs (first_rank, hashes) VALUES (?1, ?2)")?;
    for (first, hashes) in writer::interior_runs(rows) {
        ins.execute(params![first, hashes])?;
    }
    Ok(())
}

/// Gives the tree the leaves of the events after the first `size` positions, up to `head`,
/// reading their chain hashes from the log (a log older than the tree, or an import).
fn grow_tree(conn: &Connection, size: u64, head: u64) -> Result<(), StoreError> {
    let indexes = lightwidget_tlog::tree::frontier_indexes(size);
    let mut frontier = writer::Frontier::of(size, read_tree(conn, &indexes)?)?;
    let mut stmt = conn.prepare_cached(
        "SELECT hash FROM events WHERE position > ?1 AND position <= ?2 ORDER BY position LIMIT 10000",
    )?;
    while frontier.size < head {
        let hashes: Vec<[u8; 32]> = stmt
            .query_map([frontier.size as i64, head as i64], |r| {
                r.get::<_, Vec<u8>>(0)
            })?
            .map(|h| h.map_err(StoreError::from).and_then(to_hash))
            .collect::<Result<_, _>>()?;
        if hashes.is_empty() {
            return Err(StoreError::Corrupt(format!(
                "the log has no event at position {}",
                frontier.size + 1
            )));
        }
        let (rows, next) = frontier.extend(hashes)?;
        insert_tree(conn, &rows)?;
        frontier = next;
    }
    Ok(())
}

/// How many leaves the stored tree covers.
fn tree_size(conn: &Connection, head: u64) -> Result<u64, StoreError> {
    let last = conn
        .query_row(
            "SELECT first_rank, length(hashes) FROM tree_runs ORDER BY first_rank DESC LIMIT 1",
            [],
            |r| Ok((r.get::<_, i64>(0)?, r.get::<_, i64>(1)? as usize)),
        )
        .optional()?;
    writer::covered_by(writer::stored_in_runs(last), head)
}

/// Inserts stored events as they are (positions, hashes and all).
fn insert_events(conn: &Connection, events: &[StoredEvent]) -> Result<(), StoreError> {
    let mut ins = conn.prepare_cached(
        "INSERT INTO events (position, stream, version, event_id, event_type, schema_version, \
         recorded_at, actor, correlation_id, causation_id, data, prev_hash, hash) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)",
    )?;
    for e in events {
        ins.execute(params![
            e.position as i64,
            e.stream,
            e.version as i64,
            e.event_id.to_string(),
            e.event_type,
            e.schema_version,
            format_time(e.recorded_at),
            e.actor,
            e.correlation_id.to_string(),
            e.causation_id.map(|c| c.to_string()),
            e.data,
            e.prev_hash.as_slice(),
            e.hash.as_slice(),
        ])?;
    }
    Ok(())
}

/// Applies the SQLite migrations of the log's file that are not yet applied.
pub fn migrate(conn: &mut Connection) -> Result<(), StoreError> {
    apply(conn, lightwidget_schemas::SQLITE_MIGRATIONS)
}

/// Applies `migrations` that are not yet applied to the database of `conn`.
fn apply(conn: &mut Connection, migrations: &[Migration]) -> Result<(), StoreError> {
    let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
    tx.execute_batch(
        "CREATE TABLE IF NOT EXISTS schema_migrations (
             version INTEGER PRIMARY KEY, name TEXT NOT NULL,
             applied_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')));",
    )?;
    for m in migrations {
        let done: Option<i32> = tx
            .query_row(
                "SELECT version FROM schema_migrations WHERE version = ?1",
                [m.version],
                |r| r.get(0),
            )
            .optional()?;
        if done.is_some() {
            continue;
        }
        tx.execute_batch(m.sql)?;
        tx.execute(
            "INSERT INTO schema_migrations (version, name) VALUES (?1, ?2)",
            params![m.version, m.name],
        )?;
        tracing::info!(version = m.version, name = m.name, "applied migration");
    }
    tx.commit()?;
    Ok(())
}

/// Moves the read models' documents and checkpoints out of the log's file, where data
/// directories made before they had a file of their own keep them, into `views`; then drops
/// them there. Each step is one transaction: a stop between the two copies them again on
/// the next start (the same rows), and documents always move with their checkpoints.
fn move_views(ledger: &Connection, views: &Path) -> Result<(), StoreError> {
    let there: i64 = ledger.query_row(
        "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = 'views'",
        [],
        |r| r.get(0),
    )?;
    if there == 0 {
        return Ok(());
    }
    let views = views
        .to_str()
        .ok_or_else(|| StoreError::Internal("the data directory's path is not UTF-8".into()))?;
    ledger.execute("ATTACH DATABASE ?1 AS moved", [views])?;
    let moved = (|| -> Result<usize, StoreError> {
        let documents = write_tx(ledger, || {
            let documents = ledger.execute(
                "INSERT OR REPLACE INTO moved.views (view, key, doc, owner, state, due_at) \
                 SELECT view, key, doc, owner, state, due_at FROM main.views",
                [],
            )?;
            ledger.execute(
                "INSERT OR REPLACE INTO moved.view_checkpoints (view, position) \
                 SELECT view, position FROM main.view_checkpoints",
                [],
            )?;
            Ok(documents)
        })?;
        write_tx(ledger, || {
            ledger.execute_batch("DROP TABLE main.views; DROP TABLE main.view_checkpoints;")?;
            Ok(())
        })?;
        Ok(documents)
    })();
    ledger.execute_batch("DETACH DATABASE moved")?;
    let documents = moved?;
    if documents > 0 {
        tracing::info!(
            documents,
            "moved the read models into their own database file"
        );
    }
    Ok(())
}

/// Idle connections kept for reuse. Opening one reads the schema and sets the pragmas (tens
/// of microseconds of CPU), so under load — 64 page requests, five runners — a pool that
/// kept fewer than were in use at once spent a tenth of the machine reopening them.
const MAX_IDLE_READERS: usize = 64;

/// Reads of one pool running at once, each on a blocking thread of its own. More wait (not on
/// a thread) for a turn: two cores gain nothing from more, and every thread that has read
/// keeps memory of its own in the allocator (issue 28: the server's resident memory on SQLite
/// was half as much again as on PostgreSQL, whose reads take no thread).
const READS_AT_ONCE: usize = 16;

/// A pool of read connections.
#[derive(Debug)]
struct ReadPool {
    path: PathBuf,
    sync: Durability,
    idle: Mutex<Vec<Connection>>,
    turns: Arc<tokio::sync::Semaphore>,
}

impl ReadPool {
    fn with<T>(
        &self,
        f: impl FnOnce(&Connection) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let conn = self.idle.lock().unwrap_or_else(|p| p.into_inner()).pop();
        let conn = match conn {
            Some(c) => c,
            None => open_with(&self.path, self.sync)?,
        };
        let out = f(&conn);
        let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
        if idle.len() < MAX_IDLE_READERS {
            idle.push(conn);
        }
        out
    }
}

#[derive(Debug)]
pub struct SqliteEventStore {
    dir: PathBuf,
    master: MasterKey,
    reads: Arc<ReadPool>,
    /// The read models' connections (see [`Durability::Normal`]).
    views: Arc<ReadPool>,
    /// The read models' commits waiting for the next write transaction of the views file.
    view_commits: Arc<ViewCommits>,
    appends: Option<mpsc::Sender<Pending>>,
    head: watch::Receiver<u64>,
    writer: Option<std::thread::JoinHandle<()>>,
    /// The WAL checkpointers of the log's file and the read models' ([`checkpointer`]).
    checkpointers: Vec<std::thread::JoinHandle<()>>,
    stop_checkpoints: Arc<std::sync::atomic::AtomicBool>,
}

impl Drop for SqliteEventStore {
    fn drop(&mut self) {
        // Closing the queue lets the writer finish what was queued, then stop.
        self.appends.take();
        if let Some(w) = self.writer.take() {
            let _ = w.join();
        }
        self.stop_checkpoints
            .store(true, std::sync::atomic::Ordering::Relaxed);
        for c in self.checkpointers.drain(..) {
            let _ = c.join();
        }
    }
}

impl SqliteEventStore {
    /// Opens (creating if needed) the store in `dir`, migrates, starts the writer thread.
    pub fn open(
        dir: &Path,
        master: MasterKey,
        clock: Arc<dyn Clock>,
        options: SqliteOptions,
    ) -> Result<Self, StoreError> {
        std::fs::create_dir_all(dir).map_err(|e| {
            StoreError::Unavailable(format!("cannot create the data directory: {e}"))
        })?;
        let path = dir.join(DB_FILE);
        let mut conn = open_connection(&path)?;
        if let Some(limit) = options.heap_limit {
            conn.query_row(&format!("PRAGMA soft_heap_limit = {limit}"), [], |_| Ok(()))?;
        }
        migrate(&mut conn)?;
        {
            // A log older than its tree gets it now, before the writer starts.
            let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
            let head: i64 =
                tx.query_row("SELECT position FROM log_head WHERE id = 1", [], |r| {
                    r.get(0)
                })?;
            let covered = tree_size(&tx, head as u64)?;
            if covered < head as u64 {
                grow_tree(&tx, covered, head as u64)?;
            }
            tx.commit()?;
        }
        let views_path = dir.join(VIEWS_FILE);
        apply(
            &mut open_connection(&views_path)?,
            lightwidget_schemas::SQLITE_VIEW_MIGRATIONS,
        )?;
        move_views(&conn, &views_path)?;
        let start: i64 = conn.query_row("SELECT position FROM log_head WHERE id = 1", [], |r| {
            r.get(0)
        })?;
        let (head_tx, head_rx) = watch::channel(start as u64);
        let (tx, rx) = mpsc::channel(4096);
        let writer_master = master.clone();
        let writer = std::thread::Builder::new()
            .name("lw-sqlite-writer".into())
            .spawn(move || writer_thread(conn, writer_master, clock, rx, head_tx, options))
            .map_err(|e| StoreError::Internal(format!("spawn writer: {e}")))?;
        let stop_checkpoints = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let mut checkpointers = Vec::new();
        for file in [path.clone(), views_path.clone()] {
            let stop = stop_checkpoints.clone();
            checkpointers.push(
                std::thread::Builder::new()
                    .name("lw-sqlite-checkpoint".into())
                    .spawn(move || checkpointer(file, stop))
                    .map_err(|e| StoreError::Internal(format!("spawn checkpointer: {e}")))?,
            );
        }
        Ok(SqliteEventStore {
            dir: dir.to_owned(),
            master,
            reads: Arc::new(ReadPool {
                path: path.clone(),
                sync: Durability::Full,
                idle: Mutex::new(Vec::new()),
                turns: Arc::new(tokio::sync::Semaphore::new(READS_AT_ONCE)),
            }),
            views: Arc::new(ReadPool {
                path: views_path,
                sync: Durability::Normal,
                idle: Mutex::new(Vec::new()),
                turns: Arc::new(tokio::sync::Semaphore::new(READS_AT_ONCE)),
            }),
            view_commits: Arc::new(ViewCommits::default()),
            appends: Some(tx),
            head: head_rx,
            writer: Some(writer),
            checkpointers,
            stop_checkpoints,
        })
    }

    /// The data directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    async fn read<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Connection) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        on_pool(&self.reads, f).await
    }

    /// Like [`Self::read`], on a read-model connection.
    async fn view_io<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Connection) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        on_pool(&self.views, f).await
    }
}

/// Runs `f` on a connection of `pool`, on a blocking thread.
async fn on_pool<T: Send + 'static>(
    pool: &Arc<ReadPool>,
    f: impl FnOnce(&Connection) -> Result<T, StoreError> + Send + 'static,
) -> Result<T, StoreError> {
    let pool = pool.clone();
    let turn = pool
        .turns
        .clone()
        .acquire_owned()
        .await
        .map_err(|e| StoreError::Internal(format!("storage reads: {e}")))?;
    tokio::task::spawn_blocking(move || {
        let out = pool.with(f);
        drop(turn);
        out
    })
    .await
    .map_err(|e| StoreError::Internal(format!("storage task: {e}")))?
}

/// A row of the light read: the envelope's time still as text.
fn light_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<(StoredEvent, String)> {
    Ok((
        StoredEvent {
            position: r.get::<_, i64>(0)? as u64,
            stream: r.get(1)?,
            version: r.get::<_, i64>(2)? as u64,
            event_id: Uuid::nil(),
            event_type: r.get(3)?,
            schema_version: r.get(4)?,
            recorded_at: chrono::DateTime::<chrono::Utc>::MIN_UTC,
            actor: String::new(),
            correlation_id: Uuid::nil(),
            causation_id: None,
            data: r.get(6)?,
            prev_hash: [0; 32],
            hash: [0; 32],
        },
        r.get(5)?,
    ))
}

fn collect_light(
    rows: impl Iterator<Item = rusqlite::Result<(StoredEvent, String)>>,
    limit: usize,
) -> Result<Vec<StoredEvent>, StoreError> {
    let mut out = Vec::with_capacity(limit.min(100_000));
    for row in rows {
        let (mut e, t) = row?;
        e.recorded_at = chrono::DateTime::parse_from_rfc3339(&t)
            .map_err(|_| StoreError::Corrupt(format!("bad time at position {}", e.position)))?
            .with_timezone(&chrono::Utc);
        out.push(e);
    }
    Ok(out)
}

fn writer_thread(
    mut conn: Connection,
    master: MasterKey,
    clock: Arc<dyn Clock>,
    mut rx: mpsc::Receiver<Pending>,
    head: watch::Sender<u64>,
    options: SqliteOptions,
) {
    let SqliteOptions {
        pre_commit_delay: delay,
        page_limit,
        bench_without_tree,
        heap_limit: _,
    } = options;
    let mut cache = WriterCache::new(bench_without_tree);
    while let Some(first) = rx.blocking_recv() {
        if let Some(limit) = &page_limit {
            let pages = limit.load(std::sync::atomic::Ordering::Relaxed);
            if let Err(e) = conn.pragma_update(None, "max_page_count", pages as i64) {
                tracing::warn!(error = %e, "setting the test page limit");
            }
        }
        let mut batch = vec![first];
        while batch.len() < MAX_REQUESTS_PER_BATCH {
            match rx.try_recv() {
                Ok(p) => batch.push(p),
                Err(_) => break,
            }
        }
        let mut tx = SqliteTx {
            conn: &mut conn,
            delay,
        };
        // The transaction's futures never wait on anything: block_on runs them to the end.
        let written = futures::executor::block_on(writer::run_batch(
            &mut tx,
            &mut cache,
            &master,
            || clock.now(),
            batch,
        ));
        if let Some(pos) = written {
            head.send_if_modified(|h| {
                let moved = pos > *h;
                *h = (*h).max(pos);
                moved
            });
        }
    }
}

struct SqliteTx<'a> {
    conn: &'a mut Connection,
    delay: Option<Duration>,
}

impl SqliteTx<'_> {
    fn snapshot(&self, streams: &[String], event_ids: &[Uuid]) -> Result<Snapshot, StoreError> {
        let (position, hash, key_epoch): (i64, Vec<u8>, i64) = self
            .conn
            .prepare_cached("SELECT position, hash, key_epoch FROM log_head WHERE id = 1")?
            .query_row([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?;
        let mut versions = HashMap::new();
        let mut stmt = self.conn.prepare_cached(
            "SELECT version FROM events WHERE stream = ?1 ORDER BY version DESC LIMIT 1",
        )?;
        for s in streams {
            let v: Option<i64> = stmt.query_row([s], |r| r.get(0)).optional()?;
            if let Some(v) = v {
                versions.insert(s.clone(), v as u64);
            }
        }
        let mut existing = HashMap::new();
        let mut stmt = self
            .conn
            .prepare_cached("SELECT stream, version, position FROM events WHERE event_id = ?1")?;
        for id in event_ids {
            let row = stmt
                .query_row([id.to_string()], |r| {
                    Ok(Existing {
                        stream: r.get(0)?,
                        version: r.get::<_, i64>(1)? as u64,
                        position: r.get::<_, i64>(2)? as u64,
                    })
                })
                .optional()?;
            if let Some(x) = row {
                existing.insert(*id, x);
            }
        }
        Ok(Snapshot {
            head: Head {
                position: position as u64,
                hash: to_hash(hash)?,
            },
            key_epoch: key_epoch as u64,
            versions,
            existing,
        })
    }

    /// The key rows of these (subject, category) pairs that exist.
    fn key_rows(&self, refs: &[KeyRef]) -> Result<Vec<KeyRow>, StoreError> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT key_id, subject, category, wrapped FROM data_keys WHERE subject = ?1 AND category = ?2",
        )?;
        let mut out = Vec::new();
        for r in refs {
            if let Some(row) = stmt
                .query_row([r.subject.as_str(), r.category.as_str()], key_row)
                .optional()?
            {
                out.push(row?);
            }
        }
        Ok(out)
    }

    fn write(&self, w: &Write<'_>) -> Result<(), StoreError> {
        let (delete_keys, new_keys, events, head) = (w.delete_keys, w.new_keys, w.events, w.head);
        let mut del = self
            .conn
            .prepare_cached("DELETE FROM data_keys WHERE key_id = ?1")?;
        for id in delete_keys {
            del.execute([id.to_string()])?;
        }
        let mut ins = self.conn.prepare_cached(
            "INSERT INTO data_keys (key_id, subject, category, wrapped) VALUES (?1, ?2, ?3, ?4)",
        )?;
        for k in new_keys {
            ins.execute(params![
                k.key_id.to_string(),
                k.subject.as_str(),
                k.category.as_str(),
                k.wrapped
            ])?;
        }
        insert_events(self.conn, events)?;
        insert_tree(self.conn, w.tree)?;
        self.conn
            .prepare_cached(
                "UPDATE log_head SET position = ?1, hash = ?2, key_epoch = ?3 WHERE id = 1",
            )?
            .execute(params![
                head.position as i64,
                head.hash.as_slice(),
                w.key_epoch as i64
            ])?;
        if let Some(d) = self.delay {
            std::thread::sleep(d);
        }
        control(self.conn, "COMMIT")?;
        Ok(())
    }
}

impl LogTx for SqliteTx<'_> {
    async fn begin(
        &mut self,
        streams: &[String],
        event_ids: &[Uuid],
    ) -> Result<Snapshot, StoreError> {
        control(self.conn, "BEGIN IMMEDIATE")?;
        let snap = self.snapshot(streams, event_ids);
        if snap.is_err() {
            self.rollback().await;
        }
        snap
    }

    async fn keys_for(&mut self, refs: &[KeyRef]) -> Result<Vec<KeyRow>, StoreError> {
        let result = self.key_rows(refs);
        if result.is_err() {
            self.rollback().await;
        }
        result
    }

    async fn tree_hashes(&mut self, indexes: &[u64]) -> Result<Vec<[u8; 32]>, StoreError> {
        read_tree(self.conn, indexes)
    }

    async fn peek(&mut self, streams: &[String], refs: &[KeyRef]) -> Result<Peek, StoreError> {
        // A read transaction: one snapshot, no write lock.
        control(self.conn, "BEGIN")?;
        let result = self.snapshot(streams, &[]).and_then(|snap| {
            Ok(Peek {
                position: snap.head.position,
                key_epoch: snap.key_epoch,
                versions: snap.versions,
                keys: self.key_rows(refs)?,
            })
        });
        let end = control(self.conn, "COMMIT");
        let peek = result?;
        end?;
        Ok(peek)
    }

    async fn commit(&mut self, write: &Write<'_>) -> Result<(), StoreError> {
        let r = self.write(write);
        if r.is_err() {
            self.rollback().await;
        }
        r
    }

    async fn commit_if_head(
        &mut self,
        expected: HeadAt,
        write: &Write<'_>,
    ) -> Result<(), StoreError> {
        control(self.conn, "BEGIN IMMEDIATE")?;
        let head: Result<(i64, i64), rusqlite::Error> = self
            .conn
            .prepare_cached("SELECT position, key_epoch FROM log_head WHERE id = 1")
            .and_then(|mut s| s.query_row([], |r| Ok((r.get(0)?, r.get(1)?))));
        match head {
            Ok((position, key_epoch))
                if HeadAt {
                    position: position as u64,
                    key_epoch: key_epoch as u64,
                } == expected =>
            {
                self.commit(write).await
            }
            Ok(_) => {
                self.rollback().await;
                Err(StoreError::Internal("the log head moved".into()))
            }
            Err(e) => {
                self.rollback().await;
                Err(e.into())
            }
        }
    }

    async fn rollback(&mut self) {
        if !self.conn.is_autocommit() {
            let _ = self.conn.execute_batch("ROLLBACK");
        }
    }
}

/// Runs a transaction-control statement (`BEGIN IMMEDIATE`, `COMMIT`, …) through the
/// connection's statement cache: the writer and the read models' commits run them for every
/// batch, and parsing them anew each time (with the head's read and update) was ~1% of the
/// machine under the public page.
fn control(conn: &Connection, sql: &str) -> Result<(), rusqlite::Error> {
    conn.prepare_cached(sql)?.execute([]).map(|_| ())
}

/// A row of `log_checkpoints` (size, root, note, signed_at).
fn checkpoint_row(
    r: &rusqlite::Row<'_>,
) -> rusqlite::Result<Result<crate::SignedCheckpoint, StoreError>> {
    let size: i64 = r.get(0)?;
    let root: Vec<u8> = r.get(1)?;
    let note: String = r.get(2)?;
    let signed_at: String = r.get(3)?;
    Ok((|| {
        Ok(crate::SignedCheckpoint {
            size: size as u64,
            root: to_hash(root)?,
            note,
            signed_at: chrono::DateTime::parse_from_rfc3339(&signed_at)
                .map_err(|_| StoreError::Corrupt("a checkpoint's time is not RFC 3339".into()))?
                .with_timezone(&chrono::Utc),
        })
    })())
}

fn to_hash(bytes: Vec<u8>) -> Result<[u8; 32], StoreError> {
    bytes
        .try_into()
        .map_err(|_| StoreError::Corrupt("a stored hash is not 32 bytes".into()))
}

fn parse_uuid(s: &str) -> Result<Uuid, StoreError> {
    s.parse()
        .map_err(|_| StoreError::Corrupt("a stored id is not a UUID".into()))
}

/// Runs `f` in a write transaction taken at once (`BEGIN IMMEDIATE`): committed when it
/// succeeds, rolled back when it fails.
fn write_transaction(
    c: &Connection,
    f: impl FnOnce(&Connection) -> Result<(), StoreError>,
) -> Result<(), StoreError> {
    c.execute_batch("BEGIN IMMEDIATE")?;
    match f(c) {
        Ok(()) => c.execute_batch("COMMIT").map_err(Into::into),
        Err(e) => {
            let _ = c.execute_batch("ROLLBACK");
            Err(e)
        }
    }
}

fn key_row(r: &Row) -> rusqlite::Result<Result<KeyRow, StoreError>> {
    let key_id: String = r.get(0)?;
    let subject: String = r.get(1)?;
    let category: String = r.get(2)?;
    let wrapped: Vec<u8> = r.get(3)?;
    Ok((|| {
        Ok(KeyRow {
            key_id: parse_uuid(&key_id)?,
            subject: Subject::parse(&subject).ok_or_else(|| {
                StoreError::Corrupt("a data key row has an invalid subject".into())
            })?,
            category: category.parse().map_err(|_| {
                StoreError::Corrupt("a data key row has an invalid category".into())
            })?,
            wrapped,
        })
    })())
}

const EVENT_COLUMNS: &str = "position, stream, version, event_id, event_type, schema_version, \
     recorded_at, actor, correlation_id, causation_id, data, prev_hash, hash";

fn stored_event(r: &Row) -> rusqlite::Result<Result<StoredEvent, StoreError>> {
    let event_id: String = r.get(3)?;
    let recorded_at: String = r.get(6)?;
    let correlation_id: String = r.get(8)?;
    let causation_id: Option<String> = r.get(9)?;
    let prev_hash: Vec<u8> = r.get(11)?;
    let hash: Vec<u8> = r.get(12)?;
    let position = r.get::<_, i64>(0)? as u64;
    let stream: String = r.get(1)?;
    let version = r.get::<_, i64>(2)? as u64;
    let event_type: String = r.get(4)?;
    let schema_version: u32 = r.get(5)?;
    let actor: String = r.get(7)?;
    let data: String = r.get(10)?;
    Ok((|| {
        Ok(StoredEvent {
            position,
            stream,
            version,
            event_id: parse_uuid(&event_id)?,
            event_type,
            schema_version,
            recorded_at: chrono::DateTime::parse_from_rfc3339(&recorded_at)
                .map_err(|_| StoreError::Corrupt(format!("bad time at position {position}")))?
                .with_timezone(&chrono::Utc),
            actor,
            correlation_id: parse_uuid(&correlation_id)?,
            causation_id: causation_id.as_deref().map(parse_uuid).transpose()?,
            data,
            prev_hash: to_hash(prev_hash)?,
            hash: to_hash(hash)?,
        })
    })())
}

fn collect_events(
    stmt: &mut rusqlite::CachedStatement<'_>,
    params: impl rusqlite::Params,
) -> Result<Vec<StoredEvent>, StoreError> {
    let rows = stmt.query_map(params, stored_event)?;
    let mut out = Vec::new();
    for r in rows {
        out.push(r??);
    }
    Ok(out)
}

impl SqliteEventStore {
    /// The unwrapped keys among `ids`: the live ones, or (with `archived`) the ones archived
    /// under a legal hold.
    async fn keys_by_id(
        &self,
        ids: &[Uuid],
        archived: bool,
    ) -> Result<HashMap<Uuid, DataKey>, StoreError> {
        let ids: Vec<String> = ids.iter().map(Uuid::to_string).collect();
        let rows = self
            .read(move |c| {
                let mut stmt = c.prepare_cached(
                    "SELECT key_id, subject, category, wrapped FROM data_keys \
                     WHERE key_id = ?1 AND (archived_at IS NOT NULL) = ?2",
                )?;
                let mut out = Vec::new();
                for id in &ids {
                    if let Some(row) = stmt
                        .query_row(rusqlite::params![id, archived], key_row)
                        .optional()?
                    {
                        out.push(row?);
                    }
                }
                Ok(out)
            })
            .await?;
        let mut out = HashMap::with_capacity(rows.len());
        for k in rows {
            let key = self
                .master
                .unwrap_key(&k.wrapped, &key_context(&k.subject, k.category, k.key_id))
                .map_err(|_| {
                    StoreError::Corrupt(format!("data key {} cannot be unwrapped", k.key_id))
                })?;
            out.insert(k.key_id, key);
        }
        Ok(out)
    }
}

#[async_trait]
impl KeyStore for SqliteEventStore {
    async fn data_keys(&self, ids: &[Uuid]) -> Result<HashMap<Uuid, DataKey>, StoreError> {
        self.keys_by_id(ids, false).await
    }

    async fn archived_keys(&self, ids: &[Uuid]) -> Result<HashMap<Uuid, DataKey>, StoreError> {
        self.keys_by_id(ids, true).await
    }

    async fn archive(&self, refs: &[KeyRef]) -> Result<(), StoreError> {
        let refs: Vec<(String, &'static str)> = refs
            .iter()
            .map(|r| (r.subject.to_string(), r.category.as_str()))
            .collect();
        let now = crate::format_time(chrono::Utc::now());
        self.read(move |c| {
            write_transaction(c, |c| {
                let mut stmt = c.prepare_cached(
                    "UPDATE data_keys SET archived_at = ?3 \
                     WHERE subject = ?1 AND category = ?2 AND archived_at IS NULL",
                )?;
                for (s, cat) in &refs {
                    stmt.execute([s.as_str(), cat, now.as_str()])?;
                }
                Ok(())
            })
        })
        .await
    }

    async fn shred(&self, refs: &[KeyRef]) -> Result<(), StoreError> {
        let refs: Vec<(String, &'static str)> = refs
            .iter()
            .map(|r| (r.subject.to_string(), r.category.as_str()))
            .collect();
        self.read(move |c| {
            // One write transaction that bumps the key epoch, so that every writer's cached
            // keys are known to be stale.
            write_transaction(c, |c| {
                c.execute(
                    "UPDATE log_head SET key_epoch = key_epoch + 1 WHERE id = 1",
                    [],
                )?;
                let mut stmt =
                    c.prepare_cached("DELETE FROM data_keys WHERE subject = ?1 AND category = ?2")?;
                for (s, cat) in &refs {
                    stmt.execute([s.as_str(), cat])?;
                }
                Ok(())
            })
        })
        .await
    }

    async fn has_key(&self, subject: &Subject, category: Category) -> Result<bool, StoreError> {
        let s = subject.to_string();
        self.read(move |c| {
            let n: i64 = c.query_row(
                "SELECT count(*) FROM data_keys WHERE subject = ?1 AND category = ?2",
                [s.as_str(), category.as_str()],
                |r| r.get(0),
            )?;
            Ok(n > 0)
        })
        .await
    }
}

#[async_trait]
impl EventStore for SqliteEventStore {
    async fn tree_hashes(&self, indexes: &[u64]) -> Result<Vec<[u8; 32]>, StoreError> {
        let indexes = indexes.to_vec();
        self.read(move |c| read_tree(c, &indexes)).await
    }

    async fn record_checkpoint(&self, c: &crate::SignedCheckpoint) -> Result<(), StoreError> {
        let c = c.clone();
        self.read(move |conn| {
            write_transaction(conn, |conn| {
                conn.execute(
                    "INSERT INTO log_checkpoints (size, root, note, signed_at) \
                     VALUES (?1, ?2, ?3, ?4)",
                    rusqlite::params![
                        c.size as i64,
                        c.root.as_slice(),
                        c.note,
                        format_time(c.signed_at)
                    ],
                )?;
                Ok(())
            })
        })
        .await
    }

    async fn checkpoints(
        &self,
        after: u64,
        limit: usize,
    ) -> Result<Vec<crate::SignedCheckpoint>, StoreError> {
        let after = after.min(i64::MAX as u64) as i64;
        self.read(move |c| {
            let mut stmt = c.prepare_cached(
                "SELECT size, root, note, signed_at FROM log_checkpoints \
                 WHERE size > ?1 ORDER BY size, seq LIMIT ?2",
            )?;
            let rows = stmt.query_map(rusqlite::params![after, limit as i64], checkpoint_row)?;
            rows.map(|r| r?).collect()
        })
        .await
    }

    async fn latest_checkpoint(&self) -> Result<Option<crate::SignedCheckpoint>, StoreError> {
        self.read(move |c| {
            let mut stmt = c.prepare_cached(
                "SELECT size, root, note, signed_at FROM log_checkpoints \
                 ORDER BY seq DESC LIMIT 1",
            )?;
            let mut rows = stmt.query_map([], checkpoint_row)?;
            rows.next().transpose()?.transpose()
        })
        .await
    }

    async fn import(&self, events: &[StoredEvent]) -> Result<Head, StoreError> {
        let Some(last) = events.last().cloned() else {
            return Err(StoreError::EmptyBatch);
        };
        let events = events.to_vec();
        let path = self.reads.path.clone();
        // Its own connection and an IMMEDIATE transaction: the writer waits on the lock, and
        // re-reads the head before its next commit.
        let head = tokio::task::spawn_blocking(move || -> Result<Head, StoreError> {
            let mut conn = open_connection(&path)?;
            let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
            let (position, hash): (i64, Vec<u8>) = tx.query_row(
                "SELECT position, hash FROM log_head WHERE id = 1",
                [],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )?;
            let head = Head {
                position: position as u64,
                hash: hash
                    .try_into()
                    .map_err(|_| StoreError::Corrupt("the head's hash is not 32 bytes".into()))?,
            };
            crate::chain::ChainVerifier::check_continues(head, &events).map_err(|why| {
                StoreError::InvalidPayload(format!("the events do not continue this log {why}"))
            })?;
            insert_events(&tx, &events)?;
            grow_tree(&tx, head.position, last.position)?;
            tx.execute(
                "UPDATE log_head SET position = ?1, hash = ?2 WHERE id = 1",
                params![last.position as i64, last.hash.as_slice()],
            )?;
            tx.commit()?;
            Ok(Head {
                position: last.position,
                hash: last.hash,
            })
        })
        .await
        .map_err(|e| StoreError::Internal(format!("import task: {e}")))??;
        Ok(head)
    }

    async fn scrub(&self) -> Result<bool, StoreError> {
        // TRUNCATE waits (busy timeout) for readers of older snapshots, copies every page
        // back into the database file, over the old versions, and empties the log; in both
        // files (the read models' documents are where erased data was in the clear).
        let truncate = |c: &Connection| -> Result<bool, StoreError> {
            let busy: i64 = c.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |r| r.get(0))?;
            Ok(busy == 0)
        };
        let views = self.view_io(truncate).await?;
        let log = self.read(truncate).await?;
        Ok(views && log)
    }

    async fn append(&self, request: AppendRequest) -> Result<AppendResult, StoreError> {
        writer::precheck(&request)?;
        let appends = self
            .appends
            .as_ref()
            .ok_or_else(|| StoreError::Unavailable("the writer has stopped".into()))?;
        let (reply, answer) = oneshot::channel();
        appends
            .send(Pending { request, reply })
            .await
            .map_err(|_| StoreError::Unavailable("the writer has stopped".into()))?;
        answer
            .await
            .map_err(|_| StoreError::Unavailable("the writer has stopped".into()))?
    }

    async fn read_stream_raw(
        &self,
        stream: &str,
        after_version: u64,
        limit: usize,
    ) -> Result<Vec<StoredEvent>, StoreError> {
        let stream = stream.to_owned();
        self.read(move |c| {
            let mut stmt = c.prepare_cached(&format!(
                "SELECT {EVENT_COLUMNS} FROM events WHERE stream = ?1 AND version > ?2 ORDER BY version LIMIT ?3"
            ))?;
            collect_events(&mut stmt, params![stream, after_version as i64, limit as i64])
        })
        .await
    }

    async fn read_all_raw(&self, after: u64, limit: usize) -> Result<Vec<StoredEvent>, StoreError> {
        self.read(move |c| {
            let mut stmt = c.prepare_cached(&format!(
                "SELECT {EVENT_COLUMNS} FROM events WHERE position > ?1 ORDER BY position LIMIT ?2"
            ))?;
            collect_events(&mut stmt, params![after as i64, limit as i64])
        })
        .await
    }

    /// The chain's input straight from the rows: the envelope is kept as text in the form
    /// the chain hashes, so it is written out without being parsed (issue 28).
    async fn read_canonical(
        &self,
        after: u64,
        limit: usize,
    ) -> Result<crate::chain::CanonicalPage, StoreError> {
        self.read(move |c| {
            let mut stmt = c.prepare_cached(&format!(
                "SELECT {EVENT_COLUMNS} FROM events WHERE position > ?1 ORDER BY position LIMIT ?2"
            ))?;
            let mut rows = stmt.query(params![after as i64, limit as i64])?;
            let mut page = crate::chain::CanonicalPage::with_capacity(limit);
            while let Some(r) = rows.next()? {
                let position = r.get::<_, i64>(0)? as u64;
                let text = |i: usize| -> Result<&str, StoreError> {
                    r.get_ref(i)?.as_str().map_err(|_| {
                        StoreError::Corrupt(format!("a field at position {position} is not text"))
                    })
                };
                let hash = |i: usize| -> Result<crate::chain::Hash, StoreError> {
                    let bytes = r
                        .get_ref(i)?
                        .as_blob()
                        .map_err(|_| StoreError::Corrupt("a stored hash is not 32 bytes".into()))?;
                    bytes
                        .try_into()
                        .map_err(|_| StoreError::Corrupt("a stored hash is not 32 bytes".into()))
                };
                let causation = match r.get_ref(9)? {
                    rusqlite::types::ValueRef::Null => None,
                    _ => Some(text(9)?),
                };
                crate::chain::write_canonical_fields(
                    &crate::chain::StoredFields {
                        position,
                        stream: text(1)?,
                        version: r.get::<_, i64>(2)? as u64,
                        event_id: text(3)?,
                        event_type: text(4)?,
                        schema_version: r.get(5)?,
                        recorded_at: text(6)?,
                        actor: text(7)?,
                        correlation_id: text(8)?,
                        causation_id: causation,
                        data: text(10)?,
                    },
                    &mut page.bytes,
                );
                page.push(position, hash(11)?, hash(12)?);
            }
            Ok(page)
        })
        .await
    }

    async fn read_all_light(
        &self,
        after: u64,
        limit: usize,
    ) -> Result<Vec<StoredEvent>, StoreError> {
        self.read(move |c| {
            let mut stmt = c.prepare_cached(
                "SELECT position, stream, version, event_type, schema_version, recorded_at, data \
                 FROM events WHERE position > ?1 ORDER BY position LIMIT ?2",
            )?;
            let rows = stmt.query_map(params![after as i64, limit as i64], light_row)?;
            collect_light(rows, limit)
        })
        .await
    }

    async fn count_of(&self, after: u64, head: u64, types: &[&str]) -> Result<u64, StoreError> {
        let types = serde_json::to_string(types)
            .map_err(|e| StoreError::Internal(format!("types: {e}")))?;
        self.read(move |c| {
            // From the index on (type, position) alone.
            let n: i64 = c
                .prepare_cached(
                    "SELECT count(*) FROM events WHERE position > ?1 AND position <= ?2 \
                     AND event_type IN (SELECT value FROM json_each(?3))",
                )?
                .query_row(params![after as i64, head as i64, types], |r| r.get(0))?;
            Ok(n as u64)
        })
        .await
    }

    /// Read type by type, each in position order from the `(event_type, position)` index
    /// and at most `limit` of each, then merged: the first `limit` events of all the types
    /// are among the first `limit` of their own type. One query for all the types (`IN` a
    /// list, `ORDER BY position`) was planned as a search of the type index and a sort of
    /// every later event of those types, for each batch: for the types of most of the log,
    /// a read that grew with the log (decision 33).
    async fn read_all_light_of(
        &self,
        after: u64,
        limit: usize,
        types: &[&str],
    ) -> Result<(Vec<StoredEvent>, u64), StoreError> {
        let types: std::collections::BTreeSet<String> =
            types.iter().map(|t| (*t).to_owned()).collect();
        self.read(move |c| {
            // The head first: every position up to it is committed, so scanning up to it
            // and finding fewer than `limit` events means nothing of `types` is left there.
            let head: i64 = c
                .prepare_cached("SELECT position FROM log_head WHERE id = 1")?
                .query_row([], |r| r.get(0))?;
            let mut stmt = c.prepare_cached(
                "SELECT position, stream, version, event_type, schema_version, recorded_at, data \
                 FROM events WHERE event_type = ?1 AND position > ?2 AND position <= ?3 \
                 ORDER BY position LIMIT ?4",
            )?;
            let mut rows = Vec::new();
            for t in &types {
                let of_type =
                    stmt.query_map(params![t, after as i64, head, limit as i64], light_row)?;
                for row in of_type {
                    rows.push(row?);
                }
            }
            rows.sort_unstable_by_key(|(e, _)| e.position);
            rows.truncate(limit);
            let out = collect_light(rows.into_iter().map(Ok), limit)?;
            let end = crate::scanned_to(&out, limit, head as u64, after);
            Ok((out, end))
        })
        .await
    }

    async fn head(&self) -> Result<Head, StoreError> {
        self.read(|c| {
            let (p, h): (i64, Vec<u8>) = c.query_row(
                "SELECT position, hash FROM log_head WHERE id = 1",
                [],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )?;
            Ok(Head {
                position: p as u64,
                hash: to_hash(h)?,
            })
        })
        .await
    }

    async fn wait_for(&self, after: u64, timeout: Duration) {
        let mut rx = self.head.clone();
        let _ = tokio::time::timeout(timeout, rx.wait_for(|h| *h > after)).await;
    }
}

fn view_doc(r: &Row) -> rusqlite::Result<Result<ViewDoc, StoreError>> {
    let key: String = r.get(0)?;
    let doc: String = r.get(1)?;
    let owner: Option<String> = r.get(2)?;
    let state: Option<String> = r.get(3)?;
    let due: Option<String> = r.get(4)?;
    Ok((|| {
        Ok(ViewDoc {
            doc: serde_json::from_str(&doc)
                .map_err(|_| StoreError::Corrupt(format!("view document {key} is not JSON")))?,
            due_at: due
                .map(|d| {
                    chrono::DateTime::parse_from_rfc3339(&d)
                        .map(|t| t.with_timezone(&chrono::Utc))
                        .map_err(|_| {
                            StoreError::Corrupt(format!("view document {key} has a bad due date"))
                        })
                })
                .transpose()?,
            key,
            owner,
            state,
        })
    })())
}

/// Runs `f` in an immediate (write) transaction on `c`.
fn write_tx<T>(c: &Connection, f: impl FnOnce() -> Result<T, StoreError>) -> Result<T, StoreError> {
    control(c, "BEGIN IMMEDIATE")?;
    match f() {
        Ok(v) => {
            control(c, "COMMIT")?;
            Ok(v)
        }
        Err(e) => {
            let _ = c.execute_batch("ROLLBACK");
            Err(e)
        }
    }
}

/// One read model's commit, its rows ready to bind: documents are encoded by the runner that
/// commits, not copied to the thread that writes.
struct ViewCommit {
    view: String,
    from: u64,
    to: u64,
    owners: Vec<String>,
    rows: Vec<ViewRow>,
    done: tokio::sync::oneshot::Sender<Result<(), StoreError>>,
}

enum ViewRow {
    Put {
        key: String,
        doc: String,
        owner: Option<String>,
        state: Option<String>,
        due_at: Option<String>,
    },
    Delete(String),
}

impl ViewCommit {
    fn new(
        view: &str,
        from: u64,
        to: u64,
        changes: &[DocChange],
        done: tokio::sync::oneshot::Sender<Result<(), StoreError>>,
    ) -> Self {
        let (owners, changes) = crate::views::commit_order(changes);
        let rows = changes
            .into_iter()
            .filter_map(|c| match c {
                DocChange::Put(d) => Some(ViewRow::Put {
                    key: d.key.clone(),
                    doc: d.doc.to_string(),
                    owner: d.owner.clone(),
                    state: d.state.clone(),
                    due_at: d.due_at.map(format_time),
                }),
                DocChange::Delete(k) => Some(ViewRow::Delete(k.clone())),
                DocChange::DeleteOwner(_) => None,
            })
            .collect();
        ViewCommit {
            view: view.to_owned(),
            from,
            to,
            owners: owners.into_iter().map(str::to_owned).collect(),
            rows,
            done,
        }
    }

    /// Applies the commit inside the open transaction: its checkpoint compared and moved, its
    /// rows written; on an error nothing of it stays (the caller rolls back to a savepoint).
    fn apply(&self, c: &Connection) -> Result<(), StoreError> {
        let current: Option<i64> = c
            .prepare_cached("SELECT position FROM view_checkpoints WHERE view = ?1")?
            .query_row([&self.view], |r| r.get(0))
            .optional()?;
        let current = current.unwrap_or(0) as u64;
        if current != self.from {
            return Err(StoreError::Conflict {
                stream: format!("view:{}", self.view),
                expected: crate::ExpectedVersion::Exact(self.from),
                actual: current,
            });
        }
        let mut put = c.prepare_cached(
            "INSERT INTO views (view, key, doc, owner, state, due_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6) \
             ON CONFLICT (view, key) DO UPDATE SET doc = excluded.doc, owner = excluded.owner, \
             state = excluded.state, due_at = excluded.due_at",
        )?;
        let mut del = c.prepare_cached("DELETE FROM views WHERE view = ?1 AND key = ?2")?;
        let mut del_owner = c.prepare_cached("DELETE FROM views WHERE view = ?1 AND owner = ?2")?;
        for owner in &self.owners {
            del_owner.execute(params![self.view, owner])?;
        }
        for row in &self.rows {
            match row {
                ViewRow::Put {
                    key,
                    doc,
                    owner,
                    state,
                    due_at,
                } => {
                    put.execute(params![self.view, key, doc, owner, state, due_at])?;
                }
                ViewRow::Delete(key) => {
                    del.execute(params![self.view, key])?;
                }
            }
        }
        c.prepare_cached(
            "INSERT INTO view_checkpoints (view, position) VALUES (?1, ?2) \
             ON CONFLICT (view) DO UPDATE SET position = excluded.position",
        )?
        .execute(params![self.view, self.to as i64])?;
        Ok(())
    }
}

/// The read models' commits, gathered: whoever finds no flush running starts one on a
/// blocking thread, and it writes every commit waiting in one transaction of the views file
/// (each in a savepoint of its own, so a refused one leaves the others), until none waits.
/// Nine runners committing one after another took the file's write lock nine times, and
/// spun on it while another held it.
#[derive(Default)]
struct ViewCommits {
    state: Mutex<ViewCommitQueue>,
}

impl std::fmt::Debug for ViewCommits {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ViewCommits").finish_non_exhaustive()
    }
}

#[derive(Default)]
struct ViewCommitQueue {
    waiting: Vec<ViewCommit>,
    flushing: bool,
}

impl ViewCommits {
    /// Queues a commit; true when the caller must start the flush.
    fn enqueue(&self, commit: ViewCommit) -> bool {
        let mut q = self.state.lock().unwrap_or_else(|p| p.into_inner());
        q.waiting.push(commit);
        !std::mem::replace(&mut q.flushing, true)
    }

    /// Writes what waits, batch after batch, until nothing does.
    fn flush(&self, pool: &ReadPool) {
        loop {
            let batch = {
                let mut q = self.state.lock().unwrap_or_else(|p| p.into_inner());
                if q.waiting.is_empty() {
                    q.flushing = false;
                    return;
                }
                std::mem::take(&mut q.waiting)
            };
            let outcome = pool.with(|c| Ok(write_commits(c, &batch)));
            let results = match outcome {
                Ok(results) => results,
                Err(e) => batch.iter().map(|_| Err(copy_error(&e))).collect(),
            };
            for (commit, result) in batch.into_iter().zip(results) {
                let _ = commit.done.send(result);
            }
        }
    }
}

/// The commits in one write transaction, each in its savepoint; the result of each. When the
/// transaction itself fails, every commit fails with it.
fn write_commits(c: &Connection, batch: &[ViewCommit]) -> Vec<Result<(), StoreError>> {
    if let Err(e) = control(c, "BEGIN IMMEDIATE") {
        let e = StoreError::from(e);
        return batch.iter().map(|_| Err(copy_error(&e))).collect();
    }
    let mut results = Vec::with_capacity(batch.len());
    for commit in batch {
        let applied = control(c, "SAVEPOINT view_commit")
            .map_err(StoreError::from)
            .and_then(|()| commit.apply(c));
        if let Err(e) = &applied {
            if c.is_autocommit() {
                // SQLite rolled the whole transaction back (a full disk, say): the commits
                // before this one are gone with it.
                return batch.iter().map(|_| Err(copy_error(e))).collect();
            }
            let _ = control(c, "ROLLBACK TO view_commit");
        }
        let _ = control(c, "RELEASE view_commit");
        results.push(applied);
    }
    if let Err(e) = control(c, "COMMIT") {
        let e = StoreError::from(e);
        let _ = c.execute_batch("ROLLBACK");
        return batch.iter().map(|_| Err(copy_error(&e))).collect();
    }
    results
}

/// The same error again, for each of the commits one failure failed.
fn copy_error(e: &StoreError) -> StoreError {
    match e {
        StoreError::Unavailable(m) => StoreError::Unavailable(m.clone()),
        StoreError::Corrupt(m) => StoreError::Corrupt(m.clone()),
        other => StoreError::Internal(other.to_string()),
    }
}

#[async_trait]
impl ViewStore for SqliteEventStore {
    async fn checkpoint(&self, view: &str) -> Result<u64, StoreError> {
        let view = view.to_owned();
        self.view_io(move |c| {
            let p: Option<i64> = c
                .query_row(
                    "SELECT position FROM view_checkpoints WHERE view = ?1",
                    [&view],
                    |r| r.get(0),
                )
                .optional()?;
            Ok(p.unwrap_or(0) as u64)
        })
        .await
    }

    async fn commit(
        &self,
        view: &str,
        from: u64,
        to: u64,
        changes: &[DocChange],
    ) -> Result<(), StoreError> {
        let (done, answer) = tokio::sync::oneshot::channel();
        let commit = ViewCommit::new(view, from, to, changes, done);
        if self.view_commits.enqueue(commit) {
            let (pool, commits) = (self.views.clone(), self.view_commits.clone());
            tokio::task::spawn_blocking(move || commits.flush(&pool));
        }
        answer
            .await
            .map_err(|_| StoreError::Internal("the read models' commit was dropped".into()))?
    }

    async fn get_many(&self, view: &str, keys: &[String]) -> Result<Vec<ViewDoc>, StoreError> {
        let view = view.to_owned();
        let keys = keys.to_vec();
        self.view_io(move |c| {
            let mut stmt = c.prepare_cached(
                "SELECT key, doc, owner, state, due_at FROM views WHERE view = ?1 AND key = ?2",
            )?;
            let mut out = Vec::new();
            for k in &keys {
                if let Some(d) = stmt.query_row(params![view, k], view_doc).optional()? {
                    out.push(d?);
                }
            }
            Ok(out)
        })
        .await
    }

    async fn query(&self, view: &str, q: &ViewQuery) -> Result<Vec<ViewDoc>, StoreError> {
        let view = view.to_owned();
        let q = q.clone();
        self.view_io(move |c| {
            let mut sql =
                String::from("SELECT key, doc, owner, state, due_at FROM views WHERE view = ?");
            let mut args: Vec<rusqlite::types::Value> = vec![view.into()];
            if let Some(owner) = q.owner {
                sql.push_str(" AND owner = ?");
                args.push(owner.into());
            }
            if let Some(state) = q.state {
                sql.push_str(" AND state = ?");
                args.push(state.into());
            }
            if let Some(due) = q.due_before {
                sql.push_str(" AND due_at < ?");
                args.push(format_time(due).into());
            }
            if let Some(after) = q.after_key {
                sql.push_str(" AND key > ?");
                args.push(after.into());
            }
            sql.push_str(if q.due_before.is_some() {
                " ORDER BY due_at, key LIMIT ?"
            } else {
                " ORDER BY key LIMIT ?"
            });
            args.push((q.limit.clamp(1, 10_000) as i64).into());
            let mut stmt = c.prepare_cached(&sql)?;
            let rows = stmt.query_map(rusqlite::params_from_iter(args), view_doc)?;
            let mut out = Vec::new();
            for r in rows {
                out.push(r??);
            }
            Ok(out)
        })
        .await
    }

    async fn drop_view(&self, view: &str) -> Result<(), StoreError> {
        let view = view.to_owned();
        self.view_io(move |c| {
            write_tx(c, || {
                c.execute("DELETE FROM views WHERE view = ?1", [&view])?;
                c.execute("DELETE FROM view_checkpoints WHERE view = ?1", [&view])?;
                Ok(())
            })
        })
        .await
    }

    async fn swap(&self, building: &str, live: &str) -> Result<(), StoreError> {
        let (building, live) = (building.to_owned(), live.to_owned());
        self.view_io(move |c| {
            write_tx(c, || {
                c.execute("DELETE FROM views WHERE view = ?1", [&live])?;
                c.execute(
                    "UPDATE views SET view = ?2 WHERE view = ?1",
                    [&building, &live],
                )?;
                let p: Option<i64> = c
                    .query_row(
                        "SELECT position FROM view_checkpoints WHERE view = ?1",
                        [&building],
                        |r| r.get(0),
                    )
                    .optional()?;
                c.execute(
                    "INSERT INTO view_checkpoints (view, position) VALUES (?1, ?2) \
                     ON CONFLICT (view) DO UPDATE SET position = excluded.position",
                    params![live, p.unwrap_or(0)],
                )?;
                c.execute("DELETE FROM view_checkpoints WHERE view = ?1", [&building])?;
                Ok(())
            })
        })
        .await
    }
}

//! Append benchmark: the event store on both backends beside a raw baseline measured in the
//! same run through the same driver.
//!
//! `cargo bench -p lightwidget-store --bench append` (PostgreSQL from LW_TEST_DATABASE_URL,
//! default the local server; a fresh database is created and dropped). `LW_BENCH_SCALE`
//! multiplies the operation counts (default 1).
//!
//! Cases, per backend:
//! * store, single events, 1 task / 16 tasks; store, batches of 100, 1 task: each with the
//!   Merkle tree (as served) and without it (`bench_without_tree`, the tree's baseline),
//!   two rounds each in the order without, with, with, without;
//! * raw `INSERT` of rows of the same size into a table with the same columns and indexes:
//!   one row per transaction on 1 and on 16 connections, 100 rows per transaction.

use lightwidget_store::embedded::{open_connection, SqliteEventStore, SqliteOptions};
use lightwidget_store::postgres::{pool_for, PgEventStore, PgOptions};
use lightwidget_store::{
    AppendRequest, EventStore, ExpectedVersion, MasterKey, NewEvent, SystemClock,
};
use lightwidget_testkit::TestDatabase;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use uuid::Uuid;

const PAD: usize = 200;

fn event(n: u64) -> NewEvent {
    NewEvent {
        event_id: Uuid::new_v4(),
        event_type: "WidgetViewed".into(),
        schema_version: 1,
        data: serde_json::json!({"n": n, "pad": "x".repeat(PAD)}),
        actor: "system".into(),
        correlation_id: Uuid::new_v4(),
        causation_id: None,
    }
}

/// The stored data text of `event(n)`, for raw rows of the same size.
fn data_text(n: u64) -> String {
    serde_json::json!({"n": n, "pad": "x".repeat(PAD)}).to_string()
}

#[derive(Clone, Debug)]
struct Measured {
    case: String,
    events: u64,
    elapsed: Duration,
    latencies: Vec<Duration>,
}

impl Measured {
    fn rate(&self) -> f64 {
        self.events as f64 / self.elapsed.as_secs_f64()
    }
    fn pct(&self, p: f64) -> Duration {
        let mut l = self.latencies.clone();
        l.sort();
        if l.is_empty() {
            return Duration::ZERO;
        }
        let i = ((l.len() as f64 - 1.0) * p).round() as usize;
        l[i]
    }
}

fn ms(d: Duration) -> String {
    format!("{:.2}", d.as_secs_f64() * 1000.0)
}

/// Runs `per_task` operations on each of `tasks` tasks; each operation writes `events_per_op`.
async fn run<F, Fut>(
    case: &str,
    tasks: usize,
    per_task: usize,
    events_per_op: u64,
    op: F,
) -> Measured
where
    F: Fn(usize, usize) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = ()> + Send,
{
    let op = Arc::new(op);
    let start = Instant::now();
    let mut handles = Vec::new();
    for t in 0..tasks {
        let op = op.clone();
        handles.push(tokio::spawn(async move {
            let mut lat = Vec::with_capacity(per_task);
            for i in 0..per_task {
                let s = Instant::now();
                op(t, i).await;
                lat.push(s.elapsed());
            }
            lat
        }));
    }
    let mut latencies = Vec::new();
    for h in handles {
        latencies.extend(h.await.expect("task"));
    }
    Measured {
        case: case.into(),
        events: (tasks * per_task) as u64 * events_per_op,
        elapsed: start.elapsed(),
        latencies,
    }
}

/// The store's cases, named `store{tag}: …`; `round` keeps each round's streams apart.
async fn store_cases(
    store: Arc<dyn EventStore>,
    scale: usize,
    tag: &'static str,
    round: usize,
    out: &mut Vec<Measured>,
) {
    let s = store.clone();
    out.push(
        run(
            &format!("store{tag}: single events, 1 task"),
            1,
            1000 * scale,
            1,
            move |t, i| {
                let s = s.clone();
                async move {
                    s.append(AppendRequest::single(
                        format!("b1-{round}-{t}"),
                        ExpectedVersion::Exact(i as u64),
                        vec![event(i as u64)],
                    ))
                    .await
                    .expect("append");
                }
            },
        )
        .await,
    );
    let s = store.clone();
    out.push(
        run(
            &format!("store{tag}: single events, 16 tasks"),
            16,
            250 * scale,
            1,
            move |t, i| {
                let s = s.clone();
                async move {
                    s.append(AppendRequest::single(
                        format!("b16-{round}-{t}"),
                        ExpectedVersion::Exact(i as u64),
                        vec![event(i as u64)],
                    ))
                    .await
                    .expect("append");
                }
            },
        )
        .await,
    );
    let s = store.clone();
    out.push(
        run(
            &format!("store{tag}: batches of 100, 1 task"),
            1,
            100 * scale,
            100,
            move |t, i| {
                let s = s.clone();
                async move {
                    let events = (0..100).map(|k| event(k as u64)).collect();
                    s.append(AppendRequest::single(
                        format!("bb-{round}-{t}"),
                        ExpectedVersion::Exact(i as u64 * 100),
                        events,
                    ))
                    .await
                    .expect("append");
                }
            },
        )
        .await,
    );
}

const PG_RAW_INSERT: &str =
    "INSERT INTO raw_events (position, stream, version, event_id, event_type, \
     schema_version, recorded_at, actor, correlation_id, causation_id, data, prev_hash, hash) \
     VALUES ($1, $2, $3, $4, $5, $6, now(), $7, $8, NULL, $9, $10, $11)";
const PG_RAW_INSERT_MANY: &str = "INSERT INTO raw_events (position, stream, version, event_id, \
     event_type, schema_version, recorded_at, actor, correlation_id, causation_id, data, \
     prev_hash, hash) SELECT p, s, v, e, 'WidgetViewed', 1, now(), 'system', c, NULL, d, $6, $6 \
     FROM unnest($1::bigint[], $2::text[], $3::bigint[], $4::uuid[], $5::uuid[], $7::text[]) \
     AS t(p, s, v, e, c, d)";

async fn postgres(scale: usize) -> Vec<Measured> {
    let db = TestDatabase::create().await;
    let store = PgEventStore::connect(
        &db.url,
        MasterKey::generate(),
        Arc::new(SystemClock),
        PgOptions::default(),
    )
    .await
    .expect("connect");
    let raw_pool = pool_for(&db.url, 16).expect("pool");
    {
        let c = raw_pool.get().await.expect("conn");
        c.batch_execute("CREATE TABLE raw_events (LIKE events INCLUDING ALL)")
            .await
            .expect("raw table");
    }
    let mut out = Vec::new();
    let counter = Arc::new(AtomicI64::new(0));
    let hash = vec![7u8; 32];

    let (pool, ctr, h) = (raw_pool.clone(), counter.clone(), hash.clone());
    out.push(
        run(
            "raw: 1 row/transaction, 1 connection",
            1,
            1000 * scale,
            1,
            move |t, i| {
                let (pool, ctr, h) = (pool.clone(), ctr.clone(), h.clone());
                async move { pg_raw_one(&pool, &ctr, &h, t, i).await }
            },
        )
        .await,
    );
    let (pool, ctr, h) = (raw_pool.clone(), counter.clone(), hash.clone());
    out.push(
        run(
            "raw: 1 row/transaction, 16 connections",
            16,
            250 * scale,
            1,
            move |t, i| {
                let (pool, ctr, h) = (pool.clone(), ctr.clone(), h.clone());
                async move { pg_raw_one(&pool, &ctr, &h, t + 100, i).await }
            },
        )
        .await,
    );
    let (pool, ctr, h) = (raw_pool.clone(), counter.clone(), hash.clone());
    out.push(
        run(
            "raw: 100 rows/transaction, 1 connection",
            1,
            100 * scale,
            100,
            move |t, i| {
                let (pool, ctr, h) = (pool.clone(), ctr.clone(), h.clone());
                async move {
                    let c = pool.get().await.expect("conn");
                    let stmt = c.prepare_cached(PG_RAW_INSERT_MANY).await.expect("prepare");
                    let first = ctr.fetch_add(100, Ordering::SeqCst);
                    let pos: Vec<i64> = (first..first + 100).collect();
                    let streams: Vec<String> = (0..100).map(|_| format!("rb-{t}")).collect();
                    let versions: Vec<i64> = (0..100).map(|k| (i * 100 + k) as i64 + 1).collect();
                    let ids: Vec<Uuid> = (0..100).map(|_| Uuid::new_v4()).collect();
                    let corr: Vec<Uuid> = (0..100).map(|_| Uuid::new_v4()).collect();
                    let data: Vec<String> = (0..100).map(|k| data_text(k as u64)).collect();
                    c.execute(&stmt, &[&pos, &streams, &versions, &ids, &corr, &h, &data])
                        .await
                        .expect("insert many");
                }
            },
        )
        .await,
    );
    let bare_db = TestDatabase::create().await;
    let bare = PgEventStore::connect(
        &bare_db.url,
        MasterKey::generate(),
        Arc::new(SystemClock),
        PgOptions {
            bench_without_tree: true,
            ..PgOptions::default()
        },
    )
    .await
    .expect("connect");
    with_and_without_tree(Arc::new(store), Arc::new(bare), scale, &mut out).await;
    drop(raw_pool);
    out
}

async fn pg_raw_one(pool: &deadpool_postgres::Pool, ctr: &AtomicI64, h: &[u8], t: usize, i: usize) {
    let c = pool.get().await.expect("conn");
    let stmt = c.prepare_cached(PG_RAW_INSERT).await.expect("prepare");
    let pos = ctr.fetch_add(1, Ordering::SeqCst);
    c.execute(
        &stmt,
        &[
            &pos,
            &format!("r-{t}"),
            &(i as i64 + 1),
            &Uuid::new_v4(),
            &"WidgetViewed",
            &1i32,
            &"system",
            &Uuid::new_v4(),
            &data_text(i as u64),
            &h,
            &h,
        ],
    )
    .await
    .expect("insert");
}

const SQLITE_RAW_INSERT: &str =
    "INSERT INTO raw_events (position, stream, version, event_id, event_type, \
     schema_version, recorded_at, actor, correlation_id, causation_id, data, prev_hash, hash) \
     VALUES (?1, ?2, ?3, ?4, 'WidgetViewed', 1, ?5, 'system', ?6, NULL, ?7, ?8, ?8)";

fn sqlite_raw_rows(path: std::path::PathBuf, ctr: Arc<AtomicI64>, t: usize, rows: usize, i: usize) {
    thread_local! {
        static CONN: std::cell::RefCell<Option<rusqlite::Connection>> = const { std::cell::RefCell::new(None) };
    }
    CONN.with(|cell| {
        let mut cell = cell.borrow_mut();
        let conn = cell.get_or_insert_with(|| open_connection(&path).expect("open"));
        let tx = conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
            .expect("begin");
        {
            let mut stmt = tx.prepare_cached(SQLITE_RAW_INSERT).expect("prepare");
            let first = ctr.fetch_add(rows as i64, Ordering::SeqCst);
            for k in 0..rows {
                stmt.execute(rusqlite::params![
                    first + k as i64,
                    format!("r-{t}"),
                    (i * rows + k) as i64 + 1,
                    Uuid::new_v4().to_string(),
                    "2026-11-29T00:00:00.000000Z",
                    Uuid::new_v4().to_string(),
                    data_text(k as u64),
                    [7u8; 32].as_slice(),
                ])
                .expect("insert");
            }
        }
        tx.commit().expect("commit");
    });
}

async fn sqlite(scale: usize) -> Vec<Measured> {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = SqliteEventStore::open(
        dir.path(),
        MasterKey::generate(),
        Arc::new(SystemClock),
        SqliteOptions::default(),
    )
    .expect("open");
    let path = dir.path().join("ledger.db");
    {
        let conn = open_connection(&path).expect("open");
        // The same columns and indexes as `events`, without the append-only triggers.
        conn.execute_batch(
            "CREATE TABLE raw_events (position INTEGER PRIMARY KEY, stream TEXT NOT NULL, \
             version INTEGER NOT NULL, event_id TEXT NOT NULL UNIQUE, event_type TEXT NOT NULL, \
             schema_version INTEGER NOT NULL, recorded_at TEXT NOT NULL, actor TEXT NOT NULL, \
             correlation_id TEXT NOT NULL, causation_id TEXT, data TEXT NOT NULL, \
             prev_hash BLOB NOT NULL, hash BLOB NOT NULL, UNIQUE (stream, version)); \
             CREATE INDEX raw_type_position ON raw_events (event_type, position);",
        )
        .expect("raw table");
    }
    let mut out = Vec::new();
    let counter = Arc::new(AtomicI64::new(1));
    for (n, (case, tasks, per_task, rows)) in [
        ("raw: 1 row/transaction, 1 connection", 1, 1000 * scale, 1),
        ("raw: 1 row/transaction, 16 connections", 16, 250 * scale, 1),
        (
            "raw: 100 rows/transaction, 1 connection",
            1,
            100 * scale,
            100,
        ),
    ]
    .into_iter()
    .enumerate()
    {
        let (p, c) = (path.clone(), counter.clone());
        out.push(
            run(case, tasks, per_task, rows as u64, move |t, i| {
                let (p, c) = (p.clone(), c.clone());
                async move {
                    tokio::task::spawn_blocking(move || {
                        sqlite_raw_rows(p, c, t + n * 1000, rows, i)
                    })
                    .await
                    .expect("blocking");
                }
            })
            .await,
        );
    }
    let bare_dir = tempfile::tempdir().expect("tempdir");
    let bare = SqliteEventStore::open(
        bare_dir.path(),
        MasterKey::generate(),
        Arc::new(SystemClock),
        SqliteOptions {
            bench_without_tree: true,
            ..SqliteOptions::default()
        },
    )
    .expect("open");
    with_and_without_tree(Arc::new(store), Arc::new(bare), scale, &mut out).await;
    out
}

/// The store's cases with the Merkle tree and without it (the benchmark hook), in the order
/// without, with, with, without, so that a drift of the machine during the run weighs on both.
async fn with_and_without_tree(
    tree: Arc<dyn EventStore>,
    bare: Arc<dyn EventStore>,
    scale: usize,
    out: &mut Vec<Measured>,
) {
    store_cases(bare.clone(), scale, WITHOUT_TREE, 0, out).await;
    store_cases(tree.clone(), scale, "", 0, out).await;
    store_cases(tree, scale, "", 1, out).await;
    store_cases(bare, scale, WITHOUT_TREE, 1, out).await;
}

const WITHOUT_TREE: &str = " without the tree";

/// Measurements of one case in several rounds, as one.
fn merged(results: &[Measured]) -> Vec<Measured> {
    let mut out: Vec<Measured> = Vec::new();
    for m in results {
        match out.iter_mut().find(|o| o.case == m.case) {
            Some(o) => {
                o.events += m.events;
                o.elapsed += m.elapsed;
                o.latencies.extend(m.latencies.iter().copied());
            }
            None => out.push(m.clone()),
        }
    }
    out
}

fn report(backend: &str, results: &[Measured]) {
    let results = &merged(results);
    let base = |name: &str| {
        results
            .iter()
            .find(|m| m.case == name)
            .map(Measured::rate)
            .unwrap_or(f64::NAN)
    };
    let pairs = [
        (
            "store: single events, 1 task",
            "raw: 1 row/transaction, 1 connection",
        ),
        (
            "store: single events, 16 tasks",
            "raw: 1 row/transaction, 16 connections",
        ),
        (
            "store: batches of 100, 1 task",
            "raw: 100 rows/transaction, 1 connection",
        ),
    ];
    println!("\n### {backend}\n");
    println!("| case | events | events/s | p50 ms | p99 ms | vs raw | with the tree vs without |");
    println!("|---|---:|---:|---:|---:|---:|---:|");
    for m in results {
        let plain = m.case.replace(WITHOUT_TREE, "");
        let ratio = pairs
            .iter()
            .find(|(s, _)| *s == plain)
            .map(|(_, r)| format!("{:.0}%", 100.0 * m.rate() / base(r)))
            .unwrap_or_else(|| "baseline".into());
        let tree = match (m.case.contains(WITHOUT_TREE), m.case.starts_with("store")) {
            (false, true) => {
                let bare = m.case.replacen("store", &format!("store{WITHOUT_TREE}"), 1);
                format!("{:.1}%", 100.0 * m.rate() / base(&bare))
            }
            _ => String::new(),
        };
        println!(
            "| {} | {} | {:.0} | {} | {} | {} | {} |",
            m.case,
            m.events,
            m.rate(),
            ms(m.pct(0.5)),
            ms(m.pct(0.99)),
            ratio,
            tree
        );
    }
}

fn main() {
    let scale: usize = std::env::var("LW_BENCH_SCALE")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1);
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let only = std::env::var("LW_BENCH_BACKEND").unwrap_or_default();
    rt.block_on(async {
        if only.is_empty() || only == "postgres" {
            let r = postgres(scale).await;
            report("PostgreSQL", &r);
        }
        if only.is_empty() || only == "sqlite" {
            let r = sqlite(scale).await;
            report("SQLite (embedded)", &r);
        }
    });
}

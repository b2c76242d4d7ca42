//! Views at volume, on both backends, each beside a raw baseline measured in the same run:
//!
//! * ingest: 64 concurrent producers recording views through the `HitRecorder` batching
//!   path (which stores each batch as one `HitsRecorded` event), against a raw
//!   100-rows-per-statement `INSERT` of one row per view, each the size a view takes in the
//!   recorder's events;
//! * rebuild: the statistics projection rebuilt from position 0 over all view events, against
//!   a raw `SELECT` of the same rows through the same driver (with and without deserializing
//!   each payload), at a quarter of the events and at all of them, with the process's peak
//!   memory during each rebuild (VmHWM, reset before the phase).
//!
//! `cargo bench -p lightwidget-commands --bench views` — `LW_BENCH_EVENTS` (default
//! 1,000,000) sets the total; `LW_BENCH_BACKEND=postgres|sqlite` runs one backend.

use lightwidget_commands::HitRecorder;
use lightwidget_domain::{DomainEvent, WidgetId};
use lightwidget_projections::models::Statistics;
use lightwidget_projections::rebuild;
use lightwidget_store::embedded::open_connection;
use lightwidget_store::postgres::pool_for;
use lightwidget_store::SystemClock;
use lightwidget_testkit::bench::{peak_mib, peak_reset};
use lightwidget_testkit::{Backend, TestStore};
use std::sync::Arc;
use std::time::Instant;

// The server's allocator, as in the `lightwidget` binary; the baselines run in this process too.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

const WIDGETS: usize = 1000;
const PRODUCERS: usize = 64;
const PER_PRODUCER: usize = 500;

fn view(widgets: &[WidgetId], n: usize) -> DomainEvent {
    lightwidget_testkit::bench::widget_view(widgets, n)
}

async fn generate(t: &TestStore, widgets: &[WidgetId], from: usize, to: usize) {
    lightwidget_testkit::bench::append_views(&*t.store, widgets, from, to).await
}

/// Raw scan of the same rows through the same driver, paging by position like the runner.
async fn raw_scan(t: &TestStore, backend: Backend, decode: bool) -> (usize, f64) {
    let start = Instant::now();
    let mut rows = 0usize;
    match backend {
        Backend::Postgres => {
            let pool = pool_for(&t.db.as_ref().expect("db").url, 1).expect("pool");
            let c = pool.get().await.expect("conn");
            let stmt = c
                .prepare("SELECT position, data FROM events WHERE position > $1 ORDER BY position LIMIT 1000")
                .await
                .expect("prepare");
            let mut after = 0i64;
            loop {
                let page = c.query(&stmt, &[&after]).await.expect("select");
                let Some(last) = page.last() else { break };
                after = last.get(0);
                for r in &page {
                    let data: &str = r.get(1);
                    if decode {
                        let v: serde_json::Value = serde_json::from_str(data).expect("json");
                        std::hint::black_box(v);
                    } else {
                        std::hint::black_box(data);
                    }
                }
                rows += page.len();
            }
        }
        Backend::Sqlite => {
            let path = t.dir.as_ref().expect("dir").path().join("ledger.db");
            rows = tokio::task::spawn_blocking(move || {
                let conn = open_connection(&path).expect("open");
                let mut stmt = conn
                    .prepare("SELECT position, data FROM events WHERE position > ?1 ORDER BY position LIMIT 1000")
                    .expect("prepare");
                let mut after = 0i64;
                let mut rows = 0usize;
                loop {
                    let page: Vec<(i64, String)> = stmt
                        .query_map([after], |r| Ok((r.get(0)?, r.get(1)?)))
                        .expect("select")
                        .collect::<Result<_, _>>()
                        .expect("rows");
                    let Some(last) = page.last() else { break };
                    after = last.0;
                    for (_, data) in &page {
                        if decode {
                            let v: serde_json::Value = serde_json::from_str(data).expect("json");
                            std::hint::black_box(v);
                        } else {
                            std::hint::black_box(data);
                        }
                    }
                    rows += page.len();
                }
                rows
            })
            .await
            .expect("scan");
        }
    }
    (rows, rows as f64 / start.elapsed().as_secs_f64())
}

async fn raw_insert_100(t: &TestStore, backend: Backend, rows: usize, data_len: usize) -> f64 {
    let data = format!(
        "{{\"pad\":\"{}\"}}",
        "x".repeat(data_len.saturating_sub(10))
    );
    let start = Instant::now();
    match backend {
        Backend::Postgres => {
            let pool = pool_for(&t.db.as_ref().expect("db").url, 1).expect("pool");
            let c = pool.get().await.expect("conn");
            c.batch_execute("CREATE TABLE raw_events (LIKE events INCLUDING ALL)")
                .await
                .expect("raw table");
            let stmt = c
                .prepare(
                    "INSERT INTO raw_events (position, stream, version, event_id, event_type, schema_version, \
                     recorded_at, actor, correlation_id, causation_id, data, prev_hash, hash) \
                     SELECT p, 'views-raw-' || (p % 1000), p, gen_random_uuid(), 'WidgetViewed', 1, now(), 'system', \
                     gen_random_uuid(), NULL, $2, $3, $3 FROM unnest($1::bigint[]) AS p",
                )
                .await
                .expect("prepare");
            let hash = vec![7u8; 32];
            for chunk in 0..rows.div_ceil(100) {
                let pos: Vec<i64> = (chunk * 100..(chunk + 1) * 100)
                    .map(|p| p as i64 + 1)
                    .collect();
                c.execute(&stmt, &[&pos, &data, &hash])
                    .await
                    .expect("insert");
            }
        }
        Backend::Sqlite => {
            let path = t.dir.as_ref().expect("dir").path().join("ledger.db");
            tokio::task::spawn_blocking(move || {
                let conn = open_connection(&path).expect("open");
                conn.execute_batch(
                    "CREATE TABLE raw_events (position INTEGER PRIMARY KEY, stream TEXT NOT NULL, \
                     version INTEGER NOT NULL, event_id TEXT NOT NULL UNIQUE, event_type TEXT NOT NULL, \
                     schema_version INTEGER NOT NULL, recorded_at TEXT NOT NULL, actor TEXT NOT NULL, \
                     correlation_id TEXT NOT NULL, causation_id TEXT, data TEXT NOT NULL, \
                     prev_hash BLOB NOT NULL, hash BLOB NOT NULL, UNIQUE (stream, version))",
                )
                .expect("raw table");
                let values = vec!["(?, ?, ?, ?, 'WidgetViewed', 1, '2026-11-29T00:00:00.000000Z', 'system', ?, NULL, ?, ?, ?)"; 100].join(", ");
                let sql = format!(
                    "INSERT INTO raw_events (position, stream, version, event_id, event_type, schema_version, \
                     recorded_at, actor, correlation_id, causation_id, data, prev_hash, hash) VALUES {values}"
                );
                let mut stmt = conn.prepare(&sql).expect("prepare");
                let hash = [7u8; 32];
                for chunk in 0..rows.div_ceil(100) {
                    let mut args: Vec<rusqlite::types::Value> = Vec::with_capacity(800);
                    for p in chunk * 100..(chunk + 1) * 100 {
                        args.push((p as i64 + 1).into());
                        args.push(format!("views-raw-{}", p % 1000).into());
                        args.push((p as i64 + 1).into());
                        args.push(uuid::Uuid::new_v4().to_string().into());
                        args.push(uuid::Uuid::new_v4().to_string().into());
                        args.push(data.clone().into());
                        args.push(hash.to_vec().into());
                        args.push(hash.to_vec().into());
                    }
                    stmt.execute(rusqlite::params_from_iter(args)).expect("insert");
                }
            })
            .await
            .expect("raw insert");
        }
    }
    rows as f64 / start.elapsed().as_secs_f64()
}

async fn bench(backend: Backend, total: usize) {
    let name = match backend {
        Backend::Postgres => "PostgreSQL",
        Backend::Sqlite => "SQLite (embedded)",
    };
    println!("\n### {name}\n");
    let t = TestStore::new(backend, Arc::new(SystemClock)).await;
    let widgets: Vec<WidgetId> = (0..WIDGETS).map(|_| WidgetId::new()).collect();

    // Ingest through the batching path.
    let recorder = HitRecorder::spawn(t.store.clone(), 1000);
    let start = Instant::now();
    let mut tasks = Vec::new();
    for p in 0..PRODUCERS {
        let (recorder, widgets) = (recorder.clone(), widgets.clone());
        tasks.push(tokio::spawn(async move {
            for i in 0..PER_PRODUCER {
                recorder
                    .record(view(&widgets, p * PER_PRODUCER + i))
                    .await
                    .expect("record");
            }
        }));
    }
    for task in tasks {
        task.await.expect("producer");
    }
    let ingested = PRODUCERS * PER_PRODUCER;
    let ingest_rate = ingested as f64 / start.elapsed().as_secs_f64();
    // The recorder stores a batch of hits as one event: the baseline's rows are the size
    // one view takes in it.
    let first = &t.store.read_all_raw(0, 1).await.expect("read")[0];
    let hits = match first.decode_sealed().expect("decode") {
        DomainEvent::HitsRecorded(h) => h.len().max(1),
        _ => 1,
    };
    let data_len = first.data.len() / hits;
    let raw_rate = raw_insert_100(&t, backend, ingested, data_len).await;
    println!("| ingest | views | views/s | raw 100-row INSERT rows/s | ratio |");
    println!("|---|---:|---:|---:|---:|");
    println!(
        "| {PRODUCERS} producers via HitRecorder ({data_len} bytes a view) | {ingested} | {ingest_rate:.0} | {raw_rate:.0} | {:.0}% |",
        100.0 * ingest_rate / raw_rate
    );

    println!("\n| rebuild of `statistics` | events | events/s | raw SELECT rows/s | raw SELECT + JSON decode rows/s | vs decode | peak RSS during rebuild |");
    println!("|---|---:|---:|---:|---:|---:|---:|");
    let gen_start = Instant::now();
    // The log holds the ingested views as fewer (batch) events; the rebuild rows count
    // events, so the generated single views fill the log up to each target from its head.
    let mut have = t.store.head().await.expect("head").position as usize;
    for target in [total / 4, total] {
        generate(&t, &widgets, have, target).await;
        have = target;
        let (rows, scan) = raw_scan(&t, backend, false).await;
        let (_, scan_decode) = raw_scan(&t, backend, true).await;
        peak_reset();
        let start = Instant::now();
        let head = rebuild(t.store.clone(), t.views.clone(), Arc::new(Statistics))
            .await
            .expect("rebuild");
        let rate = head as f64 / start.elapsed().as_secs_f64();
        println!(
            "| from position 0 | {rows} | {rate:.0} | {scan:.0} | {scan_decode:.0} | {:.0}% | {:.0} MiB |",
            100.0 * rate / scan_decode,
            peak_mib()
        );
    }
    eprintln!(
        "({name}: generating the log took {:.0} s)",
        gen_start.elapsed().as_secs_f64()
    );
}

fn main() {
    let total: usize = std::env::var("LW_BENCH_EVENTS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1_000_000);
    let only = std::env::var("LW_BENCH_BACKEND").unwrap_or_default();
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    rt.block_on(async {
        if only.is_empty() || only == "postgres" {
            bench(Backend::Postgres, total).await;
        }
        if only.is_empty() || only == "sqlite" {
            bench(Backend::Sqlite, total).await;
        }
    });
}

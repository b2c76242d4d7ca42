//! A retention sweep at scale, on both backends: a retention view of `LW_BENCH_ITEMS`
//! (default 1,000,000) items, of which 1% are due, then one sweep. Reports the seeding time,
//! the sweep's time, how many index entries it read against how many items exist, and the
//! query plan of the sweep's due-date query (it must be an index search, not a scan).
//!
//! `cargo bench -p lightwidget-retention --bench sweep` — `LW_BENCH_ITEMS` sets the number of
//! items, `LW_BENCH_BACKEND=postgres|sqlite` runs one backend.
//!
//! The items are access-log buckets of visitors (each with its own 12-month clock) written
//! straight into the view through `ViewStore::commit` with the projection's own document
//! builder: building a million items through the log would measure the projection, which
//! `lightwidget-commands`' views bench already does; here only the sweep is timed.

use chrono::{Duration, TimeZone, Utc};
use lightwidget_domain::{Category, Subject, WidgetId};
use lightwidget_retention::projection::{item_key, ItemFacts, Retention, VIEW};
use lightwidget_retention::sweeper::Sweeper;
use lightwidget_retention::RetentionPolicy;
use lightwidget_store::embedded::open_connection;
use lightwidget_store::postgres::pool_for;
use lightwidget_store::{format_time, Clock, DocChange, ManualClock};
use lightwidget_testkit::{Backend, TestStore};
use std::sync::Arc;
use std::time::Instant;

const DUE_QUERY_PG: &str = "SELECT key, doc, owner, state, due_at FROM views \
     WHERE view = $1 AND due_at < $2 ORDER BY due_at, key LIMIT 256";
const DUE_QUERY_SQLITE: &str = "SELECT key, doc, owner, state, due_at FROM views \
     WHERE view = ?1 AND due_at < ?2 ORDER BY due_at, key LIMIT 256";

async fn seed(t: &TestStore, retention: &Retention, items: usize, now: chrono::DateTime<Utc>) {
    let due_every = 100; // 1% due
    let widgets: Vec<WidgetId> = (0..1000)
        .map(|i| WidgetId(uuid::Uuid::from_u128(i + 1)))
        .collect();
    let mut n = 0;
    while n < items {
        let end = (n + 5000).min(items);
        let changes: Vec<DocChange> = (n..end)
            .map(|i| {
                let widget = widgets[i % widgets.len()];
                // Due: last entry 13 months ago; not due: between 1 and 11 months ago.
                let at = if i % due_every == 0 {
                    now - Duration::days(395) - Duration::minutes((i % 1000) as i64)
                } else {
                    now - Duration::days(30 + (i % 300) as i64)
                };
                let subject = Subject::new("accesslog", format!("{widget}:{i:07}"));
                let facts = ItemFacts {
                    widget_id: Some(widget),
                    ..ItemFacts::on_own_clock(subject.clone(), Category::AccessLog, at, 0)
                };
                let key = item_key(&subject, Category::AccessLog);
                DocChange::Put(retention.item_doc(&key, &facts, None))
            })
            .collect();
        t.views.commit(VIEW, 0, 0, &changes).await.expect("commit");
        n = end;
    }
}

async fn plan(t: &TestStore, backend: Backend, now: chrono::DateTime<Utc>) -> String {
    match backend {
        Backend::Postgres => {
            let pool = pool_for(&t.db.as_ref().expect("db").url, 1).expect("pool");
            let c = pool.get().await.expect("conn");
            c.batch_execute("ANALYZE views").await.expect("analyze");
            let rows = c
                .query(
                    &format!("EXPLAIN (ANALYZE, BUFFERS, COSTS OFF, TIMING OFF) {DUE_QUERY_PG}"),
                    &[&VIEW, &now],
                )
                .await
                .expect("explain");
            rows.iter()
                .map(|r| r.get::<_, String>(0))
                .collect::<Vec<_>>()
                .join("\n    ")
        }
        Backend::Sqlite => {
            let path = t.dir.as_ref().expect("dir").path().join("views.db");
            let c = open_connection(&path).expect("open");
            let mut stmt = c
                .prepare(&format!("EXPLAIN QUERY PLAN {DUE_QUERY_SQLITE}"))
                .expect("prepare");
            let rows = stmt
                .query_map(rusqlite::params![VIEW, format_time(now)], |r| {
                    r.get::<_, String>(3)
                })
                .expect("plan");
            rows.map(|r| r.expect("row")).collect::<Vec<_>>().join("; ")
        }
    }
}

async fn run(backend: Backend, items: usize) {
    let now = Utc
        .with_ymd_and_hms(2027, 6, 1, 12, 0, 0)
        .single()
        .expect("time");
    let clock = Arc::new(ManualClock::new(now));
    let t = TestStore::new(backend, clock.clone()).await;
    let policy = Arc::new(RetentionPolicy::defaults());
    let retention = Retention::new(policy.clone());

    let start = Instant::now();
    seed(&t, &retention, items, now).await;
    let seeded = start.elapsed().as_secs_f64();
    println!(
        "{backend:?}: seeded {items} retention items in {seeded:.1} s ({:.0} items/s)",
        items as f64 / seeded
    );
    println!(
        "  due-date query plan:\n    {}",
        plan(&t, backend, now).await
    );

    let sweeper = Sweeper::new(t.store.clone(), t.views.clone(), clock.clone(), policy);
    let start = Instant::now();
    let report = sweeper.sweep().await.expect("sweep");
    let took = start.elapsed().as_secs_f64();
    println!(
        "  sweep: {} purged, {} index entries read of {items} items, {} refused, in {took:.1} s \
         ({:.0} purges/s); log head {}",
        report.purged.len(),
        report.examined,
        report.refused,
        report.purged.len() as f64 / took,
        report.position,
    );
    let start = Instant::now();
    let again = sweeper.sweep().await.expect("sweep");
    println!(
        "  a second sweep: {} purged, {} entries read, in {:.3} s",
        again.purged.len(),
        again.examined,
        start.elapsed().as_secs_f64()
    );
    assert_eq!(report.purged.len(), items / 100);
    assert_eq!(again.purged.len(), 0);
    let _ = clock.now();
}

#[tokio::main]
async fn main() {
    let items = lightwidget_testkit::bench::count("LW_BENCH_ITEMS", 1_000_000);
    for backend in lightwidget_testkit::bench::backends() {
        run(backend, items).await;
    }
}

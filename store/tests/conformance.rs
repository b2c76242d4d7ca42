//! The conformance suite: one body of tests, run against every adapter for real —
//! PostgreSQL in a fresh database per test (dropped after), SQLite in a fresh directory.

use lightwidget_domain::personal::PERSONAL_MARKER;
use lightwidget_domain::{Category, Subject};
use lightwidget_store::embedded::{SqliteEventStore, SqliteOptions};
use lightwidget_store::postgres::{PgEventStore, PgOptions};
use lightwidget_store::{
    AppendRequest, EventStore, ExpectedVersion, MasterKey, NewEvent, RecordedEvent, StoreError,
    StreamWrite, SystemClock, MAX_EVENTS_PER_APPEND,
};
use lightwidget_testkit::Backend;
use lightwidget_testkit::TestDatabase;
use serde_json::json;
use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;
use uuid::Uuid;

/// One test's storage: a database or a directory, and the master key.
struct Ctx {
    backend: Backend,
    db: Option<TestDatabase>,
    dir: Option<tempfile::TempDir>,
    master: MasterKey,
}

impl Ctx {
    async fn new(backend: Backend) -> Ctx {
        let (db, dir) = match backend {
            Backend::Postgres => (Some(TestDatabase::create().await), None),
            Backend::Sqlite => (None, Some(tempfile::tempdir().expect("tempdir"))),
        };
        Ctx {
            backend,
            db,
            dir,
            master: MasterKey::generate(),
        }
    }

    /// Opens a store on this test's storage; each call is a separate writer (as a separate
    /// process would be), with its own pool or connection.
    async fn open_with(&self, delay: Option<Duration>) -> Arc<dyn EventStore> {
        match self.backend {
            Backend::Postgres => Arc::new(
                PgEventStore::connect(
                    &self.db.as_ref().expect("db").url,
                    self.master.clone(),
                    Arc::new(SystemClock),
                    PgOptions {
                        pool_size: 8,
                        listen: true,
                        pre_commit_delay: delay,
                        ..PgOptions::default()
                    },
                )
                .await
                .expect("connect"),
            ),
            Backend::Sqlite => Arc::new(
                SqliteEventStore::open(
                    self.dir.as_ref().expect("dir").path(),
                    self.master.clone(),
                    Arc::new(SystemClock),
                    SqliteOptions {
                        pre_commit_delay: delay,
                        ..SqliteOptions::default()
                    },
                )
                .expect("open"),
            ),
        }
    }

    async fn open(&self) -> Arc<dyn EventStore> {
        self.open_with(None).await
    }

    /// Runs SQL directly against the storage, around the store: the tamperer's view.
    async fn raw_sql(&self, sql: &str) {
        match self.backend {
            Backend::Postgres => {
                let url = &self.db.as_ref().expect("db").url;
                let (client, conn) = tokio_postgres::connect(url, tokio_postgres::NoTls)
                    .await
                    .expect("connect");
                let driver = tokio::spawn(conn);
                client.batch_execute(sql).await.expect("raw sql");
                drop(client);
                let _ = driver.await;
            }
            Backend::Sqlite => {
                let path = self.dir.as_ref().expect("dir").path().join("ledger.db");
                let conn = rusqlite::Connection::open(path).expect("open");
                conn.execute_batch(sql).expect("raw sql");
            }
        }
    }

    /// Runs SQL that must fail (the append-only triggers).
    async fn raw_sql_fails(&self, sql: &str) -> bool {
        match self.backend {
            Backend::Postgres => {
                let url = &self.db.as_ref().expect("db").url;
                let (client, conn) = tokio_postgres::connect(url, tokio_postgres::NoTls)
                    .await
                    .expect("connect");
                let driver = tokio::spawn(conn);
                let failed = client.batch_execute(sql).await.is_err();
                drop(client);
                let _ = driver.await;
                failed
            }
            Backend::Sqlite => {
                let path = self.dir.as_ref().expect("dir").path().join("ledger.db");
                let conn = rusqlite::Connection::open(path).expect("open");
                conn.execute_batch(sql).is_err()
            }
        }
    }

    /// Tampers with stored events, bypassing the append-only triggers as an attacker with
    /// full database rights could.
    async fn tamper(&self, sql: &str) {
        match self.backend {
            Backend::Postgres => {
                self.raw_sql(&format!("SET session_replication_role = replica; {sql}"))
                    .await
            }
            Backend::Sqlite => {
                self.raw_sql(&format!(
                    "DROP TRIGGER IF EXISTS events_no_update; DROP TRIGGER IF EXISTS events_no_delete; {sql}"
                ))
                .await
            }
        }
    }

    /// Everything the storage holds, as bytes an attacker could read: every file of the
    /// SQLite directory, or every event and key row of PostgreSQL as text.
    async fn raw_bytes(&self) -> Vec<u8> {
        match self.backend {
            Backend::Postgres => {
                let url = &self.db.as_ref().expect("db").url;
                let (client, conn) = tokio_postgres::connect(url, tokio_postgres::NoTls)
                    .await
                    .expect("connect");
                let driver = tokio::spawn(conn);
                let mut out = Vec::new();
                for sql in [
                    "SELECT e::text FROM events e",
                    "SELECT k::text FROM data_keys k",
                ] {
                    for row in client.query(sql, &[]).await.expect("dump") {
                        out.extend(row.get::<_, String>(0).into_bytes());
                    }
                }
                drop(client);
                let _ = driver.await;
                out
            }
            Backend::Sqlite => {
                let mut out = Vec::new();
                for entry in std::fs::read_dir(self.dir.as_ref().expect("dir").path()).expect("dir")
                {
                    let path = entry.expect("entry").path();
                    if path.is_file() {
                        out.extend(std::fs::read(path).expect("read"));
                    }
                }
                out
            }
        }
    }
}

fn event(n: u64) -> NewEvent {
    NewEvent {
        event_id: Uuid::new_v4(),
        event_type: "TestHappened".into(),
        schema_version: 1,
        data: json!({"n": n}),
        actor: "system".into(),
        correlation_id: Uuid::new_v4(),
        causation_id: None,
    }
}

fn personal_event(subject: &Subject, category: Category, value: &str) -> NewEvent {
    NewEvent {
        data: json!({"field": {PERSONAL_MARKER: {"subject": subject.as_str(), "category": category.as_str(), "value": value}}}),
        ..event(0)
    }
}

fn single(stream: &str, expected: ExpectedVersion, events: Vec<NewEvent>) -> AppendRequest {
    AppendRequest::single(stream, expected, events)
}

// ---------------------------------------------------------------- the suite

/// 8 writers on two separate stores (two pools, as two processes) append 20,000 events while
/// a subscriber follows; one store holds every transaction open 2 ms before COMMIT. The
/// subscriber sees every event exactly once, in position order, without a gap.
async fn concurrent_writers_and_a_subscriber(backend: Backend) {
    const WRITERS: usize = 8;
    const APPENDS: usize = 250;
    const PER_APPEND: usize = 10;
    const TOTAL: usize = WRITERS * APPENDS * PER_APPEND;
    let ctx = Ctx::new(backend).await;
    let a = ctx.open().await;
    let b = ctx.open_with(Some(Duration::from_millis(2))).await;

    let sub_store = a.clone();
    let subscriber = tokio::spawn(async move {
        let mut seen: Vec<(u64, Uuid)> = Vec::with_capacity(TOTAL);
        while seen.len() < TOTAL {
            let after = seen.last().map(|e| e.0).unwrap_or(0);
            let batch =
                tokio::time::timeout(Duration::from_secs(60), next_batch(&*sub_store, after))
                    .await
                    .expect("subscriber stalled")
                    .expect("read");
            seen.extend(batch.into_iter().map(|e| (e.position, e.event_id)));
        }
        seen
    });

    let mut writers = Vec::new();
    for w in 0..WRITERS {
        let store = if w % 2 == 0 { a.clone() } else { b.clone() };
        writers.push(tokio::spawn(async move {
            let mut ids = Vec::with_capacity(APPENDS * PER_APPEND);
            for i in 0..APPENDS {
                let events: Vec<NewEvent> = (0..PER_APPEND)
                    .map(|k| event((i * PER_APPEND + k) as u64))
                    .collect();
                ids.extend(events.iter().map(|e| e.event_id));
                let stream = format!("writer-{w}");
                store
                    .append(single(
                        &stream,
                        ExpectedVersion::Exact((i * PER_APPEND) as u64),
                        events,
                    ))
                    .await
                    .expect("append");
            }
            ids
        }));
    }
    let mut written = HashSet::new();
    for w in writers {
        written.extend(w.await.expect("writer"));
    }
    let seen = subscriber.await.expect("subscriber");
    assert_eq!(written.len(), TOTAL);
    assert_eq!(
        seen.len(),
        TOTAL,
        "subscriber saw more or fewer events than written"
    );
    for (i, (position, _)) in seen.iter().enumerate() {
        assert_eq!(*position, i as u64 + 1, "gap or reordering at index {i}");
    }
    let seen_ids: HashSet<Uuid> = seen.iter().map(|(_, id)| *id).collect();
    assert_eq!(seen_ids.len(), TOTAL, "an event was delivered twice");
    assert_eq!(seen_ids, written);
    let report = a.verify().await.expect("verify");
    assert!(report.ok, "{report:?}");
    assert_eq!(report.events_checked, TOTAL as u64);
}

async fn optimistic_concurrency(backend: Backend) {
    let ctx = Ctx::new(backend).await;
    let s = ctx.open().await;
    let r = s
        .append(single(
            "account-1",
            ExpectedVersion::NoStream,
            vec![event(1)],
        ))
        .await
        .expect("first");
    assert_eq!((r.first_position, r.last_position), (1, 1));
    assert_eq!(r.versions, vec![("account-1".to_string(), 1)]);

    let err = s
        .append(single(
            "account-1",
            ExpectedVersion::NoStream,
            vec![event(2)],
        ))
        .await
        .expect_err("stream exists");
    assert!(
        matches!(err, StoreError::Conflict { actual: 1, .. }),
        "{err:?}"
    );
    let err = s
        .append(single(
            "account-1",
            ExpectedVersion::Exact(5),
            vec![event(2)],
        ))
        .await
        .expect_err("stale");
    assert!(
        matches!(err, StoreError::Conflict { actual: 1, .. }),
        "{err:?}"
    );
    assert_eq!(
        s.head().await.expect("head").position,
        1,
        "a refused append stored something"
    );

    s.append(single(
        "account-1",
        ExpectedVersion::Exact(1),
        vec![event(2), event(3)],
    ))
    .await
    .expect("exact");
    let r = s
        .append(single("account-1", ExpectedVersion::Any, vec![event(4)]))
        .await
        .expect("any");
    assert_eq!(r.versions[0].1, 4);
    let versions: Vec<u64> = s
        .read_stream("account-1", 0, 100)
        .await
        .expect("read")
        .iter()
        .map(|e| e.version)
        .collect();
    assert_eq!(versions, vec![1, 2, 3, 4]);
}

/// Many appenders race for a new stream: exactly one wins, the others get `Conflict`, and
/// the losers' refusals do not disturb the winners batched in the same transaction.
async fn racing_appenders_one_wins(backend: Backend) {
    let ctx = Ctx::new(backend).await;
    let s = ctx.open().await;
    let mut tasks = Vec::new();
    for i in 0..16 {
        let s = s.clone();
        tasks.push(tokio::spawn(async move {
            // Each racer also writes its own stream in a separate append.
            let own = s.append(single(
                &format!("own-{i}"),
                ExpectedVersion::NoStream,
                vec![event(i)],
            ));
            let race = s.append(single(
                "contested",
                ExpectedVersion::NoStream,
                vec![event(i)],
            ));
            let (own, race) = tokio::join!(own, race);
            own.expect("own stream");
            race
        }));
    }
    let mut wins = 0;
    for t in tasks {
        match t.await.expect("task") {
            Ok(_) => wins += 1,
            Err(StoreError::Conflict { .. }) => {}
            Err(e) => panic!("unexpected {e:?}"),
        }
    }
    assert_eq!(wins, 1);
    assert_eq!(s.head().await.expect("head").position, 17);
    assert!(s.verify().await.expect("verify").ok);
}

async fn multi_stream_appends_are_atomic(backend: Backend) {
    let ctx = Ctx::new(backend).await;
    let s = ctx.open().await;
    s.append(single("order-1", ExpectedVersion::NoStream, vec![event(1)]))
        .await
        .expect("seed");
    let req = AppendRequest {
        writes: vec![
            StreamWrite {
                stream: "invoices-2026".into(),
                expected: ExpectedVersion::NoStream,
                events: vec![event(2)],
            },
            StreamWrite {
                stream: "order-1".into(),
                expected: ExpectedVersion::NoStream, // stale: order-1 exists
                events: vec![event(3)],
            },
        ],
        shred: vec![],
    };
    assert!(matches!(
        s.append(req.clone()).await,
        Err(StoreError::Conflict { .. })
    ));
    assert!(s
        .read_stream("invoices-2026", 0, 10)
        .await
        .expect("read")
        .is_empty());
    let mut ok = req;
    ok.writes[1].expected = ExpectedVersion::Exact(1);
    let r = s.append(ok).await.expect("atomic append");
    assert_eq!((r.first_position, r.last_position), (2, 3));
    assert_eq!(
        r.versions,
        vec![("invoices-2026".into(), 1), ("order-1".into(), 2)]
    );
}

async fn idempotent_by_event_id(backend: Backend) {
    let ctx = Ctx::new(backend).await;
    let s = ctx.open().await;
    let events = vec![event(1), event(2)];
    let first = s
        .append(single(
            "widget-1",
            ExpectedVersion::NoStream,
            events.clone(),
        ))
        .await
        .expect("first");
    s.append(single("widget-2", ExpectedVersion::Any, vec![event(3)]))
        .await
        .expect("other");
    // The same request again (a retry after a lost answer): original positions, nothing new.
    let again = s
        .append(single(
            "widget-1",
            ExpectedVersion::NoStream,
            events.clone(),
        ))
        .await
        .expect("retry");
    assert!(again.duplicate);
    assert_eq!(
        (again.first_position, again.last_position),
        (first.first_position, first.last_position)
    );
    assert_eq!(s.head().await.expect("head").position, 3);

    // The same id in another stream, or mixed with new ids, is not the same request.
    let err = s
        .append(single(
            "widget-9",
            ExpectedVersion::Any,
            vec![events[0].clone()],
        ))
        .await
        .expect_err("other stream");
    assert!(matches!(err, StoreError::IdempotencyMismatch(_)), "{err:?}");
    let err = s
        .append(single(
            "widget-1",
            ExpectedVersion::Any,
            vec![events[0].clone(), event(9)],
        ))
        .await
        .expect_err("partial");
    assert!(matches!(err, StoreError::IdempotencyMismatch(_)), "{err:?}");
    // The same id twice within one request.
    let e = event(5);
    let err = s
        .append(single("widget-3", ExpectedVersion::Any, vec![e.clone(), e]))
        .await
        .expect_err("dup in request");
    assert!(matches!(err, StoreError::IdempotencyMismatch(_)), "{err:?}");
    assert_eq!(s.head().await.expect("head").position, 3);
}

async fn empty_and_oversized_batches_are_refused(backend: Backend) {
    let ctx = Ctx::new(backend).await;
    let s = ctx.open().await;
    let err = s
        .append(single("a-1", ExpectedVersion::Any, vec![]))
        .await
        .expect_err("empty");
    assert!(matches!(err, StoreError::EmptyBatch), "{err:?}");
    let err = s.append(AppendRequest::default()).await.expect_err("empty");
    assert!(matches!(err, StoreError::EmptyBatch), "{err:?}");
    let many: Vec<NewEvent> = (0..=MAX_EVENTS_PER_APPEND as u64).map(event).collect();
    let err = s
        .append(single("a-1", ExpectedVersion::Any, many))
        .await
        .expect_err("too many");
    assert!(matches!(err, StoreError::BatchTooLarge { .. }), "{err:?}");
    let big = NewEvent {
        data: json!({"blob": "x".repeat(1024 * 1024 + 1)}),
        ..event(1)
    };
    let err = s
        .append(single("a-1", ExpectedVersion::Any, vec![big]))
        .await
        .expect_err("too big");
    assert!(matches!(err, StoreError::EventTooLarge { .. }), "{err:?}");
    let err = s
        .append(single("bad stream", ExpectedVersion::Any, vec![event(1)]))
        .await
        .expect_err("bad name");
    assert!(matches!(err, StoreError::InvalidStream(_)), "{err:?}");
    assert_eq!(s.head().await.expect("head").position, 0);
    // The largest batch allowed goes through whole.
    let max: Vec<NewEvent> = (0..MAX_EVENTS_PER_APPEND as u64).map(event).collect();
    let r = s
        .append(single("a-1", ExpectedVersion::NoStream, max))
        .await
        .expect("max batch");
    assert_eq!(r.last_position, MAX_EVENTS_PER_APPEND as u64);
}

async fn unknown_streams_and_reads_past_the_head(backend: Backend) {
    let ctx = Ctx::new(backend).await;
    let s = ctx.open().await;
    assert!(s
        .read_stream("nobody-1", 0, 10)
        .await
        .expect("read")
        .is_empty());
    assert!(s.read_all(0, 10).await.expect("read").is_empty());
    for n in 0..5 {
        s.append(single("s-1", ExpectedVersion::Any, vec![event(n)]))
            .await
            .expect("append");
    }
    assert!(s.read_all(5, 10).await.expect("read").is_empty());
    assert!(s.read_all(500, 10).await.expect("read").is_empty());
    assert!(s.read_stream("s-1", 5, 10).await.expect("read").is_empty());
    let tail: Vec<u64> = s
        .read_all(3, 10)
        .await
        .expect("read")
        .iter()
        .map(|e| e.position)
        .collect();
    assert_eq!(tail, vec![4, 5]);
    let page: Vec<u64> = s
        .read_stream("s-1", 1, 2)
        .await
        .expect("read")
        .iter()
        .map(|e| e.version)
        .collect();
    assert_eq!(page, vec![2, 3]);
    // An empty log verifies.
    let fresh = Ctx::new(backend).await;
    let r = fresh.open().await.verify().await.expect("verify");
    assert!(
        r.ok && r.events_checked == 0 && r.head_position == 0,
        "{r:?}"
    );
}

async fn verify_names_a_tampered_row(backend: Backend) {
    let ctx = Ctx::new(backend).await;
    let s = ctx.open().await;
    for n in 1..=10 {
        s.append(single("t-1", ExpectedVersion::Any, vec![event(n)]))
            .await
            .expect("append");
    }
    let clean = s.verify().await.expect("verify");
    assert!(clean.ok, "{clean:?}");
    assert_eq!((clean.events_checked, clean.head_position), (10, 10));

    // The log refuses updates and deletes through SQL.
    assert!(
        ctx.raw_sql_fails("UPDATE events SET actor = 'x' WHERE position = 3")
            .await
    );
    assert!(
        ctx.raw_sql_fails("DELETE FROM events WHERE position = 3")
            .await
    );

    ctx.tamper(r#"UPDATE events SET data = '{"n":999}' WHERE position = 5"#)
        .await;
    let report = s.verify().await.expect("verify");
    assert!(!report.ok);
    assert_eq!(report.first_bad_position, Some(5), "{report:?}");
}

async fn verify_names_a_deleted_row(backend: Backend) {
    let ctx = Ctx::new(backend).await;
    let s = ctx.open().await;
    for n in 1..=6 {
        s.append(single("t-1", ExpectedVersion::Any, vec![event(n)]))
            .await
            .expect("append");
    }
    ctx.tamper("DELETE FROM events WHERE position = 4").await;
    let report = s.verify().await.expect("verify");
    assert_eq!(report.first_bad_position, Some(4), "{report:?}");
}

/// The log's last events gone (a file or table cut at its tail, a partial restore): every
/// remaining link is sound, and only the head row can tell. Verify names the first missing
/// position.
async fn verify_names_a_log_truncated_at_its_tail(backend: Backend) {
    let ctx = Ctx::new(backend).await;
    let s = ctx.open().await;
    for n in 1..=6 {
        s.append(single("t-1", ExpectedVersion::Any, vec![event(n)]))
            .await
            .expect("append");
    }
    assert!(s.verify().await.expect("verify").ok, "whole");
    ctx.tamper("DELETE FROM events WHERE position > 4").await;
    let report = s.verify().await.expect("verify");
    assert!(!report.ok, "{report:?}");
    assert_eq!(report.events_checked, 4, "{report:?}");
    assert_eq!(report.first_bad_position, Some(5), "{report:?}");
    assert!(
        report
            .problem
            .as_deref()
            .is_some_and(|p| p.contains("the head says 6, the log ends at 4")),
        "{report:?}"
    );
}

async fn verify_names_one_changed_byte_and_two_swapped_rows(backend: Backend) {
    let ctx = Ctx::new(backend).await;
    let s = ctx.open().await;
    for n in 1..=9 {
        s.append(single("t-1", ExpectedVersion::Any, vec![event(n * 11)]))
            .await
            .expect("append");
    }
    // One byte of one payload: 77 becomes 78.
    ctx.tamper(r#"UPDATE events SET data = replace(data, '77', '78') WHERE position = 7"#)
        .await;
    let report = s.verify().await.expect("verify");
    assert_eq!(report.first_bad_position, Some(7), "{report:?}");
    ctx.tamper(r#"UPDATE events SET data = replace(data, '78', '77') WHERE position = 7"#)
        .await;
    assert!(s.verify().await.expect("verify").ok, "restored");
    // Two rows swapped in place.
    ctx.tamper(
        "UPDATE events SET position = -3 WHERE position = 3; \
         UPDATE events SET position = 3 WHERE position = 4; \
         UPDATE events SET position = 4 WHERE position = -3;",
    )
    .await;
    let report = s.verify().await.expect("verify");
    assert_eq!(report.first_bad_position, Some(3), "{report:?}");
}

async fn a_write_without_events_fences_on_a_version(backend: Backend) {
    let ctx = Ctx::new(backend).await;
    let s = ctx.open().await;
    s.append(single("fence-a", ExpectedVersion::Any, vec![event(1)]))
        .await
        .expect("append");
    let fenced = |version| AppendRequest {
        writes: vec![
            StreamWrite::fence("fence-a", version),
            StreamWrite {
                stream: "fence-b".into(),
                expected: ExpectedVersion::Any,
                events: vec![event(2)],
            },
        ],
        shred: vec![],
    };
    let stale = s.append(fenced(0)).await;
    assert!(
        matches!(stale, Err(StoreError::Conflict { .. })),
        "{stale:?}"
    );
    assert!(s
        .read_stream_raw("fence-b", 0, 10)
        .await
        .expect("read")
        .is_empty());
    let ok = s.append(fenced(1)).await.expect("append");
    assert_eq!(ok.first_position, 2);
    assert_eq!(
        s.read_stream_raw("fence-a", 0, 10)
            .await
            .expect("read")
            .len(),
        1
    );
    // A fence needs a version; a request of fences alone has nothing to append.
    let any = AppendRequest {
        writes: vec![StreamWrite {
            stream: "fence-a".into(),
            expected: ExpectedVersion::Any,
            events: vec![],
        }],
        shred: vec![],
    };
    assert!(matches!(s.append(any).await, Err(StoreError::EmptyBatch)));
}

/// Pages are read ahead while one is hashed: a change many pages in, and one on the first
/// event of a page, are still named exactly, the events up to them counted checked and
/// reported as progress.
async fn verify_names_a_tampered_row_pages_in(backend: Backend) {
    let ctx = Ctx::new(backend).await;
    let s = ctx.open().await;
    for batch in 0..9u64 {
        let events = (0..1000).map(|i| event(batch * 1000 + i)).collect();
        s.append(single("t-pages", ExpectedVersion::Any, events))
            .await
            .expect("append");
    }
    for position in [6543, 2001] {
        ctx.tamper(&format!(
            r#"UPDATE events SET data = '{{"n":-1}}' WHERE position = {position}"#
        ))
        .await;
        let mut progressed = 0;
        let report = lightwidget_store::chain::verify_log(&*s, |n| progressed += n)
            .await
            .expect("verify");
        assert_eq!(report.first_bad_position, Some(position), "{report:?}");
        assert_eq!(report.events_checked, position, "{report:?}");
        // Progress is told a page at a time, the page with the bad event included.
        assert_eq!(progressed, position.div_ceil(1000) * 1000, "{report:?}");
    }
}

async fn a_large_untouched_log_verifies_clean(backend: Backend) {
    let ctx = Ctx::new(backend).await;
    let s = ctx.open().await;
    for batch in 0..100u64 {
        let events = (0..1000).map(|i| event(batch * 1000 + i)).collect();
        s.append(single(
            &format!("t-{}", batch % 7),
            ExpectedVersion::Any,
            events,
        ))
        .await
        .expect("append");
    }
    let report = s.verify().await.expect("verify");
    assert!(report.ok, "{report:?}");
    assert_eq!(
        (report.events_checked, report.head_position),
        (100_000, 100_000)
    );
    assert_eq!(report.first_bad_position, None);
}

/// What a store reads for verification (`read_canonical`, written from its rows without
/// building events) is byte for byte what the chain hashes of its events as read
/// (`CanonicalPage::of` over `read_all_raw`): with and without a causation id, text that
/// JSON must escape, a page boundary inside the log.
async fn canonical_pages_are_the_bytes_the_chain_hashes(backend: Backend) {
    let ctx = Ctx::new(backend).await;
    let s = ctx.open().await;
    let events = (0..7)
        .map(|n| NewEvent {
            causation_id: (n % 2 == 0).then(Uuid::new_v4),
            data: json!({"n": n, "text": "quote \" slash \\ line\n tab\t é ✓"}),
            actor: format!("actor \"{n}\""),
            ..event(n)
        })
        .collect();
    s.append(single("canon-1", ExpectedVersion::Any, events))
        .await
        .expect("append");
    for (after, limit) in [(0, 100), (0, 3), (3, 3), (6, 3), (7, 3)] {
        let page = s.read_canonical(after, limit).await.expect("canonical");
        let raw = s.read_all_raw(after, limit).await.expect("raw");
        let expected = lightwidget_store::chain::CanonicalPage::of(&raw);
        assert_eq!(page.bytes, expected.bytes, "after {after}, limit {limit}");
        let ends = |p: &lightwidget_store::chain::CanonicalPage| {
            p.events
                .iter()
                .map(|e| (e.position, e.prev_hash, e.hash, e.end))
                .collect::<Vec<_>>()
        };
        assert_eq!(ends(&page), ends(&expected));
        assert_eq!(page.events.len(), raw.len());
    }
    // And the chain over those bytes is the one stored.
    let report = s.verify().await.expect("verify");
    assert!(report.ok && report.events_checked == 7, "{report:?}");
}

async fn personal_data_is_sealed_and_shredded(backend: Backend) {
    let ctx = Ctx::new(backend).await;
    let s = ctx.open().await;
    let marker = format!("PLAINTEXT-MARKER-{}", Uuid::new_v4().simple());
    let subject = Subject::new("account", Uuid::new_v4());
    let other = Subject::new("account", Uuid::new_v4());
    let other_marker = format!("KEPT-MARKER-{}", Uuid::new_v4().simple());
    s.append(single(
        "account-x",
        ExpectedVersion::Any,
        vec![
            personal_event(&subject, Category::Profile, &marker),
            personal_event(&other, Category::Profile, &other_marker),
        ],
    ))
    .await
    .expect("append");

    // Nothing of either value reached the storage in plaintext.
    let raw = ctx.raw_bytes().await;
    assert!(!raw.is_empty());
    let contains =
        |hay: &[u8], needle: &str| hay.windows(needle.len()).any(|w| w == needle.as_bytes());
    assert!(
        !contains(&raw, &marker),
        "plaintext marker found in storage"
    );
    assert!(
        !contains(&raw, &other_marker),
        "plaintext marker found in storage"
    );
    // ... while the store reads them back.
    let events = s.read_all(0, 10).await.expect("read");
    assert_eq!(
        events[0].data["field"][PERSONAL_MARKER]["value"],
        json!(marker)
    );
    assert!(s
        .has_key(&subject, Category::Profile)
        .await
        .expect("has key"));

    // Shred in the same transaction as the erasure event.
    let mut req = single("retention-x", ExpectedVersion::Any, vec![event(99)]);
    req.shred = vec![lightwidget_store::KeyRef::new(
        subject.clone(),
        Category::Profile,
    )];
    s.append(req).await.expect("erase");
    assert!(!s
        .has_key(&subject, Category::Profile)
        .await
        .expect("has key"));

    let events = s.read_all(0, 10).await.expect("read");
    assert_eq!(
        events[0].data["field"],
        json!({PERSONAL_MARKER: {"subject": subject.as_str(), "category": "profile", "erased": true}})
    );
    // The other subject's data is untouched.
    assert_eq!(
        events[1].data["field"][PERSONAL_MARKER]["value"],
        json!(other_marker)
    );
    let report = s.verify().await.expect("verify");
    assert!(report.ok, "{report:?}");

    // New data of a shredded subject gets a new key; the old data stays erased.
    s.append(single(
        "account-x",
        ExpectedVersion::Any,
        vec![personal_event(&subject, Category::Profile, "new")],
    ))
    .await
    .expect("append");
    let events = s.read_all(0, 10).await.expect("read");
    assert_eq!(
        events[0].data["field"][PERSONAL_MARKER]["erased"],
        json!(true)
    );
    assert_eq!(
        events[3].data["field"][PERSONAL_MARKER]["value"],
        json!("new")
    );

    // The key-store port shreds on its own too.
    s.shred(&[lightwidget_store::KeyRef::new(
        other.clone(),
        Category::Profile,
    )])
    .await
    .expect("shred");
    let events = s.read_all(0, 10).await.expect("read");
    assert_eq!(
        events[1].data["field"][PERSONAL_MARKER]["erased"],
        json!(true)
    );
    assert!(s.verify().await.expect("verify").ok);
}

async fn reopening_keeps_everything_acknowledged(backend: Backend) {
    let ctx = Ctx::new(backend).await;
    let subject = Subject::new("order", Uuid::new_v4());
    let mut acknowledged = Vec::new();
    {
        let s = ctx.open().await;
        let mut tasks = Vec::new();
        for i in 0..20u64 {
            let s = s.clone();
            let subject = subject.clone();
            tasks.push(tokio::spawn(async move {
                let e = if i % 5 == 0 {
                    personal_event(&subject, Category::Billing, &format!("value-{i}"))
                } else {
                    event(i)
                };
                let id = e.event_id;
                s.append(single(
                    &format!("r-{i}"),
                    ExpectedVersion::NoStream,
                    vec![e],
                ))
                .await
                .map(|r| (id, r.last_position))
            }));
        }
        for t in tasks {
            acknowledged.push(t.await.expect("task").expect("append"));
        }
        // The store is dropped here: its writer finishes and stops, as at process exit.
    }
    let s = ctx.open().await;
    let all = s.read_all(0, 100).await.expect("read");
    assert_eq!(all.len(), 20);
    for (id, position) in acknowledged {
        let e = all
            .iter()
            .find(|e| e.event_id == id)
            .expect("acknowledged event lost");
        assert_eq!(e.position, position);
    }
    let opened = all
        .iter()
        .filter(|e| e.data["field"][PERSONAL_MARKER]["value"].is_string())
        .count();
    assert_eq!(opened, 4, "personal fields must open again after a restart");
    assert!(s.verify().await.expect("verify").ok);
    // And the log continues from where it was.
    let r = s
        .append(single(
            "after-restart",
            ExpectedVersion::NoStream,
            vec![event(1)],
        ))
        .await
        .expect("append");
    assert_eq!(r.first_position, 21);
}

/// A subscriber: the events after `after` (up to 700), waiting for the store's notification
/// (or half a second) while there are none.
async fn next_batch(store: &dyn EventStore, after: u64) -> Result<Vec<RecordedEvent>, StoreError> {
    loop {
        let batch = store.read_all(after, 700).await?;
        if !batch.is_empty() {
            return Ok(batch);
        }
        store.wait_for(after, Duration::from_millis(500)).await;
    }
}

/// `wait_for` returns when the head moves past what the caller saw: at once in the process
/// that appended (its own writer moves the head), and across processes on PostgreSQL by
/// `LISTEN/NOTIFY`. Nothing else moves a store's head, so a wait of 30 s that returns within
/// 5 s was woken by the notification, whichever of the append and the wait came first.
/// SQLite's notifier is in-process: another store on the same file finds the event by
/// reading again.
async fn subscriber_wakes_on_append(backend: Backend) {
    let ctx = Ctx::new(backend).await;
    let writer = ctx.open().await;
    let reader = ctx.open().await;
    let wake = |store: Arc<dyn EventStore>| {
        tokio::spawn(async move { store.wait_for(0, Duration::from_secs(30)).await })
    };
    let (in_process, other) = (wake(writer.clone()), wake(reader.clone()));
    writer
        .append(single("w-1", ExpectedVersion::Any, vec![event(1)]))
        .await
        .expect("append");
    tokio::time::timeout(Duration::from_secs(5), in_process)
        .await
        .expect("not woken in-process")
        .expect("task");
    match backend {
        Backend::Postgres => {
            tokio::time::timeout(Duration::from_secs(5), other)
                .await
                .expect("not woken by NOTIFY")
                .expect("task");
        }
        Backend::Sqlite => other.abort(),
    }
    let seen = tokio::time::timeout(Duration::from_secs(5), next_batch(&*reader, 0))
        .await
        .expect("the other store finds the event")
        .expect("read");
    assert_eq!(seen.len(), 1);
}

/// Each writer remembers the head, stream versions and keys of its last commit and appends
/// optimistically on that knowledge. When another writer (another process) moved on in
/// between, that knowledge is stale and must not decide anything.
async fn stale_writer_knowledge_never_decides(backend: Backend) {
    let ctx = Ctx::new(backend).await;
    let a = ctx.open().await;
    let b = ctx.open().await;
    let subject = Subject::new("account", Uuid::new_v4());
    a.append(single(
        "s-1",
        ExpectedVersion::NoStream,
        vec![personal_event(&subject, Category::Profile, "v1")],
    ))
    .await
    .expect("a");
    // B moves the stream A has cached.
    b.append(single("s-1", ExpectedVersion::Exact(1), vec![event(2)]))
        .await
        .expect("b");
    let err = a
        .append(single("s-1", ExpectedVersion::Exact(1), vec![event(3)]))
        .await
        .expect_err("A's cached version 1 is stale");
    assert!(
        matches!(err, StoreError::Conflict { actual: 2, .. }),
        "{err:?}"
    );
    a.append(single("s-1", ExpectedVersion::Exact(2), vec![event(3)]))
        .await
        .expect("A with the right version");

    // B shreds the key A has cached; A's next data for that subject must get a new key and
    // stay readable, not be sealed under the deleted one.
    b.shred(&[lightwidget_store::KeyRef::new(
        subject.clone(),
        Category::Profile,
    )])
    .await
    .expect("shred");
    a.append(single(
        "s-1",
        ExpectedVersion::Exact(3),
        vec![personal_event(&subject, Category::Profile, "after")],
    ))
    .await
    .expect("append after shred");
    let events = b.read_stream("s-1", 0, 10).await.expect("read");
    assert_eq!(
        events[0].data["field"][PERSONAL_MARKER]["erased"],
        json!(true)
    );
    assert_eq!(
        events[3].data["field"][PERSONAL_MARKER]["value"],
        json!("after")
    );

    // A retry of a stored request on the optimistic path answers with the original positions.
    let e = event(9);
    let first = a
        .append(single("s-2", ExpectedVersion::NoStream, vec![e.clone()]))
        .await
        .expect("first");
    let again = a
        .append(single("s-2", ExpectedVersion::NoStream, vec![e]))
        .await
        .expect("retry");
    assert!(again.duplicate);
    assert_eq!(again.last_position, first.last_position);
    // A stream A never saw, created by B, is not taken as new by A.
    b.append(single("s-3", ExpectedVersion::NoStream, vec![event(1)]))
        .await
        .expect("b");
    let err = a
        .append(single("s-3", ExpectedVersion::NoStream, vec![event(2)]))
        .await
        .expect_err("s-3 exists");
    assert!(
        matches!(err, StoreError::Conflict { actual: 1, .. }),
        "{err:?}"
    );
    assert!(a.verify().await.expect("verify").ok);
}

/// A writer whose cache lacks a stream or a key reads them without the lock and, when
/// nobody wrote since its last commit, appends on what it read: streams another writer made
/// get their next version, an existing key is used, not a second one made.
async fn a_writer_learns_what_it_has_not_seen(backend: Backend) {
    let ctx = Ctx::new(backend).await;
    let a = ctx.open().await;
    let b = ctx.open().await;
    let subject = Subject::new("account", Uuid::new_v4());
    b.append(single(
        "s-4",
        ExpectedVersion::NoStream,
        vec![
            personal_event(&subject, Category::Profile, "by b"),
            event(2),
        ],
    ))
    .await
    .expect("b");
    // A's first append reads under the lock; from then on its cache is current, and knows
    // neither s-4 nor the subject's key.
    a.append(single("s-5", ExpectedVersion::Any, vec![event(1)]))
        .await
        .expect("a");
    let r = a
        .append(single(
            "s-4",
            ExpectedVersion::Any,
            vec![personal_event(&subject, Category::Profile, "by a")],
        ))
        .await
        .expect("a on b's stream");
    assert_eq!(r.versions, vec![("s-4".to_owned(), 3)]);
    let r = a
        .append(single("s-6", ExpectedVersion::Any, vec![event(1)]))
        .await
        .expect("a on a new stream");
    assert_eq!(r.versions, vec![("s-6".to_owned(), 1)]);
    let events = b.read_stream("s-4", 0, 10).await.expect("read");
    assert_eq!(events.len(), 3);
    assert_eq!(
        events[2].data["field"][PERSONAL_MARKER]["value"],
        json!("by a")
    );
    // One key for the subject: shredding it erases what both writers sealed.
    b.shred(&[lightwidget_store::KeyRef::new(
        subject.clone(),
        Category::Profile,
    )])
    .await
    .expect("shred");
    assert!(!b.has_key(&subject, Category::Profile).await.expect("key"));
    let events = a.read_stream("s-4", 0, 10).await.expect("read");
    for i in [0, 2] {
        assert_eq!(
            events[i].data["field"][PERSONAL_MARKER]["erased"],
            json!(true),
            "event {i}"
        );
    }
    assert!(a.verify().await.expect("verify").ok);
}

/// A read of some types returns only those, in order, and says how far it scanned: to the
/// last event returned when the limit was reached, else to the head — past every event of
/// another type. Counting them between two positions gives as many.
async fn reads_of_some_types_scan_to_the_head(backend: Backend) {
    let ctx = Ctx::new(backend).await;
    let store = ctx.open().await;
    let mut events = Vec::new();
    for n in 1..=10u64 {
        let mut e = event(n);
        if n % 3 == 0 {
            e.event_type = "Rare".into();
        }
        events.push(e);
    }
    let head = store
        .append(single("s-1", ExpectedVersion::NoStream, events))
        .await
        .expect("append")
        .last_position;
    let (rare, end) = store
        .read_all_light_of(0, 100, &["Rare"])
        .await
        .expect("read");
    let positions: Vec<u64> = rare.iter().map(|e| e.position).collect();
    assert_eq!(positions, [head - 7, head - 4, head - 1]);
    assert!(rare.iter().all(|e| e.event_type == "Rare"));
    assert_eq!(rare[0].data, json!({"n": 3}).to_string());
    assert_eq!(end, head, "nothing of the type is left before the head");
    // With a limit, the scan ends at the last event returned.
    let (two, end) = store
        .read_all_light_of(0, 2, &["Rare"])
        .await
        .expect("read");
    assert_eq!(two.len(), 2);
    assert_eq!(end, head - 4);
    // Past the last one: nothing, and the head.
    let (none, end) = store
        .read_all_light_of(head - 1, 100, &["Rare"])
        .await
        .expect("read");
    assert!(none.is_empty());
    assert_eq!(end, head);
    let (none, end) = store
        .read_all_light_of(head, 100, &["Rare"])
        .await
        .expect("read");
    assert!(none.is_empty());
    assert_eq!(end, head, "at the head, the end is the head");
    let (none, _) = store
        .read_all_light_of(0, 100, &["Never"])
        .await
        .expect("read");
    assert!(none.is_empty());
    // Several types (one named twice): the first events of any of them in log order, each
    // once, whichever type holds them; the scan ends at the last one returned.
    for (after, limit) in [(0, 4), (2, 5), (head - 5, 3), (0, 10), (head - 3, 10)] {
        let (read, end) = store
            .read_all_light_of(after, limit, &["TestHappened", "Rare", "Rare", "Never"])
            .await
            .expect("read");
        let positions: Vec<u64> = read.iter().map(|e| e.position).collect();
        let expected: Vec<u64> = (after + 1..=head).take(limit).collect();
        assert_eq!(positions, expected, "after {after}, limit {limit}");
        for e in &read {
            let n = e.position - (head - 10);
            assert_eq!(e.data, json!({ "n": n }).to_string());
            let rare = n % 3 == 0;
            assert_eq!(e.event_type, if rare { "Rare" } else { "TestHappened" });
        }
        let full = expected.len() == limit;
        assert_eq!(end, if full { expected[limit - 1] } else { head });
    }
    // Counted, between two positions (after the first, up to the second).
    let count = |after, to, types: &'static [&'static str]| {
        let store = &store;
        async move { store.count_of(after, to, types).await.expect("count") }
    };
    assert_eq!(count(0, head, &["Rare"]).await, 3);
    assert_eq!(count(head - 4, head, &["Rare"]).await, 1);
    assert_eq!(count(0, head - 4, &["Rare"]).await, 2);
    assert_eq!(count(0, head, &["Rare", "TestHappened"]).await, 10);
    assert_eq!(count(0, head, &["Never"]).await, 0);
    assert_eq!(count(head, head, &["Rare"]).await, 0);
}

/// A key archived under a legal hold (R21): every ordinary read sees its fields erased, the
/// archive read opens them (and nothing else); new events of the subject still seal; shredding
/// an archived key erases for both.
async fn archived_keys_are_opened_only_by_the_archive_read(backend: Backend) {
    let ctx = Ctx::new(backend).await;
    let s = ctx.open().await;
    let held = Subject::new("account", Uuid::new_v4());
    let live = Subject::new("account", Uuid::new_v4());
    s.append(single(
        "account-a",
        ExpectedVersion::Any,
        vec![
            personal_event(&held, Category::Profile, "held-value"),
            personal_event(&live, Category::Profile, "live-value"),
        ],
    ))
    .await
    .expect("append");
    let refs = [lightwidget_store::KeyRef::new(
        held.clone(),
        Category::Profile,
    )];
    s.archive(&refs).await.expect("archive");
    s.archive(&refs)
        .await
        .expect("archiving twice is archiving once");
    let value = |e: &lightwidget_store::RecordedEvent| e.data["field"][PERSONAL_MARKER].clone();
    let events = s.read_all(0, 10).await.expect("read");
    assert_eq!(
        value(&events[0])["erased"],
        true,
        "archived: erased to readers"
    );
    assert_eq!(value(&events[1])["value"], "live-value");
    assert!(s.has_key(&held, Category::Profile).await.expect("has key"));

    let raw = s.read_all_raw(0, 10).await.expect("raw");
    let opened = lightwidget_store::open_archived(&*s, raw.clone(), &[Category::Profile])
        .await
        .expect("open archived");
    assert_eq!(value(&opened[0])["value"], "held-value");
    assert_eq!(
        value(&opened[1])["erased"],
        true,
        "the archive read opens archived keys only"
    );
    let other_category = lightwidget_store::open_archived(&*s, raw, &[Category::Billing])
        .await
        .expect("open archived");
    assert_eq!(value(&other_category[0])["erased"], true);

    // A new event of the archived subject seals with the same key: archived too.
    s.append(single(
        "account-a",
        ExpectedVersion::Any,
        vec![personal_event(&held, Category::Profile, "later")],
    ))
    .await
    .expect("append");
    let events = s.read_all(0, 10).await.expect("read");
    assert_eq!(value(&events[2])["erased"], true);

    // Shredded, it is gone for the archive read too.
    s.shred(&refs).await.expect("shred");
    assert!(!s.has_key(&held, Category::Profile).await.expect("has key"));
    let raw = s.read_all_raw(0, 10).await.expect("raw");
    let opened = lightwidget_store::open_archived(&*s, raw, &[Category::Profile])
        .await
        .expect("open archived");
    assert_eq!(value(&opened[0])["erased"], true);
}

/// Every event's chain hash, in position order.
async fn chain_hashes(s: &dyn EventStore) -> Vec<[u8; 32]> {
    let mut out = Vec::new();
    loop {
        let page = s.read_all_raw(out.len() as u64, 1000).await.expect("read");
        if page.is_empty() {
            return out;
        }
        out.extend(page.into_iter().map(|e| e.hash));
    }
}

/// The store's Merkle tree, rebuilt from nothing but the events' chain hashes.
async fn tree_of_the_events(s: &dyn EventStore) -> lightwidget_tlog::MemoryTree {
    let mut tree = lightwidget_tlog::MemoryTree::default();
    for h in chain_hashes(s).await {
        tree.append(&h).expect("append");
    }
    tree
}

/// The root of the store's tree of `size` leaves, from its stored hashes.
async fn store_root(s: &Arc<dyn EventStore>, size: u64) -> lightwidget_tlog::Hash {
    let indexes = lightwidget_tlog::tree::frontier_indexes(size);
    let stored = s.tree_hashes(&indexes).await.expect("tree hashes");
    let by_index: std::collections::HashMap<u64, [u8; 32]> =
        indexes.into_iter().zip(stored).collect();
    lightwidget_tlog::tree::root(size, &|idx: &[u64]| {
        idx.iter()
            .map(|i| {
                by_index
                    .get(i)
                    .map(|h| lightwidget_tlog::Hash(*h))
                    .ok_or_else(|| format!("no hash {i}"))
            })
            .collect()
    })
    .expect("root")
}

/// The log is also an RFC 6962 tree (issue 27): every append — single events, batches,
/// several writers on two store handles at once — stores the tree's hashes in its
/// transaction, so that the root of every size read from the store (O(log n) rows) is the
/// root of the events' chain hashes, and an inclusion proof from the store verifies. The
/// stored hashes cannot be changed.
async fn the_log_is_also_a_merkle_tree(backend: Backend) {
    let ctx = Ctx::new(backend).await;
    let a = ctx.open().await;
    let b = ctx.open().await;
    for i in 0..5u64 {
        a.append(AppendRequest::single(
            "tree-single",
            ExpectedVersion::Any,
            vec![event(i)],
        ))
        .await
        .expect("append");
    }
    let mut writers = Vec::new();
    for w in 0..4 {
        let s = if w % 2 == 0 { a.clone() } else { b.clone() };
        writers.push(tokio::spawn(async move {
            for i in 0..20u64 {
                let events: Vec<NewEvent> = (0..(1 + i % 4)).map(|k| event(i * 10 + k)).collect();
                s.append(AppendRequest::single(
                    format!("tree-{w}"),
                    ExpectedVersion::Any,
                    events,
                ))
                .await
                .expect("append");
            }
        }));
    }
    for w in writers {
        w.await.expect("writer");
    }
    let head = a.head().await.expect("head").position;
    let tree = tree_of_the_events(&*a).await;
    assert_eq!(tree.size(), head);
    for size in [0, 1, 2, 3, 5, 8, head / 2, head - 1, head] {
        assert_eq!(
            store_root(&a, size).await,
            tree.root(size).expect("root"),
            "size {size}"
        );
    }
    // An inclusion proof made from the store's hashes verifies against the root.
    let proof = lightwidget_tlog::tree::prove_inclusion(head, 7, &|idx: &[u64]| {
        futures::executor::block_on(a.tree_hashes(idx))
            .map(|v| v.into_iter().map(lightwidget_tlog::Hash).collect())
            .map_err(|e| e.to_string())
    })
    .expect("prove");
    let leaf = lightwidget_tlog::tree::leaf_hash(&chain_hashes(&*a).await[7]);
    lightwidget_tlog::tree::check_inclusion(&proof, head, tree.root(head).expect("root"), 7, leaf)
        .expect("verifies");
    assert!(
        ctx.raw_sql_fails("UPDATE tree_runs SET hashes = hashes WHERE first_rank = 0")
            .await,
        "the tree is insert-only"
    );
    assert!(ctx.raw_sql_fails("DELETE FROM tree_runs").await);
}

/// Signed checkpoints are kept insert-only and read back in size order, the last one as
/// the latest; roots and proofs read from the store through `tree` (O(log n) hashes each)
/// agree with the tree rebuilt from the events.
async fn checkpoints_are_kept_and_proofs_read_from_the_store(backend: Backend) {
    use lightwidget_store::SignedCheckpoint;
    let ctx = Ctx::new(backend).await;
    let s = ctx.open().await;
    assert_eq!(s.latest_checkpoint().await.expect("latest"), None);
    for i in 0..13u64 {
        s.append(AppendRequest::single(
            "cp",
            ExpectedVersion::Any,
            vec![event(i)],
        ))
        .await
        .expect("append");
    }
    let tree = tree_of_the_events(&*s).await;
    let at = |size: u64, note: &str| SignedCheckpoint {
        size,
        root: tree.root(size).expect("root").0,
        note: note.to_owned(),
        signed_at: lightwidget_store::store_time(chrono::Utc::now()),
    };
    let written = [
        at(0, "zero"),
        at(5, "five"),
        at(13, "thirteen"),
        at(5, "five again"),
    ];
    for c in &written {
        s.record_checkpoint(c).await.expect("record");
    }
    let latest = s.latest_checkpoint().await.expect("latest").expect("some");
    assert_eq!(latest, written[3], "the latest is the last signed");
    let history = s.checkpoints(0, 100).await.expect("history");
    let notes: Vec<&str> = history.iter().map(|c| c.note.as_str()).collect();
    assert_eq!(
        notes,
        ["five", "five again", "thirteen"],
        "sizes above 0, in size order"
    );
    assert_eq!(s.checkpoints(5, 100).await.expect("after").len(), 1);
    assert_eq!(s.checkpoints(0, 1).await.expect("limit").len(), 1);
    assert!(
        ctx.raw_sql_fails("UPDATE log_checkpoints SET note = 'x'")
            .await
    );
    assert!(ctx.raw_sql_fails("DELETE FROM log_checkpoints").await);

    for size in [0, 1, 6, 13] {
        assert_eq!(
            lightwidget_store::tree::root(&*s, size)
                .await
                .expect("root"),
            tree.root(size).expect("root")
        );
    }
    // A batch of 120 events stores about 240 hashes: more than one run of them.
    s.append(AppendRequest::single(
        "cp-batch",
        ExpectedVersion::Any,
        (100..220).map(event).collect(),
    ))
    .await
    .expect("append");
    let big = tree_of_the_events(&*s).await;
    for size in [13, 14, 64, 100, 127, 128, 129, 133] {
        assert_eq!(
            lightwidget_store::tree::root(&*s, size)
                .await
                .expect("root"),
            big.root(size).expect("root"),
            "size {size}"
        );
    }
    let path = lightwidget_store::tree::inclusion(&*s, 133, 97)
        .await
        .expect("path");
    let leaf = lightwidget_tlog::tree::leaf_hash(&chain_hashes(&*s).await[97]);
    lightwidget_tlog::tree::check_inclusion(&path, 133, big.root(133).expect("root"), 97, leaf)
        .expect("a path through several runs verifies");
    let proof = lightwidget_store::tree::consistency(&*s, 13, 6)
        .await
        .expect("proof");
    lightwidget_tlog::tree::check_consistency(
        &proof,
        13,
        tree.root(13).expect("root"),
        6,
        tree.root(6).expect("root"),
    )
    .expect("the consistency proof verifies");
    let path = lightwidget_store::tree::inclusion(&*s, 13, 9)
        .await
        .expect("path");
    let leaf = lightwidget_tlog::tree::leaf_hash(&chain_hashes(&*s).await[9]);
    lightwidget_tlog::tree::check_inclusion(&path, 13, tree.root(13).expect("root"), 9, leaf)
        .expect("the inclusion path verifies");
    // A proof from a root that is not the tree's fails.
    assert!(lightwidget_tlog::tree::check_consistency(
        &proof,
        13,
        tree.root(13).expect("root"),
        6,
        tree.root(5).expect("root"),
    )
    .is_err());
}

/// A log from before the tree gets it when the store opens: the table and its migration
/// record taken away, the store reopened, the tree is there and matches the events.
async fn a_log_older_than_its_tree_gets_one_at_open(backend: Backend) {
    let ctx = Ctx::new(backend).await;
    let s = ctx.open().await;
    for i in 0..37u64 {
        s.append(AppendRequest::single(
            "old",
            ExpectedVersion::Any,
            vec![event(i)],
        ))
        .await
        .expect("append");
    }
    drop(s);
    // The tree's migrations (the table, then its runs) as if never applied.
    let (tree, runs) = match backend {
        Backend::Postgres => (7, 9),
        Backend::Sqlite => (5, 7),
    };
    ctx.raw_sql(&format!(
        "DROP TABLE tree_runs; DELETE FROM schema_migrations WHERE version IN ({tree}, {runs});"
    ))
    .await;
    let s = ctx.open().await;
    let tree = tree_of_the_events(&*s).await;
    assert_eq!(store_root(&s, 37).await, tree.root(37).expect("root"));
    // And appends go on from it.
    s.append(AppendRequest::single(
        "old",
        ExpectedVersion::Any,
        vec![event(99)],
    ))
    .await
    .expect("append");
    let tree = tree_of_the_events(&*s).await;
    assert_eq!(store_root(&s, 38).await, tree.root(38).expect("root"));
}

lightwidget_testkit::both!(
    the_log_is_also_a_merkle_tree,
    checkpoints_are_kept_and_proofs_read_from_the_store,
    a_log_older_than_its_tree_gets_one_at_open,
    archived_keys_are_opened_only_by_the_archive_read,
    concurrent_writers_and_a_subscriber,
    optimistic_concurrency,
    racing_appenders_one_wins,
    multi_stream_appends_are_atomic,
    idempotent_by_event_id,
    empty_and_oversized_batches_are_refused,
    unknown_streams_and_reads_past_the_head,
    verify_names_a_tampered_row,
    verify_names_a_deleted_row,
    verify_names_a_log_truncated_at_its_tail,
    verify_names_one_changed_byte_and_two_swapped_rows,
    verify_names_a_tampered_row_pages_in,
    a_large_untouched_log_verifies_clean,
    canonical_pages_are_the_bytes_the_chain_hashes,
    a_write_without_events_fences_on_a_version,
    personal_data_is_sealed_and_shredded,
    reopening_keeps_everything_acknowledged,
    subscriber_wakes_on_append,
    stale_writer_knowledge_never_decides,
    a_writer_learns_what_it_has_not_seen,
    reads_of_some_types_scan_to_the_head,
);

//! SQLite only: the log and the read models live in two files of the data directory, so
//! that a projection's write transaction never holds the lock the log's writer needs; data
//! directories made when the read models lived in the log's file have them moved on open.

use lightwidget_store::embedded::{
    migrate, open_connection, SqliteEventStore, SqliteOptions, DB_FILE, VIEWS_FILE,
};
use lightwidget_store::{
    AppendRequest, DocChange, EventStore, ExpectedVersion, MasterKey, NewEvent, SystemClock,
    ViewDoc, ViewStore,
};
use lightwidget_testkit::{Backend, TestStore};
use serde_json::json;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;
use uuid::Uuid;

fn has_table(file: &Path, table: &str) -> bool {
    let c = open_connection(file).expect("open");
    c.query_row(
        "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = ?1",
        [table],
        |r| r.get::<_, i64>(0),
    )
    .expect("sqlite_master")
        == 1
}

fn event() -> NewEvent {
    NewEvent {
        event_id: Uuid::new_v4(),
        event_type: "TestHappened".into(),
        schema_version: 1,
        data: json!({"n": 1}),
        actor: "system".into(),
        correlation_id: Uuid::new_v4(),
        causation_id: None,
    }
}

fn open(dir: &Path) -> SqliteEventStore {
    SqliteEventStore::open(
        dir,
        MasterKey::generate(),
        Arc::new(SystemClock),
        SqliteOptions::default(),
    )
    .expect("open the store")
}

#[tokio::test]
async fn read_models_in_the_logs_file_move_into_their_own_on_open() {
    let dir = tempfile::tempdir().expect("tempdir");
    let ledger = dir.path().join(DB_FILE);
    {
        // The layout of a data directory made before the move: the log's migrations (the
        // third creates the read models' tables in the log's file), a document, a checkpoint.
        let mut c = open_connection(&ledger).expect("open");
        migrate(&mut c).expect("migrate");
        c.execute_batch(
            r#"INSERT INTO views (view, key, doc, owner, state, due_at)
                   VALUES ('widgets', 'w-1', '{"title":"kept"}', 'account-1', 'active', NULL);
               INSERT INTO view_checkpoints (view, position) VALUES ('widgets', 7);"#,
        )
        .expect("old rows");
    }
    for _ in 0..2 {
        // Opened twice: the second open finds nothing left to move and changes nothing.
        let store = open(dir.path());
        assert_eq!(store.checkpoint("widgets").await.expect("checkpoint"), 7);
        let docs = store
            .get_many("widgets", &["w-1".to_owned()])
            .await
            .expect("get");
        assert_eq!(docs.len(), 1);
        assert_eq!(docs[0].doc, json!({"title": "kept"}));
        assert_eq!(docs[0].owner.as_deref(), Some("account-1"));
        assert_eq!(docs[0].state.as_deref(), Some("active"));
        drop(store);
        assert!(
            !has_table(&ledger, "views"),
            "the log's file kept the documents"
        );
        assert!(!has_table(&ledger, "view_checkpoints"));
        assert!(has_table(&dir.path().join(VIEWS_FILE), "views"));
    }
}

#[tokio::test]
async fn an_append_does_not_wait_for_a_read_models_write_transaction() {
    let t = TestStore::new(Backend::Sqlite, Arc::new(SystemClock)).await;
    let dir = t.dir.as_ref().expect("dir").path().to_owned();
    // A document committed through the store lands in the read models' file, not the log's.
    t.views
        .commit(
            "widgets",
            0,
            1,
            &[DocChange::Put(ViewDoc::new("w-1", json!({"n": 1})))],
        )
        .await
        .expect("commit");
    assert!(!has_table(&dir.join(DB_FILE), "views"));
    let views = open_connection(&dir.join(VIEWS_FILE)).expect("open");
    let held: i64 = views
        .query_row("SELECT count(*) FROM views WHERE key = 'w-1'", [], |r| {
            r.get(0)
        })
        .expect("count");
    assert_eq!(held, 1);

    // A projection's write transaction held open (as a long batch would): appends go on.
    views.execute_batch("BEGIN IMMEDIATE").expect("begin");
    views
        .execute(
            "UPDATE view_checkpoints SET position = 2 WHERE view = 'widgets'",
            [],
        )
        .expect("update");
    for i in 0..3 {
        let appended = tokio::time::timeout(
            Duration::from_secs(2),
            t.store.append(AppendRequest::single(
                format!("s-{i}"),
                ExpectedVersion::NoStream,
                vec![event()],
            )),
        )
        .await
        .expect("the append waited for the read models' lock")
        .expect("append");
        assert_eq!(appended.last_position, i + 1);
    }
    views.execute_batch("ROLLBACK").expect("rollback");
    assert_eq!(t.views.checkpoint("widgets").await.expect("checkpoint"), 1);
}

/// The WAL is checkpointed off the writer's commits (no connection checkpoints on its own
/// commit any more): under a steady stream of appends (about 48 MiB of log, 100 MiB of WAL
/// frames) with readers all along, the log's WAL file stays under half of what was written
/// (without the checkpointer it ends at 105 MiB), and a store closed cleanly leaves it empty
/// (issue 23).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_wal_is_checkpointed_and_restarted_off_the_writer() {
    let dir = lightwidget_testkit::private_tempdir();
    let store = Arc::new(open(dir.path()));
    // Readers all along, as the projection runners are.
    let reading = Arc::new(std::sync::atomic::AtomicBool::new(true));
    let readers: Vec<_> = (0..2)
        .map(|_| {
            let (store, reading) = (store.clone(), reading.clone());
            tokio::spawn(async move {
                while reading.load(std::sync::atomic::Ordering::Relaxed) {
                    let _ = store.read_all_raw(0, 200).await;
                }
            })
        })
        .collect();
    let pad = "x".repeat(4000);
    for batch in 0..240u64 {
        let events = (0..50)
            .map(|i| NewEvent {
                event_id: Uuid::new_v4(),
                event_type: "WidgetViewed".into(),
                schema_version: 1,
                data: json!({"n": batch * 50 + i, "pad": pad}),
                actor: "system".into(),
                correlation_id: Uuid::new_v4(),
                causation_id: None,
            })
            .collect();
        store
            .append(AppendRequest::single(
                format!("wal-{batch}"),
                ExpectedVersion::Exact(0),
                events,
            ))
            .await
            .expect("append");
    }
    reading.store(false, std::sync::atomic::Ordering::Relaxed);
    for r in readers {
        r.await.expect("reader");
    }
    let written = 240 * 50 * 4000u64;
    let wal = std::fs::metadata(dir.path().join(format!("{DB_FILE}-wal")))
        .expect("the log's WAL")
        .len();
    assert!(
        wal < written / 2,
        "the WAL holds {wal} bytes after {written} bytes of events were appended"
    );
    drop(Arc::into_inner(store).expect("the last handle"));
    // A store closed cleanly leaves its WAL truncated.
    let wal = std::fs::metadata(dir.path().join(format!("{DB_FILE}-wal")))
        .map(|m| m.len())
        .unwrap_or(0);
    assert_eq!(wal, 0, "the WAL is truncated when the store closes");
}

/// The page caches of every connection live within the limit the store was opened with
/// (`SqliteOptions::heap_limit`, the server's share of `LW_MEMORY_MB`): SQLite's soft heap
/// limit is the process's, so a connection opened afterwards reports it.
#[test]
fn the_page_caches_share_the_limit_the_store_was_opened_with() {
    let dir = tempfile::tempdir().expect("dir");
    let limit = 8u64 << 20;
    let _store = SqliteEventStore::open(
        dir.path(),
        MasterKey::generate(),
        Arc::new(SystemClock),
        SqliteOptions {
            heap_limit: Some(limit),
            ..Default::default()
        },
    )
    .expect("open");
    let c = open_connection(&dir.path().join(DB_FILE)).expect("open");
    let set: i64 = c
        .query_row("PRAGMA soft_heap_limit", [], |r| r.get(0))
        .expect("soft_heap_limit");
    assert_eq!(set as u64, limit);
}

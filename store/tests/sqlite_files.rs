//! SQLite only: the log and the read models live in two files of the data directory, so
//! that a projection's write transaction never holds the lock the log's writer needs; data
//! directories made when the read models lived in the log's file have them moved on open.

use lightwidget_store::embedded::{
    migrate, open_connection, SqliteEventStore, SqliteOptions, DB_FILE, VIEWS_FILE,
};
use lightwidget_store::{
    AppendRequest, DocChange, ExpectedVersion, MasterKey, NewEvent, SystemClock, ViewDoc, ViewStore,
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

//! PostgreSQL only: everything one append writes is one transaction — checked through the
//! transaction id (`xmin`) of the rows, which a reader racing the append cannot be trusted to
//! catch. (A key row once landed just after its events' COMMIT; a reader in between saw the
//! fields as erased.)

use lightwidget_domain::personal::PERSONAL_MARKER;
use lightwidget_domain::Subject;
use lightwidget_store::{AppendRequest, ExpectedVersion, NewEvent, SystemClock};
use lightwidget_testkit::{Backend, TestStore};
use serde_json::json;
use std::sync::Arc;
use uuid::Uuid;

/// A store on the database at `url` (migrated on connect), with a new master key.
async fn connect(url: &str) -> lightwidget_store::postgres::PgEventStore {
    lightwidget_store::postgres::PgEventStore::connect(
        url,
        lightwidget_store::MasterKey::generate(),
        Arc::new(SystemClock),
        lightwidget_store::postgres::PgOptions::default(),
    )
    .await
    .expect("connect and migrate")
}

fn personal(subject: &Subject) -> NewEvent {
    NewEvent {
        event_id: Uuid::new_v4(),
        event_type: "TestHappened".into(),
        schema_version: 1,
        data: json!({"f": {PERSONAL_MARKER: {"subject": subject.as_str(), "category": "profile", "value": "v"}}}),
        actor: "system".into(),
        correlation_id: Uuid::new_v4(),
        causation_id: None,
    }
}

async fn same_transaction(t: &TestStore, position: u64, subject: &Subject) -> bool {
    let url = &t.db.as_ref().expect("postgres").url;
    let (client, conn) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .expect("connect");
    let driver = tokio::spawn(conn);
    let row = client
        .query_one(
            "SELECT e.xmin::text = k.xmin::text FROM events e, data_keys k \
             WHERE e.position = $1 AND k.subject = $2 AND k.category = 'profile'",
            &[&(position as i64), &subject.as_str()],
        )
        .await
        .expect("query");
    drop(client);
    let _ = driver.await;
    row.get(0)
}

#[tokio::test]
async fn a_new_key_commits_with_its_events_on_both_write_paths() {
    let t = TestStore::new(Backend::Postgres, Arc::new(SystemClock)).await;
    // The first append of a fresh store takes the locked path (the writer knows nothing yet).
    let first = Subject::new("account", Uuid::new_v4());
    let p1 = t
        .store
        .append(AppendRequest::single(
            "s-1",
            ExpectedVersion::NoStream,
            vec![personal(&first)],
        ))
        .await
        .expect("append")
        .last_position;
    assert!(
        same_transaction(&t, p1, &first).await,
        "locked path: key and event in separate transactions"
    );
    // The next one takes the optimistic path.
    let second = Subject::new("account", Uuid::new_v4());
    let p2 = t
        .store
        .append(AppendRequest::single(
            "s-1",
            ExpectedVersion::Exact(1),
            vec![personal(&second)],
        ))
        .await
        .expect("append")
        .last_position;
    assert!(
        same_transaction(&t, p2, &second).await,
        "optimistic path: key and event in separate transactions"
    );
}

/// A PostgreSQL error message can quote the value it choked on; the store's error blanks it,
/// so a personal value cannot travel on into a log line.
#[tokio::test]
async fn postgres_errors_do_not_carry_input_values() {
    let t = TestStore::new(Backend::Postgres, Arc::new(SystemClock)).await;
    let url = &t.db.as_ref().expect("postgres").url;
    let (client, conn) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .expect("connect");
    let driver = tokio::spawn(conn);
    let raw = client
        .query("SELECT 'alice@example.com'::uuid", &[])
        .await
        .expect_err("not a uuid");
    let message = raw
        .as_db_error()
        .map(|d| d.message().to_owned())
        .unwrap_or_default();
    assert!(
        message.contains("alice@example.com"),
        "the server's message quotes it: {message}"
    );
    let ours = lightwidget_store::StoreError::from(raw).to_string();
    assert!(!ours.contains("alice@example.com"), "{ours}");
    assert!(ours.contains("22P02"), "{ours}");
    drop(client);
    let _ = driver.await;
}

/// The log's commits wait for the disk; the read models' commits do not (they are derived
/// from the log and roll back together with their checkpoint): each pool says so itself.
#[tokio::test]
async fn only_the_read_models_commit_without_waiting_for_the_disk() {
    let db = lightwidget_testkit::TestDatabase::create().await;
    let store = connect(&db.url).await;
    async fn setting(pool: &deadpool_postgres::Pool) -> String {
        let client = pool.get().await.expect("connection");
        client
            .query_one("SHOW synchronous_commit", &[])
            .await
            .expect("show")
            .get(0)
    }
    assert_eq!(setting(store.pool()).await, "on");
    assert_eq!(setting(store.views_pool()).await, "off");
}

/// A write that shreds a key on the optimistic path (its own statement, see
/// `SQL_WRITE_IF_HEAD_NO_SHRED`): the key goes with the events' commit, and a write that
/// shreds nothing leaves every key in place.
#[tokio::test]
async fn a_shred_on_the_optimistic_path_deletes_its_key_and_only_it() {
    let t = TestStore::new(Backend::Postgres, Arc::new(SystemClock)).await;
    let (kept, gone) = (
        Subject::new("account", Uuid::new_v4()),
        Subject::new("account", Uuid::new_v4()),
    );
    for (version, subject) in [(0, &kept), (1, &gone)] {
        t.store
            .append(AppendRequest::single(
                "s-1",
                ExpectedVersion::Exact(version),
                vec![personal(subject)],
            ))
            .await
            .expect("append");
    }
    let keys = |subject: &Subject| {
        let subject = subject.clone();
        let url = t.db.as_ref().expect("postgres").url.clone();
        async move {
            let (client, conn) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
                .await
                .expect("connect");
            let driver = tokio::spawn(conn);
            let n: i64 = client
                .query_one(
                    "SELECT count(*) FROM data_keys WHERE subject = $1",
                    &[&subject.as_str()],
                )
                .await
                .expect("count")
                .get(0);
            drop(client);
            let _ = driver.await;
            n
        }
    };
    assert_eq!((keys(&kept).await, keys(&gone).await), (1, 1));
    let mut shred = AppendRequest::single("s-1", ExpectedVersion::Exact(2), vec![]);
    shred.writes[0].events.push(NewEvent {
        data: json!({"erased": gone.as_str()}),
        ..personal(&gone)
    });
    shred.shred = vec![lightwidget_store::KeyRef::new(
        gone.clone(),
        lightwidget_domain::Category::Profile,
    )];
    t.store.append(shred).await.expect("shred");
    assert_eq!((keys(&kept).await, keys(&gone).await), (1, 0));
}

/// A database migrated before read-model documents were stored as text (migration 5): its
/// jsonb documents are carried over and read back as they were written.
#[tokio::test]
async fn documents_stored_as_jsonb_read_back_after_the_text_migration() {
    let db = lightwidget_testkit::TestDatabase::create().await;
    let pool = lightwidget_store::postgres::pool_for(&db.url, 1).expect("pool");
    let all = lightwidget_schemas::POSTGRES_MIGRATIONS;
    let text = all
        .iter()
        .position(|m| m.version == 5)
        .expect("migration 5");
    lightwidget_store::postgres::apply(&pool, &all[..text])
        .await
        .expect("the migrations before 5");
    let client = pool.get().await.expect("connection");
    let written = json!({"title": "née \"Zoë\"", "n": 3, "list": [1, {"a": null}]});
    client
        .execute(
            "INSERT INTO views (view, key, doc, owner) VALUES ('w', 'k', $1, 'o')",
            &[&written],
        )
        .await
        .expect("old document");
    drop(client);
    drop(pool);
    let store = connect(&db.url).await;
    use lightwidget_store::ViewStore;
    let docs = store.get_many("w", &["k".into()]).await.expect("read");
    assert_eq!(docs.len(), 1);
    assert_eq!(docs[0].doc, written);
    assert_eq!(docs[0].owner.as_deref(), Some("o"));
}

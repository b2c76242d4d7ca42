//! The server answers its health endpoints and keeps the read models up to date, on both
//! backends.

use lightwidget_domain::event::{AccountRegistered, InstagramProfile};
use lightwidget_domain::{AccountId, Category, DomainEvent, Personal, Subject};
use lightwidget_projections::wait_for_position;
use lightwidget_store::{AppendRequest, ExpectedVersion, Metadata, NewEvent};
use lightwidget_tests::{spawn_app, Backend};
use serde_json::json;
use std::time::Duration;

async fn health_readiness_and_projections(backend: Backend) {
    let app = spawn_app(backend).await;
    let client = reqwest::Client::new();
    let r = client
        .get(format!("{}/healthz", app.address))
        .send()
        .await
        .expect("request");
    assert_eq!(r.status(), 200);

    let a = AccountId::new();
    let event: DomainEvent = AccountRegistered {
        account_id: a,
        profile: Personal::new(
            Subject::account(a),
            Category::Profile,
            InstagramProfile {
                instagram_user_id: "1784".into(),
                username: "alice".into(),
                profile_picture_url: None,
                account_type: "PERSONAL".into(),
            },
        ),
        registered_at: chrono::Utc::now(),
    }
    .into();
    let position = app
        .store
        .append(AppendRequest::single(
            a.stream(),
            ExpectedVersion::NoStream,
            vec![NewEvent::from_domain(&event, &Metadata::system())],
        ))
        .await
        .expect("append")
        .last_position;
    // The server's own runners bring the read models to the new position.
    for view in ["accounts", "widgets", "invoices", "statistics"] {
        wait_for_position(&*app.views, view, position, Duration::from_secs(10))
            .await
            .unwrap_or_else(|e| panic!("{view}: {e}"));
    }
    let doc = app
        .views
        .get_many("accounts", &[a.to_string()])
        .await
        .expect("get")
        .pop()
        .expect("account document");
    assert_eq!(doc.doc["username"], "alice");

    let r = client
        .get(format!("{}/readyz", app.address))
        .send()
        .await
        .expect("request");
    assert_eq!(r.status(), 200);
    let body: serde_json::Value = r.json().await.expect("json");
    assert_eq!(body["head_position"], position, "{body}");
    for view in ["accounts", "widgets", "invoices", "statistics"] {
        assert_eq!(body["projections"][view]["lag"], 0, "{body}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_health_readiness_and_projections() {
    health_readiness_and_projections(Backend::Postgres).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_health_readiness_and_projections() {
    health_readiness_and_projections(Backend::Sqlite).await
}

/// Runs statements on the test server's admin database (not the app's).
async fn on_the_server(sql: &str) {
    let (client, conn) =
        tokio_postgres::connect(&lightwidget_testkit::admin_url(), tokio_postgres::NoTls)
            .await
            .expect("connect to the admin database");
    let driver = tokio::spawn(conn);
    client.batch_execute(sql).await.expect("admin statement");
    drop(client);
    let _ = driver.await;
}

/// `/readyz` says 503 (a problem with `Retry-After`) while the store does not answer, and
/// ready again once it does; `/healthz` keeps answering. PostgreSQL only: the database is
/// closed to connections and its sessions ended, then opened again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readiness_follows_the_store() {
    let app = spawn_app(Backend::Postgres).await;
    let client = reqwest::Client::new();
    let ready = || async {
        client
            .get(format!("{}/readyz", app.address))
            .send()
            .await
            .expect("request")
    };
    assert_eq!(ready().await.status(), 200);
    let name = app.db.as_ref().expect("a test database").name.clone();
    on_the_server(&format!(
        "ALTER DATABASE {name} ALLOW_CONNECTIONS false; \
         SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{name}';"
    ))
    .await;
    let down = ready().await;
    assert_eq!(down.status(), 503);
    assert!(down.headers().contains_key("retry-after"));
    assert_eq!(
        down.headers()["content-type"].to_str().expect("text"),
        "application/problem+json"
    );
    let health = client
        .get(format!("{}/healthz", app.address))
        .send()
        .await
        .expect("request");
    assert_eq!(health.status(), 200);
    on_the_server(&format!("ALTER DATABASE {name} ALLOW_CONNECTIONS true;")).await;
    let back = ready_within(&app, Duration::from_secs(5)).await;
    assert_eq!(
        back["status"], "ready",
        "ready again within 5 s of the store: {back}"
    );
    for (view, p) in back["projections"].as_object().expect("projections") {
        assert_eq!(p["runner"], "running", "{view} runs again: {back}");
    }
}

/// Polls `/readyz` until it answers 200 (its body), or panics after `limit`: a bounded wait
/// for a condition.
async fn ready_within(app: &lightwidget_tests::TestApp, limit: Duration) -> serde_json::Value {
    let deadline = std::time::Instant::now() + limit;
    loop {
        let r = app.get("/readyz", None).await;
        if r.status == 200 {
            return r.body;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "not ready within {limit:?}: {} {}",
            r.status,
            r.body
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Polls `/readyz` until it answers 503 naming `view`'s runner as failing, or panics after
/// `limit`.
async fn failing_within(
    app: &lightwidget_tests::TestApp,
    view: &str,
    limit: Duration,
) -> serde_json::Value {
    let deadline = std::time::Instant::now() + limit;
    loop {
        let r = app.get("/readyz", None).await;
        if r.status == 503 && r.body["detail"].as_str().is_some_and(|d| d.contains(view)) {
            return r.body;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "still ready: {}",
            r.body
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// `/readyz` is 503 while a projection runner fails (its read models' table is gone, so
/// every commit fails) though the store answers, and ready again once the runner recovers
/// on its own; both backends, the table renamed away and back behind the server's back.
async fn readiness_follows_the_runners(backend: Backend) {
    let app = spawn_app(backend).await;
    ready_within(&app, Duration::from_secs(5)).await;
    app.hold_read_models().await;
    // An event every runner reads, so that each tries to commit.
    app.sign_in("rita").await;
    let down = failing_within(&app, "accounts", Duration::from_secs(5)).await;
    assert!(
        down["detail"]
            .as_str()
            .is_some_and(|d| d.contains("failing")),
        "{down}"
    );
    app.release_read_models().await;
    let back = ready_within(&app, Duration::from_secs(5)).await;
    let head = app.store.head().await.expect("head").position;
    wait_for_position(&*app.views, "accounts", head, Duration::from_secs(5))
        .await
        .expect("the accounts view caught up after the failure");
    assert_eq!(back["projections"]["accounts"]["runner"], "running");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_readiness_follows_the_runners() {
    readiness_follows_the_runners(Backend::Postgres).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_readiness_follows_the_runners() {
    readiness_follows_the_runners(Backend::Sqlite).await
}

/// The embedded store's disk fills up: commands answer 503 problem+json with `Retry-After`,
/// nothing of a refused command is in the log, the chain verifies, and once there is room
/// again commands succeed without a restart (issue 22). The disk is `PRAGMA max_page_count`
/// on the log's writer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_is_503_and_passes() {
    use std::sync::atomic::{AtomicU64, Ordering};
    let limit = std::sync::Arc::new(AtomicU64::new(u32::MAX as u64 - 1));
    let app = lightwidget_tests::spawn_app_with(
        Backend::Sqlite,
        lightwidget_tests::TestConfig {
            sqlite_page_limit: Some(limit.clone()),
            ..Default::default()
        },
    )
    .await;
    let (token, _, _) = app.sign_in("fiona").await;
    let dir = app.dir.as_ref().expect("data dir").path().join("ledger.db");
    let pages: i64 = rusqlite::Connection::open(&dir)
        .expect("open")
        .query_row("PRAGMA page_count", [], |r| r.get(0))
        .expect("page count");
    limit.store(pages as u64, Ordering::Relaxed);
    let mut full = None;
    for n in 0..5_000 {
        let before = app.store.head().await.expect("head").position;
        let r = app
            .post(
                "/v1/widgets",
                Some(&token),
                json!({"title": format!("filler {n} {}", "x".repeat(180)), "layout": "grid", "columns": 3}),
            )
            .await;
        match r.status {
            201 => continue,
            503 => {
                full = Some((r, before));
                break;
            }
            other => panic!("neither created nor 503: {other} {}", r.body),
        }
    }
    let (r, before) = full.expect("the disk filled up");
    assert!(r.headers.contains_key("retry-after"));
    assert_eq!(
        r.headers["content-type"].to_str().expect("text"),
        "application/problem+json"
    );
    assert_eq!(
        app.store.head().await.expect("head").position,
        before,
        "nothing of the refused command was written"
    );
    let verified = app
        .get("/v1/audit/verify", Some(lightwidget_tests::ADMIN_TOKEN))
        .await
        .expect(200);
    assert_eq!(verified["ok"], true);
    // Room again: the next command succeeds, the chain goes on.
    limit.store(u32::MAX as u64 - 1, Ordering::Relaxed);
    app.post(
        "/v1/widgets",
        Some(&token),
        json!({"title": "after", "layout": "grid", "columns": 3}),
    )
    .await
    .expect(201);
    let verified = app
        .get("/v1/audit/verify", Some(lightwidget_tests::ADMIN_TOKEN))
        .await
        .expect(200);
    assert_eq!(verified["ok"], true);
    assert_eq!(verified["head_position"], before + 1);
}

//! The server answers its health endpoints and keeps the read models up to date, on both
//! backends.

use lightwidget_domain::event::{AccountRegistered, InstagramProfile};
use lightwidget_domain::{AccountId, Category, DomainEvent, Personal, Subject};
use lightwidget_projections::wait_for_position;
use lightwidget_store::{AppendRequest, ExpectedVersion, Metadata, NewEvent};
use lightwidget_tests::{spawn_app, Backend};
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
    assert_eq!(
        ready().await.status(),
        200,
        "ready again once the store answers"
    );
}

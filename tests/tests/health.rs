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

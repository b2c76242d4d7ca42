//! The server answers its health endpoints on both backends.

use lightwidget_store::{AppendRequest, ExpectedVersion, Metadata, NewEvent};
use lightwidget_tests::{spawn_app, Backend};

async fn health_and_readiness(backend: Backend) {
    let app = spawn_app(backend).await;
    let client = reqwest::Client::new();
    let r = client
        .get(format!("{}/healthz", app.address))
        .send()
        .await
        .expect("request");
    assert_eq!(r.status(), 200);

    let event = lightwidget_domain::DomainEvent::from(lightwidget_domain::event::AccountRestored {
        account_id: lightwidget_domain::AccountId::new(),
        restored_at: chrono_now(),
    });
    app.store
        .append(AppendRequest::single(
            "account-x",
            ExpectedVersion::Any,
            vec![NewEvent::from_domain(&event, &Metadata::system())],
        ))
        .await
        .expect("append");
    let r = client
        .get(format!("{}/readyz", app.address))
        .send()
        .await
        .expect("request");
    assert_eq!(r.status(), 200);
    let body: serde_json::Value = r.json().await.expect("json");
    assert_eq!(body["head_position"], 1, "{body}");
}

fn chrono_now() -> chrono::DateTime<chrono::Utc> {
    chrono::Utc::now()
}

#[tokio::test]
async fn postgres_health_and_readiness() {
    health_and_readiness(Backend::Postgres).await
}

#[tokio::test]
async fn sqlite_health_and_readiness() {
    health_and_readiness(Backend::Sqlite).await
}

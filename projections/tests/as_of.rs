//! "As of" evaluation against both real backends, with a small widget-status projection.

use chrono::Utc;
use lightwidget_domain::account::OwnerStatus;
use lightwidget_domain::event::{DeletionCause, Layout, WidgetSettings};
use lightwidget_domain::widget::{Widget, WidgetCommand};
use lightwidget_domain::{
    AccountId, Aggregate, Category, DomainEvent, Personal, Subject, WidgetId,
};
use lightwidget_projections::{evaluate_as_of, Projection, ViewChange, ViewReader};
use lightwidget_store::test_support::{Backend, TestStore};
use lightwidget_store::{
    AppendRequest, ExpectedVersion, Metadata, NewEvent, RecordedEvent, SystemClock,
};
use serde_json::json;
use std::sync::Arc;

/// Status of each widget, and how many changes it saw (reads its own document).
struct WidgetStatus;

impl Projection for WidgetStatus {
    fn name(&self) -> &'static str {
        "widget_status"
    }
    fn handle(
        &self,
        _e: &RecordedEvent,
        domain: &DomainEvent,
        view: &dyn ViewReader,
    ) -> Vec<ViewChange> {
        let (id, status) = match domain {
            DomainEvent::WidgetCreated(e) => (e.widget_id, "active"),
            DomainEvent::WidgetDeletionRequested(e) => (e.widget_id, "quarantined"),
            DomainEvent::WidgetRestored(e) => (e.widget_id, "active"),
            DomainEvent::WidgetPurged(e) => {
                return vec![ViewChange::Delete {
                    key: e.widget_id.to_string(),
                }]
            }
            _ => return vec![],
        };
        let key = id.to_string();
        let changes = view
            .get(&key)
            .and_then(|d| d["changes"].as_u64())
            .unwrap_or(0)
            + 1;
        vec![ViewChange::Put {
            key,
            doc: json!({"status": status, "changes": changes}),
        }]
    }
}

async fn as_of_matches_history(backend: Backend) {
    let t = TestStore::new(backend, Arc::new(SystemClock)).await;
    let id = WidgetId::new();
    let now = Utc::now();
    let settings = Personal::new(
        Subject::widget(id),
        Category::WidgetContent,
        WidgetSettings {
            title: "w".into(),
            layout: Layout::List,
            columns: 1,
        },
    );
    let mut state = Widget::default();
    let mut positions = Vec::new();
    for cmd in [
        WidgetCommand::Create {
            widget_id: id,
            account_id: AccountId::new(),
            settings,
            owner: OwnerStatus::Active,
        },
        WidgetCommand::RequestDeletion {
            cause: DeletionCause::Owner,
            owner: OwnerStatus::Active,
        },
        WidgetCommand::Restore {
            owner: OwnerStatus::Active,
        },
    ] {
        let events = state.decide(cmd, now).expect("decide");
        for e in &events {
            state = state.evolve(e);
        }
        let new = events
            .iter()
            .map(|e| NewEvent::from_domain(e, &Metadata::system()))
            .collect();
        let r = t
            .store
            .append(AppendRequest::single(
                id.stream(),
                ExpectedVersion::Any,
                new,
            ))
            .await
            .expect("append");
        positions.push(r.last_position);
    }
    let key = id.to_string();
    let at = |p| evaluate_as_of(&*t.store, &WidgetStatus, p);
    assert!(at(0).await.expect("eval").is_empty());
    assert_eq!(
        at(positions[0]).await.expect("eval")[&key],
        json!({"status": "active", "changes": 1})
    );
    assert_eq!(
        at(positions[1]).await.expect("eval")[&key],
        json!({"status": "quarantined", "changes": 2})
    );
    assert_eq!(
        at(positions[2]).await.expect("eval")[&key],
        json!({"status": "active", "changes": 3})
    );
    // Past the head is the head.
    assert_eq!(
        at(1_000).await.expect("eval"),
        at(positions[2]).await.expect("eval")
    );
}

#[tokio::test]
async fn postgres_as_of_matches_history() {
    as_of_matches_history(Backend::Postgres).await
}

#[tokio::test]
async fn sqlite_as_of_matches_history() {
    as_of_matches_history(Backend::Sqlite).await
}

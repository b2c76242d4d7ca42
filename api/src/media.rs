//! The Instagram media cache of widgets (R7): a public page whose widget has no cached media,
//! or media older than the policy's `media_cache` period, starts one background fetch with the
//! owner's access token; the fetch is appended as `MediaCached` on `media-<widget>` (with the
//! version read, so two processes fetching at once append one) and the widgets read model
//! renders it into the page. The retention sweeper erases each fetch when it falls due and the
//! read model drops it; the next view fetches again.

use crate::state::AppState;
use lightwidget_domain::event::MediaCached;
use lightwidget_domain::{AccountId, Category, DomainEvent, Personal, Subject, WidgetId};
use lightwidget_store::{AppendRequest, ExpectedVersion, StoreError, StreamWrite, ViewDoc};

/// The stream of a widget's media fetches.
pub fn media_stream(widget: WidgetId) -> String {
    format!("media-{widget}")
}

/// Whether the page's cached media must be fetched (again).
fn stale(app: &AppState, doc: &ViewDoc) -> bool {
    let fetched = doc.doc["media"]["fetched_at"]
        .as_str()
        .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok());
    match fetched {
        None => true,
        Some(t) => {
            app.policy
                .rule(Category::MediaCache)
                .due_at(t.with_timezone(&chrono::Utc))
                <= app.clock.now()
        }
    }
}

/// Starts a fetch when the widget's media is missing or too old and none is running here.
pub fn refresh_if_stale(app: &AppState, widget: WidgetId, doc: &ViewDoc) {
    if !stale(app, doc) {
        return;
    }
    let Some(owner) = doc.doc["account_id"]
        .as_str()
        .and_then(|a| a.parse::<AccountId>().ok())
    else {
        return;
    };
    {
        let Ok(mut running) = app.media_fetches.lock() else {
            return;
        };
        if !running.insert(widget) {
            return;
        }
    }
    let version = doc.doc["media_version"].as_u64().unwrap_or(0);
    let app = app.clone();
    tokio::spawn(async move {
        if let Err(e) = fetch(&app, widget, owner, version).await {
            tracing::warn!(widget = %widget, error = %e, "fetching Instagram media");
        }
        if let Ok(mut running) = app.media_fetches.lock() {
            running.remove(&widget);
        }
    });
}

#[derive(Debug, thiserror::Error)]
enum FetchError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("{0}")]
    Instagram(#[from] crate::instagram::InstagramError),
}

/// The owner's latest access token, if it is still held (it is profile data: erased with the
/// account).
async fn access_token(app: &AppState, owner: AccountId) -> Result<Option<String>, StoreError> {
    let events = crate::routes::read_whole_stream(app, &owner.stream()).await?;
    let token = events.iter().rev().find_map(|e| match e.to_domain() {
        Ok(DomainEvent::AccountSignedIn(s)) => Some(s.access_token.into_value()),
        _ => None,
    });
    Ok(token.flatten())
}

async fn fetch(
    app: &AppState,
    widget: WidgetId,
    owner: AccountId,
    version: u64,
) -> Result<(), FetchError> {
    let Some(token) = access_token(app, owner).await? else {
        return Ok(());
    };
    let items = app.instagram.media(&token).await?;
    let now = app.clock.now();
    let event: DomainEvent = MediaCached {
        widget_id: widget,
        media: Personal::new(Subject::media(widget, now), Category::MediaCache, items),
        fetched_at: now,
    }
    .into();
    let request = AppendRequest {
        writes: vec![StreamWrite::of(
            media_stream(widget),
            ExpectedVersion::Exact(version),
            &[event],
            &app.meta(None),
        )],
        shred: vec![],
    };
    match app.store.append(request).await {
        // Another process fetched first: its media will do.
        Ok(_) | Err(StoreError::Conflict { .. }) => Ok(()),
        Err(e) => Err(e.into()),
    }
}

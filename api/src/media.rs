//! When a public page's widget needs its Instagram media fetched (R7): none cached, or the
//! cached media past the policy's `media_cache` period. The fetch itself is the use case
//! `lightwidget_commands::media::refresh`.

use crate::state::AppState;
use lightwidget_domain::{AccountId, Category, WidgetId};
use lightwidget_store::ViewDoc;

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
    let version = doc.doc["media_version"].as_u64().unwrap_or(0);
    lightwidget_commands::media::refresh(&app.commands, widget, owner, version);
}

//! When a public page's widget needs its Instagram media fetched (R7): none cached, or the
//! cached media past the policy's `media_cache` period. The fetch itself is the use case
//! `lightwidget_commands::media::refresh`.

use crate::state::AppState;
use lightwidget_domain::{Category, WidgetId};
use lightwidget_projections::models::widgets::PageDoc;

/// Whether the page's cached media must be fetched (again).
fn stale(app: &AppState, page: &PageDoc) -> bool {
    let fetched = page
        .media
        .as_ref()
        .and_then(|m| chrono::DateTime::parse_from_rfc3339(m.fetched_at).ok());
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
pub fn refresh_if_stale(app: &AppState, widget: WidgetId, page: &PageDoc) {
    if !stale(app, page) {
        return;
    }
    let Some(owner) = page.account_id else {
        return;
    };
    lightwidget_commands::media::refresh(&app.commands, widget, owner, page.media_version);
}

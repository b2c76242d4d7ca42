//! `widgets`: one document per widget — settings (opened personal data), plan, status,
//! stream version, quarantine date and the rendered static HTML (R9). Erasing the widget's
//! content or purging the widget leaves a tombstone without content.

use crate::{Overlay, Projection, ViewReader};
use lightwidget_domain::event::{Layout, MediaItem, Plan, WidgetSettings};
use lightwidget_domain::{AccountId, Category, DomainEvent, Personal, WidgetId};
use lightwidget_store::{format_time, DocChange, RecordedEvent, ViewDoc};
use serde::{Deserialize, Serialize};

pub struct Widgets;

pub const VIEW: &str = "widgets";

/// Where a widget stands.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WidgetState {
    #[default]
    Active,
    Quarantined,
    Purged,
}

impl WidgetState {
    pub fn as_str(self) -> &'static str {
        match self {
            WidgetState::Active => "active",
            WidgetState::Quarantined => "quarantined",
            WidgetState::Purged => "purged",
        }
    }
}

/// A widget's document. Times are RFC 3339 text as stored. The content (title, layout,
/// columns, html, media) is `None` once erased or purged.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct WidgetDoc {
    pub widget_id: Option<WidgetId>,
    pub account_id: Option<AccountId>,
    pub plan: Plan,
    pub status: WidgetState,
    pub quarantine_until: Option<String>,
    pub created_at: Option<String>,
    pub upgraded_at: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub purged_at: Option<String>,
    pub title: Option<String>,
    pub layout: Option<Layout>,
    pub columns: Option<u8>,
    /// The static HTML of the public page (R9).
    pub html: Option<String>,
    pub media: Option<MediaDoc>,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub content_erased: bool,
    /// The version of the widget's stream.
    pub version: u64,
    /// The version of the widget's media stream (`media-<widget>`).
    pub media_version: u64,
}

/// The Instagram media cached for a widget (R7), under its own subject.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct MediaDoc {
    pub subject: String,
    pub fetched_at: String,
    pub items: Vec<MediaItem>,
}

/// What the public page and a click need of a widget's document, borrowed from it: read per
/// request, so nothing else is decoded or copied.
#[derive(Clone, Debug, Deserialize)]
pub struct PageDoc<'a> {
    #[serde(default)]
    pub status: WidgetState,
    /// `pro` pages are served through the CDN (R14).
    #[serde(default)]
    pub plan: lightwidget_domain::event::Plan,
    #[serde(borrow, default)]
    pub html: Option<&'a str>,
    #[serde(default)]
    pub account_id: Option<AccountId>,
    #[serde(default)]
    pub media_version: u64,
    #[serde(borrow, default)]
    pub media: Option<PageMedia<'a>>,
}

#[derive(Clone, Debug, Deserialize)]
pub struct PageMedia<'a> {
    pub fetched_at: &'a str,
}

/// The static HTML of a widget (R9): everything that came from a user is escaped.
pub fn render_html(widget_id: WidgetId, s: &WidgetSettings) -> String {
    render_with_media(widget_id, s, &[])
}

/// The static HTML of a widget with its cached Instagram media (R7, R9):
/// [`super::widget_page::render`].
pub fn render_with_media(widget_id: WidgetId, s: &WidgetSettings, media: &[MediaItem]) -> String {
    super::widget_page::render(widget_id, s, media)
}

fn widget_id(d: &DomainEvent) -> Option<WidgetId> {
    Some(match d {
        DomainEvent::WidgetCreated(e) => e.widget_id,
        DomainEvent::WidgetUpdated(e) => e.widget_id,
        DomainEvent::WidgetUpgraded(e) => e.widget_id,
        DomainEvent::WidgetDeletionRequested(e) => e.widget_id,
        DomainEvent::WidgetRestored(e) => e.widget_id,
        DomainEvent::WidgetPurged(e) => e.widget_id,
        DomainEvent::MediaCached(e) => e.widget_id,
        // Erased, or archived under a legal hold (R21): no longer served either way.
        _ => match d.withdrawn() {
            Some(w) if w.category == Category::WidgetContent => {
                w.subject.as_str().strip_prefix("widget:")?.parse().ok()?
            }
            Some(w) if w.category == Category::MediaCache => w
                .subject
                .as_str()
                .strip_prefix("media:")?
                .split_once(':')?
                .0
                .parse()
                .ok()?,
            _ => return None,
        },
    })
}

fn set_content(doc: &mut WidgetDoc, id: WidgetId, settings: &Personal<WidgetSettings>) {
    match settings.value() {
        Some(s) => {
            doc.title = Some(s.title.clone());
            doc.layout = Some(s.layout);
            doc.columns = Some(s.columns);
            render(doc, id);
        }
        None => erase_content(doc),
    }
}

/// Renders the document's HTML again from its settings and cached media.
fn render(doc: &mut WidgetDoc, id: WidgetId) {
    let (Some(title), Some(layout), Some(columns)) = (&doc.title, doc.layout, doc.columns) else {
        // Content erased: nothing to render.
        return;
    };
    let settings = WidgetSettings {
        title: title.clone(),
        layout,
        columns,
    };
    let media = doc
        .media
        .as_ref()
        .map(|m| m.items.as_slice())
        .unwrap_or(&[]);
    doc.html = Some(render_with_media(id, &settings, media));
}

fn erase_content(doc: &mut WidgetDoc) {
    doc.title = None;
    doc.layout = None;
    doc.columns = None;
    doc.html = None;
    doc.media = None;
    doc.content_erased = true;
}

impl Projection for Widgets {
    fn name(&self) -> &'static str {
        VIEW
    }

    fn event_types(&self) -> Option<&'static [&'static str]> {
        Some(&[
            "WidgetCreated",
            "WidgetUpdated",
            "WidgetUpgraded",
            "WidgetDeletionRequested",
            "WidgetRestored",
            "WidgetPurged",
            "MediaCached",
            "PersonalDataErased",
            "PersonalDataArchived",
        ])
    }

    /// Keys come from the event alone.
    fn follows_references(&self) -> bool {
        false
    }

    fn reads(&self, _e: &RecordedEvent, d: &DomainEvent, _loaded: &dyn ViewReader) -> Vec<String> {
        widget_id(d)
            .map(|id| vec![id.to_string()])
            .unwrap_or_default()
    }

    fn handle(&self, e: &RecordedEvent, d: &DomainEvent, view: &mut Overlay) {
        let changes = changes(e, d, view);
        view.apply(changes);
    }
}

fn changes(e: &RecordedEvent, d: &DomainEvent, view: &dyn ViewReader) -> Vec<DocChange> {
    let Some(id) = widget_id(d) else {
        return vec![];
    };
    let key = id.to_string();
    let existing = view.get(&key);
    if existing.is_none() && !matches!(d, DomainEvent::WidgetCreated(_)) {
        return vec![];
    }
    let mut doc = match existing.map(ViewDoc::read::<WidgetDoc>) {
        None => WidgetDoc::default(),
        Some(Ok(doc)) => doc,
        Some(Err(err)) => {
            tracing::error!(error = %err, "a widget document does not read");
            return vec![];
        }
    };
    let is_widget_stream = e.stream == id.stream();
    match d {
        DomainEvent::WidgetCreated(w) => {
            doc = WidgetDoc {
                widget_id: Some(id),
                account_id: Some(w.account_id),
                created_at: Some(format_time(w.created_at)),
                ..WidgetDoc::default()
            };
            set_content(&mut doc, id, &w.settings);
        }
        DomainEvent::WidgetUpdated(w) => set_content(&mut doc, id, &w.settings),
        DomainEvent::WidgetUpgraded(w) => {
            doc.plan = w.plan;
            doc.upgraded_at = Some(format_time(w.upgraded_at));
        }
        DomainEvent::WidgetDeletionRequested(w) => {
            doc.status = WidgetState::Quarantined;
            doc.quarantine_until = Some(format_time(w.quarantine_until));
        }
        DomainEvent::WidgetRestored(_) => {
            doc.status = WidgetState::Active;
            doc.quarantine_until = None;
        }
        DomainEvent::WidgetPurged(w) => {
            doc.status = WidgetState::Purged;
            doc.quarantine_until = None;
            doc.purged_at = Some(format_time(w.purged_at));
            erase_content(&mut doc);
        }
        DomainEvent::MediaCached(m) => {
            if let Some(items) = m.media.value() {
                doc.media = Some(MediaDoc {
                    subject: m.media.subject().as_str().to_owned(),
                    fetched_at: format_time(m.fetched_at),
                    items: items.clone(),
                });
                render(&mut doc, id);
            }
        }
        _ => match d.withdrawn() {
            Some(w)
                if w.category == Category::MediaCache
                    && doc.media.as_ref().map(|m| m.subject.as_str())
                        == Some(w.subject.as_str()) =>
            {
                doc.media = None;
                render(&mut doc, id);
            }
            // An older fetch than the one shown: nothing to drop.
            Some(w) if w.category == Category::MediaCache => {}
            Some(_) => erase_content(&mut doc),
            None => {}
        },
    }
    if is_widget_stream {
        doc.version = e.version;
    }
    if matches!(d, DomainEvent::MediaCached(_)) {
        doc.media_version = e.version;
    }
    let due = match (doc.status, &doc.quarantine_until) {
        (WidgetState::Quarantined, Some(until)) => chrono::DateTime::parse_from_rfc3339(until)
            .ok()
            .map(|t| t.with_timezone(&chrono::Utc)),
        _ => None,
    };
    let Ok(mut out) = ViewDoc::typed(key, &doc) else {
        return vec![];
    };
    out = out.state(doc.status.as_str());
    if let Some(owner) = doc.account_id {
        out = out.owner(owner.to_string());
    }
    if let Some(due) = due {
        out = out.due_at(due);
    }
    vec![DocChange::Put(out)]
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A document as the untyped projection wrote it before (no `media_version`, nulls for
    /// absent times) still reads, and the page's borrowed view reads the same values.
    #[test]
    fn documents_written_before_the_types_still_read() {
        let id = WidgetId(uuid::Uuid::from_u128(5));
        let stored = ViewDoc::new(
            id.to_string(),
            serde_json::json!({
                "widget_id": id, "account_id": uuid::Uuid::from_u128(6), "plan": "pro",
                "status": "quarantined", "quarantine_until": "2026-03-01T00:00:00Z",
                "created_at": "2026-01-01T00:00:00Z", "upgraded_at": null,
                "title": "Feed", "layout": "masonry", "columns": 4, "html": "<p>x</p>",
                "media": null, "version": 3,
            }),
        );
        let doc: WidgetDoc = stored.read().expect("reads");
        assert_eq!(doc.plan, Plan::Pro);
        assert_eq!(doc.status, WidgetState::Quarantined);
        assert_eq!((doc.layout, doc.columns), (Some(Layout::Masonry), Some(4)));
        assert_eq!((doc.version, doc.media_version), (3, 0));
        let page: PageDoc = stored.read().expect("reads");
        assert_eq!(page.html, Some("<p>x</p>"));
        assert_eq!(page.status, WidgetState::Quarantined);
        // Written back, the same fields come out under the same names.
        let again = ViewDoc::typed(stored.key.clone(), &doc).expect("writes");
        for field in [
            "plan",
            "status",
            "quarantine_until",
            "title",
            "layout",
            "columns",
        ] {
            assert_eq!(again.doc[field], stored.doc[field], "{field}");
        }
        // A document that does not fit is refused, without quoting its values.
        let bad = ViewDoc::new("k", serde_json::json!({"status": "gone-secret"}));
        let err = bad.read::<WidgetDoc>().expect_err("refused");
        assert!(!err.to_string().contains("gone-secret"), "{err}");
        assert!(err.to_string().contains("`status`"), "{err}");
    }
}

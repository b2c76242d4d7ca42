//! `widgets`: one document per widget — settings (opened personal data), plan, status,
//! stream version, quarantine date and the rendered static HTML (R9). Erasing the widget's
//! content or purging the widget leaves a tombstone without content.

use super::time;
use crate::{Overlay, Projection, ViewReader};
use lightwidget_domain::event::{MediaItem, WidgetSettings};
use lightwidget_domain::{Category, DomainEvent, Personal, WidgetId};
use lightwidget_store::{DocChange, RecordedEvent, ViewDoc};
use serde_json::{json, Value};

pub struct Widgets;

pub const VIEW: &str = "widgets";

/// Escapes text for HTML content and attribute values.
pub fn escape_html(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// The static HTML of a widget (R9): everything that came from a user is escaped.
pub fn render_html(widget_id: WidgetId, s: &WidgetSettings) -> String {
    render_with_media(widget_id, s, &[])
}

/// The static HTML of a widget with its cached Instagram media (R7, R9).
pub fn render_with_media(widget_id: WidgetId, s: &WidgetSettings, media: &[MediaItem]) -> String {
    let layout = serde_json::to_value(s.layout)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_default();
    format!(
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>{title}</title></head>\
         <body><div class=\"lw-widget lw-{layout}\" data-widget=\"{id}\" data-columns=\"{cols}\">\
         <h2>{title}</h2>{photos}</div></body></html>",
        photos = media
            .iter()
            .map(|m| format!(
                "<img src=\"{}\" alt=\"{}\">",
                escape_html(&m.media_url),
                escape_html(m.caption.as_deref().unwrap_or_default())
            ))
            .collect::<String>(),
        title = escape_html(&s.title),
        layout = escape_html(&layout),
        id = widget_id,
        cols = s.columns
    )
}

fn widget_id(d: &DomainEvent) -> Option<WidgetId> {
    Some(match d {
        DomainEvent::WidgetCreated(e) => e.widget_id,
        DomainEvent::WidgetUpdated(e) => e.widget_id,
        DomainEvent::WidgetUpgraded(e) => e.widget_id,
        DomainEvent::WidgetDeletionRequested(e) => e.widget_id,
        DomainEvent::WidgetRestored(e) => e.widget_id,
        DomainEvent::WidgetPurged(e) => e.widget_id,
        DomainEvent::PersonalDataErased(e) if e.category == Category::WidgetContent => {
            e.subject.as_str().strip_prefix("widget:")?.parse().ok()?
        }
        DomainEvent::MediaCached(e) => e.widget_id,
        DomainEvent::PersonalDataErased(e) if e.category == Category::MediaCache => e
            .subject
            .as_str()
            .strip_prefix("media:")?
            .split_once(':')?
            .0
            .parse()
            .ok()?,
        _ => return None,
    })
}

fn set_content(doc: &mut Value, id: WidgetId, settings: &Personal<WidgetSettings>) {
    match settings.value() {
        Some(s) => {
            doc["title"] = json!(s.title);
            doc["layout"] = json!(s.layout);
            doc["columns"] = json!(s.columns);
            render(doc, id);
        }
        None => erase_content(doc),
    }
}

/// Renders the document's HTML again from its settings and cached media.
fn render(doc: &mut Value, id: WidgetId) {
    let settings = WidgetSettings {
        title: doc["title"].as_str().unwrap_or_default().to_owned(),
        layout: match serde_json::from_value(doc["layout"].clone()) {
            Ok(l) => l,
            // Content erased: nothing to render.
            Err(_) => return,
        },
        columns: doc["columns"].as_u64().unwrap_or(1) as u8,
    };
    let media: Vec<MediaItem> =
        serde_json::from_value(doc["media"]["items"].clone()).unwrap_or_default();
    doc["html"] = json!(render_with_media(id, &settings, &media));
}

fn erase_content(doc: &mut Value) {
    for f in ["title", "layout", "columns", "html", "media"] {
        doc[f] = Value::Null;
    }
    doc["content_erased"] = json!(true);
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
    {
        let Some(id) = widget_id(d) else {
            return vec![];
        };
        let key = id.to_string();
        let existing = view.get(&key);
        if existing.is_none() && !matches!(d, DomainEvent::WidgetCreated(_)) {
            return vec![];
        }
        let mut doc = existing.map(|v| v.doc.clone()).unwrap_or_else(|| json!({}));
        let is_widget_stream = e.stream == id.stream();
        match d {
            DomainEvent::WidgetCreated(w) => {
                doc = json!({
                    "widget_id": id,
                    "account_id": w.account_id,
                    "plan": "free",
                    "status": "active",
                    "quarantine_until": null,
                    "created_at": time(w.created_at),
                    "upgraded_at": null,
                });
                set_content(&mut doc, id, &w.settings);
            }
            DomainEvent::WidgetUpdated(w) => set_content(&mut doc, id, &w.settings),
            DomainEvent::WidgetUpgraded(w) => {
                doc["plan"] = json!(w.plan);
                doc["upgraded_at"] = time(w.upgraded_at);
            }
            DomainEvent::WidgetDeletionRequested(w) => {
                doc["status"] = json!("quarantined");
                doc["quarantine_until"] = time(w.quarantine_until);
            }
            DomainEvent::WidgetRestored(_) => {
                doc["status"] = json!("active");
                doc["quarantine_until"] = Value::Null;
            }
            DomainEvent::WidgetPurged(w) => {
                doc["status"] = json!("purged");
                doc["quarantine_until"] = Value::Null;
                doc["purged_at"] = time(w.purged_at);
                erase_content(&mut doc);
            }
            DomainEvent::MediaCached(m) => {
                if let Some(items) = m.media.value() {
                    doc["media"] = json!({
                        "subject": m.media.subject(),
                        "fetched_at": time(m.fetched_at),
                        "items": items,
                    });
                    render(&mut doc, id);
                }
            }
            DomainEvent::PersonalDataErased(e)
                if e.category == Category::MediaCache
                    && doc["media"]["subject"].as_str() == Some(e.subject.as_str()) =>
            {
                doc["media"] = Value::Null;
                render(&mut doc, id);
            }
            // An older fetch than the one shown: nothing to drop.
            DomainEvent::PersonalDataErased(e) if e.category == Category::MediaCache => {}
            DomainEvent::PersonalDataErased(_) => erase_content(&mut doc),
            _ => {}
        }
        if is_widget_stream {
            doc["version"] = json!(e.version);
        }
        if matches!(d, DomainEvent::MediaCached(_)) {
            doc["media_version"] = json!(e.version);
        }
        let status = doc["status"].as_str().unwrap_or("active").to_owned();
        let mut out = ViewDoc::new(key, doc.clone()).state(status.clone());
        if let Some(owner) = doc["account_id"].as_str() {
            out = out.owner(owner);
        }
        if status == "quarantined" {
            if let Some(until) = doc["quarantine_until"]
                .as_str()
                .and_then(|s| chrono::DateTime::parse_from_rfc3339(s).ok())
            {
                out = out.due_at(until.with_timezone(&chrono::Utc));
            }
        }
        vec![DocChange::Put(out)]
    }
}

//! `statistics`: views and clicks per widget and month (`<widget>:<YYYY-MM>`, owner = the
//! widget), with the counts of each day of the month (`daily_views`, `daily_clicks`). Counts
//! only: nothing personal (R2). A widget's totals and `by_day` are the sum of its month
//! documents ([`summarize`]). A purged widget's statistics are deleted with it (R18).
//!
//! One document per widget and month keeps writes down: a batch of events touches each
//! (widget, month) once, however many views it holds.

use crate::{Overlay, Projection, ViewReader};
use lightwidget_domain::{DomainEvent, WidgetId};
use lightwidget_store::{RecordedEvent, ViewDoc};
use serde_json::{json, Value};

pub struct Statistics;

pub const VIEW: &str = "statistics";

/// A month's daily counts before the first hit.
const DAYS_ZERO: [u64; 31] = [0; 31];

/// How long the statistics runner lets views gather before it counts them.
pub const LINGER_MS: u64 = 50;

type Hit = (WidgetId, chrono::DateTime<chrono::Utc>, &'static str);

/// The views and clicks an event holds: one for `WidgetViewed`/`WidgetClicked`, each of a
/// `HitsRecorded`'s.
fn hits(d: &DomainEvent) -> Vec<Hit> {
    match d {
        DomainEvent::WidgetViewed(e) => vec![(e.widget_id, e.viewed_at, "views")],
        DomainEvent::WidgetClicked(e) => vec![(e.widget_id, e.clicked_at, "clicks")],
        DomainEvent::HitsRecorded(h) => h
            .views
            .iter()
            .map(|e| (e.widget_id, e.viewed_at, "views"))
            .chain(
                h.clicks
                    .iter()
                    .map(|e| (e.widget_id, e.clicked_at, "clicks")),
            )
            .collect(),
        _ => vec![],
    }
}

fn month(at: chrono::DateTime<chrono::Utc>) -> String {
    use chrono::Datelike;
    format!("{:04}-{:02}", at.year(), at.month())
}

fn month_key(widget: &WidgetId, at: chrono::DateTime<chrono::Utc>) -> String {
    format!("{widget}:{}", month(at))
}

/// A widget's totals and days from its month documents.
pub fn summarize(months: &[ViewDoc]) -> Value {
    let mut views = 0;
    let mut clicks = 0;
    let mut by_day = Vec::new();
    let mut months: Vec<&ViewDoc> = months.iter().collect();
    months.sort_by(|a, b| a.key.cmp(&b.key));
    for m in months {
        views += m.doc["views"].as_u64().unwrap_or(0);
        clicks += m.doc["clicks"].as_u64().unwrap_or(0);
        let month = m.doc["month"].as_str().unwrap_or_default();
        let (Some(v), Some(c)) = (
            m.doc["daily_views"].as_array(),
            m.doc["daily_clicks"].as_array(),
        ) else {
            continue;
        };
        for (i, (v, c)) in v.iter().zip(c).enumerate() {
            let (v, c) = (v.as_u64().unwrap_or(0), c.as_u64().unwrap_or(0));
            if v + c > 0 {
                by_day.push(
                    json!({"date": format!("{month}-{:02}", i + 1), "views": v, "clicks": c}),
                );
            }
        }
    }
    json!({"views": views, "clicks": clicks, "by_day": by_day})
}

impl Projection for Statistics {
    fn name(&self) -> &'static str {
        VIEW
    }

    /// Views and clicks are most of the log: reading everything in position order is cheaper
    /// than a filtered read (which the type index would serve out of order). The other
    /// events are decoded without keys and ignored.
    fn event_types(&self) -> Option<&'static [&'static str]> {
        None
    }

    /// Counts need no personal data: the access logs stay sealed.
    fn needs_personal_data(&self) -> bool {
        false
    }

    /// Counts may trail the log by a few milliseconds: under a stream of views, a batch of
    /// them rewrites each month document once instead of once per append.
    fn linger(&self) -> std::time::Duration {
        std::time::Duration::from_millis(LINGER_MS)
    }

    /// A month document's key comes from the event alone.
    fn follows_references(&self) -> bool {
        false
    }

    fn reads(&self, _e: &RecordedEvent, d: &DomainEvent, _loaded: &dyn ViewReader) -> Vec<String> {
        let mut keys: Vec<String> = hits(d)
            .into_iter()
            .map(|(w, at, _)| month_key(&w, at))
            .collect();
        keys.sort_unstable();
        keys.dedup();
        keys
    }

    fn handle(&self, _e: &RecordedEvent, d: &DomainEvent, view: &mut Overlay) {
        if let DomainEvent::WidgetPurged(p) = d {
            view.delete_owner(&p.widget_id.to_string());
        }
        for (w, at, field) in hits(d) {
            let key = month_key(&w, at);
            if view.get(&key).is_none() {
                // Counts per day of the month as two arrays indexed by day - 1: counting is
                // an index, not a lookup by a formatted date.
                let doc = json!({
                    "widget_id": w, "month": month(at), "views": 0, "clicks": 0,
                    "daily_views": DAYS_ZERO, "daily_clicks": DAYS_ZERO,
                });
                view.put(ViewDoc::new(key.clone(), doc).owner(w.to_string()));
            }
            // Counted in place: no copy of the document per event.
            if let Some(month) = view.get_mut(&key) {
                use chrono::Datelike;
                let Some(doc) = month.doc.as_object_mut() else {
                    continue;
                };
                if let Some(total) = doc.get_mut(field) {
                    *total = json!(total.as_u64().unwrap_or(0) + 1);
                }
                let daily = if field == "views" {
                    "daily_views"
                } else {
                    "daily_clicks"
                };
                if let Some(slot) = doc
                    .get_mut(daily)
                    .and_then(Value::as_array_mut)
                    .and_then(|days| days.get_mut(at.day0() as usize))
                {
                    *slot = json!(slot.as_u64().unwrap_or(0) + 1);
                }
            }
        }
    }
}

//! `statistics`: views and clicks per widget (`<widget>`) and per widget and day
//! (`<widget>:<YYYY-MM-DD>`, owner = the widget). Counts only: nothing personal (R2). A
//! purged widget's statistics are deleted with it (R18).

use crate::{Projection, ViewReader};
use lightwidget_domain::{DomainEvent, WidgetId};
use lightwidget_store::{DocChange, RecordedEvent, ViewDoc};
use serde_json::json;

pub struct Statistics;

pub const VIEW: &str = "statistics";

fn hit(d: &DomainEvent) -> Option<(WidgetId, String, bool)> {
    match d {
        DomainEvent::WidgetViewed(e) => Some((
            e.widget_id,
            e.viewed_at.format("%Y-%m-%d").to_string(),
            true,
        )),
        DomainEvent::WidgetClicked(e) => Some((
            e.widget_id,
            e.clicked_at.format("%Y-%m-%d").to_string(),
            false,
        )),
        _ => None,
    }
}

fn day_key(widget: &str, day: &str) -> String {
    format!("{widget}:{day}")
}

impl Projection for Statistics {
    fn name(&self) -> &'static str {
        VIEW
    }

    fn reads(&self, _e: &RecordedEvent, d: &DomainEvent, loaded: &dyn ViewReader) -> Vec<String> {
        if let Some((w, day, _)) = hit(d) {
            let w = w.to_string();
            return vec![day_key(&w, &day), w];
        }
        if let DomainEvent::WidgetPurged(p) = d {
            let w = p.widget_id.to_string();
            let mut keys = vec![w.clone()];
            if let Some(days) = loaded.get(&w).and_then(|t| t.doc["days"].as_array()) {
                keys.extend(
                    days.iter()
                        .filter_map(|d| d.as_str())
                        .map(|d| day_key(&w, d)),
                );
            }
            return keys;
        }
        vec![]
    }

    fn handle(&self, _e: &RecordedEvent, d: &DomainEvent, view: &dyn ViewReader) -> Vec<DocChange> {
        if let Some((w, day, is_view)) = hit(d) {
            let w = w.to_string();
            let field = if is_view { "views" } else { "clicks" };
            let mut total = view
                .get(&w)
                .map(|t| t.doc.clone())
                .unwrap_or_else(|| json!({"widget_id": w, "views": 0, "clicks": 0, "days": []}));
            total[field] = json!(total[field].as_u64().unwrap_or(0) + 1);
            let key = day_key(&w, &day);
            let mut daily = view
                .get(&key)
                .map(|t| t.doc.clone())
                .unwrap_or_else(|| json!({"date": day, "views": 0, "clicks": 0}));
            if view.get(&key).is_none() {
                if let Some(days) = total["days"].as_array_mut() {
                    days.push(json!(day));
                }
            }
            daily[field] = json!(daily[field].as_u64().unwrap_or(0) + 1);
            return vec![
                DocChange::Put(ViewDoc::new(w.clone(), total)),
                DocChange::Put(ViewDoc::new(key, daily).owner(w)),
            ];
        }
        if let DomainEvent::WidgetPurged(p) = d {
            let w = p.widget_id.to_string();
            let mut out = vec![DocChange::Delete(w.clone())];
            if let Some(days) = view.get(&w).and_then(|t| t.doc["days"].as_array()) {
                out.extend(
                    days.iter()
                        .filter_map(|d| d.as_str())
                        .map(|d| DocChange::Delete(day_key(&w, d))),
                );
            }
            return out;
        }
        vec![]
    }
}

//! `statistics`: views and clicks per widget and month (`<widget>:<YYYY-MM>`, owner = the
//! widget), with the counts of each day of the month (`daily_views`, `daily_clicks`). Counts
//! only: nothing personal (R2). A widget's totals and `by_day` are the sum of its month
//! documents ([`summarize`]). A purged widget's statistics are deleted with it (R18).
//!
//! One document per widget and month keeps writes down: a batch of events touches each
//! (widget, month) once, however many views it holds.

use crate::{Overlay, Projection, ViewReader};
use lightwidget_domain::{DomainEvent, WidgetId};
use lightwidget_store::{RecordedEvent, StoreError, ViewDoc};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

pub struct Statistics;

pub const VIEW: &str = "statistics";

/// How long the statistics runner lets views gather before it counts them.
pub const LINGER_MS: u64 = 50;

/// A widget's views and clicks in one month (`YYYY-MM`), in total and per day of the month
/// (index = day - 1).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct MonthDoc {
    pub widget_id: WidgetId,
    pub month: String,
    pub views: u64,
    pub clicks: u64,
    pub daily_views: Vec<u64>,
    pub daily_clicks: Vec<u64>,
}

impl MonthDoc {
    fn new(widget_id: WidgetId, month: String) -> Self {
        MonthDoc {
            widget_id,
            month,
            views: 0,
            clicks: 0,
            daily_views: vec![0; 31],
            daily_clicks: vec![0; 31],
        }
    }

    fn count(&mut self, kind: HitKind, day0: usize) {
        let (total, daily) = match kind {
            HitKind::View => (&mut self.views, &mut self.daily_views),
            HitKind::Click => (&mut self.clicks, &mut self.daily_clicks),
        };
        *total += 1;
        if let Some(slot) = daily.get_mut(day0) {
            *slot += 1;
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum HitKind {
    View,
    Click,
}

/// One view or click.
struct Hit {
    widget_id: WidgetId,
    at: chrono::DateTime<chrono::Utc>,
    kind: HitKind,
}

/// The views and clicks an event holds: one for `WidgetViewed`/`WidgetClicked`, each of a
/// `HitsRecorded`'s.
fn hits(d: &DomainEvent) -> Vec<Hit> {
    let view = |e: &lightwidget_domain::event::WidgetViewed| Hit {
        widget_id: e.widget_id,
        at: e.viewed_at,
        kind: HitKind::View,
    };
    let click = |e: &lightwidget_domain::event::WidgetClicked| Hit {
        widget_id: e.widget_id,
        at: e.clicked_at,
        kind: HitKind::Click,
    };
    match d {
        DomainEvent::WidgetViewed(e) => vec![view(e)],
        DomainEvent::WidgetClicked(e) => vec![click(e)],
        DomainEvent::HitsRecorded(h) => h
            .views
            .iter()
            .map(view)
            .chain(h.clicks.iter().map(click))
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

/// A day with views or clicks.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct DayCount {
    /// `YYYY-MM-DD`.
    pub date: String,
    pub views: u64,
    pub clicks: u64,
}

/// A widget's totals and its days with hits, oldest first.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Summary {
    pub views: u64,
    pub clicks: u64,
    pub by_day: Vec<DayCount>,
}

/// A widget's totals and days from its month documents.
pub fn summarize(months: &[ViewDoc]) -> Result<Summary, StoreError> {
    let mut months: Vec<&ViewDoc> = months.iter().collect();
    months.sort_by(|a, b| a.key.cmp(&b.key));
    let mut summary = Summary::default();
    for m in months {
        let m: MonthDoc = m.read()?;
        summary.views += m.views;
        summary.clicks += m.clicks;
        for (i, (&views, &clicks)) in m.daily_views.iter().zip(&m.daily_clicks).enumerate() {
            if views + clicks > 0 {
                summary.by_day.push(DayCount {
                    date: format!("{}-{:02}", m.month, i + 1),
                    views,
                    clicks,
                });
            }
        }
    }
    Ok(summary)
}

/// Adds the batch's hits, folded per month document, to the documents in `view`: each is
/// read and written once, however many hits it takes.
fn add(pending: BTreeMap<String, MonthDoc>, view: &mut Overlay) {
    for (key, counted) in pending {
        let mut doc = match view.get(&key).map(ViewDoc::read::<MonthDoc>) {
            None => MonthDoc::new(counted.widget_id, counted.month.clone()),
            Some(Ok(doc)) => doc,
            Some(Err(err)) => {
                tracing::error!(error = %err, "a statistics document does not read");
                continue;
            }
        };
        doc.views += counted.views;
        doc.clicks += counted.clicks;
        for (slot, n) in doc.daily_views.iter_mut().zip(&counted.daily_views) {
            *slot += n;
        }
        for (slot, n) in doc.daily_clicks.iter_mut().zip(&counted.daily_clicks) {
            *slot += n;
        }
        if let Ok(out) = ViewDoc::typed(key, &doc) {
            view.put(out.owner(doc.widget_id.to_string()));
        }
    }
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
            .map(|h| month_key(&h.widget_id, h.at))
            .collect();
        keys.sort_unstable();
        keys.dedup();
        keys
    }

    fn handle(&self, e: &RecordedEvent, d: &DomainEvent, view: &mut Overlay) {
        self.handle_batch(std::slice::from_ref(e), std::slice::from_ref(d), view);
    }

    /// Hits are counted per month document first, then added to each document once; a
    /// purge deletes the widget's documents after the hits before it are added, as one event
    /// at a time would.
    fn handle_batch(&self, _events: &[RecordedEvent], domain: &[DomainEvent], view: &mut Overlay) {
        use chrono::Datelike;
        let mut pending: BTreeMap<String, MonthDoc> = BTreeMap::new();
        for d in domain {
            if let DomainEvent::WidgetPurged(p) = d {
                add(std::mem::take(&mut pending), view);
                view.delete_owner(&p.widget_id.to_string());
                continue;
            }
            for h in hits(d) {
                pending
                    .entry(month_key(&h.widget_id, h.at))
                    .or_insert_with(|| MonthDoc::new(h.widget_id, month(h.at)))
                    .count(h.kind, h.at.day0() as usize);
            }
        }
        add(pending, view);
    }
}

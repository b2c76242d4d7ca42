//! The retention projection rebuilt over recorded views, on both backends, with and without
//! folding runs of hits per access-log bucket.
//!
//! `LW_BENCH_VIEWS` (default 200,000) views of 1,000 widgets of one account, over one month,
//! stored as the hit recorder stores them (`HitsRecorded`, 256 views an event). Then the
//! retention view is rebuilt from position 0 twice: as the runner applies it (runs of hits
//! folded per bucket, `Retention::handle_batch`), and through a wrapper that leaves
//! `handle_batch` at its default, one event at a time (`handle`). The two rebuilds must
//! leave the same documents; the bench fails otherwise.
//!
//! `cargo bench -p lightwidget-retention --bench fold` — `LW_BENCH_VIEWS` sets the number of
//! views, `LW_BENCH_BACKEND=postgres|sqlite` runs one backend.

use chrono::{TimeZone, Utc};
use lightwidget_domain::event::HitsRecorded;
use lightwidget_domain::{AccountId, DomainEvent, WidgetId};
use lightwidget_projections::{rebuild, Overlay, Projection, ViewReader};
use lightwidget_retention::projection::{Retention, VIEW};
use lightwidget_retention::RetentionPolicy;
use lightwidget_store::{
    AppendRequest, ExpectedVersion, Metadata, RecordedEvent, StreamWrite, SystemClock,
};
use lightwidget_testkit::bench::{
    account_registered, backends, count, create_widgets, widget_view,
};
use lightwidget_testkit::{Backend, TestStore};
use std::sync::Arc;
use std::time::Instant;

const WIDGETS: usize = 1000;
const HITS_PER_EVENT: usize = 256;

/// Retention with `handle_batch` left at the trait's default: one event at a time.
struct OneAtATime(Retention);

impl Projection for OneAtATime {
    fn name(&self) -> &'static str {
        self.0.name()
    }
    fn reads(&self, e: &RecordedEvent, d: &DomainEvent, loaded: &dyn ViewReader) -> Vec<String> {
        self.0.reads(e, d, loaded)
    }
    fn handle(&self, e: &RecordedEvent, d: &DomainEvent, view: &mut Overlay) {
        self.0.handle(e, d, view)
    }
    fn event_types(&self) -> Option<&'static [&'static str]> {
        self.0.event_types()
    }
    fn needs_personal_data(&self) -> bool {
        self.0.needs_personal_data()
    }
    fn opens(&self, event_type: &str) -> bool {
        self.0.opens(event_type)
    }
    fn follows_references(&self) -> bool {
        self.0.follows_references()
    }
}

async fn seed(t: &TestStore, views: usize) {
    let a = AccountId(uuid::Uuid::from_u128(1));
    let at = Utc
        .with_ymd_and_hms(2026, 11, 1, 0, 0, 0)
        .single()
        .expect("time");
    t.append_events(&a.stream(), &[account_registered(a, "fold-bench", at)])
        .await;
    let widgets: Vec<WidgetId> = (0..WIDGETS)
        .map(|i| WidgetId(uuid::Uuid::from_u128(i as u128 + 100)))
        .collect();
    create_widgets(&*t.store, a, &widgets, at).await;
    // The recorder's events: 256 views each, ten events an append.
    let mut n = 0;
    while n < views {
        let mut events = Vec::new();
        while events.len() < 10 && n < views {
            let end = (n + HITS_PER_EVENT).min(views);
            let hits = HitsRecorded {
                views: (n..end)
                    .map(|i| match widget_view(&widgets, i) {
                        DomainEvent::WidgetViewed(v) => v,
                        other => panic!("a view, not {}", other.event_type()),
                    })
                    .collect(),
                clicks: vec![],
            };
            events.push(DomainEvent::from(hits));
            n = end;
        }
        t.store
            .append(AppendRequest {
                writes: vec![StreamWrite::of(
                    "hits",
                    ExpectedVersion::Any,
                    &events,
                    &Metadata::system(),
                )],
                shred: vec![],
            })
            .await
            .expect("append views");
    }
}

async fn timed_rebuild(
    t: &TestStore,
    p: Arc<dyn Projection>,
) -> (f64, Vec<lightwidget_store::ViewDoc>) {
    let start = Instant::now();
    rebuild(t.store.clone(), t.views.clone(), p)
        .await
        .expect("rebuild");
    let took = start.elapsed().as_secs_f64();
    (took, t.docs(VIEW, None).await)
}

async fn run(backend: Backend, views: usize) {
    let t = TestStore::new(backend, Arc::new(SystemClock)).await;
    let start = Instant::now();
    seed(&t, views).await;
    println!(
        "{backend:?}: {views} views of {WIDGETS} widgets stored in {:.1} s",
        start.elapsed().as_secs_f64()
    );
    let policy = Arc::new(RetentionPolicy::defaults());
    let (folded_s, folded) = timed_rebuild(&t, Arc::new(Retention::new(policy.clone()))).await;
    let (alone_s, alone) =
        timed_rebuild(&t, Arc::new(OneAtATime(Retention::new(policy.clone())))).await;
    // Once more folded, after the unfolded one: neither order nor a warm cache decides.
    let (again_s, again) = timed_rebuild(&t, Arc::new(Retention::new(policy))).await;
    assert_eq!(folded, alone, "the fold changes no document");
    assert_eq!(folded, again);
    println!(
        "  retention rebuilt, {} documents: folded {folded_s:.2} s and {again_s:.2} s \
         ({:.0} and {:.0} views/s); one event at a time {alone_s:.2} s ({:.0} views/s)",
        folded.len(),
        views as f64 / folded_s,
        views as f64 / again_s,
        views as f64 / alone_s,
    );
}

#[tokio::main]
async fn main() {
    let views = count("LW_BENCH_VIEWS", 200_000);
    for backend in backends() {
        run(backend, views).await;
    }
}

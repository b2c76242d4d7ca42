//! The in-memory cache of a view's documents, on both real backends: served from memory
//! while current, never older than what its follower has read of the log (a change appended
//! by anyone reaches it), and read from the store again once changed.

use crate::counted::Counted;
use chrono::Utc;
use lightwidget_domain::event::{
    DeletionCause, Layout, WidgetCreated, WidgetDeletionRequested, WidgetSettings,
};
use lightwidget_domain::{AccountId, Category, DomainEvent, Personal, Subject, WidgetId};
use lightwidget_projections::cache::ViewCache;
use lightwidget_projections::models::Widgets;
use lightwidget_projections::Runner;
use lightwidget_store::{SystemClock, ViewDoc};
use lightwidget_testkit::{Backend, TestStore};
use std::sync::atomic::Ordering;
use std::sync::Arc;

/// Waits until the cache's follower has read up to `position`.
async fn followed(cache: &ViewCache, position: u64) {
    for _ in 0..500 {
        if cache.followed() >= position {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    panic!("the follower did not reach {position}");
}

fn created(w: WidgetId, a: AccountId, title: &str) -> DomainEvent {
    WidgetCreated {
        widget_id: w,
        account_id: a,
        settings: Personal::new(
            Subject::widget(w),
            Category::WidgetContent,
            WidgetSettings {
                title: title.into(),
                layout: Layout::Grid,
                columns: 3,
            },
        ),
        created_at: Utc::now(),
    }
    .into()
}

fn deleted(w: WidgetId, a: AccountId) -> DomainEvent {
    WidgetDeletionRequested {
        widget_id: w,
        account_id: a,
        cause: DeletionCause::Owner,
        requested_at: Utc::now(),
        quarantine_until: Utc::now() + chrono::Duration::days(90),
    }
    .into()
}

async fn append(t: &TestStore, stream: &str, e: DomainEvent) -> u64 {
    t.append_events(stream, &[e]).await
}

async fn a_cached_document_follows_the_log(backend: Backend) {
    let t = TestStore::new(backend, Arc::new(SystemClock)).await;
    let views = Arc::new(Counted::new(t.views.clone()));
    let cache = Arc::new(ViewCache::new(Arc::new(Widgets), views.clone()));
    let runner = Runner::new(t.store.clone(), t.views.clone(), Arc::new(Widgets));
    let (stop_tx, follower) = follow(&cache, &t);

    let (a, w) = (AccountId::new(), WidgetId::new());
    let made_first = append(&t, &w.stream(), created(w, a, "first")).await;
    runner.catch_up().await.expect("catch up");
    followed(&cache, made_first).await;
    let key = w.to_string();
    let status = |d: Option<Arc<ViewDoc>>| d.map(|d| d.doc["status"].clone());
    assert_eq!(
        status(cache.get(&key, Some(made_first)).await.expect("get")),
        Some("active".into())
    );
    let reads = views.reads.load(Ordering::SeqCst);
    assert!(reads >= 1, "the first read goes to the store");
    // Current and unchanged: from memory, as often as asked.
    for _ in 0..5 {
        assert_eq!(
            status(cache.get(&key, Some(made_first)).await.expect("get")),
            Some("active".into())
        );
    }
    assert_eq!(
        views.reads.load(Ordering::SeqCst),
        reads,
        "served from memory"
    );

    // A deletion (appended straight to the store, as another process would) makes the cached
    // document stale: once the follower has read that far, the store is read again.
    let quarantined = append(&t, &w.stream(), deleted(w, a)).await;
    runner.catch_up().await.expect("catch up");
    followed(&cache, quarantined).await;
    assert_eq!(
        status(cache.get(&key, Some(quarantined)).await.expect("get")),
        Some("quarantined".into())
    );
    assert!(views.reads.load(Ordering::SeqCst) > reads);

    // Another widget's event does not touch the cached document.
    let reads = views.reads.load(Ordering::SeqCst);
    let other = {
        let w2 = WidgetId::new();
        append(&t, &w2.stream(), deleted(w2, a)).await
    };
    runner.catch_up().await.expect("catch up");
    followed(&cache, other).await;
    assert_eq!(
        status(cache.get(&key, Some(other)).await.expect("get")),
        Some("quarantined".into())
    );
    assert_eq!(views.reads.load(Ordering::SeqCst), reads, "still current");

    // An absent document is cached as absent, and a creation replaces it.
    let later = WidgetId::new();
    assert_eq!(
        cache
            .get(&later.to_string(), Some(other))
            .await
            .expect("get"),
        None
    );
    let made = append(&t, &later.stream(), created(later, a, "later")).await;
    runner.catch_up().await.expect("catch up");
    followed(&cache, made).await;
    assert_eq!(
        status(
            cache
                .get(&later.to_string(), Some(made))
                .await
                .expect("get")
        ),
        Some("active".into())
    );

    let _ = stop_tx.send(());
    follower.await.expect("follower stops");
}

/// Starts `cache`'s follower: the sender stops it, the handle ends when it has stopped.
fn follow(
    cache: &Arc<ViewCache>,
    t: &TestStore,
) -> (
    tokio::sync::oneshot::Sender<()>,
    tokio::task::JoinHandle<()>,
) {
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let (cache, events) = (cache.clone(), t.store.clone());
    let follower = tokio::spawn(async move {
        cache
            .follow(events, async move {
                let _ = stop_rx.await;
            })
            .await
    });
    (stop_tx, follower)
}

/// A cache too small for one document answers every read from the store, rightly; a cache
/// that remembers one change forgets the older ones without serving a document they made
/// stale.
async fn a_bounded_cache_never_serves_stale(backend: Backend) {
    let t = TestStore::new(backend, Arc::new(SystemClock)).await;
    let views = Arc::new(Counted::new(t.views.clone()));
    let runner = Runner::new(t.store.clone(), t.views.clone(), Arc::new(Widgets));
    let status = |d: Option<Arc<ViewDoc>>| d.map(|d| d.doc["status"].clone());
    let a = AccountId::new();

    // No room: every get reads the store, and holds nothing.
    let tiny = Arc::new(ViewCache::with_budget(Arc::new(Widgets), views.clone(), 1));
    let (stop_tiny, tiny_follower) = follow(&tiny, &t);
    let w = WidgetId::new();
    let made = append(&t, &w.stream(), created(w, a, "tiny")).await;
    runner.catch_up().await.expect("catch up");
    followed(&tiny, made).await;
    let before = views.reads.load(Ordering::SeqCst);
    for _ in 0..3 {
        assert_eq!(
            status(tiny.get(&w.to_string(), Some(made)).await.expect("get")),
            Some("active".into())
        );
    }
    assert_eq!(views.reads.load(Ordering::SeqCst), before + 3);
    let stats = tiny.stats();
    assert_eq!((stats.hits, stats.misses, stats.documents), (0, 3, 0));
    let _ = stop_tiny.send(());
    tiny_follower.await.expect("follower stops");

    // Room for documents, memory for one change.
    let short = Arc::new(ViewCache::new(Arc::new(Widgets), views.clone()).remembering(1));
    let (stop_short, short_follower) = follow(&short, &t);
    let (w1, w2) = (WidgetId::new(), WidgetId::new());
    append(&t, &w1.stream(), created(w1, a, "one")).await;
    let made = append(&t, &w2.stream(), created(w2, a, "two")).await;
    runner.catch_up().await.expect("catch up");
    followed(&short, made).await;
    for w in [w1, w2] {
        assert_eq!(
            status(short.get(&w.to_string(), Some(made)).await.expect("get")),
            Some("active".into())
        );
    }
    assert_eq!(short.stats().hits, 0);
    assert_eq!(
        status(short.get(&w1.to_string(), Some(made)).await.expect("get")),
        Some("active".into())
    );
    assert_eq!(short.stats().hits, 1, "held while nothing changed");
    // w1 is deleted, then a third widget made: the change to w1 is forgotten, so its cached
    // document must not be served as current.
    append(&t, &w1.stream(), deleted(w1, a)).await;
    let w3 = WidgetId::new();
    let last = append(&t, &w3.stream(), created(w3, a, "three")).await;
    runner.catch_up().await.expect("catch up");
    followed(&short, last).await;
    assert_eq!(
        status(short.get(&w1.to_string(), Some(last)).await.expect("get")),
        Some("quarantined".into())
    );
    let _ = stop_short.send(());
    short_follower.await.expect("follower stops");
}

lightwidget_testkit::both!(
    a_cached_document_follows_the_log,
    a_bounded_cache_never_serves_stale
);

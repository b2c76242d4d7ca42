//! The retention projection on real storage (PostgreSQL and SQLite): views and clicks into
//! an access-log bucket that already exists move the bucket's clock. Applied one event per
//! batch, from stored documents, it must end where a rebuild and an "as of" evaluation end;
//! an account's item list runs over pages.

use chrono::{DateTime, Duration, TimeZone, Utc};
use lightwidget_domain::event::*;
use lightwidget_domain::{AccountId, Category, DomainEvent, HoldId, StaffId, Subject, WidgetId};
use lightwidget_projections::{evaluate_as_of, rebuild, Projection, Runner};
use lightwidget_retention::projection::{
    account_key, item_key, items_page_key, ItemFacts, Retention, Started, ITEMS_PER_PAGE, VIEW,
};
use lightwidget_retention::RetentionPolicy;
use lightwidget_store::{SystemClock, ViewDoc};
use lightwidget_testkit::{Backend, TestStore};
use std::sync::Arc;

fn t0() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 5, 4, 9, 0, 0)
        .single()
        .expect("valid")
}

async fn append(t: &TestStore, stream: &str, e: DomainEvent) -> u64 {
    t.append_events(stream, &[e]).await
}

fn viewed(w: WidgetId, at: DateTime<Utc>) -> DomainEvent {
    lightwidget_testkit::bench::view_at(w, at, 4)
}

/// The retention view after a runner that takes one event per batch has caught up: each
/// hit finds its bucket stored by an earlier commit.
async fn one_by_one(t: &TestStore, retention: &Arc<dyn Projection>) -> Vec<ViewDoc> {
    Runner::new(t.store.clone(), t.views.clone(), retention.clone())
        .with_batch_size(1)
        .catch_up()
        .await
        .expect("catch up");
    t.docs(VIEW, None).await
}

fn doc<'a>(docs: &'a [ViewDoc], key: &str) -> &'a ViewDoc {
    docs.iter()
        .find(|d| d.key == key)
        .unwrap_or_else(|| panic!("no document {key}"))
}

/// The clock an item runs on.
fn clock_of(docs: &[ViewDoc], key: &str) -> Started {
    let facts: ItemFacts =
        serde_json::from_value(doc(docs, key).doc["facts"].clone()).expect("facts");
    facts.own_clock.expect("the item runs on its own clock")
}

/// How often `key` is listed on the first page of `a`'s item list.
fn listed(docs: &[ViewDoc], a: AccountId, key: &str) -> usize {
    doc(docs, &items_page_key(a, 0)).doc["items"]
        .as_array()
        .expect("items")
        .iter()
        .filter(|k| k.as_str() == Some(key))
        .count()
}

async fn hits_move_the_bucket_clock_only(backend: Backend) {
    let t = TestStore::new(backend, Arc::new(SystemClock)).await;
    let (a, w) = (AccountId::new(), WidgetId::new());
    append(
        &t,
        &a.stream(),
        lightwidget_testkit::bench::account_registered(a, "bucket-test", t0()),
    )
    .await;
    append(&t, &w.stream(), created(a, w)).await;
    // Three views of one day's bucket: the latest is the second; the third arrives late.
    let views = format!("views-{w}");
    append(&t, &views, viewed(w, t0() + Duration::minutes(5))).await;
    let latest = append(&t, &views, viewed(w, t0() + Duration::hours(3))).await;
    append(&t, &views, viewed(w, t0() + Duration::hours(1))).await;

    let retention: Arc<dyn Projection> =
        Arc::new(Retention::new(Arc::new(RetentionPolicy::defaults())));
    let incremental = one_by_one(&t, &retention).await;

    let bucket_key = item_key(
        &Subject::access_log(w, t0() + Duration::minutes(5)),
        Category::AccessLog,
    );
    let bucket = doc(&incremental, &bucket_key);
    let clock = clock_of(&incremental, &bucket_key);
    assert_eq!(
        clock.at,
        t0() + Duration::hours(3),
        "the latest entry counts"
    );
    assert_eq!(
        clock.position, latest,
        "the purge's cause is the latest entry"
    );
    assert_eq!(
        bucket.due_at,
        Some(t0() + Duration::hours(3) + Duration::days(365)),
        "kept 12 months from its latest entry (R1)"
    );
    assert_eq!(
        listed(&incremental, a, &bucket_key),
        1,
        "the bucket is listed once on its account"
    );

    // The recorder's batch: views at +2 h and +5 h and a click at +4 h in the same bucket,
    // and a view 40 days on (next month's bucket). The bucket's clock moves to the batch's
    // latest entry, caused by the batch; the new bucket is listed once.
    let hit = |at| match viewed(w, at) {
        DomainEvent::WidgetViewed(v) => v,
        other => panic!("a view, not {}", other.event_type()),
    };
    let later = t0() + Duration::days(40);
    let clicked = hit(t0() + Duration::hours(4));
    let head = append(
        &t,
        "hits",
        HitsRecorded {
            views: vec![
                hit(t0() + Duration::hours(2)),
                hit(t0() + Duration::hours(5)),
                hit(later),
            ],
            clicks: vec![WidgetClicked {
                widget_id: w,
                access: clicked.access,
                clicked_at: clicked.viewed_at,
            }],
        }
        .into(),
    )
    .await;
    let incremental = one_by_one(&t, &retention).await;
    let clock = clock_of(&incremental, &bucket_key);
    assert_eq!(
        (clock.at, clock.position),
        (t0() + Duration::hours(5), head)
    );
    let next_key = item_key(&Subject::access_log(w, later), Category::AccessLog);
    let clock = clock_of(&incremental, &next_key);
    assert_eq!((clock.at, clock.position), (later, head));
    for key in [&bucket_key, &next_key] {
        assert_eq!(listed(&incremental, a, key), 1, "{key} listed once");
    }

    // The same documents from a rebuild, and as of the head.
    let as_of = evaluate_as_of(&*t.store, &*retention, head)
        .await
        .expect("as of");
    rebuild(t.store.clone(), t.views.clone(), retention.clone())
        .await
        .expect("rebuild");
    let rebuilt = t.docs(VIEW, None).await;
    assert_eq!(rebuilt, incremental, "rebuild equals incremental");
    let as_of: Vec<_> = as_of.into_values().collect();
    assert_eq!(as_of, incremental, "as of the head equals incremental");
}

fn created(a: AccountId, w: WidgetId) -> DomainEvent {
    lightwidget_testkit::bench::widget_created(a, w, t0())
}

/// An account with more items than a page holds: the list runs over several pages, each
/// at most [`ITEMS_PER_PAGE`] keys, every item listed once; a legal hold placed on the
/// account reaches every item on every page, incrementally as in a rebuild.
async fn item_lists_run_over_pages(backend: Backend) {
    let t = TestStore::new(backend, Arc::new(SystemClock)).await;
    let a = AccountId::new();
    let widgets: Vec<WidgetId> = (0..700).map(|_| WidgetId::new()).collect();
    // 700 widgets, two items each, in appends of 100 widgets.
    lightwidget_testkit::bench::create_widgets(&*t.store, a, &widgets, t0()).await;
    let hold = HoldId(uuid::Uuid::from_u128(5));
    append(
        &t,
        &a.stream(),
        LegalHoldPlaced {
            hold_id: hold,
            account_id: a,
            reason: "court order".into(),
            case_ref: "KR-77".into(),
            placed_by: StaffId(uuid::Uuid::from_u128(6)),
            placed_at: t0(),
        }
        .into(),
    )
    .await;

    let retention: Arc<dyn Projection> =
        Arc::new(Retention::new(Arc::new(RetentionPolicy::defaults())));
    Runner::new(t.store.clone(), t.views.clone(), retention.clone())
        .with_batch_size(64)
        .catch_up()
        .await
        .expect("catch up");
    let incremental = t.docs(VIEW, None).await;

    let account = incremental
        .iter()
        .find(|d| d.key == account_key(a))
        .expect("the account");
    let pages = 1_400usize.div_ceil(ITEMS_PER_PAGE) as u32;
    assert!(pages >= 2);
    assert_eq!(account.doc["item_pages"], pages, "{}", account.doc);
    assert!(account.doc.get("items").is_none(), "no list on the account");
    let mut listed = Vec::new();
    for n in 0..pages {
        let page = incremental
            .iter()
            .find(|d| d.key == items_page_key(a, n))
            .expect("page");
        let keys = page.doc["items"].as_array().expect("items");
        assert!(keys.len() <= ITEMS_PER_PAGE);
        listed.extend(keys.iter().map(|k| k.as_str().expect("key").to_owned()));
    }
    let items: Vec<&str> = incremental
        .iter()
        .filter(|d| d.key.starts_with("item:"))
        .map(|d| d.key.as_str())
        .collect();
    assert_eq!(items.len(), 1_400, "two items per widget");
    listed.sort();
    let mut expected: Vec<String> = items.iter().map(|k| (*k).to_owned()).collect();
    expected.sort();
    assert_eq!(listed, expected, "every item listed once");
    let held = incremental
        .iter()
        .filter(|d| d.key.starts_with("item:"))
        .filter(|d| d.doc["holds"].to_string().contains("KR-77"))
        .count();
    assert_eq!(held, 1_400, "the hold reaches every item on every page");

    rebuild(t.store.clone(), t.views.clone(), retention.clone())
        .await
        .expect("rebuild");
    assert_eq!(
        t.docs(VIEW, None).await,
        incremental,
        "rebuild equals incremental"
    );
}

mod postgres {
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn hits_move_the_bucket_clock_only() {
        super::hits_move_the_bucket_clock_only(super::Backend::Postgres).await
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn item_lists_run_over_pages() {
        super::item_lists_run_over_pages(super::Backend::Postgres).await
    }
}

mod sqlite {
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn hits_move_the_bucket_clock_only() {
        super::hits_move_the_bucket_clock_only(super::Backend::Sqlite).await
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn item_lists_run_over_pages() {
        super::item_lists_run_over_pages(super::Backend::Sqlite).await
    }
}

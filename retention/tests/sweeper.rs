//! The sweeper against real storage (PostgreSQL and SQLite): a sweep cut off in the middle
//! — its future dropped while appends are in flight, as a crash would leave it — and two
//! more sweeps at once purge every due item exactly once, and only the due ones.

use chrono::{Duration, TimeZone, Utc};
use lightwidget_domain::retention::retention_stream;
use lightwidget_domain::{Category, PreviewId, Subject};
use lightwidget_retention::projection::{item_key, ItemFacts, Retention, VIEW};
use lightwidget_retention::sweeper::Sweeper;
use lightwidget_retention::RetentionPolicy;
use lightwidget_store::{DocChange, ManualClock, ViewQuery};
use lightwidget_testkit::{Backend, TestStore};
use std::sync::Arc;

const ITEMS: usize = 600;

fn preview(i: usize) -> Subject {
    Subject::preview(PreviewId(uuid::Uuid::from_u128(i as u128 + 1)))
}

async fn interrupted_and_concurrent_sweeps_purge_each_item_once(backend: Backend) {
    let now = Utc
        .with_ymd_and_hms(2027, 1, 10, 12, 0, 0)
        .single()
        .expect("time");
    let clock = Arc::new(ManualClock::new(now));
    let t = TestStore::new(backend, clock.clone()).await;
    let policy = Arc::new(RetentionPolicy::defaults());
    let retention = Retention::new(policy.clone());
    // Every third preview is still live (created 5 minutes ago); the others are due.
    let changes: Vec<DocChange> = (0..ITEMS)
        .map(|i| {
            let created = if i % 3 == 0 {
                now - Duration::minutes(5)
            } else {
                now - Duration::minutes(20)
            };
            let facts = ItemFacts::on_own_clock(preview(i), Category::Preview, created, 0);
            DocChange::Put(retention.item_doc(
                &item_key(&preview(i), Category::Preview),
                &facts,
                None,
            ))
        })
        .collect();
    t.views.commit(VIEW, 0, 0, &changes).await.expect("seed");

    let sweeper = || {
        Sweeper::new(
            t.store.clone(),
            t.views.clone(),
            clock.clone(),
            policy.clone(),
        )
    };
    // Cut off mid-way: dropped as soon as the log shows its first purges, long before the
    // last (the watch is polled first, and it wakes on every commit).
    let due = (0..ITEMS).filter(|i| i % 3 != 0).count();
    const CUT_AT: u64 = 20;
    {
        let first = sweeper();
        let sweep = first.sweep();
        tokio::pin!(sweep);
        let watch = async {
            loop {
                let head = t.store.head().await.expect("head").position;
                if head >= CUT_AT {
                    return;
                }
                t.store
                    .wait_for(head, std::time::Duration::from_secs(5))
                    .await;
            }
        };
        tokio::select! {
            biased;
            () = watch => {}
            r = &mut sweep => panic!("the first sweep finished before it was cut: {r:?}"),
        }
    }
    let done_before = t.store.head().await.expect("head").position;
    assert!(
        (CUT_AT..due as u64).contains(&done_before),
        "it was cut off mid-way: {done_before} of {due}"
    );

    let (a, b) = (sweeper(), sweeper());
    let (ra, rb) = tokio::join!(a.sweep(), b.sweep());
    let (ra, rb) = (ra.expect("sweep"), rb.expect("sweep"));
    // Appends in flight when the first sweep was dropped may still have landed after
    // `done_before` was read: count what the log holds, one erasure event per purge.
    let total = t.store.head().await.expect("head").position as usize;
    assert_eq!(
        total, due,
        "every due item purged once, across the three sweeps"
    );
    assert!(ra.purged.len() + rb.purged.len() <= due - done_before as usize);
    for i in 0..ITEMS {
        let erasures = t
            .store
            .read_stream_raw(&retention_stream(&preview(i)), 0, 10)
            .await
            .expect("read");
        assert_eq!(erasures.len(), usize::from(i % 3 != 0), "preview {i}");
    }
    // Nothing left in the due-date index; the live ones wait for their time.
    let left = t
        .views
        .query(
            VIEW,
            &ViewQuery {
                due_before: Some(now + Duration::seconds(1)),
                limit: 10,
                ..Default::default()
            },
        )
        .await
        .expect("query");
    assert!(left.is_empty());
    clock.advance(Duration::minutes(11));
    let later = sweeper().sweep().await.expect("sweep");
    assert_eq!(later.purged.len(), ITEMS / 3);
}

/// An append of `events` to the account's stream.
fn on_account(
    account: lightwidget_domain::AccountId,
    events: Vec<lightwidget_domain::DomainEvent>,
    expected: lightwidget_store::ExpectedVersion,
) -> lightwidget_store::AppendRequest {
    lightwidget_store::AppendRequest {
        writes: vec![lightwidget_store::StreamWrite::of(
            account.stream(),
            expected,
            &events,
            &lightwidget_store::Metadata::system(),
        )],
        shred: vec![],
    }
}

/// The retention view with one preview of `account`, due an hour before `now`, as seen up
/// to `head`.
async fn seed_due_preview(
    t: &TestStore,
    policy: &Arc<RetentionPolicy>,
    account: lightwidget_domain::AccountId,
    now: chrono::DateTime<Utc>,
    head: u64,
) {
    let retention = Retention::new(policy.clone());
    let facts = ItemFacts {
        account_id: Some(account),
        ..ItemFacts::on_own_clock(preview(1), Category::Preview, now - Duration::hours(1), 0)
    };
    let doc = retention.item_doc(&item_key(&preview(1), Category::Preview), &facts, None);
    t.views
        .commit(VIEW, 0, head, &[DocChange::Put(doc)])
        .await
        .expect("seed");
}

/// A hold the retention view has not seen (its checkpoint was moved past it) still stops the
/// purge: every unit fences on the account's stream, where holds live, and reads them there.
async fn a_hold_the_view_missed_still_stops_the_purge(backend: Backend) {
    use lightwidget_domain::event::{AccountRegistered, LegalHoldPlaced, LegalHoldReleased};
    use lightwidget_domain::{AccountId, DomainEvent, HoldId, Personal, StaffId};
    use lightwidget_store::ExpectedVersion;
    let now = Utc
        .with_ymd_and_hms(2027, 1, 10, 12, 0, 0)
        .single()
        .expect("time");
    let clock = Arc::new(ManualClock::new(now));
    let t = TestStore::new(backend, clock.clone()).await;
    let policy = Arc::new(RetentionPolicy::defaults());
    let account = AccountId::new();
    let hold = HoldId::new();
    let by = StaffId::new();
    let append = |events: Vec<DomainEvent>, expected| {
        let store = t.store.clone();
        async move {
            store
                .append(on_account(account, events, expected))
                .await
                .expect("append")
        }
    };
    let head = append(
        vec![
            AccountRegistered {
                account_id: account,
                profile: Personal::erased(Subject::account(account), Category::Profile),
                registered_at: now,
            }
            .into(),
            LegalHoldPlaced {
                hold_id: hold,
                account_id: account,
                reason: "court order".into(),
                case_ref: "KR-9".into(),
                placed_by: by,
                placed_at: now,
            }
            .into(),
        ],
        ExpectedVersion::NoStream,
    )
    .await
    .last_position;
    // The view: one due preview of the account, and a checkpoint already past the hold.
    seed_due_preview(&t, &policy, account, now, head).await;

    let sweeper = Sweeper::new(t.store.clone(), t.views.clone(), clock.clone(), policy);
    let held = sweeper.sweep().await.expect("sweep");
    assert_eq!((held.purged.len(), held.refused), (0, 1), "{held:?}");
    assert!(t
        .store
        .read_stream_raw(&retention_stream(&preview(1)), 0, 10)
        .await
        .expect("read")
        .is_empty());

    append(
        vec![LegalHoldReleased {
            hold_id: hold,
            account_id: account,
            released_by: by,
            released_at: now,
        }
        .into()],
        ExpectedVersion::Exact(2),
    )
    .await;
    let released = sweeper.sweep().await.expect("sweep");
    assert_eq!(released.purged.len(), 1, "{released:?}");
}

/// A hold placed between the sweeper's reads and its append (another writer, at that
/// moment): the append conflicts on the account's stream, the unit is decided again, sees
/// the hold, and purges nothing.
async fn a_hold_placed_between_load_and_append_stops_the_purge(backend: Backend) {
    use lightwidget_domain::event::{AccountRegistered, LegalHoldPlaced};
    use lightwidget_domain::{AccountId, DomainEvent, HoldId, Personal, StaffId};
    use lightwidget_store::{EventStore, ExpectedVersion};
    use lightwidget_testkit::BeforeFirstAppend;
    let now = Utc
        .with_ymd_and_hms(2027, 1, 10, 12, 0, 0)
        .single()
        .expect("time");
    let clock = Arc::new(ManualClock::new(now));
    let t = TestStore::new(backend, clock.clone()).await;
    let policy = Arc::new(RetentionPolicy::defaults());
    let account = AccountId::new();
    let registered: DomainEvent = AccountRegistered {
        account_id: account,
        profile: Personal::erased(Subject::account(account), Category::Profile),
        registered_at: now,
    }
    .into();
    let head = t
        .store
        .append(on_account(
            account,
            vec![registered],
            ExpectedVersion::NoStream,
        ))
        .await
        .expect("append")
        .last_position;
    // The view: one due preview of the account, seen up to the registration.
    seed_due_preview(&t, &policy, account, now, head).await;

    let hold: DomainEvent = LegalHoldPlaced {
        hold_id: HoldId::new(),
        account_id: account,
        reason: "court order".into(),
        case_ref: "KR-10".into(),
        placed_by: StaffId::new(),
        placed_at: now,
    }
    .into();
    let hook: lightwidget_testkit::AppendHook = Box::new(move |store| {
        Box::pin(async move {
            store
                .append(on_account(account, vec![hold], ExpectedVersion::Exact(1)))
                .await
                .expect("the hold");
        })
    });
    let racing: Arc<dyn EventStore> = Arc::new(BeforeFirstAppend::new(t.store.clone(), hook));
    let sweeper = Sweeper::new(racing, t.views.clone(), clock.clone(), policy);
    let report = sweeper.sweep().await.expect("sweep");
    assert_eq!((report.purged.len(), report.refused), (0, 1), "{report:?}");
    let account_events = t
        .store
        .read_stream_raw(&account.stream(), 0, 10)
        .await
        .expect("read");
    assert_eq!(
        account_events
            .iter()
            .map(|e| e.event_type.as_str())
            .collect::<Vec<_>>(),
        vec!["AccountRegistered", "LegalHoldPlaced"],
        "the hold landed between the sweeper's read and its append"
    );
    assert!(t
        .store
        .read_stream_raw(&retention_stream(&preview(1)), 0, 10)
        .await
        .expect("read")
        .is_empty());
}

lightwidget_testkit::both!(
    a_hold_the_view_missed_still_stops_the_purge,
    a_hold_placed_between_load_and_append_stops_the_purge,
    interrupted_and_concurrent_sweeps_purge_each_item_once
);

//! Idempotency keys, payments with gapless invoices from two processes, and the batching
//! path for views — on both real backends.

use chrono::{TimeZone, Utc};
use lightwidget_commands::payment::{pay_order, Payment};
use lightwidget_commands::{execute, execute_once, CommandError, HitRecorder, Rejection};
use lightwidget_domain::account::OwnerStatus;
use lightwidget_domain::event::*;
use lightwidget_domain::order::{Order, OrderCommand};
use lightwidget_domain::widget::{Widget, WidgetCommand};
use lightwidget_domain::{AccountId, Category, DomainEvent, OrderId, Personal, Subject, WidgetId};
use lightwidget_projections::models::statistics::summarize;
use lightwidget_projections::models::Statistics;
use lightwidget_projections::{evaluate_as_of, Runner};
use lightwidget_store::{Clock, ManualClock, Metadata};
use lightwidget_testkit::{Backend, TestStore};
use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

fn clock() -> Arc<ManualClock> {
    Arc::new(ManualClock::new(
        Utc.with_ymd_and_hms(2026, 11, 29, 12, 0, 0)
            .single()
            .expect("valid"),
    ))
}

fn create(w: WidgetId, a: AccountId) -> WidgetCommand {
    WidgetCommand::Create {
        widget_id: w,
        account_id: a,
        settings: Personal::new(
            Subject::widget(w),
            Category::WidgetContent,
            WidgetSettings {
                title: "t".into(),
                layout: Layout::Grid,
                columns: 3,
            },
        ),
        owner: OwnerStatus::Active,
    }
}

fn registry() -> lightwidget_commands::processors::Registry {
    lightwidget_commands::processors::Registry::checked_in().expect("the registry")
}

async fn idempotency_keys(backend: Backend) {
    let clock = clock();
    let t = TestStore::new(backend, clock.clone()).await;
    let meta = Metadata::system();
    let w = WidgetId::new();
    let a = AccountId::new();
    let first = execute_once::<Widget>(
        &*t.store,
        &*clock,
        &w.stream(),
        create(w, a),
        &meta,
        "key-1",
        "POST /v1/widgets {..}",
    )
    .await
    .expect("first");
    assert!(!first.replayed);
    let head = t.store.head().await.expect("head").position;
    // The same key and request: the first result, nothing appended — even though deciding
    // again would be refused (the widget exists).
    let again = execute_once::<Widget>(
        &*t.store,
        &*clock,
        &w.stream(),
        create(w, a),
        &meta,
        "key-1",
        "POST /v1/widgets {..}",
    )
    .await
    .expect("replay");
    assert!(again.replayed);
    assert_eq!(
        (again.version, again.position),
        (first.version, first.position)
    );
    assert_eq!(t.store.head().await.expect("head").position, head);
    // The same key with another request is refused.
    let w2 = WidgetId::new();
    let err = execute_once::<Widget>(
        &*t.store,
        &*clock,
        &w2.stream(),
        create(w2, a),
        &meta,
        "key-1",
        "POST /v1/widgets {other}",
    )
    .await
    .expect_err("reused");
    assert!(matches!(err, CommandError::KeyReused), "{err:?}");
    // Eight concurrent sends of one keyed request append once.
    let w3 = WidgetId::new();
    let mut tasks = Vec::new();
    for _ in 0..8 {
        let (store, clock) = (t.store.clone(), clock.clone());
        tasks.push(tokio::spawn(async move {
            execute_once::<Widget>(
                &*store,
                &*clock,
                &w3.stream(),
                create(w3, a),
                &Metadata::system(),
                "key-3",
                "same",
            )
            .await
        }));
    }
    let mut fresh = 0;
    for task in tasks {
        fresh += u32::from(!task.await.expect("task").expect("ok").replayed);
    }
    assert_eq!(fresh, 1);
    assert_eq!(
        t.store
            .read_stream(&w3.stream(), 0, 10)
            .await
            .expect("read")
            .len(),
        1
    );
}

async fn place(t: &TestStore, clock: &dyn Clock, a: AccountId) -> (OrderId, WidgetId) {
    let (w, o) = (WidgetId::new(), OrderId::new());
    execute::<Widget>(
        &*t.store,
        clock,
        &w.stream(),
        create(w, a),
        &Metadata::system(),
    )
    .await
    .expect("widget");
    let billing = Personal::new(
        Subject::order(o),
        Category::Billing,
        BillingDetails {
            name: "Jan".into(),
            address: "ul. Długa 1".into(),
            email: "jan@example.com".into(),
            vat_id: None,
            country: "PL".into(),
        },
    );
    let cmd = OrderCommand::Place {
        order_id: o,
        widget_id: w,
        account_id: a,
        plan: Plan::Pro,
        current_plan: Plan::Free,
        amount_minor: 4900,
        currency: "PLN".into(),
        billing,
        owner: OwnerStatus::Active,
    };
    execute::<Order>(&*t.store, clock, &o.stream(), cmd, &Metadata::system())
        .await
        .expect("order");
    (o, w)
}

/// 16 payments for different orders at once, from two processes: numbers 1..=16 of the
/// year, no gap, no duplicate; every widget upgraded; a repeated transaction answers with the
/// same invoice and appends nothing; a transaction id reused for another order is refused.
async fn payments_issue_gapless_invoices(backend: Backend) {
    let clock = clock();
    let t = TestStore::new(backend, clock.clone()).await;
    let other_process = t.open_another(clock.clone()).await;
    let a = AccountId::new();
    let mut orders = Vec::new();
    for _ in 0..16 {
        orders.push(place(&t, &*clock, a).await);
    }
    let mut tasks = Vec::new();
    for (i, (o, _)) in orders.iter().copied().enumerate() {
        let store = if i % 2 == 0 {
            t.store.clone()
        } else {
            other_process.clone()
        };
        let clock = clock.clone();
        tasks.push(tokio::spawn(async move {
            pay_order(
                &*store,
                &*clock,
                &registry(),
                Payment {
                    order_id: o,
                    transaction_id: &format!("TX-{i}"),
                    amount_minor: 4900,
                    currency: "PLN",
                },
                &Metadata::system(),
            )
            .await
        }));
    }
    let mut numbers = BTreeSet::new();
    for task in tasks {
        numbers.insert(task.await.expect("task").expect("paid").invoice_number);
    }
    let expected: BTreeSet<String> = (1..=16).map(|n| format!("FV/2026/{n:06}")).collect();
    assert_eq!(numbers, expected);
    for (_, w) in &orders {
        let events = t.store.read_stream(&w.stream(), 0, 10).await.expect("read");
        assert!(
            events.iter().any(|e| e.event_type == "WidgetUpgraded"),
            "widget {w} not upgraded"
        );
    }
    let head = t.store.head().await.expect("head").position;
    let again = pay_order(
        &*other_process,
        &*clock,
        &registry(),
        Payment {
            order_id: orders[3].0,
            transaction_id: "TX-3",
            amount_minor: 4900,
            currency: "PLN",
        },
        &Metadata::system(),
    )
    .await
    .expect("repeat");
    assert!(again.replayed);
    assert!(numbers.contains(&again.invoice_number));
    assert_eq!(t.store.head().await.expect("head").position, head);
    let err = pay_order(
        &*t.store,
        &*clock,
        &registry(),
        Payment {
            order_id: orders[4].0,
            transaction_id: "TX-3",
            amount_minor: 4900,
            currency: "PLN",
        },
        &Metadata::system(),
    )
    .await
    .expect_err("reused");
    assert!(
        matches!(err, CommandError::Rejected(Rejection::TransactionReused)),
        "{err:?}"
    );
    let err = pay_order(
        &*t.store,
        &*clock,
        &registry(),
        Payment {
            order_id: OrderId::new(),
            transaction_id: "TX-new",
            amount_minor: 4900,
            currency: "PLN",
        },
        &Metadata::system(),
    )
    .await
    .expect_err("no such order");
    assert!(
        matches!(err, CommandError::Rejected(Rejection::Order(_))),
        "{err:?}"
    );
    assert!(t.store.verify().await.expect("verify").ok);
}

/// 64 producers record views and clicks through the batching path while the statistics
/// runner is killed and restarted; the counts come out exact.
async fn hits_are_counted_exactly(backend: Backend) {
    let clock = clock();
    let t = TestStore::new(backend, clock.clone()).await;
    let recorder = HitRecorder::spawn(t.store.clone(), 500);
    let widgets: Vec<WidgetId> = (0..4).map(|_| WidgetId::new()).collect();
    let now = clock.now();
    let mut producers = Vec::new();
    for p in 0..64usize {
        let recorder = recorder.clone();
        let w = widgets[p % widgets.len()];
        producers.push(tokio::spawn(async move {
            for i in 0..25usize {
                let access = Personal::new(
                    Subject::access_log(w, now),
                    Category::AccessLog,
                    AccessLog {
                        ip: format!("198.51.100.{p}"),
                        user_agent: None,
                        browser: None,
                        os: None,
                        device_id: None,
                        referrer: None,
                    },
                );
                let e: DomainEvent = if i % 5 == 0 {
                    WidgetClicked {
                        widget_id: w,
                        access,
                        clicked_at: now,
                    }
                    .into()
                } else {
                    WidgetViewed {
                        widget_id: w,
                        access,
                        viewed_at: now,
                    }
                    .into()
                };
                recorder.record(e).await.expect("recorded");
            }
        }));
    }
    // Meanwhile the runner keeps being killed mid-way.
    for i in 0..10u64 {
        let r =
            Runner::new(t.store.clone(), t.views.clone(), Arc::new(Statistics)).with_batch_size(37);
        let task = tokio::spawn(async move { r.catch_up().await });
        tokio::time::sleep(Duration::from_millis(2 + i % 4)).await;
        task.abort();
        let _ = task.await;
    }
    for p in producers {
        p.await.expect("producer");
    }
    let head = Runner::new(t.store.clone(), t.views.clone(), Arc::new(Statistics))
        .catch_up()
        .await
        .expect("catch up");
    // Every hit is in the log once, in batches of at most HITS_PER_EVENT.
    let log = t.store.read_all_raw(0, 10_000).await.expect("read");
    assert_eq!(log.last().map(|e| e.position), Some(head));
    let mut stored = 0;
    let mut appends = std::collections::HashSet::new();
    for e in &log {
        // Hits have no caller: every batch is recorded as anonymous.
        assert_eq!(e.actor, lightwidget_commands::recorder::HITS_ACTOR);
        appends.insert(e.correlation_id);
        match e.decode_sealed().expect("decode") {
            DomainEvent::HitsRecorded(h) => {
                assert!(!h.is_empty() && h.len() <= lightwidget_commands::recorder::HITS_PER_EVENT);
                stored += h.len();
            }
            other => panic!("only hits were recorded, not {}", other.event_type()),
        }
    }
    assert_eq!(stored, 64 * 25);
    // One envelope per append (events of one append share it), not one for the whole run.
    assert!(appends.len() > 1, "{} correlation ids", appends.len());
    for w in &widgets {
        let s = summarize(&t.docs("statistics", Some(&w.to_string())).await)
            .expect("statistics documents read");
        assert_eq!((s.views, s.clicks), (320, 80), "{w}");
    }
    let all = t.docs("statistics", None).await;
    let as_of = evaluate_as_of(&*t.store, &Statistics, head)
        .await
        .expect("as of");
    assert_eq!(all.len(), as_of.len());
    for d in all {
        assert_eq!(as_of.get(&d.key), Some(&d));
    }
}

fn a_view(w: WidgetId, now: chrono::DateTime<Utc>) -> DomainEvent {
    WidgetViewed {
        widget_id: w,
        access: Personal::new(
            Subject::access_log(w, now),
            Category::AccessLog,
            AccessLog {
                ip: "198.51.100.7".into(),
                user_agent: None,
                browser: None,
                os: None,
                device_id: None,
                referrer: None,
            },
        ),
        viewed_at: now,
    }
    .into()
}

/// Views stored in the log so far.
async fn views_stored(t: &TestStore) -> usize {
    let mut n = 0;
    for e in t.store.read_all_raw(0, 10_000).await.expect("read") {
        if let DomainEvent::HitsRecorded(h) = e.decode_sealed().expect("decode") {
            n += h.views.len();
        }
    }
    n
}

/// What a crash can lose is bounded by time (issue 23): while the oldest queued view is not
/// stored after `ADMIT_WITHIN`, a page waits to be admitted, and goes on once the store
/// catches up; a store that stores nothing for `ADMIT_WAIT` gets the page refused as
/// unavailable, never an unbounded backlog.
async fn a_stalled_store_holds_pages_back(backend: Backend) {
    use lightwidget_commands::recorder::{ADMIT_WAIT, ADMIT_WITHIN};
    use lightwidget_store::StoreError;
    let clock = clock();
    let t = TestStore::new(backend, clock.clone()).await;
    let (entered_tx, entered) = tokio::sync::oneshot::channel::<()>();
    let (release, released) = tokio::sync::oneshot::channel::<()>();
    let hook: lightwidget_testkit::AppendHook = Box::new(move |_| {
        Box::pin(async move {
            let _ = entered_tx.send(());
            let _ = released.await;
        })
    });
    let held = Arc::new(lightwidget_testkit::BeforeFirstAppend::new(
        t.store.clone(),
        hook,
    ));
    let recorder = HitRecorder::spawn(held, 1000);
    let w = WidgetId::new();
    let now = clock.now();
    // Admitted at once: nothing is waiting to be stored.
    recorder.queue(a_view(w, now), None).await.expect("queued");
    // Its append is held; once it is older than ADMIT_WITHIN, a page waits.
    entered.await.expect("the first append began");
    tokio::time::sleep(ADMIT_WITHIN).await;
    assert!(recorder.oldest_unstored() >= ADMIT_WITHIN);
    let waiting = {
        let recorder = recorder.clone();
        tokio::spawn(async move { recorder.queue(a_view(w, now), None).await })
    };
    let mut waiting = std::pin::pin!(waiting);
    assert!(
        tokio::time::timeout(ADMIT_WITHIN * 4, &mut waiting)
            .await
            .is_err(),
        "a page was admitted while its predecessor had waited past the bound"
    );
    // The store catches up: the page goes on, and both views are stored.
    release.send(()).expect("release");
    waiting
        .await
        .expect("task")
        .expect("queued after the store caught up");
    recorder.drain().await;
    assert_eq!(views_stored(&t).await, 2);
    assert_eq!(recorder.oldest_unstored(), Duration::ZERO);

    // A store that stores nothing: the page is refused after ADMIT_WAIT, not queued.
    let (entered_tx, entered) = tokio::sync::oneshot::channel::<()>();
    let (_never, released) = tokio::sync::oneshot::channel::<()>();
    let hook: lightwidget_testkit::AppendHook = Box::new(move |_| {
        Box::pin(async move {
            let _ = entered_tx.send(());
            let _ = released.await;
            std::future::pending::<()>().await;
        })
    });
    let stuck = Arc::new(lightwidget_testkit::BeforeFirstAppend::new(
        t.store.clone(),
        hook,
    ));
    let recorder = HitRecorder::spawn(stuck, 1000);
    recorder.queue(a_view(w, now), None).await.expect("queued");
    entered.await.expect("the first append began");
    tokio::time::sleep(ADMIT_WITHIN).await;
    let asked = std::time::Instant::now();
    let refused = recorder
        .queue(a_view(w, now), None)
        .await
        .expect_err("refused while nothing is stored");
    assert!(matches!(refused, StoreError::Unavailable(_)), "{refused:?}");
    assert!(asked.elapsed() >= ADMIT_WAIT, "{:?}", asked.elapsed());
    assert_eq!(views_stored(&t).await, 2);
}

lightwidget_testkit::both!(
    idempotency_keys,
    payments_issue_gapless_invoices,
    hits_are_counted_exactly,
    a_stalled_store_holds_pages_back
);

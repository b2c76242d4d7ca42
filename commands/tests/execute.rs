//! Command handling against both real backends.

use chrono::{TimeZone, Utc};
use lightwidget_commands::unit::transact_with_attempts;
use lightwidget_commands::{
    execute, execute_with_attempts, load, transact, CommandError, Rejection, Unit, UseCase,
};
use lightwidget_domain::account::OwnerStatus;
use lightwidget_domain::event::{BillingDetails, Layout, WidgetSettings};
use lightwidget_domain::invoice::{InvoiceBook, IssueInvoice};
use lightwidget_domain::widget::{Widget, WidgetCommand, WidgetError};
use lightwidget_domain::{
    invoice_stream, AccountId, Category, DomainEvent, OrderId, Personal, Subject, WidgetId,
};
use lightwidget_store::{EventStore, ManualClock, Metadata};
use lightwidget_testkit::{Backend, TestStore};
use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};

fn clock() -> Arc<ManualClock> {
    Arc::new(ManualClock::new(
        Utc.with_ymd_and_hms(2026, 11, 29, 12, 0, 0)
            .single()
            .expect("valid"),
    ))
}

fn create(widget_id: WidgetId) -> WidgetCommand {
    WidgetCommand::Create {
        widget_id,
        account_id: AccountId::new(),
        settings: Personal::new(
            Subject::widget(widget_id),
            Category::WidgetContent,
            WidgetSettings {
                title: "My widget".into(),
                layout: Layout::Grid,
                columns: 3,
            },
        ),
        owner: OwnerStatus::Active,
    }
}

async fn decides_appends_and_carries_metadata(backend: Backend) {
    let clock = clock();
    let t = TestStore::new(backend, clock.clone()).await;
    let widget_id = WidgetId::new();
    let meta = Metadata {
        actor: "account:test".into(),
        correlation_id: uuid::Uuid::new_v4(),
        causation_id: Some(uuid::Uuid::new_v4()),
    };
    let out = execute::<Widget>(
        &*t.store,
        &*clock,
        &widget_id.stream(),
        create(widget_id),
        &meta,
    )
    .await
    .expect("create");
    assert_eq!((out.version, out.position, out.attempts), (1, 1, 1));
    let stored = t
        .store
        .read_stream(&widget_id.stream(), 0, 10)
        .await
        .expect("read");
    assert_eq!(stored[0].correlation_id, meta.correlation_id);
    assert_eq!(stored[0].causation_id, meta.causation_id);
    assert_eq!(stored[0].actor, "account:test");

    // The aggregate's rules hold through the handler: a second create is refused, nothing stored.
    let err = execute::<Widget>(
        &*t.store,
        &*clock,
        &widget_id.stream(),
        create(widget_id),
        &meta,
    )
    .await
    .expect_err("exists");
    assert!(
        matches!(
            err,
            CommandError::Rejected(Rejection::Widget(WidgetError::AlreadyExists))
        ),
        "{err:?}"
    );
    let loaded = load::<Widget>(&*t.store, &widget_id.stream())
        .await
        .expect("load");
    assert_eq!((loaded.version, loaded.position), (1, 1));
}

fn issue(n: u128) -> IssueInvoice {
    let order_id = OrderId(uuid::Uuid::from_u128(n));
    IssueInvoice {
        order_id,
        widget_id: WidgetId::new(),
        account_id: AccountId::new(),
        amount_minor: 4900,
        currency: "PLN".into(),
        billing: Personal::new(
            Subject::order(order_id),
            Category::Billing,
            BillingDetails {
                name: "N".into(),
                address: "A".into(),
                email: "e@x.pl".into(),
                vat_id: None,
                country: "PL".into(),
            },
        ),
    }
}

/// 16 concurrent invoice issues on one year's book: every one succeeds after retries, and the
/// numbers are 1..=16 without gap or duplicate. A repeat for an order changes nothing.
async fn concurrent_commands_retry_until_they_fit(backend: Backend) {
    let clock = clock();
    let t = TestStore::new(backend, clock.clone()).await;
    let stream = invoice_stream(2026);
    let mut tasks = Vec::new();
    for n in 1..=16u128 {
        let (store, clock, stream) = (t.store.clone(), clock.clone(), stream.clone());
        tasks.push(tokio::spawn(async move {
            execute::<InvoiceBook>(&*store, &*clock, &stream, issue(n), &Metadata::system()).await
        }));
    }
    let mut retried = 0;
    for task in tasks {
        let out = task.await.expect("task").expect("issued");
        retried += u32::from(out.attempts > 1);
    }
    let numbers: BTreeSet<String> = t
        .store
        .read_stream(&stream, 0, 100)
        .await
        .expect("read")
        .iter()
        .map(|e| match e.to_domain().expect("decode") {
            DomainEvent::InvoiceIssued(i) => i.invoice_number,
            other => panic!("unexpected {other:?}"),
        })
        .collect();
    let expected: BTreeSet<String> = (1..=16).map(|n| format!("FV/2026/{n:06}")).collect();
    assert_eq!(numbers, expected);
    assert!(
        retried > 0,
        "16 concurrent issues must have conflicted at least once"
    );

    let again = execute::<InvoiceBook>(&*t.store, &*clock, &stream, issue(3), &Metadata::system())
        .await
        .expect("repeat");
    assert!(again.events.is_empty());
    assert_eq!(again.version, 16);
}

/// With one attempt allowed, a conflict is reported, not retried.
async fn a_conflict_is_reported_when_attempts_run_out(backend: Backend) {
    let clock = clock();
    let t = TestStore::new(backend, clock.clone()).await;
    let stream = invoice_stream(2026);
    let mut tasks = Vec::new();
    for n in 1..=8u128 {
        let (store, clock, stream) = (t.store.clone(), clock.clone(), stream.clone());
        tasks.push(tokio::spawn(async move {
            execute_with_attempts::<InvoiceBook>(
                &*store,
                &*clock,
                &stream,
                issue(n),
                &Metadata::system(),
                1,
            )
            .await
        }));
    }
    let mut conflicts = 0;
    let mut ok = 0;
    for task in tasks {
        match task.await.expect("task") {
            Ok(_) => ok += 1,
            Err(CommandError::Conflict { attempts: 1, .. }) => conflicts += 1,
            Err(e) => panic!("unexpected {e:?}"),
        }
    }
    assert!(ok >= 1);
    assert_eq!(ok + conflicts, 8);
    let stored = t.store.read_stream(&stream, 0, 100).await.expect("read");
    assert_eq!(stored.len(), ok, "every success, and only those, is stored");
}

/// A unit of work that assumes a stream new and fences another: appended without reading
/// when both hold; a wrong assumption is decided again on the stream as stored; a fence that
/// stays stale is retried and then reported, naming the fenced stream, with nothing appended.
async fn an_assumption_and_a_fence_are_checked_by_the_append(backend: Backend) {
    let clock = clock();
    let t = TestStore::new(backend, clock.clone()).await;
    let meta = Metadata::system();
    // Another stream the decision reads (an owner's account), at version 1.
    let fenced = format!("account-{}", uuid::Uuid::new_v4());
    let other = WidgetId::new();
    execute::<Widget>(&*t.store, &*clock, &fenced, create(other), &meta)
        .await
        .expect("the fenced stream");

    // Creates `widget` on a stream assumed new, fencing `fenced` at `version`.
    let create_assumed = |widget: WidgetId, version: u64| {
        let (store, clock, meta) = (t.store.clone(), clock.clone(), meta.clone());
        let work = CreateAssumed {
            widget,
            fence: fenced.clone(),
            version,
        };
        async move { transact_with_attempts(&*store, &*clock, &meta, None, 3, &work).await }
    };
    let widget_id = WidgetId::new();
    let out = create_assumed(widget_id, 1)
        .await
        .expect("assumed right, fence current");
    assert_eq!((out.version, out.attempts), (1, 1));

    // The stream exists: the assumption is wrong, the command decided again on what is stored.
    let again = create_assumed(widget_id, 1).await;
    assert!(
        matches!(
            again,
            Err(CommandError::Rejected(Rejection::Widget(
                WidgetError::AlreadyExists
            )))
        ),
        "{again:?}"
    );

    // The fenced stream is at 1, not 0, at every attempt: reported, naming it; nothing appended.
    let fresh = WidgetId::new();
    match create_assumed(fresh, 0).await {
        Err(CommandError::Conflict { stream, attempts }) => {
            assert_eq!((stream.as_str(), attempts), (fenced.as_str(), 3));
        }
        other => panic!("expected the fence's conflict, got {other:?}"),
    }
    let stored = t
        .store
        .read_stream(&fresh.stream(), 0, 10)
        .await
        .expect("read");
    assert!(stored.is_empty(), "a refused command appends nothing");
}

struct CreateAssumed {
    widget: WidgetId,
    fence: String,
    version: u64,
}

#[async_trait::async_trait]
impl UseCase for CreateAssumed {
    type Output = Vec<DomainEvent>;
    async fn run(&self, u: &mut Unit<'_>) -> Result<Vec<DomainEvent>, CommandError> {
        u.fence(&self.fence, self.version);
        let stream = self.widget.stream();
        let loaded = u.assume_new::<Widget>(&stream).await?;
        u.decide(&stream, &loaded, create(self.widget))
    }
}

/// Decides on the invoice book (read only) and writes a widget; on its first attempt another
/// writer issues an invoice between the read and the append.
struct ReadBookWriteWidget {
    book: String,
    widget_id: WidgetId,
    other_writer: (Arc<dyn EventStore>, Arc<ManualClock>),
    seen: Mutex<Vec<u64>>,
}

#[async_trait::async_trait]
impl UseCase for ReadBookWriteWidget {
    type Output = Vec<DomainEvent>;
    async fn run(&self, u: &mut Unit<'_>) -> Result<Vec<DomainEvent>, CommandError> {
        let loaded = u.load::<InvoiceBook>(&self.book).await?;
        self.seen.lock().expect("seen").push(loaded.version);
        if u.attempt() == 1 {
            let (store, clock) = &self.other_writer;
            execute::<InvoiceBook>(
                &**store,
                &**clock,
                &self.book,
                issue(1),
                &Metadata::system(),
            )
            .await?;
        }
        let stream = self.widget_id.stream();
        let widget = u.load::<Widget>(&stream).await?;
        u.decide(&stream, &widget, create(self.widget_id))
    }
}

/// A stream the unit read, changed by another writer between the read and the append: the
/// append is refused, and the use case runs again on the fresh read.
async fn a_write_between_read_and_append_is_decided_again(backend: Backend) {
    let clock = clock();
    let t = TestStore::new(backend, clock.clone()).await;
    let meta = Metadata::system();
    let book = invoice_stream(2026);
    let widget_id = WidgetId::new();
    let work = ReadBookWriteWidget {
        book: book.clone(),
        widget_id,
        other_writer: (t.store.clone(), clock.clone()),
        seen: Mutex::new(Vec::new()),
    };
    let done = transact(&*t.store, &*clock, &meta, None, &work)
        .await
        .expect("decided again");
    let seen = work.seen.lock().expect("seen").clone();
    assert_eq!(
        seen,
        vec![0, 1],
        "the second attempt read the book as changed"
    );
    assert_eq!((done.attempts, done.version), (2, 1));
    let stored = t
        .store
        .read_stream(&widget_id.stream(), 0, 10)
        .await
        .expect("read");
    assert_eq!(stored.len(), 1, "written once, by the second attempt");
}

/// A use case that hands a processor a category the registry does not list for it (R12).
struct HandOver {
    processor: &'static str,
    category: Category,
}

#[async_trait::async_trait]
impl UseCase for HandOver {
    type Output = lightwidget_domain::MessageId;

    async fn run(&self, u: &mut Unit<'_>) -> Result<Self::Output, CommandError> {
        let registry = lightwidget_commands::processors::Registry::checked_in().expect("registry");
        let order = OrderId::new();
        let content = lightwidget_domain::outbox::sealed(
            Subject::order(order),
            self.category,
            lightwidget_domain::event::Outbound::OrderConfirmation {
                order_id: order,
                to: "a@b.co".into(),
                name: "A".into(),
                amount_minor: 100,
                currency: "PLN".into(),
            },
        );
        lightwidget_commands::outbox::queue(u, &registry, self.processor, content).await
    }
}

async fn a_hand_over_the_registry_does_not_list_is_refused(backend: Backend) {
    let clock = clock();
    let t = TestStore::new(backend, clock.clone()).await;
    let meta = Metadata::system();
    let refused = transact(
        &*t.store,
        &*clock,
        &meta,
        None,
        &HandOver {
            processor: "ticketing",
            category: Category::Billing,
        },
    )
    .await
    .expect_err("not listed");
    assert!(
        matches!(refused, CommandError::NotListed(ref n) if n.processor == "ticketing"),
        "{refused:?}"
    );
    assert_eq!(
        t.store.head().await.expect("head").position,
        0,
        "nothing appended"
    );
    // Listed: queued on its own stream.
    let done = transact(
        &*t.store,
        &*clock,
        &meta,
        None,
        &HandOver {
            processor: "email",
            category: Category::Billing,
        },
    )
    .await
    .expect("listed");
    let id = done.value.expect("decided");
    let stored = t
        .store
        .read_stream(&id.stream(), 0, 10)
        .await
        .expect("read");
    assert_eq!(stored[0].event_type, "MessageQueued");
    assert_eq!(stored[0].data["processor"], "email");
    assert_eq!(
        stored[0].data["content"]["$personal"]["category"],
        "billing"
    );
}

lightwidget_testkit::both!(
    a_hand_over_the_registry_does_not_list_is_refused,
    decides_appends_and_carries_metadata,
    concurrent_commands_retry_until_they_fit,
    a_conflict_is_reported_when_attempts_run_out,
    an_assumption_and_a_fence_are_checked_by_the_append,
    a_write_between_read_and_append_is_decided_again
);

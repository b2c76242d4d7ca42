//! The read models from a given history to the expected documents, on both real backends,
//! including what each does with erasure and purge events (R23): after the keys are shredded
//! and the projections rebuilt, no personal value is left in any view document.

use chrono::{DateTime, Duration, TimeZone, Utc};
use lightwidget_domain::event::*;
use lightwidget_domain::{
    AccountId, Category, DomainEvent, OrderId, Personal, StaffId, Subject, WidgetId,
};
use lightwidget_projections::models::statistics::summarize;
use lightwidget_projections::models::{
    widgets::render_html, Accounts, Invoices, Statistics, Widgets,
};
use lightwidget_projections::{rebuild, Projection, Runner};
use lightwidget_store::{AppendRequest, ExpectedVersion, Metadata, NewEvent, SystemClock, ViewDoc};
use lightwidget_testkit::{Backend, TestStore};
use serde_json::{json, Value};
use std::sync::Arc;

fn t0() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 3, 1, 10, 0, 0)
        .single()
        .expect("valid")
}

async fn append(t: &TestStore, stream: &str, events: Vec<DomainEvent>) -> u64 {
    t.append_events(stream, &events).await
}

async fn erase(
    t: &TestStore,
    subject: Subject,
    category: Category,
    account: Option<AccountId>,
) -> u64 {
    let e: DomainEvent = PersonalDataErased {
        subject: subject.clone(),
        category,
        account_id: account,
        rule: format!("{category}:test"),
        due_at: t0(),
        erased_at: t0(),
    }
    .into();
    let mut req = AppendRequest::single(
        format!("retention-{subject}"),
        ExpectedVersion::Any,
        vec![NewEvent::from_domain(&e, &Metadata::system())],
    );
    req.shred = vec![lightwidget_store::KeyRef::new(subject, category)];
    t.store.append(req).await.expect("erase").last_position
}

async fn catch_up(t: &TestStore, p: impl Projection + 'static) {
    Runner::new(t.store.clone(), t.views.clone(), Arc::new(p))
        .with_batch_size(4)
        .catch_up()
        .await
        .expect("catch up");
}

async fn doc(t: &TestStore, view: &str, key: &str) -> Option<ViewDoc> {
    t.views
        .get_many(view, &[key.to_owned()])
        .await
        .expect("get")
        .pop()
}

async fn all_docs(t: &TestStore, view: &str) -> Vec<ViewDoc> {
    t.docs(view, None).await
}

fn contains(docs: &[ViewDoc], marker: &str) -> bool {
    docs.iter().any(|d| d.doc.to_string().contains(marker))
}

const MARK: &str = "MARKER-7f3a";

async fn accounts_and_widgets(backend: Backend) {
    let t = TestStore::new(backend, Arc::new(SystemClock)).await;
    let a = AccountId::new();
    let w = WidgetId::new();
    let profile = Personal::new(
        Subject::account(a),
        Category::Profile,
        InstagramProfile {
            instagram_user_id: "1784".into(),
            username: format!("alice-{MARK}"),
            profile_picture_url: Some(format!("https://cdn.example/{MARK}.jpg")),
            account_type: "PERSONAL".into(),
        },
    );
    let settings = |title: &str| {
        Personal::new(
            Subject::widget(w),
            Category::WidgetContent,
            WidgetSettings {
                title: title.into(),
                layout: Layout::Grid,
                columns: 3,
            },
        )
    };
    append(
        &t,
        &a.stream(),
        vec![
            AccountRegistered {
                account_id: a,
                profile,
                registered_at: t0(),
            }
            .into(),
            AccountSignedIn {
                account_id: a,
                access_token: Personal::new(
                    Subject::account(a),
                    Category::Profile,
                    format!("tok-{MARK}"),
                ),
                signed_in_at: t0(),
            }
            .into(),
        ],
    )
    .await;
    append(
        &t,
        &w.stream(),
        vec![
            WidgetCreated {
                widget_id: w,
                account_id: a,
                settings: settings("first"),
                created_at: t0(),
            }
            .into(),
            WidgetUpdated {
                widget_id: w,
                settings: settings(&format!("<script>{MARK}</script>")),
                updated_at: t0(),
            }
            .into(),
            WidgetUpgraded {
                widget_id: w,
                order_id: OrderId::new(),
                plan: Plan::Pro,
                upgraded_at: t0(),
            }
            .into(),
        ],
    )
    .await;
    catch_up(&t, Accounts).await;
    catch_up(&t, Widgets).await;

    let acc = doc(&t, "accounts", &a.to_string())
        .await
        .expect("account doc");
    assert_eq!(acc.doc["username"], json!(format!("alice-{MARK}")));
    assert_eq!(acc.doc["status"], "active");
    assert_eq!(acc.doc["widget_count"], json!(1));
    assert!(
        !acc.doc.to_string().contains("tok-"),
        "the access token stays out of the view"
    );
    let wd = doc(&t, "widgets", &w.to_string())
        .await
        .expect("widget doc");
    assert_eq!(wd.doc["plan"], "pro");
    assert_eq!(wd.doc["version"], 3);
    assert_eq!(wd.owner.as_deref(), Some(a.to_string().as_str()));
    let html = wd.doc["html"].as_str().expect("html");
    // The title is text; the page's one script is its own.
    assert!(
        html.contains("&lt;script&gt;") && html.matches("<script>").count() == 1,
        "{html}"
    );

    // Quarantine, block, then the end: profile and content erased, both purged.
    let until = t0() + Duration::days(90);
    append(
        &t,
        &a.stream(),
        vec![AccountDeletionRequested {
            account_id: a,
            requested_at: t0(),
            quarantine_until: until,
        }
        .into()],
    )
    .await;
    append(
        &t,
        &w.stream(),
        vec![WidgetDeletionRequested {
            widget_id: w,
            account_id: a,
            cause: DeletionCause::AccountDeletion,
            requested_at: t0(),
            quarantine_until: until,
        }
        .into()],
    )
    .await;
    append(
        &t,
        &a.stream(),
        vec![AccountBlocked {
            account_id: a,
            blocked_by: StaffId::new(),
            reason: Personal::new(Subject::account(a), Category::Security, "spam".into()),
            blocked_at: t0(),
            hold_until: t0() + Duration::days(365),
        }
        .into()],
    )
    .await;
    catch_up(&t, Accounts).await;
    catch_up(&t, Widgets).await;
    assert_eq!(
        doc(&t, "accounts", &a.to_string()).await.expect("doc").doc["status"],
        "blocked"
    );
    let wd = doc(&t, "widgets", &w.to_string()).await.expect("doc");
    assert_eq!(
        (wd.state.as_deref(), wd.due_at),
        (Some("quarantined"), Some(until))
    );

    erase(&t, Subject::account(a), Category::Profile, Some(a)).await;
    erase(&t, Subject::widget(w), Category::WidgetContent, Some(a)).await;
    append(
        &t,
        &w.stream(),
        vec![WidgetPurged {
            widget_id: w,
            purged_at: until,
        }
        .into()],
    )
    .await;
    append(
        &t,
        &a.stream(),
        vec![AccountPurged {
            account_id: a,
            purged_at: until,
        }
        .into()],
    )
    .await;
    catch_up(&t, Accounts).await;
    catch_up(&t, Widgets).await;
    let acc = doc(&t, "accounts", &a.to_string())
        .await
        .expect("tombstone");
    assert_eq!(
        (acc.doc["status"].clone(), acc.doc["username"].clone()),
        (json!("purged"), Value::Null)
    );
    let wd = doc(&t, "widgets", &w.to_string()).await.expect("tombstone");
    assert_eq!(
        (wd.doc["status"].clone(), wd.doc["html"].clone()),
        (json!("purged"), Value::Null)
    );
    assert!(!contains(&all_docs(&t, "accounts").await, MARK));
    assert!(!contains(&all_docs(&t, "widgets").await, MARK));
    // Rebuilt from the log after the shredding, the views hold no marker either: the
    // events now read erased.
    rebuild(t.store.clone(), t.views.clone(), Arc::new(Accounts))
        .await
        .expect("rebuild");
    rebuild(t.store.clone(), t.views.clone(), Arc::new(Widgets))
        .await
        .expect("rebuild");
    assert!(!contains(&all_docs(&t, "accounts").await, MARK));
    assert!(!contains(&all_docs(&t, "widgets").await, MARK));
    assert_eq!(
        doc(&t, "widgets", &w.to_string()).await.expect("doc").doc["status"],
        "purged"
    );
}

async fn invoices(backend: Backend) {
    let t = TestStore::new(backend, Arc::new(SystemClock)).await;
    let (o1, o2) = (OrderId::new(), OrderId::new());
    let a = AccountId::new();
    let issue = |o: OrderId, n: u32| -> DomainEvent {
        InvoiceIssued {
            invoice_number: format!("FV/2026/{n:06}"),
            year: 2026,
            sequence: n,
            order_id: o,
            widget_id: WidgetId::new(),
            account_id: a,
            amount_minor: 4900,
            currency: "PLN".into(),
            billing: Personal::new(
                Subject::order(o),
                Category::Billing,
                BillingDetails {
                    name: format!("Jan {MARK}"),
                    address: "ul. Długa 1".into(),
                    email: "jan@example.com".into(),
                    vat_id: Some("PL1234563218".into()),
                    country: "PL".into(),
                },
            ),
            issued_at: t0(),
            retain_until: lightwidget_domain::invoice::retain_until(2026),
        }
        .into()
    };
    append(&t, "invoices-2026", vec![issue(o1, 1), issue(o2, 2)]).await;
    catch_up(&t, Invoices).await;
    let inv = doc(&t, "invoices", "FV/2026/000001")
        .await
        .expect("invoice");
    assert_eq!(inv.doc["billing"]["name"], json!(format!("Jan {MARK}")));
    assert_eq!(inv.doc["retain_until"], "2031-12-31");
    assert_eq!(
        inv.due_at,
        Utc.with_ymd_and_hms(2032, 1, 1, 0, 0, 0).single()
    );
    assert_eq!(inv.owner.as_deref(), Some(a.to_string().as_str()));

    erase(&t, Subject::order(o1), Category::Billing, Some(a)).await;
    catch_up(&t, Invoices).await;
    let inv = doc(&t, "invoices", "FV/2026/000001")
        .await
        .expect("invoice");
    assert_eq!(inv.doc["billing"]["name"], Value::Null);
    assert_eq!(
        (
            inv.doc["amount_minor"].clone(),
            inv.doc["invoice_number"].clone()
        ),
        (json!(4900), json!("FV/2026/000001"))
    );
    // The other invoice keeps its billing data.
    let other = doc(&t, "invoices", "FV/2026/000002")
        .await
        .expect("invoice");
    assert_eq!(other.doc["billing"]["name"], json!(format!("Jan {MARK}")));
}

async fn of_w(t: &TestStore, w: WidgetId) -> Value {
    let summary = summarize(&t.docs("statistics", Some(&w.to_string())).await);
    serde_json::to_value(summary.expect("statistics documents read")).expect("json")
}

async fn statistics(backend: Backend) {
    let t = TestStore::new(backend, Arc::new(SystemClock)).await;
    let (w1, w2) = (WidgetId::new(), WidgetId::new());
    let access = |w: WidgetId, at| {
        Personal::new(
            Subject::access_log(w, at),
            Category::AccessLog,
            AccessLog {
                ip: "203.0.113.9".into(),
                user_agent: None,
                browser: None,
                os: None,
                device_id: None,
                referrer: None,
            },
        )
    };
    let mut events = Vec::new();
    for (w, n_views, n_clicks) in [(w1, 7, 3), (w2, 2, 1)] {
        for i in 0..n_views {
            let at = t0() + Duration::hours(10 * i);
            events.push((
                w,
                DomainEvent::from(WidgetViewed {
                    widget_id: w,
                    access: access(w, at),
                    viewed_at: at,
                }),
            ));
        }
        for i in 0..n_clicks {
            let at = t0() + Duration::hours(20 * i);
            events.push((
                w,
                DomainEvent::from(WidgetClicked {
                    widget_id: w,
                    access: access(w, at),
                    clicked_at: at,
                }),
            ));
        }
    }
    for (w, e) in events {
        append(&t, &format!("views-{w}"), vec![e]).await;
    }
    // The hit recorder's shape: views and clicks of one batch in one event, each counted.
    let at = t0() + Duration::hours(1);
    append(
        &t,
        "hits",
        vec![HitsRecorded {
            views: (0..3)
                .map(|_| WidgetViewed {
                    widget_id: w2,
                    access: access(w2, at),
                    viewed_at: at,
                })
                .collect(),
            clicks: vec![
                WidgetClicked {
                    widget_id: w2,
                    access: access(w2, at),
                    clicked_at: at,
                },
                WidgetClicked {
                    widget_id: w1,
                    access: access(w1, at + Duration::days(40)),
                    clicked_at: at + Duration::days(40),
                },
            ],
        }
        .into()],
    )
    .await;
    catch_up(&t, Statistics).await;
    assert_eq!(
        of_w(&t, w2).await,
        json!({"views": 5, "clicks": 2, "by_day": [
            {"date": "2026-03-01", "views": 5, "clicks": 2},
        ]})
    );
    let store = &t;
    let of = |w: WidgetId| async move {
        let summary = summarize(&store.docs("statistics", Some(&w.to_string())).await);
        serde_json::to_value(summary.expect("statistics documents read")).expect("json")
    };
    // Views at +0,10,20,30,40,50,60 h from 10:00 on 1 March; clicks at +0,20,40 h, and
    // one of the batch 40 days on (another month's document).
    assert_eq!(
        of(w1).await,
        json!({"views": 7, "clicks": 4, "by_day": [
            {"date": "2026-03-01", "views": 2, "clicks": 1},
            {"date": "2026-03-02", "views": 2, "clicks": 1},
            {"date": "2026-03-03", "views": 3, "clicks": 1},
            {"date": "2026-04-10", "views": 0, "clicks": 1},
        ]})
    );
    assert!(
        !contains(&all_docs(&t, "statistics").await, "203.0.113.9"),
        "statistics hold no IP (R2)"
    );

    append(
        &t,
        &w1.stream(),
        vec![WidgetPurged {
            widget_id: w1,
            purged_at: t0(),
        }
        .into()],
    )
    .await;
    catch_up(&t, Statistics).await;
    let left = all_docs(&t, "statistics").await;
    assert!(
        left.iter().all(|d| !d.key.starts_with(&w1.to_string())),
        "w1's statistics are gone with it"
    );
    assert_eq!(of(w2).await["views"], 5);
    assert_eq!(of(w1).await, json!({"views": 0, "clicks": 0, "by_day": []}));
}

/// Records what the runner hands it: for each event, its position, whether its envelope
/// carries the opened payload, and the registration's username as decoded.
struct Probe {
    opens: &'static str,
    seen: std::sync::Mutex<Vec<(u64, bool, Option<String>)>>,
}

impl Projection for Probe {
    fn name(&self) -> &'static str {
        "probe"
    }
    fn reads(
        &self,
        _e: &lightwidget_store::RecordedEvent,
        _d: &DomainEvent,
        _loaded: &dyn lightwidget_projections::ViewReader,
    ) -> Vec<String> {
        vec![]
    }
    fn handle(
        &self,
        e: &lightwidget_store::RecordedEvent,
        d: &DomainEvent,
        _view: &mut lightwidget_projections::Overlay,
    ) {
        let username = match d {
            DomainEvent::AccountRegistered(r) => Some(
                r.profile
                    .value()
                    .map(|p| p.username.clone())
                    .unwrap_or_default(),
            ),
            _ => None,
        };
        let mut seen = self.seen.lock().expect("lock");
        seen.push((e.position, !e.data.is_null(), username));
    }
    fn opens(&self, event_type: &str) -> bool {
        event_type == self.opens
    }
}

/// The runner opens the events of the types a projection opens (their personal fields
/// readable) and decodes the others sealed, without their payload: the accounts projection
/// looks up no widget's key for a new widget. Mixed in one batch, they reach `handle` in log
/// order.
async fn only_the_types_a_projection_opens_are_opened(backend: Backend) {
    let t = TestStore::new(backend, Arc::new(SystemClock)).await;
    let (a, w) = (AccountId::new(), WidgetId::new());
    let registered = |name: &str| lightwidget_testkit::bench::account_registered(a, name, t0());
    append(
        &t,
        &format!("w-{w}"),
        vec![lightwidget_testkit::bench::widget_created(a, w, t0())],
    )
    .await;
    append(&t, &a.stream(), vec![registered("ada")]).await;
    append(
        &t,
        &format!("w2-{w}"),
        vec![lightwidget_testkit::bench::widget_created(
            a,
            WidgetId::new(),
            t0(),
        )],
    )
    .await;
    let head = append(
        &t,
        &format!("{}-again", a.stream()),
        vec![registered("bea")],
    )
    .await;

    let probe = Arc::new(Probe {
        opens: "AccountRegistered",
        seen: Default::default(),
    });
    Runner::new(t.store.clone(), t.views.clone(), probe.clone())
        .catch_up()
        .await
        .expect("catch up");
    let seen = probe.seen.lock().expect("lock").clone();
    assert_eq!(
        seen,
        vec![
            (head - 3, false, None),
            (head - 2, true, Some("ada".into())),
            (head - 1, false, None),
            (head, true, Some("bea".into())),
        ]
    );
    assert!(Accounts.opens("AccountRegistered"));
    assert!(!Accounts.opens("WidgetCreated"));
}

#[test]
fn html_escapes_everything_from_the_user() {
    let s = WidgetSettings {
        title: "\"><img src=x onerror=alert(1)>&'".into(),
        layout: Layout::Masonry,
        columns: 2,
    };
    let html = render_html(WidgetId::new(), &s);
    assert!(
        html.contains("&quot;&gt;&lt;img src=x onerror=alert(1)&gt;&amp;'"),
        "{html}"
    );
    assert!(!html.contains("<img"));
}

/// The staff list: a member listed with role and name, removed (revoked_at), then their
/// name erased; no token hash in any document.
async fn staff_list(backend: Backend) {
    use lightwidget_domain::event::Role;
    use lightwidget_projections::models::staff::{Staff, StaffDoc};
    let t = TestStore::new(backend, Arc::new(SystemClock)).await;
    let ann = StaffId(uuid::Uuid::new_v4());
    let stream = format!("staff-{ann}");
    append(
        &t,
        &stream,
        vec![StaffAdded {
            staff_id: ann,
            name: Personal::new(Subject::staff(ann), Category::Profile, MARK.to_owned()),
            role: Role::Auditor,
            added_by: None,
            added_at: t0(),
        }
        .into()],
    )
    .await;
    append(
        &t,
        &format!("token-{MARK}hash"),
        vec![TokenIssued {
            token_hash: format!("{MARK}hash"),
            principal: Principal::Staff { staff_id: ann },
            role: Role::Auditor,
            issued_at: t0(),
        }
        .into()],
    )
    .await;
    catch_up(&t, Staff).await;
    let read = |d: Option<ViewDoc>| d.expect("a document").read::<StaffDoc>().expect("reads");
    let listed = read(doc(&t, "staff", &ann.to_string()).await);
    assert_eq!(listed.name.as_deref(), Some(MARK));
    assert_eq!((listed.role, listed.revoked_at), (Role::Auditor, None));

    append(
        &t,
        &stream,
        vec![StaffRemoved {
            staff_id: ann,
            removed_by: StaffId(uuid::Uuid::from_u128(1)),
            removed_at: t0() + Duration::hours(1),
        }
        .into()],
    )
    .await;
    catch_up(&t, Staff).await;
    let removed = read(doc(&t, "staff", &ann.to_string()).await);
    assert_eq!(
        removed.revoked_at,
        Some(lightwidget_store::format_time(t0() + Duration::hours(1)))
    );
    assert_eq!(removed.name.as_deref(), Some(MARK));
    assert_eq!(
        all_docs(&t, "staff").await.len(),
        1,
        "one document per member, no tokens"
    );

    erase(&t, Subject::staff(ann), Category::Profile, None).await;
    catch_up(&t, Staff).await;
    assert_eq!(read(doc(&t, "staff", &ann.to_string()).await).name, None);
    assert!(!contains(&all_docs(&t, "staff").await, MARK));
    rebuild(t.store.clone(), t.views.clone(), Arc::new(Staff))
        .await
        .expect("rebuild");
    assert!(!contains(&all_docs(&t, "staff").await, MARK));
}

lightwidget_testkit::both!(
    staff_list,
    accounts_and_widgets,
    invoices,
    statistics,
    only_the_types_a_projection_opens_are_opened
);

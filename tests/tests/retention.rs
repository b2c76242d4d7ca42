//! Every retention rule of POLICY.md, end to end through HTTP on the manual clock, on both
//! backends: quarantine and purge (R18, R20), billing kept for accounting (R19), previews
//! (R8), access logs (R1), blocked accounts (R24), legal holds (R21), restore, and the sweep's
//! exactly-once purge.

use chrono::Duration;
use lightwidget_tests::{billing, both, Backend, TestApp, ADMIN_TOKEN};
use serde_json::{json, Value};

/// The retention items of an account as compliance reads them, up to date with the log.
async fn items(app: &TestApp, account: &str) -> Vec<Value> {
    let head = app.store.head().await.expect("head").position;
    let r = app
        .get(
            &format!("/v1/compliance/subjects/{account}?min_position={head}"),
            Some(ADMIN_TOKEN),
        )
        .await
        .expect(200);
    r["categories"].as_array().expect("categories").clone()
}

/// The one item of `category` whose subject starts with `subject`.
fn item<'a>(items: &'a [Value], subject: &str, category: &str) -> &'a Value {
    items
        .iter()
        .find(|i| {
            i["category"] == category
                && i["subject_id"]
                    .as_str()
                    .is_some_and(|s| s.starts_with(subject))
        })
        .unwrap_or_else(|| panic!("no {category} item of {subject} in {items:#?}"))
}

/// What a sweep purged, as `subject|category` strings, leaving out the Instagram media cache
/// (fetched in the background by any view of a widget page, and dropped a day later: its own
/// test follows it).
fn purged(sweep: &Value) -> Vec<String> {
    let mut all = purged_all(sweep);
    all.retain(|p| !p.ends_with("|media_cache"));
    all
}

fn purged_all(sweep: &Value) -> Vec<String> {
    items_of(sweep, "purged")
}

/// A sweep's `purged` or `archived` list as sorted `subject|category`.
fn items_of(sweep: &Value, list: &str) -> Vec<String> {
    let mut out: Vec<String> = sweep[list]
        .as_array()
        .expect("a list")
        .iter()
        .map(|p| {
            format!(
                "{}|{}",
                p["subject_id"].as_str().unwrap_or(""),
                p["category"].as_str().unwrap_or("")
            )
        })
        .collect();
    out.sort();
    out
}

/// Asserts an item's rule and that its explanation cites the requirement.
fn explains(item: &Value, rule: &str, requirement: &str) {
    assert_eq!(item["rule"], rule, "{item}");
    assert!(
        item["explanation"]
            .as_str()
            .is_some_and(|e| e.contains(requirement)),
        "{requirement} in {item}"
    );
}

/// Advances by `before` (a sweep then purges nothing of `purged_of`), then by `after`: the
/// answer of the sweep that follows.
async fn kept_then_purged(
    app: &TestApp,
    before: Duration,
    after: Duration,
    purged_of: fn(&Value) -> Vec<String>,
) -> Value {
    app.advance(before).await;
    let early = app.sweep().await;
    assert!(purged_of(&early).is_empty(), "purged too early: {early}");
    app.advance(after).await;
    app.sweep().await
}

async fn widget_quarantine_then_purge_on_day_91(backend: Backend) {
    let app = lightwidget_tests::spawn_app(backend).await;
    let (token, account, _) = app.sign_in("alice").await;
    let (w, _) = app.create_widget(&token, "Holiday").await;
    let (kept, at) = app.create_widget(&token, "Kept").await;
    assert_eq!(
        app.get(&format!("/w/{w}?min_position={at}"), None)
            .await
            .status,
        200
    );
    app.post(&format!("/w/{w}/click"), None, json!({})).await;
    app.views_stored(1).await;
    // Counted before the purge, so that "gone" below is not vacuous.
    let head = app.store.head().await.expect("head").position;
    let counted = app
        .get(
            &format!("/v1/widgets/{w}/stats?min_position={head}"),
            Some(&token),
        )
        .await
        .expect(200);
    assert_eq!(
        (&counted["views"], &counted["clicks"]),
        (&json!(1), &json!(1))
    );

    let r = app
        .delete(&format!("/v1/widgets/{w}"), Some(&token))
        .await
        .expect(202);
    let deleted_at = r["position"].as_u64().expect("position");
    // Quarantined: not served, still restorable (R20), not purged by a sweep.
    assert_eq!(
        app.get(&format!("/w/{w}?min_position={deleted_at}"), None)
            .await
            .status,
        404
    );
    assert!(purged(&app.sweep().await).is_empty());
    let its = items(&app, &account).await;
    let content = item(&its, &format!("widget:{w}"), "widget_content");
    assert_eq!(content["state"], "quarantined");
    assert_eq!(content["rule"], "widget_content:90 days");
    assert!(
        content["explanation"]
            .as_str()
            .is_some_and(|e| e.starts_with("kept until ") && e.contains("widget deleted on")),
        "{content}"
    );
    assert_eq!(
        item(&its, &format!("widget:{w}"), "statistics")["state"],
        "quarantined"
    );
    assert_eq!(
        item(&its, &format!("accesslog:{w}"), "access_log")["state"],
        "active"
    );
    assert_eq!(
        item(&its, &format!("widget:{kept}"), "widget_content")["state"],
        "active"
    );

    // Day 90 is still quarantine; day 91 is not.
    let sweep = kept_then_purged(&app, Duration::days(89), Duration::days(2), purged).await;
    let month = purged(&sweep)
        .iter()
        .find(|p| p.starts_with("accesslog:"))
        .cloned()
        .expect("the widget's access log goes with it (R18)");
    assert_eq!(
        purged(&sweep),
        vec![
            month,
            format!("widget:{w}|statistics"),
            format!("widget:{w}|widget_content")
        ]
    );
    let at = sweep["position"].as_u64().expect("position");

    // The widget is a tombstone: no content, no statistics, not served.
    let doc = app
        .get(&format!("/v1/widgets/{w}?min_position={at}"), Some(&token))
        .await
        .expect(200);
    assert_eq!(
        (doc["status"].as_str(), doc["title"].as_str()),
        (Some("purged"), None)
    );
    assert_eq!(app.get(&format!("/w/{w}"), None).await.status, 404);
    let stats = app
        .get(
            &format!("/v1/widgets/{w}/stats?min_position={at}"),
            Some(&token),
        )
        .await;
    // The widget was viewed and clicked before; its statistics are gone with it (R18): the
    // tombstone answers, with nothing counted, and no statistics document is left.
    assert_eq!(stats.status, 200, "{stats:?}");
    assert_eq!(
        (
            &stats.body["views"],
            &stats.body["clicks"],
            &stats.body["by_day"]
        ),
        (&json!(0), &json!(0), &json!([])),
        "statistics are gone with the widget: {stats:?}"
    );
    let left = app
        .views
        .query_all(
            "statistics",
            lightwidget_store::ViewQuery {
                owner: Some(w.to_string()),
                ..Default::default()
            },
        )
        .await
        .expect("statistics documents");
    assert!(left.is_empty(), "{} statistics documents left", left.len());
    let its = items(&app, &account).await;
    for category in ["widget_content", "statistics"] {
        let i = item(&its, &format!("widget:{w}"), category);
        assert_eq!(i["state"], "purged", "{i}");
        assert!(i["explanation"]
            .as_str()
            .is_some_and(|e| e.starts_with("erased on ")));
    }
    assert_eq!(
        item(&its, &format!("widget:{kept}"), "widget_content")["state"],
        "active"
    );
    assert_eq!(
        app.get(&format!("/w/{kept}?min_position={at}"), None)
            .await
            .status,
        200,
        "the other widget is untouched"
    );

    // The erasure names the deletion request as its cause, and a second sweep does nothing.
    let erasures = app
        .store
        .read_stream(&format!("retention-widget:{w}"), 0, 10)
        .await
        .expect("read");
    assert_eq!(erasures.len(), 2);
    let request = app.store.read_all(deleted_at - 1, 1).await.expect("read");
    assert_eq!(request[0].event_type, "WidgetDeletionRequested");
    assert!(erasures
        .iter()
        .all(|e| e.causation_id == Some(request[0].event_id)));
    assert!(purged(&app.sweep().await).is_empty());
    let list = app
        .get("/v1/compliance/purges", Some(ADMIN_TOKEN))
        .await
        .expect(200);
    let types: Vec<&str> = list["purges"]
        .as_array()
        .expect("purges")
        .iter()
        .filter(|p| p["data"]["category"] != "media_cache")
        .filter_map(|p| p["type"].as_str())
        .collect();
    assert_eq!(
        types.iter().filter(|t| **t == "WidgetPurged").count(),
        1,
        "{types:?}"
    );
    assert_eq!(
        types.iter().filter(|t| **t == "PersonalDataErased").count(),
        3,
        "{types:?}"
    );
    app.stop().await;
}

async fn restore_during_quarantine_cancels_the_purge(backend: Backend) {
    let app = lightwidget_tests::spawn_app(backend).await;
    let (token, account, _) = app.sign_in("bob").await;
    let (w, _) = app.create_widget(&token, "Back again").await;
    app.delete(&format!("/v1/widgets/{w}"), Some(&token))
        .await
        .expect(202);
    app.advance(Duration::days(30)).await;
    app.post(&format!("/v1/widgets/{w}/restore"), Some(&token), json!({}))
        .await
        .expect(200);
    app.advance(Duration::days(70)).await;
    assert!(purged(&app.sweep().await).is_empty());
    let its = items(&app, &account).await;
    let content = item(&its, &format!("widget:{w}"), "widget_content");
    assert_eq!(content["state"], "active");
    assert!(content["due_at"].is_null());
    let head = app.store.head().await.expect("head").position;
    assert_eq!(
        app.get(&format!("/w/{w}?min_position={head}"), None)
            .await
            .status,
        200
    );
    app.stop().await;
}

async fn account_deletion_keeps_billing_to_the_end_of_the_fifth_year(backend: Backend) {
    let app = lightwidget_tests::spawn_app(backend).await;
    let (token, account, _) = app.sign_in("carol").await;
    let (w, _) = app.create_widget(&token, "Shop").await;
    let order = app.order(&token, &w, billing()).await;
    let order_id = order["order_id"].as_str().expect("order id").to_owned();
    let invoice = app.pay(&order, "PAYPAL-TXN-1").await;
    let number = invoice["invoice_number"]
        .as_str()
        .expect("number")
        .to_owned();
    let year: i32 = number[3..7].parse().expect("year");
    let (open_order_widget, _) = app.create_widget(&token, "Never paid").await;
    app.order(&token, &open_order_widget, billing()).await;

    app.delete("/v1/me", Some(&token)).await.expect(202);
    let its = items(&app, &account).await;
    assert_eq!(item(&its, "account:", "profile")["state"], "quarantined");
    let paid = item(&its, &format!("order:{}", order_id), "billing");
    assert_eq!(paid["state"], "active");
    assert_eq!(
        paid["explanation"],
        format!(
            "kept until {}-12-31: invoice {number} of {year}, accounting law (R19)",
            year + 5
        )
    );

    app.advance(Duration::days(91)).await;
    let sweep = app.sweep().await;
    let gone = purged(&sweep);
    assert!(
        gone.contains(&format!("account:{account}|profile")),
        "{gone:?}"
    );
    assert!(
        gone.contains(&format!("widget:{w}|widget_content")),
        "{gone:?}"
    );
    assert!(
        gone.contains(&format!("widget:{open_order_widget}|widget_content")),
        "{gone:?}"
    );
    // The order never paid has no accounting reason to stay; the paid one has.
    assert!(gone.iter().any(|p| p.ends_with("|billing")), "{gone:?}");
    assert!(!gone
        .iter()
        .any(|p| p.starts_with(&format!("order:{}", order_id))));
    let at = sweep["position"].as_u64().expect("position");
    let me = app
        .get(&format!("/v1/me?min_position={at}"), Some(&token))
        .await
        .expect(200);
    assert_eq!(me["status"], "purged", "a tombstone: {me}");
    assert!(me["username"].is_null(), "{me}");
    let invoice = |at: u64| {
        let (app, number) = (&app, &number);
        async move {
            app.get(
                &format!(
                    "/v1/invoices/{}?min_position={at}",
                    number.replace('/', "%2F")
                ),
                Some(ADMIN_TOKEN),
            )
            .await
            .expect(200)
        }
    };
    let kept = invoice(at).await;
    assert_eq!(
        kept["billing"]["name"], "Alice Example",
        "billing stays (R19)"
    );

    // 1 January of the sixth year: the billing data goes, number and amount stay.
    let now = {
        use lightwidget_store::Clock;
        app.clock.now()
    };
    let first_of_sixth = chrono::NaiveDate::from_ymd_opt(year + 6, 1, 1)
        .expect("date")
        .and_hms_opt(0, 0, 1)
        .expect("time")
        .and_utc();
    // 31 December is still kept.
    let sweep = kept_then_purged(
        &app,
        first_of_sixth - now - Duration::days(1),
        Duration::days(1),
        purged,
    )
    .await;
    assert_eq!(purged(&sweep), vec![format!("order:{}|billing", order_id)]);
    let kept = invoice(sweep["position"].as_u64().expect("position")).await;
    assert!(kept["billing"]["name"].is_null(), "{kept}");
    assert_eq!(kept["invoice_number"], number.as_str());
    assert!(!kept["amount"].is_null());
    app.stop().await;
}

async fn previews_go_after_15_minutes_and_access_logs_after_12_months(backend: Backend) {
    let app = lightwidget_tests::spawn_app(backend).await;
    // Start at noon on the 1st of next month: the view a day later must land in the same
    // month's access-log bucket whatever the date the test runs on (run on the 30th of
    // November, it fell into December's bucket).
    {
        use chrono::Datelike;
        use lightwidget_store::Clock;
        let now = app.clock.now();
        let (year, month) = match now.month() {
            12 => (now.year() + 1, 1),
            m => (now.year(), m + 1),
        };
        let noon = chrono::NaiveDate::from_ymd_opt(year, month, 1)
            .and_then(|d| d.and_hms_opt(12, 0, 0))
            .expect("a date")
            .and_utc();
        app.advance(noon - now).await;
    }
    let (token, account, _) = app.sign_in("dave").await;
    let p = app
        .post(
            "/v1/previews",
            Some(&token),
            json!({"title": "Draft", "layout": "grid", "columns": 2}),
        )
        .await
        .expect(201);
    let preview = p["preview_id"].as_str().expect("id").to_owned();
    let (w, at) = app.create_widget(&token, "Public").await;
    assert_eq!(
        app.get(&format!("/w/{w}?min_position={at}"), None)
            .await
            .status,
        200
    );

    let sweep = kept_then_purged(&app, Duration::minutes(14), Duration::minutes(2), purged).await;
    assert_eq!(purged(&sweep), vec![format!("preview:{preview}|preview")]);
    assert_eq!(
        app.get(&format!("/v1/previews/{preview}"), None)
            .await
            .status,
        410
    );

    // Another view later in the month moves the bucket's date; 12 months after it, it goes.
    app.advance(Duration::days(1)).await;
    app.get(&format!("/w/{w}"), None).await.expect(200);
    // A page answers once its view is queued (decision 23): stored before the clock moves on,
    // or the sweep a year later would see the bucket's date without it.
    app.views_stored(2).await;
    let its = items(&app, &account).await;
    let log = item(&its, &format!("accesslog:{w}"), "access_log");
    explains(log, "access_log:12 months", "(R1)");
    let sweep = kept_then_purged(&app, Duration::days(364), Duration::days(2), purged).await;
    let gone = purged(&sweep);
    assert!(
        !gone.is_empty()
            && gone
                .iter()
                .all(|p| p.starts_with(&format!("accesslog:{w}"))),
        "{gone:?}"
    );
    // The counts stay (R1, R2); the widget stays.
    let head = app.store.head().await.expect("head").position;
    let stats = app
        .get(
            &format!("/v1/widgets/{w}/stats?min_position={head}"),
            Some(&token),
        )
        .await
        .expect(200);
    assert_eq!(stats["views"], 2);
    assert_eq!(app.get(&format!("/w/{w}"), None).await.status, 200);
    app.stop().await;
}

async fn a_blocked_account_is_kept_12_months(backend: Backend) {
    let app = lightwidget_tests::spawn_app(backend).await;
    let security = app.staff("security").await;
    // One account asked for deletion and was then blocked; one was only blocked.
    let (t1, deleted, _) = app.sign_in("erin").await;
    let (w1, _) = app.create_widget(&t1, "one").await;
    app.delete("/v1/me", Some(&t1)).await.expect(202);
    let (t2, blocked, _) = app.sign_in("frank").await;
    let (w2, _) = app.create_widget(&t2, "two").await;
    for a in [&deleted, &blocked] {
        app.post(
            &format!("/v1/security/accounts/{a}/block"),
            Some(&security),
            json!({"reason": "spam"}),
        )
        .await
        .expect(200);
    }
    app.advance(Duration::days(100)).await;
    assert!(
        purged(&app.sweep().await).is_empty(),
        "the security hold wins over the quarantine"
    );
    let its = items(&app, &deleted).await;
    let profile = item(&its, "account:", "profile");
    assert_eq!(profile["state"], "quarantined");
    assert!(
        profile["explanation"]
            .as_str()
            .is_some_and(|e| e.contains("(R24)")),
        "{profile}"
    );
    let security_item = item(&its, "account:", "security");
    assert_eq!(security_item["due_at"], profile["due_at"]);

    app.advance(Duration::days(270)).await;
    let gone = purged(&app.sweep().await);
    for (account, widget) in [(&deleted, &w1), (&blocked, &w2)] {
        for expected in [
            format!("account:{account}|profile"),
            format!("account:{account}|security"),
            format!("widget:{widget}|widget_content"),
        ] {
            assert!(gone.contains(&expected), "{expected} in {gone:?}");
        }
    }
    app.stop().await;
}

/// Places a legal hold on `account` (a court order, case `case_ref`): the hold's id.
async fn place_hold(app: &TestApp, compliance: &str, account: &str, case_ref: &str) -> String {
    let hold = app
        .post(
            "/v1/compliance/holds",
            Some(compliance),
            json!({"account_id": account, "reason": "court order", "case_ref": case_ref}),
        )
        .await
        .expect(201);
    hold["hold_id"].as_str().expect("hold").to_owned()
}

async fn a_legal_hold_stops_every_purge_until_released(backend: Backend) {
    let app = lightwidget_tests::spawn_app(backend).await;
    let compliance = app.staff("compliance").await;
    let (token, account, _) = app.sign_in("grace").await;
    let (w, _) = app.create_widget(&token, "evidence").await;
    app.delete("/v1/me", Some(&token)).await.expect(202);
    let hold_id = place_hold(&app, &compliance, &account, "KR-2026-17").await;
    app.advance(Duration::days(120)).await;
    assert!(purged(&app.sweep().await).is_empty());
    let its = items(&app, &account).await;
    for i in &its {
        assert_eq!(i["state"], "held", "{i}");
        assert!(
            i["explanation"].as_str().is_some_and(
                |e| e.starts_with(&format!("held by legal hold {hold_id}, case KR-2026-17"))
            ),
            "{i}"
        );
        assert_eq!(i["holds"][0]["case_ref"], "KR-2026-17");
    }
    let due = app
        .get("/v1/compliance/retention?state=due", Some(&compliance))
        .await
        .expect(200);
    assert!(
        due["items"].as_array().is_some_and(|a| a.is_empty()),
        "{due}"
    );
    let held = app
        .get(
            &format!("/v1/compliance/retention?state=held&account_id={account}&category=profile"),
            Some(&compliance),
        )
        .await
        .expect(200);
    assert_eq!(held["items"].as_array().map(Vec::len), Some(1));

    app.delete(
        &format!("/v1/compliance/holds/{hold_id}"),
        Some(&compliance),
    )
    .await
    .expect(200);
    let head = app.store.head().await.expect("head").position;
    let due = app
        .get(
            &format!("/v1/compliance/retention?state=due&min_position={head}"),
            Some(&compliance),
        )
        .await
        .expect(200);
    assert!(
        due["items"].as_array().is_some_and(|a| a.len() >= 2),
        "{due}"
    );
    let gone = purged(&app.sweep().await);
    assert!(
        gone.contains(&format!("account:{account}|profile")),
        "{gone:?}"
    );
    assert!(
        gone.contains(&format!("widget:{w}|widget_content")),
        "{gone:?}"
    );
    app.stop().await;
}

/// Data past its date that a legal hold keeps is archived (R21): from then on the owner's,
/// the public's and the other staff's reads see it as erased; compliance reads it through
/// the hold, every read recorded; released, the sweep purges it as any other.
async fn held_data_past_its_date_is_archived_and_read_only_under_the_hold(backend: Backend) {
    let app = lightwidget_tests::spawn_app(backend).await;
    let compliance = app.staff("compliance").await;
    let security = app.staff("security").await;
    let auditor = app.staff("auditor").await;
    let (token, account, _) = app.sign_in("gracehold7").await;
    let (w, _) = app.create_widget(&token, "EvidenceTitle7").await;
    app.delete("/v1/me", Some(&token)).await.expect(202);
    let hold_id = place_hold(&app, &compliance, &account, "KR-2026-18").await;
    let data_path = format!("/v1/compliance/holds/{hold_id}/data");

    // Refusals append nothing: other roles, an unknown or malformed hold.
    let head = app.store.head().await.expect("head").position;
    for who in [&token, &security, &auditor] {
        assert_eq!(app.get(&data_path, Some(who)).await.status, 403);
    }
    assert_eq!(app.get(&data_path, None).await.status, 401);
    let unknown = format!("/v1/compliance/holds/{}/data", uuid::Uuid::new_v4());
    assert_eq!(app.get(&unknown, Some(&compliance)).await.status, 404);
    assert_eq!(
        app.get("/v1/compliance/holds/nope/data", Some(&compliance))
            .await
            .status,
        404
    );
    assert_eq!(app.store.head().await.expect("head").position, head);

    // Before the data's date nothing is archived: the hold keeps nothing past it yet.
    let early = app.get(&data_path, Some(&compliance)).await.expect(200);
    assert_eq!(early["items"], json!([]), "{early}");

    app.advance(Duration::days(91)).await;
    let sweep = app.sweep().await;
    assert!(purged(&sweep).is_empty(), "{sweep}");
    let archived = items_of(&sweep, "archived");
    for expected in [
        format!("account:{account}|profile"),
        format!("widget:{w}|widget_content"),
    ] {
        assert!(archived.contains(&expected), "{expected} in {archived:?}");
    }
    let again = app.sweep().await;
    assert_eq!(again["archived"], json!([]), "archived once");
    let position = again["position"].as_u64().expect("position");

    // The owner, the public and the other staff no longer see it.
    let me = app
        .get(&format!("/v1/me?min_position={position}"), Some(&token))
        .await
        .expect(200);
    assert_eq!(me["username"], Value::Null, "{me}");
    let widget = app
        .get(
            &format!("/v1/widgets/{w}?min_position={position}"),
            Some(&token),
        )
        .await
        .expect(200);
    assert_eq!(widget["title"], Value::Null, "{widget}");
    for (path, who) in [
        ("/v1/me/export".to_owned(), &token),
        (
            format!("/v1/security/accounts/{account}?reason=case%20KR-2026-18"),
            &security,
        ),
        (
            "/v1/audit/events?reveal=true&reason=case%20KR-2026-18&limit=1000".to_owned(),
            &auditor,
        ),
        (format!("/w/{w}"), &token),
    ] {
        let r = app.get(&path, Some(who)).await;
        let text = r.body.to_string();
        assert!(
            !text.contains("gracehold7") && !text.contains("EvidenceTitle7"),
            "{path}: {text}"
        );
    }

    // Compliance reads it under the hold; the read is recorded first.
    let read = app.get(&data_path, Some(&compliance)).await.expect(200);
    let text = read.to_string();
    assert!(
        text.contains("gracehold7") && text.contains("EvidenceTitle7"),
        "{read}"
    );
    let at = read["position"].as_u64().expect("position");
    let recorded = app.store.read_all(at - 1, 1).await.expect("read");
    assert_eq!(recorded[0].event_type, "HeldDataRead");
    assert_eq!(recorded[0].data["hold_id"], hold_id.as_str());
    assert_eq!(recorded[0].stream, format!("access-{account}"));
    let items_now = items(&app, &account).await;
    let profile = item(&items_now, "account:", "profile");
    assert_eq!(profile["state"], "held");
    assert!(
        profile["explanation"]
            .as_str()
            .is_some_and(|e| e.contains("archived on")),
        "{profile}"
    );

    // Released: no more reads under it, and the sweep purges.
    app.delete(
        &format!("/v1/compliance/holds/{hold_id}"),
        Some(&compliance),
    )
    .await
    .expect(200);
    let head = app.store.head().await.expect("head").position;
    assert_eq!(app.get(&data_path, Some(&compliance)).await.status, 404);
    assert_eq!(app.store.head().await.expect("head").position, head);
    let gone = purged(&app.sweep().await);
    for expected in [
        format!("account:{account}|profile"),
        format!("widget:{w}|widget_content"),
    ] {
        assert!(gone.contains(&expected), "{expected} in {gone:?}");
    }
    app.stop().await;
}

async fn concurrent_sweeps_purge_each_item_once(backend: Backend) {
    let app = lightwidget_tests::spawn_app(backend).await;
    let mut accounts = Vec::new();
    for n in 0..6 {
        let (token, account, _) = app.sign_in(&format!("user{n}")).await;
        app.create_widget(&token, "w").await;
        app.delete("/v1/me", Some(&token)).await.expect(202);
        accounts.push(account);
    }
    app.advance(Duration::days(91)).await;
    let (a, b) = tokio::join!(app.sweep(), app.sweep());
    let mut all = purged(&a);
    all.extend(purged(&b));
    all.sort();
    let before = all.len();
    all.dedup();
    assert_eq!(before, all.len(), "nothing purged twice: {all:?}");
    assert_eq!(
        all.len(),
        6 * 3,
        "profile, content and statistics of each: {all:?}"
    );
    for account in &accounts {
        let erasures = app
            .store
            .read_stream(&format!("retention-account:{account}"), 0, 10)
            .await
            .expect("read");
        assert_eq!(erasures.len(), 1);
        let purges = app
            .store
            .read_stream(&format!("account-{account}"), 0, 100)
            .await
            .expect("read")
            .into_iter()
            .filter(|e| e.event_type == "AccountPurged")
            .count();
        assert_eq!(purges, 1);
    }
    app.stop().await;
}

async fn compliance_endpoints_check_roles_and_input(backend: Backend) {
    let app = lightwidget_tests::spawn_app(backend).await;
    let (owner, account, _) = app.sign_in("heidi").await;
    let auditor = app.staff("auditor").await;
    let compliance = app.staff("compliance").await;
    for (path, who, status) in [
        ("/v1/compliance/retention", None, 401),
        ("/v1/compliance/retention", Some(owner.as_str()), 403),
        ("/v1/compliance/retention", Some(auditor.as_str()), 403),
        ("/v1/compliance/purges", Some(owner.as_str()), 403),
        ("/v1/compliance/purges", Some(auditor.as_str()), 200),
        ("/v1/compliance/purges", Some(compliance.as_str()), 200),
        (
            "/v1/compliance/purges?min_position=1",
            Some(auditor.as_str()),
            200,
        ),
    ] {
        assert_eq!(app.get(path, who).await.status, status, "{path} {who:?}");
    }
    for (token, status) in [
        (None, 401),
        (Some(owner.as_str()), 403),
        (Some(auditor.as_str()), 403),
        (Some(compliance.as_str()), 200),
    ] {
        assert_eq!(
            app.post("/v1/admin/retention/run", token, json!({}))
                .await
                .status,
            status
        );
    }
    for (query, field) in [
        ("category=selfies", "category"),
        ("state=gone", "state"),
        ("account_id=42", "account_id"),
        ("due_before=yesterday", "due_before"),
        ("colour=red", "colour"),
    ] {
        let r = app
            .get(
                &format!("/v1/compliance/retention?{query}"),
                Some(&compliance),
            )
            .await;
        assert_eq!(
            (r.status, r.body["field"].as_str()),
            (400, Some(field)),
            "{query}"
        );
    }
    let r = app
        .get(
            &format!("/v1/compliance/subjects/{}", uuid::Uuid::new_v4()),
            Some(&compliance),
        )
        .await;
    assert_eq!(r.status, 404);
    let its = items(&app, &account).await;
    assert_eq!(
        item(&its, "account:", "profile")["explanation"],
        "kept while the account exists (R20)"
    );
    app.stop().await;
}

async fn comment_ips_go_after_12_months_and_tickets_after_24(backend: Backend) {
    let app = lightwidget_tests::spawn_app(backend).await;
    let created = |path: &'static str, body: Value, field: &'static str| {
        let app = &app;
        async move {
            app.post(path, None, body).await.expect(201)[field]
                .as_str()
                .expect("id")
                .to_owned()
        }
    };
    let comment = created(
        "/v1/articles/pricing/comments",
        json!({"author": "Ola", "text": "Kept after the IP goes"}),
        "comment_id",
    )
    .await;
    let ticket = created(
        "/v1/support/tickets",
        json!({"email": "ola@example.com", "message": "help"}),
        "ticket_id",
    )
    .await;
    let head = app.store.head().await.expect("head").position;
    let r = app
        .get(
            &format!("/v1/compliance/retention?category=comment_ip&min_position={head}"),
            Some(ADMIN_TOKEN),
        )
        .await
        .expect(200);
    let item = &r["items"][0];
    assert_eq!(item["subject_id"], format!("comment:{comment}"));
    explains(item, "comment_ip:12 months", "(R6)");
    // The commenter and the ticket's writer are data subjects without an account.
    let subject = |id: String| {
        let app = &app;
        async move {
            app.get(
                &format!("/v1/compliance/subjects/{id}?min_position={head}"),
                Some(ADMIN_TOKEN),
            )
            .await
        }
    };
    let commenter = subject(format!("comment:{comment}")).await.expect(200);
    assert_eq!(commenter["account_id"], Value::Null);
    let mut categories: Vec<&str> = commenter["categories"]
        .as_array()
        .expect("categories")
        .iter()
        .map(|c| c["category"].as_str().expect("category"))
        .collect();
    categories.sort_unstable();
    assert_eq!(categories, ["comment_author", "comment_ip"]);
    explains(
        &commenter["categories"]
            .as_array()
            .and_then(|cs| cs.iter().find(|c| c["category"] == "comment_author"))
            .cloned()
            .expect("the author's item"),
        "comment_author:12 months",
        "(R6)",
    );
    let writer = subject(format!("ticket:{ticket}")).await.expect(200);
    assert_eq!(writer["categories"][0]["category"], "support");
    for unknown in [
        format!("comment:{}", uuid::Uuid::new_v4()),
        format!("order:{ticket}"),
        "nonsense".to_owned(),
    ] {
        assert_eq!(subject(unknown).await.status, 404);
    }
    let (owner, _, _) = app.sign_in("olga").await;
    let r = app
        .get(
            &format!("/v1/compliance/subjects/ticket:{ticket}"),
            Some(&owner),
        )
        .await;
    assert_eq!(r.status, 403);

    let sweep = kept_then_purged(&app, Duration::days(364), Duration::days(2), purged).await;
    assert_eq!(
        purged(&sweep),
        vec![
            format!("comment:{comment}|comment_author"),
            format!("comment:{comment}|comment_ip")
        ]
    );
    let opened = app
        .store
        .read_stream("article-pricing", 0, 10)
        .await
        .expect("read");
    assert_eq!(opened[0].data["ip"]["$personal"]["erased"], true);
    assert_eq!(opened[0].data["author"]["$personal"]["erased"], true);
    let list = app
        .get("/v1/articles/pricing/comments", None)
        .await
        .expect(200);
    assert_eq!(list["comments"][0]["text"], "Kept after the IP goes");
    assert_eq!(list["comments"][0]["author"], Value::Null);

    // A ticket is kept 24 months.
    let sweep = kept_then_purged(&app, Duration::days(364), Duration::days(2), purged).await;
    assert_eq!(purged(&sweep), vec![format!("ticket:{ticket}|support")]);
    let opened = app
        .store
        .read_stream(&format!("ticket-{ticket}"), 0, 10)
        .await
        .expect("read");
    assert_eq!(opened[0].data["request"]["$personal"]["erased"], true);
    app.stop().await;
}

/// A visitor's consent record (R3) is kept 13 months from the last statement, then erased:
/// the visitor reads as not having consented, and may state again.
async fn a_visitors_consent_record_goes_13_months_after_the_last_statement(backend: Backend) {
    let app = lightwidget_tests::spawn_app(backend).await;
    let visitor = uuid::Uuid::new_v4();
    let path = format!("/v1/consent/{visitor}");
    let put = |analytics: bool| {
        let app = &app;
        let path = path.clone();
        async move {
            app.call(
                reqwest::Method::PUT,
                &path,
                None,
                Some(json!({ "analytics": analytics })),
            )
            .await
            .expect(200)
        }
    };
    put(true).await;
    // A later statement moves the clock.
    app.advance(Duration::days(30)).await;
    let last = put(true).await["position"].as_u64().expect("position");
    let r = app
        .get(
            &format!("/v1/compliance/subjects/visitor:{visitor}?min_position={last}"),
            Some(ADMIN_TOKEN),
        )
        .await
        .expect(200);
    let item = &r["categories"][0];
    assert_eq!(item["category"], "consent");
    explains(item, "consent:13 months", "(R3)");
    let sweep = kept_then_purged(&app, Duration::days(390), Duration::days(10), purged).await;
    assert_eq!(purged(&sweep), vec![format!("visitor:{visitor}|consent")]);
    let r = app.get(&path, None).await.expect(200);
    assert_eq!(
        r["analytics_allowed"], false,
        "an erased statement is no consent"
    );
    let events = app
        .store
        .read_stream(&format!("visitor-{visitor}"), 0, 10)
        .await
        .expect("read");
    assert!(events
        .iter()
        .all(|e| e.data["choice"]["$personal"]["erased"] == true));
    // Stated again: a new record, in force.
    let again = put(true).await["position"].as_u64().expect("position");
    assert_eq!(
        app.get(&path, None).await.expect(200)["analytics_allowed"],
        true
    );
    let r = app
        .get(
            &format!("/v1/compliance/subjects/visitor:{visitor}?min_position={again}"),
            Some(ADMIN_TOKEN),
        )
        .await
        .expect(200);
    assert_eq!(r["categories"][0]["state"], "active", "{r}");
    app.stop().await;
}

/// Waits until the widget's media stream holds `n` fetches: the position of the last.
async fn fetched(app: &TestApp, widget: &str, n: usize) -> u64 {
    for _ in 0..100 {
        let events = app
            .store
            .read_stream(&format!("media-{widget}"), 0, 100)
            .await
            .expect("read");
        if events.len() >= n {
            return events[n - 1].position;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    panic!("no media fetch {n} for {widget}");
}

async fn instagram_media_is_cached_at_most_24_hours(backend: Backend) {
    let app = lightwidget_tests::spawn_app(backend).await;
    let (token, account, _) = app.sign_in("ivan").await;
    let (w, at) = app.create_widget(&token, "Photos").await;
    let page = app.get(&format!("/w/{w}?min_position={at}"), None).await;
    assert_eq!(page.status, 200);
    assert!(!page.text().contains("<img"), "nothing cached yet");
    let first = fetched(&app, &w, 1).await;
    let page = app.get(&format!("/w/{w}?min_position={first}"), None).await;
    assert!(
        page.text()
            .contains("https://demo.lightwidget.invalid/media/"),
        "{}",
        page.text()
    );
    let its = items(&app, &account).await;
    let cached = item(&its, &format!("media:{w}"), "media_cache");
    explains(cached, "media_cache:24 hours", "(R7)");
    let sweep = kept_then_purged(&app, Duration::hours(23), Duration::hours(2), purged_all).await;
    let gone = purged_all(&sweep);
    assert_eq!(gone.len(), 1, "{gone:?}");
    assert!(gone[0].starts_with(&format!("media:{w}:")) && gone[0].ends_with("|media_cache"));
    // Dropped from the page; the next view fetches again.
    let at = sweep["position"].as_u64().expect("position");
    let page = app.get(&format!("/w/{w}?min_position={at}"), None).await;
    assert!(!page.text().contains("<img"), "{}", page.text());
    let second = fetched(&app, &w, 2).await;
    let page = app
        .get(&format!("/w/{w}?min_position={second}"), None)
        .await;
    assert!(page.text().contains("<img"), "{}", page.text());
    let opened = app
        .store
        .read_stream(&format!("media-{w}"), 0, 10)
        .await
        .expect("read");
    assert_eq!(opened[0].data["media"]["$personal"]["erased"], true);
    assert!(opened[1].data["media"]["$personal"]["value"].is_array());
    app.stop().await;
}

async fn a_purged_user_signs_up_again_as_a_new_account(backend: Backend) {
    let app = lightwidget_tests::spawn_app(backend).await;
    let (token, old, _) = app.sign_in("phoenix").await;
    app.delete("/v1/me", Some(&token)).await.expect(202);
    let sweep = kept_then_purged(&app, Duration::days(89), Duration::days(2), purged).await;
    assert!(purged(&sweep).contains(&format!("account:{old}|profile")));
    let (token, new, position) = app.sign_in("phoenix").await;
    assert_ne!(new, old, "a new account, not the tombstone");
    let me = app
        .get(&format!("/v1/me?min_position={position}"), Some(&token))
        .await
        .expect(200);
    assert_eq!(
        (me["status"].as_str(), me["username"].as_str()),
        (Some("active"), Some("phoenix"))
    );
    // And the next sign-in finds the new account.
    let (_, again, _) = app.sign_in("phoenix").await;
    assert_eq!(again, new);
    app.stop().await;
}

/// The server sweeps on its own, every `LW_SWEEP_INTERVAL_SECONDS`: a preview past its 15
/// minutes is erased with nobody asking (R8), and its page answers 410.
async fn the_periodic_sweep_purges_on_its_own(backend: Backend) {
    let config = lightwidget_tests::TestConfig {
        sweep_every: Some(std::time::Duration::from_millis(100)),
        ..Default::default()
    };
    let app = lightwidget_tests::spawn_app_with(backend, config).await;
    let (token, _, _) = app.sign_in("erin").await;
    let p = app
        .post(
            "/v1/previews",
            Some(&token),
            json!({"title": "Draft", "layout": "grid", "columns": 2}),
        )
        .await
        .expect(201);
    let preview = p["preview_id"].as_str().expect("id").to_owned();
    app.advance(Duration::minutes(16)).await;
    // Waits on the log (woken by each append) for the erasure, at most 20 s.
    let stream = format!("retention-preview:{preview}");
    let erased = tokio::time::timeout(std::time::Duration::from_secs(20), async {
        loop {
            let head = app.store.head().await.expect("head").position;
            let events = app
                .store
                .read_stream_raw(&stream, 0, 10)
                .await
                .expect("read");
            if !events.is_empty() {
                return events;
            }
            app.store
                .wait_for(head, std::time::Duration::from_secs(1))
                .await;
        }
    })
    .await
    .expect("the periodic sweep erased the preview");
    assert_eq!(erased.len(), 1);
    assert_eq!(erased[0].event_type, "PersonalDataErased");
    assert_eq!(erased[0].actor, "system:retention");
    assert_eq!(
        app.get(&format!("/v1/previews/{preview}"), None)
            .await
            .status,
        410
    );
}

both! {
    periodic_sweep => the_periodic_sweep_purges_on_its_own;
    purged_user_returns => a_purged_user_signs_up_again_as_a_new_account;
    media_cache => instagram_media_is_cached_at_most_24_hours;
    comment_ips_and_tickets => comment_ips_go_after_12_months_and_tickets_after_24;
    consent_records => a_visitors_consent_record_goes_13_months_after_the_last_statement;
    widget_purge => widget_quarantine_then_purge_on_day_91;
    restore_cancels => restore_during_quarantine_cancels_the_purge;
    billing_kept => account_deletion_keeps_billing_to_the_end_of_the_fifth_year;
    previews_and_access_logs => previews_go_after_15_minutes_and_access_logs_after_12_months;
    blocked_kept => a_blocked_account_is_kept_12_months;
    legal_hold => a_legal_hold_stops_every_purge_until_released;
    held_archive => held_data_past_its_date_is_archived_and_read_only_under_the_hold;
    concurrent_sweeps => concurrent_sweeps_purge_each_item_once;
    compliance_endpoints => compliance_endpoints_check_roles_and_input;
}

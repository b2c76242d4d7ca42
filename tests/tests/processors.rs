//! The outbox (R4, R12, R14, R15) against local stand-ins of the processors' APIs: each
//! records what it receives and answers as the test scripts it (failures first: 500, then
//! 429 with `Retry-After`). End to end on both backends, on the manual clock.

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::IntoResponse;
use axum::Router;
use lightwidget_api::settings::{
    AnalyticsSettings, CloudflareSettings, ProcessorSettings, SendGridSettings, ZendeskSettings,
};
use lightwidget_tests::{billing, both, Backend, TestApp, TestConfig, ADMIN_TOKEN};
use serde_json::{json, Value};
use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

/// One request a stand-in received.
#[derive(Clone, Debug)]
struct Received {
    method: String,
    path: String,
    authorization: Option<String>,
    idempotency_key: Option<String>,
    body: Value,
}

/// An answer a stand-in is scripted to give: a status and its `Retry-After` seconds.
type Scripted = (u16, Option<u64>);

/// A processor's stand-in: answers from its script (then `ok` for ever) and records every
/// request.
#[derive(Clone)]
struct StandIn {
    received: Arc<Mutex<Vec<Received>>>,
    script: Arc<Mutex<VecDeque<Scripted>>>,
    ok: u16,
    url: String,
}

impl StandIn {
    async fn start(ok: u16, script: &[Scripted]) -> StandIn {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let url = format!("http://{}", listener.local_addr().expect("addr"));
        let me = StandIn {
            received: Arc::default(),
            script: Arc::new(Mutex::new(script.iter().copied().collect())),
            ok,
            url,
        };
        let app = Router::new().fallback(answer).with_state(me.clone());
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        me
    }

    fn received(&self) -> Vec<Received> {
        self.received.lock().expect("lock").clone()
    }

    /// Waits (bounded) until at least `n` requests came in.
    async fn until(&self, n: usize) -> Vec<Received> {
        for _ in 0..400 {
            let got = self.received();
            if got.len() >= n {
                return got;
            }
            tokio::time::sleep(std::time::Duration::from_millis(25)).await;
        }
        panic!("{} requests expected, got {:?}", n, self.received());
    }
}

async fn answer(
    State(me): State<StandIn>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> impl IntoResponse {
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    me.received.lock().expect("lock").push(Received {
        method: method.to_string(),
        path: uri.to_string(),
        authorization: header("authorization"),
        idempotency_key: header("idempotency-key"),
        body: serde_json::from_slice(&body).unwrap_or(Value::Null),
    });
    let next = me.script.lock().expect("lock").pop_front();
    let (status, retry_after) = next.unwrap_or((me.ok, None));
    let mut out = HeaderMap::new();
    if let Some(s) = retry_after {
        out.insert("retry-after", s.to_string().parse().expect("header"));
    }
    (
        StatusCode::from_u16(status).expect("status"),
        out,
        "{}".to_owned(),
    )
}

struct Processors {
    mail: StandIn,
    tickets: StandIn,
    cdn: StandIn,
    analytics: Option<StandIn>,
}

impl Processors {
    fn settings(&self, give_up_after: Option<std::time::Duration>) -> ProcessorSettings {
        ProcessorSettings {
            sendgrid: Some(SendGridSettings {
                url: self.mail.url.clone(),
                api_key: "SG.test-key".into(),
                from: "shop@lightwidget.test".into(),
                editor: "editor@lightwidget.test".into(),
            }),
            zendesk: Some(ZendeskSettings {
                url: self.tickets.url.clone(),
                email: "agent@lightwidget.test".into(),
                token: "zd-token".into(),
            }),
            cloudflare: Some(CloudflareSettings {
                url: self.cdn.url.clone(),
                zone: "zone-1".into(),
                token: "cf-token".into(),
                public_url: "https://widgets.lightwidget.test".into(),
            }),
            analytics: self.analytics.as_ref().map(|a| AnalyticsSettings {
                url: a.url.clone(),
                measurement_id: "G-TEST".into(),
                api_secret: "ga-secret".into(),
                public_url: "https://widgets.lightwidget.test".into(),
            }),
            give_up_after,
            retry_base: None,
            lease: None,
        }
    }
}

async fn spawn(backend: Backend, p: &Processors, give_up: Option<u64>) -> TestApp {
    lightwidget_tests::spawn_app_with(
        backend,
        TestConfig {
            processors: p.settings(give_up.map(std::time::Duration::from_secs)),
            ..Default::default()
        },
    )
    .await
}

/// The outbox as the admin reads it, waiting until the message `kind` is in `state`.
async fn outbox_until(app: &TestApp, kind: &str, state: &str) -> Value {
    for _ in 0..400 {
        let r = app
            .get("/v1/admin/outbox", Some(ADMIN_TOKEN))
            .await
            .expect(200);
        if let Some(m) = r["items"]
            .as_array()
            .expect("items")
            .iter()
            .find(|m| m["kind"] == kind && m["state"] == state)
        {
            return m.clone();
        }
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
    }
    let r = app.get("/v1/admin/outbox", Some(ADMIN_TOKEN)).await;
    panic!("no {kind} message {state}: {}", r.body);
}

/// The message `kind` once its attempt `attempts` was answered (not in flight any more).
async fn answered(app: &TestApp, kind: &str, attempts: u64) -> Value {
    for _ in 0..400 {
        let r = app
            .get("/v1/admin/outbox", Some(ADMIN_TOKEN))
            .await
            .expect(200);
        if let Some(m) = r["items"].as_array().expect("items").iter().find(|m| {
            m["kind"] == kind
                && m["attempts"].as_u64() >= Some(attempts)
                && m["state"] != "in_flight"
        }) {
            return m.clone();
        }
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
    }
    let r = app.get("/v1/admin/outbox", Some(ADMIN_TOKEN)).await;
    panic!("no {kind} message answered {attempts} times: {}", r.body);
}

fn basic(user: &str, password: &str) -> String {
    use base64::Engine;
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"))
    )
}

/// A ticket reaches the ticketing with the fields filled in, through a 500 and a 429: the
/// same message id on every attempt, backed off, then sent (R4).
async fn a_ticket_reaches_the_ticketing_through_failures(backend: Backend) {
    let p = Processors {
        mail: StandIn::start(202, &[]).await,
        tickets: StandIn::start(201, &[(500, None), (429, Some(120))]).await,
        cdn: StandIn::start(200, &[]).await,
        analytics: None,
    };
    let app = spawn(backend, &p, None).await;
    let r = app
        .post(
            "/v1/support/tickets",
            None,
            json!({"email": "ola@example.com", "message": "My widget is empty"}),
        )
        .await
        .expect(201);
    assert!(r["ticket_id"].is_string());
    // The first attempt goes at once and fails with 500.
    let first = p.tickets.until(1).await;
    let failed = answered(&app, "ticket", 1).await;
    assert_eq!(failed["state"], "pending");
    assert_eq!(failed["last_error"], "HTTP 500");
    // The second after the backoff: 429 asking for two minutes.
    app.advance(chrono::Duration::minutes(1)).await;
    p.tickets.until(2).await;
    let throttled = answered(&app, "ticket", 2).await;
    assert_eq!(throttled["state"], "pending");
    assert_eq!(throttled["last_error"], "HTTP 429");
    let next: chrono::DateTime<chrono::Utc> = throttled["next_attempt_at"]
        .as_str()
        .and_then(|t| t.parse().ok())
        .expect("a next attempt");
    let now = lightwidget_store::Clock::now(&*app.clock);
    assert!(
        next >= now + chrono::Duration::seconds(119),
        "Retry-After is honoured: {next} vs {now}"
    );
    app.advance(chrono::Duration::seconds(121)).await;
    let all = p.tickets.until(3).await;
    let sent = outbox_until(&app, "ticket", "sent").await;
    assert_eq!(sent["attempts"], 3);
    assert_eq!(sent["last_error"], Value::Null);

    let id = sent["message_id"].as_str().expect("id").to_owned();
    for r in &all {
        assert_eq!(r.method, "POST");
        assert_eq!(r.path, "/api/v2/tickets.json");
        assert_eq!(
            r.authorization.as_deref(),
            Some(basic("agent@lightwidget.test/token", "zd-token").as_str())
        );
        assert_eq!(r.idempotency_key.as_deref(), Some(id.as_str()), "one id");
        assert_eq!(r.body["ticket"]["external_id"], id.as_str());
        assert_eq!(r.body["ticket"]["requester"]["email"], "ola@example.com");
        assert_eq!(r.body["ticket"]["comment"]["body"], "My widget is empty");
        assert!(
            r.body["ticket"].get("subject").is_none(),
            "only the fields filled in: {}",
            r.body
        );
    }
    assert_eq!(first[0].body, all[0].body);
    // The admin's view names no personal data.
    let listed = app
        .get("/v1/admin/outbox", Some(ADMIN_TOKEN))
        .await
        .expect(200);
    assert!(!listed.to_string().contains("ola@example.com"), "{listed}");
    for (query, field) in [
        ("state=lost", "state"),
        ("processor=fax", "processor"),
        ("x=1", "x"),
    ] {
        let r = app
            .get(&format!("/v1/admin/outbox?{query}"), Some(ADMIN_TOKEN))
            .await;
        assert_eq!((r.status, r.body["field"].as_str()), (400, Some(field)));
    }
    let (owner, _, _) = app.sign_in("nosy").await;
    assert_eq!(app.get("/v1/admin/outbox", Some(&owner)).await.status, 403);
    app.stop().await;
}

/// Comments notify the editor; an order and its payment mail the billing address; a `pro`
/// widget's page is purged from the CDN when it is upgraded, changed and deleted; a free
/// one's never (R14, R15).
async fn mail_and_cdn_purges_go_out_for_their_causes(backend: Backend) {
    let p = Processors {
        mail: StandIn::start(202, &[]).await,
        tickets: StandIn::start(201, &[]).await,
        cdn: StandIn::start(200, &[]).await,
        analytics: None,
    };
    let app = spawn(backend, &p, None).await;
    app.post(
        "/v1/articles/launch/comments",
        None,
        json!({"author": "Ola", "text": "Nice!"}),
    )
    .await
    .expect(201);
    let mail = p.mail.until(1).await;
    let note = &mail[0];
    assert_eq!(
        (note.method.as_str(), note.path.as_str()),
        ("POST", "/v3/mail/send")
    );
    assert_eq!(note.authorization.as_deref(), Some("Bearer SG.test-key"));
    assert_eq!(
        note.body["personalizations"][0]["to"][0]["email"],
        "editor@lightwidget.test"
    );
    assert_eq!(note.body["from"]["email"], "shop@lightwidget.test");
    let text = note.body["content"][0]["value"].as_str().expect("text");
    assert!(text.contains("Ola") && text.contains("Nice!"), "{text}");
    assert!(!note.body.to_string().contains("127.0.0.1"), "never the IP");
    let sent = outbox_until(&app, "comment_notification", "sent").await;
    assert_eq!(note.body["custom_args"]["message_id"], sent["message_id"]);

    let (token, _, _) = app.sign_in("buyer").await;
    let (pro, _) = app.create_widget(&token, "Pro").await;
    let (free, _) = app.create_widget(&token, "Free").await;
    let cache_control = |w: String, at: u64| {
        let app = &app;
        async move {
            let r = app.get(&format!("/w/{w}?min_position={at}"), None).await;
            assert_eq!(r.status, 200);
            r.headers
                .get("cache-control")
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default()
                .to_owned()
        }
    };
    let head = app.store.head().await.expect("head").position;
    assert_eq!(
        cache_control(pro.clone(), head).await,
        "no-store",
        "free: never cached"
    );
    let order = app.order(&token, &pro, billing()).await;
    let mail = p.mail.until(2).await;
    let confirmation = &mail[1];
    let to = billing()["email"].as_str().expect("email").to_owned();
    assert_eq!(
        confirmation.body["personalizations"][0]["to"][0]["email"],
        to.as_str()
    );
    assert!(confirmation.body["content"][0]["value"]
        .as_str()
        .is_some_and(|t| t.contains(order["order_id"].as_str().expect("order"))));
    let paid = app.pay(&order, "TX-OUTBOX-1").await;
    let invoice = paid["invoice_number"].as_str().expect("invoice").to_owned();
    let at = paid["position"].as_u64().expect("position");
    assert!(
        cache_control(pro.clone(), at).await.starts_with("public"),
        "pro: served through the CDN"
    );
    assert_eq!(cache_control(free.clone(), at).await, "no-store");
    let mail = p.mail.until(3).await;
    assert_eq!(
        mail[2].body["personalizations"][0]["to"][0]["email"],
        to.as_str()
    );
    assert!(mail[2].body["subject"]
        .as_str()
        .is_some_and(|s| s.contains(&invoice)));

    // Upgraded: purged once. Changed: again. The free widget changed: nothing.
    let page = format!("https://widgets.lightwidget.test/w/{pro}");
    let purges = p.cdn.until(1).await;
    assert_eq!(purges[0].path, "/client/v4/zones/zone-1/purge_cache");
    assert_eq!(purges[0].authorization.as_deref(), Some("Bearer cf-token"));
    assert_eq!(purges[0].body, json!({"files": [page]}));
    let patch = |w: &str| {
        let app = &app;
        let token = token.clone();
        let w = w.to_owned();
        async move {
            let current = app
                .get(&format!("/v1/widgets/{w}"), Some(&token))
                .await
                .expect(200);
            let r = app
                .client
                .patch(app.url(&format!("/v1/widgets/{w}")))
                .bearer_auth(&token)
                .header("If-Match", current["version"].to_string())
                .json(&json!({"title": "Changed"}))
                .send()
                .await
                .expect("patch");
            assert_eq!(r.status(), 200);
        }
    };
    patch(&free).await;
    patch(&pro).await;
    let purges = p.cdn.until(2).await;
    assert_eq!(purges[1].body, json!({"files": [page]}));
    app.delete(&format!("/v1/widgets/{free}"), Some(&token))
        .await
        .expect(202);
    app.delete(&format!("/v1/widgets/{pro}"), Some(&token))
        .await
        .expect(202);
    let purges = p.cdn.until(3).await;
    assert_eq!(purges[2].body, json!({"files": [page]}));
    // Restored: back on the CDN, purged again. Deleted again and purged by the sweep after
    // its quarantine: purged twice more.
    app.post(
        &format!("/v1/widgets/{pro}/restore"),
        Some(&token),
        json!({}),
    )
    .await
    .expect(200);
    let purges = p.cdn.until(4).await;
    assert_eq!(purges[3].body, json!({"files": [page]}));
    app.delete(&format!("/v1/widgets/{pro}"), Some(&token))
        .await
        .expect(202);
    p.cdn.until(5).await;
    app.advance(chrono::Duration::days(91)).await;
    let sweep = app.sweep().await;
    assert!(
        sweep["purged"]
            .as_array()
            .is_some_and(|a| a.iter().any(|i| i["subject_id"] == format!("widget:{pro}"))),
        "{sweep}"
    );
    let purges = p.cdn.until(6).await;
    assert_eq!(purges[5].body, json!({"files": [page]}));
    // Every message sent, and the free widget's page was never purged.
    let head = app.store.head().await.expect("head").position;
    let r = app
        .get(
            &format!("/v1/admin/outbox?processor=cdn&min_position={head}"),
            Some(ADMIN_TOKEN),
        )
        .await
        .expect(200);
    assert_eq!(r["items"].as_array().map(Vec::len), Some(6), "{r}");
    assert!(p
        .cdn
        .received()
        .iter()
        .all(|r| !r.body.to_string().contains(&free)));
    app.stop().await;
}

/// A processor down for the whole window: the message is dead, the admin sees it, and the
/// server stays ready (the processor is not ours).
async fn a_processor_down_for_the_window_makes_the_message_dead(backend: Backend) {
    let p = Processors {
        mail: StandIn::start(202, &[]).await,
        tickets: StandIn::start(503, &[]).await,
        cdn: StandIn::start(200, &[]).await,
        analytics: None,
    };
    let app = spawn(backend, &p, Some(600)).await;
    app.post(
        "/v1/support/tickets",
        None,
        json!({"email": "ola@example.com", "subject": "Down"}),
    )
    .await
    .expect(201);
    let mut tries = 1;
    p.tickets.until(tries).await;
    loop {
        let m = answered(&app, "ticket", tries as u64).await;
        assert_eq!(m["last_error"], "HTTP 503");
        if m["state"] == "dead" {
            assert_eq!(m["next_attempt_at"], Value::Null);
            break;
        }
        assert_eq!(m["state"], "pending");
        assert!(tries < 30, "never given up: {m}");
        let _ = app.get("/readyz", None).await.expect(200);
        // Past the backoff (at most 10 minutes) to the next attempt.
        app.advance(chrono::Duration::minutes(10)).await;
        tries += 1;
        p.tickets.until(tries).await;
    }
    assert!(tries >= 2, "retried before giving up");
    // The admin's gauge counts it. The recorder is the process's, shared by the tests
    // running at once, each scrape setting it from its own server: read until ours.
    let line = r#"lw_outbox_messages{processor="ticketing",state="dead"} 1"#;
    let mut seen = false;
    for _ in 0..5 {
        let metrics = app.get("/metrics", None).await;
        if metrics.text().lines().any(|l| l == line) {
            seen = true;
            break;
        }
    }
    assert!(seen, "{line} in /metrics");
    let count = p.tickets.received().len();
    app.advance(chrono::Duration::hours(2)).await;
    let r = app.get("/readyz", None).await;
    assert_eq!(r.status, 200, "{}", r.body);
    // Dead is final: nothing more is sent.
    let _ = outbox_until(&app, "ticket", "dead").await;
    assert_eq!(p.tickets.received().len(), count);
    app.stop().await;
}

/// A message whose data is erased before delivery is cancelled, never sent with erased
/// data (R23).
async fn an_erased_message_is_cancelled_not_sent(backend: Backend) {
    let p = Processors {
        mail: StandIn::start(202, &[]).await,
        tickets: StandIn::start(500, &[]).await,
        cdn: StandIn::start(200, &[]).await,
        analytics: None,
    };
    // Given up only after three years: the erasure comes first.
    let app = spawn(backend, &p, Some(3 * 366 * 86_400)).await;
    app.post(
        "/v1/support/tickets",
        None,
        json!({"email": "gone@example.com", "message": "forget me"}),
    )
    .await
    .expect(201);
    p.tickets.until(1).await;
    let _ = outbox_until(&app, "ticket", "pending").await;
    // Past the ticket's 24 months: the sweep erases it.
    app.advance(chrono::Duration::days(732)).await;
    let sweep = app.sweep().await;
    assert!(
        sweep["purged"]
            .as_array()
            .is_some_and(|p| p.iter().any(|i| i["category"] == "support")),
        "{sweep}"
    );
    let after_erasure = p.tickets.received().len();
    app.advance(chrono::Duration::minutes(11)).await;
    let cancelled = outbox_until(&app, "ticket", "cancelled").await;
    assert_eq!(cancelled["next_attempt_at"], Value::Null);
    // At most an attempt that was already in flight when the key went; none after.
    assert!(p.tickets.received().len() <= after_erasure + 1);
    let settled = p.tickets.received().len();
    app.advance(chrono::Duration::hours(1)).await;
    let _ = outbox_until(&app, "ticket", "cancelled").await;
    assert_eq!(p.tickets.received().len(), settled, "cancelled is final");
    app.stop().await;
}

/// A page view goes to analytics only for a visitor who consented, without `DNT: 1`, with
/// the IP anonymized and the visitor's id as the client id (R3).
async fn page_views_reach_analytics_only_with_consent(backend: Backend) {
    let p = Processors {
        mail: StandIn::start(202, &[]).await,
        tickets: StandIn::start(201, &[]).await,
        cdn: StandIn::start(200, &[]).await,
        analytics: Some(StandIn::start(204, &[]).await),
    };
    let ga = p.analytics.clone().expect("analytics");
    let app = spawn(backend, &p, None).await;
    let (token, _, _) = app.sign_in("pages").await;
    let (w, at) = app.create_widget(&token, "Seen").await;
    let consenting = uuid::Uuid::new_v4();
    let silent = uuid::Uuid::new_v4();
    let consent = |visitor: uuid::Uuid, analytics: bool| {
        let app = &app;
        async move {
            app.call(
                reqwest::Method::PUT,
                &format!("/v1/consent/{visitor}"),
                None,
                Some(json!({ "analytics": analytics })),
            )
            .await
            .expect(200);
        }
    };
    let view = |visitor: Option<uuid::Uuid>, dnt: bool| {
        let app = &app;
        let w = w.clone();
        async move {
            let query = visitor.map(|v| format!("&visitor={v}")).unwrap_or_default();
            let mut r = app
                .client
                .get(app.url(&format!("/w/{w}?min_position={at}{query}")));
            if dnt {
                r = r.header("DNT", "1");
            }
            assert_eq!(app.send(r).await.status, 200);
        }
    };
    consent(consenting, true).await;
    view(Some(consenting), false).await;
    let got = ga.until(1).await;
    let hit = &got[0];
    assert_eq!(hit.method, "POST");
    assert_eq!(
        hit.path,
        "/mp/collect?measurement_id=G-TEST&api_secret=ga-secret"
    );
    assert_eq!(hit.body["client_id"], consenting.to_string());
    assert_eq!(hit.body["ip_override"], "127.0.0.0", "anonymized");
    assert_eq!(hit.body["events"][0]["name"], "page_view");
    assert_eq!(
        hit.body["events"][0]["params"]["page_location"],
        format!("https://widgets.lightwidget.test/w/{w}")
    );
    let sent = outbox_until(&app, "page_view", "sent").await;
    assert_eq!(
        hit.body["events"][0]["params"]["lw_message_id"],
        sent["message_id"]
    );
    // No consent, DNT, no visitor, a withdrawal: nothing more goes to analytics.
    view(Some(silent), false).await;
    view(Some(consenting), true).await;
    view(None, false).await;
    consent(consenting, false).await;
    view(Some(consenting), false).await;
    // A bad visitor id is refused, naming the parameter.
    let r = app.get(&format!("/w/{w}?visitor=not-a-uuid"), None).await;
    assert_eq!((r.status, r.body["field"].as_str()), (400, Some("visitor")));
    // The five views (and any analytics message they queue) are stored before the count.
    app.views_stored(5).await;
    let head = app.store.head().await.expect("head").position;
    let r = app
        .get(
            &format!("/v1/admin/outbox?processor=analytics&min_position={head}"),
            Some(ADMIN_TOKEN),
        )
        .await
        .expect(200);
    assert_eq!(r["items"].as_array().map(Vec::len), Some(1), "{r}");
    assert_eq!(ga.received().len(), 1);
    // The views themselves were all recorded.
    let stats = app
        .get(
            &format!("/v1/widgets/{w}/stats?min_position={head}"),
            Some(&token),
        )
        .await
        .expect(200);
    assert_eq!(stats["views"], 5);
    app.stop().await;
}

both! {
    page_views_to_analytics => page_views_reach_analytics_only_with_consent;
    ticket_through_failures => a_ticket_reaches_the_ticketing_through_failures;
    mail_and_cdn => mail_and_cdn_purges_go_out_for_their_causes;
    processor_down => a_processor_down_for_the_window_makes_the_message_dead;
    erased_message => an_erased_message_is_cancelled_not_sent;
}

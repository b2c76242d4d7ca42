//! API.md's conventions through real HTTP on both backends: errors, body limit, idempotency
//! keys, read-your-writes, blocked accounts, the manual clock, the role matrix, the OpenAPI
//! document and the metrics.

use lightwidget_domain::event::AccountBlocked;
use lightwidget_domain::{AccountId, Category, DomainEvent, Personal, StaffId, Subject};
use lightwidget_store::{AppendRequest, ExpectedVersion, Metadata, NewEvent};
use lightwidget_tests::{both, Backend, TestApp, TestConfig, ADMIN_TOKEN};
use reqwest::Method;
use serde_json::{json, Value};

async fn bodies_are_checked(backend: Backend) {
    let app = lightwidget_tests::spawn_app(backend).await;
    let (token, _, _) = app.sign_in("alice").await;
    let before = app.store.head().await.expect("head").position;
    let big = format!(
        "{{\"title\": \"{}\", \"layout\": \"grid\", \"columns\": 1}}",
        "a".repeat(1024 * 1024)
    );
    let r = app
        .send(
            app.client
                .post(app.url("/v1/widgets"))
                .bearer_auth(&token)
                .header("content-type", "application/json")
                .body(big),
        )
        .await;
    assert_eq!(r.status, 413, "{}", r.body);
    assert_eq!(r.headers["content-type"], "application/problem+json");
    for (content_type, body) in [
        ("application/json", "{\"title\": "),
        ("application/json", "[1, 2]"),
        (
            "text/plain",
            "{\"title\": \"t\", \"layout\": \"grid\", \"columns\": 1}",
        ),
    ] {
        let r = app
            .send(
                app.client
                    .post(app.url("/v1/widgets"))
                    .bearer_auth(&token)
                    .header("content-type", content_type)
                    .body(body),
            )
            .await;
        assert!(
            r.status == 400 || r.status == 422,
            "{body}: {} {}",
            r.status,
            r.body
        );
        assert_eq!(r.headers["content-type"], "application/problem+json");
        assert!(
            r.body["type"].is_string() && r.body["title"].is_string(),
            "{}",
            r.body
        );
        assert!(
            r.body["detail"].is_string() && r.body["status"] == r.status,
            "{}",
            r.body
        );
    }
    assert_eq!(app.store.head().await.expect("head").position, before);
    // Unknown routes and methods are problems too.
    let r = app.get("/v1/nothing-here", None).await;
    assert_eq!(
        (r.status, r.headers["content-type"].to_str().ok()),
        (404, Some("application/problem+json"))
    );
    let r = app
        .call(Method::PUT, "/v1/widgets", Some(&token), None)
        .await;
    assert_eq!(r.status, 405);
}

async fn idempotency_keys_replay_the_first_answer(backend: Backend) {
    let app = lightwidget_tests::spawn_app(backend).await;
    let (token, _, _) = app.sign_in("alice").await;
    let post = |key: &str, body: Value, path: &str| {
        app.client
            .post(app.url(path))
            .bearer_auth(&token)
            .header("idempotency-key", key)
            .json(&body)
    };
    let body = json!({"title": "once", "layout": "grid", "columns": 2});
    let first = app
        .send(post("k-1", body.clone(), "/v1/widgets"))
        .await
        .expect(201);
    let head = app.store.head().await.expect("head").position;
    let again = app
        .send(post("k-1", body.clone(), "/v1/widgets"))
        .await
        .expect(201);
    assert_eq!(first, again, "the same answer");
    assert_eq!(
        app.store.head().await.expect("head").position,
        head,
        "nothing appended"
    );
    let other = json!({"title": "twice", "layout": "grid", "columns": 2});
    let r = app.send(post("k-1", other, "/v1/widgets")).await;
    assert_eq!(r.status, 422, "{}", r.body);
    assert_eq!(r.body["field"], "Idempotency-Key");
    let r = app.send(post("k-1", body.clone(), "/v1/previews")).await;
    assert_eq!(
        r.status, 422,
        "the same key on another endpoint: {}",
        r.body
    );
    assert_eq!(app.store.head().await.expect("head").position, head);
    // Another caller's identical key is theirs alone.
    let (bob, _, _) = app.sign_in("bob").await;
    let r = app
        .send(
            app.client
                .post(app.url("/v1/widgets"))
                .bearer_auth(&bob)
                .header("idempotency-key", "k-1")
                .json(&body),
        )
        .await
        .expect(201);
    assert_ne!(r["widget_id"], first["widget_id"]);
    let list = app
        .get(
            &format!("/v1/widgets?min_position={}", r["position"]),
            Some(&token),
        )
        .await
        .expect(200);
    assert_eq!(list["widgets"].as_array().map(Vec::len), Some(1));
}

/// A `min_position` past the log's head cannot be reached by waiting: 400 naming it, at
/// once; the head itself is served.
async fn min_position_past_the_head_is_400(backend: Backend) {
    let app = lightwidget_tests::spawn_app(backend).await;
    let (token, _, _) = app.sign_in("alice").await;
    let head = app.store.head().await.expect("head").position;
    let r = app
        .get(
            &format!("/v1/widgets?min_position={}", head + 1),
            Some(&token),
        )
        .await;
    assert_eq!(
        (r.status, r.body["field"].as_str()),
        (400, Some("min_position")),
        "{}",
        r.body
    );
    app.get(&format!("/v1/widgets?min_position={head}"), Some(&token))
        .await
        .expect(200);
    let r = app.get("/v1/widgets?min_position=abc", Some(&token)).await;
    assert_eq!(r.status, 400);
}

async fn blocked_accounts_cannot_act(backend: Backend) {
    let app = lightwidget_tests::spawn_app(backend).await;
    let (token, account, _) = app.sign_in("alice").await;
    let (w, _) = app.create_widget(&token, "w").await;
    let account: AccountId = account.parse().expect("id");
    let version = app
        .store
        .read_stream(&account.stream(), 0, 100)
        .await
        .expect("read")
        .len() as u64;
    let now = {
        use lightwidget_store::Clock;
        app.clock.now()
    };
    let blocked: DomainEvent = AccountBlocked {
        account_id: account,
        blocked_by: StaffId::new(),
        reason: Personal::new(
            Subject::account(account),
            Category::Security,
            "fraud".into(),
        ),
        blocked_at: now,
        hold_until: now + chrono::Duration::days(365),
    }
    .into();
    let position = app
        .store
        .append(AppendRequest::single(
            account.stream(),
            ExpectedVersion::Exact(version),
            vec![NewEvent::from_domain(&blocked, &Metadata::system())],
        ))
        .await
        .expect("append")
        .last_position;
    let widget = json!({"title": "t", "layout": "grid", "columns": 1});
    assert_eq!(
        app.post("/v1/widgets", Some(&token), widget.clone())
            .await
            .status,
        403
    );
    assert_eq!(
        app.post("/v1/previews", Some(&token), widget).await.status,
        403
    );
    assert_eq!(
        app.delete(&format!("/v1/widgets/{w}"), Some(&token))
            .await
            .status,
        403
    );
    assert_eq!(app.delete("/v1/me", Some(&token)).await.status, 403);
    let r = app
        .post(
            &format!("/v1/widgets/{w}/upgrade"),
            Some(&token),
            json!({"plan": "pro", "billing": {"name": "A", "address": "B", "email": "a@b.io", "country": "US"}}),
        )
        .await;
    assert_eq!(r.status, 403);
    let r = app
        .send(
            app.client
                .patch(app.url(&format!("/v1/widgets/{w}")))
                .bearer_auth(&token)
                .header("if-match", "1")
                .json(&json!({"title": "x"})),
        )
        .await;
    assert_eq!(r.status, 403);
    // A blocked account signs in no more.
    assert_eq!(
        app.post("/v1/auth/instagram", None, json!({"code": "demo:alice"}))
            .await
            .status,
        403
    );
    // Nothing refused was appended.
    let appended = appended_since(&app, position).await;
    assert!(appended.is_empty(), "refused, yet appended {appended:?}");
    // Reading stays possible, and says blocked.
    let me = app
        .get(&format!("/v1/me?min_position={position}"), Some(&token))
        .await
        .expect(200);
    assert_eq!(me["status"], "blocked");
}

async fn the_manual_clock_moves_for_the_admin_only(backend: Backend) {
    let app = lightwidget_tests::spawn_app(backend).await;
    let (owner, _, _) = app.sign_in("alice").await;
    let before = {
        use lightwidget_store::Clock;
        app.clock.now()
    };
    let r = app
        .post(
            "/v1/admin/clock",
            Some(ADMIN_TOKEN),
            json!({"advance_seconds": 3600}),
        )
        .await
        .expect(200);
    let now = chrono::DateTime::parse_from_rfc3339(r["now"].as_str().expect("now")).expect("time");
    // The answer is stored-time precision (microseconds): within a second of an hour on.
    let moved = (now.with_timezone(&chrono::Utc) - before).num_milliseconds();
    assert!((3_599_000..=3_600_000).contains(&moved), "{moved}");
    let r = app
        .post(
            "/v1/admin/clock",
            Some(ADMIN_TOKEN),
            json!({"advance_seconds": -5}),
        )
        .await;
    assert_eq!(
        (r.status, r.body["field"].as_str()),
        (422, Some("advance_seconds"))
    );
    let r = app
        .post(
            "/v1/admin/clock",
            Some(&owner),
            json!({"advance_seconds": 1}),
        )
        .await;
    assert_eq!(r.status, 403);
    let r = app
        .post("/v1/admin/clock", None, json!({"advance_seconds": 1}))
        .await;
    assert_eq!(r.status, 401);

    let system = lightwidget_tests::spawn_app_with(
        backend,
        TestConfig {
            system_clock: true,
            ..Default::default()
        },
    )
    .await;
    let r = system
        .post(
            "/v1/admin/clock",
            Some(ADMIN_TOKEN),
            json!({"advance_seconds": 1}),
        )
        .await;
    assert_eq!(r.status, 404);
}

/// Who calls, in the role matrix.
#[derive(Clone, Copy, Debug)]
enum Who {
    Owner,
    OtherOwner,
    Security,
    Compliance,
    Auditor,
    Admin,
    Nobody,
}

const EVERYONE: [Who; 7] = [
    Who::Nobody,
    Who::OtherOwner,
    Who::Security,
    Who::Compliance,
    Who::Auditor,
    Who::Admin,
    Who::Owner,
];

async fn the_role_matrix(backend: Backend) {
    let app = lightwidget_tests::spawn_app(backend).await;
    let (owner, _, _) = app.sign_in("alice").await;
    let (other, _, _) = app.sign_in("mallory").await;
    let security = app.staff("security").await;
    let compliance = app.staff("compliance").await;
    let auditor = app.staff("auditor").await;
    let (w, p) = app.create_widget(&owner, "matrix").await;
    app.get(&format!("/v1/widgets/{w}?min_position={p}"), Some(&owner))
        .await
        .expect(200);
    let token = |who: Who| -> Option<&str> {
        match who {
            Who::Owner => Some(&owner),
            Who::OtherOwner => Some(&other),
            Who::Security => Some(&security),
            Who::Compliance => Some(&compliance),
            Who::Auditor => Some(&auditor),
            Who::Admin => Some(ADMIN_TOKEN),
            Who::Nobody => None,
        }
    };
    let widget = json!({"title": "t", "layout": "grid", "columns": 1});
    let billing = json!({"plan": "pro", "billing": {"name": "A", "address": "B", "email": "a@b.io", "country": "US"}});
    // (method, path, body, expected status per caller in EVERYONE's order)
    let owners_only = |own: u16, other: u16| [401, other, 403, 403, 403, 403, own];
    let cases: Vec<(Method, String, Option<Value>, [u16; 7])> = vec![
        (Method::GET, "/healthz".into(), None, [200; 7]),
        (Method::GET, "/v1/me".into(), None, owners_only(200, 200)),
        (
            Method::GET,
            "/v1/widgets".into(),
            None,
            owners_only(200, 200),
        ),
        (
            Method::GET,
            format!("/v1/widgets/{w}"),
            None,
            owners_only(200, 404),
        ),
        (
            Method::GET,
            format!("/v1/widgets/{w}/stats"),
            None,
            owners_only(200, 404),
        ),
        (
            Method::POST,
            "/v1/widgets".into(),
            Some(widget.clone()),
            owners_only(201, 201),
        ),
        (
            Method::POST,
            "/v1/previews".into(),
            Some(widget.clone()),
            owners_only(201, 201),
        ),
        (
            Method::POST,
            format!("/v1/widgets/{w}/upgrade"),
            Some(billing),
            owners_only(201, 404),
        ),
        (
            Method::GET,
            "/v1/invoices".into(),
            None,
            [401, 200, 403, 200, 403, 200, 200],
        ),
        (
            Method::POST,
            "/v1/staff".into(),
            Some(json!({"name": "n", "role": "auditor"})),
            [401, 403, 403, 403, 403, 201, 403],
        ),
        (
            Method::POST,
            "/v1/admin/clock".into(),
            Some(json!({"advance_seconds": 0})),
            [401, 403, 403, 403, 403, 200, 403],
        ),
        (Method::GET, format!("/w/{w}"), None, [200; 7]),
        (
            Method::DELETE,
            format!("/v1/widgets/{w}"),
            None,
            owners_only(202, 404),
        ),
        (
            Method::POST,
            format!("/v1/widgets/{w}/restore"),
            Some(json!({})),
            owners_only(200, 404),
        ),
        (Method::DELETE, "/v1/me".into(), None, owners_only(202, 202)),
        (
            Method::POST,
            "/v1/me/restore".into(),
            Some(json!({})),
            owners_only(200, 200),
        ),
    ];
    let (mut views, _) = app.stored_views().await;
    for (method, path, body, expected) in cases {
        for (who, want) in EVERYONE.iter().zip(expected) {
            let before = app.store.head().await.expect("head").position;
            let r = app
                .call(method.clone(), &path, token(*who), body.clone())
                .await;
            assert_eq!(r.status, want, "{method} {path} as {who:?}: {}", r.body);
            if path.starts_with("/w/") && r.status == 200 {
                // The page's view is queued: stored before the next call is looked at.
                views += 1;
                app.views_stored(views).await;
            }
            if want >= 400 {
                let appended = appended_since(&app, before).await;
                assert!(
                    appended.is_empty(),
                    "{method} {path} as {who:?} was refused but appended {appended:?}"
                );
            }
        }
    }
}

/// What was appended after `after`, as (stream, type), leaving out what the server appends
/// on its own in the background (a page view's media fetch).
async fn appended_since(app: &TestApp, after: u64) -> Vec<(String, String)> {
    app.store
        .read_all_raw(after, 1000)
        .await
        .expect("read the log")
        .into_iter()
        .filter(|e| !e.stream.starts_with("media-"))
        .map(|e| (e.stream, e.event_type))
        .collect()
}

/// Every route of API.md that this server serves, as `METHOD path` with OpenAPI's braces.
const ROUTES: &[&str] = &[
    "GET /healthz",
    "GET /readyz",
    "GET /metrics",
    "GET /openapi.json",
    "POST /v1/auth/instagram",
    "GET /v1/me",
    "DELETE /v1/me",
    "POST /v1/me/restore",
    "POST /v1/previews",
    "GET /v1/previews/{id}",
    "POST /v1/widgets",
    "GET /v1/widgets",
    "GET /v1/widgets/{id}",
    "PATCH /v1/widgets/{id}",
    "DELETE /v1/widgets/{id}",
    "POST /v1/widgets/{id}/restore",
    "GET /w/{id}",
    "POST /w/{id}/click",
    "GET /v1/widgets/{id}/stats",
    "POST /v1/widgets/{id}/upgrade",
    "POST /v1/payments/paypal",
    "GET /v1/invoices",
    "GET /v1/invoices/{number}",
    "POST /v1/staff",
    "GET /v1/staff",
    "DELETE /v1/staff/{staff_id}",
    "POST /v1/admin/token",
    "DELETE /v1/auth/session",
    "POST /v1/security/accounts/{id}/block",
    "POST /v1/security/accounts/{id}/unblock",
    "POST /v1/compliance/holds",
    "DELETE /v1/compliance/holds/{hold_id}",
    "GET /v1/compliance/holds/{hold_id}/data",
    "POST /v1/admin/clock",
    "GET /v1/admin/outbox",
    "GET /v1/compliance/retention",
    "GET /v1/compliance/subjects/{subject_id}",
    "GET /v1/compliance/purges",
    "POST /v1/admin/retention/run",
    "POST /v1/articles/{slug}/comments",
    "GET /v1/articles/{slug}/comments",
    "POST /v1/support/tickets",
    "GET /v1/audit/events",
    "GET /v1/log/checkpoint",
    "GET /v1/log/key",
    "GET /v1/log/proof/consistency",
    "GET /v1/log/proof/inclusion",
    "GET /v1/log/checkpoints",
    "GET /v1/log/receipts/{token}",
    "GET /v1/audit/verify",
    "GET /v1/audit/replay/{projection}",
    "GET /v1/security/accounts/{id}",
    "GET /v1/me/export",
    "GET /v1/privacy/processors",
    "PUT /v1/consent/{visitor_id}",
    "GET /v1/consent/{visitor_id}",
    "GET /v1/privacy/policies",
    "POST /v1/privacy/policies",
    "POST /v1/compliance/breaches",
    "GET /v1/compliance/breaches",
    "POST /v1/compliance/breaches/{id}/notified",
];

/// The document tells the truth about errors (issue 22): every operation declares 503 and
/// 408, a secured one 401 (with `WWW-Authenticate`) and 403, a write 429 (with
/// `Retry-After`), one with a body 400/413/415/422, all as `application/problem+json`; every
/// query declares `min_position`; and a query parameter an API operation does not declare is
/// 400 naming it (the public page takes any).
async fn openapi_declares_every_error(backend: Backend) {
    let app = lightwidget_tests::spawn_app(backend).await;
    let doc = app.get("/openapi.json", None).await.expect(200);
    let mut checked = 0;
    for (path, item) in doc["paths"].as_object().expect("paths") {
        for method in ["get", "post", "put", "patch", "delete"] {
            let Some(op) = item.get(method) else { continue };
            let responses = &op["responses"];
            let mut expected = vec!["408", "503"];
            let secured = op["security"].as_array().is_some_and(|s| !s.is_empty());
            if secured {
                expected.extend(["401", "403"]);
            }
            if method != "get" {
                expected.push("429");
            }
            if op.get("requestBody").is_some() {
                expected.extend(["400", "413", "415", "422"]);
            }
            for status in expected {
                let r = &responses[status];
                assert!(
                    r["content"]["application/problem+json"]["schema"]["$ref"]
                        .as_str()
                        .is_some_and(|s| s.ends_with("/Problem")),
                    "{method} {path} {status}: {r}"
                );
            }
            for (status, r) in responses.as_object().expect("responses") {
                if status.as_str() >= "400" {
                    assert!(
                        r["content"].get("application/json").is_none(),
                        "{method} {path} {status}"
                    );
                }
            }
            if secured {
                assert!(responses["401"]["headers"]["WWW-Authenticate"].is_object());
            }
            if method != "get" {
                assert!(responses["429"]["headers"]["Retry-After"].is_object());
            }
            if method == "get" && path.starts_with("/v1/") {
                let params = op["parameters"].as_array().expect("parameters");
                assert!(
                    params
                        .iter()
                        .any(|p| p["name"] == "min_position" && p["in"] == "query"),
                    "{method} {path}"
                );
            }
            checked += 1;
        }
    }
    assert!(checked > 50, "{checked} operations");
    let (token, _, _) = app.sign_in("query").await;
    for (path, field) in [
        ("/v1/widgets?color=red", "color"),
        ("/v1/me?=false", "query"),
        ("/v1/widgets?min_position=0&x=1", "x"),
    ] {
        let r = app.get(path, Some(&token)).await;
        assert_eq!(
            (r.status, r.body["field"].as_str()),
            (400, Some(field)),
            "{path} {}",
            r.body
        );
    }
    app.get("/v1/widgets?min_position=0", Some(&token))
        .await
        .expect(200);
    let (w, at) = app.create_widget(&token, "tagged").await;
    let page = app
        .get(
            &format!("/w/{w}?min_position={at}&utm_source=newsletter"),
            None,
        )
        .await;
    assert_eq!(page.status, 200, "a page takes what an embedding adds");
}

async fn openapi_describes_every_route(backend: Backend) {
    let app = lightwidget_tests::spawn_app(backend).await;
    let doc = app.get("/openapi.json", None).await.expect(200);
    assert!(
        doc["openapi"].as_str().is_some_and(|v| v.starts_with("3.")),
        "{}",
        doc["openapi"]
    );
    let mut described = Vec::new();
    for (path, item) in doc["paths"].as_object().expect("paths") {
        for method in ["get", "post", "put", "patch", "delete"] {
            if item.get(method).is_some() {
                described.push(format!("{} {path}", method.to_uppercase()));
            }
        }
    }
    for route in ROUTES {
        assert!(
            described.contains(&route.to_string()),
            "{route} is not in /openapi.json"
        );
    }
    // And every described route is served: none answers the router's fallback.
    let id = uuid::Uuid::new_v4().to_string();
    for route in &described {
        let (method, path) = route.split_once(' ').expect("route");
        let path = path
            .replace("{id}", &id)
            .replace("{account_id}", &id)
            .replace("{subject_id}", &id)
            .replace("{visitor_id}", &id)
            .replace("{staff_id}", &id)
            .replace("{slug}", "an-article")
            .replace("{projection}", "widgets")
            .replace("{number}", "FV%2F2026%2F000001");
        let method = Method::from_bytes(method.as_bytes()).expect("method");
        let r = app.call(method, &path, None, None).await;
        assert!(
            !(r.status == 404 && r.body["detail"] == "no such route") && r.status != 405,
            "{route} is described but not served: {} {}",
            r.status,
            r.body
        );
    }
    assert!(doc["components"]["securitySchemes"]["bearer"].is_object());
}

async fn metrics_count_requests_per_route(backend: Backend) {
    let app = lightwidget_tests::spawn_app(backend).await;
    let (token, _, _) = app.sign_in("alice").await;
    let (w, _) = app.create_widget(&token, "m").await;
    app.get(&format!("/v1/widgets/{w}"), Some(&token)).await;
    let r = app.get("/metrics", None).await;
    assert_eq!(r.status, 200);
    let text = r.text();
    assert!(
        text.contains(
            "lw_http_requests_total{method=\"POST\",route=\"/v1/widgets\",status=\"201\"}"
        ),
        "{text}"
    );
    assert!(text.contains("route=\"/v1/widgets/{id}\""), "{text}");
    assert!(
        text.contains("lw_http_request_duration_seconds_bucket"),
        "{text}"
    );
    assert!(
        text.contains("lw_projection_lag_events{projection=\"widgets\"}"),
        "{text}"
    );
    assert!(text.contains("lw_log_head_position"), "{text}");
    // The page's document cache: the widget's page read once, so one miss at least.
    assert_eq!(app.get(&format!("/w/{w}"), None).await.status, 200);
    let scraped = app.get("/metrics", None).await;
    let text = scraped.text();
    let value_of = |name: &str, cache: &str| -> f64 {
        text.lines()
            .find_map(|l| l.strip_prefix(&format!("{name}{{cache=\"{cache}\"}} ")))
            .unwrap_or_else(|| panic!("{name} of {cache} in {text}"))
            .trim()
            .parse()
            .expect("a number")
    };
    let value = |name: &str| value_of(name, "widget_docs");
    assert!(value("lw_cache_misses_total") >= 1.0, "{text}");
    assert!(value("lw_cache_bytes") >= 0.0, "{text}");
    assert!(value("lw_cache_documents") >= 0.0, "{text}");
    assert!(value("lw_cache_hits_total") >= 0.0, "{text}");
    // The owner's token was looked up and its grant kept; the owner's status too, by the
    // widget's creation.
    for cache in ["tokens", "owners"] {
        assert!(value_of("lw_cache_bytes", cache) > 0.0, "{cache}: {text}");
        assert!(
            value_of("lw_cache_documents", cache) >= 1.0,
            "{cache}: {text}"
        );
        assert!(
            value_of("lw_cache_hits_total", cache) + value_of("lw_cache_misses_total", cache)
                >= 1.0,
            "{cache}: {text}"
        );
    }
    assert!(text.contains("lw_store_append_seconds_bucket"), "{text}");
    assert!(text.contains("lw_store_appended_events_total"), "{text}");
    // The page views not yet stored: the oldest one's age, a number of seconds.
    let oldest: f64 = text
        .lines()
        .find_map(|l| l.strip_prefix("lw_page_views_oldest_unstored_seconds "))
        .unwrap_or_else(|| panic!("lw_page_views_oldest_unstored_seconds in {text}"))
        .trim()
        .parse()
        .expect("a number");
    assert!((0.0..5.0).contains(&oldest), "{oldest}");
    assert!(!text.contains(&w), "no ids in metrics");
    assert!(!text.contains(&token), "no tokens in metrics");
}

async fn graceful_stop(app: TestApp) {
    app.stop().await;
}

async fn shutdown_finishes_in_flight_requests(backend: Backend) {
    let app = lightwidget_tests::spawn_app(backend).await;
    let (token, _, _) = app.sign_in("alice").await;
    // A query that waits (for a position its read model cannot reach: the read models are
    // held back) is in flight when the stop comes.
    app.hold_read_models().await;
    app.sign_in("alice").await;
    let head = app.store.head().await.expect("head").position;
    let url = app.url(&format!("/v1/me?min_position={head}"));
    let client = app.client.clone();
    let pending = tokio::spawn(async move {
        client
            .get(url)
            .bearer_auth(token)
            .send()
            .await
            .map(|r| r.status().as_u16())
    });
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    graceful_stop(app).await;
    let status = pending
        .await
        .expect("join")
        .expect("the request got an answer");
    assert_eq!(status, 503, "the in-flight request was answered, not cut");
}

async fn a_request_over_the_timeout_is_a_408_problem(backend: Backend) {
    let app = lightwidget_tests::spawn_app_with(
        backend,
        lightwidget_tests::TestConfig {
            request_timeout: Some(std::time::Duration::from_secs(1)),
            ..Default::default()
        },
    )
    .await;
    let (token, _, _) = app.sign_in("slow").await;
    // Waiting for a position the read models cannot reach (they are held back) would take
    // 5 s; the request timeout is 1 s.
    app.hold_read_models().await;
    app.sign_in("slow").await;
    let head = app.store.head().await.expect("head").position;
    let started = std::time::Instant::now();
    let r = app
        .get(&format!("/v1/me?min_position={head}"), Some(&token))
        .await;
    assert_eq!(r.status, 408, "{r:?}");
    assert!(started.elapsed() < std::time::Duration::from_secs(4));
    assert_eq!(
        r.headers.get("content-type").and_then(|v| v.to_str().ok()),
        Some("application/problem+json")
    );
    assert_eq!(r.body["status"], 408);
    assert!(r.body["detail"].as_str().is_some_and(|d| d.contains("1 s")));
    app.stop().await;
}

/// With a small memory budget (`LW_MEMORY_MB=32`) the public page, owners' commands and
/// tokens still answer, and each cache holds no more than its share (issue 28).
async fn a_small_memory_budget_still_serves(backend: Backend) {
    let app = lightwidget_tests::spawn_app_with(
        backend,
        lightwidget_tests::TestConfig {
            memory_mb: Some(32),
            ..Default::default()
        },
    )
    .await;
    let (token, _, _) = app.sign_in("frugal").await;
    let mut widgets = Vec::new();
    for i in 0..20 {
        widgets.push(app.create_widget(&token, &format!("w{i}")).await);
    }
    for (w, at) in &widgets {
        let r = app.get(&format!("/w/{w}?min_position={at}"), None).await;
        assert_eq!(r.status, 200, "{w}");
    }
    let scraped = app.get("/metrics", None).await;
    let text = scraped.text();
    let bytes = |cache: &str| -> f64 {
        text.lines()
            .find_map(|l| l.strip_prefix(&format!("lw_cache_bytes{{cache=\"{cache}\"}} ")))
            .unwrap_or_else(|| panic!("{cache} in {text}"))
            .trim()
            .parse()
            .expect("a number")
    };
    let budget = lightwidget_api::settings::MemoryBudget::mib(32);
    assert!(bytes("widget_docs") > 0.0, "{text}");
    assert!(
        bytes("widget_docs") <= budget.page_documents() as f64,
        "{text}"
    );
    assert!(bytes("owners") <= budget.owners() as f64, "{text}");
    assert!(bytes("tokens") <= budget.tokens() as f64, "{text}");
}

both! {
    memory_budget => a_small_memory_budget_still_serves;
    request_timeout => a_request_over_the_timeout_is_a_408_problem;
    bodies => bodies_are_checked;
    idempotency => idempotency_keys_replay_the_first_answer;
    min_position => min_position_past_the_head_is_400;
    openapi_errors => openapi_declares_every_error;
    blocked => blocked_accounts_cannot_act;
    clock => the_manual_clock_moves_for_the_admin_only;
    role_matrix => the_role_matrix;
    openapi => openapi_describes_every_route;
    metrics => metrics_count_requests_per_route;
    shutdown => shutdown_finishes_in_flight_requests;
}

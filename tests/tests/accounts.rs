//! Sign-in (R5), the owner's account, deletion into quarantine (R20) and restore, through
//! real HTTP on both backends.

use lightwidget_tests::{both, Backend, TestApp};
use serde_json::json;

fn min(position: u64) -> String {
    format!("?min_position={position}")
}

async fn sign_in_registers_once_and_me_shows_the_account(backend: Backend) {
    let app = lightwidget_tests::spawn_app(backend).await;
    let (token, account, p1) = app.sign_in("alice").await;
    let (token2, account2, p2) = app.sign_in("alice").await;
    assert_eq!(
        account, account2,
        "the same Instagram user finds the same account"
    );
    assert_ne!(token, token2, "every sign-in gets its own token");
    assert!(p2 > p1);
    let (_, bob, _) = app.sign_in("bob").await;
    assert_ne!(bob, account);

    let me = app
        .get(&format!("/v1/me{}", min(p2)), Some(&token))
        .await
        .expect(200);
    assert_eq!(me["account_id"], account.as_str());
    assert_eq!(me["username"], "alice");
    assert_eq!(me["status"], "active");
    assert_eq!(me["widgets"], json!([]));
    // Both tokens work.
    app.get("/v1/me", Some(&token2)).await.expect(200);

    // The token itself is nowhere in the log: only its hash.
    let raw = app.store.read_all_raw(0, 1000).await.expect("read");
    let all: String = raw
        .iter()
        .map(|e| format!("{} {}", e.stream, e.data))
        .collect();
    assert!(!all.contains(&token), "a token was stored in clear");
    assert!(all.contains(&format!(
        "token-{}",
        lightwidget_commands::tokens::token_hash(&token)
    )));
}

async fn bad_sign_ins_store_nothing(backend: Backend) {
    let app = lightwidget_tests::spawn_app(backend).await;
    let before = app.store.head().await.expect("head").position;
    for (body, status, field) in [
        (json!({"code": "not-a-demo-code"}), 422, "code"),
        (json!({"code": ""}), 422, "code"),
        (json!({}), 422, "code"),
        (json!({"code": "demo:x", "password": "p"}), 422, "password"),
        (json!({"code": 5}), 422, "code"),
    ] {
        let r = app.post("/v1/auth/instagram", None, body.clone()).await;
        assert_eq!(r.status, status, "{body}: {}", r.body);
        assert_eq!(r.body["field"], field, "{body}: {}", r.body);
        assert_eq!(r.headers["content-type"], "application/problem+json");
    }
    let r = app
        .send(
            app.client
                .post(app.url("/v1/auth/instagram"))
                .header("content-type", "application/json")
                .body("{\"code\": "),
        )
        .await;
    assert_eq!(r.status, 400, "{}", r.body);
    assert_eq!(app.store.head().await.expect("head").position, before);
}

async fn tokens_are_checked(backend: Backend) {
    let app = lightwidget_tests::spawn_app(backend).await;
    assert_eq!(app.get("/v1/me", None).await.status, 401);
    assert_eq!(app.get("/v1/me", Some("lw_unknown")).await.status, 401);
    let r = app
        .send(
            app.client
                .get(app.url("/v1/me"))
                .header("authorization", "Basic abc"),
        )
        .await;
    assert_eq!(r.status, 401);
    // A staff token is known but is no owner.
    let auditor = app.staff("auditor").await;
    assert_eq!(app.get("/v1/me", Some(&auditor)).await.status, 403);
    // Every 401 tells the client to get a new token (RFC 6750).
    let r = app.get("/v1/me", Some("lw_unknown")).await;
    assert_eq!(
        r.headers
            .get("www-authenticate")
            .and_then(|v| v.to_str().ok()),
        Some("Bearer error=\"invalid_token\"")
    );
}

/// Tokens end `LW_TOKEN_TTL_HOURS` after they are issued, on the server's clock; the
/// installation's admin token does not (issue 21).
async fn tokens_expire_but_the_admin_token(backend: Backend) {
    let app = lightwidget_tests::spawn_app_with(
        backend,
        lightwidget_tests::TestConfig {
            token_ttl: Some(std::time::Duration::from_secs(720 * 3600)),
            ..Default::default()
        },
    )
    .await;
    let signed = app
        .post("/v1/auth/instagram", None, json!({"code": "demo:ttl"}))
        .await
        .expect(200);
    let token = signed["token"].as_str().expect("token").to_owned();
    let expires: chrono::DateTime<chrono::Utc> = signed["expires_at"]
        .as_str()
        .and_then(|t| t.parse().ok())
        .expect("expires_at");
    let hours = (expires - app.clock_now()).num_minutes();
    assert!(
        (720 * 60 - 1..=720 * 60).contains(&hours),
        "{hours} minutes"
    );
    let auditor = app.staff("auditor").await;
    app.advance(chrono::Duration::hours(719)).await;
    app.get("/v1/me", Some(&token)).await.expect(200);
    app.get("/v1/audit/verify", Some(&auditor))
        .await
        .expect(200);
    app.advance(chrono::Duration::hours(2)).await;
    for t in [&token, &auditor] {
        let r = app.get("/v1/audit/verify", Some(t)).await;
        assert_eq!(r.status, 401, "{}", r.body);
        assert!(r.headers.get("www-authenticate").is_some());
    }
    app.get("/v1/audit/verify", Some(lightwidget_tests::ADMIN_TOKEN))
        .await
        .expect(200);
    // Signing in again gives a working token.
    let again = app
        .post("/v1/auth/instagram", None, json!({"code": "demo:ttl"}))
        .await
        .expect(200);
    app.get("/v1/me", again["token"].as_str()).await.expect(200);
}

/// Signing out revokes the calling token, and only it: a `TokenRevoked` on its stream, a 401
/// with `WWW-Authenticate` from then on (also for a second sign-out), while another token of
/// the same account still works (issue 21).
async fn signing_out_revokes_that_token(backend: Backend) {
    let app = lightwidget_tests::spawn_app(backend).await;
    let (token, _, _) = app.sign_in("erin").await;
    let (other, _, _) = app.sign_in("erin").await;
    app.get("/v1/me", Some(&token)).await.expect(200);
    let r = app.delete("/v1/auth/session", Some(&token)).await;
    assert_eq!(r.status, 204, "{}", r.body);
    for path in ["/v1/me", "/v1/widgets"] {
        let r = app.get(path, Some(&token)).await;
        assert_eq!(r.status, 401, "{}", r.body);
        assert_eq!(
            r.headers
                .get("www-authenticate")
                .and_then(|v| v.to_str().ok()),
            Some("Bearer error=\"invalid_token\"")
        );
    }
    let head = app.store.head().await.expect("head").position;
    assert_eq!(
        app.delete("/v1/auth/session", Some(&token)).await.status,
        401
    );
    assert_eq!(app.delete("/v1/auth/session", None).await.status, 401);
    assert_eq!(
        app.store.head().await.expect("head").position,
        head,
        "a refused sign-out records nothing"
    );
    app.get("/v1/me", Some(&other)).await.expect(200);
    let hash = lightwidget_commands::tokens::token_hash(&token);
    let stream = app
        .store
        .read_stream_raw(&format!("token-{hash}"), 0, 10)
        .await
        .expect("read");
    let types: Vec<&str> = stream.iter().map(|e| e.event_type.as_str()).collect();
    assert_eq!(types, ["TokenIssued", "TokenRevoked"]);
    // Staff sign out the same way.
    let auditor = app.staff("auditor").await;
    app.get("/v1/audit/verify", Some(&auditor))
        .await
        .expect(200);
    assert_eq!(
        app.delete("/v1/auth/session", Some(&auditor)).await.status,
        204
    );
    assert_eq!(
        app.get("/v1/audit/verify", Some(&auditor)).await.status,
        401
    );
}

/// Two servers on one PostgreSQL: a token signed out on one answers 401 on the other, which
/// had it cached — at once for a request naming the sign-out's position, and for every
/// request once the other's follower has read the revocation.
async fn a_sign_out_reaches_every_server(backend: Backend) {
    assert_eq!(backend, Backend::Postgres);
    let a = lightwidget_tests::spawn_app(backend).await;
    let b = lightwidget_tests::spawn_beside(&a).await;
    let (token, _, _) = a.sign_in("fay").await;
    let auditor = a.staff("auditor").await;
    b.get("/v1/me", Some(&token)).await.expect(200);
    b.get("/v1/audit/verify", Some(&auditor)).await.expect(200);
    assert_eq!(a.delete("/v1/auth/session", Some(&token)).await.status, 204);
    let head = a.store.head().await.expect("head").position;
    let r = b.get(&format!("/v1/me{}", min(head)), Some(&token)).await;
    assert_eq!(r.status, 401, "{}", r.body);
    // Without a position, once b's token cache has followed the log past the sign-out (b's
    // /readyz tells how far; a bounded wait for that condition, not for time).
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    loop {
        let ready = b.get("/readyz", None).await.expect(200);
        if ready["followers"]["tokens"].as_u64() >= Some(head) {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "{ready}");
        tokio::task::yield_now().await;
    }
    let r = b.get("/v1/me", Some(&token)).await;
    assert_eq!(r.status, 401, "{}", r.body);
    b.get("/v1/audit/verify", Some(&auditor)).await.expect(200);
}

async fn deleting_the_account_quarantines_it_and_its_widgets(backend: Backend) {
    let app = lightwidget_tests::spawn_app(backend).await;
    let (token, _, _) = app.sign_in("carol").await;
    let (w1, _) = app.create_widget(&token, "one").await;
    let (w2, _) = app.create_widget(&token, "two").await;
    let r = app.delete("/v1/me", Some(&token)).await.expect(202);
    let position = r["position"].as_u64().expect("position");
    let until =
        chrono::DateTime::parse_from_rfc3339(r["quarantine_until"].as_str().expect("until"))
            .expect("time");
    let days = (until.with_timezone(&chrono::Utc) - app.clock_now()).num_days();
    assert!((89..=90).contains(&days), "{days}");

    let me = app
        .get(&format!("/v1/me{}", min(position)), Some(&token))
        .await
        .expect(200);
    assert_eq!(me["status"], "quarantined");
    for w in [&w1, &w2] {
        let doc = app
            .get(&format!("/v1/widgets/{w}{}", min(position)), Some(&token))
            .await
            .expect(200);
        assert_eq!(doc["status"], "quarantined");
        assert_eq!(app.get(&format!("/w/{w}"), None).await.status, 404);
    }
    // A quarantined account cannot create widgets, and cannot be deleted twice.
    let r = app
        .post(
            "/v1/widgets",
            Some(&token),
            json!({"title": "x", "layout": "grid", "columns": 1}),
        )
        .await;
    assert_eq!(r.status, 403, "{}", r.body);
    assert_eq!(app.delete("/v1/me", Some(&token)).await.status, 409);

    let r = app
        .post("/v1/me/restore", Some(&token), json!({}))
        .await
        .expect(200);
    let position = r["position"].as_u64().expect("position");
    let me = app
        .get(&format!("/v1/me{}", min(position)), Some(&token))
        .await
        .expect(200);
    assert_eq!(me["status"], "active");
    for w in [&w1, &w2] {
        let doc = app
            .get(&format!("/v1/widgets/{w}{}", min(position)), Some(&token))
            .await
            .expect(200);
        assert_eq!(doc["status"], "active");
    }
    assert_eq!(
        app.post("/v1/me/restore", Some(&token), json!({}))
            .await
            .status,
        409
    );

    // After the 90 days, restore is refused.
    app.delete("/v1/me", Some(&token)).await.expect(202);
    app.clock.advance(chrono::Duration::days(91));
    assert_eq!(
        app.post("/v1/me/restore", Some(&token), json!({}))
            .await
            .status,
        409
    );
}

trait ClockNow {
    fn clock_now(&self) -> chrono::DateTime<chrono::Utc>;
}

impl ClockNow for TestApp {
    fn clock_now(&self) -> chrono::DateTime<chrono::Utc> {
        use lightwidget_store::Clock;
        self.clock.now()
    }
}

both! {
    sign_in => sign_in_registers_once_and_me_shows_the_account;
    bad_sign_in => bad_sign_ins_store_nothing;
    tokens => tokens_are_checked;
    token_expiry => tokens_expire_but_the_admin_token;
    sign_out => signing_out_revokes_that_token;
    account_deletion => deleting_the_account_quarantines_it_and_its_widgets;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_sign_out_reaches_every_server() {
    a_sign_out_reaches_every_server(Backend::Postgres).await
}

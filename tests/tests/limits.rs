//! Rate limits (R17): per client IP on anonymous writes, per token on commands; over the
//! limit 429 with `Retry-After`, and nothing of the request recorded.

use lightwidget_api::settings::RateLimits;
use lightwidget_tests::{both, Backend, TestApp, TestConfig};
use serde_json::json;
use std::num::NonZeroU32;

fn limits(anonymous: u32, token: u32) -> Option<RateLimits> {
    Some(RateLimits {
        anonymous_per_minute: NonZeroU32::new(anonymous).expect("positive"),
        token_per_minute: NonZeroU32::new(token).expect("positive"),
    })
}

/// A comment from `forwarded` (the client behind the trusted proxy): its status.
async fn comment(app: &TestApp, forwarded: &str) -> lightwidget_tests::Reply {
    let r = app
        .client
        .post(app.url("/v1/articles/limits/comments"))
        .header("X-Forwarded-For", forwarded)
        .json(&json!({"author": "A", "text": "t"}));
    app.send(r).await
}

async fn over_the_limit_nothing_is_recorded(backend: Backend) {
    let app = lightwidget_tests::spawn_app_with(
        backend,
        TestConfig {
            rate_limits: limits(3, 5),
            trusted_proxies: vec!["127.0.0.0/8".parse().expect("cidr")],
            ..Default::default()
        },
    )
    .await;
    // The owner signs in from another address than the commenter below.
    let signed = app
        .client
        .post(app.url("/v1/auth/instagram"))
        .header("X-Forwarded-For", "198.51.100.1")
        .json(&json!({"code": "demo:limited"}));
    let signed = app.send(signed).await.expect(200);
    let token = signed["token"].as_str().expect("token").to_owned();
    let (w, at) = app.create_widget(&token, "w").await;
    // The page is served (and the widget known to the public routes) before its clicks.
    app.get(&format!("/w/{w}?min_position={at}"), None)
        .await
        .expect(200);

    // Anonymous writes from one client: 3 a minute, comments and clicks together.
    for _ in 0..2 {
        comment(&app, "203.0.113.7").await.expect(201);
    }
    let click = |forwarded: &'static str| {
        let app = &app;
        let w = w.clone();
        async move {
            let r = app
                .client
                .post(app.url(&format!("/w/{w}/click")))
                .header("X-Forwarded-For", forwarded);
            app.send(r).await.status
        }
    };
    assert_eq!(click("203.0.113.7").await, 204);
    let head = app.store.head().await.expect("head").position;
    let refused = comment(&app, "203.0.113.7").await;
    assert_eq!(refused.status, 429, "{}", refused.body);
    assert_eq!(refused.body["status"], 429);
    let retry: u64 = refused
        .headers
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
        .expect("Retry-After");
    assert!((1..=60).contains(&retry), "{retry}");
    assert_eq!(click("203.0.113.7").await, 429, "a limited click");
    assert_eq!(
        app.store.head().await.expect("head").position,
        head,
        "nothing of a limited request is recorded"
    );
    let stats = app
        .get(
            &format!("/v1/widgets/{w}/stats?min_position={head}"),
            Some(&token),
        )
        .await
        .expect(200);
    assert_eq!(
        stats["clicks"], 1,
        "the limited click is not counted: {stats}"
    );
    // Another client has its own allowance; reads are not limited.
    comment(&app, "203.0.113.8").await.expect(201);
    for _ in 0..5 {
        app.get("/v1/articles/limits/comments", None)
            .await
            .expect(200);
    }

    // Commands: 5 a minute per token (the create above was the first).
    for i in 0..4 {
        app.create_widget(&token, &format!("more {i}")).await;
    }
    let head = app.store.head().await.expect("head").position;
    let r = app
        .post(
            "/v1/widgets",
            Some(&token),
            json!({"title": "one too many", "layout": "grid", "columns": 3}),
        )
        .await;
    assert_eq!(r.status, 429, "{}", r.body);
    assert!(r.headers.get("retry-after").is_some());
    assert_eq!(app.store.head().await.expect("head").position, head);
    // Reads with the same token still answer; another token has its own allowance.
    app.get(&format!("/v1/widgets/{w}?min_position={at}"), Some(&token))
        .await
        .expect(200);
    let other = app
        .client
        .post(app.url("/v1/auth/instagram"))
        .header("X-Forwarded-For", "198.51.100.2")
        .json(&json!({"code": "demo:other"}));
    let other = app.send(other).await.expect(200);
    let other = other["token"].as_str().expect("token").to_owned();
    app.create_widget(&other, "theirs").await;
    app.stop().await;
}

both! {
    over_the_limit => over_the_limit_nothing_is_recorded;
}

//! Previews (R8), widgets, the public page with views and clicks (R1, R2, R9), statistics and
//! quarantine (R18), through real HTTP on both backends.

use lightwidget_tests::{both, Backend};
use reqwest::Method;
use serde_json::json;

async fn previews_live_fifteen_minutes(backend: Backend) {
    let app = lightwidget_tests::spawn_app(backend).await;
    let (token, _, _) = app.sign_in("alice").await;
    let r = app
        .post(
            "/v1/previews",
            Some(&token),
            json!({"title": "<b>Hi</b>", "layout": "slider", "columns": 4}),
        )
        .await
        .expect(201);
    let url = r["url"].as_str().expect("url").to_owned();
    assert!(r["expires_at"].is_string() && r["position"].is_u64(), "{r}");
    let page = app.get(&url, None).await;
    assert_eq!(page.status, 200);
    assert!(
        page.text().contains("&lt;b&gt;Hi&lt;/b&gt;"),
        "{}",
        page.text()
    );
    assert!(!page.text().contains("<b>Hi"));
    app.clock.advance(chrono::Duration::minutes(14));
    assert_eq!(app.get(&url, None).await.status, 200);
    app.clock.advance(chrono::Duration::minutes(1));
    assert_eq!(app.get(&url, None).await.status, 410);
    let unknown = format!("/v1/previews/{}", uuid::Uuid::new_v4());
    assert_eq!(app.get(&unknown, None).await.status, 404);
    assert_eq!(app.get("/v1/previews/not-a-uuid", None).await.status, 404);
    // Owners only.
    let r = app
        .post(
            "/v1/previews",
            None,
            json!({"title": "x", "layout": "grid", "columns": 1}),
        )
        .await;
    assert_eq!(r.status, 401);
}

async fn widgets_are_created_listed_read_and_validated(backend: Backend) {
    let app = lightwidget_tests::spawn_app(backend).await;
    let (token, _, _) = app.sign_in("alice").await;
    let before = app.store.head().await.expect("head").position;
    for (body, field) in [
        (
            json!({"title": "", "layout": "grid", "columns": 3}),
            "title",
        ),
        (
            json!({"title": "t", "layout": "circle", "columns": 3}),
            "layout",
        ),
        (
            json!({"title": "t", "layout": "grid", "columns": 0}),
            "columns",
        ),
        (
            json!({"title": "t", "layout": "grid", "columns": 13}),
            "columns",
        ),
        (
            json!({"title": "t", "layout": "grid", "columns": "3"}),
            "columns",
        ),
        (json!({"title": "t", "layout": "grid"}), "columns"),
        (
            json!({"title": "t", "layout": "grid", "columns": 3, "extra": 1}),
            "extra",
        ),
    ] {
        let r = app.post("/v1/widgets", Some(&token), body.clone()).await;
        assert_eq!(r.status, 422, "{body}: {}", r.body);
        assert_eq!(r.body["field"], field, "{body}: {}", r.body);
    }
    assert_eq!(
        app.store.head().await.expect("head").position,
        before,
        "nothing stored"
    );

    let (id, position) = app.create_widget(&token, "My feed").await;
    let list = app
        .get(
            &format!("/v1/widgets?min_position={position}"),
            Some(&token),
        )
        .await
        .expect(200);
    assert_eq!(list["widgets"].as_array().map(Vec::len), Some(1));
    let w = app.get(&format!("/v1/widgets/{id}"), Some(&token)).await;
    assert_eq!(w.headers["etag"], "\"1\"");
    let w = w.expect(200);
    for (field, value) in [
        ("widget_id", json!(id)),
        ("title", json!("My feed")),
        ("layout", json!("grid")),
        ("columns", json!(3)),
        ("plan", json!("free")),
        ("status", json!("active")),
        ("version", json!(1)),
        ("quarantine_until", json!(null)),
        ("upgraded_at", json!(null)),
    ] {
        assert_eq!(w[field], value, "{field}: {w}");
    }
    assert!(w["created_at"].is_string());

    // Another owner sees nothing of it: 404, not 403.
    let (other, _, _) = app.sign_in("mallory").await;
    assert_eq!(
        app.get(&format!("/v1/widgets/{id}"), Some(&other))
            .await
            .status,
        404
    );
    assert_eq!(
        app.get(&format!("/v1/widgets/{id}/stats"), Some(&other))
            .await
            .status,
        404
    );
    assert_eq!(
        app.delete(&format!("/v1/widgets/{id}"), Some(&other))
            .await
            .status,
        404
    );
    let r = app
        .send(
            app.client
                .patch(app.url(&format!("/v1/widgets/{id}")))
                .bearer_auth(&other)
                .header("if-match", "1")
                .json(&json!({"title": "pwned"})),
        )
        .await;
    assert_eq!(r.status, 404);
    let list = app.get("/v1/widgets", Some(&other)).await.expect(200);
    assert_eq!(list["widgets"], json!([]));
}

async fn patch_needs_the_current_version(backend: Backend) {
    let app = lightwidget_tests::spawn_app(backend).await;
    let (token, _, _) = app.sign_in("alice").await;
    let (id, _) = app.create_widget(&token, "v1").await;
    let patch = |version: Option<&str>, body: serde_json::Value| {
        let mut r = app
            .client
            .request(Method::PATCH, app.url(&format!("/v1/widgets/{id}")))
            .bearer_auth(&token)
            .json(&body);
        if let Some(v) = version {
            r = r.header("if-match", v);
        }
        r
    };
    assert_eq!(
        app.send(patch(None, json!({"title": "x"}))).await.status,
        428
    );
    assert_eq!(
        app.send(patch(Some("abc"), json!({"title": "x"})))
            .await
            .status,
        400
    );
    let r = app.send(patch(Some("1"), json!({"columns": 99}))).await;
    assert_eq!((r.status, r.body["field"].as_str()), (422, Some("columns")));
    let r = app
        .send(patch(Some("\"1\""), json!({"title": "v2"})))
        .await
        .expect(200);
    assert_eq!(r["version"], 2);
    let position = r["position"].as_u64().expect("position");
    let r = app.send(patch(Some("1"), json!({"title": "stale"}))).await;
    assert_eq!(r.status, 409, "{}", r.body);
    let w = app
        .get(
            &format!("/v1/widgets/{id}?min_position={position}"),
            Some(&token),
        )
        .await
        .expect(200);
    assert_eq!(
        (
            w["title"].as_str(),
            w["layout"].as_str(),
            w["version"].as_u64()
        ),
        (Some("v2"), Some("grid"), Some(2))
    );
}

async fn the_public_page_counts_views_and_clicks(backend: Backend) {
    let app = lightwidget_tests::spawn_app(backend).await;
    let (token, _, _) = app.sign_in("alice").await;
    let (id, position) = app.create_widget(&token, "<script>alert(1)</script>").await;
    app.get(
        &format!("/v1/widgets/{id}?min_position={position}"),
        Some(&token),
    )
    .await
    .expect(200);
    for _ in 0..3 {
        let page = app
            .send(app.client.get(app.url(&format!("/w/{id}"))).header(
                "user-agent",
                "Mozilla/5.0 (X11; Linux x86_64) Firefox/140.0",
            ))
            .await;
        assert_eq!(page.status, 200);
        assert!(page.text().contains("&lt;script&gt;"), "{}", page.text());
        // The page's one script is its own resize script.
        assert_eq!(page.text().matches("<script>").count(), 1);
    }
    let r = app.post(&format!("/w/{id}/click"), None, json!({})).await;
    assert_eq!(r.status, 204);
    // A page's view is queued, not stored before its answer: waited for.
    app.views_stored(3).await;
    let head = app.store.head().await.expect("head").position;
    let stats = app
        .get(
            &format!("/v1/widgets/{id}/stats?min_position={head}"),
            Some(&token),
        )
        .await
        .expect(200);
    assert_eq!(
        (stats["views"].as_u64(), stats["clicks"].as_u64()),
        (Some(3), Some(1))
    );
    let today = {
        use lightwidget_store::Clock;
        app.clock.now().format("%Y-%m-%d").to_string()
    };
    assert_eq!(
        stats["by_day"],
        json!([{"date": today, "views": 3, "clicks": 1}])
    );
    // The views and the click are stored as hits, each with a sealed access log: the user
    // agent is not in the stored text.
    let raw = app.store.read_all_raw(0, 10_000).await.expect("raw");
    let hits: usize = raw
        .iter()
        .filter(|e| e.event_type == "HitsRecorded")
        .filter_map(|e| e.decode_sealed().ok())
        .map(|d| match d {
            lightwidget_domain::DomainEvent::HitsRecorded(h) => h.len(),
            _ => 0,
        })
        .sum();
    assert_eq!(hits, 4);
    assert!(!raw.iter().any(|e| e.data.contains("Firefox/140.0")));

    let unknown = uuid::Uuid::new_v4();
    assert_eq!(app.get(&format!("/w/{unknown}"), None).await.status, 404);
    assert_eq!(
        app.post(&format!("/w/{unknown}/click"), None, json!({}))
            .await
            .status,
        404
    );
}

async fn deleted_widgets_are_quarantined_and_restorable(backend: Backend) {
    let app = lightwidget_tests::spawn_app(backend).await;
    let (token, _, _) = app.sign_in("alice").await;
    let (id, _) = app.create_widget(&token, "w").await;
    let r = app
        .send(
            app.client
                .delete(app.url(&format!("/v1/widgets/{id}")))
                .bearer_auth(&token)
                .header("if-match", "7"),
        )
        .await;
    assert_eq!(r.status, 409, "a stale If-Match deletes nothing");
    let r = app
        .delete(&format!("/v1/widgets/{id}"), Some(&token))
        .await
        .expect(202);
    let position = r["position"].as_u64().expect("position");
    assert!(r["quarantine_until"].is_string());
    let w = app
        .get(
            &format!("/v1/widgets/{id}?min_position={position}"),
            Some(&token),
        )
        .await
        .expect(200);
    assert_eq!(w["status"], "quarantined");
    assert_eq!(w["quarantine_until"], r["quarantine_until"]);
    assert_eq!(app.get(&format!("/w/{id}"), None).await.status, 404);
    assert_eq!(
        app.delete(&format!("/v1/widgets/{id}"), Some(&token))
            .await
            .status,
        409
    );

    let r = app
        .post(
            &format!("/v1/widgets/{id}/restore"),
            Some(&token),
            json!({}),
        )
        .await
        .expect(200);
    let position = r["position"].as_u64().expect("position");
    let w = app
        .get(
            &format!("/v1/widgets/{id}?min_position={position}"),
            Some(&token),
        )
        .await
        .expect(200);
    assert_eq!(w["status"], "active");
    assert_eq!(app.get(&format!("/w/{id}"), None).await.status, 200);
    let r = app
        .post(
            &format!("/v1/widgets/{id}/restore"),
            Some(&token),
            json!({}),
        )
        .await;
    assert_eq!(r.status, 409, "restore outside quarantine");

    app.delete(&format!("/v1/widgets/{id}"), Some(&token))
        .await
        .expect(202);
    app.clock.advance(chrono::Duration::days(90));
    let r = app
        .post(
            &format!("/v1/widgets/{id}/restore"),
            Some(&token),
            json!({}),
        )
        .await;
    assert_eq!(r.status, 409, "restore after the 90 days");
}

both! {
    previews => previews_live_fifteen_minutes;
    widgets_crud => widgets_are_created_listed_read_and_validated;
    patch => patch_needs_the_current_version;
    public_page => the_public_page_counts_views_and_clicks;
    quarantine => deleted_widgets_are_quarantined_and_restorable;
}

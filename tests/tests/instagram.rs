//! The HTTP Instagram adapter against a local Instagram stand-in that the test starts: the
//! code exchange, the profile read, and Instagram refusing the code (no account, no event).
//! The stand-in also sends an e-mail field, which must not be stored (R5).

use axum::extract::{Form, Query};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::{get, post};
use axum::{Json, Router};
use lightwidget_api::settings::InstagramSettings;
use lightwidget_tests::{both, Backend, TestConfig};
use serde_json::json;
use std::collections::HashMap;

async fn token(Form(form): Form<HashMap<String, String>>) -> impl IntoResponse {
    let ok = form.get("client_id").map(String::as_str) == Some("app-1")
        && form.get("client_secret").map(String::as_str) == Some("secret-1")
        && form.get("grant_type").map(String::as_str) == Some("authorization_code");
    match form.get("code").map(String::as_str) {
        Some("good-code") if ok => (
            StatusCode::OK,
            Json(json!({"access_token": "IG-ACCESS-1", "user_id": 17841400000001u64})),
        ),
        _ => (
            StatusCode::BAD_REQUEST,
            Json(json!({"error_type": "OAuthException", "code": 400,
                        "error_message": "Invalid authorization code"})),
        ),
    }
}

async fn me(Query(q): Query<HashMap<String, String>>) -> impl IntoResponse {
    if q.get("access_token").map(String::as_str) != Some("IG-ACCESS-1") {
        return (
            StatusCode::UNAUTHORIZED,
            Json(json!({"error": "bad token"})),
        );
    }
    (
        StatusCode::OK,
        Json(json!({"id": "17841400000001", "username": "insta_alice",
                    "account_type": "BUSINESS", "email": "alice-secret@example.com"})),
    )
}

/// Six posts: a photo with markup in its caption, one with an http URL (not shown), a video
/// with its still, a video without one (not shown), a carousel, and a photo whose caption is
/// a script.
async fn media(Query(q): Query<HashMap<String, String>>) -> impl IntoResponse {
    if q.get("access_token").map(String::as_str) != Some("IG-ACCESS-1") {
        return (
            StatusCode::UNAUTHORIZED,
            Json(json!({"error": "bad token"})),
        );
    }
    (
        StatusCode::OK,
        Json(json!({"data": [
            {"id": "m1", "media_type": "IMAGE", "media_url": "https://cdn.example/m1.jpg",
             "caption": "<b>sea</b>", "like_count": 7,
             "permalink": "https://www.instagram.com/p/m1/"},
            {"id": "m2", "media_url": "http://cdn.example/m2.jpg"},
            {"id": "m3", "media_type": "VIDEO", "media_url": "https://cdn.example/m3.mp4",
             "thumbnail_url": "https://cdn.example/m3.jpg",
             "permalink": "https://www.instagram.com/p/m3/"},
            {"id": "m4", "media_type": "VIDEO", "media_url": "https://cdn.example/m4.mp4"},
            {"id": "m5", "media_type": "CAROUSEL_ALBUM", "media_url": "https://cdn.example/m5.jpg",
             "permalink": "https://www.instagram.com/p/m5/"},
            {"id": "m6", "media_url": "https://cdn.example/m6.jpg",
             "caption": "<script>window.pwned = 1</script>",
             "permalink": "https://www.instagram.com/p/m6/"}
        ]})),
    )
}

pub async fn start_instagram() -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let app = Router::new()
        .route("/oauth/access_token", post(token))
        .route("/me", get(me))
        .route("/me/media", get(media));
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    format!("http://{addr}")
}

async fn sign_in_through_instagram_over_http(backend: Backend) {
    let url = start_instagram().await;
    let app = lightwidget_tests::spawn_app_with(
        backend,
        TestConfig {
            instagram: Some(InstagramSettings {
                url,
                app_id: "app-1".into(),
                app_secret: "secret-1".into(),
                redirect_uri: "http://localhost/cb".into(),
            }),
            ..Default::default()
        },
    )
    .await;
    let before = app.store.head().await.expect("head").position;
    let r = app
        .post("/v1/auth/instagram", None, json!({"code": "bad-code"}))
        .await;
    assert_eq!(r.status, 422, "{}", r.body);
    assert_eq!(r.body["field"], "code");
    // The demo codes do not work against a real Instagram.
    let r = app
        .post("/v1/auth/instagram", None, json!({"code": "demo:alice"}))
        .await;
    assert_eq!(r.status, 422);
    assert_eq!(
        app.store.head().await.expect("head").position,
        before,
        "a refused code makes no account and no event"
    );

    let r = app
        .post("/v1/auth/instagram", None, json!({"code": "good-code"}))
        .await
        .expect(200);
    let token = r["token"].as_str().expect("token");
    let position = r["position"].as_u64().expect("position");
    let me = app
        .get(&format!("/v1/me?min_position={position}"), Some(token))
        .await
        .expect(200);
    assert_eq!(me["username"], "insta_alice");
    // What Instagram said beyond the profile is not kept, sealed or not: the opened events
    // hold no e-mail, and neither does the stored text.
    let opened = app.store.read_all(0, 1000).await.expect("read");
    let raw = app.store.read_all_raw(0, 1000).await.expect("raw");
    for text in opened
        .iter()
        .map(|e| e.data.to_string())
        .chain(raw.iter().map(|e| e.data.clone()))
    {
        assert!(!text.contains("alice-secret@example.com"), "{text}");
    }
    assert!(opened
        .iter()
        .any(|e| e.data.to_string().contains("insta_alice")));

    // The widget page fetches the owner's media with the stored access token (R7): https
    // photos only, captions escaped, nothing else Instagram sent.
    let (w, at) = app.create_widget(token, "Photos").await;
    assert_eq!(
        app.get(&format!("/w/{w}?min_position={at}"), None)
            .await
            .status,
        200
    );
    let mut fetched = None;
    for _ in 0..100 {
        let events = app
            .store
            .read_stream(&format!("media-{w}"), 0, 10)
            .await
            .expect("read");
        if let Some(e) = events.first() {
            fetched = Some(e.clone());
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let fetched = fetched.expect("a media fetch");
    let items = &fetched.data["media"]["$personal"]["value"];
    assert_eq!(items.as_array().map(Vec::len), Some(4), "{items}");
    assert!(!fetched.data.to_string().contains("like_count"));
    let page = app
        .get(&format!("/w/{w}?min_position={}", fetched.position), None)
        .await;
    let html = page.text();
    assert!(html.contains("https://cdn.example/m1.jpg"), "{html}");
    assert!(html.contains("&lt;b&gt;sea&lt;/b&gt;"), "{html}");
    assert!(!html.contains("http://cdn.example/m2.jpg"), "{html}");
    // A video is shown by its still and marked; one without a still is left out.
    assert!(
        html.contains("src=\"https://cdn.example/m3.jpg\""),
        "{html}"
    );
    assert!(
        !html.contains("m3.mp4") && !html.contains("m4.mp4"),
        "{html}"
    );
    assert!(
        html.contains("Video") && html.contains("Several photos"),
        "{html}"
    );
    for post in ["m1", "m3", "m5", "m6"] {
        assert!(
            html.contains(&format!("href=\"https://www.instagram.com/p/{post}/\"")),
            "{post}: {html}"
        );
    }
    // The caption's script is text; the page's one script is its own.
    assert!(
        html.contains("alt=\"&lt;script&gt;window.pwned = 1&lt;/script&gt;\""),
        "{html}"
    );
    assert_eq!(html.matches("<script").count(), 1, "{html}");
}

async fn an_unreachable_instagram_is_a_bad_gateway(backend: Backend) {
    // A port nothing listens on.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let url = format!("http://{}", listener.local_addr().expect("addr"));
    drop(listener);
    let app = lightwidget_tests::spawn_app_with(
        backend,
        TestConfig {
            instagram: Some(InstagramSettings {
                url,
                app_id: "a".into(),
                app_secret: "s".into(),
                redirect_uri: "http://localhost/".into(),
            }),
            ..Default::default()
        },
    )
    .await;
    let r = app
        .post("/v1/auth/instagram", None, json!({"code": "good-code"}))
        .await;
    assert_eq!(r.status, 502, "{}", r.body);
}

both! {
    http_adapter => sign_in_through_instagram_over_http;
    unreachable => an_unreachable_instagram_is_a_bad_gateway;
}

//! The widget page customers embed (issue 25), over real HTTP on both backends: twelve posts
//! within 20 KB before images, each image sized, described and linked, user text escaped,
//! the page's Content-Security-Policy naming exactly its own style and script, and the embed
//! code for its owner only.

use lightwidget_tests::{both, Backend, TestApp};
use serde_json::json;
use sha2::{Digest, Sha256};

/// Waits until the widget's media were fetched (a view starts the fetch): the position.
pub async fn media_cached(app: &TestApp, widget: &str) -> u64 {
    let started = std::time::Instant::now();
    loop {
        let events = app
            .store
            .read_stream(&format!("media-{widget}"), 0, 1)
            .await
            .expect("read");
        if let Some(e) = events.first() {
            return e.position;
        }
        assert!(
            started.elapsed() < std::time::Duration::from_secs(10),
            "no media fetched for {widget}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

/// A widget of `layout` with its media cached: (widget id, the position to read at).
pub async fn widget_with_posts(
    app: &TestApp,
    token: &str,
    title: &str,
    layout: &str,
    columns: u8,
) -> (String, u64) {
    let body = app
        .post(
            "/v1/widgets",
            Some(token),
            json!({"title": title, "layout": layout, "columns": columns}),
        )
        .await
        .expect(201);
    let id = body["widget_id"].as_str().expect("id").to_owned();
    let at = body["position"].as_u64().expect("position");
    app.get(&format!("/w/{id}?min_position={at}"), None)
        .await
        .expect(200);
    let at = media_cached(app, &id).await;
    (id, at)
}

fn csp_hash(text: &str) -> String {
    use base64::Engine;
    format!(
        "'sha256-{}'",
        base64::engine::general_purpose::STANDARD.encode(Sha256::digest(text.as_bytes()))
    )
}

/// The text between the first `open` and the next `close` after it.
fn between<'a>(page: &'a str, open: &str, close: &str) -> &'a str {
    let start = page.find(open).unwrap_or_else(|| panic!("no {open}")) + open.len();
    let end = page[start..].find(close).expect("close") + start;
    &page[start..end]
}

async fn twelve_posts_fit_in_20_kb_with_their_sizes_alt_texts_and_links(backend: Backend) {
    let app = lightwidget_tests::spawn_app(backend).await;
    let (token, _, _) = app.sign_in("erin").await;
    let title = "<script>alert(1)</script> & \"co\"";
    let (w, at) = widget_with_posts(&app, &token, title, "grid", 3).await;
    let page = app.get(&format!("/w/{w}?min_position={at}"), None).await;
    assert_eq!(page.status, 200);
    let html = page.text();
    assert!(html.len() <= 20 * 1024, "{} bytes", html.len());
    println!("a page of 12 posts: {} bytes", html.len());
    assert_eq!(html.matches("<img ").count(), 12, "{html}");
    assert_eq!(html.matches("<li>").count(), 12);
    for img in html.split("<img ").skip(1) {
        let tag = &img[..img.find('>').expect("end")];
        assert!(
            tag.contains(" width=\"") && tag.contains(" height=\""),
            "{tag}"
        );
        assert!(tag.contains("alt=\"Demo post "), "{tag}");
    }
    // Past the first row (three columns) the images load lazily.
    assert_eq!(html.matches("loading=\"lazy\"").count(), 9);
    assert_eq!(
        html.matches("href=\"https://www.instagram.com/p/").count(),
        12
    );
    assert!(html.contains("Video") && html.contains("Several photos"));
    // User text is text: the title's script is escaped, and the page's one script is its own.
    assert!(!html.contains("<script>alert"), "{html}");
    assert!(html.contains("&lt;script&gt;alert(1)&lt;/script&gt; &amp;"));
    assert_eq!(html.matches("<script").count(), 1);

    // The policy names exactly the inline style and script served, and the media host.
    let csp = page.headers["content-security-policy"]
        .to_str()
        .expect("csp")
        .to_owned();
    let style = between(html, "<style>", "</style>");
    let script = between(html, "<script>", "</script>");
    assert!(
        csp.contains(&format!("style-src {}", csp_hash(style))),
        "{csp}"
    );
    assert!(
        csp.contains(&format!("script-src {}", csp_hash(script))),
        "{csp}"
    );
    assert!(csp.contains("default-src 'none'"), "{csp}");
    assert!(
        csp.contains("img-src https://demo.lightwidget.invalid;"),
        "{csp}"
    );
    assert!(csp.contains("frame-ancestors *"), "{csp}");
    assert_eq!(page.headers["x-content-type-options"], "nosniff");
    assert!(page.headers.get("x-frame-options").is_none());
    assert_eq!(page.headers["cache-control"], "no-store");
    assert!(page.headers.get("set-cookie").is_none());
}

async fn the_embed_code_is_for_the_owner(backend: Backend) {
    let app = lightwidget_tests::spawn_app(backend).await;
    let (token, _, _) = app.sign_in("fred").await;
    let (other, _, _) = app.sign_in("gina").await;
    let staff = app.staff("compliance").await;
    let (w, at) = app.create_widget(&token, "Fred's \"shop\"").await;
    let path = format!("/v1/widgets/{w}/embed?min_position={at}");
    let embed = app.get(&path, Some(&token)).await.expect(200);
    let origin = app.address.clone();
    let iframe = embed["iframe"].as_str().expect("iframe");
    assert!(
        iframe.starts_with(&format!("<iframe src=\"{origin}/w/{w}\"")),
        "{iframe}"
    );
    assert!(
        iframe.contains("title=\"Fred's &quot;shop&quot;\""),
        "{iframe}"
    );
    let script = embed["script"].as_str().expect("script");
    assert!(
        script.starts_with(&format!(
            "<script src=\"{origin}/embed.js\" data-widget=\"{w}\""
        )),
        "{script}"
    );
    assert_eq!(app.get(&path, Some(&other)).await.status, 404);
    assert_eq!(app.get(&path, Some(&staff)).await.status, 403);
    assert_eq!(app.get(&path, None).await.status, 401);
    let js = app.get("/embed.js", None).await;
    assert_eq!(js.status, 200);
    assert!(js.headers["content-type"]
        .to_str()
        .expect("type")
        .starts_with("text/javascript"));
    assert!(js.text().contains("e.origin!==o"), "checks the origin");
}

async fn the_embed_code_names_the_public_url(backend: Backend) {
    let app = lightwidget_tests::spawn_app_with(
        backend,
        lightwidget_tests::TestConfig {
            public_url: Some("https://widgets.example".into()),
            ..Default::default()
        },
    )
    .await;
    let (token, _, _) = app.sign_in("hana").await;
    let (w, at) = app.create_widget(&token, "Feed").await;
    let embed = app
        .get(
            &format!("/v1/widgets/{w}/embed?min_position={at}"),
            Some(&token),
        )
        .await
        .expect(200);
    assert!(embed["iframe"]
        .as_str()
        .expect("iframe")
        .contains(&format!("src=\"https://widgets.example/w/{w}\"")));
}

both!(
    twelve_posts_fit_in_20_kb_with_their_sizes_alt_texts_and_links,
    the_embed_code_is_for_the_owner,
    the_embed_code_names_the_public_url,
);

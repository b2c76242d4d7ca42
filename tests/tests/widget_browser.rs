//! The widget page in a real browser (issue 25), through the same headless Chromium and
//! WebDriver as the console: each layout at 375 and 1280 pixels wide, with the demo's photos
//! served (a little late, as images are) by a media host the test starts. Checked from the
//! rendered boxes: the columns of the first row, no horizontal overflow, no layout shift
//! while the images load, every image described and linked, axe-core; screenshots under
//! `target/widget-screenshots/`. Then the embed script on a page of another origin sizes
//! its iframe to the widget, and believes no other origin; and a script in a title never
//! runs.

use crate::browser::{accessibility, browser, screenshot};
use crate::widget_page::widget_with_posts;
use fantoccini::{Client, Locator};
use lightwidget_tests::{both, Backend, TestConfig};
use serde_json::{json, Value};
use std::time::{Duration, Instant};

/// A media host on a port of its own: `/media/<user>/<n>.jpg` is an SVG of the size the
/// demo gives that post, answered after 150 ms (so the page is drawn before its images).
async fn media_host() -> String {
    use axum::extract::Path;
    async fn image(Path((_, file)): Path<(String, String)>) -> axum::response::Response {
        use axum::response::IntoResponse;
        let n: usize = file
            .split('.')
            .next()
            .and_then(|n| n.parse().ok())
            .unwrap_or(1);
        let (w, h) = [(640, 640), (640, 800), (640, 480)][n % 3];
        tokio::time::sleep(Duration::from_millis(150)).await;
        let hue = n * 30 % 360;
        (
            [("content-type", "image/svg+xml")],
            format!(
                "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{w}\" height=\"{h}\">\
                 <rect width=\"100%\" height=\"100%\" fill=\"hsl({hue},45%,55%)\"/>\
                 <text x=\"20\" y=\"60\" font-size=\"48\" fill=\"#fff\">{n}</text></svg>"
            ),
        )
            .into_response()
    }
    serve(axum::Router::new().route("/media/{user}/{file}", axum::routing::get(image))).await
}

/// A server whose demo photos come from a [`media_host`] of its own.
async fn app_with_media(backend: Backend) -> lightwidget_tests::TestApp {
    let media = media_host().await;
    lightwidget_tests::spawn_app_with(
        backend,
        TestConfig {
            demo_media_url: Some(format!("{media}/media")),
            ..Default::default()
        },
    )
    .await
}

/// Serves `router` on a free loopback port: its origin.
async fn serve(router: axum::Router) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let address = listener.local_addr().expect("address");
    tokio::spawn(async move {
        let _ = axum::serve(listener, router).await;
    });
    format!("http://{address}")
}

/// Waits until the page and every image on it have loaded (the lazy ones out of view are
/// told to load now). Each image must have loaded, not failed.
async fn loaded(c: &Client) {
    let started = Instant::now();
    loop {
        let done = c
            .execute(
                "const waiting = [...document.images].filter(i => !i.complete);
                 for (const i of waiting) i.loading = 'eager';
                 if (document.readyState !== 'complete' || waiting.length) return false;
                 return [...document.images].every(i => i.naturalWidth > 0) ? true : 'broken';",
                vec![],
            )
            .await
            .expect("state");
        assert_ne!(done, json!("broken"), "an image failed to load");
        if done == json!(true) {
            return;
        }
        if started.elapsed() > Duration::from_secs(15) {
            let state = c
                .execute(
                    "return [document.readyState, location.href, [...document.images].map(i => [i.currentSrc || i.src, i.complete, i.loading, i.getBoundingClientRect().top])];",
                    vec![],
                )
                .await
                .expect("state");
            panic!("images did not load: {state}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// What the rendered page shows: its width, whether it overflows sideways, the posts of
/// the first row that are fully in view, the layout shift since it began, and the images
/// without alt text or without a link to Instagram.
async fn measure(c: &Client) -> Value {
    c.execute_async(
        "const done = arguments[arguments.length - 1];
         let shift = 0;
         new PerformanceObserver(l => { for (const e of l.getEntries()) if (!e.hadRecentInput) shift += e.value; })
           .observe({type: 'layout-shift', buffered: true});
         setTimeout(() => {
           const ul = document.querySelector('main ul');
           const box = ul.getBoundingClientRect();
           const items = [...ul.children].map(li => li.getBoundingClientRect());
           const top = Math.min(...items.map(r => r.top));
           const firstRow = items.filter(r => Math.abs(r.top - top) < 2
               && r.left >= box.left - 1 && r.right <= box.right + 1).length;
           const bad = [...document.images].filter(i => !i.alt || !i.closest('a')
               || !i.closest('a').href.startsWith('https://www.instagram.com/p/')).length;
           done({width: innerWidth,
                 overflow: document.documentElement.scrollWidth > innerWidth,
                 firstRow, shift, bad, images: document.images.length});
         }, 0);",
        vec![],
    )
    .await
    .expect("measured")
}

async fn layouts_at_two_widths(backend: Backend) {
    let app = app_with_media(backend).await;
    let (token, _, _) = app.sign_in("ines").await;
    let (_driver, c) = browser().await;
    // (layout, columns, the first row's posts at 1280 and at 375 pixels)
    for (layout, columns, wide, narrow) in [
        ("grid", 4, 4, 2),
        ("slider", 3, 3, 2),
        ("masonry", 3, 3, 2),
        ("list", 3, 1, 1),
    ] {
        let (w, at) =
            widget_with_posts(&app, &token, &format!("Ines {layout}"), layout, columns).await;
        for (width, expected) in [(1280u32, wide), (375, narrow)] {
            c.set_window_size(width, 900).await.expect("size");
            // The renderer takes the new size a moment after the call returns: a page loaded
            // before then would be laid out twice, and that shift is not the page's.
            let started = Instant::now();
            while c
                .execute("return innerWidth;", vec![])
                .await
                .expect("width")
                != json!(width)
            {
                assert!(
                    started.elapsed() < Duration::from_secs(10),
                    "never {width} wide"
                );
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            c.goto(&app.url(&format!("/w/{w}?min_position={at}")))
                .await
                .expect("page");
            loaded(&c).await;
            let m = measure(&c).await;
            let name = format!("{layout}-{width}");
            assert_eq!(m["width"], json!(width), "{name}: the viewport");
            assert_eq!(m["images"], json!(12), "{name}");
            assert_eq!(m["firstRow"], json!(expected), "{name}: {m}");
            assert_eq!(m["overflow"], json!(false), "{name}: {m}");
            assert_eq!(m["bad"], json!(0), "{name}: {m}");
            assert!(m["shift"].as_f64().unwrap_or(1.0) < 0.001, "{name}: {m}");
            screenshot(&c, "widget-screenshots", backend, &name).await;
            let found = accessibility(&c).await;
            assert!(found.is_empty(), "{name}: {found:?}");
        }
    }
    c.close().await.expect("closed");
}

/// The embed script on a shop's page (another origin) puts the widget in an iframe and sizes
/// it to the widget's height; a message from any other origin changes nothing. A title with
/// markup shows as text, and no script in it runs.
async fn the_embed_script_sizes_its_iframe_on_another_origin(backend: Backend) {
    let app = app_with_media(backend).await;
    let (token, _, _) = app.sign_in("jana").await;
    let title = "<img src=x onerror=\"window.pwned=1\"><script>window.pwned=1</script>";
    let (w, at) = widget_with_posts(&app, &token, title, "grid", 3).await;
    let embed = app
        .get(
            &format!("/v1/widgets/{w}/embed?min_position={at}"),
            Some(&token),
        )
        .await
        .expect(200);
    let snippet = embed["script"].as_str().expect("script").to_owned();
    let shop = serve(axum::Router::new().route(
        "/",
        axum::routing::get(move || {
            let snippet = snippet.clone();
            async move {
                axum::response::Html(format!(
                    "<!doctype html><html lang=\"en\"><head><title>Shop</title></head>\
                     <body><h1>Our shop</h1>{snippet}<p>Footer</p></body></html>"
                ))
            }
        }),
    ))
    .await;
    assert_ne!(shop, app.address, "another origin");
    let (_driver, c) = browser().await;
    c.set_window_size(1000, 900).await.expect("size");

    c.goto(&shop).await.expect("shop");
    let iframe = c
        .wait()
        .for_element(Locator::Css("iframe"))
        .await
        .expect("iframe");
    let started = Instant::now();
    let height = loop {
        let h = iframe.css_value("height").await.expect("height");
        if h != "400px" {
            break h;
        }
        assert!(started.elapsed() < Duration::from_secs(15), "never resized");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let height: f64 = height.trim_end_matches("px").parse().expect("px");
    screenshot(&c, "widget-screenshots", backend, "embedded").await;
    // What the widget measures at that width.
    c.enter_frame(0).await.expect("frame");
    loaded(&c).await;
    let inner = c
        .execute(
            "return [document.documentElement.scrollHeight, document.documentElement.clientWidth, window.pwned === undefined];",
            vec![],
        )
        .await
        .expect("inner");
    c.enter_parent_frame().await.expect("parent");
    // The shop's width now, with the iframe at the widget's height: a page taller than the
    // window has a scrollbar, and is narrower than when the iframe was 400px high.
    let frame_width = c
        .execute("return document.body.clientWidth;", vec![])
        .await
        .expect("width");
    assert_eq!(inner[1], frame_width, "the iframe spans the page");
    let iframe = c.find(Locator::Css("iframe")).await.expect("iframe");
    let now: f64 = iframe
        .css_value("height")
        .await
        .expect("height")
        .trim_end_matches("px")
        .parse()
        .expect("px");
    assert!(
        (now - inner[0].as_f64().expect("height")).abs() <= 1.0,
        "the iframe is {now}px, the widget {}px (first {height}px)",
        inner[0]
    );
    assert_eq!(inner[2], json!(true), "no script of the title ran");

    // A message from the shop's own origin (not the widget's) is not believed: a listener
    // added after the embed script's hears it after that script did.
    let echo = c
        .execute_async(
            "const done = arguments[arguments.length - 1];
             addEventListener('message', () =>
                 done(getComputedStyle(document.querySelector('iframe')).height));
             window.postMessage({lightwidget: 'height', height: 123}, '*');",
            vec![],
        )
        .await
        .expect("height");
    assert_eq!(echo, json!(format!("{now}px")));
    c.close().await.expect("closed");
}

/// Posts from Instagram (its stand-in) whose caption is a script: in the browser it is the
/// image's alt text, and it never runs.
async fn a_caption_script_never_runs(backend: Backend) {
    let app = lightwidget_tests::spawn_app_with(
        backend,
        TestConfig {
            instagram: Some(lightwidget_api::settings::InstagramSettings {
                url: crate::instagram::start_instagram().await,
                app_id: "app-1".into(),
                app_secret: "secret-1".into(),
                redirect_uri: "http://localhost/cb".into(),
            }),
            ..Default::default()
        },
    )
    .await;
    let signed = app
        .post("/v1/auth/instagram", None, json!({"code": "good-code"}))
        .await
        .expect(200);
    let token = signed["token"].as_str().expect("token");
    let (w, at) = widget_with_posts(&app, token, "Sea", "list", 1).await;
    let (_driver, c) = browser().await;
    c.goto(&app.url(&format!("/w/{w}?min_position={at}")))
        .await
        .expect("page");
    let seen = c
        .execute(
            "return [window.pwned === undefined,
                     [...document.images].map(i => i.alt),
                     document.querySelectorAll('script').length];",
            vec![],
        )
        .await
        .expect("page");
    assert_eq!(seen[0], json!(true), "the caption's script ran: {seen}");
    assert!(
        seen[1]
            .as_array()
            .expect("alts")
            .contains(&json!("<script>window.pwned = 1</script>")),
        "{seen}"
    );
    assert_eq!(seen[2], json!(1), "only the page's own script");
    screenshot(&c, "widget-screenshots", backend, "caption-script").await;
    c.close().await.expect("closed");
}

both!(
    layouts_at_two_widths,
    the_embed_script_sizes_its_iframe_on_another_origin,
    a_caption_script_never_runs,
);

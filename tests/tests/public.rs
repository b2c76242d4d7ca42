//! Comments (R6), support tickets (R4) and the processor registry (R12) through real HTTP
//! on both backends.

use lightwidget_tests::{both, Backend, TestConfig, ADMIN_TOKEN};
use serde_json::{json, Value};

async fn comments_keep_the_ip_but_never_show_it(backend: Backend) {
    let app = lightwidget_tests::spawn_app(backend).await;
    let path = "/v1/articles/how-to-embed/comments";
    let r = app
        .post(path, None, json!({"author": "Ola", "text": "Thanks!"}))
        .await
        .expect(201);
    let id = r["comment_id"].as_str().expect("id").to_owned();
    app.post(path, None, json!({"author": "Jan", "text": "Second"}))
        .await
        .expect(201);
    let list = app.get(path, None).await.expect(200);
    let comments = list["comments"].as_array().expect("comments");
    assert_eq!(comments.len(), 2);
    assert_eq!(comments[0]["comment_id"], id.as_str());
    assert_eq!(comments[0]["author"], "Ola");
    assert_eq!(comments[1]["text"], "Second");
    assert!(
        !list.to_string().contains("127.0.0.1"),
        "no IP shown: {list}"
    );
    // The IP is kept, sealed, as comment_ip data of the comment (R6).
    let stored = app
        .store
        .read_stream_raw("article-how-to-embed", 0, 10)
        .await
        .expect("read");
    assert!(!stored[0].data.contains("127.0.0.1"), "sealed at rest");
    let opened = app
        .store
        .read_stream("article-how-to-embed", 0, 10)
        .await
        .expect("read");
    assert_eq!(opened[0].data["ip"]["$personal"]["value"], "127.0.0.1");
    assert_eq!(opened[0].data["ip"]["$personal"]["category"], "comment_ip");
    // So is the author's name, as comment_author data of the comment (R6).
    assert!(!stored[0].data.contains("\"Ola\""), "sealed at rest");
    assert_eq!(opened[0].data["author"]["$personal"]["value"], "Ola");
    assert_eq!(
        opened[0].data["author"]["$personal"]["category"],
        "comment_author"
    );
    // An article nobody commented on has none; a bad slug names no article.
    let empty = app
        .get("/v1/articles/quiet/comments", None)
        .await
        .expect(200);
    assert_eq!(empty["comments"], json!([]));
    assert_eq!(
        app.get("/v1/articles/Bad%20Slug/comments", None)
            .await
            .status,
        404
    );

    let before = app.store.head().await.expect("head").position;
    for (body, field) in [
        (json!({"author": "", "text": "x"}), "author"),
        (json!({"author": "a", "text": "  "}), "text"),
        (json!({"author": "a", "text": "x".repeat(5001)}), "text"),
        (json!({"author": "a"}), "text"),
        (json!({"author": "a", "text": "x", "ip": "1.2.3.4"}), "ip"),
    ] {
        let r = app.post(path, None, body.clone()).await;
        assert_eq!(
            (r.status, r.body["field"].as_str()),
            (422, Some(field)),
            "{body}"
        );
    }
    assert_eq!(app.store.head().await.expect("head").position, before);
    app.stop().await;
}

async fn tickets_need_an_email_and_keep_only_what_was_filled(backend: Backend) {
    let app = lightwidget_tests::spawn_app(backend).await;
    let before = app.store.head().await.expect("head").position;
    for (body, field) in [
        (json!({"subject": "help"}), "email"),
        (json!({"email": "  ", "message": "m"}), "email"),
        (json!({"email": "not-an-address"}), "email"),
        (
            json!({"email": "a@example.com", "subject": "s".repeat(201)}),
            "subject",
        ),
        (json!({"email": "a@example.com", "phone": "123"}), "phone"),
    ] {
        let r = app.post("/v1/support/tickets", None, body.clone()).await;
        assert_eq!(
            (r.status, r.body["field"].as_str()),
            (422, Some(field)),
            "{body}"
        );
        assert!(
            !r.text().contains("not-an-address"),
            "the value is not echoed"
        );
    }
    assert_eq!(app.store.head().await.expect("head").position, before);

    let r = app
        .post(
            "/v1/support/tickets",
            None,
            json!({"email": "ola@example.com", "subject": "", "message": "My widget is blank"}),
        )
        .await
        .expect(201);
    let id = r["ticket_id"].as_str().expect("id");
    let opened = app
        .store
        .read_stream(&format!("ticket-{id}"), 0, 10)
        .await
        .expect("read");
    let request = &opened[0].data["request"]["$personal"];
    assert_eq!(request["category"], "support");
    assert_eq!(
        request["value"],
        json!({"email": "ola@example.com", "message": "My widget is blank"}),
        "the blank subject is not kept"
    );
    app.stop().await;
}

async fn anonymous_posts_honour_idempotency_keys(backend: Backend) {
    let app = lightwidget_tests::spawn_app(backend).await;
    let post = |path: &'static str, key: &'static str, body: serde_json::Value| {
        let app = &app;
        async move {
            app.send(
                app.client
                    .post(app.url(path))
                    .header("idempotency-key", key)
                    .json(&body),
            )
            .await
        }
    };
    let path = "/v1/articles/keys/comments";
    let body = json!({"author": "Ola", "text": "once"});
    let first = post(path, "k-comment-1", body.clone()).await;
    assert_eq!(first.status, 201, "{first:?}");
    let head = app.store.head().await.expect("head").position;
    let again = post(path, "k-comment-1", body.clone()).await;
    assert_eq!(again.status, 201);
    assert_eq!(again.body["comment_id"], first.body["comment_id"]);
    assert_eq!(again.body["position"], first.body["position"]);
    assert_eq!(
        app.store.head().await.expect("head").position,
        head,
        "nothing appended"
    );
    let other = post(
        path,
        "k-comment-1",
        json!({"author": "Ola", "text": "twice"}),
    )
    .await;
    assert_eq!(other.status, 422, "{other:?}");
    let list = app.get(path, None).await.expect(200);
    assert_eq!(list["comments"].as_array().map(Vec::len), Some(1));

    let ticket = json!({"email": "ola@example.com", "message": "help"});
    let first = post("/v1/support/tickets", "k-ticket-1", ticket.clone()).await;
    assert_eq!(first.status, 201, "{first:?}");
    let again = post("/v1/support/tickets", "k-ticket-1", ticket).await;
    assert_eq!(again.body["ticket_id"], first.body["ticket_id"]);
    let other = post(
        "/v1/support/tickets",
        "k-ticket-1",
        json!({"email": "ola@example.com", "message": "other"}),
    )
    .await;
    assert_eq!(other.status, 422);
    app.stop().await;
}

/// Anyone reads the processor registry: every processor of the policy, the categories each
/// receives, and whether this server is configured for it.
async fn the_processor_registry_is_served(backend: Backend) {
    let app = lightwidget_tests::spawn_app(backend).await;
    let r = app.get("/v1/privacy/processors", None).await.expect(200);
    let processors = r["processors"].as_array().expect("a list");
    let find = |kind: &str| {
        processors
            .iter()
            .find(|p| p["kind"] == kind)
            .unwrap_or_else(|| panic!("{kind} missing: {r}"))
            .clone()
    };
    assert_eq!(processors.len(), 7, "{r}");
    let ticketing = find("ticketing");
    assert_eq!(ticketing["name"], "Zendesk");
    assert_eq!(ticketing["categories"], json!(["support"]));
    assert_eq!(find("analytics")["categories"], json!(["consent"]));
    assert_eq!(find("hosting")["configured"], true);
    assert_eq!(find("cdn")["configured"], false);
    // The test server has PayPal's webhook secret; one without it is not configured.
    assert_eq!(find("payments")["configured"], true);
    let bare = lightwidget_tests::spawn_app_with(
        backend,
        lightwidget_tests::TestConfig {
            no_paypal: true,
            ..Default::default()
        },
    )
    .await;
    let r = bare.get("/v1/privacy/processors", None).await.expect(200);
    let payments = r["processors"]
        .as_array()
        .and_then(|ps| ps.iter().find(|p| p["kind"] == "payments").cloned())
        .expect("payments");
    assert_eq!(payments["configured"], false);
}

/// The policy's versions (R25): the seed's text is version 1, in force from the start; an
/// admin publishes the next at least 5 days ahead, and it takes over when its date passes.
async fn policy_versions_take_effect_no_sooner_than_five_days(backend: Backend) {
    use lightwidget_store::Clock;
    let app = lightwidget_tests::spawn_app(backend).await;
    let (owner, _, _) = app.sign_in("alice").await;
    let listed = |r: &serde_json::Value| -> Vec<(String, bool)> {
        r["policies"]
            .as_array()
            .expect("a list")
            .iter()
            .map(|p| {
                let version = p["version"].as_str().expect("a label").to_owned();
                (version, p["in_force"] == true)
            })
            .collect()
    };
    let r = app.get("/v1/privacy/policies", None).await.expect(200);
    assert_eq!(listed(&r), vec![("1".to_owned(), true)]);

    let rfc = |d: chrono::Duration| {
        (app.clock.now() + d).to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
    };
    let policy = |version: &str, effective_at: String| json!({"version": version, "text": "We changed nothing but the date.", "effective_at": effective_at});
    let head = app.store.head().await.expect("head").position;
    let path = "/v1/privacy/policies";
    let soon = policy("2", rfc(chrono::Duration::days(4)));
    assert_eq!(app.post(path, Some(&owner), soon.clone()).await.status, 403);
    let r = app.post(path, Some(ADMIN_TOKEN), soon).await;
    assert_eq!(
        (r.status, r.body["field"].as_str()),
        (422, Some("effective_at"))
    );
    let r = app
        .post(path, Some(ADMIN_TOKEN), policy("2", "next week".into()))
        .await;
    assert_eq!(
        (r.status, r.body["field"].as_str()),
        (422, Some("effective_at"))
    );
    let again = policy("1", rfc(chrono::Duration::days(6)));
    let r = app.post(path, Some(ADMIN_TOKEN), again).await;
    assert_eq!((r.status, r.body["field"].as_str()), (409, Some("version")));
    assert_eq!(
        app.store.head().await.expect("head").position,
        head,
        "refusals append nothing"
    );

    let next = policy(
        "2",
        rfc(chrono::Duration::days(5) + chrono::Duration::minutes(1)),
    );
    app.post(path, Some(ADMIN_TOKEN), next).await.expect(201);
    let r = app.get(path, None).await.expect(200);
    assert_eq!(
        listed(&r),
        vec![("1".to_owned(), true), ("2".to_owned(), false)]
    );
    app.advance(chrono::Duration::days(5) + chrono::Duration::minutes(2))
        .await;
    let r = app.get(path, None).await.expect(200);
    assert_eq!(
        listed(&r),
        vec![("1".to_owned(), false), ("2".to_owned(), true)]
    );
}

/// A visitor's consent to analytics (R3): stated and withdrawn as events naming the policy
/// version in force; `DNT: 1` is a refusal whatever was stored; bad input changes nothing.
async fn consent_is_stated_withdrawn_and_refused_under_dnt(backend: Backend) {
    use reqwest::Method;
    let app = lightwidget_tests::spawn_app(backend).await;
    let visitor = uuid::Uuid::new_v4();
    let path = format!("/v1/consent/{visitor}");
    let put = |analytics: Value, dnt: bool| {
        let mut r = app
            .client
            .put(app.url(&path))
            .json(&json!({ "analytics": analytics }));
        if dnt {
            r = r.header("DNT", "1");
        }
        app.send(r)
    };
    let get = |dnt: bool| {
        let mut r = app.client.get(app.url(&path));
        if dnt {
            r = r.header("DNT", "1");
        }
        app.send(r)
    };
    // Nothing stated: no consent.
    assert_eq!(get(false).await.expect(200)["analytics_allowed"], false);

    let given = put(json!(true), false).await.expect(200);
    assert_eq!(given["analytics_allowed"], true);
    assert_eq!(given["policy_version"], "1");
    assert_eq!(get(false).await.expect(200)["analytics_allowed"], true);
    assert_eq!(
        get(true).await.expect(200)["analytics_allowed"],
        false,
        "DNT: 1 is no consent whatever was stored"
    );
    // A statement under DNT: 1 is recorded as a refusal.
    let under_dnt = put(json!(true), true).await.expect(200);
    assert_eq!(under_dnt["analytics_allowed"], false);
    assert_eq!(get(false).await.expect(200)["analytics_allowed"], false);
    put(json!(true), false).await.expect(200);
    let withdrawn = put(json!(false), false).await.expect(200);
    assert_eq!(withdrawn["analytics_allowed"], false);
    assert_eq!(get(false).await.expect(200)["analytics_allowed"], false);

    // Every statement is an event on the visitor's stream, sealed as consent data, with the
    // policy version in force.
    let events = app
        .store
        .read_stream(&format!("visitor-{visitor}"), 0, 10)
        .await
        .expect("read");
    let statements: Vec<(bool, bool, String)> = events
        .iter()
        .map(|e| {
            assert_eq!(e.event_type, "ConsentStated");
            let choice = &e.data["choice"]["$personal"];
            assert_eq!(choice["category"], "consent");
            (
                choice["value"]["analytics"] == true,
                choice["value"]["do_not_track"] == true,
                e.data["policy_version"]
                    .as_str()
                    .expect("version")
                    .to_owned(),
            )
        })
        .collect();
    let v1 = || "1".to_owned();
    assert_eq!(
        statements,
        vec![
            (true, false, v1()),
            (false, true, v1()),
            (true, false, v1()),
            (false, false, v1())
        ]
    );
    assert_eq!(
        events.last().map(|e| e.position),
        withdrawn["position"].as_u64()
    );

    // A statement after a new version takes effect names that version.
    let effective = lightwidget_store::Clock::now(&*app.clock) + chrono::Duration::days(6);
    app.post(
        "/v1/privacy/policies",
        Some(ADMIN_TOKEN),
        json!({"version": "2", "text": "Second.", "effective_at": effective.to_rfc3339()}),
    )
    .await
    .expect(201);
    assert_eq!(
        put(json!(true), false).await.expect(200)["policy_version"],
        "1"
    );
    app.advance(chrono::Duration::days(7)).await;
    assert_eq!(
        put(json!(true), false).await.expect(200)["policy_version"],
        "2"
    );

    // Refusals: a visitor id that is not a UUID, a body that is not a boolean, an unknown
    // field, no body. Nothing appended.
    let head = app.store.head().await.expect("head").position;
    let r = app
        .call(
            Method::PUT,
            "/v1/consent/not-a-uuid",
            None,
            Some(json!({"analytics": true})),
        )
        .await;
    assert_eq!(
        (r.status, r.body["field"].as_str()),
        (422, Some("visitor_id"))
    );
    assert_eq!(app.get("/v1/consent/not-a-uuid", None).await.status, 422);
    for (body, field) in [
        (json!({"analytics": "yes"}), "analytics"),
        (json!({"analytics": true, "ip": "1.2.3.4"}), "ip"),
        (json!({}), "analytics"),
    ] {
        let r = app.call(Method::PUT, &path, None, Some(body.clone())).await;
        assert!(
            matches!(r.status, 400 | 422) && r.body["field"] == field,
            "{body}: {} {}",
            r.status,
            r.body
        );
    }
    assert_eq!(app.store.head().await.expect("head").position, head);
    app.stop().await;
}

/// Posts a comment, with `X-Forwarded-For` when given: the IP stored with it.
async fn ip_of(app: &lightwidget_tests::TestApp, forwarded: Option<&str>) -> String {
    let path = "/v1/articles/proxies/comments";
    let mut r = app
        .client
        .post(app.url(path))
        .json(&json!({"author": "Ola", "text": "hi"}));
    if let Some(f) = forwarded {
        r = r.header("X-Forwarded-For", f);
    }
    let id = app.send(r).await.expect(201)["comment_id"]
        .as_str()
        .expect("id")
        .to_owned();
    let events = app
        .store
        .read_stream("article-proxies", 0, 1000)
        .await
        .expect("read");
    let e = events
        .iter()
        .find(|e| e.data["comment_id"] == id.as_str())
        .expect("stored");
    e.data["ip"]["$personal"]["value"]
        .as_str()
        .expect("ip")
        .to_owned()
}

/// The IP kept with a comment (R6) is the client's: `X-Forwarded-For` is believed only from
/// a trusted proxy, read from the right past the trusted hops; a spoofed header from an
/// untrusted peer changes nothing.
async fn the_client_ip_comes_from_trusted_proxies_only(backend: Backend) {
    // The test's client is the server's peer, 127.0.0.1: here a trusted proxy.
    let behind = lightwidget_tests::spawn_app_with(
        backend,
        TestConfig {
            trusted_proxies: vec![
                "127.0.0.0/8".parse().expect("cidr"),
                "10.0.0.0/8".parse().expect("cidr"),
            ],
            ..Default::default()
        },
    )
    .await;
    assert_eq!(ip_of(&behind, Some("203.0.113.9")).await, "203.0.113.9");
    assert_eq!(
        ip_of(&behind, Some("6.6.6.6, 203.0.113.9, 10.0.0.2")).await,
        "203.0.113.9",
        "the rightmost untrusted hop; the spoofed first one is ignored"
    );
    assert_eq!(ip_of(&behind, None).await, "127.0.0.1");
    behind.stop().await;
    // Not trusted (the default): the header is the client's to write, and ignored.
    let direct = lightwidget_tests::spawn_app(backend).await;
    assert_eq!(ip_of(&direct, Some("203.0.113.9")).await, "127.0.0.1");
    direct.stop().await;
    // Trusting other proxies only: a spoof from this peer is ignored too.
    let elsewhere = lightwidget_tests::spawn_app_with(
        backend,
        TestConfig {
            trusted_proxies: vec!["10.0.0.0/8".parse().expect("cidr")],
            ..Default::default()
        },
    )
    .await;
    assert_eq!(ip_of(&elsewhere, Some("203.0.113.9")).await, "127.0.0.1");
    elsewhere.stop().await;
}

both! {
    trusted_proxies => the_client_ip_comes_from_trusted_proxies_only;
    consent => consent_is_stated_withdrawn_and_refused_under_dnt;
    policy_versions => policy_versions_take_effect_no_sooner_than_five_days;
    processor_registry => the_processor_registry_is_served;
    idempotency => anonymous_posts_honour_idempotency_keys;
    comments => comments_keep_the_ip_but_never_show_it;
    tickets => tickets_need_an_email_and_keep_only_what_was_filled;
}

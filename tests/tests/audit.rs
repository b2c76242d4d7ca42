//! The log as auditors read it (`GET /v1/audit/events`) and a data subject's export
//! (`GET /v1/me/export`, R26), through real HTTP on both backends.

use chrono::Duration;
use lightwidget_tests::{billing, both, Backend, TestApp, ADMIN_TOKEN};
use serde_json::{json, Value};

async fn ndjson(app: &TestApp, query: &str, token: &str) -> Vec<Value> {
    let r = app
        .client
        .get(app.url(&format!("/v1/audit/events{query}")))
        .bearer_auth(token)
        .send()
        .await
        .expect("request");
    assert_eq!(r.status(), 200);
    assert_eq!(
        r.headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok()),
        Some("application/x-ndjson")
    );
    r.text()
        .await
        .expect("body")
        .lines()
        .map(|l| serde_json::from_str(l).expect("one JSON envelope per line"))
        .collect()
}

async fn auditors_read_the_log_in_order_with_erased_fields_marked(backend: Backend) {
    let app = lightwidget_tests::spawn_app(backend).await;
    let auditor = app.staff("auditor").await;
    let (token, _, _) = app.sign_in("alice").await;
    let preview = app
        .post(
            "/v1/previews",
            Some(&token),
            json!({"title": "Secret draft", "layout": "grid", "columns": 2}),
        )
        .await
        .expect(201)["preview_id"]
        .as_str()
        .expect("id")
        .to_owned();
    for n in 0..3 {
        app.create_widget(&token, &format!("w{n}")).await;
    }
    let all = ndjson(&app, "", &auditor).await;
    let head = app.store.head().await.expect("head").position;
    assert_eq!(all.len() as u64, head);
    let positions: Vec<u64> = all.iter().filter_map(|e| e["position"].as_u64()).collect();
    assert_eq!(positions, (1..=head).collect::<Vec<_>>());
    assert!(all
        .iter()
        .all(|e| e["hash"].as_str().is_some_and(|h| h.len() == 64)));

    let created = ndjson(&app, "?type=WidgetCreated", &auditor).await;
    assert_eq!(
        ndjson(&app, "?type=WidgetCreated&min_position=1", &auditor)
            .await
            .len(),
        3,
        "min_position is accepted (the log is always current)"
    );
    assert_eq!(created.len(), 3);
    assert_eq!(
        ndjson(&app, "?type=WidgetCreated&limit=2", &auditor)
            .await
            .len(),
        2
    );
    let after = created[0]["position"].as_u64().expect("position");
    assert_eq!(
        ndjson(
            &app,
            &format!("?type=WidgetCreated&after={after}"),
            &auditor
        )
        .await
        .len(),
        2
    );
    let stream = format!("preview-{preview}");
    // Sealed unless revealed: the category shows, the value does not, nothing is recorded.
    let before = app.store.head().await.expect("head").position;
    let sealed = ndjson(&app, &format!("?stream={stream}"), &auditor).await;
    assert_eq!(
        sealed[0]["data"]["settings"]["sealed"]["category"], "preview",
        "{}",
        sealed[0]
    );
    assert!(!sealed[0].to_string().contains("Secret draft"));
    let r = app
        .get(
            &format!("/v1/audit/events?stream={stream}&reveal=true"),
            Some(&auditor),
        )
        .await;
    assert_eq!((r.status, r.body["field"].as_str()), (400, Some("reason")));
    for query in [
        "reveal=yes&reason=x",
        &format!("reveal=true&reason={}", "x".repeat(501)),
    ] {
        let r = app
            .get(&format!("/v1/audit/events?{query}"), Some(&auditor))
            .await;
        assert_eq!(r.status, 400, "{query}");
    }
    assert_eq!(app.store.head().await.expect("head").position, before);
    let reveal = "&reveal=true&reason=case%20AUD-4%20sample%20check";
    let one = ndjson(&app, &format!("?stream={stream}{reveal}"), &auditor).await;
    assert_eq!(one.len(), 1);
    assert_eq!(
        one[0]["data"]["settings"]["$personal"]["value"]["title"],
        "Secret draft"
    );
    // The revealing read was recorded first: who, why, what.
    let reads = ndjson(&app, "?stream=audit-reads", &auditor).await;
    assert_eq!(reads.len(), 1);
    assert_eq!(reads[0]["type"], "AuditDataRevealed");
    assert_eq!(reads[0]["position"].as_u64(), Some(before + 1));
    assert_eq!(reads[0]["data"]["reason"], "case AUD-4 sample check");
    assert_eq!(
        reads[0]["data"]["scope"],
        format!("GET /v1/audit/events?stream={stream}&reveal=true")
    );
    assert!(reads[0]["actor"]
        .as_str()
        .is_some_and(|a| a.starts_with("staff:")));
    // Credentials (the Instagram access token) are never revealed.
    let signed = ndjson(&app, &format!("?type=AccountSignedIn{reveal}"), &auditor).await;
    assert!(!signed.is_empty());
    for e in &signed {
        assert_eq!(
            e["data"]["access_token"]["sealed"]["category"], "credentials",
            "{e}"
        );
        assert!(!e.to_string().contains("demo-token"), "{e}");
    }

    // Erased: the field reads as erased, the envelope and its hash stay.
    app.advance(Duration::minutes(16)).await;
    app.sweep().await;
    let erased = ndjson(&app, &format!("?stream={stream}{reveal}"), &auditor).await;
    assert_eq!(erased[0]["data"]["settings"]["$personal"]["erased"], true);
    assert!(erased[0]["data"]["settings"]["$personal"]
        .get("value")
        .is_none());
    assert_eq!(erased[0]["hash"], one[0]["hash"]);
    assert!(!serde_json::to_string(&erased)
        .expect("json")
        .contains("Secret draft"));

    for (token, status) in [(None, 401), (Some(token.as_str()), 403)] {
        assert_eq!(app.get("/v1/audit/events", token).await.status, status);
    }
    for (query, field) in [
        ("after=x", "after"),
        ("limit=0", "limit"),
        ("stream=a%20b", "stream"),
        ("color=red", "color"),
    ] {
        let r = app
            .get(&format!("/v1/audit/events?{query}"), Some(&auditor))
            .await;
        assert_eq!(
            (r.status, r.body["field"].as_str()),
            (400, Some(field)),
            "{query}"
        );
    }
    app.stop().await;
}

/// The categories of the personal fields of `subjects` in an event's data.
fn collect(data: &Value, subjects: &[String], out: &mut std::collections::BTreeSet<String>) {
    match data {
        Value::Object(map) => {
            if let Some(p) = map.get("$personal") {
                if subjects.iter().any(|s| p["subject"] == s.as_str()) {
                    out.insert(p["category"].as_str().unwrap_or_default().to_owned());
                }
                return;
            }
            map.values().for_each(|v| collect(v, subjects, out));
        }
        Value::Array(a) => a.iter().for_each(|v| collect(v, subjects, out)),
        _ => {}
    }
}

async fn an_owner_exports_every_category_held(backend: Backend) {
    let app = lightwidget_tests::spawn_app(backend).await;
    let (token, account, _) = app.sign_in("bruno").await;
    app.post(
        "/v1/previews",
        Some(&token),
        json!({"title": "Draft", "layout": "grid", "columns": 2}),
    )
    .await
    .expect(201);
    let (w, _) = app.create_widget(&token, "Shop window").await;
    let order = app.order(&token, &w, billing()).await;
    app.pay(&order, "TXN-EXPORT-1").await;
    let head = app.store.head().await.expect("head").position;
    let export = app
        .get(&format!("/v1/me/export?min_position={head}"), Some(&token))
        .await
        .expect(200);
    assert_eq!(export["account_id"], account.as_str());
    let categories: Vec<&str> = export["categories"]
        .as_array()
        .expect("categories")
        .iter()
        .filter_map(|c| c["category"].as_str())
        .collect();
    // Every category of personal data the account's history touched (the access logs of the
    // widget page are its visitors' data, not the owner's).
    assert_eq!(
        categories,
        vec![
            "billing",
            "preview",
            "profile",
            "statistics",
            "widget_content"
        ]
    );
    // Against the history itself: every category of a personal field of this account's
    // subjects, anywhere in the log, is in the export; the only other one is statistics
    // (counts, which hold no sealed field).
    let preview_id = export["categories"][1]["retention"][0]["subject_id"]
        .as_str()
        .expect("preview subject")
        .to_owned();
    let subjects = [
        format!("account:{account}"),
        format!("widget:{w}"),
        preview_id,
        format!("order:{}", order["order_id"].as_str().expect("order")),
    ];
    let mut touched = std::collections::BTreeSet::new();
    let revealed = "?reveal=true&reason=export%20completeness%20check";
    for e in ndjson(&app, revealed, ADMIN_TOKEN).await {
        collect(&e["data"], &subjects, &mut touched);
    }
    let mut expected: Vec<&str> = touched.iter().map(String::as_str).collect();
    expected.push("statistics");
    expected.sort();
    assert_eq!(categories, expected);
    let text = export.to_string();
    for expected in [
        "bruno",
        "Shop window",
        "Draft",
        "Alice Example",
        "TXN-EXPORT-1",
    ] {
        assert!(text.contains(expected), "{expected} in {text}");
    }
    // Credentials are never exported: the Instagram access token is not in it.
    assert!(!text.contains("demo-token"), "{text}");
    let profile = &export["categories"][2];
    assert!(profile["retention"][0]["explanation"]
        .as_str()
        .is_some_and(|e| !e.is_empty()));
    assert_eq!(
        app.get("/v1/me/export", Some(ADMIN_TOKEN)).await.status,
        403
    );
    assert_eq!(app.get("/v1/me/export", None).await.status, 401);
    // Another account sees only its own.
    let (other, _, _) = app.sign_in("carla").await;
    let theirs = app
        .get(&format!("/v1/me/export?min_position={head}"), Some(&other))
        .await
        .expect(200);
    assert!(!theirs.to_string().contains("Shop window"));
    app.stop().await;
}

async fn auditors_verify_the_chain_and_replay_projections(backend: Backend) {
    let app = lightwidget_tests::spawn_app(backend).await;
    let auditor = app.staff("auditor").await;
    let (token, _, _) = app.sign_in("erik").await;
    let (w, created) = app.create_widget(&token, "First title").await;
    let r = app
        .send(
            app.client
                .patch(app.url(&format!("/v1/widgets/{w}")))
                .bearer_auth(&token)
                .header("if-match", "1")
                .json(&json!({"title": "Second title"})),
        )
        .await;
    assert_eq!(r.status, 200, "{r:?}");
    let head = app.store.head().await.expect("head").position;

    let v = app
        .get("/v1/audit/verify", Some(&auditor))
        .await
        .expect(200);
    assert_eq!(v["ok"], true);
    assert_eq!(v["events_checked"], head);
    assert_eq!(v["head_position"], head);
    assert!(v["first_bad_position"].is_null());
    assert_eq!(v["head_hash"].as_str().map(str::len), Some(64));

    // Without reveal, what personal data shaped reads sealed; the rest stays.
    let sealed = app
        .get(
            &format!("/v1/audit/replay/widgets?at={created}&key={w}"),
            Some(&auditor),
        )
        .await
        .expect(200);
    let doc = &sealed["documents"][0]["doc"];
    assert_eq!(doc["title"], json!({"sealed": {}}), "{doc}");
    assert_eq!(doc["layout"], json!({"sealed": {}}));
    assert!(
        doc["status"].is_string() && doc["created_at"].is_string(),
        "{doc}"
    );
    assert!(!sealed.to_string().contains("First title"));
    let r = app
        .get(
            &format!("/v1/audit/replay/widgets?at={created}&reveal=true"),
            Some(&auditor),
        )
        .await;
    assert_eq!((r.status, r.body["field"].as_str()), (400, Some("reason")));
    let reveal = "&reveal=true&reason=replay%20check";
    let head_before = app.store.head().await.expect("head").position;
    let then = app
        .get(
            &format!("/v1/audit/replay/widgets?at={created}&key={w}{reveal}"),
            Some(&auditor),
        )
        .await
        .expect(200);
    assert_eq!(then["at_position"], created);
    assert_eq!(then["documents"].as_array().map(Vec::len), Some(1));
    assert_eq!(then["documents"][0]["doc"]["title"], "First title");
    let recorded = app
        .store
        .read_stream_raw("audit-reads", 0, 10)
        .await
        .expect("read");
    assert_eq!(recorded.len(), 1);
    assert_eq!(recorded[0].position, head_before + 1);
    assert_eq!(recorded[0].event_type, "AuditDataRevealed");
    let now = app
        .get(
            &format!("/v1/audit/replay/widgets?at={head}{reveal}"),
            Some(&auditor),
        )
        .await
        .expect(200);
    assert_eq!(now["documents"][0]["doc"]["title"], "Second title");
    // By time: the manual clock stood still, so the present time includes everything.
    let at = {
        use lightwidget_store::Clock;
        lightwidget_store::format_time(app.clock.now() + Duration::seconds(1))
    };
    let by_time = app
        .get(
            &format!("/v1/audit/replay/accounts?at={}", at.replace('+', "%2B")),
            Some(&auditor),
        )
        .await
        .expect(200);
    // Everything: the two recorded reveals included.
    assert_eq!(by_time["at_position"], head + 2);
    let before_all = app
        .get(
            "/v1/audit/replay/widgets?at=2000-01-01T00:00:00Z",
            Some(&auditor),
        )
        .await
        .expect(200);
    assert_eq!(before_all["documents"], json!([]));

    assert_eq!(
        app.get("/v1/audit/replay/nothing?at=1", Some(&auditor))
            .await
            .status,
        404
    );
    for (query, field) in [("", "at"), ("?at=yesterday", "at"), ("?at=1&x=2", "x")] {
        let r = app
            .get(&format!("/v1/audit/replay/widgets{query}"), Some(&auditor))
            .await;
        assert_eq!(
            (r.status, r.body["field"].as_str()),
            (400, Some(field)),
            "{query}"
        );
    }
    for (who, status) in [(None, 401), (Some(token.as_str()), 403)] {
        assert_eq!(app.get("/v1/audit/verify", who).await.status, status);
        assert_eq!(
            app.get("/v1/audit/replay/widgets?at=1", who).await.status,
            status
        );
    }
    app.stop().await;
}

/// A sign-in recorded before credentials had their category (version 2: the access token
/// labelled `profile`) is withheld all the same: not revealed to auditors, not exported.
async fn older_credentials_are_withheld_too(backend: Backend) {
    use lightwidget_store::{AppendRequest, ExpectedVersion, Metadata, NewEvent};
    let app = lightwidget_tests::spawn_app(backend).await;
    let (token, account, _) = app.sign_in("olga").await;
    let mut old = NewEvent::from_domain(
        &lightwidget_domain::event::AccountSignedIn {
            account_id: account.parse().expect("id"),
            access_token: lightwidget_domain::Personal::new(
                lightwidget_domain::Subject::new("account", &account),
                lightwidget_domain::Category::Profile,
                "LEGACY-TOKEN-7".to_owned(),
            ),
            signed_in_at: chrono::Utc::now(),
        }
        .into(),
        &Metadata::system(),
    );
    old.schema_version = 2;
    let position = app
        .store
        .append(AppendRequest::single(
            format!("account-{account}"),
            ExpectedVersion::Any,
            vec![old],
        ))
        .await
        .expect("append")
        .last_position;
    let revealed = ndjson(
        &app,
        &format!("?after={}&reveal=true&reason=legacy%20check", position - 1),
        ADMIN_TOKEN,
    )
    .await;
    assert_eq!(revealed[0]["schema_version"], 2);
    assert_eq!(
        revealed[0]["data"]["access_token"]["sealed"]["category"],
        "profile"
    );
    assert!(!revealed[0].to_string().contains("LEGACY-TOKEN-7"));
    let export = app
        .get(
            &format!("/v1/me/export?min_position={position}"),
            Some(&token),
        )
        .await
        .expect(200);
    assert!(export.to_string().contains("olga"), "{export}");
    assert!(!export.to_string().contains("LEGACY-TOKEN-7"));
}

both! {
    legacy_credentials => older_credentials_are_withheld_too;
    verify_and_replay => auditors_verify_the_chain_and_replay_projections;
    audit_events => auditors_read_the_log_in_order_with_erased_fields_marked;
    export => an_owner_exports_every_category_held;
}

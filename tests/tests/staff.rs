//! Staff actions through real HTTP on both backends: security blocks and unblocks accounts
//! (R17, R24), compliance places and releases legal holds (R21).

use lightwidget_tests::{both, Backend, ADMIN_TOKEN};
use serde_json::json;

async fn security_blocks_and_unblocks(backend: Backend) {
    let app = lightwidget_tests::spawn_app(backend).await;
    let (owner, account, _) = app.sign_in("alice").await;
    let security = app.staff("security").await;
    let compliance = app.staff("compliance").await;
    let path = format!("/v1/security/accounts/{account}/block");
    let reason = json!({"reason": "card testing from many IPs"});
    for (token, status) in [
        (None, 401),
        (Some(owner.as_str()), 403),
        (Some(compliance.as_str()), 403),
    ] {
        assert_eq!(app.post(&path, token, reason.clone()).await.status, status);
    }
    let r = app.post(&path, Some(&security), json!({})).await;
    assert_eq!((r.status, r.body["field"].as_str()), (422, Some("reason")));
    let unknown = format!("/v1/security/accounts/{}/block", uuid::Uuid::new_v4());
    assert_eq!(
        app.post(&unknown, Some(&security), reason.clone())
            .await
            .status,
        404
    );

    let r = app
        .post(&path, Some(&security), reason.clone())
        .await
        .expect(200);
    let hold_until =
        chrono::DateTime::parse_from_rfc3339(r["hold_until"].as_str().expect("hold_until"))
            .expect("time");
    let now = {
        use lightwidget_store::Clock;
        app.clock.now()
    };
    let days = (hold_until.with_timezone(&chrono::Utc) - now).num_days();
    assert!((364..=366).contains(&days), "held 12 months (R24): {days}");
    let position = r["position"].as_u64().expect("position");
    // Blocked: every command of the owner is refused, reading says so.
    let r = app
        .post(
            "/v1/widgets",
            Some(&owner),
            json!({"title": "t", "layout": "grid", "columns": 1}),
        )
        .await;
    assert_eq!(r.status, 403);
    let me = app
        .get(&format!("/v1/me?min_position={position}"), Some(&owner))
        .await
        .expect(200);
    assert_eq!(me["status"], "blocked");
    assert_eq!(
        app.post(&path, Some(&security), reason.clone())
            .await
            .status,
        409
    );
    // The reason is sealed: not in the stored text.
    let raw = app.store.read_all_raw(0, 10_000).await.expect("raw");
    assert!(!raw.iter().any(|e| e.data.contains("card testing")));

    // The admin holds the security role too.
    let unblock = format!("/v1/security/accounts/{account}/unblock");
    assert_eq!(
        app.post(&unblock, Some(&compliance), json!({}))
            .await
            .status,
        403
    );
    app.post(&unblock, Some(ADMIN_TOKEN), json!({}))
        .await
        .expect(200);
    assert_eq!(
        app.post(&unblock, Some(&security), json!({})).await.status,
        409
    );
    app.create_widget(&owner, "back again").await;
}

async fn compliance_places_and_releases_holds(backend: Backend) {
    let app = lightwidget_tests::spawn_app(backend).await;
    let (owner, account, _) = app.sign_in("alice").await;
    let compliance = app.staff("compliance").await;
    let security = app.staff("security").await;
    let body = json!({"account_id": account, "reason": "court order", "case_ref": "KR-2026-17"});
    for (token, status) in [
        (None, 401),
        (Some(owner.as_str()), 403),
        (Some(security.as_str()), 403),
    ] {
        let r = app.post("/v1/compliance/holds", token, body.clone()).await;
        assert_eq!(r.status, status);
    }
    let before = app.store.head().await.expect("head").position;
    for (bad, field) in [
        (
            json!({"account_id": account, "reason": "r", "case_ref": " "}),
            "case_ref",
        ),
        (
            json!({"account_id": account, "reason": "", "case_ref": "K"}),
            "reason",
        ),
        (
            json!({"account_id": "nope", "reason": "r", "case_ref": "K"}),
            "account_id",
        ),
        (json!({"account_id": account, "reason": "r"}), "case_ref"),
    ] {
        let r = app
            .post("/v1/compliance/holds", Some(&compliance), bad.clone())
            .await;
        assert_eq!(
            (r.status, r.body["field"].as_str()),
            (422, Some(field)),
            "{bad}: {}",
            r.body
        );
    }
    let r = app
        .post(
            "/v1/compliance/holds",
            Some(&compliance),
            json!({"account_id": uuid::Uuid::new_v4(), "reason": "r", "case_ref": "K"}),
        )
        .await;
    assert_eq!(
        (r.status, r.body["field"].as_str()),
        (404, Some("account_id"))
    );
    assert_eq!(
        app.store.head().await.expect("head").position,
        before,
        "nothing stored"
    );

    let r = app
        .post("/v1/compliance/holds", Some(&compliance), body.clone())
        .await
        .expect(201);
    let hold = r["hold_id"].as_str().expect("hold id").to_owned();
    let path = format!("/v1/compliance/holds/{hold}");
    assert_eq!(app.delete(&path, Some(&security)).await.status, 403);
    let r = app.delete(&path, Some(&compliance)).await.expect(200);
    assert!(r["position"].as_u64().is_some());
    assert_eq!(app.delete(&path, Some(&compliance)).await.status, 409);
    let unknown = format!("/v1/compliance/holds/{}", uuid::Uuid::new_v4());
    assert_eq!(app.delete(&unknown, Some(&compliance)).await.status, 404);
    // The hold is in the log with its case reference.
    let raw = app.store.read_all_raw(0, 10_000).await.expect("raw");
    assert!(raw
        .iter()
        .any(|e| e.event_type == "LegalHoldPlaced" && e.data.contains("KR-2026-17")));
    assert!(raw.iter().any(|e| e.event_type == "LegalHoldReleased"));
}

async fn security_reads_are_recorded(backend: Backend) {
    let app = lightwidget_tests::spawn_app(backend).await;
    let (owner, account, _) = app.sign_in("dora").await;
    app.sign_in("dora").await;
    let security = app.staff("security").await;
    let compliance = app.staff("compliance").await;
    let path = format!("/v1/security/accounts/{account}?reason=ticket%20SEC-7");
    for (token, status) in [
        (None, 401),
        (Some(owner.as_str()), 403),
        (Some(compliance.as_str()), 403),
    ] {
        assert_eq!(app.get(&path, token).await.status, status);
    }
    let before = app.store.head().await.expect("head").position;
    for query in ["", "?reason=", "?reason=%20%20"] {
        let r = app
            .get(
                &format!("/v1/security/accounts/{account}{query}"),
                Some(&security),
            )
            .await;
        assert_eq!(
            (r.status, r.body["field"].as_str()),
            (400, Some("reason")),
            "{query}"
        );
    }
    let unknown = format!("/v1/security/accounts/{}?reason=x", uuid::Uuid::new_v4());
    assert_eq!(app.get(&unknown, Some(&security)).await.status, 404);
    assert_eq!(
        app.store.head().await.expect("head").position,
        before,
        "refusals record nothing"
    );

    let view = app.get(&path, Some(&security)).await.expect(200);
    assert_eq!(view["profile"]["username"], "dora");
    assert_eq!(view["logins"].as_array().map(Vec::len), Some(2));
    assert!(
        !view.to_string().contains("demo-token"),
        "tokens are never shown"
    );
    let position = view["position"].as_u64().expect("position");
    let record = app
        .store
        .read_stream_raw(&format!("access-{account}"), 0, 10)
        .await
        .expect("read");
    assert_eq!(record.len(), 1);
    assert_eq!(record[0].position, position);
    assert_eq!(record[0].event_type, "AccountDataRead");
    assert!(!record[0].data.contains("SEC-7"), "the reason is sealed");
    let subject = app
        .get(
            &format!("/v1/compliance/subjects/{account}?min_position={position}"),
            Some(&compliance),
        )
        .await
        .expect(200);
    let reads = subject["access_records"].as_array().expect("reads");
    assert_eq!(reads.len(), 1);
    assert_eq!(reads[0]["position"], position);
    assert!(reads[0]["staff_id"].is_string());
    app.stop().await;
}

both! {
    block => security_blocks_and_unblocks;
    holds => compliance_places_and_releases_holds;
    security_reads => security_reads_are_recorded;
}

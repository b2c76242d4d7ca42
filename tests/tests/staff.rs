//! Staff actions through real HTTP on both backends: security blocks and unblocks accounts
//! (R17, R24), compliance places and releases legal holds (R21) and keeps the breach register
//! (R16).

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

/// The breach register (R16): a breach is recorded with the time it became known, is due for
/// notification 72 hours later, is flagged overdue past that (and counted in a gauge), and is
/// cleared by the notification; affected owners read it in `/v1/me`. Every refusal appends
/// nothing.
async fn compliance_keeps_the_breach_register(backend: Backend) {
    use lightwidget_store::Clock;
    let app = lightwidget_tests::spawn_app(backend).await;
    let (owner, account, _) = app.sign_in("alice").await;
    let (bystander, _, _) = app.sign_in("bob").await;
    let compliance = app.staff("compliance").await;
    let rfc =
        |t: chrono::DateTime<chrono::Utc>| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let detected = app.clock.now() - chrono::Duration::hours(1);
    let breach = |detected_at: String, categories: serde_json::Value| {
        json!({"description": "a backup copied to a wrong bucket", "detected_at": detected_at,
               "categories": categories, "affected_accounts": [account]})
    };
    let head = app.store.head().await.expect("head").position;
    let good = breach(rfc(detected), json!(["billing"]));
    assert_eq!(
        app.post("/v1/compliance/breaches", Some(&owner), good.clone())
            .await
            .status,
        403
    );
    for (body, field) in [
        (
            breach("yesterday".into(), json!(["billing"])),
            "detected_at",
        ),
        (breach(rfc(detected), json!(["passwords"])), "categories"),
        (breach(rfc(detected), json!([])), "categories"),
        (
            breach(
                rfc(app.clock.now() + chrono::Duration::hours(1)),
                json!(["billing"]),
            ),
            "detected_at",
        ),
    ] {
        let r = app
            .post("/v1/compliance/breaches", Some(&compliance), body)
            .await;
        assert_eq!(
            (r.status, r.body["field"].as_str()),
            (422, Some(field)),
            "{}",
            r.body
        );
    }
    assert_eq!(
        app.store.head().await.expect("head").position,
        head,
        "refusals append nothing"
    );

    let r = app
        .post("/v1/compliance/breaches", Some(&compliance), good)
        .await
        .expect(201);
    let id = r["breach_id"].as_str().expect("id").to_owned();
    let at = r["position"].as_u64().expect("position");
    let time = |v: &serde_json::Value| {
        chrono::DateTime::parse_from_rfc3339(v.as_str().expect("a time")).expect("RFC 3339")
    };
    let sent = chrono::DateTime::parse_from_rfc3339(&rfc(detected)).expect("RFC 3339");
    assert_eq!(time(&r["notify_by"]), sent + chrono::Duration::hours(72));
    let list = |min: u64| {
        let (app, token) = (&app, compliance.clone());
        async move {
            let path = format!("/v1/compliance/breaches?min_position={min}");
            app.get(&path, Some(&token)).await.expect(200)
        }
    };
    let l = list(at).await;
    assert_eq!(l["breaches"][0]["breach_id"], id.as_str());
    assert_eq!(l["breaches"][0]["overdue"], false);
    assert_eq!(
        app.get("/v1/compliance/breaches", Some(&owner))
            .await
            .status,
        403
    );
    let me = app
        .get(&format!("/v1/me?min_position={at}"), Some(&owner))
        .await
        .expect(200);
    assert_eq!(me["breaches"][0]["breach_id"], id.as_str());
    assert_eq!(
        me["breaches"][0]["description"],
        "a backup copied to a wrong bucket"
    );
    let them = app
        .get(&format!("/v1/me?min_position={at}"), Some(&bystander))
        .await
        .expect(200);
    assert_eq!(them["breaches"], json!([]));

    // 72 hours after detection, not notified: overdue.
    app.advance(chrono::Duration::hours(72)).await;
    assert_eq!(list(at).await["breaches"][0]["overdue"], true);
    // The gauge is one per process, and every test server of this binary shares the
    // recorder: only one of the two backends' runs reads it, and another server's
    // /metrics between this one's count and its rendering is answered by reading again.
    if backend == Backend::Postgres {
        assert!(gauge_reads(&app, "lw_breaches_overdue 1").await);
    }

    let path = format!("/v1/compliance/breaches/{id}/notified");
    let early =
        json!({"authority": "UODO", "notified_at": rfc(detected - chrono::Duration::hours(1))});
    let r = app.post(&path, Some(&compliance), early).await;
    assert_eq!(
        (r.status, r.body["field"].as_str()),
        (422, Some("notified_at"))
    );
    let told = json!({"authority": "UODO", "notified_at": rfc(app.clock.now())});
    let r = app
        .post(&path, Some(&compliance), told.clone())
        .await
        .expect(200);
    let at = r["position"].as_u64().expect("position");
    let l = list(at).await;
    assert_eq!(l["breaches"][0]["overdue"], false);
    assert_eq!(l["breaches"][0]["authority"], "UODO");
    assert!(l["breaches"][0]["notified_at"].is_string());
    assert_eq!(
        app.post(&path, Some(&compliance), told.clone())
            .await
            .status,
        409
    );
    let unknown = format!("/v1/compliance/breaches/{}/notified", uuid::Uuid::new_v4());
    assert_eq!(
        app.post(&unknown, Some(&compliance), told).await.status,
        404
    );
    if backend == Backend::Postgres {
        assert!(gauge_reads(&app, "lw_breaches_overdue 0").await);
    }
}

/// Whether `/metrics` shows `line`, in one of five reads.
async fn gauge_reads(app: &lightwidget_tests::TestApp, line: &str) -> bool {
    for _ in 0..5 {
        let metrics = app.get("/metrics", None).await;
        if metrics.text().lines().any(|l| l == line) {
            return true;
        }
    }
    false
}

/// The admin lists staff (never a token), removes a member (every token of theirs 401 from
/// then on, `revoked_at` in the list), but never themself nor the installation's admin; only
/// an admin may do any of it, and every refusal records nothing (issue 21).
async fn admins_list_and_remove_staff(backend: Backend) {
    let app = lightwidget_tests::spawn_app(backend).await;
    let created = app
        .post(
            "/v1/staff",
            Some(ADMIN_TOKEN),
            json!({"name": "Greta Auditor", "role": "auditor"}),
        )
        .await
        .expect(201);
    let (auditor, auditor_id) = (
        created["token"].as_str().expect("token").to_owned(),
        created["staff_id"].as_str().expect("id").to_owned(),
    );
    let second_admin = app
        .post(
            "/v1/staff",
            Some(ADMIN_TOKEN),
            json!({"name": "Hal", "role": "admin"}),
        )
        .await
        .expect(201);
    let (admin2, admin2_id) = (
        second_admin["token"].as_str().expect("token").to_owned(),
        second_admin["staff_id"].as_str().expect("id").to_owned(),
    );
    let position = second_admin["position"].as_u64().expect("position");
    let list = app
        .get(
            &format!("/v1/staff?min_position={position}"),
            Some(ADMIN_TOKEN),
        )
        .await
        .expect(200);
    let staff = list["staff"].as_array().expect("staff");
    assert_eq!(staff.len(), 3, "{list}");
    assert_eq!(staff[0]["name"], "admin");
    let greta = staff
        .iter()
        .find(|m| m["staff_id"] == auditor_id.as_str())
        .expect("listed");
    assert_eq!(greta["name"], "Greta Auditor");
    assert_eq!(greta["role"], "auditor");
    assert!(greta["created_at"].is_string() && greta["revoked_at"].is_null());
    let text = list.to_string();
    assert!(
        !text.contains(&auditor) && !text.contains("token"),
        "{text}"
    );
    let hash = lightwidget_commands::tokens::token_hash(&auditor);
    assert!(!text.contains(&hash), "no token hash either");

    let head = app.store.head().await.expect("head").position;
    let remove = format!("/v1/staff/{auditor_id}");
    assert_eq!(app.get("/v1/staff", Some(&auditor)).await.status, 403);
    assert_eq!(app.delete(&remove, Some(&auditor)).await.status, 403);
    let (owner, _, _) = app.sign_in("ida").await;
    let head = head.max(app.store.head().await.expect("head").position);
    assert_eq!(app.delete(&remove, Some(&owner)).await.status, 403);
    let unknown = format!("/v1/staff/{}", uuid::Uuid::new_v4());
    assert_eq!(app.delete(&unknown, Some(ADMIN_TOKEN)).await.status, 404);
    assert_eq!(
        app.delete("/v1/staff/not-a-uuid", Some(ADMIN_TOKEN))
            .await
            .status,
        404
    );
    let installation = format!("/v1/staff/{}", uuid::Uuid::from_u128(1));
    assert_eq!(app.delete(&installation, Some(&admin2)).await.status, 409);
    let own = format!("/v1/staff/{admin2_id}");
    assert_eq!(app.delete(&own, Some(&admin2)).await.status, 409);
    assert_eq!(
        app.store.head().await.expect("head").position,
        head,
        "refusals record nothing"
    );

    app.get("/v1/audit/verify", Some(&auditor))
        .await
        .expect(200);
    let removed = app.delete(&remove, Some(&admin2)).await.expect(200);
    let position = removed["position"].as_u64().expect("position");
    let r = app.get("/v1/audit/verify", Some(&auditor)).await;
    assert_eq!(r.status, 401, "{}", r.body);
    assert!(r.headers.get("www-authenticate").is_some());
    assert_eq!(app.delete(&remove, Some(&admin2)).await.status, 409);
    let list = app
        .get(&format!("/v1/staff?min_position={position}"), Some(&admin2))
        .await
        .expect(200);
    let greta = list["staff"]
        .as_array()
        .expect("staff")
        .iter()
        .find(|m| m["staff_id"] == auditor_id.as_str())
        .cloned()
        .expect("still listed");
    assert!(greta["revoked_at"].is_string(), "{greta}");
    let events = app
        .store
        .read_stream_raw(&format!("staff-{auditor_id}"), 0, 10)
        .await
        .expect("read");
    assert_eq!(
        events.last().map(|e| e.event_type.as_str()),
        Some("StaffRemoved")
    );
}

/// `POST /v1/admin/token` gives the admin a new token once; every token the admin held
/// before (the configured one included) answers 401 from then on, another admin's goes on
/// working.
async fn the_admin_token_rotates(backend: Backend) {
    let app = lightwidget_tests::spawn_app_with(
        backend,
        lightwidget_tests::TestConfig {
            token_ttl: Some(std::time::Duration::from_secs(720 * 3600)),
            ..Default::default()
        },
    )
    .await;
    let other = app.staff("admin").await;
    let auditor = app.staff("auditor").await;
    assert_eq!(
        app.post("/v1/admin/token", Some(&auditor), json!(null))
            .await
            .status,
        403
    );
    let rotated = app
        .post("/v1/admin/token", Some(ADMIN_TOKEN), json!(null))
        .await
        .expect(201);
    let new = rotated["token"].as_str().expect("token").to_owned();
    assert_ne!(new, ADMIN_TOKEN);
    let r = app.get("/v1/audit/verify", Some(ADMIN_TOKEN)).await;
    assert_eq!(r.status, 401, "{}", r.body);
    app.get("/v1/audit/verify", Some(&new)).await.expect(200);
    app.get("/v1/audit/verify", Some(&other)).await.expect(200);
    app.get("/v1/audit/verify", Some(&auditor))
        .await
        .expect(200);
    // The new token is the installation's admin token: it does not expire.
    app.post(
        "/v1/admin/clock",
        Some(&new),
        json!({"advance_seconds": chrono::Duration::days(365).num_seconds()}),
    )
    .await
    .expect(200);
    app.get("/v1/audit/verify", Some(&new)).await.expect(200);
    assert_eq!(app.get("/v1/audit/verify", Some(&other)).await.status, 401);
    // The rotation is an event, and no token is in it.
    let events = app
        .store
        .read_stream_raw(&format!("staff-{}", uuid::Uuid::from_u128(1)), 0, 10)
        .await
        .expect("read");
    let last = events.last().expect("events");
    assert_eq!(last.event_type, "StaffTokensRotated");
    assert!(!last.data.contains(&new));
}

both! {
    staff_list => admins_list_and_remove_staff;
    admin_token => the_admin_token_rotates;
    breach_register => compliance_keeps_the_breach_register;
    block => security_blocks_and_unblocks;
    holds => compliance_places_and_releases_holds;
    security_reads => security_reads_are_recorded;
}

//! The transparency log over HTTP (issue 27): checkpoints signed under the served key and
//! covering the head within moments, consistency and inclusion proofs that verify with the
//! auditor's own code (and the bad requests refused by name), the checkpoint history, and an
//! erasure receipt that proves the account's purge, holds no personal data, and is refused
//! once altered.

use lightwidget_tests::{both, Backend, TestApp};
use lightwidget_tlog::proof::decode_hash;
use lightwidget_tlog::tree::{check_consistency, check_inclusion, leaf_hash};
use lightwidget_tlog::Checkpoint;

async fn key(app: &TestApp) -> String {
    let r = app.get("/v1/log/key", None).await;
    assert_eq!(r.status, 200);
    r.text().trim().to_owned()
}

/// The checkpoint once it covers `position`, opened under `key`.
async fn checkpoint(app: &TestApp, key: &str, position: u64) -> (Checkpoint, String) {
    let r = app
        .get(&format!("/v1/log/checkpoint?min_position={position}"), None)
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.headers["cache-control"], "no-store");
    assert!(r.headers["content-type"]
        .to_str()
        .expect("type")
        .starts_with("text/plain"));
    let note = r.text().to_owned();
    let c = Checkpoint::open(&note, key).expect("the checkpoint verifies under the served key");
    assert!(c.size >= position, "{} < {position}", c.size);
    (c, note)
}

fn hashes(v: &serde_json::Value) -> Vec<lightwidget_tlog::Hash> {
    v.as_array()
        .expect("array")
        .iter()
        .map(|h| decode_hash(h.as_str().expect("text")).expect("base64 hash"))
        .collect()
}

async fn checkpoints_and_proofs_verify(backend: Backend) {
    let app = lightwidget_tests::spawn_app(backend).await;
    let key = key(&app).await;
    let (first, _) = checkpoint(&app, &key, 1).await;
    let mut head = 0;
    for i in 0..5 {
        head = app.sign_in(&format!("tlog_user_{i}")).await.2;
    }
    let (second, _) = checkpoint(&app, &key, head).await;
    assert!(second.size > first.size);

    let r = app
        .get(
            &format!(
                "/v1/log/proof/consistency?first={}&second={}",
                first.size, second.size
            ),
            None,
        )
        .await
        .expect(200);
    let proof = hashes(&r["consistency"]);
    check_consistency(&proof, second.size, second.root, first.size, first.root)
        .expect("the consistency proof verifies");
    assert_eq!(
        decode_hash(r["first_root"].as_str().expect("root")),
        Some(first.root)
    );
    for (query, field) in [
        (
            format!("first={}&second={}", second.size, first.size),
            "first",
        ),
        (format!("first=1&second={}", second.size + 1000), "second"),
        ("second=3".to_owned(), "first"),
        ("first=x&second=3".to_owned(), "first"),
    ] {
        let r = app
            .get(&format!("/v1/log/proof/consistency?{query}"), None)
            .await;
        assert_eq!(
            (r.status, r.body["field"].as_str()),
            (400, Some(field)),
            "{query}"
        );
    }

    // Inclusion: auditors only; the leaf is the event's chain hash.
    let (owner, _, _) = app.sign_in("tlog_owner").await;
    let path = format!("/v1/log/proof/inclusion?position=2&size={}", second.size);
    assert_eq!(app.get(&path, Some(&owner)).await.status, 403);
    assert_eq!(app.get(&path, None).await.status, 401);
    let auditor = app.staff("auditor").await;
    let r = app.get(&path, Some(&auditor)).await.expect(200);
    let event = app.store.read_all_raw(1, 1).await.expect("read").remove(0);
    assert_eq!(event.position, 2);
    let leaf = decode_hash(r["leaf_hash"].as_str().expect("leaf")).expect("hash");
    assert_eq!(leaf, leaf_hash(&event.hash));
    assert_eq!(r["leaf_index"], 1);
    check_inclusion(&hashes(&r["audit_path"]), second.size, second.root, 1, leaf)
        .expect("the inclusion proof verifies");
    for (query, field) in [
        (format!("position=0&size={}", second.size), "position"),
        (
            format!("position={}&size={}", second.size + 1, second.size),
            "position",
        ),
        (format!("position=1&size={}", second.size + 1000), "size"),
    ] {
        let r = app
            .get(&format!("/v1/log/proof/inclusion?{query}"), Some(&auditor))
            .await;
        assert_eq!(
            (r.status, r.body["field"].as_str()),
            (400, Some(field)),
            "{query}"
        );
    }

    // The history: every line signed under the key, in size order, after `after`.
    let r = app.get("/v1/log/checkpoints", Some(&owner)).await;
    assert_eq!(r.status, 403);
    let r = app
        .get(
            &format!("/v1/log/checkpoints?after={}", first.size),
            Some(&auditor),
        )
        .await;
    assert_eq!(r.status, 200);
    // One line parses as a JSON document by itself.
    let lines: Vec<serde_json::Value> = match &r.body {
        serde_json::Value::Object(_) => vec![r.body.clone()],
        _ => r
            .text()
            .lines()
            .map(|l| serde_json::from_str(l).expect("json line"))
            .collect(),
    };
    assert!(!lines.is_empty());
    let mut last = first.size;
    for line in &lines {
        let c = Checkpoint::open(line["note"].as_str().expect("note"), &key).expect("signed");
        assert_eq!(line["size"], c.size);
        assert_eq!(
            decode_hash(line["root"].as_str().expect("root")),
            Some(c.root)
        );
        assert!(c.size > first.size && c.size >= last, "{line}");
        last = c.size;
    }
    assert!(lines.iter().any(|l| l["size"] == second.size));
    app.get("/readyz", None).await.expect(200);
}

async fn an_erasure_receipt_proves_the_purge(backend: Backend) {
    let app = lightwidget_tests::spawn_app(backend).await;
    let key = key(&app).await;
    let username = "receipt_holder_7361";
    let (token, account, _) = app.sign_in(username).await;
    app.create_widget(&token, "a widget of the holder").await;
    let deleted = app.delete("/v1/me", Some(&token)).await.expect(202);
    let url = deleted["erasure_receipt_url"]
        .as_str()
        .expect("url")
        .to_owned();
    let secret = url.strip_prefix("/v1/log/receipts/").expect("receipt path");
    assert_eq!(secret.len(), 32, "128 random bits in hex");
    let at = deleted["position"].as_u64().expect("position");

    // Before the purge: pending, due at the quarantine's end.
    let r = app.get(&format!("{url}?min_position={at}"), None).await;
    assert_eq!(r.status, 409, "{}", r.body);
    assert_eq!(r.body["state"], "pending");
    assert_eq!(r.body["due_at"], deleted["quarantine_until"]);
    // The token is not stored: no event holds it.
    let all = app.store.read_all_raw(0, 10_000).await.expect("read");
    assert!(all.iter().all(|e| !e.data.contains(secret)));
    // Unknown and malformed tokens.
    let unknown = format!("/v1/log/receipts/{}", "0".repeat(32));
    assert_eq!(app.get(&unknown, None).await.status, 404);
    assert_eq!(
        app.get("/v1/log/receipts/not-a-token", None).await.status,
        404
    );

    app.advance(chrono::Duration::days(91)).await;
    let swept = app.sweep().await;
    let position = swept["position"].as_u64().expect("position");
    checkpoint(&app, &key, position).await;
    let r = app.get(&url, None).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let text = r.text().to_owned();
    assert!(text.starts_with("c2sp.org/tlog-proof@v1\nextra "), "{text}");
    let receipt = lightwidget_tlog::receipt::verify(&text, &key).expect("the receipt verifies");
    assert_eq!(receipt.event_type, "AccountPurged");
    assert_eq!(receipt.stream, format!("account-{account}"));
    let purged = all_events(&app).await;
    let event = purged
        .iter()
        .find(|e| e.event_type == "AccountPurged" && e.stream == receipt.stream)
        .expect("the purge event");
    assert_eq!(receipt.position, event.position);
    assert_eq!(receipt.chain_hash.0, event.hash);
    // No personal data: not the username, not in the preimage either.
    let proof = lightwidget_tlog::proof::TlogProof::parse(&text).expect("parse");
    let extra = String::from_utf8_lossy(proof.extra.as_deref().expect("extra")).into_owned();
    assert!(
        !text.contains(username) && !extra.contains(username),
        "{extra}"
    );
    // Altered, it no longer verifies.
    let mut altered = proof.clone();
    altered.index -= 1;
    assert!(lightwidget_tlog::receipt::verify(&altered.to_text(), &key).is_err());
    let mut altered = proof;
    let mut bytes = altered.extra.take().expect("extra");
    let last = bytes.len() - 3;
    bytes[last] ^= 1;
    altered.extra = Some(bytes);
    assert!(lightwidget_tlog::receipt::verify(&altered.to_text(), &key).is_err());

    // A receipt of an account restored during its quarantine says so.
    let (token, _, _) = app.sign_in("receipt_restorer").await;
    let deleted = app.delete("/v1/me", Some(&token)).await.expect(202);
    let restored = app
        .post("/v1/me/restore", Some(&token), serde_json::json!({}))
        .await
        .expect(200);
    let url = deleted["erasure_receipt_url"].as_str().expect("url");
    let r = app
        .get(
            &format!("{url}?min_position={}", restored["position"]),
            None,
        )
        .await;
    assert_eq!(
        (r.status, r.body["state"].as_str()),
        (409, Some("restored")),
        "{}",
        r.body
    );
}

async fn all_events(app: &TestApp) -> Vec<lightwidget_store::StoredEvent> {
    app.store.read_all_raw(0, 100_000).await.expect("read")
}

both! {
    checkpoints_and_proofs => checkpoints_and_proofs_verify;
    erasure_receipts => an_erasure_receipt_proves_the_purge;
}

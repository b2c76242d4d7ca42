//! Upgrade orders (R10), card data refused (R11), the PayPal webhook and invoices, through
//! real HTTP on both backends.

use lightwidget_tests::{billing, both, sign, Backend, TestApp, TestConfig, PAYPAL_SECRET};
use serde_json::{json, Value};

async fn webhook(app: &TestApp, body: &Value, secret: &str) -> lightwidget_tests::Reply {
    app.webhook(body, secret).await
}

async fn order(app: &TestApp, token: &str, widget: &str) -> Value {
    app.order(token, widget, billing()).await
}

async fn card_data_and_bad_billing_are_refused_and_store_nothing(backend: Backend) {
    let app = lightwidget_tests::spawn_app(backend).await;
    let (token, _, _) = app.sign_in("alice").await;
    let (w, _) = app.create_widget(&token, "w").await;
    let before = app.store.head().await.expect("head").position;
    let with = |path: &[&str], value: Value| {
        let mut body = json!({"plan": "pro", "billing": billing()});
        let mut at = &mut body;
        for p in &path[..path.len() - 1] {
            at = &mut at[*p];
        }
        at[path[path.len() - 1]] = value;
        body
    };
    let cases = [
        (
            with(&["billing", "card_number"], json!("x")),
            "billing.card_number",
        ),
        (with(&["cvv"], json!("123")), "cvv"),
        (
            with(&["billing", "address"], json!("4111 1111 1111 1111")),
            "billing.address",
        ),
        (
            with(&["billing", "note"], json!(5555555555554444u64)),
            "billing.note",
        ),
        (
            with(&["billing", "email"], json!("not-an-email")),
            "billing.email",
        ),
        (
            with(&["billing", "country"], json!("Poland")),
            "billing.country",
        ),
        (
            with(&["billing", "vat_id"], json!("PL123")),
            "billing.vat_id",
        ),
        (with(&["billing", "name"], json!("")), "billing.name"),
        (with(&["plan"], json!("gold")), "plan"),
        (with(&["billing", "extra"], json!("x")), "billing.extra"),
    ];
    for (body, field) in cases {
        let r = app
            .post(
                &format!("/v1/widgets/{w}/upgrade"),
                Some(&token),
                body.clone(),
            )
            .await;
        assert_eq!(r.status, 422, "{body}: {}", r.body);
        assert_eq!(r.body["field"], field, "{body}: {}", r.body);
        assert!(
            !r.body.to_string().contains("4111 1111 1111 1111")
                && !r.body.to_string().contains("5555555555554444"),
            "the detail echoes no value"
        );
        let detail = r.body["detail"].as_str().unwrap_or_default();
        for value in ["Alice", "Prosta", "alice@example.com", "PL", "not-an-email"] {
            assert!(
                !detail.contains(value),
                "billing data in the error: {detail}"
            );
        }
    }
    assert_eq!(
        app.store.head().await.expect("head").position,
        before,
        "nothing stored"
    );
    let raw = app.store.read_all_raw(0, 10_000).await.expect("raw");
    // The card numbers sent, whole: "4111" alone turns up by chance in the hex of an id.
    for card in ["4111 1111 1111 1111", "5555555555554444"] {
        assert!(!raw.iter().any(|e| e.data.contains(card)), "{card}");
    }
    // A valid order from a country without a VAT format we know, without a VAT ID.
    let mut b = billing();
    b["country"] = json!("US");
    b["vat_id"] = Value::Null;
    let r = app
        .post(
            &format!("/v1/widgets/{w}/upgrade"),
            Some(&token),
            json!({"plan": "pro", "billing": b}),
        )
        .await
        .expect(201);
    assert_eq!(
        (r["amount"].as_str(), r["currency"].as_str()),
        (Some("29.00"), Some("EUR"))
    );
}

async fn payments_issue_gapless_invoices_once(backend: Backend) {
    let app = lightwidget_tests::spawn_app(backend).await;
    let (token, _, _) = app.sign_in("alice").await;
    let (w1, _) = app.create_widget(&token, "one").await;
    let (w2, _) = app.create_widget(&token, "two").await;
    let o1 = order(&app, &token, &w1).await;
    let o2 = order(&app, &token, &w2).await;
    let pay = |o: &Value, txn: &str| {
        json!({"order_id": o["order_id"], "transaction_id": txn, "amount": "29.00",
               "currency": "EUR", "status": "COMPLETED"})
    };
    // Bad signatures and bad bodies pay nothing.
    assert_eq!(
        webhook(&app, &pay(&o1, "T-1"), "wrong-secret").await.status,
        401
    );
    let r = app
        .send(
            app.client
                .post(app.url("/v1/payments/paypal"))
                .header("content-type", "application/json")
                .body(serde_json::to_vec(&pay(&o1, "T-1")).expect("json")),
        )
        .await;
    assert_eq!(r.status, 401, "no signature");
    let mut wrong = pay(&o1, "T-1");
    wrong["amount"] = json!("1.00");
    assert_eq!(webhook(&app, &wrong, PAYPAL_SECRET).await.status, 422);
    let mut pending = pay(&o1, "T-1");
    pending["status"] = json!("PENDING");
    assert_eq!(webhook(&app, &pending, PAYPAL_SECRET).await.status, 422);
    let mut unknown = pay(&o1, "T-1");
    unknown["order_id"] = json!(uuid::Uuid::new_v4());
    assert_eq!(webhook(&app, &unknown, PAYPAL_SECRET).await.status, 404);

    let year = {
        use lightwidget_store::Clock;
        chrono::Datelike::year(&app.clock.now())
    };
    let first = webhook(&app, &pay(&o1, "T-1"), PAYPAL_SECRET)
        .await
        .expect(200);
    assert_eq!(first["invoice_number"], format!("FV/{year}/000001"));
    let again = webhook(&app, &pay(&o1, "T-1"), PAYPAL_SECRET)
        .await
        .expect(200);
    assert_eq!(
        again["invoice_number"], first["invoice_number"],
        "same transaction, same invoice"
    );
    assert_eq!(
        webhook(&app, &pay(&o2, "T-1"), PAYPAL_SECRET).await.status,
        409,
        "a transaction id pays one order"
    );
    let second = webhook(&app, &pay(&o2, "T-2"), PAYPAL_SECRET)
        .await
        .expect(200);
    assert_eq!(second["invoice_number"], format!("FV/{year}/000002"));
    let position = second["position"].as_u64().expect("position");

    let w = app
        .get(
            &format!("/v1/widgets/{w1}?min_position={position}"),
            Some(&token),
        )
        .await
        .expect(200);
    assert_eq!(w["plan"], "pro");
    assert!(w["upgraded_at"].is_string());
    // Upgrading a pro widget again is a conflict.
    let r = app
        .post(
            &format!("/v1/widgets/{w1}/upgrade"),
            Some(&token),
            json!({"plan": "pro", "billing": billing()}),
        )
        .await;
    assert_eq!(r.status, 409, "{}", r.body);

    // Invoices: the owner's own, by number (slashes encoded), and compliance sees all.
    let list = app
        .get(
            &format!("/v1/invoices?min_position={position}"),
            Some(&token),
        )
        .await
        .expect(200);
    let numbers: Vec<&str> = list["invoices"]
        .as_array()
        .expect("list")
        .iter()
        .filter_map(|i| i["invoice_number"].as_str())
        .collect();
    assert_eq!(
        numbers,
        [format!("FV/{year}/000001"), format!("FV/{year}/000002")]
    );
    let encoded = format!("/v1/invoices/FV%2F{year}%2F000001");
    let inv = app.get(&encoded, Some(&token)).await.expect(200);
    assert_eq!(inv["order_id"], o1["order_id"]);
    assert_eq!(inv["widget_id"], w1.as_str());
    assert_eq!(
        (inv["amount"].as_str(), inv["currency"].as_str()),
        (Some("29.00"), Some("EUR"))
    );
    assert_eq!(inv["billing"]["vat_id"], "PL5260250274");
    assert_eq!(inv["retain_until"], format!("{}-12-31", year + 5));
    // A number not of the invoices' shape names none: 404, never a store error (a NUL byte
    // is not even text to PostgreSQL; schemathesis found that one).
    for odd in [
        "%00",
        "FV%2F2026%2F00000%00",
        "FV%2F%C3%A9%C3%A9%2F000001",
        "x",
    ] {
        let r = app.get(&format!("/v1/invoices/{odd}"), Some(&token)).await;
        assert_eq!(r.status, 404, "{odd}: {}", r.body);
    }
    let (other, _, _) = app.sign_in("mallory").await;
    assert_eq!(app.get(&encoded, Some(&other)).await.status, 404);
    let theirs = app.get("/v1/invoices", Some(&other)).await.expect(200);
    assert_eq!(theirs["invoices"], json!([]));
    let compliance = app.staff("compliance").await;
    let all = app.get("/v1/invoices", Some(&compliance)).await.expect(200);
    assert_eq!(all["invoices"].as_array().map(Vec::len), Some(2));
    app.get(&encoded, Some(&compliance)).await.expect(200);
    let auditor = app.staff("auditor").await;
    assert_eq!(app.get("/v1/invoices", Some(&auditor)).await.status, 403);
}

async fn payments_need_the_webhook_secret(backend: Backend) {
    let app = lightwidget_tests::spawn_app_with(
        backend,
        TestConfig {
            no_paypal: true,
            ..Default::default()
        },
    )
    .await;
    let body = json!({"order_id": uuid::Uuid::new_v4(), "transaction_id": "T", "amount": "29.00",
                      "currency": "EUR", "status": "COMPLETED"});
    let r = webhook(&app, &body, PAYPAL_SECRET).await;
    assert_eq!(r.status, 503);
    assert!(r.headers.contains_key("retry-after"));
    // Over the body limit: 413 as a problem, before any signature check.
    let big = vec![b' '; 1024 * 1024 + 1];
    let r = app
        .send(
            app.client
                .post(app.url("/v1/payments/paypal"))
                .header("content-type", "application/json")
                .header("x-lw-signature", sign(&big, PAYPAL_SECRET))
                .body(big),
        )
        .await;
    assert_eq!(r.status, 413);
    assert_eq!(r.headers["content-type"], "application/problem+json");
}

both! {
    refused_orders => card_data_and_bad_billing_are_refused_and_store_nothing;
    payments => payments_issue_gapless_invoices_once;
    no_secret => payments_need_the_webhook_secret;
}

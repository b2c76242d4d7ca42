//! Two servers on one PostgreSQL database, as behind a load balancer (issue 22): conflicting
//! writes through both, invoices numbered across both, and a deletion on one seen on the
//! other under the read-your-writes rules.

use lightwidget_tests::{billing, spawn_app, spawn_beside, Backend};
use serde_json::json;

/// Two PATCHes of one widget with the same `If-Match`, one through each server at once: one
/// is applied, the other is 409, and the widget is at the next version only.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conflicting_patches_through_two_servers() {
    let a = spawn_app(Backend::Postgres).await;
    let b = spawn_beside(&a).await;
    let (token, _, _) = a.sign_in("pat").await;
    for round in 0..5 {
        let (w, _) = a.create_widget(&token, &format!("w{round}")).await;
        let patch = |app: &lightwidget_tests::TestApp, title: &str| {
            app.client
                .patch(app.url(&format!("/v1/widgets/{w}")))
                .bearer_auth(&token)
                .header("if-match", "1")
                .json(&json!({ "title": title }))
        };
        let (ra, rb) = tokio::join!(a.send(patch(&a, "from a")), b.send(patch(&b, "from b")));
        let mut statuses = [ra.status, rb.status];
        statuses.sort();
        assert_eq!(statuses, [200, 409], "{ra:?} {rb:?}");
        let winner = if ra.status == 200 { "from a" } else { "from b" };
        let position = [ra.body["position"].as_u64(), rb.body["position"].as_u64()]
            .into_iter()
            .flatten()
            .max()
            .expect("the winner's position");
        for app in [&a, &b] {
            let doc = app
                .get(
                    &format!("/v1/widgets/{w}?min_position={position}"),
                    Some(&token),
                )
                .await
                .expect(200);
            assert_eq!(
                (doc["title"].as_str(), doc["version"].as_u64()),
                (Some(winner), Some(2))
            );
        }
    }
}

/// 16 orders paid at once, half through each server: the invoices of the year are numbered
/// 1 to 16 without a gap or a repeat.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn payments_through_two_servers_number_invoices_without_gaps() {
    let a = spawn_app(Backend::Postgres).await;
    let b = spawn_beside(&a).await;
    let (token, _, _) = a.sign_in("paula").await;
    let mut orders = Vec::new();
    for n in 0..16 {
        let (w, _) = a.create_widget(&token, &format!("shop {n}")).await;
        orders.push(a.order(&token, &w, billing()).await);
    }
    let ids: Vec<String> = (0..16).map(|n| format!("TXN-TWO-{n}")).collect();
    let pays = orders.iter().zip(&ids).enumerate().map(|(n, (order, id))| {
        let app = if n % 2 == 0 { &a } else { &b };
        app.pay(order, id)
    });
    let paid = futures::future::join_all(pays).await;
    let mut numbers: Vec<u32> = paid
        .iter()
        .map(|p| {
            let number = p["invoice_number"].as_str().expect("number");
            number
                .rsplit('/')
                .next()
                .expect("sequence")
                .parse()
                .expect("digits")
        })
        .collect();
    numbers.sort();
    assert_eq!(numbers, (1..=16).collect::<Vec<u32>>());
}

/// A widget deleted through one server: the other answers its page 404 for a request at the
/// deletion's position, and its owner's list says quarantined.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deletion_on_one_server_is_seen_on_the_other() {
    let a = spawn_app(Backend::Postgres).await;
    let b = spawn_beside(&a).await;
    let (token, _, _) = a.sign_in("dot").await;
    let (w, created) = a.create_widget(&token, "soon gone").await;
    let page = |position: u64| format!("/w/{w}?min_position={position}");
    assert_eq!(b.get(&page(created), None).await.status, 200);
    let deleted = a
        .delete(&format!("/v1/widgets/{w}"), Some(&token))
        .await
        .expect(202);
    let position = deleted["position"].as_u64().expect("position");
    assert_eq!(b.get(&page(position), None).await.status, 404);
    let doc = b
        .get(
            &format!("/v1/widgets/{w}?min_position={position}"),
            Some(&token),
        )
        .await
        .expect(200);
    assert_eq!(doc["status"], "quarantined");
}

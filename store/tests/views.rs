//! The ViewStore port on both real backends: conditional checkpoints, upserts and deletes in
//! one transaction, queries on the indexed fields, drop and swap.

use chrono::{Duration, TimeZone, Utc};
use lightwidget_store::{DocChange, StoreError, SystemClock, ViewDoc, ViewQuery};
use lightwidget_testkit::{Backend, TestStore};
use serde_json::json;
use std::sync::Arc;

fn doc(key: &str, owner: &str, state: &str, day: i64) -> ViewDoc {
    let t0 = Utc
        .with_ymd_and_hms(2026, 1, 1, 0, 0, 0)
        .single()
        .expect("valid");
    ViewDoc::new(key, json!({"k": key, "day": day}))
        .owner(owner)
        .state(state)
        .due_at(t0 + Duration::days(day))
}

async fn checkpoints_are_conditional_and_atomic(backend: Backend) {
    let t = TestStore::new(backend, Arc::new(SystemClock)).await;
    let v = &t.views;
    assert_eq!(v.checkpoint("w").await.expect("cp"), 0);
    v.commit("w", 0, 5, &[DocChange::Put(doc("a", "o1", "active", 1))])
        .await
        .expect("first");
    assert_eq!(v.checkpoint("w").await.expect("cp"), 5);
    // A stale runner's commit is refused and changes nothing.
    let err = v
        .commit("w", 0, 9, &[DocChange::Put(doc("b", "o1", "active", 2))])
        .await
        .expect_err("stale");
    assert!(
        matches!(err, StoreError::Conflict { actual: 5, .. }),
        "{err:?}"
    );
    assert!(v
        .get_many("w", &["b".into()])
        .await
        .expect("get")
        .is_empty());
    assert_eq!(v.checkpoint("w").await.expect("cp"), 5);
    // Several changes to one key in one commit: the last one wins.
    v.commit(
        "w",
        5,
        8,
        &[
            DocChange::Put(doc("b", "o1", "active", 2)),
            DocChange::Put(doc("b", "o2", "quarantined", 3)),
            DocChange::Delete("a".into()),
        ],
    )
    .await
    .expect("second");
    let got = v
        .get_many("w", &["a".into(), "b".into()])
        .await
        .expect("get");
    assert_eq!(got, vec![doc("b", "o2", "quarantined", 3)]);
    // A batch with nothing for this view moves only the checkpoint — from the right one;
    // from a stale one it is refused and the checkpoint stays.
    v.commit("w", 8, 12, &[]).await.expect("checkpoint only");
    assert_eq!(v.checkpoint("w").await.expect("cp"), 12);
    let err = v.commit("w", 8, 20, &[]).await.expect_err("stale");
    assert!(
        matches!(err, StoreError::Conflict { actual: 12, .. }),
        "{err:?}"
    );
    assert_eq!(v.checkpoint("w").await.expect("cp"), 12);
    assert_eq!(
        v.get_many("w", &["b".into()]).await.expect("get"),
        vec![doc("b", "o2", "quarantined", 3)],
        "one key reads as a list of keys does"
    );
    // Views are separate.
    assert_eq!(v.checkpoint("other").await.expect("cp"), 0);
}

async fn queries_filter_on_indexed_fields(backend: Backend) {
    let t = TestStore::new(backend, Arc::new(SystemClock)).await;
    let v = &t.views;
    let docs: Vec<DocChange> = (0..30)
        .map(|i| {
            DocChange::Put(doc(
                &format!("k{i:02}"),
                if i % 2 == 0 { "even" } else { "odd" },
                if i % 3 == 0 { "due" } else { "active" },
                30 - i,
            ))
        })
        .collect();
    v.commit("w", 0, 1, &docs).await.expect("commit");
    let q =
        |owner: Option<&str>, state: Option<&str>, due: Option<i64>, after: Option<&str>, limit| {
            ViewQuery {
                owner: owner.map(Into::into),
                state: state.map(Into::into),
                due_before: due.map(|d| {
                    Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0)
                        .single()
                        .expect("valid")
                        + Duration::days(d)
                }),
                after_key: after.map(Into::into),
                limit,
            }
        };
    let keys = |docs: Vec<ViewDoc>| docs.into_iter().map(|d| d.key).collect::<Vec<_>>();
    assert_eq!(
        keys(
            v.query("w", &q(Some("even"), Some("due"), None, None, 100))
                .await
                .expect("q")
        ),
        ["k00", "k06", "k12", "k18", "k24"]
    );
    // Due before day 5: days 1..=4 are keys k29..k26, ordered by due date.
    assert_eq!(
        keys(
            v.query("w", &q(None, None, Some(5), None, 100))
                .await
                .expect("q")
        ),
        ["k29", "k28", "k27", "k26"]
    );
    // Paging by key.
    assert_eq!(
        keys(
            v.query("w", &q(Some("odd"), None, None, Some("k23"), 2))
                .await
                .expect("q")
        ),
        ["k25", "k27"]
    );
    assert!(v
        .query("nothing", &q(None, None, None, None, 10))
        .await
        .expect("q")
        .is_empty());
}

async fn swap_replaces_the_live_view_whole(backend: Backend) {
    let t = TestStore::new(backend, Arc::new(SystemClock)).await;
    let v = &t.views;
    v.commit(
        "live",
        0,
        3,
        &[DocChange::Put(doc("old", "o", "active", 1))],
    )
    .await
    .expect("live");
    v.commit(
        "live#rebuild",
        0,
        7,
        &[DocChange::Put(doc("new", "o", "active", 1))],
    )
    .await
    .expect("building");
    v.swap("live#rebuild", "live").await.expect("swap");
    assert_eq!(v.checkpoint("live").await.expect("cp"), 7);
    assert_eq!(v.checkpoint("live#rebuild").await.expect("cp"), 0);
    let all = v
        .query(
            "live",
            &ViewQuery {
                limit: 10,
                ..Default::default()
            },
        )
        .await
        .expect("q");
    assert_eq!(all, vec![doc("new", "o", "active", 1)]);
    // A runner still at the old checkpoint is refused.
    assert!(matches!(
        v.commit("live", 3, 4, &[]).await,
        Err(StoreError::Conflict { actual: 7, .. })
    ));
    v.drop_view("live").await.expect("drop");
    assert_eq!(v.checkpoint("live").await.expect("cp"), 0);
    assert!(v
        .query(
            "live",
            &ViewQuery {
                limit: 10,
                ..Default::default()
            }
        )
        .await
        .expect("q")
        .is_empty());
}

lightwidget_testkit::both!(
    checkpoints_are_conditional_and_atomic,
    queries_filter_on_indexed_fields,
    swap_replaces_the_live_view_whole
);

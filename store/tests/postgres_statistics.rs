//! PostgreSQL only: the store keeps the planner's statistics of the log itself (decision 33).
//! Without them, a read of the types of most of the log (`event_type = ANY(…) ORDER BY
//! position LIMIT n`) was planned as if those types were rare: every later event of them
//! collected and sorted, for each batch.

use lightwidget_store::postgres::{analyze_if_stale, pool_for};
use lightwidget_store::{AppendRequest, ExpectedVersion, NewEvent, SystemClock};
use lightwidget_testkit::{Backend, TestStore};
use serde_json::json;
use std::sync::Arc;
use std::time::{Duration, Instant};
use uuid::Uuid;

fn event(event_type: &str) -> NewEvent {
    NewEvent {
        event_id: Uuid::new_v4(),
        event_type: event_type.into(),
        schema_version: 1,
        data: json!({"n": 1}),
        actor: "system".into(),
        correlation_id: Uuid::new_v4(),
        causation_id: None,
    }
}

/// What the planner believes the events table holds (-1: never analyzed).
async fn reltuples(client: &deadpool_postgres::Client) -> f64 {
    client
        .query_one(
            "SELECT reltuples::float8 FROM pg_class WHERE oid = 'events'::regclass",
            &[],
        )
        .await
        .expect("reltuples")
        .get(0)
}

#[tokio::test]
async fn the_store_analyzes_the_log_as_it_grows() {
    let t = TestStore::new(Backend::Postgres, Arc::new(SystemClock)).await;
    let url = &t.db.as_ref().expect("postgres").url;
    let pool = pool_for(url, 2).expect("pool");
    let client = pool.get().await.expect("client");
    // Nothing else analyzes it here, whatever the server's autovacuum does.
    client
        .batch_execute("ALTER TABLE events SET (autovacuum_enabled = false)")
        .await
        .expect("autovacuum off");
    // 12,000 events, nearly all of one type, in appends of 1,000 to their own streams.
    for batch in 0..12 {
        let events: Vec<NewEvent> = (0..1000)
            .map(|i| match i {
                0 => event("RarelyHappened"),
                _ => event("OftenHappened"),
            })
            .collect();
        t.store
            .append(AppendRequest::single(
                format!("s-{batch}"),
                ExpectedVersion::NoStream,
                events,
            ))
            .await
            .expect("append");
    }
    let head = t.store.head().await.expect("head").position;
    assert_eq!(head, 12_000);
    // The writer looks at the statistics every 10,000 events, and analyzes on a task: wait
    // (bounded) until the planner knows of more than 10,000 rows.
    let deadline = Instant::now() + Duration::from_secs(30);
    while reltuples(&client).await < 10_000.0 {
        assert!(
            Instant::now() < deadline,
            "the events table was not analyzed as the log grew: reltuples {}",
            reltuples(&client).await
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Fresh statistics are left alone; a log grown by a fifth since is analyzed again.
    let known = reltuples(&client).await;
    assert!(!analyze_if_stale(&pool, head).await.expect("check"));
    assert!(analyze_if_stale(&pool, (known * 1.5) as u64)
        .await
        .expect("analyze"));
    // A read of the types of most of the log walks the primary key in position order.
    let plan: String = client
        .query(
            "EXPLAIN SELECT position FROM events WHERE position > $1 AND position <= $2 \
             AND event_type = ANY($3) ORDER BY position LIMIT $4",
            &[
                &0i64,
                &(head as i64),
                &vec!["OftenHappened", "RarelyHappened"],
                &1000i64,
            ],
        )
        .await
        .expect("explain")
        .iter()
        .map(|r| r.get::<_, String>(0))
        .collect::<Vec<_>>()
        .join("\n");
    assert!(plan.contains("events_pkey"), "{plan}");
    assert!(!plan.contains("Sort"), "{plan}");
}

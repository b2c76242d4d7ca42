//! PostgreSQL restarted under load (issue 22): the local cluster is stopped and started by
//! the test while writers and readers keep going. While it is down every request answers
//! 503 problem+json with `Retry-After` within the request timeout (never 500, never a hang);
//! within 5 s of its return the server serves again, runners included; nothing acknowledged
//! is lost. A test binary of its own: it takes the database away from every other test.

use lightwidget_tests::{spawn_app_with, Backend, TestConfig};
use serde_json::json;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// `pg_ctlcluster <version> main <action>` for the one local cluster.
fn cluster(action: &str) {
    let version = std::fs::read_dir("/etc/postgresql")
        .expect("a local PostgreSQL cluster (/etc/postgresql)")
        .filter_map(Result::ok)
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .next()
        .expect("a cluster version");
    let mut cmd = std::process::Command::new("pg_ctlcluster");
    cmd.args(["--skip-systemctl-redirect", &version, "main", action]);
    if action == "stop" {
        cmd.args(["-m", "fast"]);
    }
    let status = cmd.status().expect("pg_ctlcluster runs");
    assert!(status.success(), "pg_ctlcluster {action}: {status}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_restarted_under_load() {
    if std::env::var(lightwidget_testkit::TEST_DATABASE_URL_VAR).is_ok() {
        eprintln!("skipped: LW_TEST_DATABASE_URL names a server this test cannot restart");
        return;
    }
    let timeout = Duration::from_secs(5);
    let app = Arc::new(
        spawn_app_with(
            Backend::Postgres,
            TestConfig {
                request_timeout: Some(timeout),
                ..Default::default()
            },
        )
        .await,
    );
    let (token, _, _) = app.sign_in("resilient").await;
    let stop = Arc::new(AtomicBool::new(false));
    let acknowledged = Arc::new(Mutex::new(Vec::<String>::new()));
    let statuses = Arc::new(Mutex::new(BTreeMap::<u16, u64>::new()));
    let slowest = Arc::new(Mutex::new(Duration::ZERO));
    let mut load = Vec::new();
    for w in 0..4 {
        let (app, token, stop, acknowledged, statuses, slowest) = (
            app.clone(),
            token.clone(),
            stop.clone(),
            acknowledged.clone(),
            statuses.clone(),
            slowest.clone(),
        );
        load.push(tokio::spawn(async move {
            let mut n = 0;
            while !stop.load(Ordering::Relaxed) {
                let started = Instant::now();
                let r = if n % 3 == 2 {
                    app.get("/v1/widgets", Some(&token)).await
                } else {
                    app.post(
                        "/v1/widgets",
                        Some(&token),
                        json!({"title": format!("w{w}-{n}"), "layout": "grid", "columns": 2}),
                    )
                    .await
                };
                let took = started.elapsed();
                {
                    let mut s = slowest.lock().expect("lock");
                    *s = (*s).max(took);
                }
                *statuses.lock().expect("lock").entry(r.status).or_default() += 1;
                match r.status {
                    201 => acknowledged
                        .lock()
                        .expect("lock")
                        .push(r.body["widget_id"].as_str().expect("id").to_owned()),
                    503 => {
                        assert!(r.headers.contains_key("retry-after"), "{}", r.body);
                        assert_eq!(
                            r.headers["content-type"].to_str().expect("text"),
                            "application/problem+json"
                        );
                        // A client told to come back does so a moment later.
                        tokio::time::sleep(Duration::from_millis(20)).await;
                    }
                    200 => {}
                    other => panic!("{other} {}", r.body),
                }
                n += 1;
            }
        }));
    }
    let before = |s: &BTreeMap<u16, u64>| s.get(&201).copied().unwrap_or(0);
    // Some load first, then the database goes away for a few seconds.
    while before(&statuses.lock().expect("lock")) < 20 {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    cluster("stop");
    let down_from = Instant::now();
    while statuses
        .lock()
        .expect("lock")
        .get(&503)
        .copied()
        .unwrap_or(0)
        < 20
    {
        assert!(
            down_from.elapsed() < Duration::from_secs(30),
            "no 503 while down"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    cluster("start");
    let back = Instant::now();
    // Serving again within 5 s: a command succeeds and every runner runs.
    loop {
        let r = app.get("/readyz", None).await;
        let running = r.status == 200
            && r.body["projections"]
                .as_object()
                .is_some_and(|p| p.values().all(|v| v["runner"] == "running"));
        if running {
            break;
        }
        assert!(
            back.elapsed() < Duration::from_secs(5),
            "not ready: {} {}",
            r.status,
            r.body
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let created_after = before(&statuses.lock().expect("lock"));
    loop {
        if before(&statuses.lock().expect("lock")) > created_after {
            break;
        }
        assert!(
            back.elapsed() < Duration::from_secs(5),
            "no command succeeded"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    eprintln!(
        "serving again {:?} after the database's return",
        back.elapsed()
    );
    stop.store(true, Ordering::Relaxed);
    for l in load {
        l.await.expect("load task");
    }
    let slowest = *slowest.lock().expect("lock");
    assert!(
        slowest < timeout + Duration::from_secs(1),
        "a request took {slowest:?}"
    );
    // Nothing acknowledged is lost.
    let head = app.store.head().await.expect("head").position;
    let list = app
        .get(&format!("/v1/widgets?min_position={head}"), Some(&token))
        .await
        .expect(200);
    let listed: std::collections::HashSet<&str> = list["widgets"]
        .as_array()
        .expect("widgets")
        .iter()
        .filter_map(|w| w["widget_id"].as_str())
        .collect();
    let acknowledged = acknowledged.lock().expect("lock").clone();
    let lost: Vec<&String> = acknowledged
        .iter()
        .filter(|w| !listed.contains(w.as_str()))
        .collect();
    assert!(lost.is_empty(), "{} acknowledged widgets lost", lost.len());
    eprintln!(
        "statuses {:?}; {} acknowledged, none lost; slowest request {slowest:?}",
        statuses.lock().expect("lock"),
        acknowledged.len()
    );
}

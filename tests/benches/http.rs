//! HTTP throughput and latency at 64 connections, on both backends, each row beside an axum
//! hello-world endpoint measured just before it in the same run (the ceiling of the HTTP
//! stack), once the read models have caught up with the rows before:
//!
//! * `POST /v1/widgets` (a command: load the account, decide, append),
//! * `GET /v1/widgets/{id}` (a query: token lookup, one read-model document),
//! * `GET /w/{id}` (the public page: one read-model document, and a view queued to the
//!   batching recorder, which stores it within 100 ms; issue 23).
//!
//! The server runs on its own 2-thread runtime, the load client on another; both share the
//! machine's cores, as a load tool on the same host would. Each connection sends its next
//! request when the previous one is answered (closed loop), for `LW_BENCH_SECONDS` (default
//! 10) after a 1-second warm-up.
//!
//! Beside each row, the CPU time the whole machine spent per request (load client, server
//! and database, from `/proc/stat`): steadier than requests/s on a machine whose speed
//! varies from run to run, and it counts what the database does for the server.
//!
//! `cargo bench -p lightwidget-tests --bench http` (`LW_BENCH_BACKEND=postgres|sqlite` runs
//! one backend).

use lightwidget_tests::{spawn_app_with, Backend, TestConfig};
use serde_json::json;
use std::time::{Duration, Instant};

// The server's allocator, as in the `lightwidget` binary (the server runs in this process).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

const CONNECTIONS: usize = 64;

struct Result {
    requests: usize,
    errors: usize,
    seconds: f64,
    p50_ms: f64,
    p99_ms: f64,
    /// CPU time the whole machine spent (load client, server, database) per request, in
    /// µs; None where `/proc/stat` cannot be read.
    cpu_us: Option<f64>,
}

/// The machine's busy CPU time so far, in seconds (user, nice, system, irq and softirq of
/// every core; idle, I/O wait and time stolen by the hypervisor left out).
fn busy_seconds() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let line = stat.lines().next()?;
    let fields: Vec<f64> = line
        .split_whitespace()
        .skip(1)
        .map(|f| f.parse().ok())
        .collect::<Option<_>>()?;
    // user nice system idle iowait irq softirq steal …, in USER_HZ ticks (100 per second).
    let busy =
        fields.first()? + fields.get(1)? + fields.get(2)? + fields.get(5)? + fields.get(6)?;
    Some(busy / 100.0)
}

#[derive(Clone)]
enum Load {
    Get(Vec<String>),
    PostJson(String, serde_json::Value),
}

/// Runs `load` from `CONNECTIONS` connections, each its own client with one connection.
async fn run(load: Load, token: Option<String>, seconds: f64) -> Result {
    let start_at = Instant::now() + Duration::from_secs(1);
    let end_at = start_at + Duration::from_secs_f64(seconds);
    // Busy CPU time over the measured window, sampled beside the load.
    let cpu = tokio::spawn(async move {
        tokio::time::sleep_until(start_at.into()).await;
        let before = busy_seconds();
        tokio::time::sleep_until(end_at.into()).await;
        Some(busy_seconds()? - before?)
    });
    let mut tasks = Vec::new();
    for c in 0..CONNECTIONS {
        let (load, token) = (load.clone(), token.clone());
        tasks.push(tokio::spawn(async move {
            let client = reqwest::Client::builder()
                .pool_max_idle_per_host(1)
                .build()
                .expect("client");
            let mut latencies = Vec::new();
            let mut errors = 0;
            let mut i = c;
            loop {
                let now = Instant::now();
                if now >= end_at {
                    break;
                }
                let mut request = match &load {
                    Load::Get(urls) => client.get(&urls[i % urls.len()]),
                    Load::PostJson(url, body) => client.post(url).json(body),
                };
                if let Some(t) = &token {
                    request = request.bearer_auth(t);
                }
                i += CONNECTIONS;
                let ok = match request.send().await {
                    Ok(r) => {
                        let ok = r.status().is_success();
                        let _ = r.bytes().await;
                        ok
                    }
                    Err(_) => false,
                };
                if now >= start_at {
                    latencies.push(now.elapsed().as_micros() as u32);
                    if !ok {
                        errors += 1;
                    }
                }
            }
            (latencies, errors)
        }));
    }
    let mut all = Vec::new();
    let mut errors = 0;
    for t in tasks {
        let (l, e) = t.await.expect("load task");
        all.extend(l);
        errors += e;
    }
    all.sort_unstable();
    let pct = |p: f64| {
        all.get(((all.len() as f64 * p) as usize).min(all.len().saturating_sub(1)))
            .map(|us| *us as f64 / 1000.0)
            .unwrap_or(f64::NAN)
    };
    let busy = cpu.await.ok().flatten();
    Result {
        requests: all.len(),
        errors,
        seconds,
        p50_ms: pct(0.50),
        p99_ms: pct(0.99),
        cpu_us: busy
            .filter(|_| !all.is_empty())
            .map(|b| b * 1e6 / all.len() as f64),
    }
}

fn row(name: &str, r: &Result, hello: Option<f64>) {
    let rps = r.requests as f64 / r.seconds;
    let ratio = hello
        .map(|h| format!("{:.0}%", 100.0 * rps / h))
        .unwrap_or_else(|| "—".into());
    let cpu = r
        .cpu_us
        .map(|c| format!("{c:.0}"))
        .unwrap_or_else(|| "—".into());
    println!(
        "| {name} | {rps:.0} | {:.2} | {:.2} | {ratio} | {cpu} | {} |",
        r.p50_ms, r.p99_ms, r.errors
    );
}

/// Waits until every read model has reached the log's head (`/readyz` shows no lag), at
/// most five minutes; returns the seconds waited.
async fn settle(address: &str) -> f64 {
    let start = Instant::now();
    let client = reqwest::Client::new();
    while start.elapsed() < Duration::from_secs(300) {
        let ready: Option<serde_json::Value> =
            match client.get(format!("{address}/readyz")).send().await {
                Ok(r) => r.json().await.ok(),
                Err(_) => None,
            };
        let idle = ready
            .as_ref()
            .and_then(|r| r["projections"].as_object())
            .is_some_and(|p| !p.is_empty() && p.values().all(|v| v["lag"] == 0));
        if idle {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    start.elapsed().as_secs_f64()
}

/// An axum hello world on its own runtime: the ceiling of the stack.
fn hello_server() -> String {
    let app = axum::Router::new().route("/hello", axum::routing::get(|| async { "Hello, world!" }));
    format!("http://{}/hello", lightwidget_testkit::serve_apart(app, 2))
}

/// Starts the LightWidget server on its own runtime, with an owner and 100 widgets.
fn server(backend: Backend) -> (String, String, Vec<String>, std::sync::mpsc::Sender<()>) {
    let (tx, rx) = std::sync::mpsc::channel();
    let (stop_tx, stop_rx) = std::sync::mpsc::channel::<()>();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("runtime");
        rt.block_on(async move {
            let app = spawn_app_with(
                backend,
                TestConfig {
                    system_clock: true,
                    // The bench is one client at full speed: no limit may stand in its way.
                    rate_limits: Some(lightwidget_api::settings::RateLimits {
                        anonymous_per_minute: std::num::NonZeroU32::MAX,
                        token_per_minute: std::num::NonZeroU32::MAX,
                    }),
                    ..Default::default()
                },
            )
            .await;
            let (token, _, _) = app.sign_in("bench").await;
            let mut widgets = Vec::new();
            let mut last = 0;
            for i in 0..100 {
                let (id, p) = app.create_widget(&token, &format!("widget {i}")).await;
                widgets.push(id);
                last = p;
            }
            app.get(&format!("/v1/widgets?min_position={last}"), Some(&token))
                .await
                .expect(200);
            tx.send((app.address.clone(), token, widgets))
                .expect("send");
            // Serve until the bench is done with this backend.
            let _ = tokio::task::spawn_blocking(move || stop_rx.recv()).await;
            app.stop().await;
        });
    });
    let (address, token, widgets) = rx.recv().expect("server");
    (address, token, widgets, stop_tx)
}

fn main() {
    let seconds: f64 = std::env::var("LW_BENCH_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(10.0);
    let only = std::env::var("LW_BENCH_BACKEND").unwrap_or_default();
    // `LW_BENCH_ROWS=post,get,page` picks rows (each with its hello world).
    let rows = std::env::var("LW_BENCH_ROWS").unwrap_or_else(|_| "post,get,page".into());
    let wants = |row: &str| rows.split(',').any(|r| r == row);
    let client = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let hello = hello_server();
    println!("{CONNECTIONS} connections, {seconds} s per row after 1 s of warm-up\n");
    for backend in [Backend::Postgres, Backend::Sqlite] {
        let name = match backend {
            Backend::Postgres => "PostgreSQL",
            Backend::Sqlite => "SQLite (embedded)",
        };
        if !(only.is_empty()
            || (only == "postgres" && backend == Backend::Postgres)
            || (only == "sqlite" && backend == Backend::Sqlite))
        {
            continue;
        }
        let (address, token, widgets, stop) = server(backend);
        println!("### {name}\n");
        println!(
            "| endpoint | requests/s | p50 ms | p99 ms | vs hello world | machine CPU µs/request | errors |"
        );
        println!("|---|---:|---:|---:|---:|---:|---:|");
        // Each row is compared with a hello world measured just before it, once the read
        // models have caught up with what the rows before left behind: the machine's speed
        // drifts during a run, and a row measured beside a catching-up runner is not the row.
        let hello_then = |row_name: &str| {
            let waited = client.block_on(settle(&address));
            let h = client.block_on(run(Load::Get(vec![hello.clone()]), None, seconds));
            row(
                &format!(
                    "axum hello world, before {row_name} (read models idle after {waited:.1} s)"
                ),
                &h,
                None,
            );
            h.requests as f64 / h.seconds
        };
        if wants("post") {
            let hello_rps = hello_then("POST");
            let post = client.block_on(run(
                Load::PostJson(
                    format!("{address}/v1/widgets"),
                    json!({"title": "bench", "layout": "grid", "columns": 3}),
                ),
                Some(token.clone()),
                seconds,
            ));
            row("`POST /v1/widgets`", &post, Some(hello_rps));
        }
        if wants("get") {
            let hello_rps = hello_then("GET");
            let urls: Vec<String> = widgets
                .iter()
                .map(|w| format!("{address}/v1/widgets/{w}"))
                .collect();
            let get = client.block_on(run(Load::Get(urls), Some(token.clone()), seconds));
            row("`GET /v1/widgets/{id}`", &get, Some(hello_rps));
        }
        if wants("page") {
            let hello_rps = hello_then("the page");
            let urls: Vec<String> = widgets.iter().map(|w| format!("{address}/w/{w}")).collect();
            let page = client.block_on(run(Load::Get(urls), None, seconds));
            row("`GET /w/{id}`", &page, Some(hello_rps));
        }
        println!();
        let _ = stop.send(());
        // Let the server stop (and its database be dropped) before the next backend.
        std::thread::sleep(Duration::from_secs(2));
    }
}

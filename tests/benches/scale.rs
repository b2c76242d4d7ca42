//! Cost at scale (issue 28), on both backends: a store grown to `LW_SCALE_EVENTS` events
//! (1,000,000 by default) — accounts, widgets (one per 50 events, at most 100,000) and the
//! rest page views with their sealed access logs — then, each figure beside its baseline in
//! the same run:
//!
//! * **append, batches of 100, large ÷ empty**: one writer appending batches of 100 views for
//!   `LW_BENCH_SECONDS` (default 5) to an empty store and to the large one, in the order
//!   empty, large, large, empty;
//! * **catch-up ÷ rebuild**: every read model caught up from nothing the way a fresh server
//!   does it (all runners together, as `Runner::run` follows the log), each projection's
//!   time to reach the head against its own `rebuild` alone; the slowest projection's ratio;
//! * **verify ÷ SHA-256**: `audit verify`'s chain walk (`chain::verify_log`) in bytes hashed
//!   per second (the median of three walks), against SHA-256 on one core over the same
//!   canonical bytes (each event's hash input, as verification feeds it).
//!
//! * **memory**: the release `lightwidget` server with default settings, as a new user runs
//!   it: owners create widgets through `POST /v1/widgets` (16 at a time) and each widget's
//!   page is viewed once; the server's anonymous resident memory (`RssAnon`) at 10,000 and
//!   100,000 widgets (`LW_SCALE_WIDGETS` sets the larger figure). The server binary must be
//!   built first: `cargo build --release -p lightwidget-api`. `LW_SCALE_SERVER_ENV`
//!   (`KEY=value,…`) gives it settings, e.g. `LW_MEMORY_MB=32`. Beside each figure it prints
//!   where the memory lies: the largest anonymous mappings. `LW_SCALE_SERVER_WRAPPER`
//!   runs it under a profiler (e.g. `heaptrack -o /tmp/lw`; the figures are then the wrapper's).
//!
//! It ends with a Markdown table per backend.
//!
//! `RUST_LOG` (e.g. `lightwidget_projections=debug`) prints the catch-up's turns and batches.
//!
//! `cargo bench -p lightwidget-tests --bench scale` (`LW_BENCH_BACKEND=postgres|sqlite` runs
//! one backend; `LW_SCALE_ROWS`, a comma-separated subset of `append,catch-up,verify,memory`,
//! runs only those rows; `LW_SCALE_PROJECTIONS`, a comma-separated list of read models,
//! catches up and rebuilds only those).
//!
//! A projection whose rebuild takes under [`NOTICEABLE`] (here every one but `statistics`,
//! `retention` and `widgets`: few of the log's events are theirs) is left out of the slowest
//! ratio: its catch-up time is the runner's start, not its speed. Each one's figures are
//! printed all the same.

use lightwidget_domain::{AccountId, WidgetId};
use lightwidget_projections::rebuild;
use lightwidget_retention::RetentionPolicy;
use lightwidget_store::chain::{self, GENESIS};
use lightwidget_store::{AppendRequest, EventStore, ExpectedVersion, Metadata, StreamWrite};
use lightwidget_store::{StoredEvent, SystemClock};
use lightwidget_testkit::bench::{backends, count};
use lightwidget_testkit::{Backend, TestStore};
use sha2::{Digest, Sha256};
use std::sync::Arc;
use std::time::{Duration, Instant};

// The server's allocator, as in the `lightwidget` binary.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// How many times the log is verified; the table gives the median.
const VERIFY_WALKS: usize = 3;

/// Grows `t` to `total` events: accounts of 10 widgets each, one widget per 50 events (at
/// most 100,000), then views of those widgets.
async fn fill(t: &TestStore, total: usize) -> usize {
    let at = chrono::Utc::now();
    let n_widgets = (total / 50).clamp(10, 100_000);
    let widgets: Vec<WidgetId> = (0..n_widgets).map(|_| WidgetId::new()).collect();
    let mut written = 0;
    for chunk in widgets.chunks(10) {
        let a = AccountId::new();
        let registered = lightwidget_testkit::bench::account_registered(a, "scale", at);
        t.store
            .append(AppendRequest {
                writes: vec![StreamWrite::of(
                    a.stream(),
                    ExpectedVersion::NoStream,
                    &[registered],
                    &Metadata::system(),
                )],
                shred: vec![],
            })
            .await
            .expect("account");
        lightwidget_testkit::bench::create_widgets(&*t.store, a, chunk, at).await;
        written += 1 + chunk.len();
    }
    lightwidget_testkit::bench::append_views(&*t.store, &widgets, 0, total - written).await;
    n_widgets
}

/// One writer appending batches of 100 views for `secs`: events/s and p99 of an append.
async fn append_rate(store: &dyn EventStore, secs: f64) -> (f64, Duration) {
    let widgets: Vec<WidgetId> = (0..100).map(|_| WidgetId::new()).collect();
    let meta = Metadata::system();
    let start = Instant::now();
    let mut latencies = Vec::new();
    let mut n = 0usize;
    while start.elapsed().as_secs_f64() < secs {
        let w = widgets[latencies.len() % widgets.len()];
        let events = (0..100)
            .map(|i| {
                lightwidget_store::NewEvent::from_domain(
                    &lightwidget_testkit::bench::view_at(w, chrono::Utc::now(), n + i),
                    &meta,
                )
            })
            .collect();
        let asked = Instant::now();
        store
            .append(AppendRequest {
                writes: vec![StreamWrite {
                    stream: format!("views-{w}"),
                    expected: ExpectedVersion::Any,
                    events,
                }],
                shred: vec![],
            })
            .await
            .expect("append");
        latencies.push(asked.elapsed());
        n += 100;
    }
    let rate = n as f64 / start.elapsed().as_secs_f64();
    latencies.sort();
    let p99 = latencies[(latencies.len() * 99 / 100).min(latencies.len() - 1)];
    (rate, p99)
}

/// SHA-256 on one core over `inputs` (each hashed after a previous hash, as the chain
/// does), repeated for about a second: bytes per second.
fn sha256_rate(inputs: &[Vec<u8>]) -> f64 {
    let start = Instant::now();
    let mut bytes = 0usize;
    let mut prev = GENESIS;
    while start.elapsed() < Duration::from_secs(1) {
        for input in inputs {
            let mut h = Sha256::new();
            h.update(prev);
            h.update(input);
            prev = h.finalize().into();
            bytes += 32 + input.len();
        }
    }
    std::hint::black_box(prev);
    bytes as f64 / start.elapsed().as_secs_f64()
}

/// The bytes verification hashes over the whole log (each event's canonical bytes and the
/// previous hash), and the canonical bytes of its first page.
async fn hashed_bytes(store: &dyn EventStore) -> (u64, Vec<Vec<u8>>) {
    let mut total = 0u64;
    let mut sample = Vec::new();
    let mut after = 0;
    loop {
        let page: Vec<StoredEvent> = store
            .read_all_raw(after, lightwidget_store::LOG_PAGE)
            .await
            .expect("read");
        let Some(last) = page.last() else { break };
        after = last.position;
        for e in &page {
            let bytes = chain::canonical_bytes(e);
            total += 32 + bytes.len() as u64;
            if sample.len() < 1000 {
                sample.push(bytes);
            }
        }
    }
    (total, sample)
}

/// Every read model caught up from nothing together, as a fresh server's runners do (built
/// as the server builds them, defaults for its memory budget): the time each took to reach
/// `head`.
async fn catch_up_together(t: &TestStore, head: u64) -> Vec<(String, f64)> {
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let runners = lightwidget_api::read_model_runners(
        t.store.clone(),
        t.views.clone(),
        &Arc::new(RetentionPolicy::defaults()),
        &lightwidget_api::settings::MemoryBudget::default(),
    );
    let start = Instant::now();
    let mut tasks = Vec::new();
    for runner in runners.into_iter().filter(|r| chosen(r.view())) {
        let mut stop = stop_rx.clone();
        let views = t.views.clone();
        let name = runner.view().to_owned();
        tasks.push(tokio::spawn(async move {
            let following = tokio::spawn(async move {
                runner
                    .run(async move {
                        let _ = stop.wait_for(|s| *s).await;
                    })
                    .await
            });
            loop {
                if views.checkpoint(&name).await.expect("checkpoint") >= head {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            let took = start.elapsed().as_secs_f64();
            (name, took, following)
        }));
    }
    let mut out = Vec::new();
    let mut following = Vec::new();
    for task in tasks {
        let (name, took, f) = task.await.expect("catch-up");
        out.push((name, took));
        following.push(f);
    }
    let _ = stop_tx.send(true);
    for f in following {
        f.await.expect("runner").expect("runner ran");
    }
    out
}

/// The rebuild time below which a projection's catch-up ratio is start-up, not speed.
const NOTICEABLE: f64 = 0.25;

/// The CPU time this process has used (user and system), from `/proc/self/stat`.
fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // Fields after the command's closing parenthesis; utime and stime are the 14th and
    // 15th of the line, in clock ticks (100 a second on Linux).
    let rest = stat.rsplit(')').next().unwrap_or_default();
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let tick = |i: usize| {
        fields
            .get(i)
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    (tick(11) + tick(12)) / 100.0
}

/// Whether `LW_SCALE_ROWS` asks for `row` (every row when unset).
fn row(row: &str) -> bool {
    std::env::var("LW_SCALE_ROWS")
        .map(|rows| rows.split(',').any(|r| r.trim() == row))
        .unwrap_or(true)
}

/// Whether `LW_SCALE_PROJECTIONS` (a comma-separated list of read models; all when unset)
/// names this read model: to see which of them slow the others down when they catch up
/// together.
fn chosen(projection: &str) -> bool {
    std::env::var("LW_SCALE_PROJECTIONS")
        .map(|names| names.split(',').any(|n| n.trim() == projection))
        .unwrap_or(true)
}

/// The release server binary beside this bench's directory, if it was built.
fn server_binary() -> Option<std::path::PathBuf> {
    let exe = std::env::current_exe().ok()?;
    let bin = exe.parent()?.parent()?.join("lightwidget");
    bin.exists().then_some(bin)
}

/// A line of `/proc/<pid>/status`, e.g. `Threads:`.
fn proc_status(pid: u32, key: &str) -> String {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix(key).map(|v| v.trim().to_owned()))
        .unwrap_or_default()
}

/// The anonymous resident memory of process `pid`, in MiB.
fn rss_anon_mib(pid: u32) -> f64 {
    proc_status(pid, "RssAnon:")
        .trim_end_matches("kB")
        .trim()
        .parse::<f64>()
        .unwrap_or(0.0)
        / 1024.0
}

/// Where process `pid`'s anonymous resident memory lies: the largest anonymous mappings,
/// in MiB, each with its size (glibc's thread arenas reserve 64 MiB each, mimalloc's
/// segments are smaller), and `[heap]` (glibc's main arena).
fn anon_mappings(pid: u32) -> String {
    let smaps = std::fs::read_to_string(format!("/proc/{pid}/smaps")).unwrap_or_default();
    let mut maps: Vec<(String, f64, f64)> = Vec::new();
    let mut current: Option<(String, f64)> = None;
    for line in smaps.lines() {
        let mut fields = line.split_whitespace();
        let first = fields.next().unwrap_or_default();
        if first.contains('-') && !first.ends_with(':') {
            let name = fields.nth(4).unwrap_or("").to_owned();
            let (lo, hi) = first.split_once('-').unwrap_or(("0", "0"));
            let size = (u64::from_str_radix(hi, 16).unwrap_or(0)
                - u64::from_str_radix(lo, 16).unwrap_or(0)) as f64
                / 1048576.0;
            current = (name.is_empty() || name == "[heap]").then_some((name, size));
        } else if first == "Anonymous:" {
            if let Some((name, size)) = current.take() {
                let kb: f64 = fields.next().and_then(|v| v.parse().ok()).unwrap_or(0.0);
                maps.push((name, size, kb / 1024.0));
            }
        }
    }
    maps.sort_by(|a, b| b.2.total_cmp(&a.2));
    let total: f64 = maps.iter().map(|m| m.2).sum();
    let top: Vec<String> = maps
        .iter()
        .take(8)
        .map(|(name, size, rss)| {
            format!(
                "{rss:.0} of {size:.0}{}",
                if name.is_empty() { "" } else { " [heap]" }
            )
        })
        .collect();
    format!(
        "{total:.0} MiB in {} mappings; largest (MiB resident of reserved): {}",
        maps.len(),
        top.join(", ")
    )
}

/// Starts the server with its defaults (the store `backend` names, rate limits out of the
/// way): the process and its address.
fn start_server(
    bin: &std::path::Path,
    dir: &std::path::Path,
    db: Option<&lightwidget_testkit::TestDatabase>,
) -> (std::process::Child, String) {
    use std::io::BufRead;
    // A profiler to run the server under, e.g. `heaptrack` (with a `system-allocator`
    // build: heaptrack sees `malloc` only).
    let mut cmd = match std::env::var("LW_SCALE_SERVER_WRAPPER") {
        Ok(wrapper) if !wrapper.trim().is_empty() => {
            let mut words = wrapper.split_whitespace();
            let mut c = std::process::Command::new(words.next().unwrap_or_default());
            c.args(words).arg(bin);
            c
        }
        _ => std::process::Command::new(bin),
    };
    cmd.arg("serve")
        .current_dir(dir)
        .env_clear()
        .env("LW_LISTEN", "127.0.0.1:0")
        .env("LW_ADMIN_TOKEN", "scale-admin-token-0123456789")
        .env("LW_RATE_LIMIT_ANONYMOUS_PER_MINUTE", "1000000")
        .env("LW_RATE_LIMIT_TOKEN_PER_MINUTE", "1000000")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped());
    // Settings for the server under measurement, e.g. `LW_MEMORY_MB=32,MALLOC_ARENA_MAX=2`.
    for pair in std::env::var("LW_SCALE_SERVER_ENV")
        .unwrap_or_default()
        .split(',')
    {
        if let Some((key, value)) = pair.split_once('=') {
            cmd.env(key.trim(), value.trim());
        }
    }
    if let Some(db) = db {
        cmd.env("LW_DATABASE_URL", &db.url).env(
            "LW_MASTER_KEY",
            lightwidget_store::MasterKey::generate().to_base64(),
        );
    }
    let mut child = cmd.spawn().expect("the server starts");
    let stderr = child.stderr.take().expect("stderr");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stderr)
            .lines()
            .map_while(Result::ok)
        {
            if let Some(rest) = line.split("addr=").nth(1) {
                let _ = tx.send(
                    rest.split_whitespace()
                        .next()
                        .unwrap_or_default()
                        .to_owned(),
                );
            }
        }
    });
    let addr = rx
        .recv_timeout(Duration::from_secs(60))
        .expect("the server announces its address");
    (child, addr)
}

/// Creates widgets `from..to` through the API, 16 requests at a time (owners of 1,000
/// widgets each), then views each one's page once.
async fn widgets_and_views(client: &reqwest::Client, base: &str, from: usize, to: usize) {
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(from));
    let mut tasks = Vec::new();
    for _ in 0..16 {
        let (client, base, next) = (client.clone(), base.to_owned(), next.clone());
        tasks.push(tokio::spawn(async move {
            let mut token: Option<(usize, String)> = None;
            loop {
                let n = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                if n >= to {
                    return;
                }
                let owner = n / 1000;
                if token.as_ref().map(|t| t.0) != Some(owner) {
                    let r: serde_json::Value = client
                        .post(format!("{base}/v1/auth/instagram"))
                        .json(&serde_json::json!({"code": format!("demo:owner{owner}")}))
                        .send()
                        .await
                        .expect("sign-in")
                        .json()
                        .await
                        .expect("json");
                    token = Some((owner, r["token"].as_str().expect("token").to_owned()));
                }
                let t = &token.as_ref().expect("token").1;
                let r = client
                    .post(format!("{base}/v1/widgets"))
                    .bearer_auth(t)
                    .json(&serde_json::json!({"title": format!("w{n}"), "layout": "grid", "columns": 3}))
                    .send()
                    .await
                    .expect("create");
                assert_eq!(r.status(), 201);
                let w: serde_json::Value = r.json().await.expect("json");
                let id = w["widget_id"].as_str().expect("id").to_owned();
                let at = w["position"].as_u64().expect("position");
                let page = client
                    .get(format!("{base}/w/{id}?min_position={at}"))
                    .send()
                    .await
                    .expect("page");
                assert_eq!(page.status(), 200);
            }
        }));
    }
    for t in tasks {
        t.await.expect("load");
    }
}

/// The server's anonymous resident memory after 10,000 widgets and after `widgets`.
async fn memory(backend: Backend, widgets: usize) -> Option<[(usize, f64); 2]> {
    let Some(bin) = server_binary() else {
        println!(
            "memory: skipped, build the server first: cargo build --release -p lightwidget-api"
        );
        return None;
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let db = match backend {
        Backend::Postgres => Some(lightwidget_testkit::TestDatabase::create().await),
        Backend::Sqlite => None,
    };
    let (mut child, addr) = start_server(&bin, dir.path(), db.as_ref());
    let base = format!("http://{addr}");
    let client = reqwest::Client::new();
    let mut out = [(0, 0.0); 2];
    let mut done = 0;
    for (i, upto) in [10_000.min(widgets), widgets].into_iter().enumerate() {
        let started = Instant::now();
        widgets_and_views(&client, &base, done, upto).await;
        done = upto;
        let rss = rss_anon_mib(child.id());
        println!(
            "memory: {upto} widgets (each page viewed once) in {:.0} s: RssAnon {rss:.0} MiB",
            started.elapsed().as_secs_f64()
        );
        println!(
            "memory: {}; threads {}",
            anon_mappings(child.id()),
            proc_status(child.id(), "Threads:")
        );
        out[i] = (upto, rss);
    }
    let _ = child.kill();
    let _ = child.wait();
    drop(db);
    Some(out)
}

struct Figures {
    memory: Option<[(usize, f64); 2]>,
    append: [(f64, Duration); 4],
    catch_up: Vec<(String, f64, f64)>,
    verify_rate: f64,
    sha_rate: f64,
}

async fn bench(backend: Backend, total: usize, secs: f64) -> Figures {
    println!("\n## {backend:?}, {total} events");
    let empty = TestStore::new(backend, Arc::new(SystemClock)).await;
    let large = TestStore::new(backend, Arc::new(SystemClock)).await;
    let started = Instant::now();
    let widgets = fill(&large, total).await;
    let head = large.store.head().await.expect("head").position;
    println!(
        "filled: {head} events, {widgets} widgets, in {:.0} s",
        started.elapsed().as_secs_f64()
    );

    // Appends: empty, large, large, empty.
    let mut append = [(0.0, Duration::ZERO); 4];
    if row("append") {
        append = [
            append_rate(&*empty.store, secs).await,
            append_rate(&*large.store, secs).await,
            append_rate(&*large.store, secs).await,
            append_rate(&*empty.store, secs).await,
        ];
    }
    for (label, (rate, p99)) in ["empty", "large", "large", "empty"].iter().zip(&append) {
        if *rate > 0.0 {
            println!("append, batches of 100, {label}: {rate:.0} events/s, p99 {p99:.1?}");
        }
    }
    drop(empty);
    let head = large.store.head().await.expect("head").position;

    // Verification against SHA-256 over the same bytes.
    let (mut verify_rate, mut sha_rate) = (0.0, 1.0);
    if row("verify") {
        let (bytes, sample) = hashed_bytes(&*large.store).await;
        sha_rate = sha256_rate(&sample);
        // Three walks, the median kept: one walk of a small log takes a second or two.
        let mut rates = Vec::new();
        for walk in 1..=VERIFY_WALKS {
            println!("verifying, walk {walk} of {VERIFY_WALKS}");
            let started = Instant::now();
            let cpu = cpu_seconds();
            let report = chain::verify_log(&*large.store, |_| {})
                .await
                .expect("verify");
            let secs_verify = started.elapsed().as_secs_f64();
            let cores = (cpu_seconds() - cpu) / secs_verify;
            assert!(report.ok, "{report:?}");
            rates.push(bytes as f64 / secs_verify);
            println!(
                "verify: {} events in {secs_verify:.1} s, {:.0} events/s, {:.0} MB/s hashed, {cores:.2} cores busy in this process; SHA-256 on one core {:.0} MB/s",
                report.events_checked,
                report.events_checked as f64 / secs_verify,
                bytes as f64 / secs_verify / 1e6,
                sha_rate / 1e6
            );
        }
        rates.sort_by(f64::total_cmp);
        verify_rate = rates[rates.len() / 2];
    }

    // Catch-up of every read model together, then each one's rebuild alone.
    let projections: Vec<_> = lightwidget_api::read_models(&Arc::new(RetentionPolicy::defaults()))
        .into_iter()
        .filter(|p| chosen(p.name()))
        .collect();
    let caught = if row("catch-up") {
        catch_up_together(&large, head).await
    } else {
        Vec::new()
    };
    let mut catch_up = Vec::new();
    for (name, took) in caught {
        let Some(p) = projections.iter().find(|p| p.name() == name) else {
            continue;
        };
        let started = Instant::now();
        rebuild(large.store.clone(), large.views.clone(), p.clone())
            .await
            .expect("rebuild");
        let rebuilt = started.elapsed().as_secs_f64();
        println!(
            "{name}: caught up in {took:.1} s ({:.0} events/s), rebuilt alone in {rebuilt:.1} s ({:.0} events/s)",
            head as f64 / took,
            head as f64 / rebuilt
        );
        catch_up.push((name, took, rebuilt));
    }
    let memory = if row("memory") {
        memory(backend, count("LW_SCALE_WIDGETS", 100_000)).await
    } else {
        None
    };
    Figures {
        memory,
        append,
        catch_up,
        verify_rate,
        sha_rate,
    }
}

fn main() {
    // `RUST_LOG` (e.g. `lightwidget_projections=debug`) prints the runners' turns and each
    // batch's span as it closes, with its time: where a catch-up's time went.
    if std::env::var_os("RUST_LOG").is_some() {
        tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
            .with_span_events(tracing_subscriber::fmt::format::FmtSpan::CLOSE)
            .init();
    }
    let total = count("LW_SCALE_EVENTS", 1_000_000);
    let secs = count("LW_BENCH_SECONDS", 5) as f64;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let mut tables = Vec::new();
    for backend in backends() {
        let f = rt.block_on(bench(backend, total, secs));
        let empty = (f.append[0].0 + f.append[3].0) / 2.0;
        let large = (f.append[1].0 + f.append[2].0) / 2.0;
        let slowest = f
            .catch_up
            .iter()
            .filter(|(_, _, rebuilt)| *rebuilt >= NOTICEABLE)
            .map(|(name, took, rebuilt)| (rebuilt / took, name.clone()))
            .min_by(|a, b| a.0.total_cmp(&b.0))
            .unwrap_or((0.0, String::new()));
        tables.push(format!(
            "\n### {backend:?}, {total} events\n\n| figure | ratio | measured |\n|---|---|---|\n\
             | catch-up ÷ rebuild (slowest projection) | {:.0}% | `{}` |\n\
             | verify ÷ SHA-256 | {:.0}% | {:.0} of {:.0} MB/s |\n\
             | append, batches of 100, large ÷ empty | {:.0}% | {:.0} of {:.0} events/s; p99 {:.1?} vs {:.1?} |",
            slowest.0 * 100.0,
            slowest.1,
            f.verify_rate / f.sha_rate * 100.0,
            f.verify_rate / 1e6,
            f.sha_rate / 1e6,
            large / empty * 100.0,
            large,
            empty,
            f.append[1].1.max(f.append[2].1),
            f.append[0].1.max(f.append[3].1),
        ));
        if let Some([(small, at_small), (large, at_large)]) = f.memory {
            tables.push(format!(
                "| server RssAnon, defaults, {small} → {large} widgets | {at_small:.0} → {at_large:.0} MiB | each page viewed once |"
            ));
        }
    }
    for t in tables {
        println!("{t}");
    }
}

//! The crash test (issue 22): the real `lightwidget` binary under load — 16 concurrent
//! command writers and page views — is killed with SIGKILL at a varying moment, started
//! again, and checked: every acknowledged command is in the log, every page view answered
//! before the last moments of each kill is counted (issue 23: a page answers once its view is
//! queued; the recorder stores it within 100 ms), no more views are counted than were sent,
//! and the chain verifies. `LW_CRASH_CYCLES` sets the cycles per backend (3 by default, CI's
//! short form; `scripts/crash.sh` runs 20). And a graceful stop right after a burst of pages
//! loses none of their views.

use std::collections::HashSet;
use std::io::{Read, Write};
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

const WRITERS: usize = 16;
const VIEWERS: usize = 2;
const ADMIN: &str = "crash-admin-token-0123456789";

/// One HTTP/1.1 request on a fresh connection: status and body, or `None` when the server
/// is not there (or died mid-answer).
fn request(
    addr: &str,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: Option<&str>,
) -> Option<(u16, String)> {
    let mut s = std::net::TcpStream::connect(addr).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
    let auth = token
        .map(|t| format!("Authorization: Bearer {t}\r\n"))
        .unwrap_or_default();
    let body = body.unwrap_or_default();
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\n{auth}Content-Type: application/json\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .ok()?;
    let mut out = String::new();
    s.read_to_string(&mut out).ok()?;
    let status = out.split_whitespace().nth(1)?.parse().ok()?;
    let body = out.split("\r\n\r\n").nth(1).unwrap_or_default().to_owned();
    Some((status, body))
}

fn json(body: &str) -> serde_json::Value {
    serde_json::from_str(body).unwrap_or_default()
}

/// Starts `lightwidget serve` with these settings: the process and its address.
fn serve(cwd: &std::path::Path, settings: &[(&str, String)]) -> (std::process::Child, String) {
    let (child, addr, _) = super::cli::serve_with(cwd, settings);
    (child, addr)
}

/// Signs `user` in and creates a widget: the token, the widget's id and its position.
fn owner_and_widget(addr: &str, user: &str) -> (String, String, u64) {
    let code = format!(r#"{{"code":"demo:{user}"}}"#);
    let (status, body) =
        request(addr, "POST", "/v1/auth/instagram", None, Some(&code)).expect("sign-in");
    assert_eq!(status, 200, "{body}");
    let token = json(&body)["token"].as_str().expect("token").to_owned();
    let (status, body) = request(
        addr,
        "POST",
        "/v1/widgets",
        Some(&token),
        Some(r#"{"title":"viewed","layout":"grid","columns":3}"#),
    )
    .expect("widget");
    assert_eq!(status, 201, "{body}");
    let widget = json(&body)["widget_id"].as_str().expect("id").to_owned();
    let position = json(&body)["position"].as_u64().expect("position");
    (token, widget, position)
}

/// What the load saw acknowledged.
#[derive(Default)]
struct Seen {
    /// Widgets whose creation was answered 201.
    widgets: Mutex<Vec<String>>,
    /// Page views answered 200, and sent (answered or not).
    views_answered: AtomicU64,
    views_sent: AtomicU64,
    /// When each answered view was answered, and when each kill was sent.
    answered_at: Mutex<Vec<std::time::Instant>>,
    /// Answered pages that took over 50 ms (waited for the recorder, or a loaded machine),
    /// and the slowest.
    slow_views: AtomicU64,
    slowest_view: Mutex<Duration>,
    killed_at: Mutex<Vec<std::time::Instant>>,
}

/// The recorder's bound: the views unstored at any moment were all queued within
/// `recorder::ADMIT_WITHIN` (50 ms) of each other, so a kill loses at most that span of the
/// page's traffic — the last 100 ms when the store keeps up; while it stalls, pages wait. To
/// it comes what a loaded 2-core machine adds between a page's queueing and its answer
/// reaching the client, and between `kill` and the process's end.
const LOSS_WINDOW: Duration = Duration::from_millis(250);

/// How many answered views the kills may take with them: for each kill, the most views
/// answered within any one `window` of its cycle (from the previous kill to just after this
/// one, counting what the dying process answered after the signal was sent).
fn may_lose(seen: &Seen, window: Duration) -> u64 {
    let mut answered = seen.answered_at.lock().expect("lock").clone();
    answered.sort();
    let kills = seen.killed_at.lock().expect("lock");
    let mut from: Option<std::time::Instant> = None;
    let mut total = 0;
    for k in kills.iter() {
        let until = *k + Duration::from_millis(50);
        let cycle: Vec<_> = answered
            .iter()
            .filter(|a| from.is_none_or(|f| **a > f) && **a <= until)
            .collect();
        let mut busiest = 0;
        let mut start = 0;
        for end in 0..cycle.len() {
            while *cycle[end] > *cycle[start] + window {
                start += 1;
            }
            busiest = busiest.max(end + 1 - start);
        }
        total += busiest as u64;
        from = Some(until);
    }
    total
}

/// The views answered within `window` before a kill (up to just after it): what a kill may
/// lose when the store keeps up. Reported, not asserted.
fn answered_before_kills(seen: &Seen, window: Duration) -> u64 {
    let answered = seen.answered_at.lock().expect("lock");
    let kills = seen.killed_at.lock().expect("lock");
    answered
        .iter()
        .filter(|a| {
            kills
                .iter()
                .any(|k| **a + window >= *k && **a <= *k + Duration::from_millis(50))
        })
        .count() as u64
}

fn crash_cycles(settings: Vec<(&'static str, String)>, cwd: &std::path::Path, label: &str) {
    let cycles: usize = std::env::var("LW_CRASH_CYCLES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3);
    // The owner and the widget whose page is viewed, made on a first start.
    let (mut child, addr) = serve(cwd, &settings);
    let (token, viewed, _) = owner_and_widget(&addr, "crash");
    child.kill().expect("kill");
    child.wait().expect("reaped");

    let seen = Arc::new(Seen::default());
    let address = Arc::new(Mutex::new(String::new()));
    let stop = Arc::new(AtomicBool::new(false));
    let mut load = Vec::new();
    for w in 0..WRITERS {
        let (seen, address, stop, token) =
            (seen.clone(), address.clone(), stop.clone(), token.clone());
        load.push(std::thread::spawn(move || {
            let mut n = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let addr = address.lock().expect("lock").clone();
                let body = format!(r#"{{"title":"w{w}-{n}","layout":"grid","columns":3}}"#);
                if let Some((201, answer)) =
                    request(&addr, "POST", "/v1/widgets", Some(&token), Some(&body))
                {
                    let id = json(&answer)["widget_id"]
                        .as_str()
                        .unwrap_or_default()
                        .to_owned();
                    seen.widgets.lock().expect("lock").push(id);
                }
                n += 1;
            }
        }));
    }
    for _ in 0..VIEWERS {
        let (seen, address, stop, viewed) =
            (seen.clone(), address.clone(), stop.clone(), viewed.clone());
        load.push(std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                let addr = address.lock().expect("lock").clone();
                if std::net::TcpStream::connect(&addr).is_err() {
                    continue;
                }
                seen.views_sent.fetch_add(1, Ordering::Relaxed);
                let asked = std::time::Instant::now();
                if let Some((200, _)) = request(&addr, "GET", &format!("/w/{viewed}"), None, None) {
                    let took = asked.elapsed();
                    if took > Duration::from_millis(50) {
                        seen.slow_views.fetch_add(1, Ordering::Relaxed);
                    }
                    {
                        let mut s = seen.slowest_view.lock().expect("lock");
                        *s = (*s).max(took);
                    }
                    seen.views_answered.fetch_add(1, Ordering::Relaxed);
                    seen.answered_at
                        .lock()
                        .expect("lock")
                        .push(std::time::Instant::now());
                }
            }
        }));
    }
    for cycle in 0..cycles {
        let (mut child, addr) = serve(cwd, &settings);
        *address.lock().expect("lock") = addr;
        // Kill at a moment that varies from cycle to cycle.
        std::thread::sleep(Duration::from_millis(400 + (cycle as u64 * 173) % 600));
        seen.killed_at
            .lock()
            .expect("lock")
            .push(std::time::Instant::now());
        child.kill().expect("kill -9");
        child.wait().expect("reaped");
    }
    stop.store(true, Ordering::Relaxed);
    for t in load {
        t.join().expect("load thread");
    }

    // After the last kill: every acknowledged widget is there, the views are counted, the
    // chain verifies.
    let (child, addr) = serve(cwd, &settings);
    let (_, body) = request(&addr, "GET", "/v1/audit/verify", Some(ADMIN), None).expect("verify");
    let verified = json(&body);
    assert_eq!(verified["ok"], true, "{body}");
    let head = verified["head_position"].as_u64().expect("head");
    let acknowledged = seen.widgets.lock().expect("lock").clone();
    assert!(
        acknowledged.len() > cycles,
        "load came in: {}",
        acknowledged.len()
    );
    let (status, body) = request(
        &addr,
        "GET",
        &format!("/v1/widgets?min_position={head}"),
        Some(&token),
        None,
    )
    .expect("list");
    assert_eq!(status, 200, "{body}");
    let listed: HashSet<String> = json(&body)["widgets"]
        .as_array()
        .expect("widgets")
        .iter()
        .filter_map(|w| w["widget_id"].as_str().map(str::to_owned))
        .collect();
    let lost: Vec<&String> = acknowledged
        .iter()
        .filter(|w| !listed.contains(*w))
        .collect();
    assert!(
        lost.is_empty(),
        "{} acknowledged widgets lost: {:?}",
        lost.len(),
        &lost[..lost.len().min(5)]
    );
    let (status, body) = request(
        &addr,
        "GET",
        &format!("/v1/widgets/{viewed}/stats?min_position={head}"),
        Some(&token),
        None,
    )
    .expect("stats");
    assert_eq!(status, 200, "{body}");
    let counted = json(&body)["views"].as_u64().expect("views");
    let (answered, sent) = (
        seen.views_answered.load(Ordering::Relaxed),
        seen.views_sent.load(Ordering::Relaxed),
    );
    // A page answers once its view is queued: a kill may take at most one short span of
    // answered views; a view stored but killed before its answer is counted too, but never
    // one not sent.
    let allowed = may_lose(&seen, LOSS_WINDOW);
    let within_100ms = answered_before_kills(&seen, Duration::from_millis(100));
    let lost = answered.saturating_sub(counted);
    assert!(
        lost <= allowed && counted <= sent,
        "views answered {answered}, counted {counted} (lost {lost}; at most {allowed} answered \
         in a busiest {LOSS_WINDOW:?} of each cycle; {within_100ms} within 100 ms before a \
         kill), sent {sent}"
    );
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let mut child = child;
    let _ = child.wait();
    eprintln!(
        "{label}: kill -9 x{cycles}: {} widgets acknowledged, none lost; views answered {answered}, counted {counted}, sent {sent}, lost {lost} (answered within 100 ms before a kill: {within_100ms}; busiest {LOSS_WINDOW:?} of each cycle: {allowed}); {} pages over 50 ms, slowest {:?}; chain verified to {head}",
        acknowledged.len(),
        seen.slow_views.load(Ordering::Relaxed),
        seen.slowest_view.lock().expect("lock"),
    );
}

fn settings_common() -> Vec<(&'static str, String)> {
    vec![
        ("LW_ADMIN_TOKEN", ADMIN.to_owned()),
        // The load comes from one address and one token, far past the default limits.
        ("LW_RATE_LIMIT_ANONYMOUS_PER_MINUTE", "1000000".to_owned()),
        ("LW_RATE_LIMIT_TOKEN_PER_MINUTE", "1000000".to_owned()),
    ]
}

#[test]
fn sqlite_survives_kill_9_under_load() {
    let cwd = tempfile::tempdir().expect("tempdir");
    crash_cycles(settings_common(), cwd.path(), "sqlite");
}

#[test]
fn postgres_survives_kill_9_under_load() {
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let db = rt.block_on(lightwidget_testkit::TestDatabase::create());
    let cwd = tempfile::tempdir().expect("tempdir");
    let mut settings = settings_common();
    settings.push(("LW_DATABASE_URL", db.url.clone()));
    settings.push((
        "LW_MASTER_KEY",
        lightwidget_store::MasterKey::generate().to_base64(),
    ));
    crash_cycles(settings, cwd.path(), "postgres");
    drop(db);
}

/// A graceful stop right after a burst of pages: every answered view is stored (issue 23).
fn a_graceful_stop_keeps_every_queued_view(settings: Vec<(&'static str, String)>, label: &str) {
    let cwd = tempfile::tempdir().expect("tempdir");
    let (child, addr) = serve(cwd.path(), &settings);
    let (token, widget, created) = owner_and_widget(&addr, "graceful");
    let page = format!("/w/{widget}?min_position={created}");
    let answered = Arc::new(AtomicU64::new(0));
    let burst: Vec<_> = (0..4)
        .map(|_| {
            let (addr, page, answered) = (addr.clone(), page.clone(), answered.clone());
            std::thread::spawn(move || {
                for _ in 0..150 {
                    match request(&addr, "GET", &page, None, None) {
                        Some((200, _)) => {
                            answered.fetch_add(1, Ordering::Relaxed);
                        }
                        other => eprintln!("page: {other:?}"),
                    }
                }
            })
        })
        .collect();
    for t in burst {
        t.join().expect("burst");
    }
    // At once after the last answer: SIGTERM.
    super::cli::terminate(child);
    let answered = answered.load(Ordering::Relaxed);
    assert_eq!(answered, 600, "every page was answered");
    let (child, addr) = serve(cwd.path(), &settings);
    let (_, body) = request(&addr, "GET", "/v1/audit/verify", Some(ADMIN), None).expect("verify");
    let head = json(&body)["head_position"].as_u64().expect("head");
    let (status, body) = request(
        &addr,
        "GET",
        &format!("/v1/widgets/{widget}/stats?min_position={head}"),
        Some(&token),
        None,
    )
    .expect("stats");
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        json(&body)["views"].as_u64(),
        Some(answered),
        "{label}: {body}"
    );
    super::cli::terminate(child);
}

#[test]
fn sqlite_keeps_every_queued_view_across_a_graceful_stop() {
    a_graceful_stop_keeps_every_queued_view(settings_common(), "sqlite");
}

#[test]
fn postgres_keeps_every_queued_view_across_a_graceful_stop() {
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let db = rt.block_on(lightwidget_testkit::TestDatabase::create());
    let mut settings = settings_common();
    settings.push(("LW_DATABASE_URL", db.url.clone()));
    settings.push((
        "LW_MASTER_KEY",
        lightwidget_store::MasterKey::generate().to_base64(),
    ));
    a_graceful_stop_keeps_every_queued_view(settings, "postgres");
}

//! The real `lightwidget` binary: `serve` with no settings on the embedded store, graceful
//! stop on SIGTERM, and `audit verify` exit codes.

use lightwidget_store::embedded::{SqliteEventStore, SqliteOptions};
use lightwidget_store::{
    AppendRequest, EventStore, ExpectedVersion, MasterKey, NewEvent, SystemClock,
};
use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

const BIN: &str = env!("CARGO_BIN_EXE_lightwidget");

fn http_get(addr: &str, path: &str, token: Option<&str>) -> String {
    let mut s = std::net::TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    let auth = token
        .map(|t| format!("Authorization: Bearer {t}\r\n"))
        .unwrap_or_default();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\n{auth}Connection: close\r\n\r\n"
    )
    .expect("write");
    let mut out = String::new();
    s.read_to_string(&mut out).expect("read");
    out
}

/// A `lightwidget serve` with no settings but port 0, in `cwd`: the process, its address,
/// and its standard output so far (read until the address was logged).
fn serve(cwd: &std::path::Path) -> (std::process::Child, String, Vec<String>) {
    serve_with(cwd, &[])
}

/// [`serve`] with these settings too.
pub(crate) fn serve_with(
    cwd: &std::path::Path,
    settings: &[(&str, String)],
) -> (std::process::Child, String, Vec<String>) {
    let mut child = Command::new(BIN)
        .arg("serve")
        .current_dir(cwd)
        .env_clear()
        // Port 0 instead of the default 8080 so the test cannot collide with a running server.
        .env("LW_LISTEN", "127.0.0.1:0")
        .envs(settings.iter().map(|(k, v)| (k, v)))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    let stderr = child.stderr.take().expect("stderr");
    let stdout = child.stdout.take().expect("stdout");
    // Reader threads keep draining both pipes so the server can never block on a full one.
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
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
    let (out_tx, out_rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = out_tx.send(line);
        }
    });
    let addr = match rx.recv_timeout(Duration::from_secs(30)) {
        Ok(addr) => addr,
        Err(_) => {
            let _ = child.kill();
            panic!("the server did not report its address within 30 s");
        }
    };
    // The token line is printed before the address is logged.
    std::thread::sleep(Duration::from_millis(100));
    let printed = out_rx.try_iter().collect();
    (child, addr, printed)
}

pub(crate) fn terminate(mut child: std::process::Child) {
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .expect("kill");
    assert!(status.success());
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let exit = loop {
        if let Some(exit) = child.try_wait().expect("wait") {
            break exit;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "server ignored SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(exit.success(), "{exit:?}");
}

#[test]
fn serve_starts_on_the_embedded_store_with_no_settings_and_stops_on_sigterm() {
    let cwd = tempfile::tempdir().expect("tempdir");
    let (child, addr, printed) = serve(cwd.path());
    let response = http_get(&addr, "/healthz", None);
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    let response = http_get(&addr, "/readyz", None);
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    assert!(cwd.path().join("data/ledger.db").exists());
    assert!(cwd.path().join("data/master.key").exists());
    // The first start prints the generated admin token, which works.
    let token = printed
        .iter()
        .find_map(|l| l.strip_prefix("admin token (shown once; keep it): "))
        .unwrap_or_else(|| panic!("no admin token printed: {printed:?}"))
        .to_owned();
    let response = http_get(&addr, "/v1/invoices", Some(&token));
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    let response = http_get(&addr, "/v1/invoices", Some("lw_not-the-token"));
    assert!(response.starts_with("HTTP/1.1 401"), "{response}");
    terminate(child);

    // The second start prints no token; the first one still works.
    let (child, addr, printed) = serve(cwd.path());
    assert!(
        !printed.iter().any(|l| l.contains("admin token")),
        "{printed:?}"
    );
    let response = http_get(&addr, "/v1/invoices", Some(&token));
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    terminate(child);
}

#[test]
fn audit_verify_exits_non_zero_naming_the_first_bad_position() {
    let dir = lightwidget_testkit::private_tempdir();
    let master = MasterKey::generate();
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    rt.block_on(async {
        let store = SqliteEventStore::open(
            dir.path(),
            master.clone(),
            Arc::new(SystemClock),
            SqliteOptions::default(),
        )
        .expect("open");
        for n in 0..5 {
            let e = NewEvent {
                event_id: uuid::Uuid::new_v4(),
                event_type: "TestHappened".into(),
                schema_version: 1,
                data: serde_json::json!({"n": n}),
                actor: "system".into(),
                correlation_id: uuid::Uuid::new_v4(),
                causation_id: None,
            };
            store
                .append(AppendRequest::single("t-1", ExpectedVersion::Any, vec![e]))
                .await
                .expect("append");
        }
    });
    let verify = || {
        Command::new(BIN)
            .args(["audit", "verify"])
            .env_clear()
            .env("LW_DATA_DIR", dir.path())
            .env("LW_MASTER_KEY", master.to_base64())
            .output()
            .expect("run")
    };
    let out = verify();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json report");
    assert_eq!(report["ok"], true);
    assert_eq!(report["events_checked"], 5);

    let conn = rusqlite::Connection::open(dir.path().join("ledger.db")).expect("open");
    conn.execute_batch(
        r#"DROP TRIGGER events_no_update; UPDATE events SET data = '{"n":42}' WHERE position = 3;"#,
    )
    .expect("tamper");
    drop(conn);
    let out = verify();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("position 3"));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json report");
    assert_eq!(report["first_bad_position"], 3);
}

/// A blocking JSON POST: the status, or `None` when the server is not there.
fn http_post(addr: &str, path: &str, body: &str) -> Option<u16> {
    let mut s = std::net::TcpStream::connect(addr).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(
        s,
        "POST {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .ok()?;
    let mut out = String::new();
    s.read_to_string(&mut out).ok()?;
    out.split_whitespace().nth(1)?.parse().ok()
}

/// What the ticketing stand-in received: (message id, requester e-mail, when) per request.
type Tickets = Arc<std::sync::Mutex<Vec<(String, String, std::time::Instant)>>>;

/// A Zendesk stand-in on its own thread: records each ticket and answers 201 after 20 ms,
/// so that a kill often falls between a send and its recorded answer.
fn zendesk_stand_in() -> (String, Tickets) {
    use axum::routing::post;
    let received: Tickets = Arc::default();
    let rec = received.clone();
    let app = axum::Router::new().route(
        "/api/v2/tickets.json",
        post(move |body: axum::Json<serde_json::Value>| {
            let rec = rec.clone();
            async move {
                let t = &body.0["ticket"];
                rec.lock().expect("lock").push((
                    t["external_id"].as_str().unwrap_or_default().to_owned(),
                    t["requester"]["email"]
                        .as_str()
                        .unwrap_or_default()
                        .to_owned(),
                    std::time::Instant::now(),
                ));
                tokio::time::sleep(Duration::from_millis(20)).await;
                (axum::http::StatusCode::CREATED, "{}")
            }
        }),
    );
    let addr = lightwidget_testkit::serve_apart(app, 0);
    (format!("http://{addr}"), received)
}

/// No message is lost across `kill -9` cycles under load, and a message is sent twice at
/// most, with the same id, when a kill fell between its send and its recorded answer
/// (issue 20). `LW_OUTBOX_KILL_CYCLES` sets the cycles (20 by default; the soak script runs
/// more).
#[test]
fn the_outbox_loses_nothing_across_kill_9_cycles() {
    let cycles: usize = std::env::var("LW_OUTBOX_KILL_CYCLES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20);
    let cwd = tempfile::tempdir().expect("tempdir");
    let (zendesk, received) = zendesk_stand_in();
    let settings = [
        ("LW_ADMIN_TOKEN", "crash-test-admin-token-0123".to_owned()),
        ("LW_ZENDESK_URL", zendesk),
        ("LW_ZENDESK_EMAIL", "agent@lightwidget.test".to_owned()),
        ("LW_ZENDESK_TOKEN", "zd".to_owned()),
        // A crashed attempt is taken again a second later (one server: no one else sends).
        ("LW_OUTBOX_LEASE_SECONDS", "1".to_owned()),
        ("LW_OUTBOX_RETRY_BASE_MS", "50".to_owned()),
        // One loader at full speed from one address.
        ("LW_RATE_LIMIT_ANONYMOUS_PER_MINUTE", "1000000".to_owned()),
    ];
    let address = Arc::new(std::sync::Mutex::new(String::new()));
    let acknowledged: Arc<std::sync::Mutex<Vec<String>>> = Arc::default();
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let loader = {
        let (address, acknowledged, stop) = (address.clone(), acknowledged.clone(), stop.clone());
        std::thread::spawn(move || {
            let mut n = 0u64;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let addr = address.lock().expect("lock").clone();
                let email = format!("t{n}@example.com");
                let body = format!(r#"{{"email":"{email}","message":"crash {n}"}}"#);
                if http_post(&addr, "/v1/support/tickets", &body) == Some(201) {
                    acknowledged.lock().expect("lock").push(email);
                }
                n += 1;
            }
        })
    };
    let mut kills = Vec::new();
    for cycle in 0..cycles {
        let (mut child, addr, _) = serve_with(cwd.path(), &settings);
        *address.lock().expect("lock") = addr;
        // Let tickets come in and go out, then kill at a moment that varies.
        std::thread::sleep(Duration::from_millis(150 + (cycle as u64 * 37) % 200));
        child.kill().expect("kill -9");
        child.wait().expect("reaped");
        kills.push(std::time::Instant::now());
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    loader.join().expect("loader");
    let acknowledged = acknowledged.lock().expect("lock").clone();
    assert!(
        acknowledged.len() >= cycles,
        "load came in: {}",
        acknowledged.len()
    );

    // A last start delivers whatever was left.
    let (child, _addr, _) = serve_with(cwd.path(), &settings);
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        let got: std::collections::HashSet<String> = received
            .lock()
            .expect("lock")
            .iter()
            .map(|(_, email, _)| email.clone())
            .collect();
        let missing: Vec<&String> = acknowledged.iter().filter(|e| !got.contains(*e)).collect();
        if missing.is_empty() {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{} acknowledged tickets never reached the ticketing: {:?}",
            missing.len(),
            missing.iter().take(5).collect::<Vec<_>>()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    terminate(child);

    // A message is sent again only after a kill that came after its previous send (the
    // kill fell between that send and its recorded answer), and always under one id.
    let mut sends: std::collections::HashMap<String, Vec<(String, std::time::Instant)>> =
        std::collections::HashMap::new();
    for (id, email, at) in received.lock().expect("lock").iter() {
        sends
            .entry(id.clone())
            .or_default()
            .push((email.clone(), *at));
    }
    let mut duplicates = 0;
    // A request may be read by the stand-in a moment after the process that sent it died.
    let slack = Duration::from_millis(200);
    for (id, s) in &sends {
        assert!(s.iter().all(|(e, _)| e == &s[0].0), "one id, one ticket");
        for pair in s.windows(2) {
            let (before, after) = (pair[0].1, pair[1].1);
            assert!(
                kills.iter().any(|k| *k + slack > before && *k < after),
                "message {id} sent again without a kill between"
            );
            duplicates += 1;
        }
    }
    eprintln!(
        "kill -9 x{cycles}: {} tickets acknowledged, all delivered; {duplicates} duplicates",
        acknowledged.len()
    );
}

/// A processor with no settings is not configured: its messages wait, pending, and go out
/// once it is configured and the server restarts (issue 20).
#[test]
fn messages_wait_for_their_processor_to_be_configured() {
    let cwd = tempfile::tempdir().expect("tempdir");
    let admin = ("LW_ADMIN_TOKEN", "waiting-admin-token-0123456".to_owned());
    let (child, addr, _) = serve_with(cwd.path(), std::slice::from_ref(&admin));
    let body = r#"{"email":"later@example.com","message":"when you can"}"#;
    assert_eq!(http_post(&addr, "/v1/support/tickets", body), Some(201));
    let pending = (0..100)
        .map(|_| {
            std::thread::sleep(Duration::from_millis(20));
            http_get(&addr, "/v1/admin/outbox?state=pending", Some(&admin.1))
        })
        .find(|r| r.contains("\"kind\":\"ticket\""))
        .expect("the ticket's message waits, pending");
    assert!(!pending.contains("later@example.com"), "{pending}");
    terminate(child);

    let (zendesk, received) = zendesk_stand_in();
    let settings = [
        admin.clone(),
        ("LW_ZENDESK_URL", zendesk),
        ("LW_ZENDESK_EMAIL", "agent@lightwidget.test".to_owned()),
        ("LW_ZENDESK_TOKEN", "zd".to_owned()),
    ];
    let (child, addr, _) = serve_with(cwd.path(), &settings);
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while received.lock().expect("lock").is_empty() {
        assert!(std::time::Instant::now() < deadline, "never delivered");
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(received.lock().expect("lock")[0].1, "later@example.com");
    let sent = (0..100)
        .map(|_| {
            std::thread::sleep(Duration::from_millis(20));
            http_get(&addr, "/v1/admin/outbox?state=sent", Some(&admin.1))
        })
        .find(|r| r.contains("\"kind\":\"ticket\""));
    assert!(sent.is_some(), "recorded as sent");
    terminate(child);
}

/// `lightwidget serve` that must refuse to start: its standard error.
fn refused_start(cwd: &std::path::Path, settings: &[(&str, String)]) -> String {
    let out = Command::new(BIN)
        .arg("serve")
        .current_dir(cwd)
        .env_clear()
        .env("LW_LISTEN", "127.0.0.1:0")
        .envs(settings.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::null())
        .output()
        .expect("run");
    assert!(!out.status.success(), "started: {out:?}");
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// The embedded master key can live apart from the data (`LW_MASTER_KEY_FILE`), and a key
/// file or data directory other users may read is refused at start (issue 21).
#[test]
fn the_master_key_lives_apart_and_open_files_are_refused() {
    use std::os::unix::fs::PermissionsExt;
    let cwd = tempfile::tempdir().expect("tempdir");
    let keys = tempfile::tempdir().expect("tempdir");
    let key = keys.path().join("lightwidget.key");
    let admin = "apart-admin-token-0123456789".to_owned();
    let settings = [
        ("LW_MASTER_KEY_FILE", key.display().to_string()),
        ("LW_ADMIN_TOKEN", admin.clone()),
    ];
    let (child, addr, _) = serve_with(cwd.path(), &settings);
    let body = r#"{"code":"demo:keeper"}"#;
    assert_eq!(http_post(&addr, "/v1/auth/instagram", body), Some(200));
    terminate(child);
    let mode =
        |p: &std::path::Path| std::fs::metadata(p).expect("meta").permissions().mode() & 0o777;
    assert_eq!(mode(&key), 0o600, "generated for its owner alone");
    assert_eq!(mode(&cwd.path().join("data")), 0o700);
    assert!(
        !cwd.path().join("data/master.key").exists(),
        "no key beside the data"
    );
    // The same key opens the data again: the profile sealed under it reads back.
    let (child, addr, _) = serve_with(cwd.path(), &settings);
    let events = http_get(
        &addr,
        "/v1/audit/events?reveal=true&reason=key%20custody%20test",
        Some(&admin),
    );
    assert!(events.contains("keeper"), "{events}");
    terminate(child);

    let set = |p: &std::path::Path, m: u32| {
        std::fs::set_permissions(p, std::fs::Permissions::from_mode(m)).expect("chmod")
    };
    set(&key, 0o644);
    let err = refused_start(cwd.path(), &settings);
    assert!(
        err.contains("LW_MASTER_KEY_FILE") && err.contains("chmod 600"),
        "{err}"
    );
    set(&key, 0o600);
    set(&cwd.path().join("data"), 0o755);
    let err = refused_start(cwd.path(), &settings);
    assert!(
        err.contains("LW_DATA_DIR") && err.contains("chmod 700"),
        "{err}"
    );
    set(&cwd.path().join("data"), 0o700);
    let (child, _, _) = serve_with(cwd.path(), &settings);
    terminate(child);
}

/// A new `LW_ADMIN_TOKEN` at start replaces the admin token it held before: the old one
/// answers 401 from then on, and going back to it does not bring it back (issue 21).
#[test]
fn a_new_admin_token_setting_revokes_the_old_one() {
    let cwd = tempfile::tempdir().expect("tempdir");
    let status = |addr: &str, token: &str| {
        let reply = http_get(addr, "/v1/audit/verify", Some(token));
        reply.lines().next().unwrap_or_default().to_owned()
    };
    let old = ("LW_ADMIN_TOKEN", "first-admin-token-0123456789".to_owned());
    let new = ("LW_ADMIN_TOKEN", "second-admin-token-012345678".to_owned());
    let (child, addr, _) = serve_with(cwd.path(), std::slice::from_ref(&old));
    assert!(
        status(&addr, &old.1).contains("200"),
        "{}",
        status(&addr, &old.1)
    );
    terminate(child);
    let (child, addr, _) = serve_with(cwd.path(), std::slice::from_ref(&new));
    assert!(status(&addr, &new.1).contains("200"));
    assert!(
        status(&addr, &old.1).contains("401"),
        "{}",
        status(&addr, &old.1)
    );
    terminate(child);
    let (child, addr, _) = serve_with(cwd.path(), std::slice::from_ref(&old));
    assert!(status(&addr, &old.1).contains("401"));
    assert!(status(&addr, &new.1).contains("200"));
    terminate(child);
}

/// The runners of each read model, as one server's `/readyz` tells them.
fn runner_states(addr: &str) -> Vec<String> {
    let reply = http_get(addr, "/readyz", None);
    let body = reply.split("\r\n\r\n").nth(1).unwrap_or_default();
    let Ok(v) = serde_json::from_str::<serde_json::Value>(body) else {
        return vec![];
    };
    v["projections"]
        .as_object()
        .map(|p| {
            p.values()
                .map(|x| x["runner"].as_str().unwrap_or("none").to_owned())
                .collect()
        })
        .unwrap_or_default()
}

/// Polls `addr` until every runner reads `state` (true), or `limit` passes (false).
fn all_runners(addr: &str, state: &str, limit: Duration) -> bool {
    let deadline = std::time::Instant::now() + limit;
    loop {
        let states = runner_states(addr);
        if !states.is_empty() && states.iter().all(|s| s == state) {
            return true;
        }
        if std::time::Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Two servers on one PostgreSQL: each read model is written by one of them at a time (the
/// other stands by), and when the one that runs them is killed with SIGKILL, the other takes
/// every runner over within 10 s and keeps the read models current (issue 22).
#[test]
fn a_killed_servers_runners_move_to_the_other() {
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let db = rt.block_on(lightwidget_testkit::TestDatabase::create());
    let cwd = tempfile::tempdir().expect("tempdir");
    let admin = "two-servers-admin-token-0123".to_owned();
    let settings = [
        ("LW_DATABASE_URL", db.url.clone()),
        ("LW_MASTER_KEY", MasterKey::generate().to_base64()),
        ("LW_ADMIN_TOKEN", admin.clone()),
    ];
    let (mut first, a, _) = serve_with(cwd.path(), &settings);
    assert!(
        all_runners(&a, "running", Duration::from_secs(10)),
        "{:?}",
        runner_states(&a)
    );
    let (second, b, _) = serve_with(cwd.path(), &settings);
    assert!(
        all_runners(&b, "standby", Duration::from_secs(10)),
        "{:?}",
        runner_states(&b)
    );
    first.kill().expect("SIGKILL");
    first.wait().expect("reaped");
    let killed = std::time::Instant::now();
    assert!(
        all_runners(&b, "running", Duration::from_secs(10)),
        "{:?}",
        runner_states(&b)
    );
    eprintln!("runners taken over in {:?}", killed.elapsed());
    // The survivor keeps its read models current: a sign-in reaches the accounts view.
    let body = r#"{"code":"demo:survivor"}"#;
    assert_eq!(http_post(&b, "/v1/auth/instagram", body), Some(200));
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    loop {
        let reply = http_get(&b, "/readyz", None);
        let body = reply
            .split("\r\n\r\n")
            .nth(1)
            .unwrap_or_default()
            .to_owned();
        let v: serde_json::Value = serde_json::from_str(&body).unwrap_or_default();
        if v["projections"]["accounts"]["lag"] == 0 && v["head_position"].as_u64() > Some(0) {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "{body}");
        std::thread::sleep(Duration::from_millis(50));
    }
    terminate(second);
    drop(db);
}

/// `lightwidget log-key generate` writes a signing key in Go's note format for its owner
/// alone, prints the matching verifier key, and never overwrites a key (issue 27).
#[test]
fn log_key_generate_writes_a_private_key_and_prints_its_verifier_key() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("log.key");
    let run = || {
        Command::new(BIN)
            .args(["log-key", "generate", "--origin", "example.test/log"])
            .arg("--out")
            .arg(&file)
            .env_clear()
            .output()
            .expect("run")
    };
    let out = run();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let printed = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    let private = std::fs::read_to_string(&file).expect("key file");
    assert!(
        private.starts_with("PRIVATE+KEY+example.test/log+"),
        "{private}"
    );
    let mode = std::fs::metadata(&file).expect("meta").permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    let key = lightwidget_tlog::LogKey::from_private(&private).expect("loads");
    assert_eq!(printed, key.verifier_key());
    assert!(
        !printed.contains(private.trim()),
        "the private key is not printed"
    );
    // A second run refuses to overwrite it.
    let again = run();
    assert!(!again.status.success());
    assert_eq!(std::fs::read_to_string(&file).expect("key file"), private);
}

/// `LW_MEMORY_MB` out of its range is refused at start, the setting named, nothing created
/// (issue 28).
#[test]
fn a_memory_budget_out_of_range_is_refused() {
    for bad in ["8", "0", "lots", "2000000"] {
        let cwd = tempfile::tempdir().expect("tempdir");
        let err = refused_start(cwd.path(), &[("LW_MEMORY_MB", bad.to_owned())]);
        assert!(
            err.contains("LW_MEMORY_MB must be 16 to 1048576"),
            "{bad}: {err}"
        );
        assert!(
            !cwd.path().join("data").exists(),
            "{bad}: a refused start created its data directory"
        );
    }
}

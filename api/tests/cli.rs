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
    let mut child = Command::new(BIN)
        .arg("serve")
        .current_dir(cwd)
        .env_clear()
        // Port 0 instead of the default 8080 so the test cannot collide with a running server.
        .env("LW_LISTEN", "127.0.0.1:0")
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

fn terminate(mut child: std::process::Child) {
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
    let dir = tempfile::tempdir().expect("tempdir");
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

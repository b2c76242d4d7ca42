//! Hostile transport input (issue 22): deeply nested JSON, invalid UTF-8, a 1 MiB header,
//! 10,000 headers, a request head sent slowly, a body sent slowly, connections held open
//! idle, and more connections than the server takes. Each gets the right status or is cut
//! off, and the server keeps serving others meanwhile.

use lightwidget_tests::{spawn_app_with, Backend, TestApp, TestConfig};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

fn addr(app: &TestApp) -> String {
    app.address.trim_start_matches("http://").to_owned()
}

/// Sends `bytes` on a new connection and reads until the server closes it (or 10 s): what
/// came back.
fn exchange(addr: &str, bytes: &[u8]) -> String {
    let mut s = TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    // The server may answer and close before it read everything: a failed write is fine.
    let _ = s.write_all(bytes);
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    String::from_utf8_lossy(&out).into_owned()
}

fn post(path: &str, body: &[u8]) -> Vec<u8> {
    let mut r = format!(
        "POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    )
    .into_bytes();
    r.extend_from_slice(body);
    r
}

fn status(reply: &str) -> Option<u16> {
    reply.split_whitespace().nth(1)?.parse().ok()
}

/// Waits until the server closes `s` (a read of 0 bytes or a reset): how long it took, or
/// `None` if it still holds it after `limit`.
fn closed_within(mut s: TcpStream, limit: Duration) -> Option<Duration> {
    let started = Instant::now();
    s.set_read_timeout(Some(limit)).expect("timeout");
    let mut buf = [0u8; 512];
    loop {
        match s.read(&mut buf) {
            Ok(0) => return Some(started.elapsed()),
            Ok(_) => continue,
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => {
                return Some(started.elapsed())
            }
            Err(_) => return None,
        }
    }
}

async fn app() -> TestApp {
    spawn_app_with(
        Backend::Sqlite,
        TestConfig {
            header_timeout: Some(Duration::from_secs(1)),
            request_timeout: Some(Duration::from_secs(2)),
            max_connections: Some(64),
            ..Default::default()
        },
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_bodies_and_heads_get_their_status() {
    let app = app().await;
    let a = addr(&app);
    let head = app.store.head().await.expect("head").position;
    let replies = tokio::task::spawn_blocking(move || {
        let nested = [b"[".repeat(100_000), b"]".repeat(100_000)].concat();
        let mut big_header = b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: ".to_vec();
        big_header.extend(b"a".repeat(1024 * 1024));
        big_header.extend(b"\r\nConnection: close\r\n\r\n");
        let mut many = b"GET /healthz HTTP/1.1\r\nHost: x\r\n".to_vec();
        for i in 0..10_000 {
            many.extend(format!("X-H{i}: v\r\n").into_bytes());
        }
        many.extend(b"Connection: close\r\n\r\n");
        [
            (
                "nested JSON",
                exchange(&a, &post("/v1/auth/instagram", &nested)),
            ),
            (
                "invalid UTF-8",
                exchange(&a, &post("/v1/auth/instagram", b"{\"code\":\"\xff\xfe\"}")),
            ),
            ("1 MiB header", exchange(&a, &big_header)),
            ("10,000 headers", exchange(&a, &many)),
            (
                "body over 1 MiB",
                exchange(
                    &a,
                    &post("/v1/auth/instagram", &b" ".repeat(1024 * 1024 + 1)),
                ),
            ),
        ]
    })
    .await
    .expect("client");
    for (what, reply) in &replies {
        let expected = match *what {
            "nested JSON" | "invalid UTF-8" => 400,
            "1 MiB header" | "10,000 headers" => 431,
            _ => 413,
        };
        assert_eq!(status(reply), Some(expected), "{what}: {reply}");
        if expected != 431 {
            assert!(
                reply.contains("application/problem+json"),
                "{what}: {reply}"
            );
        }
    }
    assert_eq!(app.get("/healthz", None).await.status, 200);
    assert_eq!(
        app.store.head().await.expect("head").position,
        head,
        "nothing recorded"
    );
}

/// A head sent slowly, a connection left idle and a body sent slowly are each cut off (the
/// head within the header timeout, the body with a 408 at the request deadline), while the
/// server answers others.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_and_idle_connections_are_cut_off() {
    let app = app().await;
    let a = addr(&app);
    let probe = app.client.clone();
    let health = app.url("/healthz");
    let slow_and_idle = tokio::task::spawn_blocking(move || {
        let mut head = TcpStream::connect(&a).expect("connect");
        head.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: ")
            .expect("write");
        let idle = TcpStream::connect(&a).expect("connect");
        let mut body = TcpStream::connect(&a).expect("connect");
        body.write_all(
            b"POST /v1/auth/instagram HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n\
              Content-Length: 100\r\n\r\n{\"code\":",
        )
        .expect("write");
        let slow_head = closed_within(head, Duration::from_secs(5));
        let idle = closed_within(idle, Duration::from_secs(5));
        body.set_read_timeout(Some(Duration::from_secs(5)))
            .expect("timeout");
        let mut reply = Vec::new();
        let _ = body.read_to_end(&mut reply);
        (
            slow_head,
            idle,
            String::from_utf8_lossy(&reply).into_owned(),
        )
    });
    // Meanwhile others are served.
    for _ in 0..20 {
        let r = probe.get(&health).send().await.expect("health");
        assert_eq!(r.status(), 200);
    }
    let (slow_head, idle, slow_body) = slow_and_idle.await.expect("client");
    assert!(slow_head.is_some(), "a slow head is cut off");
    assert!(idle.is_some(), "an idle connection is closed");
    assert_eq!(status(&slow_body), Some(408), "{slow_body}");
}

/// More connections than `LW_MAX_CONNECTIONS` (64 here) held open idle: the ones past the
/// limit wait, and are served once the idle ones are cut off; nothing fails.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_past_the_limit_wait_their_turn() {
    let app = app().await;
    let a = addr(&app);
    let served = tokio::task::spawn_blocking(move || {
        let idle: Vec<TcpStream> = (0..64)
            .map(|_| TcpStream::connect(&a).expect("connect"))
            .collect();
        let reply = exchange(
            &a,
            b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        );
        drop(idle);
        reply
    })
    .await
    .expect("client");
    assert_eq!(status(&served), Some(200), "{served}");
}

//! Proof of erasure (R23): an account gets a marker in every personal field the API can
//! reach, runs to its purge on the manual clock, and afterwards none of the markers is found
//! in a `pg_dump` of the database, in any file of the SQLite data directory, in any API
//! response (`/v1/me/export` and `/v1/audit/events` included), or in the server's log
//! output. Before the purge the same searches find them where they belong, so the test is
//! known to see them.
//!
//! The account's owner also posts a comment (its IP is the visitor's marker IP) and opens a
//! support ticket, which go by their own rules (12 and 24 months) within the same run.

use chrono::Duration;
use lightwidget_tests::{both, Backend, TestApp, ADMIN_TOKEN};
use serde_json::json;
use std::io::Write;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::{Arc, Mutex, OnceLock};

/// Everything the server logs in this test process, at every level (`RUST_LOG=trace` as the
/// server's main reads it; only the test's own HTTP client is held at info).
fn log() -> &'static Arc<Mutex<Vec<u8>>> {
    static LOG: OnceLock<Arc<Mutex<Vec<u8>>>> = OnceLock::new();
    LOG.get_or_init(|| {
        let buffer = Arc::new(Mutex::new(Vec::new()));
        let sink = buffer.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_env_filter(lightwidget_api::log_filter(Some(
                "trace,hyper_util=info,reqwest=info",
            )))
            .with_writer(move || Sink(sink.clone()))
            .with_ansi(false)
            .finish();
        // As the server's main does: `log` records (tokio-postgres, rusqlite) go through too.
        tracing_subscriber::util::SubscriberInitExt::try_init(subscriber)
            .expect("the only subscriber");
        buffer
    })
}

struct Sink(Arc<Mutex<Vec<u8>>>);

impl Write for Sink {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0
            .lock()
            .map_err(|_| std::io::Error::other("poisoned"))?
            .extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn log_text() -> String {
    String::from_utf8_lossy(&log().lock().expect("log")).into_owned()
}

/// The markers of one run: distinct from any other run's.
struct Markers {
    username: String,
    title: String,
    preview: String,
    name: String,
    address: String,
    email: String,
    vat_digits: String,
    ip: Ipv4Addr,
    user_agent: String,
    referrer: String,
    device: String,
    reason: String,
    transaction: String,
    ticket_email: String,
    ticket_message: String,
}

impl Markers {
    fn new() -> Self {
        let u = uuid::Uuid::new_v4();
        let tag = u.simple().to_string()[..12].to_owned();
        let b = u.as_bytes();
        let digits: String = b[..10].iter().map(|x| char::from(b'0' + x % 10)).collect();
        Markers {
            username: format!("mkuser{tag}"),
            title: format!("MkTitle{tag}"),
            preview: format!("MkPreview{tag}"),
            name: format!("MkName{tag}"),
            address: format!("MkStreet{tag} 1, 00-001 Warszawa"),
            email: format!("mkmail{tag}@example.com"),
            vat_digits: digits,
            // Any 127.0.0.0/8 address is this machine: the client binds to one of its own.
            ip: Ipv4Addr::new(127, 10 + b[10] % 200, 1 + b[11] % 250, 2 + b[12] % 250),
            user_agent: format!("MkAgent/{tag}"),
            referrer: format!("https://mkref{tag}.example/"),
            device: format!("mkdevice{tag}"),
            reason: format!("MkReason{tag}"),
            transaction: format!("MKTXN{tag}"),
            ticket_email: format!("mkticket{tag}@example.com"),
            ticket_message: format!("MkMessage{tag}"),
        }
    }

    /// (what, marker) for every personal field.
    fn all(&self) -> Vec<(&'static str, String)> {
        vec![
            ("username", self.username.clone()),
            ("widget title", self.title.clone()),
            ("preview title", self.preview.clone()),
            ("billing name", self.name.clone()),
            ("billing address", self.address.clone()),
            ("billing e-mail", self.email.clone()),
            ("VAT ID", self.vat_digits.clone()),
            ("IP", self.ip.to_string()),
            ("user agent", self.user_agent.clone()),
            ("referrer", self.referrer.clone()),
            ("device id", self.device.clone()),
            ("block reason", self.reason.clone()),
            ("PayPal transaction id", self.transaction.clone()),
            ("ticket e-mail", self.ticket_email.clone()),
            ("ticket message", self.ticket_message.clone()),
        ]
    }
}

/// What the storage holds, as text: a `pg_dump`, or every file of the SQLite data directory.
fn storage_text(app: &TestApp) -> String {
    if let Some(db) = &app.db {
        let out = std::process::Command::new("pg_dump")
            .arg("--dbname")
            .arg(&db.url)
            .output()
            .expect("pg_dump runs");
        assert!(
            out.status.success(),
            "pg_dump: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        return String::from_utf8_lossy(&out.stdout).into_owned();
    }
    let dir = app.dir.as_ref().expect("a data directory");
    let mut text = String::new();
    let mut files = 0;
    for entry in std::fs::read_dir(dir.path()).expect("read dir") {
        let path = entry.expect("entry").path();
        if path.is_file() {
            files += 1;
            text.push_str(&String::from_utf8_lossy(
                &std::fs::read(&path).expect("read"),
            ));
        }
    }
    assert!(files >= 1);
    text
}

/// The raw pages of the tables that hold plaintext (the read models) or key material (the
/// data keys), with their TOAST tables, read with `pageinspect`: dead tuples included, which
/// neither a dump nor a query shows.
async fn heap_pages(app: &TestApp) -> Vec<u8> {
    let db = app.db.as_ref().expect("a PostgreSQL test app");
    let (client, conn) = tokio_postgres::connect(&db.url, tokio_postgres::NoTls)
        .await
        .expect("connect");
    let driver = tokio::spawn(conn);
    client
        .batch_execute("CREATE EXTENSION IF NOT EXISTS pageinspect")
        .await
        .expect("pageinspect (PostgreSQL's contrib)");
    let mut pages = Vec::new();
    for table in ["views", "data_keys"] {
        let rels = client
            .query(
                "SELECT c.oid::regclass::text FROM pg_class c WHERE c.relname = $1 \
                 UNION ALL SELECT t.reltoastrelid::regclass::text FROM pg_class t \
                 WHERE t.relname = $1 AND t.reltoastrelid <> 0",
                &[&table],
            )
            .await
            .expect("relations");
        for rel in rels {
            let rel: String = rel.get(0);
            let rows = client
                .query(
                    "SELECT get_raw_page($1::text, b::int) FROM generate_series(0, \
                     (pg_relation_size($1::text::regclass) / 8192) - 1) b",
                    &[&rel],
                )
                .await
                .expect("pages");
            for r in rows {
                pages.extend_from_slice(r.get::<_, &[u8]>(0));
            }
        }
    }
    drop(client);
    let _ = driver.await;
    pages
}

/// The wrapped data keys of the account's subjects, as stored.
async fn wrapped_keys(app: &TestApp, account: &str) -> Vec<Vec<u8>> {
    let db = app.db.as_ref().expect("a PostgreSQL test app");
    let (client, conn) = tokio_postgres::connect(&db.url, tokio_postgres::NoTls)
        .await
        .expect("connect");
    let driver = tokio::spawn(conn);
    let rows = client
        .query(
            "SELECT wrapped FROM data_keys WHERE subject = $1",
            &[&format!("account:{account}")],
        )
        .await
        .expect("keys");
    drop(client);
    let _ = driver.await;
    rows.into_iter().map(|r| r.get(0)).collect()
}

fn contains_bytes(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

/// Every API response that can hold the account's data, concatenated.
async fn api_text(
    app: &TestApp,
    token: &str,
    account: &str,
    widget: &str,
    preview: &str,
) -> String {
    let mut text = String::new();
    let head = app.store.head().await.expect("head").position;
    for (path, who) in [
        (format!("/v1/me?min_position={head}"), Some(token)),
        (format!("/v1/me/export?min_position={head}"), Some(token)),
        (format!("/v1/widgets?min_position={head}"), Some(token)),
        (
            format!("/v1/widgets/{widget}?min_position={head}"),
            Some(token),
        ),
        (
            format!("/v1/widgets/{widget}/stats?min_position={head}"),
            Some(token),
        ),
        (format!("/w/{widget}?min_position={head}"), None),
        (format!("/v1/previews/{preview}"), None),
        (format!("/v1/invoices?min_position={head}"), Some(token)),
        (
            format!("/v1/invoices?min_position={head}"),
            Some(ADMIN_TOKEN),
        ),
        (
            format!("/v1/compliance/subjects/{account}?min_position={head}"),
            Some(ADMIN_TOKEN),
        ),
        ("/v1/compliance/retention".to_owned(), Some(ADMIN_TOKEN)),
        ("/v1/compliance/purges".to_owned(), Some(ADMIN_TOKEN)),
        ("/v1/articles/proof/comments".to_owned(), None),
    ] {
        let r = app.get(&path, who).await;
        text.push_str(&format!("{path} {} {}\n", r.status, r.body));
    }
    // The history as auditors read it: every event, opened where a key is left.
    let audit = app
        .client
        .get(app.url("/v1/audit/events?reveal=true&reason=proof%20of%20erasure"))
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await
        .expect("audit events");
    assert_eq!(audit.status(), 200);
    let audit = audit.text().await.expect("body");
    assert_eq!(
        audit.lines().count() as u64,
        head + 1,
        "the whole log, with the record of this revealing read"
    );
    text.push_str(&audit);
    text
}

fn found<'a>(text: &str, markers: &'a [(&'static str, String)]) -> Vec<&'a str> {
    markers
        .iter()
        .filter(|(_, m)| text.contains(m.as_str()))
        .map(|(what, _)| *what)
        .collect()
}

async fn no_marker_survives_the_purge(backend: Backend) {
    log();
    let app = lightwidget_tests::spawn_app(backend).await;
    if backend == Backend::Postgres {
        // The heap scan reads raw pages: documents past 2 KB (a widget with its twelve
        // posts) would be stored compressed, their markers invisible before the purge as
        // after it. Stored uncompressed here, the scan sees what the purge must remove.
        app.sql("ALTER TABLE views ALTER COLUMN doc SET STORAGE EXTERNAL")
            .await;
    }
    let m = Markers::new();
    let visitor = reqwest::Client::builder()
        .local_address(IpAddr::V4(m.ip))
        .build()
        .expect("client");
    let security = app.staff("security").await;

    let (token, account, _) = app.sign_in(&m.username).await;
    let preview = app
        .post(
            "/v1/previews",
            Some(&token),
            json!({"title": m.preview, "layout": "grid", "columns": 2}),
        )
        .await
        .expect(201)["preview_id"]
        .as_str()
        .expect("preview")
        .to_owned();
    let (widget, at) = app.create_widget(&token, &m.title).await;
    for request in [
        visitor.get(app.url(&format!("/w/{widget}?min_position={at}"))),
        visitor.post(app.url(&format!("/w/{widget}/click"))),
    ] {
        let r = app
            .send(
                request
                    .header("user-agent", &m.user_agent)
                    .header("referer", &m.referrer)
                    .header("x-lw-device-id", &m.device),
            )
            .await;
        assert!(r.status == 200 || r.status == 204, "{r:?}");
    }
    // The page's view is queued before its answer: stored before anything is looked at.
    app.views_stored(1).await;
    let r = app
        .send(
            visitor
                .post(app.url("/v1/articles/proof/comments"))
                .json(&json!({"author": "Visitor", "text": "Nice widget"})),
        )
        .await;
    assert_eq!(r.status, 201, "{r:?}");
    app.post(
        "/v1/support/tickets",
        None,
        json!({"email": m.ticket_email, "message": m.ticket_message}),
    )
    .await
    .expect(201);
    let order = app
        .order(
            &token,
            &widget,
            json!({"name": m.name, "address": m.address, "email": m.email,
                   "vat_id": format!("PL{}", m.vat_digits), "country": "PL"}),
        )
        .await;
    let invoice = app.pay(&order, &m.transaction).await;
    let year: i32 = invoice["invoice_number"].as_str().expect("number")[3..7]
        .parse()
        .expect("year");
    app.delete("/v1/me", Some(&token)).await.expect(202);
    app.post(
        &format!("/v1/security/accounts/{account}/block"),
        Some(&security),
        json!({"reason": m.reason}),
    )
    .await
    .expect(200);

    // Before: the API and the history show every marker, the storage its plaintext views.
    let markers = m.all();
    let before = api_text(&app, &token, &account, &widget, &preview).await;
    assert_eq!(
        found(&before, &markers).len(),
        markers.len(),
        "before the purge every marker is visible"
    );
    let stored = found(&storage_text(&app), &markers);
    for expected in ["username", "widget title", "billing name", "billing e-mail"] {
        assert!(
            stored.contains(&expected),
            "{expected} in storage before: {stored:?}"
        );
    }
    for sealed in [
        "IP",
        "user agent",
        "block reason",
        "PayPal transaction id",
        "ticket e-mail",
    ] {
        assert!(
            !stored.contains(&sealed),
            "{sealed} is stored sealed only: {stored:?}"
        );
    }
    let keys = match backend {
        Backend::Postgres => {
            let pages = heap_pages(&app).await;
            assert!(
                contains_bytes(&pages, m.title.as_bytes()),
                "the heap holds the live widget document before the purge"
            );
            let keys = wrapped_keys(&app, &account).await;
            assert!(!keys.is_empty());
            assert!(keys.iter().all(|k| contains_bytes(&pages, k)));
            keys
        }
        Backend::Sqlite => vec![],
    };
    let logged = log_text();
    assert!(logged.contains("DEBUG"), "the log is captured below info");
    if !found(&logged, &markers).is_empty() {
        for (what, m) in &markers {
            for line in logged.lines().filter(|l| l.contains(m.as_str())) {
                eprintln!("{what} logged: {line}");
            }
        }
    }
    assert_eq!(
        found(&logged, &markers),
        Vec::<&str>::new(),
        "personal data is never logged, not even before its purge"
    );

    // The blocked account goes 12 months after the block; its billing at the end of the
    // fifth year after the invoice's (R19).
    app.advance(Duration::days(366)).await;
    let first = app.sweep().await;
    assert!(!first["purged"].as_array().expect("purged").is_empty());
    let now = {
        use lightwidget_store::Clock;
        app.clock.now()
    };
    let sixth = chrono::NaiveDate::from_ymd_opt(year + 6, 1, 2)
        .expect("date")
        .and_hms_opt(0, 0, 0)
        .expect("time")
        .and_utc();
    app.advance(sixth - now).await;
    let second = app.sweep().await;
    let second: Vec<&str> = second["purged"]
        .as_array()
        .expect("purged")
        .iter()
        .filter_map(|p| p["category"].as_str())
        .collect();
    assert!(second.contains(&"billing"), "{second:?}");

    let after = api_text(&app, &token, &account, &widget, &preview).await;
    assert_eq!(
        found(&after, &markers),
        Vec::<&str>::new(),
        "API responses and history"
    );
    assert_eq!(
        found(&storage_text(&app), &markers),
        Vec::<&str>::new(),
        "storage"
    );
    assert_eq!(
        found(&log_text(), &markers),
        Vec::<&str>::new(),
        "server log"
    );
    if backend == Backend::Postgres {
        // Not even in dead tuples: the purging sweep rewrote the tables (R23).
        let pages = heap_pages(&app).await;
        let left: Vec<&str> = markers
            .iter()
            .filter(|(_, m)| contains_bytes(&pages, m.as_bytes()))
            .map(|(what, _)| *what)
            .collect();
        assert_eq!(left, Vec::<&str>::new(), "heap pages after the purge");
        assert!(wrapped_keys(&app, &account).await.is_empty());
        assert!(
            !keys.iter().any(|k| contains_bytes(&pages, k)),
            "a shredded key's bytes are gone from the key table's pages"
        );
    }
    // No secret was ever logged: tokens, the master key, the webhook secret.
    let logged = log_text();
    for (what, secret) in [
        ("owner token", token.as_str()),
        ("security token", security.as_str()),
        ("admin token", ADMIN_TOKEN),
        ("webhook secret", lightwidget_tests::PAYPAL_SECRET),
        ("master key", app.master.to_base64().as_str()),
    ] {
        assert!(!logged.contains(secret), "the {what} is logged");
    }
    app.stop().await;
}

both! {
    proof_of_erasure => no_marker_survives_the_purge;
}

//! Helpers for the end-to-end tests: `spawn_app` on either backend, for real, with a manual
//! clock and a known admin token, and a small HTTP client.

use lightwidget_api::settings::InstagramSettings;
use lightwidget_api::{Application, ClockSetting, Settings, Storage};
use lightwidget_store::embedded::{SqliteEventStore, SqliteOptions};
use lightwidget_store::postgres::{PgEventStore, PgOptions};
use lightwidget_store::{EventStore, ManualClock, MasterKey, ViewStore};
use lightwidget_testkit::TestDatabase;
use serde_json::{json, Value};
use std::sync::Arc;

pub use lightwidget_testkit::{both, Backend};

pub const ADMIN_TOKEN: &str = "test-admin-token-0123456789";
pub const PAYPAL_SECRET: &str = "test-paypal-secret";

/// What a test server is started with beyond its backend.
#[derive(Clone, Default)]
pub struct TestConfig {
    pub instagram: Option<InstagramSettings>,
    /// Payments are configured unless this is set.
    pub no_paypal: bool,
    /// `LW_CLOCK=system` instead of the manual clock.
    pub system_clock: bool,
    /// `LW_REQUEST_TIMEOUT_SECONDS` (default 30 s).
    pub request_timeout: Option<std::time::Duration>,
    /// `LW_SWEEP_INTERVAL_SECONDS` (default 60 s; a test may take less than a second).
    pub sweep_every: Option<std::time::Duration>,
    /// The processors the outbox delivers to (default: none configured).
    pub processors: lightwidget_api::settings::ProcessorSettings,
    /// `LW_TRUSTED_PROXIES` (default: none; the TCP peer is the client).
    pub trusted_proxies: Vec<ipnet::IpNet>,
    /// The rate limits (default: the server's defaults, 60 and 600 a minute).
    pub rate_limits: Option<lightwidget_api::settings::RateLimits>,
    /// `LW_TOKEN_TTL_HOURS` as a duration (default here: a century, so that tests moving the
    /// manual clock by months keep their tokens; the server's own default is 720 hours).
    pub token_ttl: Option<std::time::Duration>,
    /// The embedded store's page limit (`SqliteOptions::page_limit`): a disk that fills up.
    pub sqlite_page_limit: Option<Arc<std::sync::atomic::AtomicU64>>,
    /// `LW_HEADER_TIMEOUT_SECONDS` (default 10 s).
    pub header_timeout: Option<std::time::Duration>,
    /// `LW_MAX_CONNECTIONS` (default 4096).
    pub max_connections: Option<usize>,
    /// `LW_MEMORY_MB` (default 256).
    pub memory_mb: Option<u64>,
    /// `LW_DEMO_MEDIA_URL`: where the demo's photos are served (default: a host that does
    /// not resolve).
    pub demo_media_url: Option<String>,
    /// `LW_PUBLIC_URL`.
    pub public_url: Option<String>,
}

/// A running server on port 0 with its own storage, stopped when dropped.
pub struct TestApp {
    pub address: String,
    pub store: Arc<dyn EventStore>,
    pub views: Arc<dyn ViewStore>,
    pub clock: Arc<ManualClock>,
    pub client: reqwest::Client,
    pub db: Option<TestDatabase>,
    pub dir: Option<tempfile::TempDir>,
    /// The master key the store was opened with.
    pub master: MasterKey,
    /// The PostgreSQL URL, master key and settings it was started with (for a second server
    /// on the same database).
    beside: Option<(String, MasterKey, Settings)>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    done: Option<tokio::task::JoinHandle<()>>,
}

impl Drop for TestApp {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

pub async fn spawn_app(backend: Backend) -> TestApp {
    spawn_app_with(backend, TestConfig::default()).await
}

pub async fn spawn_app_with(backend: Backend, config: TestConfig) -> TestApp {
    let master = MasterKey::generate();
    let clock = Arc::new(ManualClock::new(chrono::Utc::now()));
    let (storage, db, dir) = match backend {
        Backend::Postgres => {
            let db = TestDatabase::create().await;
            let store = Arc::new(
                PgEventStore::connect(&db.url, master.clone(), clock.clone(), PgOptions::default())
                    .await
                    .expect("connect"),
            );
            (storage_of(store, &clock, &master, &config), Some(db), None)
        }
        Backend::Sqlite => {
            let dir = lightwidget_testkit::private_tempdir();
            let store = Arc::new(
                SqliteEventStore::open(
                    dir.path(),
                    master.clone(),
                    clock.clone(),
                    SqliteOptions {
                        page_limit: config.sqlite_page_limit.clone(),
                        ..SqliteOptions::default()
                    },
                )
                .expect("open"),
            );
            (storage_of(store, &clock, &master, &config), None, Some(dir))
        }
    };
    let settings = Settings {
        admin_token: Some(ADMIN_TOKEN.into()),
        clock: if config.system_clock {
            ClockSetting::System
        } else {
            ClockSetting::Manual
        },
        instagram: config.instagram.clone(),
        paypal_webhook_secret: (!config.no_paypal).then(|| PAYPAL_SECRET.into()),
        request_timeout: config.request_timeout,
        sweep_every: config.sweep_every,
        processors: config.processors.clone(),
        trusted_proxies: config.trusted_proxies.clone(),
        rate_limits: config.rate_limits.unwrap_or_default(),
        header_timeout: config.header_timeout,
        max_connections: config.max_connections,
        memory_mb: config.memory_mb,
        demo_media_url: config.demo_media_url.clone(),
        public_url: config.public_url.clone(),
        token_ttl: Some(
            config
                .token_ttl
                .unwrap_or(std::time::Duration::from_secs(100 * 366 * 86_400)),
        ),
        ..Settings::ephemeral()
    };
    let beside = db
        .as_ref()
        .map(|db| (db.url.clone(), master.clone(), settings.clone()));
    let mut app = start(settings, storage, clock, master).await;
    app.db = db;
    app.dir = dir;
    app.beside = beside;
    app
}

/// A second server on the same PostgreSQL database as `self`, with the same master key,
/// settings and clock: another process serving the same store, as behind a load balancer.
pub async fn spawn_beside(first: &TestApp) -> TestApp {
    let (url, master, settings) = first.beside.clone().expect("a PostgreSQL test app");
    let store = Arc::new(
        PgEventStore::connect(
            &url,
            master.clone(),
            first.clock.clone(),
            PgOptions::default(),
        )
        .await
        .expect("connect"),
    );
    let system_clock = matches!(settings.clock, ClockSetting::System);
    let manual = (!system_clock).then(|| first.clock.clone());
    let storage = Storage::new(store, first.clock.clone(), manual, &master);
    start(settings, storage, first.clock.clone(), master).await
}

async fn start(
    settings: Settings,
    storage: Storage,
    clock: Arc<ManualClock>,
    master: MasterKey,
) -> TestApp {
    let (store, views) = (storage.events.clone(), storage.views.clone());
    let app = Application::with_storage(settings, storage)
        .await
        .expect("build");
    let address = format!("http://127.0.0.1:{}", app.port());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let done = tokio::spawn(async move {
        let _ = app
            .run_until_stopped(async {
                let _ = stopped.await;
            })
            .await;
    });
    TestApp {
        address,
        store,
        views,
        clock,
        client: reqwest::Client::new(),
        db: None,
        dir: None,
        master,
        beside: None,
        stop: Some(stop),
        done: Some(done),
    }
}

fn storage_of<S: EventStore + ViewStore + 'static>(
    store: Arc<S>,
    clock: &Arc<ManualClock>,
    master: &MasterKey,
    config: &TestConfig,
) -> Storage {
    let manual = (!config.system_clock).then(|| clock.clone());
    Storage::new(store, clock.clone(), manual, master)
}

/// A response's status and body (JSON when it parses, else the text as a JSON string).
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub headers: reqwest::header::HeaderMap,
    pub body: Value,
}

impl Reply {
    #[track_caller]
    pub fn expect(self, status: u16) -> Value {
        assert_eq!(
            self.status, status,
            "unexpected status; body: {}",
            self.body
        );
        self.body
    }
    pub fn text(&self) -> &str {
        self.body.as_str().unwrap_or_default()
    }
}

impl TestApp {
    /// Stops the server gracefully and waits until it has.
    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(done) = self.done.take() {
            let _ = done.await;
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.address)
    }

    pub async fn send(&self, request: reqwest::RequestBuilder) -> Reply {
        let response = request.send().await.expect("request");
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let text = response.text().await.expect("body");
        let body = serde_json::from_str(&text).unwrap_or(Value::String(text));
        Reply {
            status,
            headers,
            body,
        }
    }

    pub async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> Reply {
        let mut r = self.client.request(method, self.url(path));
        if let Some(t) = token {
            r = r.bearer_auth(t);
        }
        if let Some(b) = body {
            r = r.json(&b);
        }
        self.send(r).await
    }

    pub async fn get(&self, path: &str, token: Option<&str>) -> Reply {
        self.call(reqwest::Method::GET, path, token, None).await
    }

    pub async fn post(&self, path: &str, token: Option<&str>, body: Value) -> Reply {
        self.call(reqwest::Method::POST, path, token, Some(body))
            .await
    }

    pub async fn delete(&self, path: &str, token: Option<&str>) -> Reply {
        self.call(reqwest::Method::DELETE, path, token, None).await
    }

    /// Signs in as the demo Instagram user `username`: (token, account id, position).
    pub async fn sign_in(&self, username: &str) -> (String, String, u64) {
        let body = self
            .post(
                "/v1/auth/instagram",
                None,
                json!({"code": format!("demo:{username}")}),
            )
            .await
            .expect(200);
        (
            body["token"].as_str().expect("token").to_owned(),
            body["account_id"].as_str().expect("account").to_owned(),
            body["position"].as_u64().expect("position"),
        )
    }

    /// Creates a widget: (widget id, position).
    pub async fn create_widget(&self, token: &str, title: &str) -> (String, u64) {
        let body = self
            .post(
                "/v1/widgets",
                Some(token),
                json!({"title": title, "layout": "grid", "columns": 3}),
            )
            .await
            .expect(201);
        (
            body["widget_id"].as_str().expect("id").to_owned(),
            body["position"].as_u64().expect("position"),
        )
    }

    /// Adds a staff member with `role` through the admin: the new token.
    pub async fn staff(&self, role: &str) -> String {
        self.post(
            "/v1/staff",
            Some(ADMIN_TOKEN),
            json!({"name": format!("{role} officer"), "role": role}),
        )
        .await
        .expect(201)["token"]
            .as_str()
            .expect("token")
            .to_owned()
    }
}

/// A complete order form (R10).
pub fn billing() -> Value {
    json!({"name": "Alice Example", "address": "ul. Prosta 1, 00-001 Warszawa",
           "email": "alice@example.com", "vat_id": "PL5260250274", "country": "PL"})
}

/// The hex HMAC-SHA256 of a body, as PayPal's webhook carries it.
pub fn sign(body: &[u8], secret: &str) -> String {
    use hmac::Mac;
    let mut mac =
        <hmac::Hmac<sha2::Sha256> as Mac>::new_from_slice(secret.as_bytes()).expect("hmac");
    mac.update(body);
    hex::encode(mac.finalize().into_bytes())
}

impl TestApp {
    /// Calls the PayPal webhook with `body` signed by `secret`.
    pub async fn webhook(&self, body: &Value, secret: &str) -> Reply {
        let bytes = serde_json::to_vec(body).expect("json");
        self.send(
            self.client
                .post(self.url("/v1/payments/paypal"))
                .header("content-type", "application/json")
                .header("x-lw-signature", sign(&bytes, secret))
                .body(bytes),
        )
        .await
    }

    /// Places an upgrade order for `widget` with `billing`: the order's answer.
    pub async fn order(&self, token: &str, widget: &str, billing: Value) -> Value {
        self.post(
            &format!("/v1/widgets/{widget}/upgrade"),
            Some(token),
            json!({"plan": "pro", "billing": billing}),
        )
        .await
        .expect(201)
    }

    /// Pays an order through the webhook: the webhook's answer (invoice number, position).
    pub async fn pay(&self, order: &Value, transaction_id: &str) -> Value {
        self.webhook(
            &json!({"order_id": order["order_id"], "transaction_id": transaction_id,
                    "amount": "29.00", "currency": "EUR", "status": "COMPLETED"}),
            PAYPAL_SECRET,
        )
        .await
        .expect(200)
    }

    /// Runs SQL on the app's own storage behind its back: its PostgreSQL database, or the
    /// embedded store's read-model database (`views.db`).
    pub async fn sql(&self, sql: &str) {
        if let Some(db) = &self.db {
            let (client, conn) = tokio_postgres::connect(&db.url, tokio_postgres::NoTls)
                .await
                .expect("connect");
            let driver = tokio::spawn(conn);
            client.batch_execute(sql).await.expect("statement");
            drop(client);
            let _ = driver.await;
            return;
        }
        let dir = self.dir.as_ref().expect("a test app with storage");
        let c = rusqlite::Connection::open(dir.path().join("views.db")).expect("open views.db");
        c.busy_timeout(std::time::Duration::from_secs(5))
            .expect("busy timeout");
        c.execute_batch(sql).expect("statement");
    }

    /// Takes the read models' table away: every runner's commit fails, so no read model
    /// moves past where it is (until [`TestApp::release_read_models`]).
    pub async fn hold_read_models(&self) {
        self.sql("ALTER TABLE views RENAME TO views_away").await
    }

    pub async fn release_read_models(&self) {
        self.sql("ALTER TABLE views_away RENAME TO views").await
    }

    /// Waits until the log holds at least `n` page views in all (a page answers once its
    /// view is queued; the recorder stores it within 100 ms): the log's head then. Polls the
    /// log, for at most 10 s.
    pub async fn views_stored(&self, n: usize) -> u64 {
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
        loop {
            let (stored, head) = self.stored_views().await;
            if stored >= n {
                return head;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "{stored} page views stored after 10 s, {n} expected"
            );
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
    }

    /// How many page views the log holds, and its head.
    pub async fn stored_views(&self) -> (usize, u64) {
        let events = self.store.read_all_raw(0, 1_000_000).await.expect("read");
        let stored = events
            .iter()
            .filter(|e| e.event_type == "HitsRecorded")
            .filter_map(|e| serde_json::from_str::<Value>(&e.data).ok())
            .map(|d| d["views"].as_array().map_or(0, Vec::len))
            .sum();
        (stored, events.last().map_or(0, |e| e.position))
    }

    /// Moves the manual clock on through the admin API.
    pub async fn advance(&self, by: chrono::Duration) {
        self.post(
            "/v1/admin/clock",
            Some(ADMIN_TOKEN),
            json!({"advance_seconds": by.num_seconds()}),
        )
        .await
        .expect(200);
    }

    /// Runs a retention sweep: the answer (`purged`, `position`).
    pub async fn sweep(&self) -> Value {
        self.post("/v1/admin/retention/run", Some(ADMIN_TOKEN), json!({}))
            .await
            .expect(200)
    }
}

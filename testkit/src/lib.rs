//! The test kit, for tests and benches only: the backends every storage test runs
//! against, a fresh PostgreSQL database or SQLite directory per test (dropped after),
//! fixtures, and [`both!`], which runs one test body on each backend.
//!
//! The server is found through `LW_TEST_DATABASE_URL` (default
//! `postgres://postgres@127.0.0.1:5432/postgres`). When it cannot be reached the helper
//! panics with a message naming that variable: a PostgreSQL test never passes silently.

use std::str::FromStr;
use tokio_postgres::NoTls;

/// The variable that points tests at a PostgreSQL server.
pub const TEST_DATABASE_URL_VAR: &str = "LW_TEST_DATABASE_URL";
pub const DEFAULT_TEST_DATABASE_URL: &str = "postgres://postgres@127.0.0.1:5432/postgres";

pub fn admin_url() -> String {
    std::env::var(TEST_DATABASE_URL_VAR).unwrap_or_else(|_| DEFAULT_TEST_DATABASE_URL.to_owned())
}

/// A database created for one test; dropped (with its connections) when this goes out of
/// scope.
#[derive(Debug)]
pub struct TestDatabase {
    pub name: String,
    pub url: String,
    admin: String,
}

impl TestDatabase {
    pub async fn create() -> Self {
        let admin = admin_url();
        let (client, conn) = tokio_postgres::connect(&admin, NoTls)
            .await
            .unwrap_or_else(|e| {
                panic!(
                    "PostgreSQL tests need a server: could not connect to {admin} ({e}). \
                 Start PostgreSQL or set {TEST_DATABASE_URL_VAR} to a server where the user may \
                 create databases."
                )
            });
        let driver = tokio::spawn(conn);
        let name = format!("lw_test_{}", uuid::Uuid::new_v4().simple());
        client
            .batch_execute(&format!("CREATE DATABASE {name}"))
            .await
            .unwrap_or_else(|e| {
                panic!("CREATE DATABASE failed on {TEST_DATABASE_URL_VAR}={admin}: {e}")
            });
        drop(client);
        let _ = driver.await;
        let mut cfg = tokio_postgres::Config::from_str(&admin)
            .unwrap_or_else(|e| panic!("{TEST_DATABASE_URL_VAR} is not a PostgreSQL URL: {e}"));
        cfg.dbname(&name);
        let url = config_to_url(&cfg, &admin, &name);
        TestDatabase { name, url, admin }
    }
}

/// The admin URL with its database name replaced.
fn config_to_url(_cfg: &tokio_postgres::Config, admin: &str, name: &str) -> String {
    match admin.split_once('?') {
        Some((base, query)) => format!(
            "{}/{name}?{query}",
            base.rsplit_once('/').map(|b| b.0).unwrap_or(base)
        ),
        None => format!(
            "{}/{name}",
            admin.rsplit_once('/').map(|b| b.0).unwrap_or(admin)
        ),
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        let admin = self.admin.clone();
        let name = self.name.clone();
        // Drop runs inside the test's runtime; a separate thread with its own runtime can
        // block on the DROP without stalling that runtime.
        let _ = std::thread::spawn(move || {
            let Ok(rt) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            else {
                return;
            };
            rt.block_on(async move {
                if let Ok((client, conn)) = tokio_postgres::connect(&admin, NoTls).await {
                    let driver = tokio::spawn(conn);
                    let _ = client
                        .batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                        .await;
                    drop(client);
                    let _ = driver.await;
                }
            });
        })
        .join();
    }
}

/// The backends every storage test runs against.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    Postgres,
    Sqlite,
}

/// A store on fresh storage (a new PostgreSQL database or a new SQLite directory), removed
/// when this is dropped.
pub struct TestStore {
    pub store: std::sync::Arc<dyn lightwidget_store::EventStore>,
    /// The same storage's views.
    pub views: std::sync::Arc<dyn lightwidget_store::ViewStore>,
    pub db: Option<TestDatabase>,
    pub dir: Option<tempfile::TempDir>,
    pub master: lightwidget_store::MasterKey,
}

impl std::fmt::Debug for TestStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TestStore").field("db", &self.db).finish()
    }
}

impl TestStore {
    /// Appends domain events to `stream` (any version) with system metadata; the position
    /// of the last.
    pub async fn append_events(
        &self,
        stream: &str,
        events: &[lightwidget_domain::DomainEvent],
    ) -> u64 {
        let meta = lightwidget_store::Metadata::system();
        self.store
            .append(lightwidget_store::AppendRequest::single(
                stream,
                lightwidget_store::ExpectedVersion::Any,
                events
                    .iter()
                    .map(|e| lightwidget_store::NewEvent::from_domain(e, &meta))
                    .collect(),
            ))
            .await
            .unwrap_or_else(|e| panic!("append to {stream}: {e}"))
            .last_position
    }

    /// Every document of `view` (up to 10,000), in key order; with `owner`, only that owner's.
    pub async fn docs(&self, view: &str, owner: Option<&str>) -> Vec<lightwidget_store::ViewDoc> {
        self.views
            .query(
                view,
                &lightwidget_store::ViewQuery {
                    owner: owner.map(str::to_owned),
                    limit: 10_000,
                    ..Default::default()
                },
            )
            .await
            .unwrap_or_else(|e| panic!("query view {view}: {e}"))
    }

    /// Another store on the same storage, with its own pool and writer: what a second
    /// process would have.
    pub async fn open_another(
        &self,
        clock: std::sync::Arc<dyn lightwidget_store::Clock>,
    ) -> std::sync::Arc<dyn lightwidget_store::EventStore> {
        match (&self.db, &self.dir) {
            (Some(db), _) => std::sync::Arc::new(
                lightwidget_store::postgres::PgEventStore::connect(
                    &db.url,
                    self.master.clone(),
                    clock,
                    lightwidget_store::postgres::PgOptions::default(),
                )
                .await
                .unwrap_or_else(|e| panic!("connect to the test database: {e}")),
            ),
            (None, Some(dir)) => std::sync::Arc::new(
                lightwidget_store::embedded::SqliteEventStore::open(
                    dir.path(),
                    self.master.clone(),
                    clock,
                    lightwidget_store::embedded::SqliteOptions::default(),
                )
                .unwrap_or_else(|e| panic!("open the test store: {e}")),
            ),
            (None, None) => panic!("a test store has a database or a directory"),
        }
    }

    pub async fn new(
        backend: Backend,
        clock: std::sync::Arc<dyn lightwidget_store::Clock>,
    ) -> Self {
        let master = lightwidget_store::MasterKey::generate();
        match backend {
            Backend::Postgres => {
                let db = TestDatabase::create().await;
                let store = lightwidget_store::postgres::PgEventStore::connect(
                    &db.url,
                    master.clone(),
                    clock,
                    lightwidget_store::postgres::PgOptions::default(),
                )
                .await
                .unwrap_or_else(|e| panic!("connect to the test database: {e}"));
                let store = std::sync::Arc::new(store);
                TestStore {
                    views: store.clone(),
                    store,
                    db: Some(db),
                    dir: None,
                    master,
                }
            }
            Backend::Sqlite => {
                let dir = private_tempdir();
                let store = lightwidget_store::embedded::SqliteEventStore::open(
                    dir.path(),
                    master.clone(),
                    clock,
                    lightwidget_store::embedded::SqliteOptions::default(),
                )
                .unwrap_or_else(|e| panic!("open the test store: {e}"));
                let store = std::sync::Arc::new(store);
                TestStore {
                    views: store.clone(),
                    store,
                    db: None,
                    dir: Some(dir),
                    master,
                }
            }
        }
    }
}

/// What the benchmark binaries share: which backends to run and the process's peak memory.
/// A temporary directory for a store's data: its owner's alone (mode 0700), as the server
/// demands of a data directory.
pub fn private_tempdir() -> tempfile::TempDir {
    tempfile::Builder::new()
        .permissions(std::os::unix::fs::PermissionsExt::from_mode(0o700))
        .tempdir()
        .unwrap_or_else(|e| panic!("tempdir: {e}"))
}

/// Serves `app` on 127.0.0.1 from a thread and runtime of its own (`workers` threads; 0:
/// one current-thread runtime), apart from the code under test: a processor's stand-in, a
/// hello world. Returns its address; it serves until the process ends.
pub fn serve_apart(app: axum::Router, workers: usize) -> std::net::SocketAddr {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let rt = if workers == 0 {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
        } else {
            tokio::runtime::Builder::new_multi_thread()
                .worker_threads(workers)
                .enable_all()
                .build()
        }
        .expect("runtime");
        rt.block_on(async move {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
                .await
                .expect("bind");
            tx.send(listener.local_addr().expect("addr")).expect("send");
            let _ = axum::serve(listener, app).await;
        });
    });
    rx.recv_timeout(std::time::Duration::from_secs(10))
        .expect("the server started")
}

pub mod bench {
    use super::Backend;

    /// The backends `LW_BENCH_BACKEND` (`postgres` or `sqlite`) names; both when unset.
    pub fn backends() -> Vec<Backend> {
        let only = std::env::var("LW_BENCH_BACKEND").unwrap_or_default();
        [Backend::Postgres, Backend::Sqlite]
            .into_iter()
            .filter(|b| only.is_empty() || format!("{b:?}").eq_ignore_ascii_case(&only))
            .collect()
    }

    /// The `n`th of a benchmark's widget views: one of `widgets`, in November 2026, with a
    /// sealed access log of realistic size.
    pub fn widget_view(
        widgets: &[lightwidget_domain::WidgetId],
        n: usize,
    ) -> lightwidget_domain::DomainEvent {
        use chrono::TimeZone;
        let w = widgets[(n * 7919) % widgets.len()];
        let at = chrono::Utc
            .with_ymd_and_hms(2026, 11, 1, 0, 0, 0)
            .single()
            .unwrap_or_default()
            + chrono::Duration::minutes((n % (29 * 24 * 60)) as i64);
        view_at(w, at, n)
    }

    /// Account `a` registered at `at` with the Instagram user name `username`.
    pub fn account_registered(
        a: lightwidget_domain::AccountId,
        username: &str,
        at: chrono::DateTime<chrono::Utc>,
    ) -> lightwidget_domain::DomainEvent {
        use lightwidget_domain::event::{AccountRegistered, InstagramProfile};
        use lightwidget_domain::{Category, Personal, Subject};
        AccountRegistered {
            account_id: a,
            profile: Personal::new(
                Subject::account(a),
                Category::Profile,
                InstagramProfile {
                    instagram_user_id: "1".into(),
                    username: username.into(),
                    profile_picture_url: None,
                    account_type: "PERSONAL".into(),
                },
            ),
            registered_at: at,
        }
        .into()
    }

    /// Widget `w` of account `a` created at `at` (title "t", a grid of three columns).
    pub fn widget_created(
        a: lightwidget_domain::AccountId,
        w: lightwidget_domain::WidgetId,
        at: chrono::DateTime<chrono::Utc>,
    ) -> lightwidget_domain::DomainEvent {
        use lightwidget_domain::event::{Layout, WidgetCreated, WidgetSettings};
        use lightwidget_domain::{Category, Personal, Subject};
        WidgetCreated {
            widget_id: w,
            account_id: a,
            settings: Personal::new(
                Subject::widget(w),
                Category::WidgetContent,
                WidgetSettings {
                    title: "t".into(),
                    layout: Layout::Grid,
                    columns: 3,
                },
            ),
            created_at: at,
        }
        .into()
    }

    /// Creates `widgets` for account `a` at `at` ([`widget_created`]), each on its new stream,
    /// 100 streams an append.
    pub async fn create_widgets(
        store: &dyn lightwidget_store::EventStore,
        a: lightwidget_domain::AccountId,
        widgets: &[lightwidget_domain::WidgetId],
        at: chrono::DateTime<chrono::Utc>,
    ) {
        for chunk in widgets.chunks(100) {
            let writes = chunk
                .iter()
                .map(|w| {
                    lightwidget_store::StreamWrite::of(
                        w.stream(),
                        lightwidget_store::ExpectedVersion::NoStream,
                        &[widget_created(a, *w, at)],
                        &lightwidget_store::Metadata::system(),
                    )
                })
                .collect();
            store
                .append(lightwidget_store::AppendRequest {
                    writes,
                    shred: vec![],
                })
                .await
                .expect("create widgets");
        }
    }

    /// A view of widget `w` at `at`, its access log (of realistic size) varied by `n`.
    pub fn view_at(
        w: lightwidget_domain::WidgetId,
        at: chrono::DateTime<chrono::Utc>,
        n: usize,
    ) -> lightwidget_domain::DomainEvent {
        use lightwidget_domain::event::{AccessLog, WidgetViewed};
        use lightwidget_domain::{Category, Personal, Subject};
        WidgetViewed {
            widget_id: w,
            access: Personal::new(
                Subject::access_log(w, at),
                Category::AccessLog,
                AccessLog {
                    ip: format!("198.51.100.{}", n % 250),
                    user_agent: Some("Mozilla/5.0 (X11; Linux x86_64) Firefox/140.0".into()),
                    browser: Some("Firefox".into()),
                    os: Some("Linux".into()),
                    device_id: Some(format!("dev-{}", n % 10_000)),
                    referrer: Some("https://example.com/blog".into()),
                },
            ),
            viewed_at: at,
        }
        .into()
    }

    /// Appends views `from..to` (see [`widget_view`]) in appends of 1,000, one stream per
    /// widget.
    pub async fn append_views(
        store: &dyn lightwidget_store::EventStore,
        widgets: &[lightwidget_domain::WidgetId],
        from: usize,
        to: usize,
    ) {
        let meta = lightwidget_store::Metadata::system();
        let mut n = from;
        while n < to {
            let end = (n + 1000).min(to);
            let mut by_stream: std::collections::BTreeMap<
                String,
                Vec<lightwidget_store::NewEvent>,
            > = Default::default();
            for i in n..end {
                let e = widget_view(widgets, i);
                if let lightwidget_domain::DomainEvent::WidgetViewed(v) = &e {
                    by_stream
                        .entry(format!("views-{}", v.widget_id))
                        .or_default()
                        .push(lightwidget_store::NewEvent::from_domain(&e, &meta));
                }
            }
            let writes = by_stream
                .into_iter()
                .map(|(stream, events)| lightwidget_store::StreamWrite {
                    stream,
                    expected: lightwidget_store::ExpectedVersion::Any,
                    events,
                })
                .collect();
            store
                .append(lightwidget_store::AppendRequest {
                    writes,
                    shred: vec![],
                })
                .await
                .unwrap_or_else(|e| panic!("append views: {e}"));
            n = end;
        }
    }

    /// A count from the environment, or `default`.
    pub fn count(var: &str, default: usize) -> usize {
        std::env::var(var)
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(default)
    }

    /// Resets the process's peak resident memory (VmHWM) to its current size.
    pub fn peak_reset() {
        let _ = std::fs::write("/proc/self/clear_refs", "5");
    }

    /// The process's peak resident memory since the last reset, in MiB.
    pub fn peak_mib() -> f64 {
        std::fs::read_to_string("/proc/self/status")
            .ok()
            .and_then(|s| {
                s.lines()
                    .find(|l| l.starts_with("VmHWM:"))
                    .and_then(|l| l.split_whitespace().nth(1))
                    .and_then(|kb| kb.parse::<f64>().ok())
            })
            .map(|kb| kb / 1024.0)
            .unwrap_or(f64::NAN)
    }
}

/// Runs each async test body once per backend, on a multi-threaded runtime. Two forms:
///
/// * `both!(a, b)`: modules `postgres` and `sqlite`, each with the tests `a` and `b` calling
///   `a(Backend::Postgres)` …;
/// * `both! { a => body_a; }`: a module `a` with the tests `postgres` and `sqlite`.
#[macro_export]
macro_rules! both {
    ($($name:ident),* $(,)?) => {
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $name() {
                    super::$name($crate::Backend::Postgres).await
                }
            )*
        }
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $name() {
                    super::$name($crate::Backend::Sqlite).await
                }
            )*
        }
    };
    ($($name:ident => $body:path;)*) => {
        $(
            mod $name {
                #[allow(unused_imports)]
                use super::*;
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn postgres() {
                    $body($crate::Backend::Postgres).await
                }
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn sqlite() {
                    $body($crate::Backend::Sqlite).await
                }
            }
        )*
    };
}

/// Work to run against the store right before an append (see [`BeforeFirstAppend`]).
pub type AppendHook = Box<
    dyn FnOnce(
            std::sync::Arc<dyn lightwidget_store::EventStore>,
        ) -> std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>>
        + Send,
>;

/// A store that runs a hook once, right before the first append it is asked for, then
/// passes everything through: another writer acting between a use case's reads and its
/// append, at that exact moment.
pub struct BeforeFirstAppend {
    inner: std::sync::Arc<dyn lightwidget_store::EventStore>,
    hook: std::sync::Mutex<Option<AppendHook>>,
}

impl BeforeFirstAppend {
    pub fn new(inner: std::sync::Arc<dyn lightwidget_store::EventStore>, hook: AppendHook) -> Self {
        BeforeFirstAppend {
            inner,
            hook: std::sync::Mutex::new(Some(hook)),
        }
    }

    /// Whether the hook has run.
    pub fn fired(&self) -> bool {
        self.hook.lock().map(|h| h.is_none()).unwrap_or(true)
    }
}

impl std::fmt::Debug for BeforeFirstAppend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BeforeFirstAppend")
            .field("fired", &self.fired())
            .finish()
    }
}

mod forward {
    use super::BeforeFirstAppend;
    use lightwidget_domain::{Category, Subject};
    use lightwidget_store::{
        AppendRequest, AppendResult, DataKey, EventStore, Head, KeyRef, KeyStore, StoreError,
        StoredEvent,
    };
    use std::collections::HashMap;
    use std::time::Duration;
    use uuid::Uuid;

    #[async_trait::async_trait]
    impl KeyStore for BeforeFirstAppend {
        async fn data_keys(&self, ids: &[Uuid]) -> Result<HashMap<Uuid, DataKey>, StoreError> {
            self.inner.data_keys(ids).await
        }
        async fn shred(&self, refs: &[KeyRef]) -> Result<(), StoreError> {
            self.inner.shred(refs).await
        }
        async fn has_key(&self, subject: &Subject, category: Category) -> Result<bool, StoreError> {
            self.inner.has_key(subject, category).await
        }
        async fn archive(&self, refs: &[KeyRef]) -> Result<(), StoreError> {
            self.inner.archive(refs).await
        }
        async fn archived_keys(&self, ids: &[Uuid]) -> Result<HashMap<Uuid, DataKey>, StoreError> {
            self.inner.archived_keys(ids).await
        }
    }

    #[async_trait::async_trait]
    impl EventStore for BeforeFirstAppend {
        async fn append(&self, request: AppendRequest) -> Result<AppendResult, StoreError> {
            let hook = self.hook.lock().ok().and_then(|mut h| h.take());
            if let Some(hook) = hook {
                hook(self.inner.clone()).await;
            }
            self.inner.append(request).await
        }
        async fn read_stream_raw(
            &self,
            stream: &str,
            after_version: u64,
            limit: usize,
        ) -> Result<Vec<StoredEvent>, StoreError> {
            self.inner
                .read_stream_raw(stream, after_version, limit)
                .await
        }
        async fn read_all_raw(
            &self,
            after: u64,
            limit: usize,
        ) -> Result<Vec<StoredEvent>, StoreError> {
            self.inner.read_all_raw(after, limit).await
        }
        async fn read_all_light(
            &self,
            after: u64,
            limit: usize,
        ) -> Result<Vec<StoredEvent>, StoreError> {
            self.inner.read_all_light(after, limit).await
        }
        async fn count_of(&self, after: u64, head: u64, types: &[&str]) -> Result<u64, StoreError> {
            self.inner.count_of(after, head, types).await
        }
        async fn read_all_light_of(
            &self,
            after: u64,
            limit: usize,
            types: &[&str],
        ) -> Result<(Vec<StoredEvent>, u64), StoreError> {
            self.inner.read_all_light_of(after, limit, types).await
        }
        async fn import(&self, events: &[StoredEvent]) -> Result<Head, StoreError> {
            self.inner.import(events).await
        }
        async fn scrub(&self) -> Result<bool, StoreError> {
            self.inner.scrub().await
        }
        async fn tree_hashes(&self, indexes: &[u64]) -> Result<Vec<[u8; 32]>, StoreError> {
            self.inner.tree_hashes(indexes).await
        }
        async fn record_checkpoint(
            &self,
            c: &lightwidget_store::SignedCheckpoint,
        ) -> Result<(), StoreError> {
            self.inner.record_checkpoint(c).await
        }
        async fn checkpoints(
            &self,
            after: u64,
            limit: usize,
        ) -> Result<Vec<lightwidget_store::SignedCheckpoint>, StoreError> {
            self.inner.checkpoints(after, limit).await
        }
        async fn latest_checkpoint(
            &self,
        ) -> Result<Option<lightwidget_store::SignedCheckpoint>, StoreError> {
            self.inner.latest_checkpoint().await
        }
        async fn head(&self) -> Result<Head, StoreError> {
            self.inner.head().await
        }
        async fn wait_for(&self, after: u64, timeout: Duration) {
            self.inner.wait_for(after, timeout).await
        }
    }
}

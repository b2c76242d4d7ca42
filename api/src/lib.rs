//! The LightWidget HTTP server and the pieces of the `lightwidget` CLI. The only crate that
//! knows HTTP.
//!
//! `Application::build(settings)` opens the store (PostgreSQL when `LW_DATABASE_URL` is set,
//! else SQLite in `LW_DATA_DIR`), binds the listener, and `run_until_stopped` serves until
//! the shutdown future resolves.

pub mod settings;

pub use settings::Settings;

use anyhow::Context;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::{Json, Router};
use lightwidget_projections::models;
use lightwidget_projections::{Projection, Runner};
use lightwidget_store::embedded::{SqliteEventStore, SqliteOptions};
use lightwidget_store::postgres::{PgEventStore, PgOptions};
use lightwidget_store::{Clock, EventStore, MasterKey, SystemClock, ViewStore};
use std::future::Future;
use std::path::Path;
use std::sync::Arc;

/// The file the embedded mode keeps its generated master key in.
pub const MASTER_KEY_FILE: &str = "master.key";

/// Opens the store the settings name.
/// The storage the settings name: the log and the read models, in one database.
#[derive(Clone)]
pub struct Storage {
    pub events: Arc<dyn EventStore>,
    pub views: Arc<dyn ViewStore>,
}

impl Storage {
    fn of<S: EventStore + ViewStore + 'static>(store: S) -> Self {
        let store = Arc::new(store);
        Storage {
            events: store.clone(),
            views: store,
        }
    }
}

/// The read models the server keeps up to date.
pub fn read_models() -> Vec<Arc<dyn Projection>> {
    vec![
        Arc::new(models::Accounts),
        Arc::new(models::Widgets),
        Arc::new(models::Invoices),
        Arc::new(models::Statistics),
    ]
}

pub async fn open_store(settings: &Settings, clock: Arc<dyn Clock>) -> anyhow::Result<Storage> {
    match &settings.database_url {
        Some(url) => {
            let master = MasterKey::from_base64(
                settings
                    .master_key
                    .as_deref()
                    .context("LW_MASTER_KEY is required with LW_DATABASE_URL")?,
            )
            .context("LW_MASTER_KEY")?;
            let store = PgEventStore::connect(url, master, clock, PgOptions::default())
                .await
                .context("opening the PostgreSQL store (LW_DATABASE_URL)")?;
            Ok(Storage::of(store))
        }
        None => {
            let master = match &settings.master_key {
                Some(k) => MasterKey::from_base64(k).context("LW_MASTER_KEY")?,
                None => embedded_master_key(&settings.data_dir)?,
            };
            let store =
                SqliteEventStore::open(&settings.data_dir, master, clock, SqliteOptions::default())
                    .with_context(|| {
                        format!(
                            "opening the embedded store in {}",
                            settings.data_dir.display()
                        )
                    })?;
            Ok(Storage::of(store))
        }
    }
}

/// Reads the embedded master key, creating it (mode 0600) on first start.
fn embedded_master_key(dir: &Path) -> anyhow::Result<MasterKey> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let path = dir.join(MASTER_KEY_FILE);
    if let Ok(text) = std::fs::read_to_string(&path) {
        return MasterKey::from_base64(&text)
            .with_context(|| format!("{} is not a master key", path.display()));
    }
    let key = MasterKey::generate();
    write_private(&path, key.to_base64().as_bytes())?;
    tracing::info!(path = %path.display(), "generated the embedded master key");
    Ok(key)
}

fn write_private(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    use std::io::Write;
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let mut f = opts
        .open(path)
        .with_context(|| format!("creating {}", path.display()))?;
    f.write_all(bytes)?;
    f.sync_all()?;
    Ok(())
}

/// What every handler can reach.
#[derive(Clone)]
pub struct AppState {
    pub store: Arc<dyn EventStore>,
    pub views: Arc<dyn ViewStore>,
}

pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .with_state(state)
}

async fn healthz() -> impl IntoResponse {
    Json(serde_json::json!({"status": "ok"}))
}

/// Ready when the store answers; reports each read model's position and lag behind the log.
async fn readyz(State(state): State<AppState>) -> impl IntoResponse {
    let mut projections = serde_json::Map::new();
    for p in read_models() {
        match state.views.checkpoint(p.name()).await {
            Ok(position) => {
                projections.insert(p.name().into(), serde_json::json!({"position": position}));
            }
            Err(e) => {
                tracing::warn!(error = %e, "views not ready");
                return (
                    StatusCode::SERVICE_UNAVAILABLE,
                    Json(serde_json::json!({"status": "unavailable"})),
                );
            }
        }
    }
    match state.store.head().await {
        Ok(head) => {
            for v in projections.values_mut() {
                let at = v["position"].as_u64().unwrap_or(0);
                v["lag"] = serde_json::json!(head.position.saturating_sub(at));
            }
            (
                StatusCode::OK,
                Json(serde_json::json!({
                    "status": "ready",
                    "head_position": head.position,
                    "projections": projections,
                })),
            )
        }
        Err(e) => {
            tracing::warn!(error = %e, "store not ready");
            (
                StatusCode::SERVICE_UNAVAILABLE,
                Json(serde_json::json!({"status": "unavailable"})),
            )
        }
    }
}

pub struct Application {
    listener: tokio::net::TcpListener,
    state: AppState,
}

impl Application {
    pub async fn build(settings: Settings) -> anyhow::Result<Self> {
        let storage = open_store(&settings, Arc::new(SystemClock)).await?;
        Self::with_storage(settings, storage).await
    }

    /// Builds around already open storage (tests pass theirs).
    pub async fn with_storage(settings: Settings, storage: Storage) -> anyhow::Result<Self> {
        let listener = tokio::net::TcpListener::bind(settings.listen)
            .await
            .with_context(|| format!("binding {}", settings.listen))?;
        Ok(Application {
            listener,
            state: AppState {
                store: storage.events,
                views: storage.views,
            },
        })
    }

    pub fn port(&self) -> u16 {
        self.listener.local_addr().map(|a| a.port()).unwrap_or(0)
    }

    pub fn local_addr(&self) -> std::io::Result<std::net::SocketAddr> {
        self.listener.local_addr()
    }

    /// Serves, and keeps the read models up to date, until `shutdown` resolves: in-flight
    /// requests finish, then every projection runner stops at a checkpoint.
    pub async fn run_until_stopped(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
        let mut runners = Vec::new();
        for projection in read_models() {
            let runner = Runner::new(
                self.state.store.clone(),
                self.state.views.clone(),
                projection,
            );
            let mut stop = stop_rx.clone();
            runners.push(tokio::spawn(async move {
                let name = runner.view().to_owned();
                let stopped = async move {
                    let _ = stop.wait_for(|s| *s).await;
                };
                if let Err(e) = runner.run(stopped).await {
                    tracing::error!(projection = %name, error = %e, "projection runner stopped");
                }
            }));
        }
        let served = axum::serve(self.listener, router(self.state))
            .with_graceful_shutdown(shutdown)
            .await
            .context("serving");
        let _ = stop_tx.send(true);
        for r in runners {
            let _ = r.await;
        }
        served
    }
}

/// Resolves on SIGINT or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
    tracing::info!("shutting down");
}

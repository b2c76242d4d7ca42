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
use lightwidget_store::embedded::{SqliteEventStore, SqliteOptions};
use lightwidget_store::postgres::{PgEventStore, PgOptions};
use lightwidget_store::{Clock, EventStore, MasterKey, SystemClock};
use std::future::Future;
use std::path::Path;
use std::sync::Arc;

/// The file the embedded mode keeps its generated master key in.
pub const MASTER_KEY_FILE: &str = "master.key";

/// Opens the store the settings name.
pub async fn open_store(
    settings: &Settings,
    clock: Arc<dyn Clock>,
) -> anyhow::Result<Arc<dyn EventStore>> {
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
            Ok(Arc::new(store))
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
            Ok(Arc::new(store))
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

/// Ready when the store answers.
async fn readyz(State(state): State<AppState>) -> impl IntoResponse {
    match state.store.head().await {
        Ok(head) => (
            StatusCode::OK,
            Json(serde_json::json!({"status": "ready", "head_position": head.position})),
        ),
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
        let store = open_store(&settings, Arc::new(SystemClock)).await?;
        Self::with_store(settings, store).await
    }

    /// Builds around an already open store (tests pass theirs).
    pub async fn with_store(
        settings: Settings,
        store: Arc<dyn EventStore>,
    ) -> anyhow::Result<Self> {
        let listener = tokio::net::TcpListener::bind(settings.listen)
            .await
            .with_context(|| format!("binding {}", settings.listen))?;
        Ok(Application {
            listener,
            state: AppState { store },
        })
    }

    pub fn port(&self) -> u16 {
        self.listener.local_addr().map(|a| a.port()).unwrap_or(0)
    }

    pub fn local_addr(&self) -> std::io::Result<std::net::SocketAddr> {
        self.listener.local_addr()
    }

    /// Serves until `shutdown` resolves; in-flight requests finish first.
    pub async fn run_until_stopped(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        axum::serve(self.listener, router(self.state))
            .with_graceful_shutdown(shutdown)
            .await
            .context("serving")
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

//! What every handler can reach, and the helpers they share.

use crate::auth::{Caller, TokenCache};
use crate::problem::Problem;
use lightwidget_commands::HitRecorder;
use lightwidget_store::{Clock, EventStore, ManualClock, Metadata, ViewStore};
use std::sync::Arc;
use std::time::Duration;

/// How long a query waits for `min_position` before answering 503.
pub const MIN_POSITION_WAIT: Duration = Duration::from_secs(5);

/// What every handler can reach: one `Arc` around [`Shared`], so that the copies the
/// extractors and middleware take of it per request cost one reference count, not one per
/// field (measured: BENCHMARKS.md, "The request's shared state and the allocator").
#[derive(Clone)]
pub struct AppState(Arc<Shared>);

impl AppState {
    pub fn new(shared: Shared) -> Self {
        AppState(Arc::new(shared))
    }
}

impl std::ops::Deref for AppState {
    type Target = Shared;

    fn deref(&self) -> &Shared {
        &self.0
    }
}

/// The server's shared parts, behind [`AppState`].
pub struct Shared {
    /// The transparency log's signer and key.
    pub log: Arc<crate::transparency::Transparency>,
    pub store: Arc<dyn EventStore>,
    pub views: Arc<dyn ViewStore>,
    pub clock: Arc<dyn Clock>,
    /// Set under `LW_CLOCK=manual`: the clock `POST /v1/admin/clock` moves.
    pub manual_clock: Option<Arc<ManualClock>>,
    pub tokens: Arc<TokenCache>,
    /// How each projection runner stands (for `/readyz`).
    pub runners: Arc<crate::runners::RunnerHealth>,
    /// The application layer: every use case runs through it.
    pub commands: Arc<lightwidget_commands::Context>,
    pub hits: HitRecorder,
    /// Widget documents for the public page and clicks, held in memory while current.
    pub widget_docs: Arc<lightwidget_projections::cache::ViewCache>,
    pub paypal_secret: Option<Arc<str>>,
    pub metrics: Option<metrics_exporter_prometheus::PrometheusHandle>,
    pub policy: Arc<lightwidget_retention::RetentionPolicy>,
    /// The processor registry (R12), checked at start.
    pub processors: Arc<lightwidget_commands::processors::Registry>,
    pub sweeper: Arc<lightwidget_retention::sweeper::Sweeper>,
    /// `LW_TOKEN_TTL_HOURS`: how long an owner's or staff token works after it is issued.
    pub token_ttl: chrono::Duration,
    /// The rate limiters (R17).
    pub limits: Arc<crate::limits::Limits>,
    /// `LW_TRUSTED_PROXIES`: peers whose `X-Forwarded-For` names the client.
    pub trusted_proxies: Arc<[ipnet::IpNet]>,
    /// The outbox's dispatcher, with a sender per configured processor.
    pub dispatcher: Arc<lightwidget_commands::outbox::Dispatcher>,
    /// How long a request may take before it is answered 408.
    pub request_timeout: Duration,
    /// Instagram's authorization page for `/account`'s sign-in (client id, redirect URI,
    /// scopes; the `state` is added per form), when Instagram is configured.
    pub instagram_authorize: Option<String>,
    /// `LW_PUBLIC_URL`, for the embed code.
    pub public_url: Option<String>,
    /// The widget page's Content-Security-Policy: its style and script by hash, images from
    /// the media host only (`routes::widgets::page_policy`).
    pub page_policy: axum::http::HeaderValue,
}

impl AppState {
    /// The envelope metadata of what `caller` does.
    pub fn meta(&self, caller: Option<&Caller>) -> Metadata {
        match caller {
            Some(c) => Metadata {
                actor: c.actor(),
                ..Metadata::system()
            },
            None => Metadata::anonymous(),
        }
    }

    /// Read-your-writes: waits until `view` has reached `min` (API.md: up to 5 s, then 503).
    pub async fn wait_for(&self, view: &str, min: Option<u64>) -> Result<(), Problem> {
        let Some(min) = min else { return Ok(()) };
        // Reached already (nearly always): no wait, and no read of the log's head.
        if self.views.checkpoint(view).await? >= min {
            return Ok(());
        }
        // A position the log has not reached cannot be waited for: refused at once.
        let head = self.store.head().await?.position;
        if min > head {
            return Err(Problem::bad_parameter(
                "min_position",
                format!("min_position {min} is past the log's head ({head})"),
            ));
        }
        match lightwidget_projections::wait_for_position(&*self.views, view, min, MIN_POSITION_WAIT)
            .await
        {
            Ok(()) => Ok(()),
            Err(lightwidget_projections::ProjectionError::NotReached { .. }) => {
                Err(Problem::unavailable(
                    format!("the read model has not reached position {min} yet"),
                    1,
                ))
            }
            Err(e) => {
                tracing::error!(error = %e, "waiting for a read model");
                Err(Problem::internal())
            }
        }
    }
}

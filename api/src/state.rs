//! What every handler can reach, and the helpers they share.

use crate::auth::{Caller, TokenCache};
use crate::instagram::Instagram;
use crate::problem::Problem;
use lightwidget_commands::{CommandError, HitRecorder};
use lightwidget_domain::account::OwnerStatus;
use lightwidget_domain::AccountId;
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
    pub store: Arc<dyn EventStore>,
    pub views: Arc<dyn ViewStore>,
    pub clock: Arc<dyn Clock>,
    /// Set under `LW_CLOCK=manual`: the clock `POST /v1/admin/clock` moves.
    pub manual_clock: Option<Arc<ManualClock>>,
    pub tokens: Arc<TokenCache>,
    pub instagram: Arc<dyn Instagram>,
    pub hits: HitRecorder,
    /// Widget documents for the public page and clicks, held in memory while current.
    pub widget_docs: Arc<lightwidget_projections::cache::ViewCache>,
    /// Keys Instagram identities (HMAC of the Instagram user id).
    pub identity_key: Arc<[u8; 32]>,
    pub paypal_secret: Option<Arc<str>>,
    pub metrics: Option<metrics_exporter_prometheus::PrometheusHandle>,
    pub policy: Arc<lightwidget_retention::RetentionPolicy>,
    pub sweeper: Arc<lightwidget_retention::sweeper::Sweeper>,
    /// How long a request may take before it is answered 408.
    pub request_timeout: Duration,
    /// Owners' account status as last read, with the account stream's version (see
    /// [`OwnerCache`]).
    pub owners: Arc<OwnerCache>,
    /// Widgets whose Instagram media this process is fetching (R7).
    pub media_fetches:
        Arc<std::sync::Mutex<std::collections::HashSet<lightwidget_domain::WidgetId>>>,
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

    /// A retention sweep, then — when it purged anything — the clean-up of R23: once every
    /// read model has applied the purge (bounded wait), the store scrubs what its engine
    /// may still hold of the erased data (the embedded store's write-ahead log).
    pub async fn sweep(
        &self,
    ) -> Result<
        lightwidget_retention::sweeper::SweepReport,
        lightwidget_retention::sweeper::SweepError,
    > {
        let report = self.sweeper.sweep().await?;
        if report.purged.is_empty() {
            return Ok(report);
        }
        // Every read model applies the purge (waited on together, bounded) before the scrub.
        let models = crate::read_models(&self.policy);
        let waits = models.iter().map(|p| {
            lightwidget_projections::wait_for_position(
                &*self.views,
                p.name(),
                report.position,
                Duration::from_secs(10),
            )
        });
        for (p, r) in models.iter().zip(futures::future::join_all(waits).await) {
            if let Err(e) = r {
                tracing::warn!(projection = p.name(), error = %e, "read model behind after a sweep");
            }
        }
        for _ in 0..3 {
            match self.store.scrub().await {
                Ok(true) => break,
                Ok(false) => tokio::time::sleep(Duration::from_millis(100)).await,
                Err(e) => {
                    tracing::warn!(error = %e, "scrubbing the store after a sweep");
                    break;
                }
            }
        }
        Ok(report)
    }

    /// The keyed HMAC of an Instagram user id.
    pub fn identity(&self, instagram_user_id: &str) -> String {
        use hmac::Mac;
        let mut mac =
            <hmac::Hmac<sha2::Sha256> as hmac::Mac>::new_from_slice(&self.identity_key[..])
                .expect("HMAC takes a key of any length");
        mac.update(instagram_user_id.as_bytes());
        hex::encode(mac.finalize().into_bytes())
    }
}

/// Maps a command's failure: the aggregate's refusal through `rejected`, the rest here.
pub fn command_problem<E: std::fmt::Debug + std::fmt::Display>(
    e: CommandError<E>,
    rejected: impl FnOnce(E) -> Problem,
) -> Problem {
    match e {
        CommandError::Rejected(e) => rejected(e),
        CommandError::Conflict { .. } => Problem::conflict("the resource kept changing; try again"),
        CommandError::KeyReused => Problem::invalid(
            "Idempotency-Key",
            "this Idempotency-Key was used for another request",
        ),
        CommandError::Store(e) => e.into(),
        CommandError::Decode(e) => {
            tracing::error!(error = %e, "stored event could not be decoded");
            Problem::internal()
        }
    }
}

/// Owners' account status as this process last read it, with the version of the account
/// stream it was read at. A command that decides on an entry fences the account stream at
/// that version, so an entry gone stale (the account changed here or in another process)
/// costs a conflict and a fresh read, never a decision on an old status. Bounded by
/// clearing it when full.
#[derive(Debug, Default)]
pub struct OwnerCache(std::sync::Mutex<std::collections::HashMap<AccountId, (OwnerStatus, u64)>>);

const OWNER_CACHE_LIMIT: usize = 100_000;

impl OwnerCache {
    pub fn get(&self, account: AccountId) -> Option<(OwnerStatus, u64)> {
        self.0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&account)
            .copied()
    }

    pub fn put(&self, account: AccountId, status: OwnerStatus, version: u64) {
        let mut map = self.0.lock().unwrap_or_else(|p| p.into_inner());
        if map.len() >= OWNER_CACHE_LIMIT {
            map.clear();
        }
        map.insert(account, (status, version));
    }
}

//! The LightWidget HTTP server and the pieces of the `lightwidget` CLI. The only crate that
//! knows HTTP.
//!
//! `Application::build(settings)` opens the store (PostgreSQL when `LW_DATABASE_URL` is set,
//! else SQLite in `LW_DATA_DIR`), binds the listener, and `run_until_stopped` serves until
//! the shutdown future resolves.

pub mod archive;
pub mod auth;
pub mod client_ip;
pub mod console;
pub mod extract;
pub mod instagram;
pub mod limits;
pub mod media;
pub mod openapi;
pub mod problem;
pub mod processors;
pub mod routes;
pub mod runners;
pub mod server;
pub mod settings;
pub mod state;
pub mod transparency;

pub use settings::{ClockSetting, Settings};
pub use state::AppState;

use anyhow::Context;
use axum::http::StatusCode;
use axum::{Json, Router};
use lightwidget_projections::models;
use lightwidget_projections::tail::{LogTail, TAIL_EVENTS};
use lightwidget_projections::{Projection, Runner};
use lightwidget_retention::sweeper::Sweeper;
use lightwidget_retention::RetentionPolicy;
use lightwidget_store::embedded::{SqliteEventStore, SqliteOptions};
use lightwidget_store::postgres::{PgEventStore, PgOptions};
use lightwidget_store::{Clock, EventStore, ManualClock, MasterKey, SystemClock, ViewStore};
use std::future::Future;
use std::path::Path;
use std::sync::Arc;

/// The file the embedded mode keeps its generated master key in.
pub const MASTER_KEY_FILE: &str = "master.key";

/// The storage the settings name: the log and the read models, in one database, with the
/// clock the store stamps events with and the key that hides Instagram identities.
#[derive(Clone)]
pub struct Storage {
    pub events: Arc<dyn EventStore>,
    pub views: Arc<dyn ViewStore>,
    pub clock: Arc<dyn Clock>,
    /// Set when the clock is manual (`LW_CLOCK=manual`).
    pub manual_clock: Option<Arc<ManualClock>>,
    pub identity_key: [u8; 32],
}

/// The purpose the Instagram identity key is derived for.
pub const IDENTITY_KEY_PURPOSE: &str = "lightwidget instagram identity v1";

impl Storage {
    pub fn new<S: EventStore + ViewStore + 'static>(
        store: Arc<S>,
        clock: Arc<dyn Clock>,
        manual_clock: Option<Arc<ManualClock>>,
        master: &MasterKey,
    ) -> Self {
        Storage {
            events: store.clone(),
            views: store,
            clock,
            manual_clock,
            identity_key: master.derive(IDENTITY_KEY_PURPOSE),
        }
    }
}

/// The clock `LW_CLOCK` names: a manual one starts at the present.
pub fn clock_of(settings: &Settings) -> (Arc<dyn Clock>, Option<Arc<ManualClock>>) {
    match settings.clock {
        ClockSetting::System => (Arc::new(SystemClock), None),
        ClockSetting::Manual => {
            let manual = Arc::new(ManualClock::new(chrono::Utc::now()));
            (manual.clone(), Some(manual))
        }
    }
}

/// The read models the server keeps up to date; the retention projection computes its due
/// dates under `policy`.
pub fn read_models(policy: &Arc<RetentionPolicy>) -> Vec<Arc<dyn Projection>> {
    vec![
        Arc::new(models::Accounts),
        Arc::new(models::Widgets),
        Arc::new(models::Invoices),
        Arc::new(models::Statistics),
        Arc::new(models::Breaches),
        Arc::new(models::Outbox),
        Arc::new(models::Staff),
        Arc::new(models::Receipts),
        Arc::new(lightwidget_retention::projection::Retention::new(
            policy.clone(),
        )),
    ]
}

/// The read models' runners as a server runs them: one tail of the log and one catch-up gate
/// shared among them (one read of new events for all; the least work first while far
/// behind), each with its share of the memory budget.
pub fn read_model_runners(
    store: Arc<dyn EventStore>,
    views: Arc<dyn ViewStore>,
    policy: &Arc<RetentionPolicy>,
    memory: &settings::MemoryBudget,
) -> Vec<Runner> {
    let tail = Arc::new(LogTail::new(store.clone(), TAIL_EVENTS));
    let gate = Arc::new(lightwidget_projections::gate::CatchUpGate::new());
    let models = read_models(policy);
    let runner_bytes = memory.runner(models.len());
    models
        .into_iter()
        .map(|projection| {
            Runner::new(store.clone(), views.clone(), projection)
                .with_tail(tail.clone())
                .with_catch_up_gate(gate.clone())
                .with_cache_bytes(runner_bytes)
        })
        .collect()
}

/// Opens the store the settings name, with the clock they name.
pub async fn open_store(settings: &Settings) -> anyhow::Result<Storage> {
    let (clock, manual) = clock_of(settings);
    match &settings.database_url {
        Some(url) => {
            let master = match (&settings.master_key, &settings.master_key_file) {
                (Some(k), _) => MasterKey::from_base64(k).context("LW_MASTER_KEY")?,
                (None, Some(file)) => {
                    read_master_key(file, "LW_MASTER_KEY_FILE")?.with_context(|| {
                        format!("LW_MASTER_KEY_FILE {} does not exist", file.display())
                    })?
                }
                (None, None) => anyhow::bail!(
                    "LW_MASTER_KEY or LW_MASTER_KEY_FILE is required with LW_DATABASE_URL"
                ),
            };
            let store =
                PgEventStore::connect(url, master.clone(), clock.clone(), PgOptions::default())
                    .await
                    .context("opening the PostgreSQL store (LW_DATABASE_URL)")?;
            Ok(Storage::new(Arc::new(store), clock, manual, &master))
        }
        None => {
            private_dir(&settings.data_dir, "LW_DATA_DIR")?;
            let master = match &settings.master_key {
                Some(k) => MasterKey::from_base64(k).context("LW_MASTER_KEY")?,
                None => embedded_master_key(settings)?,
            };
            let store = SqliteEventStore::open(
                &settings.data_dir,
                master.clone(),
                clock.clone(),
                SqliteOptions {
                    heap_limit: Some(
                        settings::MemoryBudget::mib(settings.memory_mb.unwrap_or(256))
                            .sqlite_pages(),
                    ),
                    ..SqliteOptions::default()
                },
            )
            .with_context(|| {
                format!(
                    "opening the embedded store in {}",
                    settings.data_dir.display()
                )
            })?;
            Ok(Storage::new(Arc::new(store), clock, manual, &master))
        }
    }
}

/// Reads the embedded master key from `LW_MASTER_KEY_FILE` (or `master.key` in the data
/// directory), creating it (mode 0600) on first start.
fn embedded_master_key(settings: &Settings) -> anyhow::Result<MasterKey> {
    let (path, setting) = match &settings.master_key_file {
        Some(file) => (file.clone(), "LW_MASTER_KEY_FILE"),
        None => (
            settings.data_dir.join(MASTER_KEY_FILE),
            "the master key file",
        ),
    };
    if let Some(key) = read_master_key(&path, setting)? {
        return Ok(key);
    }
    let key = MasterKey::generate();
    write_private(&path, key.to_base64().as_bytes())
        .with_context(|| format!("{setting} {}", path.display()))?;
    tracing::info!(path = %path.display(), "generated the embedded master key");
    Ok(key)
}

/// The master key in `path`; `None` when there is no such file. A file other users may
/// read is refused.
fn read_master_key(path: &Path, setting: &str) -> anyhow::Result<Option<MasterKey>> {
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e).with_context(|| format!("reading {setting} {}", path.display())),
    };
    only_for_owner(path, setting, "600")?;
    MasterKey::from_base64(&text)
        .with_context(|| format!("{setting} {} is not a master key", path.display()))
        .map(Some)
}

/// Creates the data directory (mode 0700) when it is missing; refuses one other users may
/// read.
pub(crate) fn private_dir(dir: &Path, setting: &str) -> anyhow::Result<()> {
    if !dir.exists() {
        let mut builder = std::fs::DirBuilder::new();
        builder.recursive(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::DirBuilderExt;
            builder.mode(0o700);
        }
        builder
            .create(dir)
            .with_context(|| format!("creating {setting} {}", dir.display()))?;
    }
    only_for_owner(dir, setting, "700")
}

/// Refuses a file or directory that users other than its owner may read or write: the
/// master key, and the data it protects.
pub(crate) fn only_for_owner(path: &Path, setting: &str, fix: &str) -> anyhow::Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(path)
            .with_context(|| format!("{setting} {}", path.display()))?
            .permissions()
            .mode();
        if mode & 0o077 != 0 {
            anyhow::bail!(
                "{setting} {} is open to other users (mode {:o}); make it the owner's alone \
                 (chmod {fix} {})",
                path.display(),
                mode & 0o777,
                path.display()
            );
        }
    }
    let _ = (path, setting, fix);
    Ok(())
}

/// Creates `path` for its owner alone (mode 0600) with these bytes; an existing file is
/// refused, never overwritten.
pub fn write_private(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
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

/// The OpenAPI document's frame; the paths come from the routes themselves.
#[derive(utoipa::OpenApi)]
#[openapi(
    info(title = "LightWidget ledger API", version = "1"),
    modifiers(&BearerAuth),
    tags(
        (name = "accounts"), (name = "widgets"), (name = "public"), (name = "orders"),
        (name = "staff"), (name = "operations"), (name = "privacy")
    )
)]
struct ApiDoc;

struct BearerAuth;

impl utoipa::Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
    }
}

/// Every route with its OpenAPI description: a route cannot be served without being
/// described, because both come from the same list.
pub fn api_routes() -> (Router<AppState>, utoipa::openapi::OpenApi) {
    use routes::{
        accounts, admin, audit, breaches, consent, log, ops, orders, privacy, public, retention,
        staff, widgets,
    };
    use utoipa::OpenApi;
    use utoipa_axum::router::OpenApiRouter;
    use utoipa_axum::routes;
    OpenApiRouter::with_openapi(ApiDoc::openapi())
        .routes(routes!(ops::healthz))
        .routes(routes!(ops::readyz))
        .routes(routes!(ops::metrics_text))
        .routes(routes!(accounts::sign_in))
        .routes(routes!(accounts::sign_out))
        .routes(routes!(accounts::me, accounts::delete_me))
        .routes(routes!(accounts::restore_me))
        .routes(routes!(widgets::create_preview))
        .routes(routes!(widgets::get_preview))
        .routes(routes!(widgets::create_widget, widgets::list_widgets))
        .routes(routes!(
            widgets::get_widget,
            widgets::patch_widget,
            widgets::delete_widget
        ))
        .routes(routes!(widgets::restore_widget))
        .routes(routes!(widgets::stats))
        .routes(routes!(widgets::public_page))
        .routes(routes!(widgets::click))
        .routes(routes!(widgets::embed))
        .routes(routes!(widgets::embed_js))
        .routes(routes!(orders::upgrade))
        .routes(routes!(orders::paypal))
        .routes(routes!(orders::list_invoices))
        .routes(routes!(orders::get_invoice))
        .routes(routes!(admin::add_staff, admin::list_staff))
        .routes(routes!(admin::remove_staff))
        .routes(routes!(admin::rotate_admin_token))
        .routes(routes!(staff::read_account))
        .routes(routes!(staff::block))
        .routes(routes!(staff::unblock))
        .routes(routes!(staff::place_hold))
        .routes(routes!(staff::release_hold))
        .routes(routes!(staff::held_data))
        .routes(routes!(admin::advance_clock))
        .routes(routes!(admin::outbox))
        .routes(routes!(audit::events))
        .routes(routes!(audit::verify))
        .routes(routes!(audit::replay))
        .routes(routes!(audit::export))
        .routes(routes!(public::post_comment, public::list_comments))
        .routes(routes!(public::open_ticket))
        .routes(routes!(log::checkpoint))
        .routes(routes!(log::key))
        .routes(routes!(log::consistency))
        .routes(routes!(log::inclusion))
        .routes(routes!(log::checkpoints))
        .routes(routes!(log::receipt))
        .routes(routes!(retention::list))
        .routes(routes!(retention::subject))
        .routes(routes!(retention::purges))
        .routes(routes!(retention::run_sweep))
        .routes(routes!(privacy::processors))
        .routes(routes!(consent::put_consent, consent::get_consent))
        .routes(routes!(privacy::policies, privacy::publish_policy))
        .routes(routes!(breaches::record, breaches::list))
        .routes(routes!(breaches::notified))
        .split_for_parts()
}

/// The OpenAPI document of every route, as served: the routes' descriptions with every
/// error each can answer declared ([`openapi::declare_errors`]).
pub fn openapi() -> serde_json::Value {
    let (_, mut doc) = api_routes();
    doc.paths.paths.insert(
        "/openapi.json".into(),
        utoipa::openapi::path::PathItem::new(
            utoipa::openapi::HttpMethod::Get,
            utoipa::openapi::path::OperationBuilder::new()
                .summary(Some("This document"))
                .tag("operations")
                .response("200", utoipa::openapi::Response::new("OpenAPI 3")),
        ),
    );
    let mut doc = serde_json::to_value(&doc).unwrap_or_default();
    openapi::declare_errors(&mut doc);
    doc
}

pub fn router(state: AppState) -> Router {
    let (api, _) = api_routes();
    let doc = Arc::new(openapi());
    let queries = Arc::new(openapi::QueryParameters::of(&doc));
    api.route_layer(axum::middleware::from_fn_with_state(
        queries,
        openapi::known_query,
    ))
    .merge(console::routes())
    .route(
        "/openapi.json",
        axum::routing::get(move || {
            let doc = doc.clone();
            async move { Json(doc.as_ref().clone()) }
        }),
    )
    .fallback(|| async { problem::Problem::not_found("route") })
    .method_not_allowed_fallback(|| async {
        problem::Problem::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "method-not-allowed",
            "this route does not take that method",
        )
    })
    .layer(axum::middleware::from_fn_with_state(
        state.clone(),
        limits::limit,
    ))
    .layer(axum::middleware::from_fn(routes::ops::track))
    .layer(axum::extract::DefaultBodyLimit::max(extract::BODY_LIMIT))
    .layer(axum::middleware::from_fn_with_state(
        state.clone(),
        deadline,
    ))
    // Outermost first: the request id is set (or kept), then the span opened with it.
    .layer(
        tower_http::trace::TraceLayer::new_for_http()
            .make_span_with(request_span)
            .on_request(())
            .on_response(answered)
            .on_failure(()),
    )
    .layer(tower_http::request_id::PropagateRequestIdLayer::x_request_id())
    .layer(tower_http::request_id::SetRequestIdLayer::x_request_id(
        tower_http::request_id::MakeRequestUuid,
    ))
    .with_state(state)
}

/// The span of a request: its method, route (the template, never the path: a path may
/// name a subject) and request id, with its status and latency recorded when it is
/// answered. What a handler logs is logged inside it.
fn request_span(request: &axum::extract::Request) -> tracing::Span {
    let route = request
        .extensions()
        .get::<axum::extract::MatchedPath>()
        .map(|p| p.as_str())
        .unwrap_or("unmatched");
    let id = loggable_request_id(
        request
            .headers()
            .get("x-request-id")
            .and_then(|v| v.to_str().ok()),
    );
    tracing::info_span!(
        "request",
        method = %request.method(),
        route,
        request_id = id,
        status = tracing::field::Empty,
        latency_ms = tracing::field::Empty,
    )
}

/// The request id as it may be logged: a client's own `X-Request-Id` only if it looks like
/// an id (up to 64 of `A-Z a-z 0-9 - _`). A header is no place for personal data, but
/// nothing a client sends is logged unchecked.
fn loggable_request_id(header: Option<&str>) -> &str {
    header
        .filter(|v| {
            !v.is_empty()
                && v.len() <= 64
                && v.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        })
        .unwrap_or("(not an id)")
}

fn answered(
    response: &axum::response::Response,
    latency: std::time::Duration,
    span: &tracing::Span,
) {
    span.record("status", response.status().as_u16());
    span.record("latency_ms", latency.as_secs_f64() * 1000.0);
    tracing::debug!("answered");
}

/// Answers 408 as a problem when a request takes longer than the server's request timeout;
/// the handler is dropped at that point (what it appended before stays: appends are atomic).
async fn deadline(
    axum::extract::State(app): axum::extract::State<AppState>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    match tokio::time::timeout(app.request_timeout, next.run(request)).await {
        Ok(response) => response,
        Err(_) => problem::Problem::new(
            StatusCode::REQUEST_TIMEOUT,
            "timeout",
            format!(
                "the request took longer than {} s",
                app.request_timeout.as_secs_f64()
            ),
        )
        .into_response(),
    }
}

/// The log filter of `RUST_LOG` (default `info`), with the targets that would print personal
/// data capped whatever it says: tokio-postgres logs every statement's parameters at debug
/// level, and those parameters are view documents, some with personal data in the clear.
/// (The server's own connection loop, `server::serve`, logs no peer address at any level.)
pub fn log_filter(directives: Option<&str>) -> tracing_subscriber::EnvFilter {
    let base = tracing_subscriber::EnvFilter::try_new(directives.unwrap_or("info"))
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    ["tokio_postgres=info", "tokio_postgres::query=info"]
        .into_iter()
        .filter_map(|d| d.parse().ok())
        .fold(base, |f, d| f.add_directive(d))
}

/// How long a request may take before it is answered 408 (`LW_REQUEST_TIMEOUT_SECONDS`).
pub const REQUEST_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

pub struct Application {
    listener: tokio::net::TcpListener,
    state: AppState,
    admin_token: Option<String>,
    generated_log_key: Option<String>,
    sweep_interval: std::time::Duration,
    transport: server::Limits,
    memory: settings::MemoryBudget,
}

impl Application {
    pub async fn build(settings: Settings) -> anyhow::Result<Self> {
        let storage = open_store(&settings).await?;
        Self::with_storage(settings, storage).await
    }

    /// Builds around already open storage (tests pass theirs).
    pub async fn with_storage(settings: Settings, storage: Storage) -> anyhow::Result<Self> {
        let policy = Arc::new(
            RetentionPolicy::load(settings.policy_file.as_deref()).with_context(|| {
                format!(
                    "LW_POLICY_FILE {}",
                    settings
                        .policy_file
                        .as_deref()
                        .unwrap_or(std::path::Path::new("(built in)"))
                        .display()
                )
            })?,
        );
        let listener = tokio::net::TcpListener::bind(settings.listen_addr())
            .await
            .with_context(|| format!("binding {}", settings.listen_addr()))?;
        let instagram: Arc<dyn instagram::Instagram> = match &settings.instagram {
            Some(i) => Arc::new(instagram::HttpInstagram::new(
                &i.url,
                &i.app_id,
                &i.app_secret,
                &i.redirect_uri,
            )),
            None => Arc::new(instagram::DemoInstagram {
                media_base: settings
                    .demo_media_url
                    .clone()
                    .unwrap_or_else(|| instagram::DEMO_MEDIA_BASE.to_owned()),
            }),
        };
        let events: Arc<dyn EventStore> =
            Arc::new(lightwidget_store::metered::MeteredStore(storage.events));
        let sweeper = Arc::new(
            Sweeper::new(
                events.clone(),
                storage.views.clone(),
                storage.clock.clone(),
                policy.clone(),
            )
            .scrubbing_after(read_models(&policy).iter().map(|p| p.name().to_owned())),
        );
        let processors = Arc::new(
            lightwidget_commands::processors::Registry::checked_in()
                .context("the processor registry (commands/processors.toml)")?,
        );
        let memory = settings
            .memory_mb
            .map(settings::MemoryBudget::mib)
            .unwrap_or_default();
        let commands = Arc::new(
            lightwidget_commands::Context::new(
                events.clone(),
                storage.views.clone(),
                storage.clock.clone(),
                instagram,
                storage.identity_key,
                processors.clone(),
            )
            .with_owner_cache_bytes(memory.owners()),
        );
        let defaults = lightwidget_commands::outbox::DispatchConfig::default();
        let chrono_of =
            |d: std::time::Duration| chrono::Duration::from_std(d).unwrap_or(chrono::Duration::MAX);
        let dispatcher = Arc::new(lightwidget_commands::outbox::Dispatcher::new(
            commands.clone(),
            processors::senders(&settings.processors),
            lightwidget_commands::outbox::DispatchConfig {
                give_up_after: settings
                    .processors
                    .give_up_after
                    .map_or(defaults.give_up_after, chrono_of),
                base: settings
                    .processors
                    .retry_base
                    .map_or(defaults.base, chrono_of),
                lease: settings.processors.lease.map_or(defaults.lease, chrono_of),
                ..defaults
            },
        ));
        let log_identity = transparency::identity(&settings)?;
        let generated_log_key = log_identity
            .generated
            .then(|| log_identity.key.verifier_key().to_owned());
        let log = Arc::new(transparency::Transparency::new(
            log_identity,
            events.clone(),
            storage.views.clone(),
        ));
        let state = AppState::new(state::Shared {
            log,
            token_ttl: settings
                .token_ttl
                .and_then(|d| chrono::Duration::from_std(d).ok())
                .unwrap_or(chrono::Duration::hours(720)),
            limits: Arc::new(limits::Limits::per_minute(
                settings.rate_limits.anonymous_per_minute,
                settings.rate_limits.token_per_minute,
            )),
            trusted_proxies: settings.trusted_proxies.clone().into(),
            dispatcher,
            processors,
            sweeper,
            commands,
            request_timeout: settings.request_timeout.unwrap_or(REQUEST_TIMEOUT),
            public_url: settings.public_url.clone(),
            page_policy: routes::widgets::page_policy(&match &settings.instagram {
                // Instagram's media are served from its CDNs.
                Some(_) => "https://*.cdninstagram.com https://*.fbcdn.net".to_owned(),
                None => routes::widgets::origin_of(
                    settings
                        .demo_media_url
                        .as_deref()
                        .unwrap_or(instagram::DEMO_MEDIA_BASE),
                ),
            }),
            instagram_authorize: settings.instagram.as_ref().map(|i| {
                use percent_encoding::{utf8_percent_encode, NON_ALPHANUMERIC};
                format!(
                    "{}/oauth/authorize?client_id={}&redirect_uri={}&scope=user_profile,user_media&response_type=code",
                    i.url.trim_end_matches('/'),
                    utf8_percent_encode(&i.app_id, NON_ALPHANUMERIC),
                    utf8_percent_encode(&i.redirect_uri, NON_ALPHANUMERIC),
                )
            }),
            hits: lightwidget_commands::HitRecorder::spawn(events.clone(), 1000),
            widget_docs: Arc::new(lightwidget_projections::cache::ViewCache::with_budget(
                Arc::new(models::Widgets),
                storage.views.clone(),
                memory.page_documents(),
            )),
            store: events,
            views: storage.views,
            clock: storage.clock,
            manual_clock: storage.manual_clock,
            tokens: Arc::new(auth::TokenCache::with_bytes(memory.tokens())),
            runners: Arc::new(runners::RunnerHealth::default()),
            paypal_secret: settings.paypal_webhook_secret.as_deref().map(Arc::from),
            metrics: routes::ops::prometheus(),
            policy,
        });
        lightwidget_commands::policies::seed(&state.commands)
            .await
            .context("publishing the privacy policy's first version")?;
        let admin_token = lightwidget_commands::tokens::bootstrap_admin(
            &state.commands,
            settings.admin_token.as_deref(),
        )
        .await
        .context("registering the admin token")?;
        Ok(Application {
            listener,
            state,
            admin_token,
            generated_log_key,
            sweep_interval: settings.sweep_interval(),
            memory,
            transport: server::Limits {
                header_timeout: settings
                    .header_timeout
                    .unwrap_or(server::Limits::default().header_timeout),
                max_connections: settings
                    .max_connections
                    .unwrap_or(server::Limits::default().max_connections),
            },
        })
    }

    /// The admin token generated at this first start, to be shown once.
    pub fn generated_admin_token(&self) -> Option<&str> {
        self.admin_token.as_deref()
    }

    /// The verifier key of the log key generated at this first start, to be shown once.
    pub fn generated_log_key(&self) -> Option<&str> {
        self.generated_log_key.as_deref()
    }

    pub fn state(&self) -> &AppState {
        &self.state
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
        for runner in read_model_runners(
            self.state.store.clone(),
            self.state.views.clone(),
            &self.state.policy,
            &self.memory,
        ) {
            runners.push(tokio::spawn(runners::supervise(
                runner,
                self.state.views.clone(),
                self.state.runners.clone(),
                stop_rx.clone(),
            )));
        }
        {
            // The widget documents the public routes read, followed from the log.
            let (cache, events) = (self.state.widget_docs.clone(), self.state.store.clone());
            let mut stop = stop_rx.clone();
            runners.push(tokio::spawn(async move {
                cache
                    .follow(events, async move {
                        let _ = stop.wait_for(|s| *s).await;
                    })
                    .await
            }));
        }
        {
            // The token cache learns revocations from the log (other processes' too).
            let (cache, events) = (self.state.tokens.clone(), self.state.store.clone());
            let mut stop = stop_rx.clone();
            runners.push(tokio::spawn(async move {
                cache
                    .follow(events, async move {
                        let _ = stop.wait_for(|s| *s).await;
                    })
                    .await
            }));
        }
        {
            // The periodic sweep (R8: a preview is gone within minutes of its 15).
            let app = self.state.clone();
            let interval = self.sweep_interval;
            let mut stop = stop_rx.clone();
            runners.push(tokio::spawn(async move {
                loop {
                    tokio::select! {
                        _ = stop.wait_for(|s| *s) => break,
                        _ = tokio::time::sleep(interval) => {}
                    }
                    match app.sweeper.sweep().await {
                        Ok(r) if !r.purged.is_empty() => {
                            tracing::info!(
                                purged = r.purged.len(),
                                position = r.position,
                                "retention sweep"
                            )
                        }
                        Ok(_) => {}
                        Err(e) => tracing::error!(error = %e, "retention sweep failed"),
                    }
                }
            }));
        }
        {
            // The rate limiters forget the keys that recovered.
            let limits = self.state.limits.clone();
            let mut stop = stop_rx.clone();
            runners.push(tokio::spawn(async move {
                loop {
                    tokio::select! {
                        _ = stop.wait_for(|s| *s) => break,
                        _ = tokio::time::sleep(std::time::Duration::from_secs(60)) => {}
                    }
                    limits.forget_idle();
                }
            }));
        }
        // The transparency log's signer (one process per store signs).
        runners.push(tokio::spawn(self.state.log.clone().run(stop_rx.clone())));
        // The outbox's deliveries to the configured processors.
        runners.push(tokio::spawn(
            self.state.dispatcher.clone().run(stop_rx.clone()),
        ));
        let hits = self.state.hits.clone();
        let app = router(self.state);
        let served = server::serve(self.listener, app, self.transport, shutdown)
            .await
            .context("serving");
        // Every page answered has its view queued: store them all before stopping.
        hits.drain().await;
        let _ = stop_tx.send(true);
        for r in runners {
            let _ = r.await;
        }
        served
    }
}

/// Resolves on SIGINT or SIGTERM.
pub fn shutdown_signal() -> impl Future<Output = ()> + Send + 'static {
    // The handlers are installed now, not when the future is first polled: a SIGTERM that
    // arrives just after the server logs its address stops it gracefully instead of killing
    // it (a test that stops a server at once saw it die of the signal on a loaded machine).
    #[cfg(unix)]
    let (term, int) = {
        use tokio::signal::unix::{signal, SignalKind};
        (
            signal(SignalKind::terminate()).ok(),
            signal(SignalKind::interrupt()).ok(),
        )
    };
    async move {
        #[cfg(unix)]
        {
            let wait = |s: Option<tokio::signal::unix::Signal>| async move {
                match s {
                    Some(mut s) => {
                        s.recv().await;
                    }
                    None => std::future::pending::<()>().await,
                }
            };
            tokio::select! {
                _ = wait(term) => {},
                _ = wait(int) => {},
            }
        }
        #[cfg(not(unix))]
        {
            let _ = tokio::signal::ctrl_c().await;
        }
        tracing::info!("shutting down");
    }
}

#[cfg(test)]
mod request_id_tests {
    #[test]
    fn only_id_shaped_request_ids_are_logged() {
        let id = "0b9f6a2e-5d1c-4e1b-9a7e-2f4c1d3b5a6c";
        assert_eq!(super::loggable_request_id(Some(id)), id);
        for bad in ["alice@example.com", "Alice Smith", "", &"x".repeat(65)] {
            assert_eq!(
                super::loggable_request_id(Some(bad)),
                "(not an id)",
                "{bad}"
            );
        }
        assert_eq!(super::loggable_request_id(None), "(not an id)");
    }
}

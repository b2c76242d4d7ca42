//! Health, readiness, Prometheus metrics and the OpenAPI document.

use crate::problem::Problem;
use crate::state::AppState;
use axum::extract::{MatchedPath, Request, State};
use axum::http::{header, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Serialize;
use std::sync::OnceLock;
use utoipa::ToSchema;

#[derive(Serialize, ToSchema)]
pub struct Health {
    pub status: String,
}

/// 200 while the server serves.
#[utoipa::path(get, path = "/healthz", tag = "operations", responses((status = 200, body = Health)))]
pub async fn healthz() -> Json<Health> {
    Json(Health {
        status: "ok".into(),
    })
}

/// Ready when the store answers and no projection runner is failing; reports each read
/// model's position, lag behind the log and runner (`running` here, `standby` while another
/// process runs it, `starting`).
#[utoipa::path(get, path = "/readyz", tag = "operations",
    responses((status = 200, description = "ready, with each projection's position and lag"),
        (status = 503, body = Problem)))]
pub async fn readyz(State(app): State<AppState>) -> Response {
    match lag(&app).await {
        Ok((head, projections)) => {
            if let Some(alarm) = app.log.alarm() {
                return Problem::unavailable(format!("log: {alarm}"), 5).into_response();
            }
            let runners = app.runners.states();
            let failing: Vec<&str> = runners
                .iter()
                .filter(|(_, s)| **s == crate::runners::RunnerState::Failing)
                .map(|(v, _)| v.as_str())
                .collect();
            if !failing.is_empty() {
                return Problem::unavailable(
                    format!("projection runners failing: {}", failing.join(", ")),
                    2,
                )
                .into_response();
            }
            let projections: serde_json::Map<String, serde_json::Value> = projections
                .into_iter()
                .map(|(name, at)| {
                    let runner = runners.get(name).map(|s| s.as_str());
                    (
                        name.to_owned(),
                        serde_json::json!({"position": at, "lag": head.saturating_sub(at),
                            "runner": runner}),
                    )
                })
                .collect();
            Json(serde_json::json!({
                "status": "ready",
                "head_position": head,
                "projections": projections,
                // How far the in-memory caches have read the log: the widget pages, and
                // the token cache's revocations (`null` while it does not follow).
                "followers": {
                    "widget_pages": app.widget_docs.followed(),
                    "tokens": app.tokens.followed(),
                },
            }))
            .into_response()
        }
        Err(e) => {
            tracing::warn!(error = %e, "not ready");
            Problem::unavailable("the store does not answer", 5).into_response()
        }
    }
}

/// How many breaches are overdue now (R16): their 72 hours passed, the authority not told.
/// The register's due-date index holds a breach only until it is notified.
async fn overdue_breaches(app: &AppState) -> Result<usize, lightwidget_store::StoreError> {
    use lightwidget_projections::models::breaches::{BreachDoc, VIEW};
    let now = app.clock.now();
    let due = app
        .views
        .query(
            VIEW,
            &lightwidget_store::ViewQuery {
                state: Some("open".into()),
                due_before: Some(now),
                limit: 10_000,
                ..Default::default()
            },
        )
        .await?;
    let mut n = 0;
    for d in &due {
        n += usize::from(super::breaches::overdue(&d.read::<BreachDoc>()?, now));
    }
    Ok(n)
}

/// The log's head and each read model's checkpoint.
async fn lag(
    app: &AppState,
) -> Result<(u64, Vec<(&'static str, u64)>), lightwidget_store::StoreError> {
    let mut out = Vec::new();
    for p in crate::read_models(&app.policy) {
        out.push((p.name(), app.views.checkpoint(p.name()).await?));
    }
    Ok((app.store.head().await?.position, out))
}

/// The process's Prometheus recorder, installed once (tests run several servers in one
/// process; they share it).
pub fn prometheus() -> Option<metrics_exporter_prometheus::PrometheusHandle> {
    static HANDLE: OnceLock<Option<metrics_exporter_prometheus::PrometheusHandle>> =
        OnceLock::new();
    HANDLE
        .get_or_init(|| {
            let recorder = metrics_exporter_prometheus::PrometheusBuilder::new()
                .set_buckets(&[
                    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
                ])
                .ok()?
                .build_recorder();
            let handle = recorder.handle();
            metrics::set_global_recorder(recorder).ok()?;
            Some(handle)
        })
        .clone()
}

/// Above this many messages in one state the depth gauge reads this many (a scrape reads
/// the documents it counts).
const DEPTH_CAP: usize = 10_000;

/// The outbox's depth per processor and state (the states that may still change, and the
/// dead ones the admin must see): `lw_outbox_messages`.
async fn outbox_depth(app: &AppState) -> Result<(), lightwidget_store::StoreError> {
    use lightwidget_projections::models::outbox::VIEW;
    for p in app.processors.processors() {
        for state in ["pending", "in_flight", "dead"] {
            let n = app
                .views
                .query(
                    VIEW,
                    &lightwidget_store::ViewQuery {
                        owner: Some(p.kind.clone()),
                        state: Some(state.into()),
                        limit: DEPTH_CAP,
                        ..Default::default()
                    },
                )
                .await?
                .len();
            metrics::gauge!("lw_outbox_messages", "processor" => p.kind.clone(), "state" => state)
                .set(n as f64);
        }
    }
    Ok(())
}

/// Counts requests and their latency per route template (never the concrete path: ids and
/// other values stay out of the metrics).
pub async fn track(request: Request, next: Next) -> Response {
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_owned())
        .unwrap_or_else(|| "unmatched".into());
    let method = request.method().as_str().to_owned();
    let start = std::time::Instant::now();
    let response = next.run(request).await;
    let status = response.status().as_u16().to_string();
    metrics::counter!("lw_http_requests_total", "method" => method.clone(), "route" => route.clone(), "status" => status)
        .increment(1);
    metrics::histogram!("lw_http_request_duration_seconds", "method" => method, "route" => route)
        .record(start.elapsed().as_secs_f64());
    response
}

/// Prometheus text: request counts and latencies per route, the log head, each read model's
/// position and lag behind it, the caches of `LW_MEMORY_MB` (bytes, entries, hits, misses), and
/// the page views not yet stored (the oldest one's age; pages that waited for the recorder).
#[utoipa::path(get, path = "/metrics", tag = "operations",
    responses((status = 200, content_type = "text/plain", body = String)))]
pub async fn metrics_text(State(app): State<AppState>) -> Response {
    if let Ok((head, projections)) = lag(&app).await {
        metrics::gauge!("lw_log_head_position").set(head as f64);
        for (name, at) in projections {
            metrics::gauge!("lw_projection_position", "projection" => name).set(at as f64);
            metrics::gauge!("lw_projection_lag_events", "projection" => name)
                .set(head.saturating_sub(at) as f64);
        }
    }
    // The caches of LW_MEMORY_MB: the widget documents held for the public page, owners'
    // status and tokens' grants: bytes, entries, hits and misses.
    for (cache, stats) in [
        ("widget_docs", app.widget_docs.stats()),
        ("owners", app.commands.owners.stats()),
        ("tokens", app.tokens.stats()),
    ] {
        metrics::gauge!("lw_cache_bytes", "cache" => cache).set(stats.bytes as f64);
        metrics::gauge!("lw_cache_documents", "cache" => cache).set(stats.documents as f64);
        metrics::counter!("lw_cache_hits_total", "cache" => cache).absolute(stats.hits);
        metrics::counter!("lw_cache_misses_total", "cache" => cache).absolute(stats.misses);
    }
    // How long the oldest page view answered but not yet stored has waited (decision 23).
    metrics::gauge!("lw_page_views_oldest_unstored_seconds")
        .set(app.hits.oldest_unstored().as_secs_f64());
    match overdue_breaches(&app).await {
        Ok(n) => metrics::gauge!("lw_breaches_overdue").set(n as f64),
        Err(e) => tracing::warn!(error = %e, "counting overdue breaches"),
    }
    if let Err(e) = outbox_depth(&app).await {
        tracing::warn!(error = %e, "counting the outbox");
    }
    let text = app.metrics.as_ref().map(|h| h.render()).unwrap_or_default();
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        text,
    )
        .into_response()
}

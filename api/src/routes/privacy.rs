//! Privacy operations: the processor registry (R12) and the policy's versions (R25).

use super::Call;
use crate::auth::Caller;
use crate::extract::{IdempotencyKey, JsonBody};
use crate::problem::{ApiResult, Problem};
use crate::state::AppState;
use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use lightwidget_domain::event::Role;
use lightwidget_domain::values::{text, Invalid};
use lightwidget_store::format_time;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

#[derive(Serialize, ToSchema)]
pub struct ProcessorView {
    /// How the server names it: `hosting`, `backups`, `cdn`, `email`, `ticketing`,
    /// `analytics`, `payments`.
    pub kind: String,
    pub name: String,
    pub purpose: String,
    pub region: String,
    /// The categories of personal data it receives (none: it receives no personal data).
    pub categories: Vec<String>,
    /// Whether this server is set up to hand it anything.
    pub configured: bool,
}

#[derive(Serialize, ToSchema)]
pub struct Processors {
    pub processors: Vec<ProcessorView>,
}

/// Every processor the privacy policy names, what it is for, where, the categories of
/// personal data it receives, and whether this server is configured for it (R12).
#[utoipa::path(get, path = "/v1/privacy/processors", tag = "privacy",
    responses((status = 200, body = Processors)))]
pub async fn processors(State(app): State<AppState>) -> Json<Processors> {
    let processors = app
        .processors
        .processors()
        .iter()
        .map(|p| ProcessorView {
            kind: p.kind.clone(),
            name: p.name.clone(),
            purpose: p.purpose.clone(),
            region: p.region.clone(),
            categories: p.categories.iter().map(|c| c.as_str().to_owned()).collect(),
            configured: match p.kind.as_str() {
                // This server is the hosting.
                "hosting" => true,
                "payments" => app.paypal_secret.is_some(),
                // E-mail, ticketing and CDN when their settings are given; backups and
                // analytics have none yet: nothing is handed to them.
                kind => app.dispatcher.configured().any(|c| c == kind),
            },
        })
        .collect();
    Json(Processors { processors })
}

#[derive(Serialize, ToSchema)]
pub struct PolicyView {
    pub version: String,
    pub effective_at: String,
    /// The version in force now: the one that took effect last.
    pub in_force: bool,
}

#[derive(Serialize, ToSchema)]
pub struct Policies {
    pub policies: Vec<PolicyView>,
}

/// The privacy policy's versions in the order they were published, the one in force marked
/// (R25).
#[utoipa::path(get, path = "/v1/privacy/policies", tag = "privacy",
    responses((status = 200, body = Policies), (status = 503, body = Problem)))]
pub async fn policies(State(app): State<AppState>) -> ApiResult<Json<Policies>> {
    let versions = lightwidget_commands::policies::versions(&app.commands).await?;
    let now = app.clock.now();
    let in_force = versions.in_force(now).map(str::to_owned);
    let policies = versions
        .versions
        .into_iter()
        .map(|v| PolicyView {
            in_force: in_force.as_deref() == Some(v.version.as_str()),
            version: v.version,
            effective_at: format_time(v.effective_at),
        })
        .collect();
    Ok(Json(Policies { policies }))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewPolicy {
    /// A label not used before, 1 to 50 characters.
    #[schema(min_length = 1, max_length = 50, pattern = "\\S")]
    pub version: String,
    /// The policy's text, 1 to 200,000 characters.
    #[schema(min_length = 1, max_length = 200000, pattern = "\\S")]
    pub text: String,
    /// RFC 3339, at least 5 days from now.
    #[schema(format = DateTime)]
    pub effective_at: String,
}

#[derive(Serialize, ToSchema)]
pub struct PolicyPublished {
    pub version: String,
    pub effective_at: String,
    pub position: u64,
}

/// Publishes a version of the privacy policy, at least 5 days before it takes effect
/// (admin, R25).
#[utoipa::path(post, path = "/v1/privacy/policies", tag = "privacy", request_body = NewPolicy,
    responses((status = 201, body = PolicyPublished), (status = 401, body = Problem),
        (status = 403, body = Problem), (status = 409, body = Problem),
        (status = 422, body = Problem)),
    security(("bearer" = [])))]
pub async fn publish_policy(
    State(app): State<AppState>,
    caller: Caller,
    IdempotencyKey(key): IdempotencyKey,
    body: JsonBody<NewPolicy>,
) -> ApiResult<(StatusCode, Json<PolicyPublished>)> {
    let by = caller.staff(Role::Admin)?;
    let version = text("version", &body.value.version, 50)?;
    let policy_text = text("text", &body.value.text, 200_000)?;
    let effective_at = chrono::DateTime::parse_from_rfc3339(&body.value.effective_at)
        .map(|t| t.with_timezone(&chrono::Utc))
        .map_err(|_| Invalid::new("effective_at", "effective_at must be an RFC 3339 time"))?;
    let call = Call::new(
        &app,
        Some(&caller),
        key,
        format!("POST /v1/privacy/policies {}", body.digest),
    );
    let published = lightwidget_commands::policies::publish(
        &app.commands,
        call.invocation(),
        by,
        version,
        policy_text,
        effective_at,
    )
    .await?;
    Ok((
        StatusCode::CREATED,
        Json(PolicyPublished {
            version: published.version,
            effective_at: format_time(published.effective_at),
            position: published.position,
        }),
    ))
}

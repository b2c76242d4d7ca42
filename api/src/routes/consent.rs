//! A visitor's consent to analytics (R3): `PUT` states it, `GET` reads it back. `DNT: 1` on
//! a request is a refusal for that request, whatever was stored.

use super::Call;
use crate::extract::{IdempotencyKey, JsonBody};
use crate::problem::{ApiResult, Problem};
use crate::state::AppState;
use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::Json;
use lightwidget_domain::values::Invalid;
use lightwidget_domain::VisitorId;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ConsentBody {
    /// Whether the visitor allows analytics.
    pub analytics: bool,
}

#[derive(Serialize, ToSchema)]
pub struct ConsentStated {
    /// What analytics may do for this visitor now: false under `DNT: 1`.
    pub analytics_allowed: bool,
    /// The privacy policy's version in force, which the statement was made under (R25).
    pub policy_version: String,
    pub position: u64,
}

#[derive(Serialize, ToSchema)]
pub struct ConsentView {
    pub analytics_allowed: bool,
}

/// Whether the request carries `DNT: 1`.
pub fn do_not_track(headers: &HeaderMap) -> bool {
    headers
        .get("dnt")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.trim() == "1")
}

fn visitor(id: &str) -> ApiResult<VisitorId> {
    id.parse().map_err(|_| {
        Invalid::new(
            "visitor_id",
            "visitor_id must be a UUID the visitor's browser made",
        )
        .into()
    })
}

/// States a visitor's consent to analytics, or withdraws it (anyone, R3). Each statement is
/// recorded with the policy version in force; under `DNT: 1` it is recorded as a refusal.
#[utoipa::path(put, path = "/v1/consent/{visitor_id}", tag = "privacy",
    request_body = ConsentBody,
    params(("visitor_id" = String, Path, description = "a UUID the visitor's browser made"),
        ("DNT" = Option<String>, Header, description = "`1`: no consent for this request")),
    responses((status = 200, body = ConsentStated), (status = 400, body = Problem),
        (status = 413, body = Problem), (status = 422, body = Problem),
        (status = 503, body = Problem)))]
pub async fn put_consent(
    State(app): State<AppState>,
    Path(visitor_id): Path<String>,
    headers: HeaderMap,
    IdempotencyKey(key): IdempotencyKey,
    body: JsonBody<ConsentBody>,
) -> ApiResult<Json<ConsentStated>> {
    let visitor_id = visitor(&visitor_id)?;
    let dnt = do_not_track(&headers);
    let call = Call::new(
        &app,
        None,
        key,
        format!("PUT /v1/consent/{visitor_id} {} dnt={dnt}", body.digest),
    );
    let stated = lightwidget_commands::consent::state(
        &app.commands,
        call.invocation(),
        visitor_id,
        body.value.analytics,
        dnt,
    )
    .await?;
    Ok(Json(ConsentStated {
        analytics_allowed: stated.analytics_allowed,
        policy_version: stated.policy_version,
        position: stated.position,
    }))
}

/// Whether analytics may run for this visitor (anyone, R3): false without a statement, after
/// a withdrawal, once the record was erased, and under `DNT: 1`.
#[utoipa::path(get, path = "/v1/consent/{visitor_id}", tag = "privacy",
    params(("visitor_id" = String, Path, description = "a UUID the visitor's browser made"),
        ("DNT" = Option<String>, Header, description = "`1`: no consent for this request")),
    responses((status = 200, body = ConsentView), (status = 422, body = Problem),
        (status = 503, body = Problem)))]
pub async fn get_consent(
    State(app): State<AppState>,
    Path(visitor_id): Path<String>,
    headers: HeaderMap,
) -> ApiResult<Json<ConsentView>> {
    let visitor_id = visitor(&visitor_id)?;
    let consent = lightwidget_commands::consent::current(&app.commands, visitor_id)
        .await
        .map_err(Problem::from)?;
    Ok(Json(ConsentView {
        analytics_allowed: consent.allows_analytics(do_not_track(&headers)),
    }))
}

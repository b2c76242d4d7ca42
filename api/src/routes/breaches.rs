//! The breach register (R16): compliance staff record breaches and the authority's
//! notification; an overdue breach (72 hours past its detection, the authority not told) is
//! flagged.

use super::Call;
use crate::auth::Caller;
use crate::extract::{IdempotencyKey, JsonBody, MinPosition};
use crate::problem::{ApiResult, Problem};
use crate::state::AppState;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use chrono::{DateTime, Utc};
use lightwidget_commands::breaches::{self, BreachReport};
use lightwidget_domain::event::Role;
use lightwidget_domain::values::{text, Invalid};
use lightwidget_domain::{AccountId, BreachId, Category};
use lightwidget_projections::models::breaches::{BreachDoc, REGISTER, VIEW};
use lightwidget_store::format_time;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BreachBody {
    /// 1 to 5,000 characters; names no person.
    #[schema(min_length = 1, max_length = 5000, pattern = "\\S")]
    pub description: String,
    /// RFC 3339: when the breach became known.
    #[schema(format = DateTime)]
    pub detected_at: String,
    /// The categories of personal data concerned (at least one).
    #[schema(min_items = 1)]
    pub categories: Vec<String>,
    #[schema(value_type = Vec<String>)]
    pub affected_accounts: Vec<AccountId>,
}

#[derive(Serialize, ToSchema)]
pub struct BreachCreated {
    #[schema(value_type = String, format = Uuid)]
    pub breach_id: BreachId,
    pub notify_by: String,
    pub position: u64,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NotifiedBody {
    /// 1 to 200 characters.
    #[schema(min_length = 1, max_length = 200, pattern = "\\S")]
    pub authority: String,
    /// RFC 3339.
    #[schema(format = DateTime)]
    pub notified_at: String,
}

#[derive(Serialize, ToSchema)]
pub struct Position {
    pub position: u64,
}

#[derive(Serialize, ToSchema)]
pub struct BreachView {
    pub breach_id: String,
    pub description: String,
    pub detected_at: String,
    pub notify_by: String,
    pub notified_at: Option<String>,
    pub authority: Option<String>,
    pub categories: Vec<String>,
    /// The 72 hours passed without a notification of the authority.
    pub overdue: bool,
}

#[derive(Serialize, ToSchema)]
pub struct BreachList {
    pub breaches: Vec<BreachView>,
}

fn time(field: &str, value: &str) -> Result<DateTime<Utc>, Invalid> {
    DateTime::parse_from_rfc3339(value)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|_| Invalid::new(field, format!("{field} must be an RFC 3339 time")))
}

impl BreachBody {
    fn parse(&self) -> Result<BreachReport, Invalid> {
        let categories = self
            .categories
            .iter()
            .map(|c| c.parse::<Category>())
            .collect::<Result<Vec<_>, _>>()
            .map_err(|_| Invalid::new("categories", "categories names an unknown category"))?;
        if categories.is_empty() {
            return Err(Invalid::new("categories", "categories needs at least one"));
        }
        Ok(BreachReport {
            description: text("description", &self.description, 5000)?,
            detected_at: time("detected_at", &self.detected_at)?,
            categories,
            affected_accounts: self.affected_accounts.clone(),
        })
    }
}

/// Records a breach with the time it became known (compliance, R16).
#[utoipa::path(post, path = "/v1/compliance/breaches", tag = "compliance", request_body = BreachBody,
    responses((status = 201, body = BreachCreated), (status = 401, body = Problem),
        (status = 403, body = Problem), (status = 422, body = Problem)),
    security(("bearer" = [])))]
pub async fn record(
    State(app): State<AppState>,
    caller: Caller,
    IdempotencyKey(key): IdempotencyKey,
    body: JsonBody<BreachBody>,
) -> ApiResult<(StatusCode, Json<BreachCreated>)> {
    let by = caller.staff(Role::Compliance)?;
    let report = body.value.parse()?;
    let call = Call::new(
        &app,
        Some(&caller),
        key,
        format!("POST /v1/compliance/breaches {}", body.digest),
    );
    let recorded = breaches::record(&app.commands, call.invocation(), by, report).await?;
    Ok((
        StatusCode::CREATED,
        Json(BreachCreated {
            breach_id: recorded.breach_id,
            notify_by: format_time(recorded.notify_by),
            position: recorded.position,
        }),
    ))
}

/// Records that the authority was told of a breach (compliance, R16).
#[utoipa::path(post, path = "/v1/compliance/breaches/{id}/notified", tag = "compliance",
    request_body = NotifiedBody,
    params(("id" = String, Path, description = "a UUID")),
    responses((status = 200, body = Position), (status = 401, body = Problem),
        (status = 403, body = Problem), (status = 404, body = Problem),
        (status = 409, body = Problem), (status = 422, body = Problem)),
    security(("bearer" = [])))]
pub async fn notified(
    State(app): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    body: JsonBody<NotifiedBody>,
) -> ApiResult<Json<Position>> {
    let by = caller.staff(Role::Compliance)?;
    let breach_id: BreachId = id.parse().map_err(|_| Problem::not_found("breach"))?;
    let authority = text("authority", &body.value.authority, 200)?;
    let notified_at = time("notified_at", &body.value.notified_at)?;
    let meta = app.meta(Some(&caller));
    let position =
        breaches::notified(&app.commands, &meta, breach_id, by, authority, notified_at).await?;
    Ok(Json(Position { position }))
}

/// Whether a breach is overdue at `now`: its 72 hours passed and the authority was not told.
pub fn overdue(doc: &BreachDoc, now: DateTime<Utc>) -> bool {
    doc.notified_at.is_none()
        && DateTime::parse_from_rfc3339(&doc.notify_by).is_ok_and(|by| by < now)
}

/// The breach register, oldest first, with the overdue ones flagged (compliance, R16).
#[utoipa::path(get, path = "/v1/compliance/breaches", tag = "compliance",
    params(("min_position" = Option<u64>, Query)),
    responses((status = 200, body = BreachList), (status = 401, body = Problem),
        (status = 403, body = Problem), (status = 503, body = Problem)),
    security(("bearer" = [])))]
pub async fn list(
    State(app): State<AppState>,
    caller: Caller,
    MinPosition(min): MinPosition,
) -> ApiResult<Json<BreachList>> {
    caller.staff(Role::Compliance)?;
    app.wait_for(VIEW, min).await?;
    let now = app.clock.now();
    let mut docs = Vec::new();
    for d in super::docs_of(&app, VIEW, Some(REGISTER)).await? {
        docs.push(d.read::<BreachDoc>()?);
    }
    docs.sort_by(|a, b| a.detected_at.cmp(&b.detected_at));
    let breaches = docs
        .into_iter()
        .map(|d| BreachView {
            overdue: overdue(&d, now),
            breach_id: d.breach_id.to_string(),
            description: d.description,
            detected_at: d.detected_at,
            notify_by: d.notify_by,
            notified_at: d.notified_at,
            authority: d.authority,
            categories: d.categories.iter().map(|c| c.as_str().to_owned()).collect(),
        })
        .collect();
    Ok(Json(BreachList { breaches }))
}

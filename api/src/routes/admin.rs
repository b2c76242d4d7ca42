//! Staff tokens and the manual clock.

use super::Call;
use crate::auth::Caller;
use crate::extract::{IdempotencyKey, JsonBody};
use crate::problem::{ApiResult, Problem};
use crate::state::AppState;
use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use lightwidget_commands::{staff, tokens};
use lightwidget_domain::event::{Principal, Role};
use lightwidget_domain::values::StaffName;
use lightwidget_domain::StaffId;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewStaff {
    pub name: String,
    /// `security`, `compliance`, `auditor` or `admin`.
    pub role: String,
}

#[derive(Serialize, ToSchema)]
pub struct StaffCreated {
    #[schema(value_type = String, format = Uuid)]
    pub staff_id: StaffId,
    /// Shown once; only its hash is kept.
    pub token: String,
    pub position: u64,
}

/// Adds a staff member with a role and issues their token (admin).
#[utoipa::path(post, path = "/v1/staff", tag = "staff", request_body = NewStaff,
    responses((status = 201, body = StaffCreated), (status = 401, body = Problem),
        (status = 403, body = Problem), (status = 409, body = Problem),
        (status = 422, body = Problem)),
    security(("bearer" = [])))]
pub async fn add_staff(
    State(app): State<AppState>,
    caller: Caller,
    IdempotencyKey(key): IdempotencyKey,
    body: JsonBody<NewStaff>,
) -> ApiResult<(StatusCode, Json<StaffCreated>)> {
    let admin = caller.staff(Role::Admin)?;
    let name = StaffName::parse(&body.value.name)?;
    let role = match body.value.role.as_str() {
        "security" => Role::Security,
        "compliance" => Role::Compliance,
        "auditor" => Role::Auditor,
        "admin" => Role::Admin,
        _ => {
            return Err(Problem::invalid(
                "role",
                "role must be one of security, compliance, auditor, admin",
            ))
        }
    };
    let call = Call::new(&app, Some(&caller), key, String::new());
    let created = staff::add_staff(&app.commands, call.invocation(), admin, name, role).await?;
    let principal = Principal::Staff {
        staff_id: created.staff_id,
    };
    app.tokens.put(
        tokens::token_hash(&created.token),
        Caller { principal, role },
    );
    Ok((
        StatusCode::CREATED,
        Json(StaffCreated {
            staff_id: created.staff_id,
            token: created.token,
            position: created.position,
        }),
    ))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AdvanceClock {
    /// Seconds to move the manual clock forward (0 to 10 years).
    pub advance_seconds: i64,
}

#[derive(Serialize, ToSchema)]
pub struct Now {
    pub now: String,
}

/// Moves the manual clock forward (admin, `LW_CLOCK=manual` only; 404 otherwise).
#[utoipa::path(post, path = "/v1/admin/clock", tag = "operations", request_body = AdvanceClock,
    responses((status = 200, body = Now), (status = 401, body = Problem),
        (status = 403, body = Problem), (status = 404, body = Problem),
        (status = 422, body = Problem)),
    security(("bearer" = [])))]
pub async fn advance_clock(
    State(app): State<AppState>,
    caller: Caller,
    body: JsonBody<AdvanceClock>,
) -> ApiResult<Json<Now>> {
    caller.staff(Role::Admin)?;
    let clock = app
        .manual_clock
        .as_ref()
        .ok_or_else(|| Problem::not_found("manual clock (the server runs on LW_CLOCK=system)"))?;
    let seconds = body.value.advance_seconds;
    if !(0..=10 * 366 * 86_400).contains(&seconds) {
        return Err(Problem::invalid(
            "advance_seconds",
            "advance_seconds must be 0 to 10 years; time does not run back",
        ));
    }
    let now = clock.advance(chrono::Duration::seconds(seconds));
    Ok(Json(Now {
        now: lightwidget_store::format_time(now),
    }))
}

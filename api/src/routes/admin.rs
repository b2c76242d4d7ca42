//! Staff tokens and the manual clock.

use super::new_id;
use crate::auth::{self, Caller};
use crate::extract::{IdempotencyKey, JsonBody};
use crate::problem::{ApiResult, Problem};
use crate::state::AppState;
use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use lightwidget_domain::event::{Principal, Role, StaffAdded};
use lightwidget_domain::{Category, DomainEvent, Personal, StaffId, Subject};
use lightwidget_store::{AppendRequest, ExpectedVersion, StoreError, StreamWrite};
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
    let name = crate::extract::text_field("name", &body.value.name, 200)?;
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
    // Under an Idempotency-Key the staff id is derived from it: a repeat finds the stream
    // taken and is told so (the token, shown once, cannot be shown again).
    let staff_id = StaffId(new_id(&caller, key.as_deref(), "staff"));
    let meta = app.meta(Some(&caller));
    let now = app.clock.now();
    let added: DomainEvent = StaffAdded {
        staff_id,
        name: Personal::new(Subject::staff(staff_id), Category::Profile, name),
        role,
        added_by: Some(admin),
        added_at: now,
    }
    .into();
    let token = auth::generate_token();
    let principal = Principal::Staff { staff_id };
    let request = AppendRequest {
        writes: vec![
            StreamWrite::of(
                staff_id.stream(),
                ExpectedVersion::NoStream,
                &[added],
                &meta,
            ),
            auth::issue(&token, principal, role, now, &meta),
        ],
        shred: vec![],
    };
    match app.store.append(request).await {
        Ok(r) => {
            app.tokens
                .put(auth::token_hash(&token), Caller { principal, role });
            Ok((
                StatusCode::CREATED,
                Json(StaffCreated {
                    staff_id,
                    token,
                    position: r.last_position,
                }),
            ))
        }
        Err(StoreError::Conflict { .. }) => Err(Problem::conflict(
            "this Idempotency-Key already added a staff member; its token was shown then",
        )
        .field("Idempotency-Key")),
        Err(e) => Err(e.into()),
    }
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

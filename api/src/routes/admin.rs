//! Staff tokens and the manual clock.

use super::Call;
use crate::auth::Caller;
use crate::extract::{IdempotencyKey, JsonBody, MinPosition};
use crate::problem::{ApiResult, Problem};
use crate::state::AppState;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use lightwidget_commands::staff;
use lightwidget_domain::event::Role;
use lightwidget_domain::values::StaffName;
use lightwidget_domain::StaffId;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewStaff {
    #[schema(min_length = 1, max_length = 200, pattern = "\\S")]
    pub name: String,
    /// `security`, `compliance`, `auditor` or `admin`.
    #[schema(pattern = "^(security|compliance|auditor|admin)$")]
    pub role: String,
}

#[derive(Serialize, ToSchema)]
pub struct StaffCreated {
    #[schema(value_type = String, format = Uuid)]
    pub staff_id: StaffId,
    /// Shown once; only its hash is kept.
    pub token: String,
    /// When the token stops working (`LW_TOKEN_TTL_HOURS` after now).
    pub expires_at: String,
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
    Ok((
        StatusCode::CREATED,
        Json(StaffCreated {
            staff_id: created.staff_id,
            token: created.token,
            expires_at: lightwidget_store::format_time(app.clock.now() + app.token_ttl),
            position: created.position,
        }),
    ))
}

/// A staff member as the admin lists them: never a token.
#[derive(Serialize, ToSchema)]
pub struct StaffEntry {
    #[schema(value_type = String, format = Uuid)]
    pub staff_id: StaffId,
    /// `None` once erased.
    pub name: Option<String>,
    pub role: String,
    pub created_at: String,
    /// When they were removed (their tokens answer 401 from then on).
    pub revoked_at: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub struct StaffList {
    pub staff: Vec<StaffEntry>,
}

/// Every staff member, removed ones included, oldest first (admin).
#[utoipa::path(get, path = "/v1/staff", tag = "staff",
    params(("min_position" = Option<u64>, Query, description = "wait until the read model reached this position")),
    responses((status = 200, body = StaffList), (status = 400, body = Problem),
        (status = 401, body = Problem), (status = 403, body = Problem),
        (status = 503, body = Problem)),
    security(("bearer" = [])))]
pub async fn list_staff(
    State(app): State<AppState>,
    caller: Caller,
    MinPosition(min): MinPosition,
) -> ApiResult<Json<StaffList>> {
    use lightwidget_projections::models::staff::{StaffDoc, OWNER, VIEW};
    caller.staff(Role::Admin)?;
    app.wait_for(VIEW, min).await?;
    let mut staff = Vec::new();
    for d in super::docs_of(&app, VIEW, Some(OWNER)).await? {
        let d = d.read::<StaffDoc>()?;
        staff.push(StaffEntry {
            staff_id: d.staff_id,
            name: d.name,
            role: d.role.as_str().to_owned(),
            created_at: d.created_at,
            revoked_at: d.revoked_at,
        });
    }
    staff.sort_by(|a, b| (&a.created_at, a.staff_id).cmp(&(&b.created_at, b.staff_id)));
    Ok(Json(StaffList { staff }))
}

/// Removes a staff member (admin): every token of theirs answers 401 from then on. The
/// installation's admin and the caller themself are not removed (409).
#[utoipa::path(delete, path = "/v1/staff/{staff_id}", tag = "staff",
    params(("staff_id" = String, Path, description = "a UUID")),
    responses((status = 200, body = crate::routes::accounts::Position),
        (status = 401, body = Problem), (status = 403, body = Problem),
        (status = 404, body = Problem), (status = 409, body = Problem)),
    security(("bearer" = [])))]
pub async fn remove_staff(
    State(app): State<AppState>,
    caller: Caller,
    Path(staff_id): Path<String>,
) -> ApiResult<Json<crate::routes::accounts::Position>> {
    let admin = caller.staff(Role::Admin)?;
    let staff_id = staff_id
        .parse::<uuid::Uuid>()
        .map(StaffId)
        .map_err(|_| Problem::not_found("staff member"))?;
    let meta = app.meta(Some(&caller));
    let position = staff::remove_staff(&app.commands, &meta, admin, staff_id).await?;
    app.tokens.revoked(crate::auth::Revocation::Staff(staff_id));
    Ok(Json(crate::routes::accounts::Position { position }))
}

#[derive(Serialize, ToSchema)]
pub struct NewAdminToken {
    /// Shown once; only its hash is kept. Every token the caller held before answers 401.
    pub token: String,
    pub position: u64,
}

/// Rotates the calling admin's token: a new one, shown once; the old ones answer 401 from
/// then on. For the installation's admin this replaces `LW_ADMIN_TOKEN` without a restart.
#[utoipa::path(post, path = "/v1/admin/token", tag = "staff",
    responses((status = 201, body = NewAdminToken), (status = 401, body = Problem),
        (status = 403, body = Problem)),
    security(("bearer" = [])))]
pub async fn rotate_admin_token(
    State(app): State<AppState>,
    caller: Caller,
) -> ApiResult<(StatusCode, Json<NewAdminToken>)> {
    let admin = caller.staff(Role::Admin)?;
    let meta = app.meta(Some(&caller));
    let rotated = lightwidget_commands::tokens::rotate(&app.commands, &meta, admin).await?;
    app.tokens.revoked(crate::auth::Revocation::Staff(admin));
    Ok((
        StatusCode::CREATED,
        Json(NewAdminToken {
            token: rotated.token,
            position: rotated.position,
        }),
    ))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AdvanceClock {
    /// Seconds to move the manual clock forward (0 to 10 years).
    #[schema(minimum = 0, maximum = 316224000)]
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

/// A message in the outbox as the admin sees it: no personal data.
#[derive(Serialize, ToSchema)]
pub struct OutboxItem {
    #[schema(value_type = String, format = Uuid)]
    pub message_id: lightwidget_domain::MessageId,
    /// The registry's kind: `email`, `ticketing`, `cdn`, `analytics`.
    pub processor: String,
    /// `ticket`, `comment_notification`, `order_confirmation`, `invoice`, `cdn_purge`.
    pub kind: String,
    /// `pending`, `in_flight`, `sent`, `dead` or `cancelled`.
    pub state: String,
    pub attempts: u32,
    pub next_attempt_at: Option<String>,
    /// A status or a transport failure; never data.
    pub last_error: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub struct OutboxItems {
    pub items: Vec<OutboxItem>,
}

const OUTBOX_STATES: [&str; 5] = ["pending", "in_flight", "sent", "dead", "cancelled"];

/// The outbox's messages (admin), by state and processor: what waits, what went, what was
/// given up (`dead`) or cancelled because its data was erased first. No personal data.
#[utoipa::path(get, path = "/v1/admin/outbox", tag = "operations",
    params(("state" = Option<String>, Query,
            description = "pending, in_flight, sent, dead or cancelled"),
        ("processor" = Option<String>, Query, description = "a processor's kind"),
        ("min_position" = Option<u64>, Query)),
    responses((status = 200, body = OutboxItems), (status = 400, body = Problem),
        (status = 401, body = Problem), (status = 403, body = Problem),
        (status = 503, body = Problem)),
    security(("bearer" = [])))]
pub async fn outbox(
    State(app): State<AppState>,
    caller: Caller,
    crate::extract::MinPosition(min): crate::extract::MinPosition,
    uri: axum::http::Uri,
) -> ApiResult<Json<OutboxItems>> {
    use lightwidget_projections::models::outbox::{MessageDoc, VIEW};
    caller.staff(Role::Admin)?;
    let mut query = lightwidget_store::ViewQuery::default();
    for (k, v) in crate::extract::url_pairs(uri.query().unwrap_or_default()) {
        match k.as_ref() {
            "state" if OUTBOX_STATES.contains(&v.as_ref()) => query.state = Some(v),
            "state" => {
                return Err(Problem::bad_parameter(
                    "state",
                    "state must be pending, in_flight, sent, dead or cancelled",
                ))
            }
            "processor" if app.processors.processors().iter().any(|p| p.kind == v) => {
                query.owner = Some(v)
            }
            "processor" => {
                return Err(Problem::bad_parameter(
                    "processor",
                    "processor must be a kind of GET /v1/privacy/processors",
                ))
            }
            "min_position" => {}
            other => {
                return Err(Problem::bad_parameter(
                    other,
                    "unknown query parameter (state, processor, min_position)",
                ))
            }
        }
    }
    app.wait_for(VIEW, min).await?;
    let docs = app.views.query_all(VIEW, query).await?;
    let items = docs
        .iter()
        .map(|d| {
            let m: MessageDoc = d.read()?;
            Ok(OutboxItem {
                message_id: m.message_id,
                processor: m.processor,
                kind: m.kind,
                state: m.state,
                attempts: m.attempts,
                next_attempt_at: m.next_attempt_at,
                last_error: m.last_error,
            })
        })
        .collect::<ApiResult<_>>()?;
    Ok(Json(OutboxItems { items }))
}

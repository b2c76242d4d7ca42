//! Staff actions on accounts: blocking by security staff (R17, R24) and legal holds by
//! compliance staff (R21).

use super::Call;
use crate::auth::Caller;
use crate::extract::{IdempotencyKey, JsonBody};
use crate::problem::{ApiResult, Problem};
use crate::routes::accounts::Position;
use crate::state::AppState;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use lightwidget_commands::{accounts as usecases, staff};
use lightwidget_domain::event::Role;
use lightwidget_domain::values::text;
use lightwidget_domain::{AccountId, DomainEvent, HoldId};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BlockBody {
    /// Why the account is blocked (kept as security data of the account).
    #[schema(min_length = 1, max_length = 2000, pattern = "\\S")]
    pub reason: String,
}

#[derive(Serialize, ToSchema)]
pub struct Blocked {
    /// The account's data is kept at least until then (R24).
    pub hold_until: String,
    pub position: u64,
}

/// An existing account, or 404.
/// An account id in a path: anything else names no account.
fn account_id(id: &str) -> ApiResult<AccountId> {
    id.parse().map_err(|_| Problem::not_found("account"))
}

#[utoipa::path(post, path = "/v1/security/accounts/{id}/block", tag = "staff",
    request_body = BlockBody,
    params(("id" = String, Path, description = "a UUID")),
    responses((status = 200, body = Blocked), (status = 401, body = Problem),
        (status = 403, body = Problem), (status = 404, body = Problem),
        (status = 409, body = Problem), (status = 422, body = Problem)),
    security(("bearer" = [])))]
pub async fn block(
    State(app): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    IdempotencyKey(key): IdempotencyKey,
    body: JsonBody<BlockBody>,
) -> ApiResult<Json<Blocked>> {
    let by = caller.staff(Role::Security)?;
    let reason = text("reason", &body.value.reason, 2000)?;
    let account_id = account_id(&id)?;
    let call = Call::new(
        &app,
        Some(&caller),
        key,
        format!(
            "POST /v1/security/accounts/{account_id}/block {}",
            body.digest
        ),
    );
    let blocked = usecases::block(&app.commands, call.invocation(), account_id, by, reason).await?;
    Ok(Json(Blocked {
        hold_until: lightwidget_store::format_time(blocked.hold_until),
        position: blocked.position,
    }))
}

#[utoipa::path(post, path = "/v1/security/accounts/{id}/unblock", tag = "staff",
    params(("id" = String, Path, description = "a UUID")),
    responses((status = 200, body = Position), (status = 401, body = Problem),
        (status = 403, body = Problem), (status = 404, body = Problem),
        (status = 409, body = Problem)),
    security(("bearer" = [])))]
pub async fn unblock(
    State(app): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<Json<Position>> {
    let by = caller.staff(Role::Security)?;
    let account_id = account_id(&id)?;
    let meta = app.meta(Some(&caller));
    let position = usecases::unblock(&app.commands, &meta, account_id, by).await?;
    Ok(Json(Position { position }))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct HoldBody {
    #[schema(value_type = String, format = Uuid)]
    pub account_id: AccountId,
    #[schema(min_length = 1, max_length = 2000, pattern = "\\S")]
    pub reason: String,
    #[schema(min_length = 1, max_length = 200, pattern = "\\S")]
    pub case_ref: String,
}

#[derive(Serialize, ToSchema)]
pub struct HoldPlaced {
    #[schema(value_type = String, format = Uuid)]
    pub hold_id: HoldId,
    pub position: u64,
}

/// The account a hold was placed on, from the retention view's `hold:<id>` document (read
/// once the view has caught up with the log).
async fn account_of_hold(app: &AppState, hold_id: HoldId) -> ApiResult<AccountId> {
    use lightwidget_retention::projection::{hold_key, HoldDoc, VIEW};
    let head = app.store.head().await?.position;
    app.wait_for(VIEW, Some(head)).await?;
    let doc = app
        .views
        .get_many(VIEW, &[hold_key(hold_id)])
        .await?
        .into_iter()
        .next()
        .ok_or_else(|| Problem::not_found("hold"))?;
    Ok(doc.read::<HoldDoc>()?.account_id)
}

#[utoipa::path(post, path = "/v1/compliance/holds", tag = "staff", request_body = HoldBody,
    responses((status = 201, body = HoldPlaced), (status = 401, body = Problem),
        (status = 403, body = Problem), (status = 404, body = Problem),
        (status = 422, body = Problem)),
    security(("bearer" = [])))]
pub async fn place_hold(
    State(app): State<AppState>,
    caller: Caller,
    IdempotencyKey(key): IdempotencyKey,
    body: JsonBody<HoldBody>,
) -> ApiResult<(StatusCode, Json<HoldPlaced>)> {
    let by = caller.staff(Role::Compliance)?;
    let HoldBody {
        account_id,
        reason,
        case_ref,
    } = body.value;
    let reason = text("reason", &reason, 2000)?;
    let case_ref = text("case_ref", &case_ref, 200)?;
    let call = Call::new(
        &app,
        Some(&caller),
        key,
        format!("POST /v1/compliance/holds {}", body.digest),
    );
    let placed = usecases::place_hold(
        &app.commands,
        call.invocation(),
        account_id,
        by,
        reason,
        case_ref,
    )
    .await?;
    Ok((
        StatusCode::CREATED,
        Json(HoldPlaced {
            hold_id: placed.hold_id,
            position: placed.position,
        }),
    ))
}

#[utoipa::path(delete, path = "/v1/compliance/holds/{hold_id}", tag = "staff",
    params(("hold_id" = String, Path, description = "a UUID")),
    responses((status = 200, body = Position), (status = 401, body = Problem),
        (status = 403, body = Problem), (status = 404, body = Problem),
        (status = 409, body = Problem)),
    security(("bearer" = [])))]
pub async fn release_hold(
    State(app): State<AppState>,
    caller: Caller,
    Path(hold_id): Path<String>,
) -> ApiResult<Json<Position>> {
    let by = caller.staff(Role::Compliance)?;
    let hold_id: HoldId = hold_id.parse().map_err(|_| Problem::not_found("hold"))?;
    let account_id = account_of_hold(&app, hold_id).await?;
    let meta = app.meta(Some(&caller));
    let position = usecases::release_hold(&app.commands, &meta, account_id, hold_id, by).await?;
    Ok(Json(Position { position }))
}

/// One category of one subject that a legal hold keeps past its date (R21), with the data.
#[derive(Serialize, ToSchema)]
pub struct HeldItem {
    pub subject_id: String,
    pub category: String,
    /// When its rule made it due.
    pub due_at: Option<String>,
    pub archived_at: String,
    pub data: Vec<crate::routes::audit::Datum>,
}

#[derive(Serialize, ToSchema)]
pub struct HeldData {
    #[schema(value_type = String, format = Uuid)]
    pub hold_id: HoldId,
    #[schema(value_type = String, format = Uuid)]
    pub account_id: AccountId,
    pub items: Vec<HeldItem>,
    /// The position of the access record this read appended.
    pub position: u64,
}

/// The data kept past its date only because of legal holds, this one in force (compliance,
/// R21): archived, read by nobody else. The read is recorded as an event naming the hold and
/// the reader before anything is answered.
#[utoipa::path(get, path = "/v1/compliance/holds/{hold_id}/data", tag = "staff",
    params(("hold_id" = String, Path, description = "a UUID")),
    responses((status = 200, body = HeldData), (status = 401, body = Problem),
        (status = 403, body = Problem), (status = 404, body = Problem),
        (status = 503, body = Problem)),
    security(("bearer" = [])))]
pub async fn held_data(
    State(app): State<AppState>,
    caller: Caller,
    Path(hold_id): Path<String>,
) -> ApiResult<Json<HeldData>> {
    use lightwidget_retention::projection::{is_item, ItemDoc, VIEW};
    let by = caller.staff(Role::Compliance)?;
    let hold_id: HoldId = hold_id.parse().map_err(|_| Problem::not_found("hold"))?;
    let account_id = account_of_hold(&app, hold_id).await?;
    let docs = super::docs_of(&app, VIEW, Some(&account_id.to_string())).await?;
    let mut archived = Vec::new();
    for doc in docs.iter().filter(|d| is_item(d)) {
        let item: ItemDoc = doc.read()?;
        if let (Some(a), None) = (&item.facts.archived, &item.facts.purged) {
            archived.push((item.due_at.clone(), a.at, item.subject_id, item.category));
        }
    }
    let wanted: Vec<staff::HeldItem> = archived
        .iter()
        .map(|(_, _, subject, category)| staff::HeldItem {
            subject: subject.clone(),
            category: *category,
        })
        .collect();
    let meta = app.meta(Some(&caller));
    let (position, data) = staff::read_held_data(
        &app.commands,
        lightwidget_commands::Invocation::once(&meta),
        account_id,
        hold_id,
        by,
        &wanted,
    )
    .await?;
    let items = archived
        .into_iter()
        .zip(data)
        .map(
            |((due_at, archived_at, subject, category), data)| HeldItem {
                subject_id: subject.as_str().to_owned(),
                category: category.as_str().to_owned(),
                due_at,
                archived_at: lightwidget_store::format_time(archived_at),
                data: data
                    .into_iter()
                    .map(|d| crate::routes::audit::Datum {
                        subject_id: subject.as_str().to_owned(),
                        event_type: d.event_type,
                        recorded_at: lightwidget_store::format_time(d.recorded_at),
                        value: d.value,
                    })
                    .collect(),
            },
        )
        .collect();
    Ok(Json(HeldData {
        hold_id,
        account_id,
        items,
        position,
    }))
}

#[derive(Serialize, ToSchema)]
pub struct SecurityView {
    pub account_id: String,
    /// Null once erased.
    #[schema(value_type = Option<Object>)]
    pub profile: Option<serde_json::Value>,
    /// Every sign-in (R22 login data), oldest first: times only, never the tokens.
    pub logins: Vec<String>,
    /// Blocks with their stated reasons (null once erased).
    #[schema(value_type = Vec<Object>)]
    pub blocks: Vec<serde_json::Value>,
    /// The position of the access record this read appended.
    pub position: u64,
}

/// Reads an account's profile and login history (security), case by case: `reason` is
/// required, and the read is recorded as an event before anything is answered (R22).
#[utoipa::path(get, path = "/v1/security/accounts/{id}", tag = "staff",
    params(("id" = String, Path, description = "a UUID"), ("reason" = String, Query)),
    responses((status = 200, body = SecurityView), (status = 400, body = Problem),
        (status = 401, body = Problem), (status = 403, body = Problem),
        (status = 404, body = Problem)),
    security(("bearer" = [])))]
pub async fn read_account(
    State(app): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    uri: axum::http::Uri,
) -> ApiResult<Json<SecurityView>> {
    let by = caller.staff(Role::Security)?;
    let mut reason = None;
    for (k, v) in crate::extract::url_pairs(uri.query().unwrap_or_default()) {
        match k.as_str() {
            "reason" => reason = Some(v.trim().to_owned()),
            // The account's stream itself is read: it is always current.
            "min_position" => {}
            other => {
                return Err(Problem::bad_parameter(
                    other,
                    "unknown query parameter (reason)",
                ))
            }
        }
    }
    let reason = reason
        .filter(|r| !r.is_empty() && r.chars().count() <= 500)
        .ok_or_else(|| {
            Problem::bad_parameter("reason", "reason is required: 1 to 500 characters")
        })?;
    let account_id = account_id(&id)?;
    // Recorded first: no read goes unrecorded.
    let call = Call::new(&app, Some(&caller), None, String::new());
    let read =
        staff::read_account(&app.commands, call.invocation(), account_id, by, reason).await?;
    let mut view = SecurityView {
        account_id: account_id.to_string(),
        profile: None,
        logins: vec![],
        blocks: vec![],
        position: read.position,
    };
    for e in read.events {
        match e.to_domain() {
            Ok(DomainEvent::AccountRegistered(r)) => {
                view.profile = r.profile.value().and_then(|p| serde_json::to_value(p).ok());
            }
            Ok(DomainEvent::AccountSignedIn(s)) => view
                .logins
                .push(lightwidget_store::format_time(s.signed_in_at)),
            Ok(DomainEvent::AccountBlocked(b)) => view.blocks.push(serde_json::json!({
                "blocked_at": lightwidget_store::format_time(b.blocked_at),
                "hold_until": lightwidget_store::format_time(b.hold_until),
                "reason": b.reason.value(),
            })),
            _ => {}
        }
    }
    Ok(Json(view))
}

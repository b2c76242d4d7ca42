//! Sign-in (R5) and the owner's account: read, delete into quarantine (R20), restore.

use super::{docs_of, widget_summary};
use crate::auth::Caller;
use crate::extract::{JsonBody, MinPosition};
use crate::problem::{ApiResult, Problem};
use crate::state::AppState;
use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use lightwidget_commands::accounts as usecases;
use lightwidget_domain::AccountId;
use lightwidget_projections::models::{accounts, breaches, widgets};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SignInRequest {
    /// The OAuth code Instagram redirected with (`demo:<username>` in demo mode).
    pub code: String,
}

#[derive(Serialize, ToSchema)]
pub struct SignInResponse {
    pub token: String,
    #[schema(value_type = String, format = Uuid)]
    pub account_id: AccountId,
    /// When the token stops working (`LW_TOKEN_TTL_HOURS` after now; a 401 from then on).
    pub expires_at: String,
    pub position: u64,
}

/// Signs in with an Instagram OAuth code; the first sign-in registers the account (R5).
#[utoipa::path(post, path = "/v1/auth/instagram", tag = "accounts",
    request_body = SignInRequest,
    responses(
        (status = 200, body = SignInResponse),
        (status = 403, body = Problem, description = "the account is blocked"),
        (status = 422, body = Problem, description = "Instagram refused the code"),
        (status = 502, body = Problem, description = "Instagram is unavailable"),
    ))]
pub async fn sign_in(
    State(app): State<AppState>,
    body: JsonBody<SignInRequest>,
) -> ApiResult<Json<SignInResponse>> {
    let signed_in = usecases::sign_in(&app.commands, &body.value.code).await?;
    Ok(Json(SignInResponse {
        token: signed_in.token,
        account_id: signed_in.account_id,
        expires_at: lightwidget_store::format_time(app.clock.now() + app.token_ttl),
        position: signed_in.position,
    }))
}

/// Signs out: the calling token is revoked, and answers 401 from then on (on every process
/// serving the same store, once it has read the revocation; at once with `min_position`).
#[utoipa::path(delete, path = "/v1/auth/session", tag = "accounts",
    responses((status = 204, description = "the token is revoked"),
        (status = 401, body = Problem)),
    security(("bearer" = [])))]
pub async fn sign_out(State(app): State<AppState>, caller: Caller) -> ApiResult<StatusCode> {
    let meta = app.meta(Some(&caller));
    lightwidget_commands::tokens::sign_out(&app.commands, &meta, &caller.token_hash).await?;
    app.tokens
        .revoked(crate::auth::Revocation::Token(&caller.token_hash));
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Serialize, ToSchema)]
pub struct Me {
    #[schema(value_type = String, format = Uuid)]
    pub account_id: AccountId,
    pub username: Option<String>,
    /// `active`, `blocked`, `quarantined` or `purged`.
    pub status: String,
    pub quarantine_until: Option<String>,
    pub registered_at: Option<String>,
    pub widgets: Vec<super::widgets::WidgetView>,
    /// Personal data breaches that concern this account (R16).
    pub breaches: Vec<BreachNotice>,
}

/// A breach as the owner of an affected account reads it.
#[derive(Serialize, ToSchema)]
pub struct BreachNotice {
    pub breach_id: String,
    pub description: String,
    pub detected_at: String,
}

/// The caller's account and widgets.
#[utoipa::path(get, path = "/v1/me", tag = "accounts",
    params(("min_position" = Option<u64>, Query, description = "wait until the read model reached this position")),
    responses((status = 200, body = Me), (status = 401, body = Problem), (status = 403, body = Problem)),
    security(("bearer" = [])))]
pub async fn me(
    State(app): State<AppState>,
    caller: Caller,
    MinPosition(min): MinPosition,
) -> ApiResult<Json<Me>> {
    let account_id = caller.owner()?;
    app.wait_for(accounts::VIEW, min).await?;
    app.wait_for(widgets::VIEW, min).await?;
    let key = [account_id.to_string()];
    let mut doc = app.views.get_many(accounts::VIEW, &key).await?.pop();
    if doc.is_none() {
        // The token proves the account exists: the read model has not seen it yet (a
        // sign-in a moment ago). Wait for it to catch up with the log.
        let head = app.store.head().await?.position;
        app.wait_for(accounts::VIEW, Some(head)).await?;
        app.wait_for(widgets::VIEW, Some(head)).await?;
        doc = app.views.get_many(accounts::VIEW, &key).await?.pop();
    }
    let doc = doc.ok_or_else(|| Problem::not_found("account"))?;
    let widgets = docs_of(&app, widgets::VIEW, Some(&account_id.to_string()))
        .await?
        .iter()
        .map(widget_summary)
        .collect::<ApiResult<_>>()?;
    let d: accounts::AccountDoc = doc.read()?;
    app.wait_for(breaches::VIEW, min).await?;
    let mut notices = Vec::new();
    for b in docs_of(&app, breaches::VIEW, Some(&account_id.to_string())).await? {
        let b: breaches::AffectedDoc = b.read()?;
        notices.push(BreachNotice {
            breach_id: b.breach_id.to_string(),
            description: b.description,
            detected_at: b.detected_at,
        });
    }
    Ok(Json(Me {
        account_id,
        username: d.username,
        status: d.status.as_str().to_owned(),
        quarantine_until: d.quarantine_until,
        registered_at: d.registered_at,
        widgets,
        breaches: notices,
    }))
}

#[derive(Serialize, ToSchema)]
pub struct Position {
    pub position: u64,
}

/// The account's deletion: its quarantine, and where its erasure receipt will be.
#[derive(Serialize, ToSchema)]
pub struct AccountDeleted {
    pub quarantine_until: String,
    pub position: u64,
    /// `/v1/log/receipts/{token}`: the signed proof that the log holds the account's
    /// erasure, once it happened and a checkpoint covers it. Shown once.
    pub erasure_receipt_url: String,
}

/// Deletes the caller's account: it and all its widgets enter the 90-day quarantine (R20).
/// The answer holds the URL of the erasure receipt (the token in it is shown only here).
#[utoipa::path(delete, path = "/v1/me", tag = "accounts",
    responses((status = 202, body = AccountDeleted), (status = 401, body = Problem),
        (status = 403, body = Problem), (status = 409, body = Problem)),
    security(("bearer" = [])))]
pub async fn delete_me(
    State(app): State<AppState>,
    caller: Caller,
) -> ApiResult<(StatusCode, Json<AccountDeleted>)> {
    let account_id = caller.owner()?;
    let meta = app.meta(Some(&caller));
    let done = usecases::delete_account(&app.commands, &meta, account_id).await?;
    Ok((
        StatusCode::ACCEPTED,
        Json(AccountDeleted {
            quarantine_until: lightwidget_store::format_time(done.quarantined.until),
            position: done.quarantined.position,
            erasure_receipt_url: format!("/v1/log/receipts/{}", done.receipt_token),
        }),
    ))
}

/// Restores the caller's account during its quarantine, with the widgets that went with it.
#[utoipa::path(post, path = "/v1/me/restore", tag = "accounts",
    responses((status = 200, body = Position), (status = 401, body = Problem),
        (status = 403, body = Problem), (status = 409, body = Problem)),
    security(("bearer" = [])))]
pub async fn restore_me(State(app): State<AppState>, caller: Caller) -> ApiResult<Json<Position>> {
    let account_id = caller.owner()?;
    let meta = app.meta(Some(&caller));
    let position = usecases::restore_account(&app.commands, &meta, account_id).await?;
    Ok(Json(Position { position }))
}

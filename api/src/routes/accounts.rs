//! Sign-in (R5) and the owner's account: read, delete into quarantine (R20), restore.

use super::{created_at, docs_of, load_or_500, widget_summary};
use crate::auth::{self, Caller};
use crate::extract::{JsonBody, MinPosition};
use crate::instagram::InstagramError;
use crate::problem::{ApiResult, Problem};
use crate::state::AppState;
use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use lightwidget_domain::account::{Account, AccountCommand, AccountError, OwnerStatus};
use lightwidget_domain::event::{DeletionCause, InstagramIdentityLinked, Principal, Role};
use lightwidget_domain::widget::{Widget, WidgetCommand, WidgetStatus};
use lightwidget_domain::{
    AccountId, Aggregate, Category, DomainEvent, Personal, Subject, WidgetId,
};
use lightwidget_projections::models::{accounts, widgets};
use lightwidget_store::{AppendRequest, ExpectedVersion, StoreError, StreamWrite};
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
    pub position: u64,
}

pub fn account_problem(e: AccountError) -> Problem {
    match e {
        AccountError::NotFound => Problem::not_found("account"),
        AccountError::Blocked => Problem::forbidden("the account is blocked"),
        AccountError::Purged => Problem::gone("the account was purged"),
        AccountError::AlreadyQuarantined => {
            Problem::conflict("the account is already in quarantine")
        }
        AccountError::NotQuarantined => Problem::conflict("the account is not in quarantine"),
        AccountError::QuarantineOver(_) => Problem::conflict("the quarantine is over"),
        AccountError::QuarantineNotOver(_) => Problem::conflict("the quarantine is not over"),
        AccountError::SecurityHold(_) => Problem::conflict("the account is under a security hold"),
        AccountError::LegalHold => Problem::conflict("the account is under a legal hold"),
        AccountError::AlreadyBlocked => Problem::conflict("the account is already blocked"),
        AccountError::NotBlocked => Problem::conflict("the account is not blocked"),
    }
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
    let code = body.value.code;
    if code.is_empty() || code.len() > 2048 {
        return Err(Problem::invalid(
            "code",
            "the code must be 1 to 2048 characters",
        ));
    }
    let user = match app.instagram.exchange(&code).await {
        Ok(u) => u,
        Err(InstagramError::Refused) => {
            return Err(Problem::invalid("code", "Instagram refused the code"))
        }
        Err(InstagramError::Unavailable(why)) => {
            tracing::warn!(reason = %why, "Instagram sign-in failed");
            return Err(Problem::new(
                StatusCode::BAD_GATEWAY,
                "instagram-unavailable",
                "Instagram could not be reached; try again",
            ));
        }
    };
    let identity = app.identity(&user.profile.instagram_user_id);
    let link_stream = format!("instagram-{identity}");
    let meta = app.meta(None);
    for _ in 0..lightwidget_commands::DEFAULT_MAX_ATTEMPTS {
        // The identity's links, latest last: a purged account's user who comes back gets a
        // new account, linked after the old one.
        let links = app.store.read_stream_raw(&link_stream, 0, 1000).await?;
        let link_version = links.last().map(|e| e.version).unwrap_or(0);
        let latest = match links.last().map(|e| e.decode_sealed()) {
            Some(Ok(DomainEvent::InstagramIdentityLinked(l))) => Some(l.account_id),
            None => None,
            Some(_) => {
                tracing::error!("an identity stream holds another event");
                return Err(Problem::internal());
            }
        };
        let mut account_id = latest.unwrap_or_else(AccountId::new);
        let mut account = load_or_500::<Account>(&app, &account_id.stream()).await?;
        let new = match latest {
            None => true,
            Some(_) if account.state.purged => {
                account_id = AccountId::new();
                account = load_or_500::<Account>(&app, &account_id.stream()).await?;
                true
            }
            Some(_) => false,
        };
        let subject = Subject::account(account_id);
        let events = account
            .state
            .decide(
                AccountCommand::SignIn {
                    account_id,
                    profile: Personal::new(
                        subject.clone(),
                        Category::Profile,
                        user.profile.clone(),
                    ),
                    access_token: Personal::new(
                        subject,
                        Category::Profile,
                        user.access_token.clone(),
                    ),
                },
                app.clock.now(),
            )
            .map_err(account_problem)?;
        let token = auth::generate_token();
        let principal = Principal::Owner { account_id };
        let mut writes = vec![StreamWrite::of(
            account_id.stream(),
            ExpectedVersion::Exact(account.version),
            &events,
            &meta,
        )];
        if new {
            let link: DomainEvent = InstagramIdentityLinked {
                identity: identity.clone(),
                account_id,
                linked_at: app.clock.now(),
            }
            .into();
            writes.push(StreamWrite::of(
                link_stream.clone(),
                ExpectedVersion::Exact(link_version),
                &[link],
                &meta,
            ));
        }
        writes.push(auth::issue(
            &token,
            principal,
            Role::Owner,
            app.clock.now(),
            &meta,
        ));
        match app
            .store
            .append(AppendRequest {
                writes,
                shred: vec![],
            })
            .await
        {
            Ok(r) => {
                app.tokens.put(
                    auth::token_hash(&token),
                    Caller {
                        principal,
                        role: Role::Owner,
                    },
                );
                return Ok(Json(SignInResponse {
                    token,
                    account_id,
                    position: r.last_position,
                }));
            }
            // A first sign-in of the same user, or another sign-in, got there first.
            Err(StoreError::Conflict { .. }) => continue,
            Err(e) => return Err(e.into()),
        }
    }
    Err(Problem::conflict("the account kept changing; try again"))
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
        .collect();
    let d = &doc.doc;
    Ok(Json(Me {
        account_id,
        username: d["username"].as_str().map(str::to_owned),
        status: d["status"].as_str().unwrap_or("active").to_owned(),
        quarantine_until: d["quarantine_until"].as_str().map(str::to_owned),
        registered_at: created_at(d, "registered_at"),
        widgets,
    }))
}

#[derive(Serialize, ToSchema)]
pub struct Quarantined {
    pub quarantine_until: String,
    pub position: u64,
}

#[derive(Serialize, ToSchema)]
pub struct Position {
    pub position: u64,
}

/// The widgets of an account with their stream versions, from the log.
async fn account_widgets(
    app: &AppState,
    account_id: AccountId,
) -> ApiResult<Vec<(WidgetId, lightwidget_commands::Loaded<Widget>)>> {
    // The widgets read model names them; wait until it has seen everything so far.
    let head = app.store.head().await?.position;
    app.wait_for(widgets::VIEW, Some(head)).await?;
    let mut out = Vec::new();
    for doc in docs_of(app, widgets::VIEW, Some(&account_id.to_string())).await? {
        let Ok(id) = doc.key.parse::<WidgetId>() else {
            continue;
        };
        out.push((id, load_or_500::<Widget>(app, &id.stream()).await?));
    }
    Ok(out)
}

/// Runs an account command together with what it means for each of the account's widgets
/// (`widget_command`: `None` leaves a widget alone), in one append with every stream's
/// expected version, deciding again when another writer got there first. Answers the
/// account's new events and the position of the last.
async fn with_widgets(
    app: &AppState,
    caller: &Caller,
    command: AccountCommand,
    widget_command: impl Fn(&Widget) -> Option<WidgetCommand>,
) -> ApiResult<(Vec<DomainEvent>, u64)> {
    let account_id = caller.owner()?;
    let meta = app.meta(Some(caller));
    let write = |stream: String, version: u64, events: &[DomainEvent]| {
        StreamWrite::of(stream, ExpectedVersion::Exact(version), events, &meta)
    };
    for _ in 0..lightwidget_commands::DEFAULT_MAX_ATTEMPTS {
        let account = load_or_500::<Account>(app, &account_id.stream()).await?;
        let now = app.clock.now();
        let events = account
            .state
            .decide(command.clone(), now)
            .map_err(account_problem)?;
        let mut writes = vec![write(account_id.stream(), account.version, &events)];
        for (id, w) in account_widgets(app, account_id).await? {
            let Some(c) = widget_command(&w.state) else {
                continue;
            };
            if let Ok(widget_events) = w.state.decide(c, now) {
                writes.push(write(id.stream(), w.version, &widget_events));
            }
        }
        match app
            .store
            .append(AppendRequest {
                writes,
                shred: vec![],
            })
            .await
        {
            Ok(r) => return Ok((events, r.last_position)),
            Err(StoreError::Conflict { .. }) => continue,
            Err(e) => return Err(e.into()),
        }
    }
    Err(Problem::conflict("the account kept changing; try again"))
}

/// Deletes the caller's account: it and all its widgets enter the 90-day quarantine (R20).
#[utoipa::path(delete, path = "/v1/me", tag = "accounts",
    responses((status = 202, body = Quarantined), (status = 401, body = Problem),
        (status = 403, body = Problem), (status = 409, body = Problem)),
    security(("bearer" = [])))]
pub async fn delete_me(
    State(app): State<AppState>,
    caller: Caller,
) -> ApiResult<(StatusCode, Json<Quarantined>)> {
    let (events, position) = with_widgets(&app, &caller, AccountCommand::RequestDeletion, |w| {
        (w.status == WidgetStatus::Active).then_some(WidgetCommand::RequestDeletion {
            cause: DeletionCause::AccountDeletion,
            // The owner's status before this deletion: active, or the account was refused.
            owner: OwnerStatus::Active,
        })
    })
    .await?;
    let until = events
        .iter()
        .find_map(|e| match e {
            DomainEvent::AccountDeletionRequested(e) => Some(e.quarantine_until),
            _ => None,
        })
        .ok_or_else(Problem::internal)?;
    Ok((
        StatusCode::ACCEPTED,
        Json(Quarantined {
            quarantine_until: lightwidget_store::format_time(until),
            position,
        }),
    ))
}

/// Restores the caller's account during its quarantine, with the widgets that went with it.
#[utoipa::path(post, path = "/v1/me/restore", tag = "accounts",
    responses((status = 200, body = Position), (status = 401, body = Problem),
        (status = 403, body = Problem), (status = 409, body = Problem)),
    security(("bearer" = [])))]
pub async fn restore_me(State(app): State<AppState>, caller: Caller) -> ApiResult<Json<Position>> {
    let (_, position) = with_widgets(&app, &caller, AccountCommand::Restore, |w| {
        matches!(
            w.status,
            WidgetStatus::Quarantined {
                cause: DeletionCause::AccountDeletion,
                ..
            }
        )
        .then_some(WidgetCommand::Restore {
            owner: OwnerStatus::Active,
        })
    })
    .await?;
    Ok(Json(Position { position }))
}

//! Previews (R8), widgets (R9, R18), the public widget page with its views and clicks (R1,
//! R2), and statistics.

use super::{docs_of, load_or_500, new_id, run, widget_summary};
use crate::auth::Caller;
use crate::extract::{IdempotencyKey, IfMatch, JsonBody, MinPosition};
use crate::problem::{ApiResult, Problem};
use crate::state::{command_problem, AppState};
use axum::extract::{ConnectInfo, Path, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use axum::Json;
use lightwidget_domain::account::{Account, OwnerStatus};
use lightwidget_domain::event::{
    AccessLog, DeletionCause, Layout, WidgetClicked, WidgetSettings, WidgetViewed,
};
use lightwidget_domain::preview::{Preview, PreviewCommand};
use lightwidget_domain::widget::{Widget, WidgetCommand, WidgetError};
use lightwidget_domain::{
    AccountId, Aggregate, Category, DomainEvent, Personal, PreviewId, Subject, WidgetId,
};
use lightwidget_projections::models::{statistics, widgets};
use lightwidget_store::{format_time, ExpectedVersion};
use serde::{Deserialize, Serialize};
use std::net::SocketAddr;
use std::sync::Arc;
use utoipa::ToSchema;

pub fn widget_problem(e: WidgetError) -> Problem {
    match e {
        WidgetError::NotFound => Problem::not_found("widget"),
        WidgetError::AccountBlocked => Problem::forbidden("the account is blocked"),
        WidgetError::AccountQuarantined => Problem::forbidden("the account is in quarantine"),
        WidgetError::Purged => Problem::conflict("the widget was purged"),
        other => Problem::conflict(other.to_string()),
    }
}

/// The settings of a widget or preview as clients send them.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SettingsBody {
    pub title: String,
    /// `grid`, `slider`, `masonry` or `list`.
    pub layout: String,
    /// 1 to 12.
    pub columns: i64,
}

fn layout(s: &str) -> Result<Layout, Problem> {
    serde_json::from_value(serde_json::Value::String(s.to_owned())).map_err(|_| {
        Problem::invalid(
            "layout",
            "layout must be one of grid, slider, masonry, list",
        )
    })
}

fn title(s: &str) -> Result<String, Problem> {
    let t = s.trim();
    if t.is_empty() || t.chars().count() > 200 {
        return Err(Problem::invalid(
            "title",
            "title must be 1 to 200 characters",
        ));
    }
    Ok(t.to_owned())
}

fn columns(n: i64) -> Result<u8, Problem> {
    if !(1..=12).contains(&n) {
        return Err(Problem::invalid("columns", "columns must be 1 to 12"));
    }
    Ok(n as u8)
}

impl SettingsBody {
    fn validate(&self) -> Result<WidgetSettings, Problem> {
        Ok(WidgetSettings {
            title: title(&self.title)?,
            layout: layout(&self.layout)?,
            columns: columns(self.columns)?,
        })
    }
}

async fn owner_status(app: &AppState, account: AccountId) -> ApiResult<OwnerStatus> {
    Ok(owner_status_read(app, account).await?.0)
}

/// The owner's status read from the account stream, with the version it was read at (and
/// kept in the process's [`crate::state::OwnerCache`]).
async fn owner_status_read(app: &AppState, account: AccountId) -> ApiResult<(OwnerStatus, u64)> {
    let loaded = load_or_500::<Account>(app, &account.stream()).await?;
    let status = loaded.state.status();
    app.owners.put(account, status, loaded.version);
    Ok((status, loaded.version))
}

/// Creates a stream with a fresh id, on a decision that reads the owner's status. With an
/// Idempotency-Key it goes the keyed way ([`run`]: the status read, the stream loaded).
/// Without one nothing is read that the append checks anyway: the stream is taken to be new
/// (the append expects it so), and the status comes from the process's cache with the
/// account stream fenced at the version it was read at. When the account moved on since
/// (the fence refused the append), or the command was refused on a cached status (a refusal
/// appends nothing for a fence to check) and the account has moved on, the status is read
/// again and the command decided again, once. A new stream that exists after all is loaded
/// and decided again like any conflict.
#[allow(clippy::too_many_arguments)]
async fn create_as_owner<A>(
    app: &AppState,
    caller: &Caller,
    account: AccountId,
    stream: &str,
    command: impl Fn(OwnerStatus) -> A::Command,
    key: Option<&str>,
    fingerprint: &str,
    rejected: fn(A::Error) -> Problem,
) -> ApiResult<lightwidget_commands::Outcome>
where
    A: Aggregate,
    A::Command: Clone,
    A::Error: std::fmt::Display,
{
    if key.is_some() {
        let owner = owner_status(app, account).await?;
        return run::<A>(app, caller, stream, command(owner), key, fingerprint)
            .await
            .map_err(|e| command_problem(e, rejected));
    }
    use lightwidget_commands::CommandError;
    let account_stream = account.stream();
    let cached = app.owners.get(account);
    let mut from_cache = cached.is_some();
    let (mut owner, mut version) = match cached {
        Some(cached) => cached,
        None => owner_status_read(app, account).await?,
    };
    let meta = app.meta(Some(caller));
    let mut attempt = 0;
    loop {
        attempt += 1;
        let outcome = lightwidget_commands::execute_guessed::<A>(
            &*app.store,
            &*app.clock,
            stream,
            command(owner),
            &meta,
            Some(lightwidget_commands::Loaded::new_stream()),
            &[lightwidget_store::StreamWrite::fence(
                &account_stream,
                version,
            )],
        )
        .await;
        // What the status may have got wrong: an append the fence refused, or a refusal
        // decided on a cached status (a refusal appends nothing, so no fence checks it).
        let rejected_on_cache = from_cache && matches!(outcome, Err(CommandError::Rejected(_)));
        let fence_moved = matches!(
            &outcome,
            Err(CommandError::Conflict { stream: fenced, .. }) if *fenced == account_stream
        );
        if attempt == 1 && (rejected_on_cache || fence_moved) {
            let (fresh, at) = owner_status_read(app, account).await?;
            if !(rejected_on_cache && at == version) {
                (owner, version, from_cache) = (fresh, at, false);
                continue;
            }
        }
        return outcome.map_err(|e| command_problem(e, rejected));
    }
}

#[derive(Serialize, ToSchema)]
pub struct PreviewCreatedBody {
    #[schema(value_type = String, format = Uuid)]
    pub preview_id: PreviewId,
    pub url: String,
    pub expires_at: String,
    pub position: u64,
}

/// Creates a preview that lives 15 minutes (R8).
#[utoipa::path(post, path = "/v1/previews", tag = "widgets", request_body = SettingsBody,
    responses((status = 201, body = PreviewCreatedBody), (status = 401, body = Problem),
        (status = 403, body = Problem), (status = 422, body = Problem)),
    security(("bearer" = [])))]
pub async fn create_preview(
    State(app): State<AppState>,
    caller: Caller,
    IdempotencyKey(key): IdempotencyKey,
    body: JsonBody<SettingsBody>,
) -> ApiResult<(StatusCode, Json<PreviewCreatedBody>)> {
    let account_id = caller.owner()?;
    let settings = body.value.validate()?;
    let preview_id = PreviewId(new_id(&caller, key.as_deref(), "preview"));
    let outcome = create_as_owner::<Preview>(
        &app,
        &caller,
        account_id,
        &preview_id.stream(),
        |owner| PreviewCommand::Create {
            preview_id,
            account_id,
            settings: Personal::new(
                Subject::preview(preview_id),
                Category::Preview,
                settings.clone(),
            ),
            owner,
        },
        key.as_deref(),
        &format!("POST /v1/previews {}", body.digest),
        widget_problem,
    )
    .await?;
    let created = outcome.events.iter().find_map(|e| match e {
        DomainEvent::PreviewCreated(p) => Some(p.expires_at),
        _ => None,
    });
    // A replayed Idempotency-Key appended nothing: the expiry is the stored preview's.
    let expires_at = match created {
        Some(at) => at,
        None => load_or_500::<Preview>(&app, &preview_id.stream())
            .await?
            .state
            .expires_at
            .ok_or_else(Problem::internal)?,
    };
    Ok((
        StatusCode::CREATED,
        Json(PreviewCreatedBody {
            preview_id,
            url: format!("/v1/previews/{preview_id}"),
            expires_at: format_time(expires_at),
            position: outcome.position,
        }),
    ))
}

/// The preview's HTML while it lives; 410 once its 15 minutes are over (R8).
#[utoipa::path(get, path = "/v1/previews/{id}", tag = "widgets",
    params(("id" = String, Path, description = "a UUID")),
    responses((status = 200, content_type = "text/html", body = String),
        (status = 404, body = Problem), (status = 410, body = Problem)))]
pub async fn get_preview(
    State(app): State<AppState>,
    Path(id): Path<String>,
) -> ApiResult<Response> {
    let id: PreviewId = id.parse().map_err(|_| Problem::not_found("preview"))?;
    let events = app.store.read_stream(&id.stream(), 0, 1).await?;
    let Some(Ok(DomainEvent::PreviewCreated(p))) = events.first().map(|e| e.to_domain()) else {
        return Err(Problem::not_found("preview"));
    };
    if app.clock.now() >= p.expires_at {
        return Err(Problem::gone("the preview has expired"));
    }
    let settings = p
        .settings
        .value()
        .ok_or_else(|| Problem::gone("the preview has expired"))?;
    Ok(Html(widgets::render_html(WidgetId(id.0), settings)).into_response())
}

#[derive(Serialize, ToSchema)]
pub struct WidgetCreatedBody {
    #[schema(value_type = String, format = Uuid)]
    pub widget_id: WidgetId,
    pub version: u64,
    pub position: u64,
}

/// Creates a widget.
#[utoipa::path(post, path = "/v1/widgets", tag = "widgets", request_body = SettingsBody,
    responses((status = 201, body = WidgetCreatedBody), (status = 401, body = Problem),
        (status = 403, body = Problem), (status = 422, body = Problem)),
    security(("bearer" = [])))]
pub async fn create_widget(
    State(app): State<AppState>,
    caller: Caller,
    IdempotencyKey(key): IdempotencyKey,
    body: JsonBody<SettingsBody>,
) -> ApiResult<(StatusCode, Json<WidgetCreatedBody>)> {
    let account_id = caller.owner()?;
    let settings = body.value.validate()?;
    let widget_id = WidgetId(new_id(&caller, key.as_deref(), "widget"));
    let outcome = create_as_owner::<Widget>(
        &app,
        &caller,
        account_id,
        &widget_id.stream(),
        |owner| WidgetCommand::Create {
            widget_id,
            account_id,
            settings: Personal::new(
                Subject::widget(widget_id),
                Category::WidgetContent,
                settings.clone(),
            ),
            owner,
        },
        key.as_deref(),
        &format!("POST /v1/widgets {}", body.digest),
        widget_problem,
    )
    .await?;
    Ok((
        StatusCode::CREATED,
        Json(WidgetCreatedBody {
            widget_id,
            version: outcome.version,
            position: outcome.position,
        }),
    ))
}

/// A widget as the owner sees it.
#[derive(Serialize, ToSchema)]
pub struct WidgetView {
    pub widget_id: String,
    pub title: Option<String>,
    pub layout: Option<String>,
    pub columns: Option<u8>,
    /// `free` or `pro`.
    pub plan: String,
    /// `active`, `quarantined` or `purged`.
    pub status: String,
    pub version: u64,
    pub quarantine_until: Option<String>,
    pub created_at: Option<String>,
    pub upgraded_at: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub struct WidgetList {
    pub widgets: Vec<WidgetView>,
}

/// The caller's widgets.
#[utoipa::path(get, path = "/v1/widgets", tag = "widgets",
    params(("min_position" = Option<u64>, Query)),
    responses((status = 200, body = WidgetList), (status = 401, body = Problem),
        (status = 403, body = Problem), (status = 503, body = Problem)),
    security(("bearer" = [])))]
pub async fn list_widgets(
    State(app): State<AppState>,
    caller: Caller,
    MinPosition(min): MinPosition,
) -> ApiResult<Json<WidgetList>> {
    let account_id = caller.owner()?;
    app.wait_for(widgets::VIEW, min).await?;
    let docs = docs_of(&app, widgets::VIEW, Some(&account_id.to_string())).await?;
    Ok(Json(WidgetList {
        widgets: docs.iter().map(widget_summary).collect(),
    }))
}

/// The caller's widget document, or 404 (also for another owner's widget: its existence
/// must not leak).
async fn own_widget_doc(
    app: &AppState,
    caller: &Caller,
    id: &str,
    min: Option<u64>,
) -> ApiResult<Arc<lightwidget_store::ViewDoc>> {
    let account_id = caller.owner()?;
    let id: WidgetId = id.parse().map_err(|_| Problem::not_found("widget"))?;
    let owner = account_id.to_string();
    let key = id.to_string();
    // Through the widget documents held in memory (as the public page reads them): never
    // older than what their follower has read, and read from the view once it has read
    // `min`.
    let find = |doc: Option<Arc<lightwidget_store::ViewDoc>>| {
        doc.filter(|d| d.owner.as_deref() == Some(owner.as_str()))
    };
    if let Some(doc) = find(app.widget_docs.get(&key, min).await?) {
        return Ok(doc);
    }
    // Not in the read model: if the log says the caller created it a moment ago, wait for
    // the read model to catch up rather than answer 404.
    let loaded = load_or_500::<Widget>(app, &id.stream()).await?;
    if loaded.state.account_id != Some(account_id) {
        return Err(Problem::not_found("widget"));
    }
    app.wait_for(widgets::VIEW, Some(loaded.position)).await?;
    find(app.widget_docs.get(&key, Some(loaded.position)).await?)
        .ok_or_else(|| Problem::not_found("widget"))
}

/// One of the caller's widgets.
#[utoipa::path(get, path = "/v1/widgets/{id}", tag = "widgets",
    params(("id" = String, Path, description = "a UUID"), ("min_position" = Option<u64>, Query)),
    responses((status = 200, body = WidgetView), (status = 401, body = Problem),
        (status = 403, body = Problem), (status = 404, body = Problem)),
    security(("bearer" = [])))]
pub async fn get_widget(
    State(app): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    MinPosition(min): MinPosition,
) -> ApiResult<Response> {
    caller.owner()?;
    app.wait_for(widgets::VIEW, min).await?;
    let doc = own_widget_doc(&app, &caller, &id, min).await?;
    let view = widget_summary(&doc);
    let etag = format!("\"{}\"", view.version);
    let mut response = Json(view).into_response();
    if let Ok(v) = header::HeaderValue::from_str(&etag) {
        response.headers_mut().insert(header::ETAG, v);
    }
    Ok(response)
}

/// The caller's widget aggregate and the owner's status, or 404 (also for another owner's
/// widget).
pub(crate) async fn own_widget(
    app: &AppState,
    caller: &Caller,
    id: &str,
) -> ApiResult<(WidgetId, lightwidget_commands::Loaded<Widget>, OwnerStatus)> {
    let account_id = caller.owner()?;
    let id: WidgetId = id.parse().map_err(|_| Problem::not_found("widget"))?;
    let loaded = load_or_500::<Widget>(app, &id.stream()).await?;
    if loaded.state.account_id != Some(account_id) {
        return Err(Problem::not_found("widget"));
    }
    let owner = owner_status(app, account_id).await?;
    Ok((id, loaded, owner))
}

/// The settings a widget has now, from its stream.
async fn current_settings(app: &AppState, id: WidgetId) -> ApiResult<Option<WidgetSettings>> {
    let mut settings = None;
    let mut from = 0;
    loop {
        let page = app.store.read_stream(&id.stream(), from, 500).await?;
        for e in &page {
            match e.to_domain() {
                Ok(DomainEvent::WidgetCreated(w)) => settings = w.settings.into_value(),
                Ok(DomainEvent::WidgetUpdated(w)) => settings = w.settings.into_value(),
                _ => {}
            }
        }
        match page.last() {
            Some(last) if page.len() == 500 => from = last.version,
            _ => return Ok(settings),
        }
    }
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PatchBody {
    pub title: Option<String>,
    pub layout: Option<String>,
    pub columns: Option<i64>,
}

#[derive(Serialize, ToSchema)]
pub struct VersionBody {
    pub version: u64,
    pub position: u64,
}

/// Changes a widget's settings; `If-Match` must name its current version (409 if stale).
#[utoipa::path(patch, path = "/v1/widgets/{id}", tag = "widgets", request_body = PatchBody,
    params(("id" = String, Path, description = "a UUID"), ("If-Match" = String, Header, description = "the widget's version")),
    responses((status = 200, body = VersionBody), (status = 401, body = Problem),
        (status = 404, body = Problem), (status = 409, body = Problem),
        (status = 422, body = Problem), (status = 428, body = Problem)),
    security(("bearer" = [])))]
pub async fn patch_widget(
    State(app): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    IfMatch(if_match): IfMatch,
    body: JsonBody<PatchBody>,
) -> ApiResult<Json<VersionBody>> {
    let (id, loaded, owner) = own_widget(&app, &caller, &id).await?;
    let expected = if_match.ok_or_else(|| {
        Problem::new(
            StatusCode::PRECONDITION_REQUIRED,
            "if-match-required",
            "PATCH needs If-Match with the widget's version",
        )
        .field("If-Match")
    })?;
    let current = current_settings(&app, id)
        .await?
        .ok_or_else(|| widget_problem(WidgetError::Purged))?;
    let patch = body.value;
    let settings = WidgetSettings {
        title: match &patch.title {
            Some(t) => title(t)?,
            None => current.title,
        },
        layout: match &patch.layout {
            Some(l) => layout(l)?,
            None => current.layout,
        },
        columns: match patch.columns {
            Some(c) => columns(c)?,
            None => current.columns,
        },
    };
    if loaded.version != expected {
        return Err(stale(loaded.version));
    }
    let events = loaded
        .state
        .decide(
            WidgetCommand::Update {
                settings: Personal::new(Subject::widget(id), Category::WidgetContent, settings),
                owner,
            },
            app.clock.now(),
        )
        .map_err(widget_problem)?;
    let meta = app.meta(Some(&caller));
    let request = lightwidget_store::AppendRequest {
        writes: vec![lightwidget_store::StreamWrite::of(
            id.stream(),
            ExpectedVersion::Exact(expected),
            &events,
            &meta,
        )],
        shred: vec![],
    };
    match app.store.append(request).await {
        Ok(r) => Ok(Json(VersionBody {
            version: r.versions.first().map(|v| v.1).unwrap_or(expected + 1),
            position: r.last_position,
        })),
        Err(lightwidget_store::StoreError::Conflict { actual, .. }) => Err(stale(actual)),
        Err(e) => Err(e.into()),
    }
}

fn stale(current: u64) -> Problem {
    Problem::conflict(format!("the widget changed: its version is now {current}")).field("If-Match")
}

#[derive(Serialize, ToSchema)]
pub struct QuarantineBody {
    pub quarantine_until: String,
    pub position: u64,
}

/// Deletes a widget into its 90-day quarantine (R18).
#[utoipa::path(delete, path = "/v1/widgets/{id}", tag = "widgets",
    params(("id" = String, Path, description = "a UUID"), ("If-Match" = Option<String>, Header)),
    responses((status = 202, body = QuarantineBody), (status = 401, body = Problem),
        (status = 404, body = Problem), (status = 409, body = Problem)),
    security(("bearer" = [])))]
pub async fn delete_widget(
    State(app): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    IfMatch(if_match): IfMatch,
) -> ApiResult<(StatusCode, Json<QuarantineBody>)> {
    let (id, loaded, owner) = own_widget(&app, &caller, &id).await?;
    if let Some(expected) = if_match {
        if loaded.version != expected {
            return Err(stale(loaded.version));
        }
    }
    let outcome = run::<Widget>(
        &app,
        &caller,
        &id.stream(),
        WidgetCommand::RequestDeletion {
            cause: DeletionCause::Owner,
            owner,
        },
        None,
        "",
    )
    .await
    .map_err(|e| command_problem(e, widget_problem))?;
    let until = outcome
        .events
        .iter()
        .find_map(|e| match e {
            DomainEvent::WidgetDeletionRequested(d) => Some(d.quarantine_until),
            _ => None,
        })
        .ok_or_else(Problem::internal)?;
    Ok((
        StatusCode::ACCEPTED,
        Json(QuarantineBody {
            quarantine_until: format_time(until),
            position: outcome.position,
        }),
    ))
}

/// Restores a widget during its quarantine; 409 otherwise.
#[utoipa::path(post, path = "/v1/widgets/{id}/restore", tag = "widgets",
    params(("id" = String, Path, description = "a UUID")),
    responses((status = 200, body = VersionBody), (status = 401, body = Problem),
        (status = 404, body = Problem), (status = 409, body = Problem)),
    security(("bearer" = [])))]
pub async fn restore_widget(
    State(app): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    IdempotencyKey(key): IdempotencyKey,
) -> ApiResult<Json<VersionBody>> {
    let (id, _, owner) = own_widget(&app, &caller, &id).await?;
    let outcome = run::<Widget>(
        &app,
        &caller,
        &id.stream(),
        WidgetCommand::Restore { owner },
        key.as_deref(),
        &format!("POST /v1/widgets/{id}/restore"),
    )
    .await
    .map_err(|e| command_problem(e, widget_problem))?;
    Ok(Json(VersionBody {
        version: outcome.version,
        position: outcome.position,
    }))
}

/// The access-log fields of a request (R1).
fn access_log(headers: &HeaderMap, peer: SocketAddr) -> AccessLog {
    let text = |name: header::HeaderName| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(|s| s.chars().take(512).collect::<String>())
    };
    let user_agent = text(header::USER_AGENT);
    let (browser, os) = user_agent
        .as_deref()
        .map(classify_agent)
        .unwrap_or((None, None));
    AccessLog {
        ip: peer.ip().to_string(),
        user_agent,
        browser,
        os,
        device_id: headers
            .get("x-lw-device-id")
            .and_then(|v| v.to_str().ok())
            .map(|s| s.chars().take(128).collect()),
        referrer: text(header::REFERER),
    }
}

/// Browser and operating system named in a User-Agent, by the usual markers.
fn classify_agent(ua: &str) -> (Option<String>, Option<String>) {
    let browser = [
        ("Edg/", "Edge"),
        ("OPR/", "Opera"),
        ("Firefox/", "Firefox"),
        ("Chrome/", "Chrome"),
        ("Safari/", "Safari"),
    ]
    .iter()
    .find(|(m, _)| ua.contains(m))
    .map(|(_, n)| (*n).to_owned());
    let os = [
        ("Android", "Android"),
        ("iPhone", "iOS"),
        ("iPad", "iOS"),
        ("Windows", "Windows"),
        ("Mac OS X", "macOS"),
        ("Linux", "Linux"),
    ]
    .iter()
    .find(|(m, _)| ua.contains(m))
    .map(|(_, n)| (*n).to_owned());
    (browser, os)
}

/// An active widget's document, for the public routes; 404 otherwise. Read through the
/// in-memory cache of widget documents (current as of `min`, when given).
async fn public_widget(
    app: &AppState,
    id: &str,
    min: Option<u64>,
) -> ApiResult<(WidgetId, Arc<lightwidget_store::ViewDoc>)> {
    let id: WidgetId = id.parse().map_err(|_| Problem::not_found("widget"))?;
    let doc = app
        .widget_docs
        .get(&id.to_string(), min)
        .await?
        .filter(|d| d.doc["status"] == "active")
        .ok_or_else(|| Problem::not_found("widget"))?;
    Ok((id, doc))
}

/// The public widget page (R9); records a view (R1, R2). 404 while quarantined or purged.
#[utoipa::path(get, path = "/w/{id}", tag = "public",
    params(("id" = String, Path, description = "a UUID"), ("min_position" = Option<u64>, Query)),
    responses((status = 200, content_type = "text/html", body = String),
        (status = 404, body = Problem)))]
pub async fn public_page(
    State(app): State<AppState>,
    Path(id): Path<String>,
    MinPosition(min): MinPosition,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
) -> ApiResult<Response> {
    app.wait_for(widgets::VIEW, min).await?;
    let (id, doc) = public_widget(&app, &id, min).await?;
    let html = doc.doc["html"]
        .as_str()
        .ok_or_else(|| Problem::not_found("widget"))?
        .to_owned();
    crate::media::refresh_if_stale(&app, id, &doc);
    let now = app.clock.now();
    let event: DomainEvent = WidgetViewed {
        widget_id: id,
        access: Personal::new(
            Subject::access_log(id, now),
            Category::AccessLog,
            access_log(&headers, peer),
        ),
        viewed_at: now,
    }
    .into();
    app.hits.record(event).await?;
    Ok(Html(html).into_response())
}

/// Records a click in a widget (R1, R2).
#[utoipa::path(post, path = "/w/{id}/click", tag = "public",
    params(("id" = String, Path, description = "a UUID")),
    responses((status = 204), (status = 404, body = Problem)))]
pub async fn click(
    State(app): State<AppState>,
    Path(id): Path<String>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
) -> ApiResult<StatusCode> {
    let (id, _) = public_widget(&app, &id, None).await?;
    let now = app.clock.now();
    let event: DomainEvent = WidgetClicked {
        widget_id: id,
        access: Personal::new(
            Subject::access_log(id, now),
            Category::AccessLog,
            access_log(&headers, peer),
        ),
        clicked_at: now,
    }
    .into();
    app.hits.record(event).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Serialize, ToSchema)]
pub struct DayCount {
    pub date: String,
    pub views: u64,
    pub clicks: u64,
}

#[derive(Serialize, ToSchema)]
pub struct Stats {
    pub views: u64,
    pub clicks: u64,
    pub by_day: Vec<DayCount>,
}

/// Views and clicks of one of the caller's widgets, in total and per day (R2).
#[utoipa::path(get, path = "/v1/widgets/{id}/stats", tag = "widgets",
    params(("id" = String, Path, description = "a UUID"), ("min_position" = Option<u64>, Query)),
    responses((status = 200, body = Stats), (status = 401, body = Problem),
        (status = 404, body = Problem)),
    security(("bearer" = [])))]
pub async fn stats(
    State(app): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    MinPosition(min): MinPosition,
) -> ApiResult<Json<Stats>> {
    caller.owner()?;
    app.wait_for(statistics::VIEW, min).await?;
    let doc = own_widget_doc(&app, &caller, &id, None).await?;
    let months = docs_of(&app, statistics::VIEW, Some(&doc.key)).await?;
    let s = statistics::summarize(&months);
    let count = |v: &serde_json::Value| v.as_u64().unwrap_or(0);
    Ok(Json(Stats {
        views: count(&s["views"]),
        clicks: count(&s["clicks"]),
        by_day: s["by_day"]
            .as_array()
            .map(|days| {
                days.iter()
                    .map(|d| DayCount {
                        date: d["date"].as_str().unwrap_or_default().to_owned(),
                        views: count(&d["views"]),
                        clicks: count(&d["clicks"]),
                    })
                    .collect()
            })
            .unwrap_or_default(),
    }))
}

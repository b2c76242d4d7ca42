//! Previews (R8), widgets (R9, R18), the public widget page with its views and clicks (R1,
//! R2), and statistics.

use super::{docs_of, load, widget_summary, Call};
use crate::auth::Caller;
use crate::client_ip::ClientIp;
use crate::extract::{IdempotencyKey, IfMatch, JsonBody, MinPosition};
use crate::problem::{ApiResult, Problem};
use crate::state::AppState;
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use axum::Json;
use lightwidget_commands::{visitors, widgets as usecases};
use lightwidget_domain::event::{AccessLog, WidgetSettings};
use lightwidget_domain::values::SettingsPatch;
use lightwidget_domain::widget::Widget;
use lightwidget_domain::{DomainEvent, PreviewId, WidgetId};
use lightwidget_projections::models::{statistics, widgets};
use lightwidget_store::format_time;
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use utoipa::ToSchema;

/// The settings of a widget or preview as clients send them.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SettingsBody {
    #[schema(min_length = 1, max_length = 200, pattern = "\\S")]
    pub title: String,
    /// `grid`, `slider`, `masonry` or `list`.
    #[schema(pattern = "^(grid|slider|masonry|list)$")]
    pub layout: String,
    /// 1 to 12.
    #[schema(minimum = 1, maximum = 12)]
    pub columns: i64,
}

impl SettingsBody {
    fn parse(&self) -> ApiResult<WidgetSettings> {
        Ok(WidgetSettings::parse(
            &self.title,
            &self.layout,
            self.columns,
        )?)
    }
}

/// A widget id in a path: anything else names no widget.
fn widget_id(id: &str) -> ApiResult<WidgetId> {
    id.parse().map_err(|_| Problem::not_found("widget"))
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
    let settings = body.value.parse()?;
    let call = Call::new(
        &app,
        Some(&caller),
        key,
        format!("POST /v1/previews {}", body.digest),
    );
    let created =
        usecases::create_preview(&app.commands, call.invocation(), account_id, settings).await?;
    let preview_id = created.preview_id;
    Ok((
        StatusCode::CREATED,
        Json(PreviewCreatedBody {
            preview_id,
            url: format!("/v1/previews/{preview_id}"),
            expires_at: format_time(created.expires_at),
            position: created.position,
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
    Ok(page_response(
        &app,
        "no-store",
        widgets::render_html(WidgetId(id.0), settings),
    ))
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
    let settings = body.value.parse()?;
    let call = Call::new(
        &app,
        Some(&caller),
        key,
        format!("POST /v1/widgets {}", body.digest),
    );
    let created =
        usecases::create_widget(&app.commands, call.invocation(), account_id, settings).await?;
    Ok((
        StatusCode::CREATED,
        Json(WidgetCreatedBody {
            widget_id: created.widget_id,
            version: created.version,
            position: created.position,
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
        widgets: docs.iter().map(widget_summary).collect::<ApiResult<_>>()?,
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
    let loaded = load::<Widget>(app, &id.stream()).await?;
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
    let view = widget_summary(&doc)?;
    let etag = format!("\"{}\"", view.version);
    let mut response = Json(view).into_response();
    if let Ok(v) = header::HeaderValue::from_str(&etag) {
        response.headers_mut().insert(header::ETAG, v);
    }
    Ok(response)
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PatchBody {
    #[schema(min_length = 1, max_length = 200, pattern = "\\S")]
    pub title: Option<String>,
    #[schema(pattern = "^(grid|slider|masonry|list)$")]
    pub layout: Option<String>,
    #[schema(minimum = 1, maximum = 12)]
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
    let account_id = caller.owner()?;
    let expected = if_match.ok_or_else(|| {
        Problem::new(
            StatusCode::PRECONDITION_REQUIRED,
            "if-match-required",
            "PATCH needs If-Match with the widget's version",
        )
        .field("If-Match")
    })?;
    let patch = &body.value;
    let patch = SettingsPatch::parse(
        patch.title.as_deref(),
        patch.layout.as_deref(),
        patch.columns,
    )?;
    let meta = app.meta(Some(&caller));
    let id = widget_id(&id)?;
    let done =
        usecases::patch_widget(&app.commands, &meta, account_id, id, expected, patch).await?;
    Ok(Json(VersionBody {
        version: done.version,
        position: done.position,
    }))
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
    let account_id = caller.owner()?;
    let meta = app.meta(Some(&caller));
    let id = widget_id(&id)?;
    let done = usecases::delete_widget(&app.commands, &meta, account_id, id, if_match).await?;
    Ok((
        StatusCode::ACCEPTED,
        Json(QuarantineBody {
            quarantine_until: format_time(done.until),
            position: done.position,
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
    let account_id = caller.owner()?;
    let id = widget_id(&id)?;
    let call = Call::new(
        &app,
        Some(&caller),
        key,
        format!("POST /v1/widgets/{id}/restore"),
    );
    let done = usecases::restore_widget(&app.commands, call.invocation(), account_id, id).await?;
    Ok(Json(VersionBody {
        version: done.version,
        position: done.position,
    }))
}

/// The access-log fields of a request (R1).
fn access_log(headers: &HeaderMap, client: std::net::IpAddr) -> AccessLog {
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
        ip: client.to_string(),
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
        .ok_or_else(|| Problem::not_found("widget"))?;
    Ok((id, doc))
}

/// The page of an active widget, read from its document once per request (the public
/// page's hot path); 404 while quarantined or purged.
fn active_page(doc: &lightwidget_store::ViewDoc) -> ApiResult<widgets::PageDoc<'_>> {
    let page: widgets::PageDoc = doc.read()?;
    if page.status != widgets::WidgetState::Active {
        return Err(Problem::not_found("widget"));
    }
    Ok(page)
}

/// The `visitor` query parameter: the id the visitor's browser made (R3).
fn visitor_of(uri: &axum::http::Uri) -> ApiResult<Option<lightwidget_domain::VisitorId>> {
    for (k, v) in crate::extract::url_pairs(uri.query().unwrap_or_default()) {
        if k == "visitor" {
            return v.parse().map(Some).map_err(|_| {
                Problem::bad_parameter("visitor", "visitor must be the UUID the browser made")
            });
        }
    }
    Ok(None)
}

/// The public widget page (R9); records a view (R1, R2). 404 while quarantined or purged.
/// With `?visitor=<id>` of a visitor who consented to analytics (and no `DNT: 1`), the view
/// also goes to analytics, its IP anonymized (R3).
#[utoipa::path(get, path = "/w/{id}", tag = "public",
    params(("id" = String, Path, description = "a UUID"), ("min_position" = Option<u64>, Query),
        ("visitor" = Option<String>, Query, description = "the UUID the visitor's browser made"),
        ("DNT" = Option<String>, Header, description = "`1`: no analytics for this view")),
    responses((status = 200, content_type = "text/html", body = String),
        (status = 400, body = Problem), (status = 404, body = Problem)))]
pub async fn public_page(
    State(app): State<AppState>,
    Path(id): Path<String>,
    MinPosition(min): MinPosition,
    ClientIp(client): ClientIp,
    headers: HeaderMap,
    uri: axum::http::Uri,
) -> ApiResult<Response> {
    let visitor = visitor_of(&uri)?;
    app.wait_for(widgets::VIEW, min).await?;
    let (id, doc) = public_widget(&app, &id, min).await?;
    let page = active_page(&doc)?;
    let html = page
        .html
        .ok_or_else(|| Problem::not_found("widget"))?
        .to_owned();
    crate::media::refresh_if_stale(&app, id, &page);
    let ip = client.to_string();
    let viewer = visitor.map(|visitor_id| visitors::Viewer {
        visitor_id,
        do_not_track: crate::routes::consent::do_not_track(&headers),
        ip: &ip,
    });
    visitors::record_view(
        &app.commands,
        &app.hits,
        id,
        access_log(&headers, client),
        viewer,
    )
    .await?;
    // A `pro` page is served through the CDN (R14), which purges it when it changes; a free
    // one is never cached.
    let cache = match page.plan {
        lightwidget_domain::event::Plan::Pro => "public, max-age=300",
        lightwidget_domain::event::Plan::Free => "no-store",
    };
    Ok(page_response(&app, cache, html))
}

/// A widget page with its headers: its Content-Security-Policy, `nosniff`, and the cache
/// rule given. Framing is allowed: the page is made to be embedded.
fn page_response(app: &AppState, cache: &'static str, html: String) -> Response {
    let mut r = ([(header::CACHE_CONTROL, cache)], Html(html)).into_response();
    let h = r.headers_mut();
    h.insert(header::CONTENT_SECURITY_POLICY, app.page_policy.clone());
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        header::HeaderValue::from_static("nosniff"),
    );
    r
}

/// `'sha256-…'` of a constant the page inlines.
fn hash_source(text: &str) -> String {
    use base64::Engine;
    use sha2::Digest;
    let digest = sha2::Sha256::digest(text.as_bytes());
    format!(
        "'sha256-{}'",
        base64::engine::general_purpose::STANDARD.encode(digest)
    )
}

/// The widget page's Content-Security-Policy: nothing but its own inline style and resize
/// script (by hash) and images from `media` (the media host's origins); any page may frame
/// it.
pub fn page_policy(media: &str) -> header::HeaderValue {
    use lightwidget_projections::models::widget_page::{SCRIPT, STYLE};
    let policy = format!(
        "default-src 'none'; style-src {}; script-src {}; img-src {media}; \
         frame-ancestors *; base-uri 'none'; form-action 'none'",
        hash_source(STYLE),
        hash_source(SCRIPT),
    );
    header::HeaderValue::from_str(&policy)
        .unwrap_or_else(|_| header::HeaderValue::from_static("default-src 'none'"))
}

/// The origin (`scheme://host[:port]`) of a URL.
pub fn origin_of(url: &str) -> String {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    let host = rest.split('/').next().unwrap_or_default();
    let scheme = url.split_once("://").map_or("https", |(s, _)| s);
    format!("{scheme}://{host}")
}

/// The script an embedding page loads (`/embed.js`): it puts the widget's page in an iframe
/// after itself and sizes the iframe to the height the page posts, believing only messages
/// from that iframe and the widget's origin.
pub const EMBED_JS: &str = "(function(){var s=document.currentScript;if(!s)return;\
var o=new URL(s.src).origin,id=s.getAttribute('data-widget')||'';\
if(!/^[0-9a-f-]{36}$/.test(id))return;\
var f=document.createElement('iframe');f.src=o+'/w/'+id;\
f.title=s.getAttribute('data-title')||'Instagram posts';f.loading='lazy';\
f.style.cssText='width:100%;height:400px;border:0;display:block';\
s.parentNode.insertBefore(f,s.nextSibling);\
addEventListener('message',function(e){if(e.origin!==o||e.source!==f.contentWindow)return;\
var d=e.data;if(d&&d.lightwidget==='height'&&typeof d.height==='number'&&d.height>0&&d.height<100000)\
f.style.height=Math.ceil(d.height)+'px';});})();";

/// The embed script (anyone).
#[utoipa::path(get, path = "/embed.js", tag = "public",
    responses((status = 200, content_type = "text/javascript", body = String)))]
pub async fn embed_js() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/javascript; charset=utf-8"),
            (header::CACHE_CONTROL, "public, max-age=3600"),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        ],
        EMBED_JS,
    )
        .into_response()
}

#[derive(Serialize, ToSchema)]
pub struct Embed {
    /// An `<iframe>` of the widget's page, of a fixed height.
    pub iframe: String,
    /// A `<script>` that puts the page in an iframe and sizes it to its content.
    pub script: String,
}

/// The HTML that embeds one of the caller's widgets in another site.
#[utoipa::path(get, path = "/v1/widgets/{id}/embed", tag = "widgets",
    params(("id" = String, Path, description = "a UUID"), ("min_position" = Option<u64>, Query)),
    responses((status = 200, body = Embed), (status = 401, body = Problem),
        (status = 403, body = Problem), (status = 404, body = Problem)),
    security(("bearer" = [])))]
pub async fn embed(
    State(app): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    MinPosition(min): MinPosition,
    headers: HeaderMap,
) -> ApiResult<Json<Embed>> {
    caller.owner()?;
    app.wait_for(widgets::VIEW, min).await?;
    let doc = own_widget_doc(&app, &caller, &id, min).await?;
    let view = widget_summary(&doc)?;
    let origin = match &app.public_url {
        Some(u) => u.clone(),
        None => {
            let host = headers
                .get(header::HOST)
                .and_then(|h| h.to_str().ok())
                .filter(|h| {
                    h.chars()
                        .all(|c| c.is_ascii_alphanumeric() || ".-:[]".contains(c))
                })
                .ok_or_else(|| Problem::bad_parameter("Host", "the Host header is not a host"))?;
            format!("http://{host}")
        }
    };
    let title = maud::html! { (view.title.as_deref().unwrap_or("Instagram posts")) }.into_string();
    let id = &view.widget_id;
    Ok(Json(Embed {
        iframe: format!(
            "<iframe src=\"{origin}/w/{id}\" title=\"{title}\" loading=\"lazy\" \
             style=\"width:100%;height:600px;border:0\"></iframe>"
        ),
        script: format!(
            "<script src=\"{origin}/embed.js\" data-widget=\"{id}\" data-title=\"{title}\" async></script>"
        ),
    }))
}

/// Records a click in a widget (R1, R2).
#[utoipa::path(post, path = "/w/{id}/click", tag = "public",
    params(("id" = String, Path, description = "a UUID")),
    responses((status = 204), (status = 404, body = Problem)))]
pub async fn click(
    State(app): State<AppState>,
    Path(id): Path<String>,
    ClientIp(client): ClientIp,
    headers: HeaderMap,
) -> ApiResult<StatusCode> {
    let (id, doc) = public_widget(&app, &id, None).await?;
    active_page(&doc)?;
    visitors::record_click(&app.commands, &app.hits, id, access_log(&headers, client)).await?;
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
    let s = statistics::summarize(&months)?;
    Ok(Json(Stats {
        views: s.views,
        clicks: s.clicks,
        by_day: s
            .by_day
            .into_iter()
            .map(|d| DayCount {
                date: d.date,
                views: d.views,
                clicks: d.clicks,
            })
            .collect(),
    }))
}

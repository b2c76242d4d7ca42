//! What auditors and data subjects read of the history: the event log as NDJSON (auditors)
//! and a subject's own personal data (R26).

use super::docs_of;
use crate::auth::Caller;
use crate::extract::{url_pairs, MinPosition};
use crate::problem::{ApiResult, Problem};
use crate::state::AppState;
use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{header, Uri};
use axum::response::Response;
use axum::Json;
use lightwidget_domain::event::Role;
use lightwidget_domain::Category;
use lightwidget_retention::projection::{is_item, ItemDoc, VIEW as RETENTION};
use lightwidget_store::{validate_stream, RecordedEvent};
use serde::Serialize;
use serde_json::Value;
use std::collections::BTreeMap;
use utoipa::ToSchema;

struct EventFilter {
    after: u64,
    limit: Option<u64>,
    stream: Option<String>,
    types: Option<Vec<String>>,
    reveal: Reveal,
}

/// Whether a reader asked to see personal data opened, and why.
#[derive(Default)]
struct Reveal {
    reveal: bool,
    reason: Option<String>,
}

impl Reveal {
    /// Takes `reveal` and `reason` from a query pair; false when the pair is another.
    fn take(&mut self, k: &str, v: &str) -> ApiResult<bool> {
        match k {
            "reveal" => {
                self.reveal = match v {
                    "true" => true,
                    "false" => false,
                    _ => {
                        return Err(Problem::bad_parameter(
                            "reveal",
                            "reveal must be true or false",
                        ))
                    }
                }
            }
            "reason" => {
                let reason = lightwidget_domain::values::text("reason", v, 500).map_err(|_| {
                    Problem::bad_parameter("reason", "reason must be 1 to 500 characters")
                })?;
                self.reason = Some(reason);
            }
            _ => return Ok(false),
        }
        Ok(true)
    }

    /// Records a revealing read before it is answered (R22): `true` when personal data may
    /// be shown. `reveal=true` without a reason is refused, naming `reason`.
    async fn record(&self, app: &AppState, caller: &Caller, uri: &Uri) -> ApiResult<bool> {
        if !self.reveal {
            return Ok(false);
        }
        let reason = self.reason.clone().ok_or_else(|| {
            Problem::bad_parameter("reason", "reveal=true needs a reason: why the data is read")
        })?;
        let read_by = caller.staff(Role::Auditor)?;
        let query: Vec<String> = url_pairs(uri.query().unwrap_or_default())
            .filter(|(k, _)| k != "reason")
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        let scope = format!("GET {}?{}", uri.path(), query.join("&"));
        let call = super::Call::new(app, Some(caller), None, String::new());
        lightwidget_commands::staff::record_reveal(
            &app.commands,
            call.invocation(),
            read_by,
            reason,
            scope,
        )
        .await?;
        Ok(true)
    }
}

fn event_filter(uri: &Uri) -> ApiResult<EventFilter> {
    let mut f = EventFilter {
        after: 0,
        limit: None,
        stream: None,
        types: None,
        reveal: Reveal::default(),
    };
    for (k, v) in url_pairs(uri.query().unwrap_or_default()) {
        if f.reveal.take(&k, &v)? {
            continue;
        }
        match k.as_ref() {
            "after" => {
                f.after = v
                    .parse()
                    .map_err(|_| Problem::bad_parameter("after", "after must be a log position"))?
            }
            "limit" => {
                f.limit = Some(v.parse().ok().filter(|n| *n > 0).ok_or_else(|| {
                    Problem::bad_parameter("limit", "limit must be a positive number")
                })?)
            }
            "stream" => {
                validate_stream(&v)
                    .map_err(|_| Problem::bad_parameter("stream", "stream is not a stream name"))?;
                f.stream = Some(v);
            }
            "type" => f.types = Some(v.split(',').map(str::to_owned).collect()),
            // The log itself is read: it is always current.
            "min_position" => {}
            other => {
                return Err(Problem::bad_parameter(
                    other,
                    "unknown query parameter (after, limit, stream, type, reveal, reason)",
                ))
            }
        }
    }
    Ok(f)
}

/// One page of the filtered log from `cursor` (a position, or with a stream filter a
/// version of that stream): the events kept, and the cursor of the next page (`None`: the end).
async fn page(
    app: &AppState,
    f: &EventFilter,
    cursor: u64,
) -> Result<(Vec<RecordedEvent>, Option<u64>), lightwidget_store::StoreError> {
    const PAGE: usize = 500;
    let (events, next) = match &f.stream {
        Some(s) => {
            let events = app.store.read_stream(s, cursor, PAGE).await?;
            let next = (events.len() >= PAGE)
                .then(|| events.last().map(|e| e.version))
                .flatten();
            (events, next)
        }
        None => {
            let events = app.store.read_all(cursor, PAGE).await?;
            let next = (events.len() >= PAGE)
                .then(|| events.last().map(|e| e.position))
                .flatten();
            (events, next)
        }
    };
    let kept = events
        .into_iter()
        .filter(|e| e.position > f.after)
        .filter(|e| f.types.as_ref().is_none_or(|t| t.contains(&e.event_type)))
        .collect();
    Ok((kept, next))
}

/// The log as NDJSON envelopes in position order (auditor): `after` a position, `limit`,
/// `stream`, `type` (comma-separated). Streamed page by page, never loaded whole. Personal
/// fields read `{"sealed": {"subject", "category"}}`, or as erased once their key is
/// shredded; with `reveal=true` and a `reason` they read opened, and the read is recorded
/// (`AuditDataRevealed`) before the answer. Credentials are never shown.
#[utoipa::path(get, path = "/v1/audit/events", tag = "audit",
    params(("after" = Option<u64>, Query), ("limit" = Option<u64>, Query),
        ("stream" = Option<String>, Query), ("type" = Option<String>, Query),
        ("reveal" = Option<bool>, Query), ("reason" = Option<String>, Query)),
    responses((status = 200, content_type = "application/x-ndjson", body = String),
        (status = 400, body = Problem), (status = 401, body = Problem),
        (status = 403, body = Problem)),
    security(("bearer" = [])))]
pub async fn events(State(app): State<AppState>, caller: Caller, uri: Uri) -> ApiResult<Response> {
    caller.staff(Role::Auditor)?;
    let f = event_filter(&uri)?;
    let reveal = f.reveal.record(&app, &caller, &uri).await?;
    // The first page is read before answering, so that a failing store is a 500, not a
    // broken stream.
    let start = if f.stream.is_some() { 0 } else { f.after };
    let first = page(&app, &f, start).await?;
    let state = (app, f, Some(first), 0u64);
    let body = futures::stream::unfold(state, move |(app, f, pending, sent)| async move {
        let (events, next) = match pending {
            Some(p) => p,
            None => return None,
        };
        let mut out = Vec::new();
        let mut sent = sent;
        for e in &events {
            if f.limit.is_some_and(|l| sent >= l) {
                break;
            }
            let shown = RecordedEvent {
                data: lightwidget_store::sealing::event_for_reader(e, reveal),
                ..e.clone()
            };
            if serde_json::to_writer(&mut out, &shown).is_err() {
                break;
            }
            out.push(b'\n');
            sent += 1;
        }
        let done = f.limit.is_some_and(|l| sent >= l);
        let pending = match (next, done) {
            (Some(after), false) => match page(&app, &f, after).await {
                Ok(p) => Some(p),
                Err(e) => {
                    tracing::error!(error = %e, "reading the log for an audit export");
                    return Some((
                        Err(std::io::Error::other("the log could not be read")),
                        (app, f, None, sent),
                    ));
                }
            },
            _ => None,
        };
        Some((
            Ok::<_, std::io::Error>(Bytes::from(out)),
            (app, f, pending, sent),
        ))
    });
    Response::builder()
        .header(header::CONTENT_TYPE, "application/x-ndjson")
        .body(Body::from_stream(body))
        .map_err(|_| Problem::internal())
}

/// One personal datum of the caller as recorded.
#[derive(Serialize, ToSchema)]
pub struct Datum {
    pub subject_id: String,
    /// The event that recorded it.
    pub event_type: String,
    pub recorded_at: String,
    #[schema(value_type = Object)]
    pub value: Value,
}

/// Everything held in one category.
#[derive(Serialize, ToSchema)]
pub struct CategoryExport {
    pub category: String,
    /// The retention items of the category: state, due date, explanation.
    #[schema(value_type = Vec<Object>)]
    pub retention: Vec<Value>,
    pub data: Vec<Datum>,
}

#[derive(Serialize, ToSchema)]
pub struct Export {
    pub account_id: String,
    pub categories: Vec<CategoryExport>,
}

/// Every personal datum held about the caller (owner), by category, each category with its
/// retention items (R26). Access logs of the caller's widgets are their visitors' data and
/// are not in it; erased data is absent, its item says when it went.
#[utoipa::path(get, path = "/v1/me/export", tag = "accounts",
    params(("min_position" = Option<u64>, Query)),
    responses((status = 200, body = Export), (status = 401, body = Problem),
        (status = 403, body = Problem)),
    security(("bearer" = [])))]
pub async fn export(
    State(app): State<AppState>,
    caller: Caller,
    MinPosition(min): MinPosition,
) -> ApiResult<Json<Export>> {
    let account = caller.owner()?;
    app.wait_for(RETENTION, min).await?;
    let items = docs_of(&app, RETENTION, Some(&account.to_string())).await?;
    let mut by_category: BTreeMap<String, CategoryExport> = BTreeMap::new();
    let mut streams: BTreeMap<String, Vec<RecordedEvent>> = BTreeMap::new();
    for doc in items.iter().filter(|d| is_item(d)) {
        let item: ItemDoc = doc.read()?;
        if item.category == Category::AccessLog {
            continue;
        }
        let (subject, category) = (item.subject_id.as_str(), item.category.as_str());
        let entry = by_category
            .entry(category.to_owned())
            .or_insert_with(|| CategoryExport {
                category: category.to_owned(),
                retention: vec![],
                data: vec![],
            });
        entry.retention.push(serde_json::json!({
            "subject_id": subject,
            "rule": item.rule,
            "state": item.state,
            "due_at": item.due_at,
            "explanation": item.explanation,
        }));
        let Some(stream) = lightwidget_domain::streams::of_subject(subject) else {
            continue;
        };
        if !streams.contains_key(&stream) {
            let events = app.store.read_whole_stream(&stream).await?;
            streams.insert(stream.clone(), events);
        }
        for e in &streams[&stream] {
            let mut values = Vec::new();
            // Credentials are never exported (also those of an older label).
            let shown = lightwidget_store::sealing::event_for_reader(e, true);
            lightwidget_store::sealing::personal_values(&shown, subject, category, &mut values);
            for value in values {
                entry.data.push(Datum {
                    subject_id: subject.to_owned(),
                    event_type: e.event_type.clone(),
                    recorded_at: lightwidget_store::format_time(e.recorded_at),
                    value,
                });
            }
        }
    }
    Ok(Json(Export {
        account_id: account.to_string(),
        categories: by_category.into_values().collect(),
    }))
}

/// The chain as recomputed now.
#[derive(Serialize, ToSchema)]
pub struct Verified {
    pub ok: bool,
    pub events_checked: u64,
    pub head_position: u64,
    pub head_hash: String,
    pub first_bad_position: Option<u64>,
    /// Why the first bad position is bad (positions and ids only).
    pub problem: Option<String>,
}

/// Recomputes the hash chain from position 1 and compares it with the head (auditor).
#[utoipa::path(get, path = "/v1/audit/verify", tag = "audit",
    responses((status = 200, body = Verified), (status = 401, body = Problem),
        (status = 403, body = Problem)),
    security(("bearer" = [])))]
pub async fn verify(State(app): State<AppState>, caller: Caller) -> ApiResult<Json<Verified>> {
    caller.staff(Role::Auditor)?;
    let r = app.store.verify().await?;
    Ok(Json(Verified {
        ok: r.ok,
        events_checked: r.events_checked,
        head_position: r.head_position,
        head_hash: hex::encode(r.head_hash),
        first_bad_position: r.first_bad_position,
        problem: r.problem,
    }))
}

async fn evaluate(
    app: &AppState,
    projection: &dyn lightwidget_projections::Projection,
    position: u64,
) -> ApiResult<BTreeMap<String, lightwidget_store::ViewDoc>> {
    lightwidget_projections::evaluate_as_of(&*app.store, projection, position)
        .await
        .map_err(|e| {
            tracing::error!(error = %e, "replay");
            Problem::internal()
        })
}

/// `opened` with every value that differs in `unopened` (the same document computed with no
/// personal field opened) read `{"sealed": {}}`.
fn sealed_where_differs(opened: &Value, unopened: Option<&Value>) -> Value {
    match (opened, unopened) {
        (Value::Object(o), Some(Value::Object(u))) => Value::Object(
            o.iter()
                .map(|(k, v)| (k.clone(), sealed_where_differs(v, u.get(k))))
                .collect(),
        ),
        (Value::Array(o), Some(Value::Array(u))) if o.len() == u.len() => Value::Array(
            o.iter()
                .zip(u)
                .map(|(o, u)| sealed_where_differs(o, Some(u)))
                .collect(),
        ),
        (o, Some(u)) if o == u => o.clone(),
        _ => serde_json::json!({"sealed": {}}),
    }
}

/// A projection as it stood at a point of the log.
#[derive(Serialize, ToSchema)]
pub struct Replayed {
    pub projection: String,
    /// The last position included.
    pub at_position: u64,
    #[schema(value_type = Vec<Object>)]
    pub documents: Vec<Value>,
}

/// A read model computed from the log up to a position or a time (auditor): `at` is a
/// position or an RFC 3339 time (the last position recorded at or before it); `key` keeps one
/// document. Computed by streaming the log, whatever the live view holds. What personal data
/// shaped reads `{"sealed": {}}` unless `reveal=true` with a `reason`, recorded first.
#[utoipa::path(get, path = "/v1/audit/replay/{projection}", tag = "audit",
    params(("projection" = String, Path, description = "accounts, widgets, invoices, statistics or retention"),
        ("at" = String, Query), ("key" = Option<String>, Query),
        ("reveal" = Option<bool>, Query), ("reason" = Option<String>, Query)),
    responses((status = 200, body = Replayed), (status = 400, body = Problem),
        (status = 401, body = Problem), (status = 403, body = Problem),
        (status = 404, body = Problem)),
    security(("bearer" = [])))]
pub async fn replay(
    State(app): State<AppState>,
    caller: Caller,
    axum::extract::Path(name): axum::extract::Path<String>,
    uri: Uri,
) -> ApiResult<Json<Replayed>> {
    caller.staff(Role::Auditor)?;
    let projection = crate::read_models(&app.policy)
        .into_iter()
        .find(|p| p.name() == name)
        .ok_or_else(|| Problem::not_found("projection"))?;
    let (mut at, mut key, mut reveal) = (None, None, Reveal::default());
    for (k, v) in url_pairs(uri.query().unwrap_or_default()) {
        if reveal.take(&k, &v)? {
            continue;
        }
        match k.as_ref() {
            "at" => at = Some(v),
            "key" => key = Some(v),
            "min_position" => {}
            other => {
                return Err(Problem::bad_parameter(
                    other,
                    "unknown query parameter (at, key, reveal, reason)",
                ))
            }
        }
    }
    let at = at.ok_or_else(|| {
        Problem::bad_parameter("at", "at is required: a log position or an RFC 3339 time")
    })?;
    let position = crate::archive::position_of(&*app.store, &at)
        .await
        .map_err(|e| {
            tracing::error!(error = %e, "replay: position at time");
            Problem::internal()
        })?
        .ok_or_else(|| {
            Problem::bad_parameter("at", "at must be a log position or an RFC 3339 time")
        })?;
    let position = position.min(app.store.head().await?.position);
    let revealed = reveal.record(&app, &caller, &uri).await?;
    let docs = evaluate(&app, &*projection, position).await?;
    // Without reveal, what personal data shaped reads sealed: the documents computed with no
    // personal field opened, compared with the opened ones.
    let unopened = if revealed {
        None
    } else {
        let unopened = lightwidget_projections::WithoutPersonalData(&*projection);
        Some(evaluate(&app, &unopened, position).await?)
    };
    let documents = docs
        .into_iter()
        .filter(|(k, _)| key.as_ref().is_none_or(|want| want == k))
        .map(|(k, d)| {
            let doc = match unopened.as_ref() {
                None => d.doc,
                Some(u) => sealed_where_differs(&d.doc, u.get(&k).map(|u| &u.doc)),
            };
            serde_json::json!({"key": k, "doc": doc})
        })
        .collect();
    Ok(Json(Replayed {
        projection: name,
        at_position: position,
        documents,
    }))
}

//! What anyone may send: comments on articles (R6) and support tickets (R4).

use super::orders::valid_email;
use crate::extract::{text_field, IdempotencyKey, JsonBody};
use crate::problem::{ApiResult, Problem};
use crate::state::AppState;
use axum::extract::{ConnectInfo, Path, State};
use axum::http::StatusCode;
use axum::Json;
use lightwidget_domain::event::{CommentPosted, SupportRequest, TicketOpened};
use lightwidget_domain::{Category, CommentId, DomainEvent, Personal, Subject, TicketId};
use lightwidget_store::{format_time, AppendRequest, ExpectedVersion, StreamWrite};
use serde::{Deserialize, Serialize};
use std::net::SocketAddr;
use utoipa::ToSchema;

/// The stream of an article's comments.
fn article_stream(slug: &str) -> String {
    format!("article-{slug}")
}

/// An article's slug: 1 to 100 of `a-z`, `0-9` and `-`; anything else names no article.
fn slug_of(slug: &str) -> ApiResult<&str> {
    let ok = !slug.is_empty()
        && slug.len() <= 100
        && slug
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
    ok.then_some(slug)
        .ok_or_else(|| Problem::not_found("article"))
}

/// An optional text field: absent or blank is not filled in (and not kept).
fn optional(field: &str, value: Option<&str>, max: usize) -> ApiResult<Option<String>> {
    match value.map(str::trim).filter(|v| !v.is_empty()) {
        None => Ok(None),
        Some(v) => text_field(field, v, max).map(Some),
    }
}

/// Appends the event; under an `Idempotency-Key` once per key (anonymous callers share one
/// scope, so a key should be a fresh UUID).
async fn append(
    app: &AppState,
    stream: &str,
    event: DomainEvent,
    key: Option<&str>,
    fingerprint: &str,
) -> ApiResult<u64> {
    let meta = app.meta(None);
    let Some(key) = key else {
        let r = app
            .store
            .append(AppendRequest {
                writes: vec![StreamWrite::of(
                    stream,
                    ExpectedVersion::Any,
                    &[event],
                    &meta,
                )],
                shred: vec![],
            })
            .await?;
        return Ok(r.last_position);
    };
    let scoped = format!("anonymous|{key}");
    lightwidget_commands::idempotency::append_once(
        &*app.store,
        stream,
        &[event],
        &meta,
        &scoped,
        fingerprint,
    )
    .await
    .map(|o| o.position)
    .map_err(|e| crate::state::command_problem(e, |never| match never {}))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CommentBody {
    pub author: String,
    pub text: String,
}

#[derive(Serialize, ToSchema)]
pub struct CommentCreated {
    #[schema(value_type = String, format = Uuid)]
    pub comment_id: CommentId,
    pub position: u64,
}

/// Posts a comment (anyone). The client's IP is kept with it for abuse prevention only, 12
/// months (R6), and never shown.
#[utoipa::path(post, path = "/v1/articles/{slug}/comments", tag = "public",
    request_body = CommentBody,
    params(("slug" = String, Path, description = "a-z, 0-9 and -")),
    responses((status = 201, body = CommentCreated), (status = 404, body = Problem),
        (status = 422, body = Problem)))]
pub async fn post_comment(
    State(app): State<AppState>,
    Path(slug): Path<String>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    IdempotencyKey(key): IdempotencyKey,
    body: JsonBody<CommentBody>,
) -> ApiResult<(StatusCode, Json<CommentCreated>)> {
    let slug = slug_of(&slug)?;
    let author = text_field("author", &body.value.author, 100)?;
    let text = text_field("text", &body.value.text, 5000)?;
    let comment_id = CommentId(super::keyed_id("anonymous", key.as_deref(), "comment"));
    let event = CommentPosted {
        comment_id,
        article: slug.to_owned(),
        author,
        text,
        ip: Personal::new(
            Subject::comment(comment_id),
            Category::CommentIp,
            peer.ip().to_string(),
        ),
        posted_at: app.clock.now(),
    }
    .into();
    let position = append(
        &app,
        &article_stream(slug),
        event,
        key.as_deref(),
        &format!("POST /v1/articles/{slug}/comments {}", body.digest),
    )
    .await?;
    Ok((
        StatusCode::CREATED,
        Json(CommentCreated {
            comment_id,
            position,
        }),
    ))
}

#[derive(Serialize, ToSchema)]
pub struct Comment {
    #[schema(value_type = String, format = Uuid)]
    pub comment_id: CommentId,
    pub author: String,
    pub text: String,
    pub posted_at: String,
}

#[derive(Serialize, ToSchema)]
pub struct Comments {
    pub comments: Vec<Comment>,
}

/// An article's comments, oldest first, without IPs (anyone).
#[utoipa::path(get, path = "/v1/articles/{slug}/comments", tag = "public",
    params(("slug" = String, Path, description = "a-z, 0-9 and -")),
    responses((status = 200, body = Comments), (status = 404, body = Problem)))]
pub async fn list_comments(
    State(app): State<AppState>,
    Path(slug): Path<String>,
) -> ApiResult<Json<Comments>> {
    let slug = slug_of(&slug)?;
    // The stream is the read model; read sealed, so no IP is ever opened here.
    let stream = article_stream(slug);
    let mut comments = Vec::new();
    let mut after = 0;
    loop {
        let page = app.store.read_stream_raw(&stream, after, 1000).await?;
        let Some(last) = page.last() else { break };
        after = last.version;
        for e in &page {
            if let Ok(DomainEvent::CommentPosted(c)) = e.decode_sealed() {
                comments.push(Comment {
                    comment_id: c.comment_id,
                    author: c.author,
                    text: c.text,
                    posted_at: format_time(c.posted_at),
                });
            }
        }
    }
    Ok(Json(Comments { comments }))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TicketBody {
    pub email: Option<String>,
    pub subject: Option<String>,
    pub message: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub struct TicketCreated {
    #[schema(value_type = String, format = Uuid)]
    pub ticket_id: TicketId,
    pub position: u64,
}

/// Opens a support ticket (anyone). The e-mail address is required; only the fields filled
/// in are kept, 24 months (R4).
#[utoipa::path(post, path = "/v1/support/tickets", tag = "public", request_body = TicketBody,
    responses((status = 201, body = TicketCreated), (status = 422, body = Problem)))]
pub async fn open_ticket(
    State(app): State<AppState>,
    IdempotencyKey(key): IdempotencyKey,
    body: JsonBody<TicketBody>,
) -> ApiResult<(StatusCode, Json<TicketCreated>)> {
    let fingerprint = format!("POST /v1/support/tickets {}", body.digest);
    let b = body.value;
    let email = b.email.as_deref().map(str::trim).unwrap_or_default();
    if email.is_empty() {
        return Err(Problem::invalid("email", "email is required"));
    }
    if !valid_email(email) {
        return Err(Problem::invalid("email", "email is not an e-mail address"));
    }
    let request = SupportRequest {
        email: email.to_owned(),
        subject: optional("subject", b.subject.as_deref(), 200)?,
        message: optional("message", b.message.as_deref(), 10_000)?,
    };
    let ticket_id = TicketId(super::keyed_id("anonymous", key.as_deref(), "ticket"));
    let event = TicketOpened {
        ticket_id,
        request: Personal::new(Subject::ticket(ticket_id), Category::Support, request),
        opened_at: app.clock.now(),
    }
    .into();
    let position = append(
        &app,
        &ticket_id.stream(),
        event,
        key.as_deref(),
        &fingerprint,
    )
    .await?;
    Ok((
        StatusCode::CREATED,
        Json(TicketCreated {
            ticket_id,
            position,
        }),
    ))
}

//! What anyone may send: comments on articles (R6) and support tickets (R4).

use super::Call;
use crate::client_ip::ClientIp;
use crate::extract::{IdempotencyKey, JsonBody};
use crate::problem::{ApiResult, Problem};
use crate::state::AppState;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use lightwidget_commands::visitors;
use lightwidget_domain::event::SupportRequest;
use lightwidget_domain::values::CommentText;
use lightwidget_domain::{streams, Category, CommentId, DomainEvent, TicketId};
use lightwidget_store::format_time;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

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

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CommentBody {
    #[schema(min_length = 1, max_length = 100, pattern = "\\S")]
    pub author: String,
    #[schema(min_length = 1, max_length = 5000, pattern = "\\S")]
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
    ClientIp(client): ClientIp,
    IdempotencyKey(key): IdempotencyKey,
    body: JsonBody<CommentBody>,
) -> ApiResult<(StatusCode, Json<CommentCreated>)> {
    let slug = slug_of(&slug)?;
    let comment = CommentText::parse(&body.value.author, &body.value.text)?;
    let call = Call::new(
        &app,
        None,
        key,
        format!("POST /v1/articles/{slug}/comments {}", body.digest),
    );
    let created = visitors::post_comment(
        &app.commands,
        call.invocation(),
        slug,
        comment,
        client.to_string(),
    )
    .await?;
    Ok((
        StatusCode::CREATED,
        Json(CommentCreated {
            comment_id: created.id,
            position: created.position,
        }),
    ))
}

#[derive(Serialize, ToSchema)]
pub struct Comment {
    #[schema(value_type = String, format = Uuid)]
    pub comment_id: CommentId,
    /// `null` once the author's name was erased (R6); the text stays.
    pub author: Option<String>,
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
    // The stream is the read model. Only the authors' names are opened: the IPs' keys are
    // never fetched here (R6).
    let stream = streams::article(slug);
    let raw = app.store.read_whole_stream_raw(&stream).await?;
    let events =
        lightwidget_store::open_events_of(&*app.store, raw, Some(&[Category::CommentAuthor]))
            .await?;
    let comments = events
        .iter()
        .filter_map(|e| match e.to_domain() {
            Ok(DomainEvent::CommentPosted(c)) => Some(Comment {
                comment_id: c.comment_id,
                author: c.author.name().map(str::to_owned),
                text: c.text,
                posted_at: format_time(c.posted_at),
            }),
            _ => None,
        })
        .collect();
    Ok(Json(Comments { comments }))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TicketBody {
    /// Required: where the answer goes (R4).
    #[schema(
        max_length = 254,
        pattern = "^[!-?A-~]+@[!-\\-/-?A-~][!-?A-~]*\\.[!-?A-~]*[!-\\-/-?A-~]$"
    )]
    pub email: Option<String>,
    #[schema(max_length = 200)]
    pub subject: Option<String>,
    #[schema(max_length = 10000)]
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
    let b = &body.value;
    let request = SupportRequest::parse(
        b.email.as_deref(),
        b.subject.as_deref(),
        b.message.as_deref(),
    )?;
    let call = Call::new(
        &app,
        None,
        key,
        format!("POST /v1/support/tickets {}", body.digest),
    );
    let created = visitors::open_ticket(&app.commands, call.invocation(), request).await?;
    Ok((
        StatusCode::CREATED,
        Json(TicketCreated {
            ticket_id: created.id,
            position: created.position,
        }),
    ))
}

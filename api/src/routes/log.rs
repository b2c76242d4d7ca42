//! The transparency log (API.md, "Transparency log"): the latest signed checkpoint, the
//! verifier key, consistency and inclusion proofs (RFC 9162), the history of checkpoints,
//! and erasure receipts (C2SP `tlog-proof@v1`). Hashes travel as standard base64.

use crate::auth::Caller;
use crate::extract::{url_pairs, MinPosition};
use crate::problem::{ApiResult, Problem};
use crate::state::AppState;
use axum::body::{Body, Bytes};
use axum::extract::{Path, State};
use axum::http::{header, Uri};
use axum::response::{IntoResponse, Response};
use axum::Json;
use lightwidget_domain::event::Role;
use lightwidget_projections::models::receipts::VIEW as RECEIPTS;
use lightwidget_store::SignedCheckpoint;
use lightwidget_tlog::proof::encode_hash;
use lightwidget_tlog::Hash;
use serde::Serialize;
use std::time::Duration;
use utoipa::ToSchema;

/// How long `min_position` on the checkpoint waits for a signed checkpoint to cover it.
const CHECKPOINT_WAIT: Duration = Duration::from_secs(5);

/// The named non-negative integers of a query; `min_position` is taken elsewhere.
fn numbers<const N: usize>(uri: &Uri, names: [&str; N]) -> ApiResult<[Option<u64>; N]> {
    let mut out = [None; N];
    for (k, v) in url_pairs(uri.query().unwrap_or_default()) {
        if let Some(i) = names.iter().position(|n| *n == k) {
            out[i] = Some(v.parse().map_err(|_| {
                Problem::bad_parameter(names[i], format!("{} must be a whole number", names[i]))
            })?);
        }
    }
    Ok(out)
}

fn required(value: Option<u64>, name: &str) -> ApiResult<u64> {
    value.ok_or_else(|| Problem::bad_parameter(name, format!("{name} is required")))
}

/// The latest signed checkpoint; with `min_position`, once one covers that position.
async fn latest(app: &AppState, min: Option<u64>) -> ApiResult<SignedCheckpoint> {
    let deadline = tokio::time::Instant::now() + CHECKPOINT_WAIT;
    loop {
        let latest = app.log.latest().await?;
        match (&latest, min) {
            (Some(c), None) => return Ok(c.clone()),
            (Some(c), Some(m)) if c.size >= m => return Ok(c.clone()),
            _ => {}
        }
        if let Some(m) = min {
            let head = app.store.head().await?.position;
            if m > head {
                return Err(Problem::bad_parameter(
                    "min_position",
                    format!("min_position {m} is past the log's head ({head})"),
                ));
            }
        }
        if tokio::time::Instant::now() >= deadline {
            return Err(Problem::unavailable(
                match app.log.alarm() {
                    Some(_) => "the log is not signing (see /readyz)".to_owned(),
                    None => "no signed checkpoint covers the log yet".to_owned(),
                },
                1,
            ));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The size of the latest signed checkpoint (0 before any).
async fn signed_size(app: &AppState) -> ApiResult<u64> {
    Ok(app.log.latest().await?.map_or(0, |c| c.size))
}

fn text(body: String, no_store: bool) -> Response {
    let mut r = ([(header::CONTENT_TYPE, "text/plain; charset=utf-8")], body).into_response();
    if no_store {
        r.headers_mut().insert(
            header::CACHE_CONTROL,
            header::HeaderValue::from_static("no-store"),
        );
    }
    r
}

/// The latest signed checkpoint: a C2SP `tlog-checkpoint` signed note (origin, tree size,
/// base64 root, then the Ed25519 signature line). With `min_position`, waits (up to 5 s)
/// until a signed checkpoint covers that position.
#[utoipa::path(get, path = "/v1/log/checkpoint", tag = "log",
    responses((status = 200, content_type = "text/plain", body = String),
        (status = 400, body = Problem)))]
pub async fn checkpoint(
    State(app): State<AppState>,
    MinPosition(min): MinPosition,
) -> ApiResult<Response> {
    let c = latest(&app, min).await?;
    Ok(text(c.note, true))
}

/// The log's verifier key: `<origin>+<key id>+<base64(0x01 ‖ Ed25519 public key)>`.
#[utoipa::path(get, path = "/v1/log/key", tag = "log",
    responses((status = 200, content_type = "text/plain", body = String)))]
pub async fn key(State(app): State<AppState>) -> Response {
    text(format!("{}\n", app.log.verifier_key()), false)
}

/// A consistency proof (RFC 9162 §2.1.4) between two tree sizes.
#[derive(Serialize, ToSchema)]
pub struct Consistency {
    pub first: u64,
    pub second: u64,
    /// The tree's root at size `first`, base64.
    pub first_root: String,
    /// The proof's hashes, base64; empty when `first` is 0 or `second`.
    pub consistency: Vec<String>,
}

/// The proof that the tree of `first` leaves is a prefix of the tree of `second`; `second`
/// at most the latest signed size.
#[utoipa::path(get, path = "/v1/log/proof/consistency", tag = "log",
    params(("first" = u64, Query), ("second" = u64, Query)),
    responses((status = 200, body = Consistency), (status = 400, body = Problem)))]
pub async fn consistency(State(app): State<AppState>, uri: Uri) -> ApiResult<Json<Consistency>> {
    let [first, second] = numbers(&uri, ["first", "second"])?;
    let (first, second) = (required(first, "first")?, required(second, "second")?);
    if first > second {
        return Err(Problem::bad_parameter(
            "first",
            "first must not be larger than second",
        ));
    }
    let signed = signed_size(&app).await?;
    if second > signed {
        return Err(Problem::bad_parameter(
            "second",
            format!("second is past the latest signed size ({signed})"),
        ));
    }
    let root = lightwidget_store::tree::root(&*app.store, first).await?;
    let proof = lightwidget_store::tree::consistency(&*app.store, second, first).await?;
    Ok(Json(Consistency {
        first,
        second,
        first_root: encode_hash(&root),
        consistency: proof.iter().map(encode_hash).collect(),
    }))
}

/// An inclusion proof (RFC 9162 §2.1.3) of the event at `position` in a tree.
#[derive(Serialize, ToSchema)]
pub struct Inclusion {
    pub position: u64,
    /// position − 1.
    pub leaf_index: u64,
    pub tree_size: u64,
    /// SHA-256(0x00 ‖ the event's chain hash), base64.
    pub leaf_hash: String,
    /// From the leaf's sibling up, base64.
    pub audit_path: Vec<String>,
}

/// The proof that the event at `position` is in the tree of `size` leaves (auditor); `size`
/// at most the latest signed size.
#[utoipa::path(get, path = "/v1/log/proof/inclusion", tag = "log",
    params(("position" = u64, Query), ("size" = u64, Query)),
    responses((status = 200, body = Inclusion), (status = 400, body = Problem),
        (status = 401, body = Problem), (status = 403, body = Problem)),
    security(("bearer" = [])))]
pub async fn inclusion(
    State(app): State<AppState>,
    caller: Caller,
    uri: Uri,
) -> ApiResult<Json<Inclusion>> {
    caller.staff(Role::Auditor)?;
    let [position, size] = numbers(&uri, ["position", "size"])?;
    let (position, size) = (required(position, "position")?, required(size, "size")?);
    let signed = signed_size(&app).await?;
    if size > signed {
        return Err(Problem::bad_parameter(
            "size",
            format!("size is past the latest signed size ({signed})"),
        ));
    }
    if position == 0 || position > size {
        return Err(Problem::bad_parameter(
            "position",
            format!("position must be 1 to size ({size})"),
        ));
    }
    let index = position - 1;
    let leaf = app
        .store
        .tree_hashes(&[lightwidget_tlog::tree::stored_index(0, index)])
        .await?;
    let leaf = leaf.first().copied().ok_or_else(Problem::internal)?;
    let path = lightwidget_store::tree::inclusion(&*app.store, size, index).await?;
    Ok(Json(Inclusion {
        position,
        leaf_index: index,
        tree_size: size,
        leaf_hash: encode_hash(&Hash(leaf)),
        audit_path: path.iter().map(encode_hash).collect(),
    }))
}

/// One line of the checkpoint history.
#[derive(Serialize, ToSchema)]
pub struct CheckpointLine {
    pub size: u64,
    /// base64.
    pub root: String,
    pub note: String,
    pub signed_at: String,
}

/// Every checkpoint signed with a size above `after` (default: all), in size order, as
/// NDJSON (auditor).
#[utoipa::path(get, path = "/v1/log/checkpoints", tag = "log",
    params(("after" = Option<u64>, Query)),
    responses((status = 200, content_type = "application/x-ndjson", body = String),
        (status = 400, body = Problem), (status = 401, body = Problem),
        (status = 403, body = Problem)),
    security(("bearer" = [])))]
pub async fn checkpoints(
    State(app): State<AppState>,
    caller: Caller,
    uri: Uri,
) -> ApiResult<Response> {
    caller.staff(Role::Auditor)?;
    let [after] = numbers(&uri, ["after"])?;
    const PAGE: usize = 1000;
    // The first page before the answer: a failing store is a 500, not a broken stream.
    let first = app.store.checkpoints(after.unwrap_or(0), PAGE).await;
    let first = first?;
    let body = futures::stream::unfold(Some((app, first)), |state| async move {
        let (app, page) = state?;
        let mut out = Vec::new();
        for c in &page {
            let line = CheckpointLine {
                size: c.size,
                root: encode_hash(&Hash(c.root)),
                note: c.note.clone(),
                signed_at: lightwidget_store::format_time(c.signed_at),
            };
            if serde_json::to_writer(&mut out, &line).is_err() {
                break;
            }
            out.push(b'\n');
        }
        // Sizes can repeat (a new key signs the same size): page by size, and end when a
        // short page comes.
        let next = match page.last() {
            Some(last) if page.len() >= PAGE => {
                match app.store.checkpoints(last.size, PAGE).await {
                    Ok(p) => Some((app, p)),
                    Err(e) => {
                        tracing::error!(error = %e, "reading the checkpoint history");
                        return Some((
                            Err(std::io::Error::other("the history could not be read")),
                            None,
                        ));
                    }
                }
            }
            _ => None,
        };
        Some((Ok::<_, std::io::Error>(Bytes::from(out)), next))
    });
    Response::builder()
        .header(header::CONTENT_TYPE, "application/x-ndjson")
        .body(Body::from_stream(body))
        .map_err(|_| Problem::internal())
}

/// The erasure receipt of an account deletion (the token is the one `DELETE /v1/me` gave):
/// once a signed checkpoint covers the event that purged the account's profile, a C2SP
/// `tlog-proof@v1` document for that event, whose `extra` is the preimage of its chain hash.
/// Before, 409 with `state` `pending` and `due_at`; `restored` when the account came back.
#[utoipa::path(get, path = "/v1/log/receipts/{token}", tag = "log",
    params(("token" = String, Path)),
    responses((status = 200, content_type = "text/plain", body = String),
        (status = 404, body = Problem), (status = 409, body = Problem)))]
pub async fn receipt(
    State(app): State<AppState>,
    Path(token): Path<String>,
    MinPosition(min): MinPosition,
) -> ApiResult<Response> {
    use lightwidget_commands::receipts::{erasure_receipt, ErasureReceipt};
    app.wait_for(RECEIPTS, min).await?;
    match erasure_receipt(&app.commands, &token).await? {
        ErasureReceipt::Ready(proof) => Ok(text(proof, false)),
        ErasureReceipt::Unknown => Err(Problem::not_found("receipt")),
        ErasureReceipt::Restored => Err(Problem::conflict(
            "the account was restored: no erasure is pending under this receipt",
        )
        .with("state", "restored".into())),
        ErasureReceipt::Pending { due_at } => Err(Problem::conflict(
            "the erasure is not yet in a signed checkpoint",
        )
        .with("state", "pending".into())
        .with(
            "due_at",
            due_at
                .map(lightwidget_store::format_time)
                .map_or(serde_json::Value::Null, Into::into),
        )),
    }
}

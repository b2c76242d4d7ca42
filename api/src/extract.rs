//! Request extractors that answer bad input with problem+json naming the field: JSON bodies
//! (malformed: 400; unknown, missing, mistyped or invalid field: 422; over 1 MiB: 413), the
//! `Idempotency-Key` and `If-Match` headers, and `?min_position=`.

use crate::problem::Problem;
use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::header;
use axum::http::request::Parts;
use lightwidget_domain::event::redact_values;
use serde::de::DeserializeOwned;
use sha2::{Digest, Sha256};

/// The largest body accepted (API.md: 413 above it).
pub const BODY_LIMIT: usize = 1024 * 1024;

/// A JSON body of type `T`, with the parsed tree (for checks over every field) and the
/// SHA-256 of the raw bytes (the request's fingerprint for idempotency).
pub struct JsonBody<T> {
    pub value: T,
    pub tree: serde_json::Value,
    pub digest: String,
}

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for JsonBody<T> {
    type Rejection = Problem;

    async fn from_request(req: Request, state: &S) -> Result<Self, Problem> {
        let json = req
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(|v| {
                let v = v.split(';').next().unwrap_or("").trim();
                v == "application/json" || v.ends_with("+json")
            })
            .unwrap_or(false);
        if !json {
            return Err(Problem::malformed(
                "the body must be JSON, sent with Content-Type: application/json",
            ));
        }
        let bytes = Bytes::from_request(req, state).await.map_err(|e| {
            if e.status() == axum::http::StatusCode::PAYLOAD_TOO_LARGE {
                Problem::too_large()
            } else {
                Problem::malformed("the body could not be read")
            }
        })?;
        parse(&bytes)
    }
}

/// Parses a body: see [`JsonBody`].
pub fn parse<T: DeserializeOwned>(bytes: &[u8]) -> Result<JsonBody<T>, Problem> {
    let tree: serde_json::Value = serde_json::from_slice(bytes).map_err(|e| {
        Problem::malformed(format!(
            "the body is not valid JSON (line {}, column {})",
            e.line(),
            e.column()
        ))
    })?;
    let value = from_tree(&tree)?;
    Ok(JsonBody {
        value,
        tree,
        digest: hex::encode(Sha256::digest(bytes)),
    })
}

/// Reads a parsed tree as `T`, naming the field that does not fit.
pub fn from_tree<T: DeserializeOwned>(tree: &serde_json::Value) -> Result<T, Problem> {
    serde_path_to_error::deserialize(tree).map_err(|e| {
        let mut field = e.path().to_string();
        let message = redact_values(&e.inner().to_string());
        // An unknown field's path is the field itself.
        if let Some(rest) = message.strip_prefix("unknown field `") {
            if field == "." || field.is_empty() {
                field = rest.split('`').next().unwrap_or_default().to_owned();
            }
            return Problem::invalid(&field, format!("unknown field `{field}`"));
        }
        // A missing field is reported at its parent's path: name the field itself.
        if let Some(rest) = message.strip_prefix("missing field `") {
            if let Some(name) = rest.split('`').next() {
                field = if field == "." || field.is_empty() {
                    name.to_owned()
                } else {
                    format!("{field}.{name}")
                };
            }
            return Problem::invalid(&field, format!("the field `{field}` is required"));
        }
        let field = if field == "." { String::new() } else { field };
        let shown = if field.is_empty() { "body" } else { &field };
        Problem::invalid(shown, format!("`{shown}`: {message}"))
    })
}

/// The raw body (for signed webhooks), with the body limit answered as a problem (413).
pub struct RawBody(pub Bytes);

impl<S: Send + Sync> FromRequest<S> for RawBody {
    type Rejection = Problem;

    async fn from_request(req: Request, state: &S) -> Result<Self, Problem> {
        Bytes::from_request(req, state)
            .await
            .map(RawBody)
            .map_err(|e| {
                if e.status() == axum::http::StatusCode::PAYLOAD_TOO_LARGE {
                    Problem::too_large()
                } else {
                    Problem::malformed("the body could not be read")
                }
            })
    }
}

/// `Idempotency-Key`, when given.
pub struct IdempotencyKey(pub Option<String>);

impl<S: Send + Sync> FromRequestParts<S> for IdempotencyKey {
    type Rejection = Problem;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Problem> {
        match parts.headers.get("idempotency-key") {
            None => Ok(IdempotencyKey(None)),
            Some(v) => {
                let key = v.to_str().ok().map(str::trim).filter(|k| {
                    !k.is_empty() && k.len() <= 200 && k.bytes().all(|b| b.is_ascii_graphic())
                });
                match key {
                    Some(k) => Ok(IdempotencyKey(Some(k.to_owned()))),
                    None => Err(Problem::bad_parameter(
                        "Idempotency-Key",
                        "the Idempotency-Key header must be 1 to 200 printable characters",
                    )),
                }
            }
        }
    }
}

/// `If-Match: <version>` (quotes allowed, as for an ETag).
pub struct IfMatch(pub Option<u64>);

impl<S: Send + Sync> FromRequestParts<S> for IfMatch {
    type Rejection = Problem;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Problem> {
        match parts.headers.get(header::IF_MATCH) {
            None => Ok(IfMatch(None)),
            Some(v) => v
                .to_str()
                .ok()
                .map(|s| s.trim().trim_start_matches("W/").trim_matches('"'))
                .and_then(|s| s.parse().ok())
                .map(|n| IfMatch(Some(n)))
                .ok_or_else(|| {
                    Problem::bad_parameter("If-Match", "If-Match must be a widget version number")
                }),
        }
    }
}

/// `?min_position=N` on a query.
pub struct MinPosition(pub Option<u64>);

impl<S: Send + Sync> FromRequestParts<S> for MinPosition {
    type Rejection = Problem;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Problem> {
        let Some(query) = parts.uri.query() else {
            return Ok(MinPosition(None));
        };
        for (k, v) in url_pairs(query) {
            if k == "min_position" {
                return v.parse().map(|n| MinPosition(Some(n))).map_err(|_| {
                    Problem::bad_parameter("min_position", "min_position must be a log position")
                });
            }
        }
        Ok(MinPosition(None))
    }
}

/// The decoded `key=value` pairs of a query string.
pub fn url_pairs(query: &str) -> impl Iterator<Item = (String, String)> + '_ {
    query.split('&').filter(|p| !p.is_empty()).map(|p| {
        let (k, v) = p.split_once('=').unwrap_or((p, ""));
        (decode(k), decode(v))
    })
}

fn decode(s: &str) -> String {
    let s = s.replace('+', " ");
    percent_encoding::percent_decode_str(&s)
        .decode_utf8_lossy()
        .into_owned()
}

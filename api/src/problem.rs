//! Errors as `application/problem+json` (RFC 9457): `type`, `title`, `status`, `detail`, and
//! `field` when one input is to blame. A detail never carries a submitted value: it names
//! the field and says what is wrong with it.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use lightwidget_commands::{CommandError, Rejection};
use lightwidget_domain::account::AccountError;
use lightwidget_domain::breach::BreachError;
use lightwidget_domain::hold::HoldError;
use lightwidget_domain::order::OrderError;
use lightwidget_domain::policy::PolicyError;
use lightwidget_domain::staff::StaffError;
use lightwidget_domain::values::Invalid;
use lightwidget_domain::widget::WidgetError;
use lightwidget_store::StoreError;
use serde::Serialize;

#[derive(Clone, Debug, Serialize, utoipa::ToSchema)]
pub struct Problem {
    #[serde(rename = "type")]
    pub kind: String,
    pub title: String,
    pub status: u16,
    pub detail: String,
    /// The request field at fault (a JSON path such as `billing.email`), when there is one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
    /// Members a problem type adds (RFC 9457 §3.2), such as a receipt's `state`.
    #[serde(flatten)]
    #[schema(ignore)]
    pub extensions: Option<Box<serde_json::Map<String, serde_json::Value>>>,
    /// Seconds (a `u32`: it keeps the problem small enough to return by value).
    #[serde(skip)]
    retry_after: Option<u32>,
}

impl Problem {
    pub fn new(status: StatusCode, kind: &str, detail: impl Into<String>) -> Self {
        Problem {
            kind: format!("https://lightwidget.invalid/problems/{kind}"),
            title: status.canonical_reason().unwrap_or("Error").to_owned(),
            status: status.as_u16(),
            detail: detail.into(),
            field: None,
            extensions: None,
            retry_after: None,
        }
    }

    /// Adds a member of the problem type.
    pub fn with(mut self, key: &str, value: serde_json::Value) -> Self {
        self.extensions
            .get_or_insert_with(Default::default)
            .insert(key.to_owned(), value);
        self
    }

    pub fn field(mut self, field: impl Into<String>) -> Self {
        self.field = Some(field.into());
        self
    }

    pub fn with_status(mut self, status: StatusCode) -> Self {
        self.status = status.as_u16();
        self.title = status.canonical_reason().unwrap_or("Error").to_owned();
        self
    }

    pub fn status(&self) -> StatusCode {
        StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
    }

    /// 400: the body is not JSON, or not of the expected content type.
    pub fn malformed(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "malformed-request", detail)
    }

    /// 422: a field is unknown, missing, of the wrong type or fails validation.
    pub fn invalid(field: &str, detail: impl Into<String>) -> Self {
        Self::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid-field", detail).field(field)
    }

    /// 400: a query parameter or header is unknown or not of its form.
    pub fn bad_parameter(name: &str, detail: impl Into<String>) -> Self {
        Self::invalid(name, detail).with_status(StatusCode::BAD_REQUEST)
    }

    pub fn unauthorized(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "unauthorized", detail)
    }

    pub fn forbidden(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, "forbidden", detail)
    }

    pub fn not_found(what: &str) -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            "not-found",
            format!("no such {what}"),
        )
    }

    pub fn conflict(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::CONFLICT, "conflict", detail)
    }

    pub fn gone(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::GONE, "gone", detail)
    }

    pub fn too_large() -> Self {
        Self::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload-too-large",
            "the request body is larger than 1 MiB",
        )
    }

    /// 503 with `Retry-After`.
    pub fn unavailable(detail: impl Into<String>, retry_after: u64) -> Self {
        let mut p = Self::new(StatusCode::SERVICE_UNAVAILABLE, "unavailable", detail);
        p.retry_after = Some(u32::try_from(retry_after).unwrap_or(u32::MAX));
        p
    }

    /// Status 429: over a rate limit; try again after `retry_after` seconds (R17).
    pub fn too_many_requests(retry_after: u64) -> Self {
        let mut p = Self::new(
            StatusCode::TOO_MANY_REQUESTS,
            "rate-limited",
            "too many requests; nothing of this one was recorded",
        );
        p.retry_after = Some(u32::try_from(retry_after).unwrap_or(u32::MAX));
        p
    }

    /// Status 500: the cause is logged by the caller (without personal data); the client is told
    /// only that the request failed.
    pub fn internal() -> Self {
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "the server could not complete the request",
        )
    }
}

impl IntoResponse for Problem {
    fn into_response(self) -> Response {
        let status = self.status();
        let retry_after = self.retry_after;
        let body = serde_json::to_vec(&self).unwrap_or_default();
        let mut response = (status, body).into_response();
        response.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/problem+json"),
        );
        if let Some(s) = retry_after {
            if let Ok(v) = HeaderValue::from_str(&s.to_string()) {
                response.headers_mut().insert(header::RETRY_AFTER, v);
            }
        }
        // Missing, unknown or expired: the client must get a new token (RFC 6750).
        if status == StatusCode::UNAUTHORIZED {
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer error=\"invalid_token\""),
            );
        }
        response
    }
}

/// A store failure: an unreachable store is 503 with `Retry-After` (logged as a warning), a
/// conflict 409, anything else 500 (logged once, without data).
impl From<StoreError> for Problem {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Unavailable(_) => {
                tracing::warn!(error = %e, "store unavailable");
                Problem::unavailable("the store is unavailable; try again", 1)
            }
            StoreError::Conflict { .. } => {
                Problem::conflict("the resource kept changing; try again")
            }
            e => {
                tracing::error!(error = %e, "store error");
                Problem::internal()
            }
        }
    }
}

/// A value refused by its parser: 422 naming the field.
impl From<Invalid> for Problem {
    fn from(i: Invalid) -> Self {
        Problem::invalid(&i.field, i.message)
    }
}

/// A use case's failure, mapped once for every handler.
impl From<CommandError> for Problem {
    fn from(e: CommandError) -> Self {
        match e {
            CommandError::Invalid(i) => i.into(),
            CommandError::NotFound(what) => Problem::not_found(what),
            CommandError::Rejected(r) => rejection(r),
            CommandError::Stale { stream, current } => {
                let what = stream.split('-').next().unwrap_or("resource");
                Problem::conflict(format!("the {what} changed: its version is now {current}"))
                    .field("If-Match")
            }
            CommandError::Conflict { .. } => {
                Problem::conflict("the resource kept changing; try again")
            }
            CommandError::Busy { .. } => Problem::unavailable("busy; try again", 1),
            CommandError::Unreachable(name) => Problem::new(
                StatusCode::BAD_GATEWAY,
                &format!("{name}-unavailable"),
                format!("{name} could not be reached; try again"),
            ),
            CommandError::KeyReused => Problem::invalid(
                "Idempotency-Key",
                "this Idempotency-Key was used for another request",
            ),
            CommandError::Store(e) => e.into(),
            CommandError::Decode(e) => {
                tracing::error!(error = %e, "stored event could not be decoded");
                Problem::internal()
            }
            CommandError::NotListed(e) => {
                tracing::error!(error = %e, "a hand-over the processor registry does not list");
                Problem::internal()
            }
        }
    }
}

/// An aggregate's refusal: 404 for what does not exist, 403 for an owner who may not act,
/// 422 for a value the aggregate refuses, 409 for a state that does not allow it.
fn rejection(r: Rejection) -> Problem {
    match r {
        Rejection::Account(e) => match e {
            AccountError::NotFound => Problem::not_found("account"),
            AccountError::Blocked => Problem::forbidden("the account is blocked"),
            AccountError::Purged => Problem::gone("the account was purged"),
            other => Problem::conflict(other.to_string()),
        },
        Rejection::Widget(e) => match e {
            WidgetError::NotFound => Problem::not_found("widget"),
            WidgetError::AccountBlocked => Problem::forbidden("the account is blocked"),
            WidgetError::AccountQuarantined => Problem::forbidden("the account is in quarantine"),
            other => Problem::conflict(other.to_string()),
        },
        Rejection::Order(e) => match e {
            OrderError::NotFound => Problem::not_found("order"),
            OrderError::AccountBlocked => Problem::forbidden("the account is blocked"),
            OrderError::AccountNotActive => Problem::forbidden("the account is not active"),
            OrderError::NonPositiveAmount | OrderError::PaymentMismatch => {
                Problem::invalid("amount", e.to_string())
            }
            other => Problem::conflict(other.to_string()),
        },
        Rejection::Hold(e) => match e {
            HoldError::NotFound => Problem::not_found("hold"),
            HoldError::NoAccount => Problem::not_found("account").field("account_id"),
            HoldError::MissingCaseRef => Problem::invalid("case_ref", e.to_string()),
            other => Problem::conflict(other.to_string()),
        },
        Rejection::Staff(e) => match e {
            StaffError::AlreadyExists => Problem::conflict(
                "this Idempotency-Key already added a staff member; its token was shown then",
            )
            .field("Idempotency-Key"),
            StaffError::NotFound => Problem::not_found("staff member"),
            other => Problem::conflict(other.to_string()),
        },
        Rejection::Breach(e) => match e {
            BreachError::NotFound => Problem::not_found("breach"),
            BreachError::DetectedInTheFuture => Problem::invalid("detected_at", e.to_string()),
            BreachError::NotifiedInTheFuture | BreachError::NotifiedBeforeDetected => {
                Problem::invalid("notified_at", e.to_string())
            }
            other => Problem::conflict(other.to_string()),
        },
        Rejection::Policy(e) => match e {
            PolicyError::TooSoon => Problem::invalid("effective_at", e.to_string()),
            PolicyError::VersionTaken => Problem::conflict(e.to_string()).field("version"),
            other => Problem::conflict(other.to_string()),
        },
        Rejection::TransactionReused => Problem::conflict(r.to_string()).field("transaction_id"),
        other => Problem::conflict(other.to_string()),
    }
}

pub type ApiResult<T> = Result<T, Problem>;

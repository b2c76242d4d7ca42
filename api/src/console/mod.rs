//! The console (issue 24): HTML pages for staff under `/console`, drawn on the server with
//! maud (its `html!` escapes every value it is given). The pages sit over the same route
//! handlers as the API, so each page asks the same use case or query, with the same role
//! checks and the same errors, and shows its answer as HTML.
//!
//! - **Session**: `POST /console/login` takes a staff token and keeps it in an `HttpOnly`,
//!   `SameSite=Strict` cookie (`Secure` when the request came over TLS, as a proxy's
//!   `X-Forwarded-Proto: https` tells); every request checks it as a bearer token is checked,
//!   so a revoked or expired token ends the session.
//! - **CSRF**: every form carries a token derived from the session's token (SHA-256 over a
//!   label and the token): only a holder of the token can make it, and a page of another
//!   site cannot read it. A POST without it, or with another, is 403 and changes nothing. The
//!   sign-in form, before any session, carries a random token that must match a cookie of
//!   its own.

mod pages;

use crate::auth::Caller;
use crate::problem::Problem;
use crate::state::AppState;
use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use lightwidget_domain::event::{Principal, Role};
use maud::{html, Markup, DOCTYPE};
use sha2::{Digest, Sha256};
use std::collections::HashMap;

/// The session cookie: the staff member's token.
pub const SESSION_COOKIE: &str = "lw_console";
/// The sign-in form's CSRF cookie, before there is a session.
pub const LOGIN_COOKIE: &str = "lw_console_login";
/// The form field every POST of the console carries.
pub const CSRF_FIELD: &str = "csrf";

/// The console's routes.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/console", get(pages::home))
        .route("/console/login", get(pages::login_form).post(pages::login))
        .route("/console/logout", post(pages::logout))
        .route("/console/retention", get(pages::retention))
        .route("/console/subjects/{id}", get(pages::subject))
        .route("/console/holds", post(pages::place_hold))
        .route("/console/holds/{id}/release", post(pages::release_hold))
        .route("/console/purges", get(pages::purges))
        .route("/console/breaches", get(pages::breaches))
        .route("/console/breaches/{id}/notified", post(pages::notified))
        .route("/console/audit", get(pages::audit))
        .route("/console/audit/events", get(pages::audit_events))
        .route("/console/security", get(pages::security))
        .route("/console/security/{id}/block", post(pages::block))
        .route("/console/security/{id}/unblock", post(pages::unblock))
}

/// A signed-in staff member: the caller of the session's token, and the CSRF token its
/// forms carry.
pub struct Session {
    pub caller: Caller,
    pub csrf: String,
}

impl Session {
    fn role(&self) -> Role {
        self.caller.role
    }

    fn may(&self, role: Role) -> bool {
        self.caller.role.grants(role)
    }

    /// Checks a posted form's CSRF token: 403 and nothing done when it is missing or wrong.
    pub fn check(&self, form: &HashMap<String, String>) -> Result<(), Page> {
        match form.get(CSRF_FIELD) {
            Some(t) if same(t.as_bytes(), self.csrf.as_bytes()) => Ok(()),
            _ => Err(Page::problem(
                Some(self),
                Problem::forbidden("the form's CSRF token is missing or wrong; nothing was done"),
            )),
        }
    }
}

/// The CSRF token of a session's token.
pub fn csrf_of(token: &str) -> String {
    let mut h = Sha256::new();
    h.update(b"lightwidget console csrf\n");
    h.update(token.as_bytes());
    hex::encode(h.finalize())
}

/// Equal bytes, compared in a time that does not depend on where they differ.
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |d, (x, y)| d | (x ^ y)) == 0
}

/// A cookie of the request, by name.
pub fn cookie(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.to_owned())
        .filter(|v| !v.is_empty())
}

/// A `Set-Cookie` value for the console: `HttpOnly`, `SameSite=Strict`, for `/console` only,
/// `Secure` when the request came over TLS; an empty value with `Max-Age=0` removes it.
pub fn set_cookie(headers: &HeaderMap, name: &str, value: &str) -> HeaderValue {
    let tls = headers
        .get("x-forwarded-proto")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("https"));
    let secure = if tls { "; Secure" } else { "" };
    let age = if value.is_empty() { "; Max-Age=0" } else { "" };
    HeaderValue::from_str(&format!(
        "{name}={value}; Path=/console; HttpOnly; SameSite=Strict{secure}{age}"
    ))
    .unwrap_or_else(|_| HeaderValue::from_static("invalid=; Max-Age=0"))
}

impl FromRequestParts<AppState> for Session {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, app: &AppState) -> Result<Self, Response> {
        let Some(token) = cookie(&parts.headers, SESSION_COOKIE) else {
            return Err(to_login(&parts.headers));
        };
        match Caller::of_token(app, &token, false).await {
            Ok(caller) if matches!(caller.principal, Principal::Staff { .. }) => Ok(Session {
                csrf: csrf_of(&token),
                caller,
            }),
            Ok(_) => Err(Page::problem(
                None,
                Problem::forbidden("the console is for staff; owners have /account"),
            )
            .into_response()),
            Err(p) if p.status == 401 => Err(to_login(&parts.headers)),
            Err(p) => Err(Page::problem(None, p).into_response()),
        }
    }
}

/// To the sign-in page, the session's cookie removed.
fn to_login(headers: &HeaderMap) -> Response {
    (
        StatusCode::SEE_OTHER,
        [
            (header::LOCATION, HeaderValue::from_static("/console/login")),
            (header::SET_COOKIE, set_cookie(headers, SESSION_COOKIE, "")),
        ],
    )
        .into_response()
}

/// A page of the console: its status and its HTML.
pub struct Page {
    status: StatusCode,
    title: String,
    body: Markup,
    nav: Option<(Role, String)>,
}

impl Page {
    /// A page for a signed-in staff member.
    pub fn new(session: &Session, title: &str, body: Markup) -> Self {
        Page {
            status: StatusCode::OK,
            title: title.to_owned(),
            body,
            nav: Some((session.role(), session.csrf.clone())),
        }
    }

    /// An error page with the problem's status and detail (details never carry personal
    /// data).
    pub fn problem(session: Option<&Session>, p: Problem) -> Self {
        let body = html! {
            p role="alert" class="error" { strong { (p.title) } ": " (p.detail) }
            @if let Some(field) = &p.field { p { "Field: " code { (field) } } }
        };
        Page {
            status: p.status(),
            title: p.title.clone(),
            body,
            nav: session.map(|s| (s.role(), s.csrf.clone())),
        }
    }

    pub fn with_status(mut self, status: StatusCode) -> Self {
        self.status = status;
        self
    }
}

/// The console's style: readable without it; contrast at least 4.5:1 and a visible focus.
const STYLE: &str = "body{font:16px/1.5 system-ui,sans-serif;margin:0;color:#1a1a1a;background:#fff}\
header{background:#14325c;color:#fff;padding:.5rem 1rem;display:flex;flex-wrap:wrap;gap:1rem;align-items:center}\
header a{color:#fff}nav ul{list-style:none;display:flex;flex-wrap:wrap;gap:1rem;margin:0;padding:0}\
main{padding:1rem;max-width:80rem}table{border-collapse:collapse;width:100%}\
th,td{border:1px solid #767676;padding:.25rem .5rem;text-align:left;vertical-align:top}\
a{color:#0b4f9c}:focus-visible{outline:3px solid #c2410c;outline-offset:2px}\
.error{color:#9b1c1c}.overdue{color:#9b1c1c;font-weight:bold}.state-held{font-weight:bold;color:#7a3e00}\
form.inline{display:inline}label{display:block;margin:.25rem 0}\
input,select,button{font:inherit;padding:.2rem .4rem}button{cursor:pointer}";

impl IntoResponse for Page {
    fn into_response(self) -> Response {
        let nav = self.nav.as_ref().map(|(role, csrf)| {
            let may = |r: Role| role.grants(r);
            html! {
                nav aria-label="Console" { ul {
                    li { a href="/console" { "Home" } }
                    @if may(Role::Compliance) {
                        li { a href="/console/retention" { "Retention" } }
                        li { a href="/console/breaches" { "Breaches" } }
                    }
                    @if may(Role::Compliance) || may(Role::Auditor) {
                        li { a href="/console/purges" { "Purges" } }
                    }
                    @if may(Role::Auditor) { li { a href="/console/audit" { "Audit" } } }
                    @if may(Role::Security) { li { a href="/console/security" { "Security" } } }
                } }
                form class="inline" method="post" action="/console/logout" {
                    input type="hidden" name=(CSRF_FIELD) value=(csrf);
                    button type="submit" { "Sign out" }
                }
            }
        });
        let markup = html! {
            (DOCTYPE)
            html lang="en" {
                head {
                    meta charset="utf-8";
                    meta name="viewport" content="width=device-width, initial-scale=1";
                    title { (self.title) " · LightWidget console" }
                    style { (maud::PreEscaped(STYLE)) }
                }
                body {
                    header { strong { "LightWidget console" } @if let Some(nav) = nav { (nav) } }
                    main { h1 { (self.title) } (self.body) }
                }
            }
        };
        let mut r = (self.status, markup).into_response();
        let h = r.headers_mut();
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        h.insert(
            header::HeaderName::from_static("x-frame-options"),
            HeaderValue::from_static("DENY"),
        );
        h.insert(
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static(
                "default-src 'none'; style-src 'unsafe-inline'; img-src 'self'; form-action 'self'; frame-ancestors 'none'",
            ),
        );
        r
    }
}

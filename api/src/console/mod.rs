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

mod account;
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

/// Where a session lives: its pages' path, its cookie (the token) and its sign-in form's
/// CSRF cookie (before there is a session).
#[derive(Clone, Copy, Debug)]
pub struct Area {
    pub path: &'static str,
    pub session: &'static str,
    pub login: &'static str,
}

/// The staff console.
pub const CONSOLE: Area = Area {
    path: "/console",
    session: "lw_console",
    login: "lw_console_login",
};

/// An owner's account pages.
pub const ACCOUNT: Area = Area {
    path: "/account",
    session: "lw_account",
    login: "lw_account_login",
};
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
        .route("/account", get(account::home))
        .route(
            "/account/login",
            get(account::login_form).post(account::login),
        )
        .route("/account/callback", get(account::callback))
        .route("/account/logout", post(account::logout))
        .route("/account/export", get(account::export))
        .route("/account/delete", post(account::delete))
        .route("/account/restore", post(account::restore))
        .route("/account/widgets/{id}/delete", post(account::delete_widget))
        .route(
            "/account/widgets/{id}/restore",
            post(account::restore_widget),
        )
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

    /// The page of a problem met on this session's behalf.
    pub fn fail(&self) -> impl Fn(Problem) -> Page + '_ {
        move |p| Page::problem(Some(self), p)
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

impl Area {
    /// A `Set-Cookie` value for this area: `HttpOnly`, `SameSite=Strict`, for its path only,
    /// `Secure` when the request came over TLS; an empty value with `Max-Age=0` removes it.
    pub fn set_cookie(self, headers: &HeaderMap, name: &str, value: &str) -> HeaderValue {
        let tls = headers
            .get("x-forwarded-proto")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.eq_ignore_ascii_case("https"));
        let secure = if tls { "; Secure" } else { "" };
        let age = if value.is_empty() { "; Max-Age=0" } else { "" };
        HeaderValue::from_str(&format!(
            "{name}={value}; Path={}; HttpOnly; SameSite=Strict{secure}{age}",
            self.path
        ))
        .unwrap_or_else(|_| HeaderValue::from_static("invalid=; Max-Age=0"))
    }

    /// To the sign-in page, the session's cookie removed.
    fn to_login(self, headers: &HeaderMap) -> Response {
        let login = format!("{}/login", self.path);
        (
            StatusCode::SEE_OTHER,
            [
                (
                    header::LOCATION,
                    HeaderValue::from_str(&login).unwrap_or(HeaderValue::from_static("/")),
                ),
                (
                    header::SET_COOKIE,
                    self.set_cookie(headers, self.session, ""),
                ),
            ],
        )
            .into_response()
    }

    /// The sign-in form's CSRF token: the one its cookie holds, or a new one (with the
    /// cookie to set).
    pub fn login_csrf(self, headers: &HeaderMap) -> (String, HeaderValue) {
        let csrf = cookie(headers, self.login).unwrap_or_else(|| {
            format!(
                "{}{}",
                uuid::Uuid::new_v4().simple(),
                uuid::Uuid::new_v4().simple()
            )
        });
        let set = self.set_cookie(headers, self.login, &csrf);
        (csrf, set)
    }

    /// Whether `sent` is the sign-in form's CSRF token (its cookie's): 403 when not.
    pub fn check_login(self, headers: &HeaderMap, sent: Option<&str>) -> Result<String, Page> {
        let expected = cookie(headers, self.login).unwrap_or_default();
        match sent {
            Some(t) if !expected.is_empty() && same(t.as_bytes(), expected.as_bytes()) => {
                Ok(expected)
            }
            _ => Err(Page::problem(
                None,
                Problem::forbidden("the form's CSRF token is missing or wrong; nothing was done"),
            )),
        }
    }

    /// Signed in with `token`: to the area's first page, the session's cookie set and the
    /// sign-in form's removed.
    pub fn signed_in(self, headers: &HeaderMap, token: &str) -> Response {
        (
            StatusCode::SEE_OTHER,
            [(header::LOCATION, self.path)],
            axum::response::AppendHeaders([
                (
                    header::SET_COOKIE,
                    self.set_cookie(headers, self.session, token),
                ),
                (header::SET_COOKIE, self.set_cookie(headers, self.login, "")),
            ]),
        )
            .into_response()
    }

    /// Signed out: to the sign-in page, the session's cookie removed.
    pub fn signed_out(self, headers: &HeaderMap) -> Response {
        self.to_login(headers)
    }

    /// The caller of the session's cookie, and its CSRF token; to the sign-in page when
    /// there is none or its token no longer works.
    async fn session(self, parts: &Parts, app: &AppState) -> Result<Session, Response> {
        let Some(token) = cookie(&parts.headers, self.session) else {
            return Err(self.to_login(&parts.headers));
        };
        match Caller::of_token(app, &token, false).await {
            Ok(caller) => Ok(Session {
                csrf: csrf_of(&token),
                caller,
            }),
            Err(p) if p.status == 401 => Err(self.to_login(&parts.headers)),
            Err(p) => Err(Page::problem(None, p).into_response()),
        }
    }
}

/// A staff member's console session.
impl FromRequestParts<AppState> for Session {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, app: &AppState) -> Result<Self, Response> {
        let session = CONSOLE.session(parts, app).await?;
        if matches!(session.caller.principal, Principal::Staff { .. }) {
            Ok(session)
        } else {
            Err(Page::problem(
                None,
                Problem::forbidden("the console is for staff; owners have /account"),
            )
            .into_response())
        }
    }
}

/// An account owner's session on `/account`.
pub struct OwnerSession(pub Session);

impl FromRequestParts<AppState> for OwnerSession {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, app: &AppState) -> Result<Self, Response> {
        let session = ACCOUNT.session(parts, app).await?;
        if session.caller.role == Role::Owner {
            Ok(OwnerSession(session))
        } else {
            Err(Page::problem(
                None,
                Problem::forbidden("these pages are for account owners; staff have /console"),
            )
            .into_response())
        }
    }
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
        let owner = matches!(self.nav, Some((Role::Owner, _)));
        let nav = self.nav.as_ref().map(|(role, csrf)| {
            let may = |r: Role| role.grants(r);
            if *role == Role::Owner {
                return html! {
                    nav aria-label="Account" { ul { li { a href="/account" { "My account" } } } }
                    form class="inline" method="post" action="/account/logout" {
                        input type="hidden" name=(CSRF_FIELD) value=(csrf);
                        button type="submit" { "Sign out" }
                    }
                };
            }
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
                    title { (self.title) " · LightWidget " @if owner { "account" } @else { "console" } }
                    style { (maud::PreEscaped(STYLE)) }
                }
                body {
                    header {
                        strong { "LightWidget " @if owner { "account" } @else { "console" } }
                        @if let Some(nav) = nav { (nav) }
                    }
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

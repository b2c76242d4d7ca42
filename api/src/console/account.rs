//! `/account`: an owner's pages after Instagram sign-in (issue 24): their widgets with status
//! and quarantine dates, the export of their data, deleting and restoring the account and its
//! widgets with the dates the policy gives, and the breaches that concern them. Over the
//! API's own handlers, as the console is.

use super::pages::{answer, body, csrf_input, enc, field, min_position, pairs, see_other, Fields};
use super::{OwnerSession, Page, ACCOUNT, CSRF_FIELD};
use crate::extract::{IdempotencyKey, IfMatch, MinPosition};
use crate::problem::Problem;
use crate::routes::{accounts, audit, widgets};
use crate::state::AppState;
use axum::extract::{Form, Path, RawQuery, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use maud::html;
use serde_json::json;

fn login_page(app: &AppState, csrf: &str, status: StatusCode, error: Option<&str>) -> Page {
    let instagram = app
        .instagram_authorize
        .as_ref()
        .map(|url| format!("{url}&state={}", enc(csrf)));
    Page {
        status,
        title: "Sign in".into(),
        nav: None,
        body: html! {
            @if let Some(e) = error { p role="alert" class="error" { (e) } }
            @if let Some(url) = instagram {
                p { a href=(url) { "Sign in with Instagram" } }
            } @else {
                p { "Instagram is not configured here: sign in with a demo code, " code { "demo:" i { "name" } } "." }
            }
            form method="post" action="/account/login" {
                input type="hidden" name=(CSRF_FIELD) value=(csrf);
                label for="code" { "Sign-in code" }
                input id="code" name="code" autocomplete="off" required;
                p { button type="submit" { "Sign in" } }
            }
        },
    }
}

/// The sign-in page: Instagram's authorization link (its `state` the form's CSRF token), or
/// a code typed in (demo codes).
pub async fn login_form(State(app): State<AppState>, headers: HeaderMap) -> Response {
    let (csrf, set) = ACCOUNT.login_csrf(&headers);
    let mut r = login_page(&app, &csrf, StatusCode::OK, None).into_response();
    r.headers_mut().insert(header::SET_COOKIE, set);
    r
}

/// Signs in with an Instagram code through the API's sign-in; the session holds the token.
async fn sign_in(app: AppState, headers: &HeaderMap, expected: &str, code: &str) -> Response {
    let refused = |p: Problem| {
        let why = format!("Sign-in refused: {}", p.detail);
        login_page(&app, expected, p.status(), Some(&why)).into_response()
    };
    let request = match body(json!({ "code": code })) {
        Ok(b) => b,
        Err(p) => return refused(p),
    };
    match accounts::sign_in(State(app.clone()), request).await {
        Ok(Json(signed_in)) => ACCOUNT.signed_in(headers, &signed_in.token),
        Err(p) => refused(p),
    }
}

pub async fn login(
    State(app): State<AppState>,
    headers: HeaderMap,
    Form(f): Form<Fields>,
) -> Result<Response, Page> {
    let expected = ACCOUNT.check_login(&headers, f.get(CSRF_FIELD).map(String::as_str))?;
    let code = field(&f, "code").unwrap_or_default().to_owned();
    Ok(sign_in(app, &headers, &expected, &code).await)
}

/// Instagram's redirect back: its `state` must be the sign-in form's CSRF token.
pub async fn callback(
    State(app): State<AppState>,
    headers: HeaderMap,
    RawQuery(q): RawQuery,
) -> Result<Response, Page> {
    let f = pairs(&q);
    let expected = ACCOUNT.check_login(&headers, field(&f, "state"))?;
    let code = field(&f, "code").unwrap_or_default().to_owned();
    Ok(sign_in(app, &headers, &expected, &code).await)
}

/// Signs out: the token is revoked, as `DELETE /v1/auth/session` does, and the cookie goes.
pub async fn logout(
    State(app): State<AppState>,
    OwnerSession(session): OwnerSession,
    headers: HeaderMap,
    Form(f): Form<Fields>,
) -> Result<Response, Page> {
    session.check(&f)?;
    accounts::sign_out(State(app), session.caller.clone())
        .await
        .map_err(session.fail())?;
    Ok(ACCOUNT.signed_out(&headers))
}

/// The owner's account: status, widgets, the export, deletion and restore, breaches.
pub async fn home(
    State(app): State<AppState>,
    OwnerSession(session): OwnerSession,
    RawQuery(q): RawQuery,
) -> Result<Page, Page> {
    let f = pairs(&q);
    let min = min_position(&session, &f)?;
    let me = answer(
        &session,
        accounts::me(State(app), session.caller.clone(), MinPosition(min)).await,
    )?;
    let quarantined = me.status == "quarantined";
    Ok(Page::new(
        &session,
        "My account",
        html! {
            p { "Signed in as " strong { (me.username.as_deref().unwrap_or("(name erased)")) } ". Account status: "
                strong id="account-status" { (me.status) } "." }
            @if let Some(until) = &me.quarantine_until {
                p id="account-quarantine" { "Your account is deleted and will be erased on " strong { (until) }
                    ". Until then you can restore it." }
            }
            h2 { "Widgets" }
            @if me.widgets.is_empty() { p { "No widgets yet." } }
            @else {
                table {
                    caption { "Your widgets" }
                    thead { tr { th scope="col" { "Title" } th scope="col" { "Layout" } th scope="col" { "Plan" }
                        th scope="col" { "Status" } th scope="col" { "Erased on" } th scope="col" { "Action" } } }
                    tbody {
                        @for w in &me.widgets {
                            @let title = w.title.as_deref().unwrap_or("(untitled)");
                            tr data-widget=(w.widget_id) {
                                td { (title) } td { (w.layout.as_deref().unwrap_or("—")) } td { (w.plan) }
                                td class="widget-status" { (w.status) }
                                td { (w.quarantine_until.as_deref().unwrap_or("—")) }
                                td {
                                    @if w.status == "active" {
                                        form class="inline" method="post" action=(format!("/account/widgets/{}/delete", w.widget_id)) {
                                            (csrf_input(&session))
                                            button type="submit" aria-label=(format!("Delete widget {title}")) { "Delete" }
                                        }
                                    } @else if w.status == "quarantined" {
                                        form class="inline" method="post" action=(format!("/account/widgets/{}/restore", w.widget_id)) {
                                            (csrf_input(&session))
                                            button type="submit" aria-label=(format!("Restore widget {title}")) { "Restore" }
                                        }
                                    }
                                }
                            }
                        }
                    }
                }
            }
            h2 { "Your data" }
            p { a href="/account/export" download="lightwidget-export.json" { "Download everything held about you (JSON)" } }
            h2 { "Breaches that concern you" }
            @if me.breaches.is_empty() { p { "None." } }
            @else {
                ul { @for b in &me.breaches { li { (b.detected_at) ": " (b.description) } } }
            }
            h2 { "Delete or restore" }
            @if quarantined {
                form method="post" action="/account/restore" {
                    (csrf_input(&session))
                    button type="submit" { "Restore my account" }
                }
            } @else if me.status == "active" {
                p { "Deleting your account puts it and every widget in a 90-day quarantine; then its data is erased." }
                form method="post" action="/account/delete" {
                    (csrf_input(&session))
                    button type="submit" { "Delete my account" }
                }
            }
        },
    ))
}

/// The owner's data as JSON, as `GET /v1/me/export` answers it, to download.
pub async fn export(
    State(app): State<AppState>,
    OwnerSession(session): OwnerSession,
) -> Result<Response, Page> {
    // Everything the log holds now: the read model is waited for up to the head.
    let head = app
        .store
        .head()
        .await
        .map_err(|e| session.fail()(e.into()))?;
    let data = answer(
        &session,
        audit::export(
            State(app),
            session.caller.clone(),
            MinPosition(Some(head.position)),
        )
        .await,
    )?;
    Ok((
        [
            (header::CONTENT_TYPE, "application/json"),
            (
                header::CONTENT_DISPOSITION,
                "attachment; filename=\"lightwidget-export.json\"",
            ),
            (header::CACHE_CONTROL, "no-store"),
        ],
        Json(data),
    )
        .into_response())
}

/// Deletes the account: the page tells the erasure date and the receipt's address (shown
/// only here, as the API shows it only once).
pub async fn delete(
    State(app): State<AppState>,
    OwnerSession(session): OwnerSession,
    Form(f): Form<Fields>,
) -> Result<Page, Page> {
    session.check(&f)?;
    let (_, Json(done)) = accounts::delete_me(State(app), session.caller.clone())
        .await
        .map_err(session.fail())?;
    Ok(Page::new(
        &session,
        "Account deleted",
        html! {
            p id="deleted" { "Your account and its widgets are in quarantine until " strong { (done.quarantine_until) }
                "; then their data is erased. You can restore the account until then." }
            p { "Keep this address: once the erasure is done it answers a signed proof of it. It is shown only now." }
            p { code id="receipt" { (done.erasure_receipt_url) } }
            p { a href=(format!("/account?min_position={}", done.position)) { "Back to my account" } }
        },
    ))
}

pub async fn restore(
    State(app): State<AppState>,
    OwnerSession(session): OwnerSession,
    Form(f): Form<Fields>,
) -> Result<Response, Page> {
    session.check(&f)?;
    let Json(r) = accounts::restore_me(State(app), session.caller.clone())
        .await
        .map_err(session.fail())?;
    Ok(see_other(&format!("/account?min_position={}", r.position)))
}

pub async fn delete_widget(
    State(app): State<AppState>,
    OwnerSession(session): OwnerSession,
    Path(id): Path<String>,
    Form(f): Form<Fields>,
) -> Result<Response, Page> {
    session.check(&f)?;
    let (_, Json(r)) =
        widgets::delete_widget(State(app), session.caller.clone(), Path(id), IfMatch(None))
            .await
            .map_err(session.fail())?;
    Ok(see_other(&format!("/account?min_position={}", r.position)))
}

pub async fn restore_widget(
    State(app): State<AppState>,
    OwnerSession(session): OwnerSession,
    Path(id): Path<String>,
    Form(f): Form<Fields>,
) -> Result<Response, Page> {
    session.check(&f)?;
    let Json(r) = widgets::restore_widget(
        State(app),
        session.caller.clone(),
        Path(id),
        IdempotencyKey(None),
    )
    .await
    .map_err(session.fail())?;
    Ok(see_other(&format!("/account?min_position={}", r.position)))
}

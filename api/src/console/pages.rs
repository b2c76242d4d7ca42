//! The console's pages. Each one calls the API's own handler for what it shows or does, so
//! the role checks, the validation and the use cases are the API's.

use super::{Page, Session, CONSOLE, CSRF_FIELD};
use crate::auth::Caller;
use crate::extract::{url_pairs, IdempotencyKey, JsonBody, MinPosition};
use crate::problem::{ApiResult, Problem};
use crate::routes::{audit, breaches, retention, staff};
use crate::state::AppState;
use axum::extract::{Form, Path, RawQuery, State};
use axum::http::{header, HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::Json;
use chrono::{DateTime, Duration, Utc};
use lightwidget_domain::event::{Principal, Role};
use lightwidget_domain::Category;
use maud::{html, Markup};
use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
use serde::de::DeserializeOwned;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use std::collections::HashMap;

pub(super) type Fields = HashMap<String, String>;

/// Items shown on a page of the retention queue.
pub const QUEUE_PAGE: usize = 50;

/// The query's pairs, the last of each name kept.
pub(super) fn pairs(q: &Option<String>) -> Fields {
    url_pairs(q.as_deref().unwrap_or_default()).collect()
}

/// A non-empty field.
pub(super) fn field<'a>(f: &'a Fields, name: &str) -> Option<&'a str> {
    f.get(name).map(|v| v.trim()).filter(|v| !v.is_empty())
}

/// What a value keeps unencoded in a query or a path segment: ids and `kind:id` subjects
/// read as themselves.
const KEEP: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~')
    .remove(b':');

pub(super) fn enc(v: &str) -> String {
    utf8_percent_encode(v, KEEP).to_string()
}

pub(super) fn uri(s: &str) -> Result<Uri, Problem> {
    s.parse()
        .map_err(|_| Problem::malformed("the page's query could not be formed"))
}

/// An answer of an API handler, or the console's page of its problem.
pub(super) fn answer<T>(session: &Session, r: ApiResult<Json<T>>) -> Result<T, Page> {
    r.map(|Json(v)| v)
        .map_err(|p| Page::problem(Some(session), p))
}

/// A form's fields as the JSON body an API handler takes (the same validation, field names
/// and idempotency fingerprint as a JSON request).
pub(super) fn body<T: DeserializeOwned>(tree: Value) -> Result<JsonBody<T>, Problem> {
    let text = tree.to_string();
    let value = serde_path_to_error::deserialize::<_, T>(&tree).map_err(|e| {
        let path = e.path().to_string();
        Problem::invalid(&path, format!("{path} is missing or not valid"))
    })?;
    Ok(JsonBody {
        value,
        tree,
        digest: hex::encode(Sha256::digest(text.as_bytes())),
    })
}

/// 303 to `to` (a console path the server formed).
pub(super) fn see_other(to: &str) -> Response {
    (StatusCode::SEE_OTHER, [(header::LOCATION, to.to_owned())]).into_response()
}

pub(super) fn csrf_input(session: &Session) -> Markup {
    html! { input type="hidden" name=(CSRF_FIELD) value=(session.csrf); }
}

// ---------------------------------------------------------------------------------------
// Sign-in and sign-out

fn login_page(csrf: &str, status: StatusCode, error: Option<&str>) -> Page {
    Page {
        status,
        title: "Sign in".into(),
        nav: None,
        body: html! {
            @if let Some(e) = error { p role="alert" class="error" { (e) } }
            form method="post" action="/console/login" {
                input type="hidden" name=(CSRF_FIELD) value=(csrf);
                label for="token" { "Staff token" }
                input id="token" name="token" type="password" autocomplete="off" required;
                p { button type="submit" { "Sign in" } }
            }
        },
    }
}

/// The sign-in form, with a fresh CSRF token in a cookie of its own.
pub async fn login_form(headers: HeaderMap) -> Response {
    let (csrf, set) = CONSOLE.login_csrf(&headers);
    let mut r = login_page(&csrf, StatusCode::OK, None).into_response();
    r.headers_mut().insert(header::SET_COOKIE, set);
    r
}

/// Signs in with a staff token: the session cookie holds it from then on.
pub async fn login(
    State(app): State<AppState>,
    headers: HeaderMap,
    Form(f): Form<Fields>,
) -> Result<Response, Page> {
    let expected = CONSOLE.check_login(&headers, f.get(CSRF_FIELD).map(String::as_str))?;
    let token = field(&f, "token").unwrap_or_default();
    let refused = |why: &str| login_page(&expected, StatusCode::UNAUTHORIZED, Some(why));
    if token.is_empty() {
        return Err(refused("Enter your staff token."));
    }
    match Caller::of_token(&app, token, true).await {
        Ok(c) if matches!(c.principal, Principal::Staff { .. }) => {
            Ok(CONSOLE.signed_in(&headers, token))
        }
        Ok(_) => Err(refused(
            "That token is an owner's: the console is for staff.",
        )),
        Err(p) if p.status == 401 => Err(refused("That token is unknown, revoked or expired.")),
        Err(p) => Err(Page::problem(None, p)),
    }
}

/// Signs out: the session's cookie goes (the token itself stays valid for the API).
pub async fn logout(session: Session, headers: HeaderMap, Form(f): Form<Fields>) -> Response {
    match session.check(&f) {
        Ok(()) => CONSOLE.signed_out(&headers),
        Err(p) => p.into_response(),
    }
}

// ---------------------------------------------------------------------------------------
// Home

pub async fn home(State(app): State<AppState>, session: Session) -> Result<Page, Page> {
    let chart = if session.may(Role::Compliance) {
        Some(chart(&app, &session).await?)
    } else {
        None
    };
    let who = match session.caller.principal {
        Principal::Staff { staff_id } => staff_id.to_string(),
        Principal::Owner { account_id } => account_id.to_string(),
    };
    Ok(Page::new(
        &session,
        "Home",
        html! {
            p { "Signed in as staff member " code { (who) } " with the role " strong { (session.role().as_str()) } "." }
            @if let Some(c) = chart { (c) }
        },
    ))
}

/// Weeks shown on each side of now in the chart.
const WEEKS: i64 = 52;

/// Purges done per week over the last 12 months and items coming due per week over the next
/// 12 months, as an inline SVG drawn here, with the same figures in a table.
async fn chart(app: &AppState, session: &Session) -> Result<Markup, Page> {
    let now = app.clock.now();
    let week = Duration::days(7);
    let mut done = vec![0u64; WEEKS as usize];
    let mut due = vec![0u64; WEEKS as usize];
    let ahead = lightwidget_store::format_time(now + week * WEEKS as i32);
    let items = answer(
        session,
        retention::list(
            State(app.clone()),
            session.caller.clone(),
            MinPosition(None),
            uri(&format!(
                "/v1/compliance/retention?due_before={}",
                enc(&ahead)
            ))
            .map_err(|p| Page::problem(Some(session), p))?,
        )
        .await,
    )?;
    for item in &items.items {
        let Some(at) = item.due_at.as_deref().and_then(parse_time) else {
            continue;
        };
        if item.state == "held" || item.state == "purged" {
            continue;
        }
        let w = ((at - now).num_seconds().max(0) / week.num_seconds()) as usize;
        if let Some(n) = due.get_mut(w) {
            *n += 1;
        }
    }
    let since = lightwidget_store::format_time(now - week * WEEKS as i32);
    let mut after = 0u64;
    loop {
        let page = answer(
            session,
            retention::purges(
                State(app.clone()),
                session.caller.clone(),
                uri(&format!(
                    "/v1/compliance/purges?since={}&after={after}",
                    enc(&since)
                ))
                .map_err(|p| Page::problem(Some(session), p))?,
            )
            .await,
        )?;
        for p in &page.purges {
            if p.event_type != "PersonalDataErased" {
                continue;
            }
            if let Some(at) = parse_time(&p.recorded_at) {
                let back = ((now - at).num_seconds().max(0) / week.num_seconds()) as usize;
                if let Some(n) = done.get_mut((WEEKS as usize).saturating_sub(back + 1)) {
                    *n += 1;
                }
            }
        }
        match page.next_after {
            Some(n) => after = n,
            None => break,
        }
    }
    Ok(draw(&done, &due))
}

pub(super) fn parse_time(s: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(s)
        .ok()
        .map(|t| t.with_timezone(&Utc))
}

/// The chart: bars of purges done (left of now) and items coming due (right of now).
fn draw(done: &[u64], due: &[u64]) -> Markup {
    let (w, h, bar) = (840.0, 200.0, 8.0);
    let top = done.iter().chain(due).copied().max().unwrap_or(0).max(1) as f64;
    let height = |n: u64| (n as f64 / top) * (h - 40.0);
    let total_done: u64 = done.iter().sum();
    let total_due: u64 = due.iter().sum();
    html! {
        h2 id="chart-title" { "Purges done and items coming due, per week" }
        svg role="img" aria-labelledby="chart-title chart-desc" width=(w) height=(h)
            viewBox=(format!("0 0 {w} {h}")) xmlns="http://www.w3.org/2000/svg" {
            desc id="chart-desc" {
                (total_done) " personal-data purges in the last 12 months; "
                (total_due) " items coming due in the next 12 months."
            }
            @for (i, n) in done.iter().enumerate() {
                @let bh = height(*n);
                rect x=(i as f64 * bar) y=(h - 20.0 - bh) width=(bar - 1.0) height=(bh) fill="#14325c" {
                    title { "week " (i as i64 - WEEKS) ": " (n) " purged" }
                }
            }
            @for (i, n) in due.iter().enumerate() {
                @let bh = height(*n);
                rect x=((WEEKS as usize + i) as f64 * bar + 8.0) y=(h - 20.0 - bh) width=(bar - 1.0) height=(bh) fill="#c2410c" {
                    title { "week +" (i) ": " (n) " coming due" }
                }
            }
            line x1=(WEEKS as f64 * bar + 4.0) y1="0" x2=(WEEKS as f64 * bar + 4.0) y2=(h - 20.0) stroke="#1a1a1a" {}
            text x="0" y=(h - 4.0) font-size="12" fill="#1a1a1a" { "12 months ago" }
            text x=(WEEKS as f64 * bar - 10.0) y=(h - 4.0) font-size="12" fill="#1a1a1a" { "now" }
            text x=(w - 110.0) y=(h - 4.0) font-size="12" fill="#1a1a1a" { "in 12 months" }
        }
        p { "Dark blue: purges done (" (total_done) "). Orange: items coming due (" (total_due) ")." }
    }
}

// ---------------------------------------------------------------------------------------
// Retention

const STATES: [&str; 5] = ["active", "quarantined", "held", "due", "purged"];

/// The retention queue: filtered by account, category, state and due date, paged.
pub async fn retention(
    State(app): State<AppState>,
    session: Session,
    RawQuery(q): RawQuery,
) -> Result<Page, Page> {
    let f = pairs(&q);
    let mut api = Vec::new();
    for name in ["account_id", "category", "state"] {
        if let Some(v) = field(&f, name) {
            api.push(format!("{name}={}", enc(v)));
        }
    }
    if let Some(v) = field(&f, "due_before") {
        // A date input gives a day: the start of that day, UTC.
        let t = if v.len() == 10 {
            format!("{v}T00:00:00Z")
        } else {
            v.to_owned()
        };
        api.push(format!("due_before={}", enc(&t)));
    }
    let min = min_position(&session, &f)?;
    let page_no: usize = field(&f, "page")
        .and_then(|p| p.parse().ok())
        .unwrap_or(1)
        .max(1);
    let items = answer(
        &session,
        retention::list(
            State(app),
            session.caller.clone(),
            MinPosition(min),
            uri(&format!("/v1/compliance/retention?{}", api.join("&"))).map_err(session.fail())?,
        )
        .await,
    )?
    .items;
    let pages = items.len().div_ceil(QUEUE_PAGE).max(1);
    let shown: Vec<_> = items
        .iter()
        .skip((page_no - 1) * QUEUE_PAGE)
        .take(QUEUE_PAGE)
        .collect();
    let link = |n: usize| format!("/console/retention?{}&page={n}", api_query_of(&f));
    let selected = |name: &str, v: &str| field(&f, name) == Some(v);
    Ok(Page::new(
        &session,
        "Retention queue",
        html! {
            form method="get" action="/console/retention" {
                label { "Account " input name="account_id" value=(field(&f, "account_id").unwrap_or_default()) size="36"; }
                label { "Category "
                    select name="category" {
                        option value="" { "any" }
                        @for c in Category::ALL { option value=(c.as_str()) selected[selected("category", c.as_str())] { (c.as_str()) } }
                    }
                }
                label { "State "
                    select name="state" {
                        option value="" { "any" }
                        @for s in STATES { option value=(s) selected[selected("state", s)] { (s) } }
                    }
                }
                label { "Due before " input name="due_before" type="date" value=(field(&f, "due_before").unwrap_or_default()); }
                button type="submit" { "Filter" }
            }
            p aria-live="polite" { (items.len()) " items; page " (page_no) " of " (pages) "." }
            (items_table(&session, &shown))
            nav aria-label="Pages" {
                @if page_no > 1 { a href=(link(page_no - 1)) { "Previous page" } " " }
                @if page_no < pages { a href=(link(page_no + 1)) { "Next page" } }
            }
        },
    ))
}

/// The filters of a queue page, for its page links.
fn api_query_of(f: &Fields) -> String {
    ["account_id", "category", "state", "due_before"]
        .iter()
        .filter_map(|n| field(f, n).map(|v| format!("{n}={}", enc(v))))
        .collect::<Vec<_>>()
        .join("&")
}

/// `min_position` of a page's query (set by the redirect after a change): 400 when it is not a
/// number.
pub(super) fn min_position(session: &Session, f: &Fields) -> Result<Option<u64>, Page> {
    field(f, "min_position")
        .map(|v| {
            v.parse().map_err(|_| {
                Page::problem(
                    Some(session),
                    Problem::bad_parameter("min_position", "min_position must be a log position"),
                )
            })
        })
        .transpose()
}

fn items_table(session: &Session, items: &[&retention::RetentionItem]) -> Markup {
    html! {
        table {
            caption { "Retention items" }
            thead { tr {
                th scope="col" { "Subject" } th scope="col" { "Category" } th scope="col" { "Rule" }
                th scope="col" { "Due" } th scope="col" { "State" } th scope="col" { "Holds" }
                th scope="col" { "Explanation" }
            } }
            tbody {
                @for i in items {
                    tr data-subject=(i.subject_id) data-category=(i.category) {
                        td {
                            @if let Some(a) = &i.account_id { a href=(format!("/console/subjects/{a}")) { (i.subject_id) } }
                            @else { a href=(format!("/console/subjects/{}", enc(&i.subject_id))) { (i.subject_id) } }
                        }
                        td { (i.category) } td { (i.rule) }
                        td { (i.due_at.as_deref().unwrap_or("—")) }
                        td class=(format!("state state-{}", i.state)) { (i.state) }
                        td { (holds(session, i)) }
                        td { (i.explanation) }
                    }
                }
            }
        }
    }
}

/// An item's holds, each with a button that releases it.
fn holds(session: &Session, item: &retention::RetentionItem) -> Markup {
    let list = item.holds.as_array().cloned().unwrap_or_default();
    html! {
        @if list.is_empty() { "none" }
        @for h in &list {
            @let id = h["hold_id"].as_str().unwrap_or_default();
            div {
                "case " (h["case_ref"].as_str().unwrap_or_default())
                form class="inline" method="post" action=(format!("/console/holds/{}/release", enc(id))) {
                    (csrf_input(session))
                    @if let Some(a) = &item.account_id { input type="hidden" name="account_id" value=(a); }
                    button type="submit" aria-label=(format!("Release hold {}", h["case_ref"].as_str().unwrap_or_default())) { "Release" }
                }
            }
        }
    }
}

/// Every category held for one subject, its holds, and the recorded reads of its data.
pub async fn subject(
    State(app): State<AppState>,
    session: Session,
    Path(id): Path<String>,
    RawQuery(q): RawQuery,
) -> Result<Page, Page> {
    let f = pairs(&q);
    let min = min_position(&session, &f)?;
    let s = answer(
        &session,
        retention::subject(
            State(app),
            session.caller.clone(),
            MinPosition(min),
            Path(id),
        )
        .await,
    )?;
    let items: Vec<_> = s.categories.iter().collect();
    let reads = s.access_records.as_array().cloned().unwrap_or_default();
    Ok(Page::new(
        &session,
        &format!("Subject {}", s.subject_id),
        html! {
            (items_table(&session, &items))
            @if let Some(account) = &s.account_id {
                h2 { "Place a legal hold" }
                form method="post" action="/console/holds" {
                    (csrf_input(&session))
                    input type="hidden" name="account_id" value=(account);
                    label for="reason" { "Reason" }
                    input id="reason" name="reason" required maxlength="2000" size="60";
                    label for="case_ref" { "Case reference" }
                    input id="case_ref" name="case_ref" required maxlength="200";
                    p { button type="submit" { "Place hold" } }
                }
                h2 { "Recorded reads of this account" }
                (reads_table(&reads))
            }
        },
    ))
}

fn reads_table(reads: &[Value]) -> Markup {
    html! {
        @if reads.is_empty() { p { "No staff member has read this account's data." } }
        @else {
            table {
                caption { "Reads by staff (R22)" }
                thead { tr { th scope="col" { "Read" } } }
                tbody { @for r in reads { tr { td { code { (r.to_string()) } } } } }
            }
        }
    }
}

/// Places a legal hold, then shows the subject with it.
pub async fn place_hold(
    State(app): State<AppState>,
    session: Session,
    Form(f): Form<Fields>,
) -> Result<Response, Page> {
    session.check(&f)?;
    let account = field(&f, "account_id").unwrap_or_default().to_owned();
    let tree = json!({
        "account_id": account,
        "reason": f.get("reason").cloned().unwrap_or_default(),
        "case_ref": f.get("case_ref").cloned().unwrap_or_default(),
    });
    let body = body(tree).map_err(session.fail())?;
    let (_, Json(placed)) = staff::place_hold(
        State(app),
        session.caller.clone(),
        IdempotencyKey(None),
        body,
    )
    .await
    .map_err(session.fail())?;
    Ok(see_other(&format!(
        "/console/subjects/{}?min_position={}",
        enc(&account),
        placed.position
    )))
}

/// Releases a legal hold, then shows its account.
pub async fn release_hold(
    State(app): State<AppState>,
    session: Session,
    Path(id): Path<String>,
    Form(f): Form<Fields>,
) -> Result<Response, Page> {
    session.check(&f)?;
    let Json(r) = staff::release_hold(State(app), session.caller.clone(), Path(id))
        .await
        .map_err(session.fail())?;
    let to = match field(&f, "account_id").and_then(|a| a.parse::<uuid::Uuid>().ok()) {
        Some(a) => format!("/console/subjects/{a}?min_position={}", r.position),
        None => format!("/console/retention?min_position={}", r.position),
    };
    Ok(see_other(&to))
}

// ---------------------------------------------------------------------------------------
// Purges and breaches

/// The purge log, a page at a time.
pub async fn purges(
    State(app): State<AppState>,
    session: Session,
    RawQuery(q): RawQuery,
) -> Result<Page, Page> {
    let f = pairs(&q);
    let after: u64 = field(&f, "after").and_then(|a| a.parse().ok()).unwrap_or(0);
    let page = answer(
        &session,
        retention::purges(
            State(app),
            session.caller.clone(),
            uri(&format!("/v1/compliance/purges?after={after}&limit=100"))
                .map_err(session.fail())?,
        )
        .await,
    )?;
    Ok(Page::new(
        &session,
        "Purge log",
        html! {
            @if page.purges.is_empty() { p { "No purges." } }
            @else {
                table {
                    caption { "Purge events, in log order" }
                    thead { tr { th scope="col" { "Position" } th scope="col" { "Event" } th scope="col" { "Stream" } th scope="col" { "Recorded" } th scope="col" { "What went" } } }
                    tbody {
                        @for p in &page.purges {
                            tr { td { (p.position) } td { (p.event_type) } td { code { (p.stream) } } td { (p.recorded_at) } td { code { (p.data.to_string()) } } }
                        }
                    }
                }
            }
            @if let Some(n) = page.next_after { p { a href=(format!("/console/purges?after={n}")) { "Next page" } } }
        },
    ))
}

/// The breach register with each breach's 72-hour countdown, and "notified" recorded here.
pub async fn breaches(
    State(app): State<AppState>,
    session: Session,
    RawQuery(q): RawQuery,
) -> Result<Page, Page> {
    let f = pairs(&q);
    let min = min_position(&session, &f)?;
    let now = app.clock.now();
    let list = answer(
        &session,
        breaches::list(State(app), session.caller.clone(), MinPosition(min)).await,
    )?;
    let left = |by: &str| -> String {
        match parse_time(by) {
            Some(t) if t > now => {
                let m = (t - now).num_minutes();
                format!("{} h {} min left", m / 60, m % 60)
            }
            Some(t) => format!("overdue by {} h", (now - t).num_hours()),
            None => "—".into(),
        }
    };
    let now_text = lightwidget_store::format_time(now);
    Ok(Page::new(
        &session,
        "Breach register",
        html! {
            @if list.breaches.is_empty() { p { "No breaches recorded." } }
            @else {
                table {
                    caption { "Breaches, oldest first" }
                    thead { tr { th scope="col" { "Detected" } th scope="col" { "Description" } th scope="col" { "Notify by" } th scope="col" { "Countdown" } th scope="col" { "Notified" } } }
                    tbody {
                        @for b in &list.breaches {
                            tr data-breach=(b.breach_id) class=[b.overdue.then_some("overdue")] {
                                td { (b.detected_at) } td { (b.description) } td { (b.notify_by) }
                                td { @if b.notified_at.is_some() { "—" } @else if b.overdue { strong class="overdue" { "OVERDUE: " (left(&b.notify_by)) } } @else { (left(&b.notify_by)) } }
                                td {
                                    @if let Some(at) = &b.notified_at { (at) " (" (b.authority.as_deref().unwrap_or_default()) ")" }
                                    @else {
                                        form method="post" action=(format!("/console/breaches/{}/notified", b.breach_id)) {
                                            (csrf_input(&session))
                                            label { "Authority " input name="authority" required maxlength="200"; }
                                            label { "Notified at (RFC 3339) " input name="notified_at" value=(now_text) required; }
                                            button type="submit" { "Record notification" }
                                        }
                                    }
                                }
                            }
                        }
                    }
                }
            }
        },
    ))
}

/// Records that the authority was told of a breach.
pub async fn notified(
    State(app): State<AppState>,
    session: Session,
    Path(id): Path<String>,
    Form(f): Form<Fields>,
) -> Result<Response, Page> {
    session.check(&f)?;
    let tree = json!({
        "authority": f.get("authority").cloned().unwrap_or_default(),
        "notified_at": f.get("notified_at").cloned().unwrap_or_default(),
    });
    let body = body(tree).map_err(session.fail())?;
    let Json(r) = breaches::notified(State(app), session.caller.clone(), Path(id), body)
        .await
        .map_err(session.fail())?;
    Ok(see_other(&format!(
        "/console/breaches?min_position={}",
        r.position
    )))
}

// ---------------------------------------------------------------------------------------
// Audit

/// Chain verification (on asking) and the way to a stream's events.
pub async fn audit(
    State(app): State<AppState>,
    session: Session,
    RawQuery(q): RawQuery,
) -> Result<Page, Page> {
    let f = pairs(&q);
    if !session.may(Role::Auditor) {
        return Err(Page::problem(
            Some(&session),
            Problem::forbidden("this page needs the auditor role"),
        ));
    }
    let verified = if field(&f, "verify").is_some() {
        Some(answer(
            &session,
            audit::verify(State(app), session.caller.clone()).await,
        )?)
    } else {
        None
    };
    Ok(Page::new(
        &session,
        "Audit",
        html! {
            form method="get" action="/console/audit" {
                input type="hidden" name="verify" value="1";
                button type="submit" { "Verify the chain" }
            }
            @if let Some(v) = verified {
                section aria-live="polite" {
                    h2 { "Verification" }
                    p id="verify-result" class=[(!v.ok).then_some("error")] {
                        @if v.ok { "The chain verifies: " } @else { "The chain does NOT verify: " }
                        (v.events_checked) " events checked."
                    }
                    dl {
                        dt { "Head position" } dd { (v.head_position) }
                        dt { "Head hash" } dd { code id="head-hash" { (v.head_hash) } }
                        @if let Some(b) = v.first_bad_position { dt { "First bad position" } dd { (b) } }
                        @if let Some(p) = &v.problem { dt { "Problem" } dd { (p) } }
                    }
                }
            }
            h2 { "Events of a stream" }
            form method="get" action="/console/audit/events" {
                label for="stream" { "Stream" }
                input id="stream" name="stream" required size="50";
                label { input type="checkbox" name="reveal" value="true"; " Reveal personal fields (recorded, with the reason)" }
                label for="reason" { "Reason (needed to reveal)" }
                input id="reason" name="reason" maxlength="500" size="60";
                p { button type="submit" { "Show events" } }
            }
        },
    ))
}

/// The events of a stream, sealed fields shown sealed unless revealed with a reason (the
/// revealing read is recorded by the API's handler before it answers).
pub async fn audit_events(
    State(app): State<AppState>,
    session: Session,
    RawQuery(q): RawQuery,
) -> Result<Page, Page> {
    let f = pairs(&q);
    let stream = field(&f, "stream").unwrap_or_default();
    let mut api = vec![format!("stream={}", enc(stream)), "limit=200".to_owned()];
    if field(&f, "reveal") == Some("true") {
        api.push("reveal=true".into());
    }
    if let Some(r) = field(&f, "reason") {
        api.push(format!("reason={}", enc(r)));
    }
    let problem = |p| Page::problem(Some(&session), p);
    let r = audit::events(
        State(app),
        session.caller.clone(),
        uri(&format!("/v1/audit/events?{}", api.join("&"))).map_err(problem)?,
    )
    .await
    .map_err(problem)?;
    let bytes = axum::body::to_bytes(r.into_body(), 64 << 20)
        .await
        .map_err(|_| problem(Problem::internal()))?;
    let events: Vec<Value> = bytes
        .split(|b| *b == b'\n')
        .filter(|l| !l.is_empty())
        .filter_map(|l| serde_json::from_slice(l).ok())
        .collect();
    Ok(Page::new(
        &session,
        &format!("Events of {stream}"),
        html! {
            @if events.is_empty() { p { "No events." } }
            @else {
                table {
                    caption { "Envelopes in position order" }
                    thead { tr { th scope="col" { "Position" } th scope="col" { "Type" } th scope="col" { "Recorded" } th scope="col" { "Data" } } }
                    tbody {
                        @for e in &events {
                            tr { td { (e["position"]) } td { (e["type"].as_str().unwrap_or_default()) } td { (e["recorded_at"].as_str().unwrap_or_default()) }
                                td { pre { (serde_json::to_string_pretty(&e["data"]).unwrap_or_default()) } } }
                        }
                    }
                }
            }
        },
    ))
}

// ---------------------------------------------------------------------------------------
// Security

/// An account's block and unblock, and the recorded reads of its data.
pub async fn security(
    State(app): State<AppState>,
    session: Session,
    RawQuery(q): RawQuery,
) -> Result<Page, Page> {
    if !session.may(Role::Security) {
        return Err(Page::problem(
            Some(&session),
            Problem::forbidden("this page needs the security role"),
        ));
    }
    let f = pairs(&q);
    let min = min_position(&session, &f)?;
    let account = field(&f, "account_id");
    let reads = match account {
        Some(a) => {
            let id = a.parse().map_err(|_| {
                Page::problem(
                    Some(&session),
                    Problem::bad_parameter("account_id", "account_id must be a UUID"),
                )
            })?;
            app.wait_for(lightwidget_retention::projection::VIEW, min)
                .await
                .map_err(session.fail())?;
            Some(
                retention::account_reads(&app, id)
                    .await
                    .map_err(session.fail())?,
            )
        }
        None => None,
    };
    Ok(Page::new(
        &session,
        "Security",
        html! {
            form method="get" action="/console/security" {
                label for="account_id" { "Account" }
                input id="account_id" name="account_id" required size="36" value=(account.unwrap_or_default());
                button type="submit" { "Open" }
            }
            @if let (Some(a), Some(reads)) = (account, &reads) {
                h2 { "Block" }
                form method="post" action=(format!("/console/security/{}/block", enc(a))) {
                    (csrf_input(&session))
                    label for="block-reason" { "Reason" }
                    input id="block-reason" name="reason" required maxlength="2000" size="60";
                    p { button type="submit" { "Block the account" } }
                }
                form method="post" action=(format!("/console/security/{}/unblock", enc(a))) {
                    (csrf_input(&session))
                    button type="submit" { "Unblock the account" }
                }
                h2 { "Recorded reads of this account" }
                (reads_table(reads.as_array().map(Vec::as_slice).unwrap_or_default()))
            }
        },
    ))
}

pub async fn block(
    State(app): State<AppState>,
    session: Session,
    Path(id): Path<String>,
    Form(f): Form<Fields>,
) -> Result<Response, Page> {
    session.check(&f)?;
    let tree = json!({ "reason": f.get("reason").cloned().unwrap_or_default() });
    let body = body(tree).map_err(session.fail())?;
    let Json(r) = staff::block(
        State(app),
        session.caller.clone(),
        Path(id.clone()),
        IdempotencyKey(None),
        body,
    )
    .await
    .map_err(session.fail())?;
    Ok(see_other(&format!(
        "/console/security?account_id={}&min_position={}",
        enc(&id),
        r.position
    )))
}

pub async fn unblock(
    State(app): State<AppState>,
    session: Session,
    Path(id): Path<String>,
    Form(f): Form<Fields>,
) -> Result<Response, Page> {
    session.check(&f)?;
    let Json(r) = staff::unblock(State(app), session.caller.clone(), Path(id.clone()))
        .await
        .map_err(session.fail())?;
    Ok(see_other(&format!(
        "/console/security?account_id={}&min_position={}",
        enc(&id),
        r.position
    )))
}

// The CSRF token of a token is what the session gives its forms.
#[cfg(test)]
mod tests {
    use super::super::{csrf_of, same};
    use super::*;

    #[test]
    fn a_csrf_token_is_the_sessions_own() {
        assert_eq!(csrf_of("a"), csrf_of("a"));
        assert_ne!(csrf_of("a"), csrf_of("b"));
        assert!(same(b"abc", b"abc"));
        assert!(!same(b"abc", b"abd"));
        assert!(!same(b"abc", b"ab"));
    }

    #[test]
    fn values_in_a_page_are_escaped() {
        let page = draw(&[1, 0], &[0, 2]).into_string();
        assert!(page.contains("<svg"));
        // SVG elements close: an unclosed <line> would swallow the labels after it.
        assert!(page.contains("</line><text"), "{page}");
        let cell = html! { td { ("<script>alert(1)</script>") } }.into_string();
        assert_eq!(cell, "<td>&lt;script&gt;alert(1)&lt;/script&gt;</td>");
    }
}

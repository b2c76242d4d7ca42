//! Compliance: the retention projection's items and the purges (R20, R21, R23, R24, R26), and
//! the sweep on demand.

use super::docs_of;
use crate::auth::Caller;
use crate::extract::{url_pairs, MinPosition};
use crate::problem::{ApiResult, Problem};
use crate::state::AppState;
use axum::extract::{Path, State};
use axum::http::Uri;
use axum::Json;
use chrono::{DateTime, Utc};
use lightwidget_domain::event::Role;
use lightwidget_domain::{AccountId, Category};
use lightwidget_retention::projection::{is_item, AccountFacts, ItemDoc, VIEW};
use lightwidget_retention::sweeper::{ArchivedItem, PurgedItem};
use lightwidget_store::{format_time, ViewDoc, ViewQuery};
use serde::Serialize;
use utoipa::ToSchema;

/// One retention item: a subject's personal data of one category.
#[derive(Serialize, ToSchema)]
pub struct RetentionItem {
    pub subject_id: String,
    pub account_id: Option<String>,
    pub category: String,
    /// The policy rule, e.g. `profile:90 days`.
    pub rule: String,
    /// When it falls due (also shown while held: the date it would have).
    pub due_at: Option<String>,
    /// `active`, `quarantined`, `held`, `due` or `purged`.
    pub state: String,
    #[schema(value_type = Vec<Object>)]
    pub holds: serde_json::Value,
    /// Why the data is still here (or when it went), in one sentence.
    pub explanation: String,
}

#[derive(Serialize, ToSchema)]
pub struct RetentionItems {
    pub items: Vec<RetentionItem>,
}

#[derive(Serialize, ToSchema)]
pub struct Subject {
    /// The subject asked for: an account id, or `kind:id` for a subject without an account.
    pub subject_id: String,
    /// The account, when the subject is one.
    pub account_id: Option<String>,
    pub categories: Vec<RetentionItem>,
    /// Reads of the account's data by security staff (R22): staff id, time, log position.
    #[schema(value_type = Vec<Object>)]
    pub access_records: serde_json::Value,
}

/// The item as compliance reads it now: an item past its date and not held is `due`.
fn item_view(doc: &ViewDoc, now: DateTime<Utc>) -> ApiResult<RetentionItem> {
    let d: ItemDoc = doc.read()?;
    let state = match doc.due_at {
        Some(due) if due <= now => "due".to_owned(),
        _ => d.state,
    };
    Ok(RetentionItem {
        subject_id: d.subject_id.as_str().to_owned(),
        account_id: d.account_id.map(|a| a.to_string()),
        category: d.category.as_str().to_owned(),
        rule: d.rule,
        due_at: d.due_at,
        state,
        holds: serde_json::to_value(&d.holds).unwrap_or_default(),
        explanation: d.explanation,
    })
}

#[derive(Default)]
struct Filters {
    account_id: Option<AccountId>,
    category: Option<Category>,
    state: Option<String>,
    due_before: Option<DateTime<Utc>>,
}

fn parse_time(field: &str, v: &str) -> ApiResult<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(v)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|_| Problem::bad_parameter(field, format!("{field} must be an RFC 3339 time")))
}

fn filters(uri: &Uri) -> ApiResult<Filters> {
    let mut f = Filters::default();
    for (k, v) in url_pairs(uri.query().unwrap_or_default()) {
        match k.as_ref() {
            "account_id" => {
                f.account_id = Some(v.parse().map_err(|_| {
                    Problem::bad_parameter("account_id", "account_id must be a UUID")
                })?)
            }
            "category" => {
                f.category = Some(v.parse().map_err(|_| {
                    Problem::bad_parameter(
                        "category",
                        "category must be one of the policy's categories (see POLICY.md)",
                    )
                })?)
            }
            "state" => {
                if !["active", "quarantined", "held", "due", "purged"].contains(&v.as_ref()) {
                    return Err(Problem::bad_parameter(
                        "state",
                        "state must be active, quarantined, held, due or purged",
                    ));
                }
                f.state = Some(v);
            }
            "due_before" => f.due_before = Some(parse_time("due_before", &v)?),
            "min_position" => {}
            other => return Err(Problem::bad_parameter(
                other,
                "unknown query parameter (account_id, category, state, due_before, min_position)",
            )),
        }
    }
    Ok(f)
}

/// At most this many items answer a query by due date.
pub const DUE_PAGE: usize = 10_000;

/// The retention items, filtered (compliance): by account, category, state (`due` = past
/// its date and not held), and `due_before`: items that may be purged before that time (a
/// held or purged item may not, whatever its date). Without an account, filters by due date
/// read the due-date index; with one, the owner index.
#[utoipa::path(get, path = "/v1/compliance/retention", tag = "compliance",
    params(("account_id" = Option<String>, Query), ("category" = Option<String>, Query),
        ("state" = Option<String>, Query), ("due_before" = Option<String>, Query),
        ("min_position" = Option<u64>, Query)),
    responses((status = 200, body = RetentionItems), (status = 400, body = Problem),
        (status = 401, body = Problem), (status = 403, body = Problem)),
    security(("bearer" = [])))]
pub async fn list(
    State(app): State<AppState>,
    caller: Caller,
    MinPosition(min): MinPosition,
    uri: Uri,
) -> ApiResult<Json<RetentionItems>> {
    caller.staff(Role::Compliance)?;
    let f = filters(&uri)?;
    app.wait_for(VIEW, min).await?;
    let now = app.clock.now();
    // `due` is "may be purged before just after now".
    let mut due_before = f.due_before;
    if f.state.as_deref() == Some("due") {
        let soon = now + chrono::Duration::microseconds(1);
        due_before = Some(due_before.map_or(soon, |t| t.min(soon)));
    }
    let docs = if let (None, Some(due_before)) = (f.account_id, due_before) {
        // Through the due-date index: only items that may be purged are in it.
        // One page of the index, earliest first; the sweep itself reads on page by page.
        app.views
            .query(
                VIEW,
                &ViewQuery {
                    due_before: Some(due_before),
                    limit: DUE_PAGE,
                    ..Default::default()
                },
            )
            .await?
    } else {
        docs_of(&app, VIEW, f.account_id.map(|a| a.to_string()).as_deref()).await?
    };
    let mut items = Vec::new();
    for d in docs.iter().filter(|d| is_item(d)) {
        // The index's date: set only while the item may be purged.
        if due_before.is_some_and(|t| d.due_at.is_none_or(|due| due >= t)) {
            continue;
        }
        let item = item_view(d, now)?;
        let category = f.category.is_none_or(|c| item.category == c.as_str());
        let state = f.state.as_deref().is_none_or(|s| item.state == s);
        if category && state {
            items.push(item);
        }
    }
    Ok(Json(RetentionItems { items }))
}

/// Every category held for one data subject (compliance), with state and explanation: an
/// account (its id), or a subject without an account: `comment:<id>` (a commenter),
/// `ticket:<id>` (a ticket's writer), `visitor:<id>` (a visitor's consent).
#[utoipa::path(get, path = "/v1/compliance/subjects/{subject_id}", tag = "compliance",
    params(("subject_id" = String, Path,
            description = "an account id, or comment:<id>, ticket:<id>, visitor:<id>"),
        ("min_position" = Option<u64>, Query)),
    responses((status = 200, body = Subject), (status = 401, body = Problem),
        (status = 403, body = Problem), (status = 404, body = Problem)),
    security(("bearer" = [])))]
pub async fn subject(
    State(app): State<AppState>,
    caller: Caller,
    MinPosition(min): MinPosition,
    Path(subject_id): Path<String>,
) -> ApiResult<Json<Subject>> {
    caller.staff(Role::Compliance)?;
    app.wait_for(VIEW, min).await?;
    match subject_id.parse::<AccountId>() {
        Ok(account) => account_subject(&app, account).await.map(Json),
        Err(_) => without_account(&app, &subject_id).await.map(Json),
    }
}

/// The subjects that have no account: whose items are found by their keys alone.
const SUBJECTS_WITHOUT_ACCOUNT: [&str; 3] = ["comment", "ticket", "visitor"];

async fn without_account(app: &AppState, subject_id: &str) -> ApiResult<Subject> {
    let subject = lightwidget_domain::Subject::parse(subject_id)
        .filter(|s| {
            let kind = s.as_str().split(':').next().unwrap_or_default();
            SUBJECTS_WITHOUT_ACCOUNT.contains(&kind)
        })
        .ok_or_else(|| Problem::not_found("subject"))?;
    let keys: Vec<String> = Category::ALL
        .iter()
        .map(|c| lightwidget_retention::projection::item_key(&subject, *c))
        .collect();
    let now = app.clock.now();
    let categories: Vec<RetentionItem> = app
        .views
        .get_many(VIEW, &keys)
        .await?
        .iter()
        .filter(|d| is_item(d))
        .map(|d| item_view(d, now))
        .collect::<ApiResult<_>>()?;
    if categories.is_empty() {
        return Err(Problem::not_found("subject"));
    }
    Ok(Subject {
        subject_id: subject.to_string(),
        account_id: None,
        categories,
        access_records: serde_json::json!([]),
    })
}

async fn account_subject(app: &AppState, id: AccountId) -> ApiResult<Subject> {
    let now = app.clock.now();
    let docs = docs_of(app, VIEW, Some(&id.to_string())).await?;
    let categories: Vec<RetentionItem> = docs
        .iter()
        .filter(|d| is_item(d))
        .map(|d| item_view(d, now))
        .collect::<ApiResult<_>>()?;
    if categories.is_empty() {
        return Err(Problem::not_found("account"));
    }
    let access_records = account_reads(app, id).await?;
    Ok(Subject {
        subject_id: id.to_string(),
        account_id: Some(id.to_string()),
        categories,
        access_records,
    })
}

/// The reads of an account's data by security staff (R22), as the retention view records
/// them: staff id, time, log position (an empty list for an account it does not know).
pub async fn account_reads(app: &AppState, id: AccountId) -> ApiResult<serde_json::Value> {
    let key = lightwidget_retention::projection::account_key(id);
    Ok(app
        .views
        .get_many(VIEW, std::slice::from_ref(&key))
        .await?
        .iter()
        .find(|d| d.key == key)
        .map(|d| d.read::<AccountFacts>())
        .transpose()?
        .map(|a| serde_json::to_value(a.reads).unwrap_or_default())
        .unwrap_or_else(|| serde_json::json!([])))
}

/// A purge event as compliance and auditors read it.
#[derive(Serialize, ToSchema)]
pub struct PurgeEvent {
    pub position: u64,
    #[serde(rename = "type")]
    pub event_type: String,
    pub stream: String,
    pub recorded_at: String,
    #[schema(value_type = Object)]
    pub data: serde_json::Value,
}

#[derive(Serialize, ToSchema)]
pub struct Purges {
    pub purges: Vec<PurgeEvent>,
    /// Pass as `after` for the next page; absent on the last page.
    pub next_after: Option<u64>,
}

const PURGE_TYPES: [&str; 3] = ["PersonalDataErased", "AccountPurged", "WidgetPurged"];

/// The purge events (compliance, auditor), in log order: `PersonalDataErased`,
/// `AccountPurged`, `WidgetPurged`; `since` a time, `after` a position to page on.
#[utoipa::path(get, path = "/v1/compliance/purges", tag = "compliance",
    params(("since" = Option<String>, Query), ("after" = Option<u64>, Query),
        ("limit" = Option<usize>, Query)),
    responses((status = 200, body = Purges), (status = 400, body = Problem),
        (status = 401, body = Problem), (status = 403, body = Problem)),
    security(("bearer" = [])))]
pub async fn purges(
    State(app): State<AppState>,
    caller: Caller,
    uri: Uri,
) -> ApiResult<Json<Purges>> {
    if caller.staff(Role::Auditor).is_err() {
        caller.staff(Role::Compliance)?;
    }
    let (mut since, mut after, mut limit) = (None, 0u64, 1000usize);
    for (k, v) in url_pairs(uri.query().unwrap_or_default()) {
        match k.as_ref() {
            "since" => since = Some(parse_time("since", &v)?),
            "after" => {
                after = v
                    .parse()
                    .map_err(|_| Problem::bad_parameter("after", "after must be a log position"))?
            }
            "limit" => {
                limit = v
                    .parse()
                    .ok()
                    .filter(|n| (1..=1000).contains(n))
                    .ok_or_else(|| Problem::bad_parameter("limit", "limit must be 1 to 1000"))?
            }
            // The log itself is read: it is always current.
            "min_position" => {}
            other => {
                return Err(Problem::bad_parameter(
                    other,
                    "unknown query parameter (since, after, limit)",
                ))
            }
        }
    }
    let mut out = Vec::new();
    let mut next_after = None;
    loop {
        let (raw, scanned) = app
            .store
            .read_all_light_of(after, limit, &PURGE_TYPES)
            .await?;
        let full = raw.len() >= limit;
        for e in raw {
            if since.is_some_and(|s| e.recorded_at < s) {
                after = e.position;
                continue;
            }
            let data = serde_json::from_str(&e.data).unwrap_or(serde_json::Value::Null);
            after = e.position;
            out.push(PurgeEvent {
                position: e.position,
                event_type: e.event_type,
                stream: e.stream,
                recorded_at: format_time(e.recorded_at),
                data,
            });
            if out.len() >= limit {
                next_after = Some(after);
                break;
            }
        }
        if out.len() >= limit || !full {
            break;
        }
        after = after.max(scanned);
    }
    Ok(Json(Purges {
        purges: out,
        next_after,
    }))
}

#[derive(Serialize, ToSchema)]
pub struct SweepDone {
    #[schema(value_type = Vec<Object>)]
    pub purged: Vec<PurgedItem>,
    /// Items past their date kept by a legal hold, archived by this sweep (R21).
    #[schema(value_type = Vec<Object>)]
    pub archived: Vec<ArchivedItem>,
    pub position: u64,
}

/// Runs a retention sweep now (admin, compliance): everything due and not held is purged;
/// what is due but held is archived (R21).
#[utoipa::path(post, path = "/v1/admin/retention/run", tag = "compliance",
    responses((status = 200, body = SweepDone), (status = 401, body = Problem),
        (status = 403, body = Problem)),
    security(("bearer" = [])))]
pub async fn run_sweep(State(app): State<AppState>, caller: Caller) -> ApiResult<Json<SweepDone>> {
    caller.staff(Role::Compliance)?;
    let report = app.sweeper.sweep().await.map_err(|e| {
        tracing::error!(error = %e, "retention sweep");
        Problem::internal()
    })?;
    Ok(Json(SweepDone {
        purged: report.purged,
        archived: report.archived,
        position: report.position,
    }))
}

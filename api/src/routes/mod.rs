//! The HTTP routes of API.md, one module per section, and what they share.

pub mod accounts;
pub mod admin;
pub mod audit;
pub mod ops;
pub mod orders;
pub mod public;
pub mod retention;
pub mod staff;
pub mod widgets;

use crate::auth::Caller;
use crate::problem::{ApiResult, Problem};
use crate::state::AppState;
use lightwidget_commands::{execute, execute_once, CommandError, Loaded, Outcome};
use lightwidget_domain::Aggregate;
use lightwidget_store::{ViewDoc, ViewQuery};
use sha2::{Digest, Sha256};

/// Loads an aggregate; a failure is the server's (500).
pub async fn load_or_500<A: Aggregate>(app: &AppState, stream: &str) -> ApiResult<Loaded<A>>
where
    A::Error: std::fmt::Display,
{
    lightwidget_commands::load::<A>(&*app.store, stream)
        .await
        .map_err(|e| {
            tracing::error!(error = %e, "loading a stream");
            Problem::internal()
        })
}

/// A whole stream, opened (personal fields read, or erased), page by page.
pub async fn read_whole_stream(
    app: &AppState,
    stream: &str,
) -> Result<Vec<lightwidget_store::RecordedEvent>, lightwidget_store::StoreError> {
    let mut out: Vec<lightwidget_store::RecordedEvent> = Vec::new();
    loop {
        let after = out.last().map(|e| e.version).unwrap_or(0);
        let page = app.store.read_stream(stream, after, 1000).await?;
        let done = page.len() < 1000;
        out.extend(page);
        if done {
            return Ok(out);
        }
    }
}

/// Every document of `owner` in `view` (of all owners when `None`), paged through.
pub async fn docs_of(app: &AppState, view: &str, owner: Option<&str>) -> ApiResult<Vec<ViewDoc>> {
    let mut out: Vec<ViewDoc> = Vec::new();
    loop {
        let page = app
            .views
            .query(
                view,
                &ViewQuery {
                    owner: owner.map(str::to_owned),
                    after_key: out.last().map(|d| d.key.clone()),
                    limit: 500,
                    ..Default::default()
                },
            )
            .await?;
        let done = page.len() < 500;
        out.extend(page);
        if done {
            return Ok(out);
        }
    }
}

/// A time field of a read-model document, as it is stored (RFC 3339).
pub fn created_at(doc: &serde_json::Value, field: &str) -> Option<String> {
    doc[field].as_str().map(str::to_owned)
}

/// A widget as clients see it (API.md, Widgets).
pub fn widget_summary(doc: &ViewDoc) -> widgets::WidgetView {
    let d = &doc.doc;
    widgets::WidgetView {
        widget_id: doc.key.clone(),
        title: d["title"].as_str().map(str::to_owned),
        layout: d["layout"].as_str().map(str::to_owned),
        columns: d["columns"].as_u64().map(|c| c as u8),
        plan: d["plan"].as_str().unwrap_or("free").to_owned(),
        status: d["status"].as_str().unwrap_or("active").to_owned(),
        version: d["version"].as_u64().unwrap_or(0),
        quarantine_until: created_at(d, "quarantine_until"),
        created_at: created_at(d, "created_at"),
        upgraded_at: created_at(d, "upgraded_at"),
    }
}

/// The id a new thing gets: random, or — under an `Idempotency-Key` — derived from the
/// caller and the key, so that a repeat addresses the same stream and is recognised there.
pub fn new_id(caller: &Caller, key: Option<&str>, kind: &str) -> uuid::Uuid {
    keyed_id(&caller.actor(), key, kind)
}

/// [`new_id`] for a caller named by `scope` (`anonymous` for requests without a token).
pub fn keyed_id(scope: &str, key: Option<&str>, kind: &str) -> uuid::Uuid {
    match key {
        None => uuid::Uuid::new_v4(),
        Some(key) => {
            let digest = Sha256::digest(format!("{scope}|{kind}|{key}").as_bytes());
            let mut bytes = [0u8; 16];
            bytes.copy_from_slice(&digest[..16]);
            uuid::Builder::from_random_bytes(bytes).into_uuid()
        }
    }
}

/// Runs a command, once per `Idempotency-Key` when one is given (scoped to the caller).
/// `fingerprint` identifies the request: method, path and the SHA-256 of the body.
pub async fn run<A>(
    app: &AppState,
    caller: &Caller,
    stream: &str,
    command: A::Command,
    key: Option<&str>,
    fingerprint: &str,
) -> Result<Outcome, CommandError<A::Error>>
where
    A: Aggregate,
    A::Command: Clone,
    A::Error: std::fmt::Display,
{
    let meta = app.meta(Some(caller));
    match key {
        None => execute::<A>(&*app.store, &*app.clock, stream, command, &meta).await,
        Some(key) => {
            let scoped = format!("{}|{key}", caller.actor());
            execute_once::<A>(
                &*app.store,
                &*app.clock,
                stream,
                command,
                &meta,
                &scoped,
                fingerprint,
            )
            .await
        }
    }
}

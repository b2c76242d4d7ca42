//! The HTTP routes of API.md, one module per section, and what they share.

pub mod accounts;
pub mod admin;
pub mod audit;
pub mod breaches;
pub mod consent;
pub mod log;
pub mod ops;
pub mod orders;
pub mod privacy;
pub mod public;
pub mod retention;
pub mod staff;
pub mod widgets;

use crate::auth::Caller;
use crate::problem::ApiResult;
use crate::state::AppState;
use lightwidget_commands::{Invocation, Loaded};
use lightwidget_domain::Aggregate;
use lightwidget_projections::models::widgets::WidgetDoc;
use lightwidget_store::{Metadata, ViewDoc, ViewQuery};

/// Loads an aggregate, for a query.
pub async fn load<A: Aggregate>(app: &AppState, stream: &str) -> ApiResult<Loaded<A>>
where
    A::Error: std::fmt::Display,
{
    Ok(lightwidget_commands::load::<A>(&*app.store, stream).await?)
}

/// Every document of `owner` in `view` (of all owners when `None`), paged through.
pub async fn docs_of(app: &AppState, view: &str, owner: Option<&str>) -> ApiResult<Vec<ViewDoc>> {
    let query = ViewQuery {
        owner: owner.map(str::to_owned),
        ..Default::default()
    };
    Ok(app.views.query_all(view, query).await?)
}

/// A widget as clients see it (API.md, Widgets).
pub fn widget_summary(doc: &ViewDoc) -> ApiResult<widgets::WidgetView> {
    let d: WidgetDoc = doc.read()?;
    Ok(widgets::WidgetView {
        widget_id: doc.key.clone(),
        title: d.title,
        layout: d.layout.map(|l| l.as_str().to_owned()),
        columns: d.columns,
        plan: d.plan.as_str().to_owned(),
        status: d.status.as_str().to_owned(),
        version: d.version,
        quarantine_until: d.quarantine_until,
        created_at: d.created_at,
        upgraded_at: d.upgraded_at,
    })
}

/// What a handler hands a use case of the caller: the envelope metadata, the
/// `Idempotency-Key` and the request's fingerprint.
pub struct Call {
    pub meta: Metadata,
    pub key: Option<String>,
    pub fingerprint: String,
}

impl Call {
    pub fn new(
        app: &AppState,
        caller: Option<&Caller>,
        key: Option<String>,
        fingerprint: String,
    ) -> Self {
        Call {
            meta: app.meta(caller),
            key,
            fingerprint,
        }
    }

    pub fn invocation(&self) -> Invocation<'_> {
        Invocation {
            meta: &self.meta,
            key: self.key.as_deref(),
            fingerprint: &self.fingerprint,
        }
    }
}

//! The read models: accounts, widgets, invoices, statistics. Each handles the erasure and
//! purge events by deleting or anonymizing what it holds (R23).

pub mod accounts;
pub mod invoices;
pub mod statistics;
pub mod widgets;

pub use accounts::Accounts;
pub use invoices::Invoices;
pub use statistics::Statistics;
pub use widgets::Widgets;

use chrono::{DateTime, Utc};

pub(crate) fn time(t: DateTime<Utc>) -> serde_json::Value {
    serde_json::Value::String(lightwidget_store::format_time(t))
}

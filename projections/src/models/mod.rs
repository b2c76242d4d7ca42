//! The read models: accounts, widgets, invoices, statistics, and the breach register. Each handles the erasure and
//! purge events by deleting or anonymizing what it holds (R23).

pub mod accounts;
pub mod breaches;
pub mod invoices;
pub mod statistics;
pub mod widgets;

pub use accounts::Accounts;
pub use breaches::Breaches;
pub use invoices::Invoices;
pub use statistics::Statistics;
pub use widgets::Widgets;

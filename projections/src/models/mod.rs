//! The read models: accounts, widgets, invoices, statistics, the breach register, the
//! outbox, the staff list and the erasure receipts asked for. Each handles the erasure and
//! purge events by deleting or anonymizing what it holds (R23).

pub mod accounts;
pub mod breaches;
pub mod invoices;
pub mod outbox;
pub mod receipts;
pub mod staff;
pub mod statistics;
pub mod widget_page;
pub mod widgets;

pub use accounts::Accounts;
pub use breaches::Breaches;
pub use invoices::Invoices;
pub use outbox::Outbox;
pub use receipts::Receipts;
pub use staff::Staff;
pub use statistics::Statistics;
pub use widgets::Widgets;

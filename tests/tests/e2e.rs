//! The end-to-end suite, one test binary (one link instead of ten). The proof of erasure
//! (`erasure.rs`) stays a binary of its own: it captures the whole process's log output.

#[path = "accounts.rs"]
mod accounts;
#[path = "audit.rs"]
mod audit;
#[path = "browser.rs"]
mod browser;
#[path = "console.rs"]
mod console;
#[path = "conventions.rs"]
mod conventions;
#[path = "health.rs"]
mod health;
#[path = "instagram.rs"]
mod instagram;
#[path = "limits.rs"]
mod limits;
#[path = "orders.rs"]
mod orders;
#[path = "processors.rs"]
mod processors;
#[path = "public.rs"]
mod public;
#[path = "retention.rs"]
mod retention;
#[path = "servers.rs"]
mod servers;
#[path = "staff.rs"]
mod staff;
#[path = "transparency.rs"]
mod transparency;
#[path = "transport.rs"]
mod transport;
#[path = "widget_browser.rs"]
mod widget_browser;
#[path = "widget_page.rs"]
mod widget_page;
#[path = "widgets.rs"]
mod widgets;

//! The pure domain of the LightWidget ledger: identifiers, the events every action becomes,
//! the aggregates as `decide`/`evolve` pairs, and the marking of personal data.
//!
//! Nothing in this crate performs IO, spawns tasks or reads the clock: the time of a decision
//! comes in as an argument (`now`), and whatever else a decision needs from outside comes in
//! its command.

pub mod account;
pub mod aggregate;
pub mod breach;
pub mod consent;
pub mod event;
pub mod hold;
pub mod identity;
pub mod ids;
pub mod invoice;
pub mod order;
pub mod outbox;
pub mod personal;
pub mod policy;
pub mod preview;
pub mod retention;
pub mod staff;
pub mod streams;
pub mod support;
pub mod values;
pub mod widget;

pub use aggregate::Aggregate;
pub use event::{DomainEvent, EventDecodeError};
pub use ids::*;
pub use personal::{Category, Personal, Subject};

/// The instant a decision is taken at.
pub type Now = chrono::DateTime<chrono::Utc>;

/// The 90-day quarantine of R18/R20, the default of the retention policy. Aggregates use it to
/// tell the user when a quarantine ends; the retention policy file may lengthen the purge.
pub const QUARANTINE_DAYS: i64 = 90;

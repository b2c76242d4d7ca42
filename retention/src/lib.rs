//! Retention: the policy's clocks and holds turned into erasure. This crate holds the
//! retention policy as data ([`policy`]); the retention projection and the sweeper that
//! appends purge events and shreds keys build on it.

pub mod policy;
pub mod projection;
pub mod sweeper;

pub use policy::{Period, PolicyError, RetentionPolicy, Rule};

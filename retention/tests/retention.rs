//! Retention against both backends, one test binary.

#[path = "projection.rs"]
mod projection;
#[path = "sweeper.rs"]
mod sweeper;

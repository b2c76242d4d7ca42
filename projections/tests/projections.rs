//! The projections' tests against both backends, one test binary.

#[path = "cache.rs"]
mod cache;
#[path = "counted.rs"]
mod counted;
#[path = "models.rs"]
mod models;
#[path = "runner.rs"]
mod runner;

//! The store's tests against real PostgreSQL and SQLite, one test binary. `unreachable_postgres.rs`
//! stays a binary of its own: it changes the process's environment.

#[path = "conformance.rs"]
mod conformance;
#[path = "postgres_atomicity.rs"]
mod postgres_atomicity;
#[path = "postgres_statistics.rs"]
mod postgres_statistics;
#[path = "sqlite_files.rs"]
mod sqlite_files;
#[path = "views.rs"]
mod views;

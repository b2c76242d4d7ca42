//! Use cases against both backends, one test binary.

#[path = "execute.rs"]
mod execute;
#[path = "flows.rs"]
mod flows;

//! The binary, the audit archive and the layering check, one test binary.

#[path = "archive.rs"]
mod archive;
#[path = "cli.rs"]
mod cli;
#[path = "crash.rs"]
mod crash;
#[path = "layers.rs"]
mod layers;
#[path = "transparency.rs"]
mod transparency;

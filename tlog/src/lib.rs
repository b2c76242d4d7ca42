//! The transparency log's verifying code (issue 27), in a crate with no database so that an
//! auditor can build it alone: the log as an RFC 6962 Merkle tree (leaf `i` is the chain hash
//! of the event at position `i + 1`), its inclusion and consistency proofs, and its
//! checkpoints as C2SP `tlog-checkpoint` bodies signed as C2SP signed notes with Ed25519.
//!
//! The hashing, the proofs and the note format come from `tlog_tiles` and `signed_note`
//! (ports of Go's `sumdb/tlog` and `sumdb/note`); they are used here and nowhere else, so a
//! switch touches this crate only.

pub mod checkpoint;
pub mod cli;
pub mod proof;
pub mod receipt;
pub mod tree;
pub mod witness;

pub use checkpoint::{Checkpoint, CheckpointError, LogKey};
pub use tree::{Hash, MemoryTree, ProofError};

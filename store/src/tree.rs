//! The log's Merkle tree read from a store: each root or proof reads the O(log n) stored
//! hashes it needs in one query, then computes (`lightwidget_tlog::tree`'s readers are
//! synchronous, so the indexes are asked for first).

use crate::{EventStore, StoreError};
use lightwidget_tlog::tree::{self, Hash};
use std::collections::HashMap;

async fn read(store: &dyn EventStore, indexes: Vec<u64>) -> Result<HashMap<u64, Hash>, StoreError> {
    if indexes.is_empty() {
        return Ok(HashMap::new());
    }
    let hashes = store.tree_hashes(&indexes).await?;
    Ok(indexes
        .into_iter()
        .zip(hashes.into_iter().map(Hash))
        .collect())
}

fn corrupt(e: tree::ProofError) -> StoreError {
    StoreError::Corrupt(format!("the stored tree: {e}"))
}

/// The root of the tree of the first `size` events.
pub async fn root(store: &dyn EventStore, size: u64) -> Result<Hash, StoreError> {
    let read = read(store, tree::root_indexes(size)).await?;
    let reader = tree::reader_of(&read);
    tree::root(size, &reader).map_err(corrupt)
}

/// The inclusion path of leaf `index` in the tree of `size` leaves (RFC 9162 order).
pub async fn inclusion(
    store: &dyn EventStore,
    size: u64,
    index: u64,
) -> Result<Vec<Hash>, StoreError> {
    let read = read(store, tree::inclusion_indexes(size, index)).await?;
    let reader = tree::reader_of(&read);
    tree::prove_inclusion(size, index, &reader).map_err(corrupt)
}

/// The proof that the tree of `old` leaves is a prefix of the tree of `new` (empty when
/// `old` is 0 or `new`).
pub async fn consistency(
    store: &dyn EventStore,
    new: u64,
    old: u64,
) -> Result<Vec<Hash>, StoreError> {
    if old == 0 || old == new {
        return Ok(Vec::new());
    }
    let read = read(store, tree::consistency_indexes(new, old)).await?;
    let reader = tree::reader_of(&read);
    tree::prove_consistency(new, old, &reader).map_err(corrupt)
}

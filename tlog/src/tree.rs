//! The log as an RFC 6962 Merkle tree: leaf hashes, the hashes a tree stores as it grows
//! (Go's stored-hash layout: each append adds at most 1 + log₂ n), roots, and proofs.

use tlog_tiles::tlog;

/// A SHA-256 tree hash.
pub use tlog_tiles::tlog::Hash;

/// Why a proof or a read failed.
#[derive(Debug, thiserror::Error)]
pub enum ProofError {
    #[error("the proof does not hold: {0}")]
    Invalid(String),
    #[error("a hash could not be read: {0}")]
    Read(String),
}

impl From<tlog::Error> for ProofError {
    fn from(e: tlog::Error) -> Self {
        ProofError::Invalid(e.to_string())
    }
}

/// The hash of a leaf: SHA-256(0x00 ‖ data). The log's leaf data is an event's chain hash.
pub fn leaf_hash(data: &[u8]) -> Hash {
    tlog::record_hash(data)
}

/// The hashes to store when leaf `n` (0-based) is appended, given the hashes stored so far
/// (read through `stored`): at most 1 + log₂ n, in stored-hash index order from
/// [`stored_index`]`(0, n)` on.
pub fn hashes_to_store(
    n: u64,
    leaf: Hash,
    stored: &impl Fn(&[u64]) -> Result<Vec<Hash>, String>,
) -> Result<Vec<Hash>, ProofError> {
    tlog::stored_hashes_for_record_hash(n, leaf, &Reader(stored)).map_err(Into::into)
}

/// The stored-hash index of the node at `level` and position `n`: where a store keeps it.
pub fn stored_index(level: u8, n: u64) -> u64 {
    tlog::stored_hash_index(level, n)
}

/// The stored-hash indexes of the complete subtrees that make up the tree of `size` leaves:
/// its right edge, all that the next leaf's hashes are computed from (at most log₂ size + 1).
pub fn frontier_indexes(size: u64) -> Vec<u64> {
    tlog::sub_tree_index(0, size, Vec::new())
}

/// The level and position of the node at a stored-hash index.
pub fn split_index(index: u64) -> (u8, u64) {
    tlog::split_stored_hash_index(index)
}

/// The rank of an interior node (`level` ≥ 1) among the interior nodes in the order a growing
/// tree completes them: the node at `level`, position `n` is completed by leaf
/// `m = (n + 1)·2^level − 1`, after the `m − popcount(m)` interior nodes of the leaves before
/// it and the `level − 1` below it of its own leaf. An append's new nodes have consecutive
/// ranks.
pub fn interior_rank(level: u8, n: u64) -> u64 {
    debug_assert!(level >= 1);
    let m = ((n + 1) << level) - 1;
    interior_count(m) + u64::from(level) - 1
}

/// How many interior nodes a tree of `leaves` leaves has completed.
pub fn interior_count(leaves: u64) -> u64 {
    leaves - u64::from(leaves.count_ones())
}

/// How many hashes a tree of `leaves` leaves stores.
pub fn stored_count(leaves: u64) -> u64 {
    tlog::stored_hash_count(leaves)
}

/// The root of the tree of `size` leaves (`size` = 0: SHA-256 of nothing), reading at most
/// 1 + log₂ size stored hashes.
pub fn root(
    size: u64,
    stored: &impl Fn(&[u64]) -> Result<Vec<Hash>, String>,
) -> Result<Hash, ProofError> {
    tlog::tree_hash(size, &Reader(stored)).map_err(Into::into)
}

/// The proof that leaf `index` is in the tree of `size` leaves.
pub fn prove_inclusion(
    size: u64,
    index: u64,
    stored: &impl Fn(&[u64]) -> Result<Vec<Hash>, String>,
) -> Result<Vec<Hash>, ProofError> {
    tlog::prove_record(size, index, &Reader(stored)).map_err(Into::into)
}

/// The proof that the tree of `old` leaves is a prefix of the tree of `new` leaves.
pub fn prove_consistency(
    new: u64,
    old: u64,
    stored: &impl Fn(&[u64]) -> Result<Vec<Hash>, String>,
) -> Result<Vec<Hash>, ProofError> {
    tlog::prove_tree(new, old, &Reader(stored)).map_err(Into::into)
}

/// Checks that `leaf` is leaf `index` of the tree of `size` leaves with root `root`.
pub fn check_inclusion(
    proof: &[Hash],
    size: u64,
    root: Hash,
    index: u64,
    leaf: Hash,
) -> Result<(), ProofError> {
    tlog::check_record(&proof.to_vec(), size, root, index, leaf).map_err(Into::into)
}

/// Checks that the tree of `old` leaves with root `old_root` is a prefix of the tree of `new`
/// leaves with root `new_root`. The empty tree is a prefix of every tree (with an empty
/// proof); a tree is consistent with itself when the roots agree (with an empty proof).
pub fn check_consistency(
    proof: &[Hash],
    new: u64,
    new_root: Hash,
    old: u64,
    old_root: Hash,
) -> Result<(), ProofError> {
    if old > new {
        return Err(ProofError::Invalid(format!(
            "a tree of {old} leaves cannot be a prefix of one of {new}"
        )));
    }
    if old == 0 || old == new {
        let agrees = old == 0 || old_root == new_root;
        return match (proof.is_empty(), agrees) {
            (true, true) => Ok(()),
            (false, _) => Err(ProofError::Invalid("this proof must be empty".into())),
            (true, false) => Err(ProofError::Invalid("two roots of one size differ".into())),
        };
    }
    tlog::check_tree(&proof.to_vec(), new, new_root, old, old_root).map_err(Into::into)
}

/// The stored-hash indexes that [`root`] reads for a tree of `size` leaves: a store reads
/// them first (asynchronously), then computes with what it read.
pub fn root_indexes(size: u64) -> Vec<u64> {
    indexes_read(|r| root(size, &r).map(|_| ()))
}

/// The stored-hash indexes that [`prove_inclusion`] reads.
pub fn inclusion_indexes(size: u64, index: u64) -> Vec<u64> {
    indexes_read(|r| prove_inclusion(size, index, &r).map(|_| ()))
}

/// The stored-hash indexes that [`prove_consistency`] reads.
pub fn consistency_indexes(new: u64, old: u64) -> Vec<u64> {
    indexes_read(|r| prove_consistency(new, old, &r).map(|_| ()))
}

/// The indexes an operation asks its reader for: it runs once with a reader that notes them
/// and answers none (each operation reads once).
fn indexes_read(
    op: impl FnOnce(&dyn Fn(&[u64]) -> Result<Vec<Hash>, String>) -> Result<(), ProofError>,
) -> Vec<u64> {
    let seen = std::cell::RefCell::new(Vec::new());
    let _ = op(&|indexes: &[u64]| {
        seen.borrow_mut().extend_from_slice(indexes);
        Err("noting the indexes only".into())
    });
    seen.into_inner()
}

/// A reader over hashes read beforehand, by index.
pub fn reader_of(
    read: &std::collections::HashMap<u64, Hash>,
) -> impl Fn(&[u64]) -> Result<Vec<Hash>, String> + '_ {
    move |indexes| {
        indexes
            .iter()
            .map(|i| {
                read.get(i)
                    .copied()
                    .ok_or_else(|| format!("hash {i} was not read"))
            })
            .collect()
    }
}

struct Reader<'a, F>(&'a F);

impl<F: Fn(&[u64]) -> Result<Vec<Hash>, String>> tlog::HashReader for Reader<'_, F> {
    fn read_hashes(&self, indexes: &[u64]) -> Result<Vec<Hash>, tlog::Error> {
        let hashes = (self.0)(indexes).map_err(|_| tlog::Error::IndexesNotInTree)?;
        if hashes.len() != indexes.len() {
            return Err(tlog::Error::IndexesNotInTree);
        }
        Ok(hashes)
    }
}

/// A tree held in memory: what a witness rebuilds from the events (`--audit-events`), and
/// what the tests check the stores against.
#[derive(Clone, Debug, Default)]
pub struct MemoryTree {
    stored: Vec<Hash>,
    leaves: u64,
}

impl MemoryTree {
    /// Appends a leaf with this data (an event's chain hash).
    pub fn append(&mut self, data: &[u8]) -> Result<(), ProofError> {
        let n = self.leaves;
        let hashes = hashes_to_store(n, leaf_hash(data), &|i| self.read(i))?;
        self.stored.extend(hashes);
        self.leaves += 1;
        Ok(())
    }

    pub fn size(&self) -> u64 {
        self.leaves
    }

    fn read(&self, indexes: &[u64]) -> Result<Vec<Hash>, String> {
        indexes
            .iter()
            .map(|i| {
                usize::try_from(*i)
                    .ok()
                    .and_then(|i| self.stored.get(i))
                    .copied()
                    .ok_or_else(|| format!("no stored hash {i}"))
            })
            .collect()
    }

    /// The root of the first `size` leaves.
    pub fn root(&self, size: u64) -> Result<Hash, ProofError> {
        root(size, &|i| self.read(i))
    }

    pub fn prove_inclusion(&self, size: u64, index: u64) -> Result<Vec<Hash>, ProofError> {
        prove_inclusion(size, index, &|i| self.read(i))
    }

    pub fn prove_consistency(&self, new: u64, old: u64) -> Result<Vec<Hash>, ProofError> {
        prove_consistency(new, old, &|i| self.read(i))
    }
}

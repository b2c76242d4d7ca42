//! Interoperability (issue 27): the tree reproduces the RFC 6962 test vectors published with
//! the transparency-dev Merkle library (leaf inputs, roots of every size, inclusion and
//! consistency proofs) and refuses corrupted proofs; the signed-note code verifies the
//! example of Go's `sumdb/note` documentation, loads its private key in Go's format and
//! signs exactly as Go did; checkpoints verify only under the pinned key and origin.

use lightwidget_tlog::tree::{check_consistency, check_inclusion, leaf_hash};
use lightwidget_tlog::{Checkpoint, Hash, LogKey, MemoryTree};

fn h(hex: &str) -> Hash {
    let bytes: [u8; 32] = hex::decode(hex).expect("hex").try_into().expect("32 bytes");
    Hash(bytes)
}

const LEAVES: [&str; 8] = [
    "",
    "00",
    "10",
    "2021",
    "3031",
    "40414243",
    "5051525354555657",
    "606162636465666768696a6b6c6d6e6f",
];

/// The roots of the trees of 0 to 8 of those leaves.
const ROOTS: [&str; 9] = [
    "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
    "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
    "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
    "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
    "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
    "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
    "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
    "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
    "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
];

fn tree() -> MemoryTree {
    let mut t = MemoryTree::default();
    for leaf in LEAVES {
        t.append(&hex::decode(leaf).expect("hex")).expect("append");
    }
    t
}

#[test]
fn roots_of_every_size_match_the_published_vectors() {
    let t = tree();
    for (size, root) in ROOTS.iter().enumerate() {
        assert_eq!(t.root(size as u64).expect("root"), h(root), "size {size}");
    }
    assert_eq!(
        leaf_hash(&[]),
        h("6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d")
    );
}

/// (1-based leaf, tree size, proof) as published.
const INCLUSION: [(u64, u64, &[&str]); 4] = [
    (
        1,
        8,
        &[
            "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
        ],
    ),
    (
        6,
        8,
        &[
            "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
            "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
            "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
        ],
    ),
    (
        3,
        3,
        &["fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125"],
    ),
    (
        2,
        5,
        &[
            "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
        ],
    ),
];

/// (old size, new size, proof) as published.
const CONSISTENCY: [(u64, u64, &[&str]); 4] = [
    (
        1,
        8,
        &[
            "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
        ],
    ),
    (
        6,
        8,
        &[
            "0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
            "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
            "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
        ],
    ),
    (
        2,
        5,
        &[
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
        ],
    ),
    (
        6,
        7,
        &[
            "0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
            "b08693ec2e721597130641e8211e7eedccb4c26413963eee6c1e2ed16ffb1a5f",
            "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
        ],
    ),
];

#[test]
fn inclusion_proofs_are_the_published_ones_and_corruptions_fail() {
    let t = tree();
    for (leaf, size, proof) in INCLUSION {
        let index = leaf - 1;
        let expected: Vec<Hash> = proof.iter().map(|p| h(p)).collect();
        assert_eq!(
            t.prove_inclusion(size, index).expect("prove"),
            expected,
            "{leaf}/{size}"
        );
        let root = h(ROOTS[size as usize]);
        let lh = leaf_hash(&hex::decode(LEAVES[index as usize]).expect("hex"));
        check_inclusion(&expected, size, root, index, lh).expect("verifies");
        // Corruptions: another index, another root, a flipped bit, a missing hash.
        if size > 1 {
            assert!(check_inclusion(&expected, size, root, (index + 1) % size, lh).is_err());
        }
        assert!(check_inclusion(&expected, size, h(ROOTS[0]), index, lh).is_err());
        let mut flipped = expected.clone();
        flipped[0].0[0] ^= 8;
        assert!(check_inclusion(&flipped, size, root, index, lh).is_err());
        assert!(check_inclusion(&expected[1..], size, root, index, lh).is_err());
    }
}

#[test]
fn consistency_proofs_are_the_published_ones_and_corruptions_fail() {
    let t = tree();
    for (old, new, proof) in CONSISTENCY {
        let expected: Vec<Hash> = proof.iter().map(|p| h(p)).collect();
        assert_eq!(
            t.prove_consistency(new, old).expect("prove"),
            expected,
            "{old}->{new}"
        );
        let (old_root, new_root) = (h(ROOTS[old as usize]), h(ROOTS[new as usize]));
        check_consistency(&expected, new, new_root, old, old_root).expect("verifies");
        assert!(
            check_consistency(&expected, new, old_root, old, new_root).is_err(),
            "swapped"
        );
        let mut flipped = expected.clone();
        flipped[0].0[0] ^= 16;
        assert!(check_consistency(&flipped, new, new_root, old, old_root).is_err());
        assert!(check_consistency(
            &expected[..expected.len() - 1],
            new,
            new_root,
            old,
            old_root
        )
        .is_err());
    }
}

/// Go's `sumdb/note` documentation: a key, its verifier key and a note it signed.
const GO_PRIVATE: &str =
    "PRIVATE+KEY+PeterNeumann+c74f20a3+AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz";
const GO_VERIFIER: &str = "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW";
const GO_NOTE: &str = "If you think cryptography is the answer to your problem,\n\
then you don't know what your problem is.\n\
\n\
— PeterNeumann x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvqfqdngotpRZb6KE6RyyBwJnAM=\n";

#[test]
fn go_note_vectors_verify_and_a_go_key_loads_and_signs_as_go_did() {
    use signed_note_check::*;
    let key = LogKey::from_private(GO_PRIVATE).expect("a key in Go's format loads");
    assert_eq!(key.verifier_key(), GO_VERIFIER);
    assert_eq!(key.origin(), "PeterNeumann");
    // Ed25519 is deterministic: the same key signs the same text to the same signature.
    assert_eq!(
        sign_text(GO_PRIVATE, GO_NOTE.split("\n\n").next().expect("text")),
        GO_NOTE
    );
    assert!(verifies(GO_NOTE, GO_VERIFIER));
    assert!(!verifies(
        &GO_NOTE.replace("cryptography", "cryptographY"),
        GO_VERIFIER
    ));
}

/// The note layer alone, through the crate's own key type.
mod signed_note_check {
    pub fn sign_text(private: &str, text_without_newline: &str) -> String {
        let signer = signed_note::StandardSigner::new(private).expect("key");
        let text = format!("{text_without_newline}\n");
        let mut note = signed_note::Note::new(text.as_bytes(), &[]).expect("note");
        note.add_sigs(&[&signer]).expect("sign");
        String::from_utf8(note.to_bytes()).expect("utf-8")
    }

    pub fn verifies(note: &str, verifier: &str) -> bool {
        let v = signed_note::StandardVerifier::new(verifier).expect("verifier");
        let list = signed_note::VerifierList::new(vec![Box::new(v)]);
        signed_note::Note::from_bytes(note.as_bytes())
            .and_then(|n| n.verify(&list).map(|_| ()))
            .is_ok()
    }
}

#[test]
fn checkpoints_verify_under_the_pinned_key_and_origin_only() {
    let t = tree();
    let (key, private) = LogKey::generate("lightwidget.local/log/test").expect("key");
    assert!(private.starts_with("PRIVATE+KEY+lightwidget.local/log/test+"));
    let note = key.sign(8, t.root(8).expect("root")).expect("sign");
    assert!(
        note.starts_with("lightwidget.local/log/test\n8\n"),
        "{note}"
    );
    let opened = Checkpoint::open(&note, key.verifier_key()).expect("verifies");
    assert_eq!((opened.size, opened.root), (8, t.root(8).expect("root")));
    assert_eq!(opened.origin, "lightwidget.local/log/test");
    // Another key of the same name does not verify it.
    let (other, _) = LogKey::generate("lightwidget.local/log/test").expect("key");
    assert!(Checkpoint::open(&note, other.verifier_key()).is_err());
    // A changed size or root breaks the signature.
    let forged = note.replacen("\n8\n", "\n9\n", 1);
    assert!(Checkpoint::open(&forged, key.verifier_key()).is_err());
    // A signed note that is not a checkpoint of the key's origin is refused.
    let go_key = LogKey::from_private(GO_PRIVATE).expect("key");
    let foreign = go_key.sign(1, t.root(1).expect("root")).expect("sign");
    assert!(Checkpoint::open(&foreign, GO_VERIFIER).is_ok());
    assert!(Checkpoint::open(&foreign, key.verifier_key()).is_err());
    assert!(
        !format!("{key:?}").contains(&private),
        "the private key is never shown"
    );
}

/// The interior ranks number the stored interior nodes densely, in the order a growing tree
/// completes them; the stored-hash indexes and ranks agree on every node of a 300-leaf tree.
#[test]
fn interior_ranks_are_dense_and_in_creation_order() {
    use lightwidget_tlog::tree::{interior_count, interior_rank, split_index, stored_count};
    let mut next = 0;
    for index in 0..stored_count(300) {
        let (level, n) = split_index(index);
        if level == 0 {
            continue;
        }
        assert_eq!(
            interior_rank(level, n),
            next,
            "index {index}: level {level}, n {n}"
        );
        next += 1;
    }
    assert_eq!(next, interior_count(300));
    assert_eq!(interior_count(1), 0);
    assert_eq!(interior_count(2), 1);
    assert_eq!(interior_count(4), 3);
}

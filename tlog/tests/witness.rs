//! The witness's judgement and the evidence it keeps, and erasure receipts, over trees held
//! in memory and checkpoints signed by a real key: consistent growth is accepted; a fork, a
//! rollback and answers that prove nothing are told apart; evidence convinces a third party
//! only when it proves a fork, and a forged copy does not; a receipt verifies offline and an
//! altered one does not.

use lightwidget_tlog::proof::{encode_hash, TlogProof};
use lightwidget_tlog::witness::{judge, verify_evidence, ConsistencyAnswer, Verdict};
use lightwidget_tlog::{Checkpoint, LogKey, MemoryTree};
use sha2::{Digest, Sha256};

fn key() -> LogKey {
    LogKey::generate("log.example/test").expect("key").0
}

/// A tree of `n` leaves; `fork_at` (if any) is the first leaf that differs from the main one.
fn tree(n: u64, fork_at: Option<u64>) -> MemoryTree {
    let mut t = MemoryTree::default();
    for i in 0..n {
        let tag = if fork_at.is_some_and(|f| i >= f) {
            1
        } else {
            0
        };
        t.append(&[tag, i as u8]).expect("append");
    }
    t
}

fn signed(k: &LogKey, t: &MemoryTree, size: u64) -> String {
    k.sign(size, t.root(size).expect("root")).expect("sign")
}

fn answer(t: &MemoryTree, first: u64, second: u64) -> ConsistencyAnswer {
    ConsistencyAnswer {
        first,
        second,
        first_root: encode_hash(&t.root(first).expect("root")),
        consistency: t
            .prove_consistency(second, first)
            .expect("proof")
            .iter()
            .map(encode_hash)
            .collect(),
    }
}

fn held(k: &LogKey, t: &MemoryTree, size: u64) -> (Checkpoint, String) {
    let note = signed(k, t, size);
    (
        Checkpoint::open(&note, k.verifier_key()).expect("open"),
        note,
    )
}

#[test]
fn a_larger_checkpoint_with_a_proof_from_the_held_root_is_consistent() {
    let k = key();
    let t = tree(13, None);
    let (cp, note) = held(&k, &t, 5);
    let met = signed(&k, &t, 13);
    let v = judge(&cp, &note, &met, k.verifier_key(), Some(&answer(&t, 5, 13)));
    assert_eq!(v, Verdict::Consistent);
    // The same checkpoint again, and a start from the empty tree, need no proof.
    assert_eq!(
        judge(&cp, &note, &note, k.verifier_key(), None),
        Verdict::Consistent
    );
    let (empty, empty_note) = held(&k, &t, 0);
    assert_eq!(
        judge(&empty, &empty_note, &met, k.verifier_key(), None),
        Verdict::Consistent
    );
}

#[test]
fn answers_that_prove_nothing_do_not_verify_and_prove_no_fork() {
    let k = key();
    let t = tree(13, None);
    let (cp, note) = held(&k, &t, 5);
    let met = signed(&k, &t, 13);
    // Another key's signature.
    let other = key();
    let v = judge(&cp, &note, &signed(&other, &t, 13), k.verifier_key(), None);
    assert!(matches!(v, Verdict::DoesNotVerify(_)), "{v:?}");
    // A proof for other sizes, a missing proof, a corrupted proof.
    let v = judge(&cp, &note, &met, k.verifier_key(), Some(&answer(&t, 4, 13)));
    assert!(matches!(v, Verdict::DoesNotVerify(_)), "{v:?}");
    let v = judge(&cp, &note, &met, k.verifier_key(), None);
    assert!(matches!(v, Verdict::DoesNotVerify(_)), "{v:?}");
    let mut bad = answer(&t, 5, 13);
    bad.consistency[0] = encode_hash(&lightwidget_tlog::Hash([7; 32]));
    let v = judge(&cp, &note, &met, k.verifier_key(), Some(&bad));
    assert!(matches!(v, Verdict::DoesNotVerify(_)), "{v:?}");
    // A garbage proof claiming another first root proves no fork either.
    bad.first_root = encode_hash(&lightwidget_tlog::Hash([9; 32]));
    let v = judge(&cp, &note, &met, k.verifier_key(), Some(&bad));
    assert!(matches!(v, Verdict::DoesNotVerify(_)), "{v:?}");
}

#[test]
fn a_fork_is_proven_to_a_third_party_and_a_forged_copy_is_not() {
    let k = key();
    let main = tree(8, None);
    let forked = tree(12, Some(3));
    let (cp, note) = held(&k, &main, 8);
    let met = signed(&k, &forked, 12);
    let v = judge(
        &cp,
        &note,
        &met,
        k.verifier_key(),
        Some(&answer(&forked, 8, 12)),
    );
    let Verdict::Fork(evidence) = v else {
        panic!("a fork, not {v:?}")
    };
    assert_eq!(evidence.old, note);
    assert_eq!(evidence.new, met);
    let proven = verify_evidence(&evidence, k.verifier_key()).expect("proven");
    assert!(proven.starts_with("fork"), "{proven}");
    // Under another key, nothing is proven.
    assert!(verify_evidence(&evidence, key().verifier_key()).is_err());
    // A checkpoint altered by one character no longer verifies.
    let mut forged = evidence.clone();
    let root_line = forged.new.lines().nth(2).expect("root line").to_owned();
    let altered = format!(
        "{}{}",
        if root_line.starts_with('A') { "B" } else { "A" },
        &root_line[1..]
    );
    forged.new = forged.new.replace(&root_line, &altered);
    assert!(verify_evidence(&forged, k.verifier_key()).is_err());
    // The new checkpoint swapped for an honest one of the main tree: the proof fails.
    let mut forged = evidence.clone();
    let honest = tree(12, None);
    forged.new = signed(&k, &honest, 12);
    assert!(verify_evidence(&forged, k.verifier_key()).is_err());
    // The proof's first root swapped for the held one: it is no longer a proof of anything.
    let mut forged = evidence.clone();
    forged.proof = forged.proof.replace(
        &encode_hash(&forked.root(8).expect("root")),
        &encode_hash(&main.root(8).expect("root")),
    );
    assert!(verify_evidence(&forged, k.verifier_key()).is_err());
}

#[test]
fn two_roots_of_one_size_are_a_fork_and_a_smaller_checkpoint_a_rollback_that_proves_nothing() {
    let k = key();
    let main = tree(8, None);
    let forked = tree(8, Some(5));
    let (cp, note) = held(&k, &main, 8);
    let v = judge(&cp, &note, &signed(&k, &forked, 8), k.verifier_key(), None);
    let Verdict::Fork(evidence) = v else {
        panic!("a fork, not {v:?}")
    };
    assert!(verify_evidence(&evidence, k.verifier_key()).is_ok());

    let v = judge(&cp, &note, &signed(&k, &main, 6), k.verifier_key(), None);
    assert_eq!(v.exit_code(), 4);
    let Verdict::Rollback(evidence) = v else {
        panic!("a rollback, not {v:?}")
    };
    // The smaller tree is a prefix of the held one: shown to a third party, nothing.
    let why = verify_evidence(&evidence, k.verifier_key()).expect_err("not proven");
    assert!(why.contains("proves nothing"), "{why}");
}

/// The chain-hash preimage of a made-up event at `position`.
fn preimage(prev: [u8; 32], position: u64) -> Vec<u8> {
    let envelope = serde_json::json!([
        position,
        "account-0190a6f0-0000-7000-8000-000000000001",
        2,
        "0190a6f0-0000-7000-8000-0000000000aa",
        "AccountPurged",
        1,
        "2026-12-07T10:00:00.000000Z",
        "retention",
        "0190a6f0-0000-7000-8000-0000000000bb",
        null,
        "{}"
    ]);
    let mut out = prev.to_vec();
    out.extend(serde_json::to_vec(&envelope).expect("json"));
    out
}

#[test]
fn a_receipt_verifies_offline_and_an_altered_one_does_not() {
    let k = key();
    let mut t = MemoryTree::default();
    let mut prev = [0u8; 32];
    let mut preimages = Vec::new();
    for position in 1..=11 {
        let p = preimage(prev, position);
        prev = Sha256::digest(&p).into();
        t.append(&prev).expect("append");
        preimages.push(p);
    }
    let index = 6;
    let receipt = TlogProof {
        extra: Some(preimages[index as usize].clone()),
        index,
        path: t.prove_inclusion(11, index).expect("proof"),
        checkpoint: signed(&k, &t, 11),
    };
    let text = receipt.to_text();
    let ok = lightwidget_tlog::receipt::verify(&text, k.verifier_key()).expect("verifies");
    assert_eq!((ok.position, ok.event_type.as_str()), (7, "AccountPurged"));

    let altered = [
        // Another event's preimage at this index.
        TlogProof {
            extra: Some(preimages[5].clone()),
            ..receipt.clone()
        },
        // Another index.
        TlogProof {
            index: 5,
            ..receipt.clone()
        },
        // A path hash changed.
        TlogProof {
            path: {
                let mut p = receipt.path.clone();
                p[1] = lightwidget_tlog::Hash([3; 32]);
                p
            },
            ..receipt.clone()
        },
        // No preimage.
        TlogProof {
            extra: None,
            ..receipt.clone()
        },
        // A checkpoint of a smaller tree.
        TlogProof {
            checkpoint: signed(&k, &t, 10),
            ..receipt.clone()
        },
    ];
    for bad in altered {
        assert!(
            lightwidget_tlog::receipt::verify(&bad.to_text(), k.verifier_key()).is_err(),
            "{bad:?}"
        );
    }
    assert!(lightwidget_tlog::receipt::verify(&text, key().verifier_key()).is_err());
}

//! The witness: it holds the last checkpoint it verified, pinned to one verifier key, and
//! accepts a newer one only with a consistency proof from the root it holds. What it meets
//! is judged here, apart from how it was fetched ([`judge`]); what proves misbehaviour to a
//! third party is judged by [`verify_evidence`] from the evidence files alone.

use crate::checkpoint::Checkpoint;
use crate::proof::{decode_hash, encode_hash};
use crate::tree::{check_consistency, Hash};
use serde::{Deserialize, Serialize};
use std::path::Path;

/// Exit codes of `witness check` (and of `receipt verify --online`).
pub mod exit {
    pub const CONSISTENT: u8 = 0;
    pub const OPERATIONAL: u8 = 1;
    pub const DOES_NOT_VERIFY: u8 = 2;
    pub const FORK: u8 = 3;
    pub const ROLLBACK: u8 = 4;
}

/// The witness's state file: where the log is, the key it pinned, the checkpoint it holds.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct State {
    pub url: String,
    pub vkey: String,
    /// The signed note of the last checkpoint verified.
    pub checkpoint: String,
}

impl State {
    pub fn read(path: &Path) -> Result<State, String> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read the state file {}: {e}", path.display()))?;
        serde_json::from_str(&text).map_err(|e| format!("the state file is not a state: {e}"))
    }

    /// Writes the state atomically: a temporary file beside it, synced, then renamed over it
    /// (and the directory synced), so that a crash leaves the old state or the new, whole.
    pub fn write(&self, path: &Path) -> Result<(), String> {
        let text = serde_json::to_string_pretty(self).map_err(|e| e.to_string())?;
        write_atomically(path, text.as_bytes())
    }
}

/// Writes `bytes` to `path` through a synced temporary file and a rename.
pub fn write_atomically(path: &Path, bytes: &[u8]) -> Result<(), String> {
    use std::io::Write;
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => std::path::PathBuf::from("."),
    };
    let name = path
        .file_name()
        .ok_or_else(|| format!("{} is not a file name", path.display()))?;
    let tmp = dir.join(format!(
        ".{}.{}.tmp",
        name.to_string_lossy(),
        std::process::id()
    ));
    let write = || -> std::io::Result<()> {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)?;
        std::fs::File::open(&dir)?.sync_all()
    };
    write().map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        format!("cannot write {}: {e}", path.display())
    })
}

/// A server's answer to `GET /v1/log/proof/consistency`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConsistencyAnswer {
    pub first: u64,
    pub second: u64,
    pub first_root: String,
    pub consistency: Vec<String>,
}

impl ConsistencyAnswer {
    /// The first root and the proof's hashes, decoded.
    pub fn decoded(&self) -> Option<(Hash, Vec<Hash>)> {
        let root = decode_hash(&self.first_root)?;
        let proof = self
            .consistency
            .iter()
            .map(|h| decode_hash(h))
            .collect::<Option<_>>()?;
        Some((root, proof))
    }
}

/// What a check came to.
#[derive(Clone, Debug, PartialEq)]
pub enum Verdict {
    /// The new checkpoint extends the one held (or is it).
    Consistent,
    /// An answer that does not verify: a bad signature, another origin, a proof that proves
    /// nothing. Nothing is proven against the log by it.
    DoesNotVerify(String),
    /// Two validly signed checkpoints whose trees are not one the prefix of the other.
    Fork(Evidence),
    /// A validly signed checkpoint smaller than the one held.
    Rollback(Evidence),
}

impl Verdict {
    pub fn exit_code(&self) -> u8 {
        match self {
            Verdict::Consistent => exit::CONSISTENT,
            Verdict::DoesNotVerify(_) => exit::DOES_NOT_VERIFY,
            Verdict::Fork(_) => exit::FORK,
            Verdict::Rollback(_) => exit::ROLLBACK,
        }
    }
}

/// The files a witness keeps when it meets a fork or a rollback.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Evidence {
    /// The checkpoint held (`old.checkpoint`).
    pub old: String,
    /// The checkpoint met (`new.checkpoint`).
    pub new: String,
    /// `proof.txt`: what was asked and answered.
    pub proof: String,
}

const EVIDENCE_HEADER: &str = "lightwidget witness evidence v1";

impl Evidence {
    fn of(
        kind: &str,
        held: (&Checkpoint, &str),
        met: (&Checkpoint, &str),
        answer: Option<(Hash, &[Hash])>,
    ) -> Evidence {
        let mut proof = format!(
            "{EVIDENCE_HEADER}\nkind {kind}\nold {} {}\nnew {} {}\n",
            held.0.size,
            encode_hash(&held.0.root),
            met.0.size,
            encode_hash(&met.0.root)
        );
        if let Some((first_root, hashes)) = answer {
            // The log's own answer: its root at the old size, and its proof that the new
            // tree extends that root.
            proof.push_str(&format!(
                "first_root {}\nconsistency\n",
                encode_hash(&first_root)
            ));
            for h in hashes {
                proof.push_str(&encode_hash(h));
                proof.push('\n');
            }
        }
        Evidence {
            old: held.1.to_owned(),
            new: met.1.to_owned(),
            proof,
        }
    }

    pub fn write(&self, dir: &Path) -> Result<(), String> {
        std::fs::create_dir_all(dir)
            .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
        write_atomically(&dir.join("old.checkpoint"), self.old.as_bytes())?;
        write_atomically(&dir.join("new.checkpoint"), self.new.as_bytes())?;
        write_atomically(&dir.join("proof.txt"), self.proof.as_bytes())
    }

    pub fn read(dir: &Path) -> Result<Evidence, String> {
        let read = |name: &str| {
            std::fs::read_to_string(dir.join(name))
                .map_err(|e| format!("cannot read {name} in {}: {e}", dir.display()))
        };
        Ok(Evidence {
            old: read("old.checkpoint")?,
            new: read("new.checkpoint")?,
            proof: read("proof.txt")?,
        })
    }
}

/// Judges the checkpoint `met_note` against the one held. `answer` is the log's consistency
/// proof from the held size to the met one, when one was asked for (the met tree larger).
pub fn judge(
    held: &Checkpoint,
    held_note: &str,
    met_note: &str,
    vkey: &str,
    answer: Option<&ConsistencyAnswer>,
) -> Verdict {
    let met = match Checkpoint::open(met_note, vkey) {
        Ok(c) => c,
        Err(e) => return Verdict::DoesNotVerify(format!("the checkpoint: {e}")),
    };
    if met.size < held.size {
        return Verdict::Rollback(Evidence::of(
            "rollback",
            (held, held_note),
            (&met, met_note),
            None,
        ));
    }
    if met.size == held.size {
        return if met.root == held.root {
            Verdict::Consistent
        } else {
            Verdict::Fork(Evidence::of(
                "fork",
                (held, held_note),
                (&met, met_note),
                None,
            ))
        };
    }
    if held.size == 0 {
        return Verdict::Consistent;
    }
    let Some(answer) = answer else {
        return Verdict::DoesNotVerify("no consistency proof was given".into());
    };
    let Some((first_root, proof)) = answer
        .decoded()
        .filter(|_| answer.first == held.size && answer.second == met.size)
    else {
        return Verdict::DoesNotVerify("the consistency answer is not for these sizes".into());
    };
    if check_consistency(&proof, met.size, met.root, held.size, held.root).is_ok() {
        return Verdict::Consistent;
    }
    // The proof fails from the root held. If it holds from the log's own root at that size,
    // and that root is another, the log signed two trees that are not one the prefix of the
    // other: a fork, proven by the two notes and this proof.
    if first_root != held.root
        && check_consistency(&proof, met.size, met.root, held.size, first_root).is_ok()
    {
        return Verdict::Fork(Evidence::of(
            "fork",
            (held, held_note),
            (&met, met_note),
            Some((first_root, &proof)),
        ));
    }
    Verdict::DoesNotVerify("the consistency proof does not verify".into())
}

/// Whether evidence proves misbehaviour with nothing but the verifier key: two checkpoints
/// validly signed under it, and inconsistent (one size and two roots; or the larger tree
/// proven to extend a root at the smaller size that is not the smaller checkpoint's).
/// `Ok` names what is proven; `Err` says why nothing is.
pub fn verify_evidence(evidence: &Evidence, vkey: &str) -> Result<String, String> {
    let old = Checkpoint::open(&evidence.old, vkey).map_err(|e| format!("old.checkpoint: {e}"))?;
    let new = Checkpoint::open(&evidence.new, vkey).map_err(|e| format!("new.checkpoint: {e}"))?;
    if old.size == new.size {
        return if old.root != new.root {
            Ok(format!(
                "fork: two checkpoints of size {} with different roots, both signed",
                old.size
            ))
        } else {
            Err("the two checkpoints are of one tree".into())
        };
    }
    let (small, large) = if old.size < new.size {
        (&old, &new)
    } else {
        (&new, &old)
    };
    let (first_root, proof) = parse_proof(&evidence.proof)?.ok_or_else(|| {
        format!(
            "a checkpoint of size {} and one of {}, without a proof that they differ: \
             a smaller checkpoint proves nothing by itself",
            small.size, large.size
        )
    })?;
    if small.size == 0 || first_root == small.root {
        return Err("the proof is from the smaller checkpoint's own root".into());
    }
    check_consistency(&proof, large.size, large.root, small.size, first_root)
        .map_err(|e| format!("the proof does not verify: {e}"))?;
    Ok(format!(
        "fork: the signed tree of size {} extends a root at size {} other than the signed one",
        large.size, small.size
    ))
}

/// The first root and consistency proof of `proof.txt`, when it has one.
fn parse_proof(text: &str) -> Result<Option<(Hash, Vec<Hash>)>, String> {
    let mut lines = text.lines();
    if lines.next() != Some(EVIDENCE_HEADER) {
        return Err("proof.txt is not witness evidence".into());
    }
    let mut first_root = None;
    let mut proof = Vec::new();
    let mut in_proof = false;
    for line in lines {
        if in_proof {
            proof.push(decode_hash(line).ok_or("a proof line is not a hash")?);
        } else if let Some(r) = line.strip_prefix("first_root ") {
            first_root = Some(decode_hash(r).ok_or("first_root is not a hash")?);
        } else if line == "consistency" {
            in_proof = true;
        }
    }
    Ok(first_root.map(|r| (r, proof)))
}

//! The auditor's and the subject's command line (`lightwidget witness …`, `lightwidget
//! receipt …`): it speaks HTTP to the log and needs no database. Its exit codes are those of
//! [`crate::witness::exit`].

use crate::checkpoint::{check_verifier_key, Checkpoint};
use crate::proof::decode_hash;
use crate::tree::{Hash, MemoryTree};
use crate::witness::{exit, judge, verify_evidence, ConsistencyAnswer, Evidence, State, Verdict};
use std::path::{Path, PathBuf};

#[derive(Debug, clap::Subcommand)]
pub enum WitnessCommand {
    /// Pin the log's verifier key, fetch and verify its checkpoint, and write the state
    /// file (never over an existing one).
    Init {
        /// The log's base URL (http://host:port).
        #[arg(long)]
        url: String,
        /// The verifier key (`<origin>+<id>+<base64>`), or a file holding it.
        #[arg(long)]
        vkey: String,
        #[arg(long)]
        state: PathBuf,
    },
    /// Fetch the log's checkpoint and accept it only if it extends the one held. Exit 0
    /// consistent, 1 operational error, 2 an answer that does not verify, 3 a fork, 4 a
    /// rollback. The state file is rewritten (atomically) only on 0.
    Check {
        #[arg(long)]
        state: PathBuf,
        /// Where to write old.checkpoint, new.checkpoint and proof.txt on 3 and 4.
        #[arg(long)]
        evidence: Option<PathBuf>,
        /// Also rebuild the tree from the events (auditor token in LW_AUDITOR_TOKEN).
        #[arg(long)]
        audit_events: bool,
    },
    /// Exit 0 only when the evidence in DIR proves misbehaviour with nothing but the key.
    VerifyEvidence {
        dir: PathBuf,
        #[arg(long)]
        vkey: String,
    },
}

#[derive(Debug, clap::Subcommand)]
pub enum ReceiptCommand {
    /// Verify an erasure receipt offline (exit 0, or 2 when it does not verify); with
    /// --online, also that the log served at URL today extends its checkpoint (3: a fork,
    /// 4: a rollback).
    Verify {
        file: PathBuf,
        #[arg(long)]
        vkey: String,
        #[arg(long)]
        online: Option<String>,
    },
}

/// A failure: operational (exit 1) or an answer that does not verify (exit 2).
enum Fail {
    Op(String),
    Bad(String),
}

fn fail(code: u8, message: &str) -> u8 {
    eprintln!("{message}");
    code
}

/// The pinned verifier key: the argument itself, or the content of the file it names.
fn pinned_key(arg: &str) -> Result<String, String> {
    if check_verifier_key(arg).is_ok() {
        return Ok(arg.to_owned());
    }
    let text = std::fs::read_to_string(arg)
        .map_err(|_| "--vkey is neither a verifier key nor a readable file".to_string())?;
    let key = text.trim().to_owned();
    check_verifier_key(&key).map_err(|e| format!("--vkey: {e}"))?;
    Ok(key)
}

/// The log over HTTP.
struct Remote {
    base: String,
    http: reqwest::Client,
}

impl Remote {
    fn new(url: &str) -> Result<Remote, String> {
        let base = url.trim_end_matches('/').to_owned();
        if !(base.starts_with("http://") || base.starts_with("https://")) {
            return Err(format!("{url} is not an http(s) URL"));
        }
        let http = reqwest::Client::builder()
            .timeout(std::time::Duration::from_secs(60))
            .build()
            .map_err(|e| e.to_string())?;
        Ok(Remote { base, http })
    }

    async fn get(&self, path: &str, token: Option<&str>) -> Result<reqwest::Response, String> {
        let mut req = self.http.get(format!("{}{path}", self.base));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        let resp = req.send().await.map_err(|e| format!("GET {path}: {e}"))?;
        if !resp.status().is_success() {
            return Err(format!("GET {path}: {}", resp.status()));
        }
        Ok(resp)
    }

    async fn checkpoint(&self) -> Result<String, String> {
        let resp = self.get("/v1/log/checkpoint", None).await?;
        resp.text().await.map_err(|e| e.to_string())
    }

    async fn consistency(&self, first: u64, second: u64) -> Result<ConsistencyAnswer, Fail> {
        let path = format!("/v1/log/proof/consistency?first={first}&second={second}");
        let resp = self.get(&path, None).await.map_err(Fail::Op)?;
        let body = resp.bytes().await.map_err(|e| Fail::Op(e.to_string()))?;
        serde_json::from_slice(&body)
            .map_err(|e| Fail::Bad(format!("the consistency answer is not one: {e}")))
    }

    /// Rebuilds the tree of the first `size` events from the auditor's event stream: the
    /// positions must run from 1 without a gap and each `prev_hash` must be the hash before.
    async fn tree_of_events(&self, token: &str, size: u64) -> Result<MemoryTree, Fail> {
        let path = format!("/v1/audit/events?limit={}", size.max(1));
        let mut resp = self.get(&path, Some(token)).await.map_err(Fail::Op)?;
        let mut tree = MemoryTree::default();
        let mut prev = Hash([0; 32]);
        let mut pending: Vec<u8> = Vec::new();
        let mut take = |line: &[u8], tree: &mut MemoryTree| -> Result<(), Fail> {
            if line.is_empty() || tree.size() >= size {
                return Ok(());
            }
            let e: EventHashes = serde_json::from_slice(line)
                .map_err(|_| Fail::Bad("an event line is not an event".into()))?;
            let want = tree.size() + 1;
            if e.position != want {
                return Err(Fail::Bad(format!(
                    "the events skip from position {} to {}",
                    want - 1,
                    e.position
                )));
            }
            let (Some(p), Some(h)) = (hex_hash(&e.prev_hash), hex_hash(&e.hash)) else {
                return Err(Fail::Bad(format!("event {} has no hashes", e.position)));
            };
            if p != prev {
                return Err(Fail::Bad(format!(
                    "event {} does not chain to the one before",
                    e.position
                )));
            }
            tree.append(&h.0).map_err(|e| Fail::Bad(e.to_string()))?;
            prev = h;
            Ok(())
        };
        while let Some(chunk) = resp.chunk().await.map_err(|e| Fail::Op(e.to_string()))? {
            pending.extend_from_slice(&chunk);
            while let Some(n) = pending.iter().position(|b| *b == b'\n') {
                let line: Vec<u8> = pending.drain(..=n).collect();
                take(&line[..n], &mut tree)?;
            }
        }
        take(&pending, &mut tree)?;
        if tree.size() < size {
            return Err(Fail::Bad(format!(
                "the log served {} events for a checkpoint of {size}",
                tree.size()
            )));
        }
        Ok(tree)
    }
}

#[derive(serde::Deserialize)]
struct EventHashes {
    position: u64,
    prev_hash: String,
    hash: String,
}

fn hex_hash(s: &str) -> Option<Hash> {
    Some(Hash(hex::decode(s).ok()?.try_into().ok()?))
}

/// Runs a witness command; its exit code.
pub async fn witness(command: WitnessCommand) -> u8 {
    match command {
        WitnessCommand::Init { url, vkey, state } => init(&url, &vkey, &state).await,
        WitnessCommand::Check {
            state,
            evidence,
            audit_events,
        } => check(&state, evidence.as_deref(), audit_events).await,
        WitnessCommand::VerifyEvidence { dir, vkey } => {
            let key = match pinned_key(&vkey) {
                Ok(k) => k,
                Err(e) => return fail(exit::OPERATIONAL, &e),
            };
            let evidence = match Evidence::read(&dir) {
                Ok(e) => e,
                Err(e) => return fail(exit::OPERATIONAL, &e),
            };
            match verify_evidence(&evidence, &key) {
                Ok(proven) => {
                    println!("{proven}");
                    exit::CONSISTENT
                }
                Err(why) => fail(exit::DOES_NOT_VERIFY, &format!("nothing proven: {why}")),
            }
        }
    }
}

async fn init(url: &str, vkey: &str, state: &Path) -> u8 {
    let key = match pinned_key(vkey) {
        Ok(k) => k,
        Err(e) => return fail(exit::OPERATIONAL, &e),
    };
    if state.exists() {
        return fail(
            exit::OPERATIONAL,
            &format!(
                "{} exists: a witness is not initialised twice",
                state.display()
            ),
        );
    }
    let remote = match Remote::new(url) {
        Ok(r) => r,
        Err(e) => return fail(exit::OPERATIONAL, &e),
    };
    let note = match remote.checkpoint().await {
        Ok(n) => n,
        Err(e) => return fail(exit::OPERATIONAL, &e),
    };
    let checkpoint = match Checkpoint::open(&note, &key) {
        Ok(c) => c,
        Err(e) => return fail(exit::DOES_NOT_VERIFY, &format!("the checkpoint: {e}")),
    };
    let s = State {
        url: url.to_owned(),
        vkey: key,
        checkpoint: note,
    };
    match s.write(state) {
        Ok(()) => {
            println!("holding size {}", checkpoint.size);
            exit::CONSISTENT
        }
        Err(e) => fail(exit::OPERATIONAL, &e),
    }
}

async fn check(state_path: &Path, evidence_dir: Option<&Path>, audit_events: bool) -> u8 {
    let state = match State::read(state_path) {
        Ok(s) => s,
        Err(e) => return fail(exit::OPERATIONAL, &e),
    };
    let held = match Checkpoint::open(&state.checkpoint, &state.vkey) {
        Ok(c) => c,
        Err(e) => {
            return fail(
                exit::OPERATIONAL,
                &format!("the state file's checkpoint does not verify: {e}"),
            )
        }
    };
    let token = if audit_events {
        match std::env::var("LW_AUDITOR_TOKEN") {
            Ok(t) if !t.is_empty() => Some(t),
            _ => return fail(exit::OPERATIONAL, "--audit-events needs LW_AUDITOR_TOKEN"),
        }
    } else {
        None
    };
    let remote = match Remote::new(&state.url) {
        Ok(r) => r,
        Err(e) => return fail(exit::OPERATIONAL, &e),
    };
    let (met_note, verdict) = match meet(&remote, &held, &state.checkpoint, &state.vkey).await {
        Ok(v) => v,
        Err(Fail::Op(e)) => return fail(exit::OPERATIONAL, &e),
        Err(Fail::Bad(e)) => return fail(exit::DOES_NOT_VERIFY, &e),
    };
    match &verdict {
        Verdict::Consistent => {}
        Verdict::DoesNotVerify(why) => return fail(exit::DOES_NOT_VERIFY, why),
        Verdict::Fork(evidence) | Verdict::Rollback(evidence) => {
            let what = if matches!(verdict, Verdict::Fork(_)) {
                "a fork"
            } else {
                "a rollback"
            };
            eprintln!("{what}: the log's checkpoint does not extend the one held");
            if let Some(dir) = evidence_dir {
                if let Err(e) = evidence.write(dir) {
                    eprintln!("{e}");
                } else {
                    eprintln!("evidence written to {}", dir.display());
                }
            }
            return verdict.exit_code();
        }
    }
    let Ok(met) = Checkpoint::open(&met_note, &state.vkey) else {
        return fail(exit::DOES_NOT_VERIFY, "the checkpoint does not verify");
    };
    if let Some(token) = token {
        let tree = match remote.tree_of_events(&token, met.size).await {
            Ok(t) => t,
            Err(Fail::Op(e)) => return fail(exit::OPERATIONAL, &e),
            Err(Fail::Bad(e)) => return fail(exit::DOES_NOT_VERIFY, &e),
        };
        match tree.root(met.size) {
            Ok(root) if root == met.root => {}
            _ => {
                return fail(
                    exit::DOES_NOT_VERIFY,
                    &format!(
                        "the events do not rebuild the signed root of size {}: \
                         what the log serves is not what it signed",
                        met.size
                    ),
                )
            }
        }
    }
    let next = State {
        checkpoint: met_note,
        ..state
    };
    if let Err(e) = next.write(state_path) {
        return fail(exit::OPERATIONAL, &e);
    }
    println!("consistent: size {} to {}", held.size, met.size);
    exit::CONSISTENT
}

/// Fetches the log's checkpoint (and, when it is larger, the proof from the held size) and
/// judges it.
async fn meet(
    remote: &Remote,
    held: &Checkpoint,
    held_note: &str,
    vkey: &str,
) -> Result<(String, Verdict), Fail> {
    let note = remote.checkpoint().await.map_err(Fail::Op)?;
    let answer = match Checkpoint::open(&note, vkey) {
        Ok(met) if met.size > held.size && held.size > 0 => {
            Some(remote.consistency(held.size, met.size).await?)
        }
        _ => None,
    };
    let verdict = judge(held, held_note, &note, vkey, answer.as_ref());
    Ok((note, verdict))
}

/// Runs a receipt command; its exit code.
pub async fn receipt(command: ReceiptCommand) -> u8 {
    let ReceiptCommand::Verify { file, vkey, online } = command;
    let key = match pinned_key(&vkey) {
        Ok(k) => k,
        Err(e) => return fail(exit::OPERATIONAL, &e),
    };
    let text = match std::fs::read_to_string(&file) {
        Ok(t) => t,
        Err(e) => return fail(exit::OPERATIONAL, &format!("{}: {e}", file.display())),
    };
    let receipt = match crate::receipt::verify(&text, &key) {
        Ok(r) => r,
        Err(e) => return fail(exit::DOES_NOT_VERIFY, &format!("the receipt: {e}")),
    };
    println!(
        "verified: {} at position {} on {} ({}), in the log's signed tree of size {}",
        receipt.event_type,
        receipt.position,
        receipt.stream,
        receipt.recorded_at,
        receipt.checkpoint.size
    );
    let Some(url) = online else {
        return exit::CONSISTENT;
    };
    let remote = match Remote::new(&url) {
        Ok(r) => r,
        Err(e) => return fail(exit::OPERATIONAL, &e),
    };
    match meet(&remote, &receipt.checkpoint, &receipt.note, &key).await {
        Ok((_, Verdict::Consistent)) => {
            println!("today's log extends it");
            exit::CONSISTENT
        }
        Ok((_, v @ Verdict::DoesNotVerify(_))) => {
            let Verdict::DoesNotVerify(why) = &v else {
                return exit::DOES_NOT_VERIFY;
            };
            fail(v.exit_code(), why)
        }
        Ok((_, v)) => fail(
            v.exit_code(),
            "today's log does not extend the receipt's checkpoint",
        ),
        Err(Fail::Op(e)) => fail(exit::OPERATIONAL, &e),
        Err(Fail::Bad(e)) => fail(exit::DOES_NOT_VERIFY, &e),
    }
}

/// For tests and tools: a hash from standard base64.
pub fn hash_from_base64(s: &str) -> Option<Hash> {
    decode_hash(s)
}

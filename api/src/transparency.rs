//! The transparency log's server side: the signing key, the signer that turns the log's
//! head into signed checkpoints (at start, then within a second of the head moving), and
//! the server's own witness: it never signs a checkpoint that does not extend the one in
//! `LW_LOG_CHECKPOINT_FILE` (nor the last one in the store). Faced with one it keeps the old
//! checkpoint, logs an alarm, and `/readyz` answers 503 naming `log`.
//!
//! The key is read from its file into memory and goes nowhere else: not to the store, the
//! logs, the metrics or an export. Only signed notes are stored.

use crate::settings::Settings;
use anyhow::Context as _;
use lightwidget_store::{EventStore, SignedCheckpoint, StoreError, ViewStore};
use lightwidget_tlog::tree::check_consistency;
use lightwidget_tlog::{Checkpoint, LogKey};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::watch;

/// The origin of a key generated without `LW_LOG_ORIGIN`.
pub const DEFAULT_ORIGIN: &str = "lightwidget.local/log";
/// The key file's name in the data dir.
pub const KEY_FILE: &str = "log.key";
/// The checkpoint file's name in the data dir.
pub const CHECKPOINT_FILE: &str = "log.checkpoint";
/// The lease a signer holds: one signer per store.
const LEASE: &str = "transparency-log";
/// How long the signer lets appends gather after the head moves before it signs.
const GATHER: Duration = Duration::from_millis(200);

/// The key a server signs with, and where it keeps the last checkpoint it signed.
#[derive(Debug)]
pub struct LogIdentity {
    pub key: LogKey,
    pub checkpoint_file: Option<PathBuf>,
    /// True when the key was generated at this start (its verifier key is printed once).
    pub generated: bool,
}

/// Reads (or, the first time, generates) the log's key as the settings say.
pub fn identity(settings: &Settings) -> anyhow::Result<LogIdentity> {
    let log = &settings.log;
    let origin = log.origin.as_deref().unwrap_or(DEFAULT_ORIGIN);
    let checkpoint_file = log.checkpoint_file.clone().or_else(|| {
        log.persistent
            .then(|| settings.data_dir.join(CHECKPOINT_FILE))
    });
    if !log.persistent && log.key_file.is_none() {
        let (key, _) = LogKey::generate(origin).context("LW_LOG_ORIGIN")?;
        return Ok(LogIdentity {
            key,
            checkpoint_file,
            generated: false,
        });
    }
    let (path, setting) = match &log.key_file {
        Some(f) => (f.clone(), "LW_LOG_KEY_FILE"),
        None => (settings.data_dir.join(KEY_FILE), "the log key file"),
    };
    match std::fs::read_to_string(&path) {
        Ok(text) => {
            crate::only_for_owner(&path, setting, "600")?;
            let key = LogKey::from_private(&text)
                .map_err(|_| anyhow::anyhow!("{setting} {} is not a log key", path.display()))?;
            if log.origin.as_deref().is_some_and(|o| o != key.origin()) {
                anyhow::bail!(
                    "{setting} {} is the key of `{}`, not of LW_LOG_ORIGIN `{origin}`",
                    path.display(),
                    key.origin()
                );
            }
            Ok(LogIdentity {
                key,
                checkpoint_file,
                generated: false,
            })
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && log.key_file.is_none() => {
            crate::private_dir(&settings.data_dir, "LW_DATA_DIR")?;
            let (key, private) = LogKey::generate(origin).context("LW_LOG_ORIGIN")?;
            crate::write_private(&path, format!("{private}\n").as_bytes())
                .with_context(|| format!("{setting} {}", path.display()))?;
            tracing::info!(path = %path.display(), "generated the transparency log's key");
            Ok(LogIdentity {
                key,
                checkpoint_file,
                generated: true,
            })
        }
        Err(e) => Err(e).with_context(|| format!("reading {setting} {}", path.display())),
    }
}

/// The signer and what it reports.
pub struct Transparency {
    key: LogKey,
    checkpoint_file: Option<PathBuf>,
    store: Arc<dyn EventStore>,
    views: Arc<dyn ViewStore>,
    /// Why the signer refuses to sign, while it does.
    alarm: Mutex<Option<String>>,
}

impl std::fmt::Debug for Transparency {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Transparency")
            .field("verifier_key", &self.key.verifier_key())
            .finish_non_exhaustive()
    }
}

/// What the signer did in one round.
#[derive(Debug, PartialEq, Eq)]
enum Round {
    /// The checkpoint of this size is signed (now or before).
    Signed(u64),
    /// It refused: the log does not extend a checkpoint it signed before.
    Refused,
}

impl Transparency {
    pub fn new(
        identity: LogIdentity,
        store: Arc<dyn EventStore>,
        views: Arc<dyn ViewStore>,
    ) -> Transparency {
        Transparency {
            key: identity.key,
            checkpoint_file: identity.checkpoint_file,
            store,
            views,
            alarm: Mutex::new(None),
        }
    }

    /// The verifier key auditors pin.
    pub fn verifier_key(&self) -> &str {
        self.key.verifier_key()
    }

    /// Why this server refuses to sign, while it does.
    pub fn alarm(&self) -> Option<String> {
        self.alarm.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    fn raise(&self, why: String) {
        let mut alarm = self.alarm.lock().unwrap_or_else(|p| p.into_inner());
        if alarm.as_deref() != Some(why.as_str()) {
            tracing::error!(alarm = %why, "ALARM: the transparency log will not sign");
        }
        *alarm = Some(why);
    }

    fn clear(&self) {
        let mut alarm = self.alarm.lock().unwrap_or_else(|p| p.into_inner());
        if alarm.take().is_some() {
            tracing::warn!("the transparency log signs again");
        }
    }

    /// The latest checkpoint signed (by any process on this store).
    pub async fn latest(&self) -> Result<Option<SignedCheckpoint>, StoreError> {
        self.store.latest_checkpoint().await
    }

    /// The checkpoint in the checkpoint file, verified under this key.
    fn witnessed(&self) -> Result<Option<(Checkpoint, String)>, String> {
        let Some(path) = &self.checkpoint_file else {
            return Ok(None);
        };
        let note = match std::fs::read_to_string(path) {
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(format!("LW_LOG_CHECKPOINT_FILE cannot be read: {e}")),
        };
        Checkpoint::open(&note, self.verifier_key())
            .map(|c| Some((c, note)))
            .map_err(|e| format!("LW_LOG_CHECKPOINT_FILE does not verify under the log's key: {e}"))
    }

    /// Signs the checkpoint of the log's head when it is not signed yet, after checking that
    /// the tree extends the witnessed checkpoint and the store's last one.
    async fn sign_once(&self) -> Result<Round, StoreError> {
        let size = self.store.head().await?.position;
        let witnessed = match self.witnessed() {
            Ok(w) => w,
            Err(why) => {
                self.raise(why);
                return Ok(Round::Refused);
            }
        };
        let latest = self.store.latest_checkpoint().await?.and_then(|c| {
            Checkpoint::open(&c.note, self.verifier_key())
                .ok()
                .map(|cp| (cp, c.note))
        });
        let root = lightwidget_store::tree::root(&*self.store, size).await?;
        for (what, held) in [
            ("the checkpoint file", &witnessed),
            ("the store's last checkpoint", &latest),
        ] {
            let Some((held, _)) = held else { continue };
            if size < held.size {
                self.raise(format!(
                    "the log holds {size} events, fewer than the {} of {what}: a rollback",
                    held.size
                ));
                return Ok(Round::Refused);
            }
            let proof = lightwidget_store::tree::consistency(&*self.store, size, held.size).await?;
            if check_consistency(&proof, size, root, held.size, held.root).is_err() {
                self.raise(format!(
                    "the log's tree of {size} does not extend {what} (size {}): a fork",
                    held.size
                ));
                return Ok(Round::Refused);
            }
        }
        let note = match &latest {
            Some((cp, note)) if cp.size == size && cp.root == root => note.clone(),
            _ => {
                let note = self
                    .key
                    .sign(size, root)
                    .map_err(|e| StoreError::Internal(format!("signing a checkpoint: {e}")))?;
                // The witness file first: a checkpoint is published only once this server
                // would refuse to sign anything that does not extend it.
                self.write_witness(&note, witnessed.as_ref(), size)?;
                self.store
                    .record_checkpoint(&SignedCheckpoint {
                        size,
                        root: root.0,
                        note: note.clone(),
                        signed_at: chrono::Utc::now(),
                    })
                    .await?;
                tracing::debug!(size, "signed a checkpoint");
                note
            }
        };
        self.write_witness(&note, witnessed.as_ref(), size)?;
        self.clear();
        Ok(Round::Signed(size))
    }

    /// Keeps `note` (of `size`) in the checkpoint file unless the file holds it already.
    fn write_witness(
        &self,
        note: &str,
        witnessed: Option<&(Checkpoint, String)>,
        size: u64,
    ) -> Result<(), StoreError> {
        let Some(path) = &self.checkpoint_file else {
            return Ok(());
        };
        if witnessed.is_some_and(|(c, n)| c.size == size && n == note) {
            return Ok(());
        }
        lightwidget_tlog::witness::write_atomically(path, note.as_bytes())
            .map_err(|e| StoreError::Internal(format!("LW_LOG_CHECKPOINT_FILE: {e}")))
    }

    /// Signs while this process holds the signer's lease, until `stop`.
    pub async fn run(self: Arc<Self>, mut stop: watch::Receiver<bool>) {
        let mut backoff = Duration::from_millis(250);
        loop {
            if *stop.borrow() {
                return;
            }
            let wait = match self.views.try_lease(LEASE).await {
                Ok(None) => Duration::from_secs(1),
                Err(e) => {
                    tracing::warn!(error = %e, "cannot take the log signer's lease");
                    backoff
                }
                Ok(Some(lease)) => {
                    let result = tokio::select! {
                        r = self.sign_while_held() => r,
                        _ = lease.lost() => Ok(()),
                        _ = stop.wait_for(|s| *s) => return,
                    };
                    if let Err(e) = result {
                        tracing::error!(error = %e, "the log signer failed");
                    }
                    backoff
                }
            };
            tokio::select! {
                _ = stop.wait_for(|s| *s) => return,
                _ = tokio::time::sleep(wait) => {}
            }
            backoff = (backoff * 2).min(Duration::from_secs(2));
        }
    }

    async fn sign_while_held(&self) -> Result<(), StoreError> {
        loop {
            let covered = match self.sign_once().await? {
                Round::Signed(size) => size,
                // Refused: looked at again every second, in case the operator mends it.
                Round::Refused => u64::MAX,
            };
            if covered == u64::MAX {
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
            // Until the head moves past what is signed: an idle log costs one head read a
            // second, not a round of tree reads and proofs.
            loop {
                self.store.wait_for(covered, Duration::from_secs(1)).await;
                if self.store.head().await?.position != covered {
                    break;
                }
            }
            tokio::time::sleep(GATHER).await;
        }
    }
}

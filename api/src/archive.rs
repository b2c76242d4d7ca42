//! Offline audit (issue 6): verifying the chain of a store with progress, and the encrypted
//! audit archive (R13).
//!
//! An archive is an [age](https://age-encryption.org) file encrypted to a passphrase (scrypt)
//! whose plaintext is NDJSON: one header line `{"format", "version", "head_position",
//! "head_hash"}`, then every event exactly as stored — sealed payload, hashes — in position
//! order. Nothing is opened on the way out: personal data stays sealed under data keys the
//! archive does not carry, so an erasure after the export still holds, and the chain, which is
//! computed over the sealed text, verifies from the archive alone.

use chrono::{DateTime, Utc};
use lightwidget_store::chain::ChainVerifier;
use lightwidget_store::{format_time, EventStore, Hash, StoredEvent, VerifyReport};
use serde::{Deserialize, Serialize};
use std::io::{BufRead, Write};
use std::time::Instant;
use uuid::Uuid;

pub const FORMAT: &str = "lightwidget-audit-archive";
pub const VERSION: u32 = 1;
const PAGE: usize = 1000;

/// Progress of a long run: a bar with rate and ETA on a terminal, plain lines otherwise.
pub struct Progress {
    bar: Option<indicatif::ProgressBar>,
    label: &'static str,
    total: u64,
    done: u64,
    next_line: u64,
    started: Instant,
    quiet: bool,
}

impl Progress {
    /// Reports on standard error; `quiet` reports nothing (benchmarks, tests).
    pub fn new(label: &'static str, total: u64, quiet: bool) -> Self {
        let terminal = std::io::IsTerminal::is_terminal(&std::io::stderr());
        let bar = (!quiet && terminal).then(|| {
            let bar = indicatif::ProgressBar::new(total);
            if let Ok(style) = indicatif::ProgressStyle::with_template(
                "{msg} [{bar:40}] {pos}/{len} events, {per_sec}, ETA {eta}",
            ) {
                bar.set_style(style.progress_chars("=> "));
            }
            bar.set_message(label);
            bar
        });
        Progress {
            bar,
            label,
            total,
            done: 0,
            next_line: 0,
            started: Instant::now(),
            quiet,
        }
    }

    pub fn advance(&mut self, n: u64) {
        self.done += n;
        if let Some(bar) = &self.bar {
            bar.set_position(self.done);
        } else if !self.quiet && self.done >= self.next_line {
            let rate = self.done as f64 / self.started.elapsed().as_secs_f64().max(1e-9);
            eprintln!(
                "{}: {}/{} events ({:.0} events/s)",
                self.label, self.done, self.total, rate
            );
            self.next_line = self.done + (self.total / 20).max(10_000);
        }
    }

    pub fn finish(self) {
        if let Some(bar) = self.bar {
            bar.finish();
        } else if !self.quiet {
            let secs = self.started.elapsed().as_secs_f64();
            eprintln!(
                "{}: {} events in {:.1} s ({:.0} events/s)",
                self.label,
                self.done,
                secs,
                self.done as f64 / secs.max(1e-9)
            );
        }
    }
}

/// Recomputes the chain of a store from position 1, page by page, reporting progress.
pub async fn verify_store(
    store: &dyn EventStore,
    quiet: bool,
) -> Result<VerifyReport, lightwidget_store::StoreError> {
    let head = store.head().await?;
    let mut progress = Progress::new("verify", head.position, quiet);
    let report = lightwidget_store::chain::verify_log(store, |n| progress.advance(n)).await?;
    progress.finish();
    Ok(report)
}

#[derive(Serialize, Deserialize)]
struct Header {
    format: String,
    version: u32,
    head_position: u64,
    head_hash: String,
}

/// One stored event, as the archive holds it.
#[derive(Serialize, Deserialize)]
struct Line {
    position: u64,
    stream: String,
    version: u64,
    event_id: Uuid,
    #[serde(rename = "type")]
    event_type: String,
    schema_version: u32,
    recorded_at: String,
    actor: String,
    correlation_id: Uuid,
    causation_id: Option<Uuid>,
    data: String,
    prev_hash: String,
    hash: String,
}

impl Line {
    fn of(e: &StoredEvent) -> Self {
        Line {
            position: e.position,
            stream: e.stream.clone(),
            version: e.version,
            event_id: e.event_id,
            event_type: e.event_type.clone(),
            schema_version: e.schema_version,
            recorded_at: format_time(e.recorded_at),
            actor: e.actor.clone(),
            correlation_id: e.correlation_id,
            causation_id: e.causation_id,
            data: e.data.clone(),
            prev_hash: hex::encode(e.prev_hash),
            hash: hex::encode(e.hash),
        }
    }

    fn into_stored(self) -> anyhow::Result<StoredEvent> {
        let hash = |s: &str| -> anyhow::Result<Hash> {
            let bytes = hex::decode(s)?;
            bytes
                .try_into()
                .map_err(|_| anyhow::anyhow!("a hash is not 32 bytes"))
        };
        Ok(StoredEvent {
            position: self.position,
            stream: self.stream,
            version: self.version,
            event_id: self.event_id,
            event_type: self.event_type,
            schema_version: self.schema_version,
            recorded_at: DateTime::parse_from_rfc3339(&self.recorded_at)?.with_timezone(&Utc),
            actor: self.actor,
            correlation_id: self.correlation_id,
            causation_id: self.causation_id,
            data: self.data,
            prev_hash: hash(&self.prev_hash)?,
            hash: hash(&self.hash)?,
        })
    }
}

/// What an export wrote.
#[derive(Debug, Serialize)]
pub struct Exported {
    pub events: u64,
    pub head_position: u64,
    pub head_hash: String,
}

/// The scrypt work factor of an archive's passphrase: N = 2^18 (with r = 8, 256 MiB and a
/// fraction of a second here). Fixed rather than age's default, which picks the factor that
/// takes a second on the machine at hand — up to 1 GiB of memory on this one, varying with
/// its load.
pub const SCRYPT_LOG_N: u8 = 18;

fn passphrase_recipient(passphrase: &str) -> age::scrypt::Recipient {
    let mut r =
        age::scrypt::Recipient::new(age::secrecy::SecretString::from(passphrase.to_owned()));
    r.set_work_factor(SCRYPT_LOG_N);
    r
}

/// Writes the encrypted archive of every event up to the head as it stood at the start.
pub async fn export(
    store: &dyn EventStore,
    out: impl Write,
    passphrase: &str,
    quiet: bool,
) -> anyhow::Result<Exported> {
    let head = store.head().await?;
    let recipient = passphrase_recipient(passphrase);
    let encryptor =
        age::Encryptor::with_recipients(std::iter::once(&recipient as &dyn age::Recipient))?;
    let mut writer = std::io::BufWriter::with_capacity(1 << 20, encryptor.wrap_output(out)?);
    serde_json::to_writer(
        &mut writer,
        &Header {
            format: FORMAT.into(),
            version: VERSION,
            head_position: head.position,
            head_hash: hex::encode(head.hash),
        },
    )?;
    writer.write_all(b"\n")?;
    let mut progress = Progress::new("export", head.position, quiet);
    let mut after = 0;
    let mut events = 0;
    while after < head.position {
        let batch = store.read_all_raw(after, PAGE).await?;
        let Some(last) = batch.last() else { break };
        after = last.position;
        for e in batch.iter().take_while(|e| e.position <= head.position) {
            serde_json::to_writer(&mut writer, &Line::of(e))?;
            writer.write_all(b"\n")?;
            events += 1;
        }
        progress.advance(batch.len() as u64);
    }
    progress.finish();
    let encrypted = writer
        .into_inner()
        .map_err(|e| anyhow::anyhow!("writing the archive: {}", e.error()))?;
    encrypted.finish()?;
    Ok(Exported {
        events,
        head_position: head.position,
        head_hash: hex::encode(head.hash),
    })
}

/// Opens an archive: its header and its event lines.
fn open_archive(
    input: impl std::io::Read,
    passphrase: &str,
) -> anyhow::Result<(Header, impl Iterator<Item = std::io::Result<String>>)> {
    let identity =
        age::scrypt::Identity::new(age::secrecy::SecretString::from(passphrase.to_owned()));
    let decryptor = age::Decryptor::new(std::io::BufReader::new(input))
        .map_err(|e| anyhow::anyhow!("not an audit archive: {e}"))?;
    let reader = decryptor
        .decrypt(std::iter::once(&identity as &dyn age::Identity))
        .map_err(|_| anyhow::anyhow!("the passphrase does not open this archive"))?;
    let mut lines = std::io::BufReader::with_capacity(1 << 20, reader).lines();
    let header: Header = serde_json::from_str(
        &lines
            .next()
            .ok_or_else(|| anyhow::anyhow!("the archive is empty"))??,
    )?;
    if header.format != FORMAT || header.version != VERSION {
        anyhow::bail!(
            "not a {FORMAT} v{VERSION} (found {} v{})",
            header.format,
            header.version
        );
    }
    Ok((header, lines))
}

/// Reads an archive back (decrypting with the passphrase) and recomputes its chain.
pub fn verify_archive(
    input: impl std::io::Read,
    passphrase: &str,
    quiet: bool,
) -> anyhow::Result<VerifyReport> {
    let (header, lines) = open_archive(input, passphrase)?;
    let mut progress = Progress::new("verify archive", header.head_position, quiet);
    let mut verifier = ChainVerifier::default();
    let mut n = 0u64;
    for line in lines {
        let event = serde_json::from_str::<Line>(&line?)?.into_stored()?;
        n += 1;
        if n.is_multiple_of(1000) {
            progress.advance(1000);
        }
        if !verifier.feed(&event) {
            break;
        }
    }
    progress.advance(n % 1000);
    progress.finish();
    let head_hash: Hash = hex::decode(&header.head_hash)?
        .try_into()
        .map_err(|_| anyhow::anyhow!("the header's hash is not 32 bytes"))?;
    Ok(verifier.finish(header.head_position, head_hash))
}

/// Imports an archive into a store whose log it continues (normally an empty one): events
/// keep their positions, ids, sealed payloads and hashes, so the imported log verifies with
/// the same head hash. The data keys are not in the archive: personal fields read as erased.
pub async fn import(
    store: &dyn EventStore,
    input: impl std::io::Read,
    passphrase: &str,
    quiet: bool,
) -> anyhow::Result<Exported> {
    let (header, lines) = open_archive(input, passphrase)?;
    let mut progress = Progress::new("import", header.head_position, quiet);
    let mut batch = Vec::with_capacity(PAGE);
    let mut events = 0u64;
    let mut head = store.head().await?;
    for line in lines {
        batch.push(serde_json::from_str::<Line>(&line?)?.into_stored()?);
        if batch.len() == PAGE {
            head = store.import(&batch).await?;
            events += batch.len() as u64;
            progress.advance(batch.len() as u64);
            batch.clear();
        }
    }
    if !batch.is_empty() {
        head = store.import(&batch).await?;
        events += batch.len() as u64;
        progress.advance(batch.len() as u64);
    }
    progress.finish();
    if hex::encode(head.hash) != header.head_hash {
        anyhow::bail!("the imported log does not end at the archive's head hash");
    }
    Ok(Exported {
        events,
        head_position: head.position,
        head_hash: hex::encode(head.hash),
    })
}

/// A point of the log given as a position, or as an RFC 3339 time (the last position recorded
/// at or before it); `None` when `at` is neither.
pub async fn position_of(
    store: &dyn EventStore,
    at: &str,
) -> Result<Option<u64>, lightwidget_projections::ProjectionError> {
    if let Ok(p) = at.parse::<u64>() {
        return Ok(Some(p));
    }
    let Ok(time) = DateTime::parse_from_rfc3339(at) else {
        return Ok(None);
    };
    lightwidget_projections::position_at_time(store, time.with_timezone(&Utc))
        .await
        .map(Some)
}

//! `lightwidget`: the server and the operator's tools, on the store the environment names
//! (`LW_DATABASE_URL`, else the embedded store in `LW_DATA_DIR`).

use anyhow::Context;
use clap::{Parser, Subcommand};
use lightwidget_api::{open_store, shutdown_signal, Application, Settings};
use std::process::ExitCode;

/// mimalloc rather than glibc's malloc: the server allocates and frees many small JSON
/// values across its threads; measured in the HTTP bench (BENCHMARKS.md), ~12% less CPU per
/// request on PostgreSQL. The `system-allocator` feature keeps glibc's, for measuring the
/// two against each other and for heap profilers that watch `malloc` (heaptrack).
#[cfg(not(feature = "system-allocator"))]
#[global_allocator]
static ALLOCATOR: lightwidget_alloc::MiMalloc = lightwidget_alloc::MiMalloc;

#[derive(Parser)]
#[command(
    name = "lightwidget",
    version,
    about = "LightWidget ledger: server and audit tools"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serve the HTTP API (LW_LISTEN, default 127.0.0.1:8080).
    Serve,
    /// Apply the storage migrations and exit (serve applies them too).
    Migrate,
    /// Audit the event log.
    Audit {
        #[command(subcommand)]
        command: AuditCommand,
    },
    /// Print a read model as it stood at a log position or time, computed from the log.
    Replay {
        /// accounts, widgets, invoices, statistics or retention.
        #[arg(long)]
        projection: String,
        /// A log position, or an RFC 3339 time (the last position recorded at or before it).
        #[arg(long)]
        at: String,
        /// Print only this document.
        #[arg(long)]
        key: Option<String>,
    },
    /// The auditor's witness of the transparency log: needs the log's URL and verifier key,
    /// no database.
    Witness {
        #[command(subcommand)]
        command: lightwidget_tlog::cli::WitnessCommand,
    },
    /// Erasure receipts: verify one with the log's verifier key, no database.
    Receipt {
        #[command(subcommand)]
        command: lightwidget_tlog::cli::ReceiptCommand,
    },
    /// The transparency log's signing key.
    LogKey {
        #[command(subcommand)]
        command: LogKeyCommand,
    },
}

#[derive(Subcommand)]
enum LogKeyCommand {
    /// Writes a new Ed25519 key named ORIGIN to FILE (mode 0600, never over an existing
    /// file) in the private-key format of Go's sumdb/note, and prints its verifier key.
    Generate {
        #[arg(long)]
        origin: String,
        #[arg(long)]
        out: std::path::PathBuf,
    },
}

#[derive(Subcommand)]
enum AuditCommand {
    /// Recompute the hash chain from position 1 (of the store, or of an archive with
    /// --file); exit non-zero naming the first bad position.
    Verify {
        /// An archive written by `audit export` (passphrase: LW_EXPORT_PASSPHRASE).
        #[arg(long)]
        file: Option<std::path::PathBuf>,
    },
    /// Write every event, sealed as stored, to an archive encrypted with the passphrase in
    /// LW_EXPORT_PASSPHRASE (age, scrypt).
    Export {
        #[arg(long)]
        out: std::path::PathBuf,
    },
    /// Load an archive into the store (normally an empty one; the events must continue its
    /// chain). Personal fields read as erased there: the data keys are not in the archive.
    Import {
        #[arg(long)]
        file: std::path::PathBuf,
    },
}

/// The archive passphrase, from the environment (never from the command line, where other
/// users of the machine could read it).
fn passphrase() -> anyhow::Result<String> {
    let p = std::env::var("LW_EXPORT_PASSPHRASE").unwrap_or_default();
    if p.chars().count() < 12 {
        anyhow::bail!(
            "LW_EXPORT_PASSPHRASE must hold the archive passphrase (at least 12 characters)"
        );
    }
    Ok(p)
}

fn verdict(report: &lightwidget_store::VerifyReport) -> anyhow::Result<ExitCode> {
    println!("{}", serde_json::to_string_pretty(report)?);
    Ok(if report.ok {
        ExitCode::SUCCESS
    } else {
        eprintln!(
            "chain broken at position {}",
            report.first_bad_position.unwrap_or_default()
        );
        ExitCode::from(2)
    })
}

fn main() -> ExitCode {
    #[cfg(not(feature = "system-allocator"))]
    lightwidget_alloc::return_freed_memory_at_once();
    tracing_subscriber::fmt()
        .with_env_filter(lightwidget_api::log_filter(
            std::env::var("RUST_LOG").ok().as_deref(),
        ))
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    // The auditor's and the subject's tools read no server settings and open no store.
    let command = match cli.command {
        Command::Witness { command } => {
            return Ok(ExitCode::from(
                lightwidget_tlog::cli::witness(command).await,
            ))
        }
        Command::Receipt { command } => {
            return Ok(ExitCode::from(
                lightwidget_tlog::cli::receipt(command).await,
            ))
        }
        other => other,
    };
    let settings = Settings::from_env()?;
    match command {
        Command::Serve => {
            let app = Application::build(settings).await?;
            // Listening for SIGTERM/SIGINT before the address is announced.
            let shutdown = shutdown_signal();
            if let Some(token) = app.generated_admin_token() {
                // Shown once, on standard output; only its hash is stored.
                println!("admin token (shown once; keep it): {token}");
            }
            if let Some(vkey) = app.generated_log_key() {
                // Public, but printed once: auditors pin it (GET /v1/log/key serves it too).
                println!("log verifier key (generated; give it to auditors): {vkey}");
            }
            tracing::info!(addr = %app.local_addr()?, "listening");
            app.run_until_stopped(shutdown).await?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Migrate => {
            open_store(&settings).await?;
            println!("migrations applied");
            Ok(ExitCode::SUCCESS)
        }
        Command::Audit {
            command: AuditCommand::Verify { file: None },
        } => {
            let storage = open_store(&settings).await?;
            verdict(&lightwidget_api::archive::verify_store(&*storage.events, false).await?)
        }
        Command::Audit {
            command: AuditCommand::Verify { file: Some(file) },
        } => {
            let passphrase = passphrase()?;
            let input = std::fs::File::open(&file)
                .with_context(|| format!("opening {}", file.display()))?;
            verdict(&lightwidget_api::archive::verify_archive(
                input,
                &passphrase,
                false,
            )?)
        }
        Command::Audit {
            command: AuditCommand::Export { out },
        } => {
            let passphrase = passphrase()?;
            let storage = open_store(&settings).await?;
            let file = std::fs::File::create(&out)
                .with_context(|| format!("creating {}", out.display()))?;
            let done = lightwidget_api::archive::export(&*storage.events, file, &passphrase, false)
                .await?;
            println!("{}", serde_json::to_string_pretty(&done)?);
            Ok(ExitCode::SUCCESS)
        }
        Command::Audit {
            command: AuditCommand::Import { file },
        } => {
            let passphrase = passphrase()?;
            let storage = open_store(&settings).await?;
            let input = std::fs::File::open(&file)
                .with_context(|| format!("opening {}", file.display()))?;
            let done =
                lightwidget_api::archive::import(&*storage.events, input, &passphrase, false)
                    .await?;
            println!("{}", serde_json::to_string_pretty(&done)?);
            Ok(ExitCode::SUCCESS)
        }
        Command::Replay {
            projection,
            at,
            key,
        } => {
            let storage = open_store(&settings).await?;
            let policy = std::sync::Arc::new(lightwidget_retention::RetentionPolicy::load(
                settings.policy_file.as_deref(),
            )?);
            let Some(p) = lightwidget_api::read_models(&policy)
                .into_iter()
                .find(|p| p.name() == projection)
            else {
                anyhow::bail!(
                    "no projection `{projection}` (accounts, widgets, invoices, statistics, retention)"
                );
            };
            let position = lightwidget_api::archive::position_of(&*storage.events, &at)
                .await?
                .ok_or_else(|| {
                    anyhow::anyhow!("--at must be a log position or an RFC 3339 time")
                })?;
            let docs =
                lightwidget_projections::evaluate_as_of(&*storage.events, &*p, position).await?;
            for (k, d) in docs {
                if key.as_ref().is_none_or(|want| *want == k) {
                    println!("{}", serde_json::json!({"key": k, "doc": d.doc}));
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Witness { .. } | Command::Receipt { .. } => Ok(ExitCode::FAILURE),
        Command::LogKey {
            command: LogKeyCommand::Generate { origin, out },
        } => {
            // No store: the key is written to its file and nowhere else.
            let (key, private) = lightwidget_tlog::LogKey::generate(&origin)?;
            lightwidget_api::write_private(&out, format!("{private}\n").as_bytes())?;
            println!("{}", key.verifier_key());
            Ok(ExitCode::SUCCESS)
        }
    }
}

//! `lightwidget`: the server and the operator's tools, on the store the environment names
//! (`LW_DATABASE_URL`, else the embedded store in `LW_DATA_DIR`).

use clap::{Parser, Subcommand};
use lightwidget_api::{open_store, shutdown_signal, Application, Settings};
use std::process::ExitCode;

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
}

#[derive(Subcommand)]
enum AuditCommand {
    /// Recompute the hash chain from position 1; exit non-zero naming the first bad position.
    Verify,
}

fn main() -> ExitCode {
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
    let settings = Settings::from_env()?;
    match cli.command {
        Command::Serve => {
            let app = Application::build(settings).await?;
            if let Some(token) = app.generated_admin_token() {
                // Shown once, on standard output; only its hash is stored.
                println!("admin token (shown once; keep it): {token}");
            }
            tracing::info!(addr = %app.local_addr()?, "listening");
            app.run_until_stopped(shutdown_signal()).await?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Migrate => {
            open_store(&settings).await?;
            println!("migrations applied");
            Ok(ExitCode::SUCCESS)
        }
        Command::Audit {
            command: AuditCommand::Verify,
        } => {
            let storage = open_store(&settings).await?;
            let report = storage.events.verify().await?;
            println!("{}", serde_json::to_string_pretty(&report)?);
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
    }
}

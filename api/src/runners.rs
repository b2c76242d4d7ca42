//! The projection runners of a server, supervised: each runs while this process holds its
//! writer's lease (one process at a time on a shared store), is started again after a
//! failure (a database restart fails every one of them), and reports how it stands to
//! `/readyz`.

use lightwidget_projections::Runner;
use lightwidget_store::ViewStore;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::watch;

/// How a runner stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RunnerState {
    /// Not started yet, or between a failure and its next attempt's lease.
    Starting,
    /// Running here.
    Running,
    /// Another process holds the lease and runs it.
    Standby,
    /// Its last attempt failed; it is tried again.
    Failing,
}

impl RunnerState {
    pub fn as_str(self) -> &'static str {
        match self {
            RunnerState::Starting => "starting",
            RunnerState::Running => "running",
            RunnerState::Standby => "standby",
            RunnerState::Failing => "failing",
        }
    }

    /// Whether a server with a runner in this state is ready to serve its read model.
    pub fn ready(self) -> bool {
        matches!(self, RunnerState::Running | RunnerState::Standby)
    }
}

/// Every runner's state, by view.
#[derive(Debug, Default)]
pub struct RunnerHealth(Mutex<BTreeMap<String, RunnerState>>);

impl RunnerHealth {
    fn set(&self, view: &str, state: RunnerState) {
        self.0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(view.to_owned(), state);
    }

    pub fn states(&self) -> BTreeMap<String, RunnerState> {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

/// How long a standby waits before it asks for the lease again.
const STANDBY_RETRY: Duration = Duration::from_secs(1);
/// The longest wait after a failure.
const MAX_BACKOFF: Duration = Duration::from_secs(2);

/// Runs `runner` until `stop` turns true: takes its lease, runs it while the lease holds, and
/// after a failure or a lost lease starts again (waiting 250 ms, doubling to 2 s).
pub async fn supervise(
    runner: Runner,
    views: Arc<dyn ViewStore>,
    health: Arc<RunnerHealth>,
    mut stop: watch::Receiver<bool>,
) {
    let view = runner.view().to_owned();
    health.set(&view, RunnerState::Starting);
    let mut backoff = Duration::from_millis(250);
    loop {
        if *stop.borrow() {
            return;
        }
        let wait = match views.try_lease(&view).await {
            Ok(None) => {
                health.set(&view, RunnerState::Standby);
                STANDBY_RETRY
            }
            Err(e) => {
                health.set(&view, RunnerState::Failing);
                tracing::warn!(projection = %view, error = %e, "cannot take the runner's lease");
                backoff
            }
            Ok(Some(lease)) => {
                health.set(&view, RunnerState::Running);
                let started = std::time::Instant::now();
                let mut until = stop.clone();
                let result = runner
                    .run(async {
                        tokio::select! {
                            _ = until.wait_for(|s| *s) => {}
                            _ = lease.lost() => {}
                        }
                    })
                    .await;
                if *stop.borrow() {
                    return;
                }
                health.set(&view, RunnerState::Failing);
                match result {
                    Ok(()) => tracing::warn!(projection = %view, "the runner's lease was lost"),
                    Err(e) => {
                        tracing::error!(projection = %view, error = %e, "projection runner failed")
                    }
                }
                if started.elapsed() > Duration::from_secs(10) {
                    backoff = Duration::from_millis(250);
                }
                backoff
            }
        };
        tokio::select! {
            _ = stop.wait_for(|s| *s) => return,
            _ = tokio::time::sleep(wait) => {}
        }
        if wait == backoff {
            backoff = (backoff * 2).min(MAX_BACKOFF);
        }
    }
}

//! Turns among the runners of a process that are far behind the log, shortest remaining
//! work first.
//!
//! A fresh server starts every read model from nothing at once. On a small machine they then
//! share its cores and the views file's one writer, and the heaviest (retention, which
//! rewrites a document for every widget's access-log bucket) slowed the others to a third of
//! their own rebuild speed (issue 28). Through a [`CatchUpGate`] a runner far behind handles
//! its next batch only on its turn, and the turn goes to the runner whose remaining work is
//! the least (its distance to the head times what a position cost it last time): the light
//! read models catch up first, at nearly their own speed, and the heaviest last, having
//! waited only for them. The total time to catch every one up stays that of the work itself.
//!
//! A runner that has not yet handled a few batches on its turns is ranked by the time it has
//! had so far, so that each is measured before it is ranked, the lightest first;
//! one only a batch or so behind does not ask for a turn at all (see [`GATED_BEHIND`]), so a
//! runner following the head never waits behind a long catch-up.

use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How far behind the head (in log positions) a runner must be to take turns.
pub const GATED_BEHIND: u64 = 20_000;

/// The turn of one runner of a process at a time among those far behind.
#[derive(Debug)]
pub struct CatchUpGate {
    state: Mutex<GateState>,
    changed: tokio::sync::Notify,
    /// How far behind a runner takes turns.
    behind: u64,
}

impl Default for CatchUpGate {
    fn default() -> Self {
        Self::with_behind(GATED_BEHIND)
    }
}

#[derive(Debug, Default)]
struct GateState {
    held: bool,
    /// Who waits: (remaining work in seconds, ticket); the least work goes first, then the
    /// earliest ticket.
    waiting: Vec<(f64, u64)>,
    next_ticket: u64,
    turns: u64,
}

/// A turn: held until dropped, across as many batches as its runner keeps it for.
#[derive(Debug)]
pub struct Turn<'a> {
    gate: &'a CatchUpGate,
    /// The log position its runner stood at when it last looked at the time, and that time.
    mark: (u64, Instant),
}

impl Drop for Turn<'_> {
    fn drop(&mut self) {
        self.gate.lock().held = false;
        self.gate.changed.notify_waiters();
    }
}

/// A place in the queue, given up if the wait is dropped before the turn came.
struct Ticket<'a> {
    gate: &'a CatchUpGate,
    ticket: u64,
    served: bool,
}

impl Drop for Ticket<'_> {
    fn drop(&mut self) {
        if !self.served {
            self.gate.lock().waiting.retain(|(_, t)| *t != self.ticket);
            self.gate.changed.notify_waiters();
        }
    }
}

impl CatchUpGate {
    pub fn new() -> Self {
        Self::default()
    }

    /// A gate for runners at least `behind` positions behind the head ([`GATED_BEHIND`] by
    /// default).
    pub fn with_behind(behind: u64) -> Self {
        CatchUpGate {
            state: Mutex::default(),
            changed: tokio::sync::Notify::new(),
            behind,
        }
    }

    /// How far behind the head a runner takes turns.
    pub fn behind(&self) -> u64 {
        self.behind
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, GateState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// How many turns were given so far.
    pub fn turns(&self) -> u64 {
        self.lock().turns
    }

    /// Whether somebody waits whose remaining work is less than `remaining`.
    pub fn less_waiting(&self, remaining: f64) -> bool {
        self.lock().waiting.iter().any(|(w, _)| *w < remaining)
    }

    /// Waits for the gate to be free with nobody waiting whose `remaining` work (in seconds)
    /// is less than this caller's; ties go to whoever asked first. The turn is marked as
    /// taken at log position `at`.
    pub async fn turn(&self, remaining: f64, at: u64) -> Turn<'_> {
        let remaining = if remaining.is_finite() {
            remaining.max(0.0)
        } else {
            f64::MAX
        };
        let mut ticket = {
            let mut s = self.lock();
            let ticket = s.next_ticket;
            s.next_ticket += 1;
            s.waiting.push((remaining, ticket));
            Ticket {
                gate: self,
                ticket,
                served: false,
            }
        };
        loop {
            let notified = self.changed.notified();
            tokio::pin!(notified);
            // Registered before the state is looked at: a release in between still wakes it.
            notified.as_mut().enable();
            {
                let mut s = self.lock();
                let first = s
                    .waiting
                    .iter()
                    .min_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)))
                    .map(|w| w.1);
                if !s.held && first == Some(ticket.ticket) {
                    s.held = true;
                    s.turns += 1;
                    s.waiting.retain(|(_, t)| *t != ticket.ticket);
                    ticket.served = true;
                    return Turn {
                        gate: self,
                        mark: (at, Instant::now()),
                    };
                }
            }
            notified.await;
        }
    }
}

/// How many batches a runner handles on its turns before its pace ranks it: a first batch
/// alone misleads where the log's mix changes (the widget events of a fresh store all come
/// first, so the widgets' first batch covers a few thousand positions, the next the rest).
pub const FIRST_BATCHES: u32 = 3;

/// What a runner's positions cost it on its turns, on average: the estimate of its remaining
/// work.
#[derive(Debug, Default, Clone, Copy)]
pub struct Pace {
    positions: u64,
    secs: f64,
    batches: u32,
}

impl Pace {
    /// A batch over `positions` log positions took `held` on this runner's turn.
    pub fn record(&mut self, positions: u64, held: Duration) {
        self.positions += positions;
        self.secs += held.as_secs_f64();
        self.batches += 1;
    }

    /// The runner holding `turn` reached `position`: the positions since the turn's last mark
    /// took the time since it, and the mark moves here.
    pub fn record_since(&mut self, turn: &mut Turn<'_>, position: u64) {
        let (at, since) = turn.mark;
        self.record(position.saturating_sub(at), since.elapsed());
        turn.mark = (position, Instant::now());
    }

    /// Whether [`FIRST_BATCHES`] were measured: the pace ranks the runner from then on.
    pub fn measured(&self) -> bool {
        self.batches >= FIRST_BATCHES && self.positions > 0
    }

    /// The seconds `behind` positions should take. Until [`FIRST_BATCHES`] were measured,
    /// the time taken so far instead: runners are measured before they are ranked, the one
    /// that has had the least time first.
    pub fn remaining(&self, behind: u64) -> f64 {
        if !self.measured() {
            return self.secs;
        }
        self.secs / self.positions as f64 * behind as f64
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[tokio::test]
    async fn the_least_remaining_work_goes_first_once_the_gate_is_free() {
        let gate = Arc::new(CatchUpGate::new());
        let held = gate.turn(5.0, 0).await;
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        let mut waiters = Vec::new();
        for (name, remaining) in [("heavy", 60.0), ("light", 2.0), ("middle", 10.0)] {
            let (waiting, tx) = (gate.clone(), tx.clone());
            waiters.push(tokio::spawn(async move {
                let _turn = waiting.turn(remaining, 0).await;
                tx.send(name).expect("send");
            }));
            // Each is queued before the next asks.
            while gate.lock().waiting.len() < waiters.len() {
                tokio::task::yield_now().await;
            }
        }
        assert!(rx.try_recv().is_err(), "nobody has a turn while it is held");
        drop(held);
        let order = [
            rx.recv().await.expect("first"),
            rx.recv().await.expect("second"),
            rx.recv().await.expect("third"),
        ];
        assert_eq!(order, ["light", "middle", "heavy"]);
        assert_eq!(gate.turns(), 4);
    }

    #[tokio::test]
    async fn a_wait_given_up_leaves_the_queue() {
        let gate = Arc::new(CatchUpGate::new());
        let held = gate.turn(0.0, 0).await;
        let waiting = {
            let gate = gate.clone();
            tokio::spawn(async move {
                let _turn = gate.turn(1.0, 0).await;
            })
        };
        while gate.lock().waiting.is_empty() {
            tokio::task::yield_now().await;
        }
        waiting.abort();
        let _ = waiting.await;
        assert!(gate.lock().waiting.is_empty());
        drop(held);
        // The gate is free for the next caller at once.
        let _next = gate.turn(100.0, 0).await;
        assert_eq!(gate.turns(), 2);
    }

    #[test]
    fn a_pace_ranks_by_its_time_so_far_until_measured_and_then_by_its_average_cost() {
        let mut pace = Pace::default();
        assert_eq!(pace.remaining(1_000_000), 0.0);
        // A first batch over few positions (all the widget events at the log's start)...
        pace.record(10_000, Duration::from_millis(240));
        for n in 1..FIRST_BATCHES {
            let so_far = 0.240 + 0.200 * f64::from(n - 1);
            assert!(
                (pace.remaining(1_000_000) - so_far).abs() < 1e-9,
                "not ranked by its pace before it is measured"
            );
            pace.record(1_000_000, Duration::from_millis(200));
        }
        // ...weighs by its positions, not as one batch of three.
        let per_position = (0.240 + 0.200 * f64::from(FIRST_BATCHES - 1))
            / (10_000 + 1_000_000 * u64::from(FIRST_BATCHES - 1)) as f64;
        assert!((pace.remaining(1_000_000) - per_position * 1e6).abs() < 1e-9);
    }
}

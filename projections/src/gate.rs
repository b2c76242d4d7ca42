//! Turns among the runners of a process that are far behind the log, shortest remaining
//! work first.
//!
//! A fresh server starts every read model from nothing at once. On a small machine they then
//! share its cores and the views file's one writer, and the heaviest (retention, which
//! rewrites a document for every widget's access-log bucket) slowed the others to a third of
//! their own rebuild speed (issue 28). Through a [`CatchUpGate`] a runner far behind reads,
//! handles and commits its batches only on its turn, and the turn goes to the runner whose
//! remaining work is the least: the light read models catch up first, at nearly their own
//! speed, and the heaviest last, having waited only for them. The total time to catch every
//! one up stays that of the work itself (decisions 31, 32).
//!
//! Work is counted in the runner's own events (those of the types it reads, counted from the
//! log's index on type and position), not in log positions: a read model of a few types far
//! behind has little to do. Until its first batch has measured its pace, a runner ranks by
//! its events left, before every measured one, which ranks by the seconds its events left
//! should take ([`Remaining`]). That first batch is a small one ([`FIRST_BATCH`]), so that
//! whoever asked first holds the first turn only briefly. A runner with fewer events of its
//! types left than [`GATED_EVENTS`] does not ask for a turn at all: a runner following the
//! head never waits behind a long catch-up, and a light read model's whole catch-up (a
//! second or less) costs less than the wait for the first turns would.

use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How many events of its own types a runner must have left before the head to take turns:
/// fewer take about a second to handle at the pace of the lightest read models (50,000 to
/// 500,000 events a second when rebuilt alone), less than waiting for the first turns.
pub const GATED_EVENTS: u64 = 50_000;

/// The events of a gated catch-up's first batch: a short first turn, whoever takes it.
pub const FIRST_BATCH: usize = 1_000;

/// A runner's remaining work, as the queue ranks it: every runner not yet measured (by its
/// events left) before every measured one (by the seconds those should take).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Remaining {
    /// Not measured yet: the events of its types left to handle.
    Events(u64),
    /// Measured: the seconds its events left should take at its pace.
    Seconds(f64),
}

impl Remaining {
    fn rank(&self, other: &Remaining) -> std::cmp::Ordering {
        use std::cmp::Ordering::{Greater, Less};
        match (self, other) {
            (Remaining::Events(a), Remaining::Events(b)) => a.cmp(b),
            (Remaining::Seconds(a), Remaining::Seconds(b)) => a.total_cmp(b),
            (Remaining::Events(_), Remaining::Seconds(_)) => Less,
            (Remaining::Seconds(_), Remaining::Events(_)) => Greater,
        }
    }

    /// Seconds that are not a number or negative rank as the most and the least work.
    fn sane(self) -> Self {
        match self {
            Remaining::Seconds(s) if s.is_nan() || s == f64::INFINITY => {
                Remaining::Seconds(f64::MAX)
            }
            Remaining::Seconds(s) => Remaining::Seconds(s.max(0.0)),
            events => events,
        }
    }
}

/// The turn of one runner of a process at a time among those far behind.
#[derive(Debug)]
pub struct CatchUpGate {
    state: Mutex<GateState>,
    changed: tokio::sync::Notify,
    /// How many events of its types left a runner takes turns with.
    behind: u64,
}

impl Default for CatchUpGate {
    fn default() -> Self {
        Self::with_behind(GATED_EVENTS)
    }
}

#[derive(Debug, Default)]
struct GateState {
    held: bool,
    /// Who waits: (remaining work, ticket); the least work goes first, then the earliest
    /// ticket.
    waiting: Vec<(Remaining, u64)>,
    next_ticket: u64,
    turns: u64,
    /// Light runners catching up now (see [`CatchUpGate::light`]).
    light: u32,
}

/// A turn: held until dropped, across as many batches as its runner keeps it for.
#[derive(Debug)]
pub struct Turn<'a> {
    gate: &'a CatchUpGate,
    /// How many events its runner had handled when it last looked at the time, and that time.
    mark: (u64, Instant),
}

impl Drop for Turn<'_> {
    fn drop(&mut self) {
        self.gate.lock().held = false;
        self.gate.changed.notify_waiters();
    }
}

/// A light runner's catch-up, under way until dropped: no turn is given meanwhile.
#[derive(Debug)]
pub struct Light<'a> {
    gate: &'a CatchUpGate,
}

impl Drop for Light<'_> {
    fn drop(&mut self) {
        self.gate.lock().light -= 1;
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

    /// A gate for runners with at least `behind` events of their types left before the head
    /// ([`GATED_EVENTS`] by default).
    pub fn with_behind(behind: u64) -> Self {
        CatchUpGate {
            state: Mutex::default(),
            changed: tokio::sync::Notify::new(),
            behind,
        }
    }

    /// How many events of its types left before the head a runner takes turns with.
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

    /// Marks a light runner's catch-up (far behind, with fewer events of its types left than
    /// the gate's threshold: it takes no turns) as under way until the mark is dropped. While
    /// one is, no turn is given, and the holder of a turn gives it up at its next batch: the
    /// light read models catch up first, sharing the machine with each other only.
    pub fn light(&self) -> Light<'_> {
        self.lock().light += 1;
        Light { gate: self }
    }

    /// Whether the holder of a turn with `remaining` work should give it up: a light runner
    /// is catching up, or somebody waits whose remaining work is less.
    pub fn others_first(&self, remaining: Remaining) -> bool {
        let remaining = remaining.sane();
        let s = self.lock();
        s.light > 0 || s.waiting.iter().any(|(w, _)| w.rank(&remaining).is_lt())
    }

    /// Waits for the gate to be free, with no light runner catching up and nobody waiting
    /// whose `remaining` work is less than this caller's; ties go to whoever asked first. The turn is marked as taken when its
    /// runner had handled `handled` events.
    pub async fn turn(&self, remaining: Remaining, handled: u64) -> Turn<'_> {
        let remaining = remaining.sane();
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
                    .min_by(|a, b| a.0.rank(&b.0).then(a.1.cmp(&b.1)))
                    .map(|w| w.1);
                if !s.held && s.light == 0 && first == Some(ticket.ticket) {
                    s.held = true;
                    s.turns += 1;
                    s.waiting.retain(|(_, t)| *t != ticket.ticket);
                    ticket.served = true;
                    return Turn {
                        gate: self,
                        mark: (handled, Instant::now()),
                    };
                }
            }
            notified.await;
        }
    }
}

/// How many batches a runner handles on its turns before its pace ranks it: its first, a
/// small one ([`FIRST_BATCH`]). Paced by events, not positions, one batch tells enough (by
/// positions, the widgets' first batch covered a few thousand of them — the widget events of
/// a fresh store all come first — and the next the rest of the log).
pub const FIRST_BATCHES: u32 = 1;

/// What a runner's events cost it on its turns, on average: the estimate of its remaining
/// work.
#[derive(Debug, Default, Clone, Copy)]
pub struct Pace {
    events: u64,
    secs: f64,
    batches: u32,
}

impl Pace {
    /// A batch of `events` events took `held` on this runner's turn.
    pub fn record(&mut self, events: u64, held: Duration) {
        self.events += events;
        self.secs += held.as_secs_f64();
        self.batches += 1;
    }

    /// The runner holding `turn` has handled `handled` events: those since the turn's last
    /// mark took the time since it, and the mark moves here.
    pub fn record_since(&mut self, turn: &mut Turn<'_>, handled: u64) {
        let (at, since) = turn.mark;
        self.record(handled.saturating_sub(at), since.elapsed());
        turn.mark = (handled, Instant::now());
    }

    /// Whether [`FIRST_BATCHES`] were measured: the pace ranks the runner from then on.
    pub fn measured(&self) -> bool {
        self.batches >= FIRST_BATCHES && self.events > 0
    }

    /// The work `left` events are: until [`FIRST_BATCHES`] were measured, the count itself;
    /// then the seconds they should take at this pace.
    pub fn remaining(&self, left: u64) -> Remaining {
        if !self.measured() {
            return Remaining::Events(left);
        }
        Remaining::Seconds(self.secs / self.events as f64 * left as f64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[tokio::test]
    async fn no_turn_is_given_while_a_light_runner_catches_up() {
        use std::future::Future;
        let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
        let gate = CatchUpGate::new();
        let held = gate.turn(Remaining::Seconds(5.0), 0).await;
        assert!(!gate.others_first(Remaining::Seconds(5.0)));
        let light = gate.light();
        assert!(
            gate.others_first(Remaining::Events(0)),
            "the holder gives its turn up"
        );
        drop(held);
        let mut waiting = Box::pin(gate.turn(Remaining::Events(0), 0));
        assert!(
            waiting.as_mut().poll(&mut cx).is_pending(),
            "the gate is free, but a light runner is catching up"
        );
        drop(light);
        assert!(
            waiting.as_mut().poll(&mut cx).is_ready(),
            "the light runner is done"
        );
        assert_eq!(gate.turns(), 2);
    }

    #[tokio::test]
    async fn the_least_remaining_work_goes_first_once_the_gate_is_free() {
        let gate = Arc::new(CatchUpGate::new());
        let held = gate.turn(Remaining::Seconds(5.0), 0).await;
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        let mut waiters = Vec::new();
        for (name, remaining) in [
            ("heavy", Remaining::Seconds(60.0)),
            ("light", Remaining::Seconds(2.0)),
            ("unmeasured, many events", Remaining::Events(900_000)),
            ("middle", Remaining::Seconds(10.0)),
            ("unmeasured, few events", Remaining::Events(20_000)),
        ] {
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
        assert!(gate.others_first(Remaining::Seconds(3.0)));
        assert!(!gate.others_first(Remaining::Events(10_000)));
        drop(held);
        let mut order = Vec::new();
        for _ in 0..waiters.len() {
            order.push(rx.recv().await.expect("a turn"));
        }
        assert_eq!(
            order,
            [
                "unmeasured, few events",
                "unmeasured, many events",
                "light",
                "middle",
                "heavy"
            ]
        );
        assert_eq!(gate.turns(), 6);
    }

    #[tokio::test]
    async fn a_wait_given_up_leaves_the_queue() {
        let gate = Arc::new(CatchUpGate::new());
        let held = gate.turn(Remaining::Seconds(0.0), 0).await;
        let waiting = {
            let gate = gate.clone();
            tokio::spawn(async move {
                let _turn = gate.turn(Remaining::Seconds(1.0), 0).await;
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
        let _next = gate.turn(Remaining::Seconds(100.0), 0).await;
        assert_eq!(gate.turns(), 2);
    }

    #[test]
    fn a_pace_ranks_by_its_events_left_until_measured_and_then_by_its_average_cost() {
        let mut pace = Pace::default();
        assert_eq!(pace.remaining(50_000), Remaining::Events(50_000));
        // A turn taken and looked at before its first batch was handled: time, no events.
        pace.record(0, Duration::from_millis(20));
        assert_eq!(
            pace.remaining(50_000),
            Remaining::Events(50_000),
            "not ranked by its pace before it handled an event"
        );
        // Then its first batch: measured from then on, by the events it handled.
        pace.record(1_000, Duration::from_millis(240));
        assert!(pace.measured());
        let Remaining::Seconds(secs) = pace.remaining(1_000_000) else {
            panic!("measured after its first batch");
        };
        assert!((secs - 0.260 / 1_000.0 * 1e6).abs() < 1e-9, "{secs}");
        // Later batches weigh by their events, not as one batch each.
        pace.record(10_000, Duration::from_millis(100));
        let Remaining::Seconds(secs) = pace.remaining(1_000_000) else {
            panic!("measured");
        };
        assert!((secs - 0.360 / 11_000.0 * 1e6).abs() < 1e-9, "{secs}");
    }

    #[test]
    fn seconds_not_a_number_rank_as_the_most_work_and_below_zero_as_none() {
        let gate = CatchUpGate::new();
        gate.lock()
            .waiting
            .push((Remaining::Seconds(f64::NAN).sane(), 0));
        // Nothing ranks above the most work: it is not less than anybody's.
        assert!(!gate.others_first(Remaining::Seconds(1e300)));
        assert!(!gate.others_first(Remaining::Seconds(f64::NAN)));
        gate.lock()
            .waiting
            .push((Remaining::Seconds(-3.0).sane(), 1));
        assert!(gate.others_first(Remaining::Seconds(0.5)));
        assert!(!gate.others_first(Remaining::Seconds(0.0)));
    }
}

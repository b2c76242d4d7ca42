//! The clock port. Every rule reads time from a `Clock`: the system clock in production, a
//! manual clock in tests and under `LW_CLOCK=manual`.

use chrono::{DateTime, Duration, Utc};
use std::sync::Mutex;

pub trait Clock: Send + Sync + std::fmt::Debug {
    fn now(&self) -> DateTime<Utc>;
}

#[derive(Debug, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> DateTime<Utc> {
        Utc::now()
    }
}

/// A clock that moves only when told to.
#[derive(Debug)]
pub struct ManualClock(Mutex<DateTime<Utc>>);

impl ManualClock {
    pub fn new(start: DateTime<Utc>) -> Self {
        ManualClock(Mutex::new(start))
    }
    /// Moves the clock forward (a negative duration is ignored: time does not run back).
    pub fn advance(&self, by: Duration) -> DateTime<Utc> {
        let mut now = self.0.lock().unwrap_or_else(|p| p.into_inner());
        if by > Duration::zero() {
            *now += by;
        }
        *now
    }
}

impl Clock for ManualClock {
    fn now(&self) -> DateTime<Utc> {
        *self.0.lock().unwrap_or_else(|p| p.into_inner())
    }
}

//! The shape every aggregate takes: a pure `decide` and a pure `evolve`, and the
//! given/when/then harness their tests use.

use crate::{DomainEvent, Now};

/// An aggregate is the state folded from one stream's events. `decide` turns a command into
/// new events (or refuses it); `evolve` applies one event. Both are pure.
pub trait Aggregate: Default + Clone + std::fmt::Debug {
    type Command;
    type Error: std::fmt::Debug + PartialEq;
    /// Whether `decide` or `evolve` read the value of a personal field. An aggregate that
    /// does not is loaded without opening any (no key look-up, no decryption).
    const READS_PERSONAL_DATA: bool = true;

    fn decide(&self, command: Self::Command, now: Now) -> Result<Vec<DomainEvent>, Self::Error>;
    fn evolve(self, event: &DomainEvent) -> Self;

    /// Folds a history into the state.
    fn fold<'a>(events: impl IntoIterator<Item = &'a DomainEvent>) -> Self {
        events
            .into_iter()
            .fold(Self::default(), |state, e| state.evolve(e))
    }
}

/// given / when / then, for the tests beside each decision.
pub mod testing {
    use super::*;

    pub struct Given<A: Aggregate> {
        state: A,
    }

    /// Starts a scenario from a history of events.
    pub fn given<A: Aggregate>(history: impl IntoIterator<Item = DomainEvent>) -> Given<A> {
        let history: Vec<DomainEvent> = history.into_iter().collect();
        Given {
            state: A::fold(&history),
        }
    }

    pub struct When<A: Aggregate> {
        result: Result<Vec<DomainEvent>, A::Error>,
    }

    impl<A: Aggregate> Given<A> {
        pub fn when(self, command: A::Command, now: Now) -> When<A> {
            When {
                result: self.state.decide(command, now),
            }
        }
    }

    impl<A: Aggregate> When<A> {
        /// Asserts the decision produced exactly these events.
        #[track_caller]
        pub fn then(self, expected: impl IntoIterator<Item = DomainEvent>) {
            let expected: Vec<DomainEvent> = expected.into_iter().collect();
            match self.result {
                Ok(events) => assert_eq!(events, expected),
                Err(e) => panic!("expected events {expected:?}, got error {e:?}"),
            }
        }
        /// Asserts the decision was refused with this error.
        #[track_caller]
        pub fn then_err(self, expected: A::Error) {
            match self.result {
                Ok(events) => panic!("expected error {expected:?}, got events {events:?}"),
                Err(e) => assert_eq!(e, expected),
            }
        }
        /// The raw result, for assertions the two above do not cover.
        pub fn result(self) -> Result<Vec<DomainEvent>, A::Error> {
            self.result
        }
    }
}

//! The breach register (R16): a personal data breach is recorded with the time it became
//! known; the supervisory authority must be told within 72 hours, and the register shows
//! when it was.

use crate::event::*;
use crate::{AccountId, Aggregate, Category, DomainEvent, Now, StaffId};
use chrono::{DateTime, Duration, Utc};

/// How long after a breach becomes known the authority must be told (R16).
pub const NOTIFY_WITHIN_HOURS: i64 = 72;

/// A breach, as the stream `breach-<id>` tells it.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Breach {
    pub id: Option<crate::BreachId>,
    pub detected_at: Option<DateTime<Utc>>,
    pub notified_at: Option<DateTime<Utc>>,
}

#[derive(Clone, Debug)]
pub enum BreachCommand {
    Record {
        breach_id: crate::BreachId,
        /// 1 to 5,000 characters, naming no person (checked by the caller's parser).
        description: String,
        detected_at: DateTime<Utc>,
        categories: Vec<Category>,
        affected_accounts: Vec<AccountId>,
        by: StaffId,
    },
    Notified {
        authority: String,
        notified_at: DateTime<Utc>,
        by: StaffId,
    },
}

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum BreachError {
    #[error("no such breach")]
    NotFound,
    #[error("the breach is already recorded")]
    AlreadyRecorded,
    #[error("the authority was already notified")]
    AlreadyNotified,
    #[error("detected_at is in the future")]
    DetectedInTheFuture,
    #[error("notified_at is in the future")]
    NotifiedInTheFuture,
    #[error("notified_at is before the breach became known")]
    NotifiedBeforeDetected,
}

impl Aggregate for Breach {
    const READS_PERSONAL_DATA: bool = false;
    type Command = BreachCommand;
    type Error = BreachError;

    fn decide(&self, command: BreachCommand, now: Now) -> Result<Vec<DomainEvent>, BreachError> {
        match command {
            BreachCommand::Record {
                breach_id,
                description,
                detected_at,
                categories,
                affected_accounts,
                by,
            } => {
                if self.detected_at.is_some() {
                    return Err(BreachError::AlreadyRecorded);
                }
                if detected_at > now {
                    return Err(BreachError::DetectedInTheFuture);
                }
                Ok(vec![BreachRecorded {
                    breach_id,
                    description,
                    detected_at,
                    notify_by: detected_at + Duration::hours(NOTIFY_WITHIN_HOURS),
                    categories,
                    affected_accounts,
                    recorded_by: by,
                }
                .into()])
            }
            BreachCommand::Notified {
                authority,
                notified_at,
                by,
            } => {
                let detected_at = self.detected_at.ok_or(BreachError::NotFound)?;
                if self.notified_at.is_some() {
                    return Err(BreachError::AlreadyNotified);
                }
                if notified_at > now {
                    return Err(BreachError::NotifiedInTheFuture);
                }
                if notified_at < detected_at {
                    return Err(BreachError::NotifiedBeforeDetected);
                }
                let breach_id = self.id.ok_or(BreachError::NotFound)?;
                Ok(vec![BreachNotified {
                    breach_id,
                    authority,
                    notified_at,
                    notified_by: by,
                }
                .into()])
            }
        }
    }

    fn evolve(mut self, event: &DomainEvent) -> Self {
        match event {
            DomainEvent::BreachRecorded(b) => {
                self.id = Some(b.breach_id);
                self.detected_at = Some(b.detected_at);
            }
            DomainEvent::BreachNotified(n) => self.notified_at = Some(n.notified_at),
            _ => {}
        }
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::aggregate::testing::given;
    use crate::BreachId;

    fn now() -> Now {
        chrono::DateTime::from_timestamp(1_800_000_000, 0).unwrap_or_default()
    }

    fn record(detected_at: DateTime<Utc>) -> BreachCommand {
        BreachCommand::Record {
            breach_id: BreachId(uuid::Uuid::from_u128(4)),
            description: "a lost laptop".into(),
            detected_at,
            categories: vec![Category::Billing],
            affected_accounts: vec![AccountId(uuid::Uuid::from_u128(5))],
            by: StaffId(uuid::Uuid::from_u128(6)),
        }
    }

    fn notified(at: DateTime<Utc>) -> BreachCommand {
        BreachCommand::Notified {
            authority: "UODO".into(),
            notified_at: at,
            by: StaffId(uuid::Uuid::from_u128(6)),
        }
    }

    #[test]
    fn the_authority_must_be_told_within_72_hours_of_detection() {
        let detected = now() - Duration::hours(5);
        let events = given::<Breach>([]).when(record(detected), now()).result();
        match events.as_deref() {
            Ok([DomainEvent::BreachRecorded(b)]) => {
                assert_eq!(b.notify_by, detected + Duration::hours(72));
            }
            other => panic!("{other:?}"),
        }
        given::<Breach>([])
            .when(record(now() + Duration::minutes(1)), now())
            .then_err(BreachError::DetectedInTheFuture);
    }

    #[test]
    fn a_notification_is_recorded_once_and_never_before_detection() {
        let detected = now() - Duration::hours(5);
        let history = given::<Breach>([])
            .when(record(detected), now())
            .result()
            .expect("recorded");
        given::<Breach>([])
            .when(notified(now()), now())
            .then_err(BreachError::NotFound);
        given::<Breach>(history.clone())
            .when(notified(detected - Duration::hours(1)), now())
            .then_err(BreachError::NotifiedBeforeDetected);
        given::<Breach>(history.clone())
            .when(notified(now() + Duration::hours(1)), now())
            .then_err(BreachError::NotifiedInTheFuture);
        let told = given::<Breach>(history.clone())
            .when(notified(now()), now())
            .result()
            .expect("notified");
        assert!(
            matches!(&told[..], [DomainEvent::BreachNotified(n)] if n.breach_id == BreachId(uuid::Uuid::from_u128(4)))
        );
        given::<Breach>(history.into_iter().chain(told))
            .when(notified(now()), now())
            .then_err(BreachError::AlreadyNotified);
    }
}

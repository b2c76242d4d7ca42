//! Legal holds (R21, R24): placed by compliance staff on an account with a case reference;
//! while one is in force nothing of the account is purged.

use crate::event::*;
use crate::{AccountId, Aggregate, DomainEvent, HoldId, Now, StaffId};

#[derive(Clone, Debug, Default, PartialEq)]
pub struct LegalHold {
    pub account_id: Option<AccountId>,
    pub released: bool,
}

impl LegalHold {
    pub fn in_force(&self) -> bool {
        self.account_id.is_some() && !self.released
    }
}

#[derive(Clone, Debug)]
pub enum HoldCommand {
    Place {
        hold_id: HoldId,
        account_id: AccountId,
        reason: String,
        case_ref: String,
        by: StaffId,
    },
    Release {
        hold_id: HoldId,
        by: StaffId,
    },
}

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum HoldError {
    #[error("no such hold")]
    NotFound,
    #[error("the hold already exists")]
    AlreadyExists,
    #[error("the hold was already released")]
    AlreadyReleased,
    #[error("a hold needs a case reference")]
    MissingCaseRef,
}

impl Aggregate for LegalHold {
    const READS_PERSONAL_DATA: bool = false;
    type Command = HoldCommand;
    type Error = HoldError;

    fn decide(&self, command: HoldCommand, now: Now) -> Result<Vec<DomainEvent>, HoldError> {
        match command {
            HoldCommand::Place {
                hold_id,
                account_id,
                reason,
                case_ref,
                by,
            } => {
                if self.account_id.is_some() {
                    return Err(HoldError::AlreadyExists);
                }
                if case_ref.trim().is_empty() {
                    return Err(HoldError::MissingCaseRef);
                }
                Ok(vec![LegalHoldPlaced {
                    hold_id,
                    account_id,
                    reason,
                    case_ref,
                    placed_by: by,
                    placed_at: now,
                }
                .into()])
            }
            HoldCommand::Release { hold_id, by } => {
                let account_id = self.account_id.ok_or(HoldError::NotFound)?;
                if self.released {
                    return Err(HoldError::AlreadyReleased);
                }
                Ok(vec![LegalHoldReleased {
                    hold_id,
                    account_id,
                    released_by: by,
                    released_at: now,
                }
                .into()])
            }
        }
    }

    fn evolve(mut self, event: &DomainEvent) -> Self {
        match event {
            DomainEvent::LegalHoldPlaced(e) => self.account_id = Some(e.account_id),
            DomainEvent::LegalHoldReleased(_) => self.released = true,
            _ => {}
        }
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::aggregate::testing::given;
    use chrono::{TimeZone, Utc};

    fn t0() -> Now {
        Utc.with_ymd_and_hms(2026, 2, 2, 2, 2, 2)
            .single()
            .expect("valid")
    }
    fn hid() -> HoldId {
        HoldId(uuid::Uuid::from_u128(31))
    }
    fn aid() -> AccountId {
        AccountId(uuid::Uuid::from_u128(32))
    }
    fn by() -> StaffId {
        StaffId(uuid::Uuid::from_u128(33))
    }
    fn place(case_ref: &str) -> HoldCommand {
        HoldCommand::Place {
            hold_id: hid(),
            account_id: aid(),
            reason: "court order".into(),
            case_ref: case_ref.into(),
            by: by(),
        }
    }
    fn placed() -> DomainEvent {
        LegalHoldPlaced {
            hold_id: hid(),
            account_id: aid(),
            reason: "court order".into(),
            case_ref: "KR-2026-17".into(),
            placed_by: by(),
            placed_at: t0(),
        }
        .into()
    }
    fn release() -> HoldCommand {
        HoldCommand::Release {
            hold_id: hid(),
            by: by(),
        }
    }

    #[test]
    fn place_needs_a_case_ref() {
        given::<LegalHold>([])
            .when(place("KR-2026-17"), t0())
            .then([placed()]);
        given::<LegalHold>([])
            .when(place("  "), t0())
            .then_err(HoldError::MissingCaseRef);
    }

    #[test]
    fn release_once() {
        let released: DomainEvent = LegalHoldReleased {
            hold_id: hid(),
            account_id: aid(),
            released_by: by(),
            released_at: t0(),
        }
        .into();
        given::<LegalHold>([placed()])
            .when(release(), t0())
            .then([released.clone()]);
        given::<LegalHold>([placed(), released])
            .when(release(), t0())
            .then_err(HoldError::AlreadyReleased);
        given::<LegalHold>([])
            .when(release(), t0())
            .then_err(HoldError::NotFound);
    }

    #[test]
    fn in_force_until_released() {
        assert!(LegalHold::fold(&[placed()]).in_force());
        assert!(!LegalHold::default().in_force());
    }
}

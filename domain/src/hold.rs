//! Legal holds (R21, R24): placed by compliance staff on an account with a case reference;
//! while one is in force nothing of the account is purged.

use crate::event::*;
use crate::{AccountId, Aggregate, DomainEvent, HoldId, Now, StaffId};

/// The legal holds of one account, as its stream (`account-<id>`) tells them. Holds live on
/// the account's stream so that a purge of the account — which appends there, or fences on
/// its version — can never slip past a hold placed at the same moment.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct LegalHolds {
    pub account_id: Option<AccountId>,
    /// Every hold placed, with whether it was released.
    pub holds: std::collections::BTreeMap<HoldId, bool>,
}

impl LegalHolds {
    /// Whether any hold is in force.
    pub fn any_in_force(&self) -> bool {
        self.holds.values().any(|released| !released)
    }
}

impl LegalHolds {
    /// Whether this hold was placed and is still in force.
    pub fn in_force(&self, hold: HoldId) -> bool {
        self.holds.get(&hold) == Some(&false)
    }
}

/// Compliance reads of the data a legal hold keeps past its date (R21), on the stream
/// `access-<account>`: each read is recorded before it is answered. A read under a hold
/// that is not in force is refused.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct HeldDataReads;

#[derive(Clone, Debug)]
pub struct RecordHeldRead {
    pub hold_id: HoldId,
    pub account_id: AccountId,
    pub read_by: StaffId,
    /// Whether the hold is in force, as the account's stream says.
    pub in_force: bool,
}

impl Aggregate for HeldDataReads {
    const READS_PERSONAL_DATA: bool = false;
    type Command = RecordHeldRead;
    type Error = HoldError;

    fn decide(&self, c: RecordHeldRead, now: Now) -> Result<Vec<DomainEvent>, HoldError> {
        if !c.in_force {
            return Err(HoldError::NotFound);
        }
        Ok(vec![HeldDataRead {
            hold_id: c.hold_id,
            account_id: c.account_id,
            read_by: c.read_by,
            read_at: now,
        }
        .into()])
    }

    fn evolve(self, _: &DomainEvent) -> Self {
        self
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
    #[error("no such account")]
    NoAccount,
}

impl Aggregate for LegalHolds {
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
                if self.account_id.is_none() {
                    return Err(HoldError::NoAccount);
                }
                if self.holds.contains_key(&hold_id) {
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
                match self.holds.get(&hold_id) {
                    None => Err(HoldError::NotFound),
                    Some(true) => Err(HoldError::AlreadyReleased),
                    Some(false) => Ok(vec![LegalHoldReleased {
                        hold_id,
                        account_id,
                        released_by: by,
                        released_at: now,
                    }
                    .into()]),
                }
            }
        }
    }

    fn evolve(mut self, event: &DomainEvent) -> Self {
        match event {
            DomainEvent::AccountRegistered(e) => self.account_id = Some(e.account_id),
            DomainEvent::LegalHoldPlaced(e) => {
                self.holds.insert(e.hold_id, false);
            }
            DomainEvent::LegalHoldReleased(e) => {
                self.holds.insert(e.hold_id, true);
            }
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
    fn registered() -> DomainEvent {
        AccountRegistered {
            account_id: aid(),
            profile: crate::Personal::erased(
                crate::Subject::account(aid()),
                crate::Category::Profile,
            ),
            registered_at: t0(),
        }
        .into()
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
        given::<LegalHolds>([registered()])
            .when(place("KR-2026-17"), t0())
            .then([placed()]);
        given::<LegalHolds>([registered()])
            .when(place("  "), t0())
            .then_err(HoldError::MissingCaseRef);
        given::<LegalHolds>([registered(), placed()])
            .when(place("KR-2026-17"), t0())
            .then_err(HoldError::AlreadyExists);
        given::<LegalHolds>([])
            .when(place("KR-2026-17"), t0())
            .then_err(HoldError::NoAccount);
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
        given::<LegalHolds>([registered(), placed()])
            .when(release(), t0())
            .then([released.clone()]);
        given::<LegalHolds>([registered(), placed(), released])
            .when(release(), t0())
            .then_err(HoldError::AlreadyReleased);
        given::<LegalHolds>([registered()])
            .when(release(), t0())
            .then_err(HoldError::NotFound);
    }

    #[test]
    fn in_force_until_released() {
        assert!(LegalHolds::fold(&[registered(), placed()]).any_in_force());
        assert!(!LegalHolds::fold(&[registered()]).any_in_force());
    }
}

//! The account aggregate: registration on first Instagram sign-in, sign-ins, deletion into
//! quarantine, restore, block and unblock, and the final purge into a tombstone.

use crate::event::*;
use crate::{AccountId, Aggregate, DomainEvent, Now, Personal, StaffId, QUARANTINE_DAYS};
use chrono::{DateTime, Duration, Months, Utc};

/// The account as its stream tells it.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Account {
    pub id: Option<AccountId>,
    /// `Some(until)` while a deletion request is pending.
    pub quarantine_until: Option<DateTime<Utc>>,
    /// `Some(hold_until)` while blocked (R24).
    pub blocked_until: Option<DateTime<Utc>>,
    /// The latest block's hold date, kept after an unblock: the data stays at least that long.
    pub security_hold_until: Option<DateTime<Utc>>,
    /// Legal holds in force (R21): they live on this stream, and refuse the purge.
    pub legal_holds: std::collections::BTreeSet<crate::HoldId>,
    pub purged: bool,
}

/// What an account's owner may currently do, as other aggregates need to know it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OwnerStatus {
    Active,
    Blocked,
    Quarantined,
    Purged,
}

impl Account {
    pub fn exists(&self) -> bool {
        self.id.is_some()
    }

    /// Blocked wins over quarantined: a blocked account cannot act at all (R17).
    pub fn status(&self) -> OwnerStatus {
        if self.purged {
            OwnerStatus::Purged
        } else if self.blocked_until.is_some() {
            OwnerStatus::Blocked
        } else if self.quarantine_until.is_some() {
            OwnerStatus::Quarantined
        } else {
            OwnerStatus::Active
        }
    }
}

#[derive(Clone, Debug)]
pub enum AccountCommand {
    /// A successful Instagram OAuth exchange (R5). Registers the account the first time.
    SignIn {
        account_id: AccountId,
        profile: Personal<InstagramProfile>,
        access_token: Personal<String>,
    },
    RequestDeletion,
    /// Records the hash of an erasure receipt's token for a deletion being requested.
    RequestErasureReceipt {
        token_hash: String,
    },
    Restore,
    Block {
        by: StaffId,
        reason: Personal<String>,
    },
    Unblock {
        by: StaffId,
    },
    /// Issued by the retention sweeper once the quarantine and every hold are over.
    Purge,
}

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum AccountError {
    #[error("no such account")]
    NotFound,
    #[error("the account is blocked")]
    Blocked,
    #[error("the account was purged")]
    Purged,
    #[error("the account is already in quarantine")]
    AlreadyQuarantined,
    #[error("the account is not in quarantine")]
    NotQuarantined,
    #[error("the quarantine ended at {0}")]
    QuarantineOver(DateTime<Utc>),
    #[error("the quarantine lasts until {0}")]
    QuarantineNotOver(DateTime<Utc>),
    #[error("the account is under a security hold until {0}")]
    SecurityHold(DateTime<Utc>),
    #[error("the account is under a legal hold")]
    LegalHold,
    #[error("the account is already blocked")]
    AlreadyBlocked,
    #[error("the account is not blocked")]
    NotBlocked,
}

impl Aggregate for Account {
    const READS_PERSONAL_DATA: bool = false;
    type Command = AccountCommand;
    type Error = AccountError;

    fn decide(&self, command: AccountCommand, now: Now) -> Result<Vec<DomainEvent>, AccountError> {
        use AccountCommand as C;
        if self.purged {
            return Err(AccountError::Purged);
        }
        match command {
            C::SignIn {
                account_id,
                profile,
                access_token,
            } => {
                if self.blocked_until.is_some() {
                    return Err(AccountError::Blocked);
                }
                let id = self.id.unwrap_or(account_id);
                let mut events = Vec::with_capacity(2);
                if !self.exists() {
                    events.push(
                        AccountRegistered {
                            account_id: id,
                            profile,
                            registered_at: now,
                        }
                        .into(),
                    );
                }
                events.push(
                    AccountSignedIn {
                        account_id: id,
                        access_token,
                        signed_in_at: now,
                    }
                    .into(),
                );
                Ok(events)
            }
            C::RequestDeletion => {
                let id = self.id.ok_or(AccountError::NotFound)?;
                if self.blocked_until.is_some() {
                    return Err(AccountError::Blocked);
                }
                if self.quarantine_until.is_some() {
                    return Err(AccountError::AlreadyQuarantined);
                }
                Ok(vec![AccountDeletionRequested {
                    account_id: id,
                    requested_at: now,
                    quarantine_until: now + Duration::days(QUARANTINE_DAYS),
                }
                .into()])
            }
            C::RequestErasureReceipt { token_hash } => {
                let id = self.id.ok_or(AccountError::NotFound)?;
                Ok(vec![ErasureReceiptRequested {
                    account_id: id,
                    token_hash,
                    requested_at: now,
                }
                .into()])
            }
            C::Restore => {
                let id = self.id.ok_or(AccountError::NotFound)?;
                if self.blocked_until.is_some() {
                    return Err(AccountError::Blocked);
                }
                let until = self.quarantine_until.ok_or(AccountError::NotQuarantined)?;
                if now >= until {
                    return Err(AccountError::QuarantineOver(until));
                }
                Ok(vec![AccountRestored {
                    account_id: id,
                    restored_at: now,
                }
                .into()])
            }
            C::Block { by, reason } => {
                let id = self.id.ok_or(AccountError::NotFound)?;
                if self.blocked_until.is_some() {
                    return Err(AccountError::AlreadyBlocked);
                }
                let hold_until = now
                    .checked_add_months(Months::new(12))
                    .unwrap_or(now + Duration::days(366));
                Ok(vec![AccountBlocked {
                    account_id: id,
                    blocked_by: by,
                    reason,
                    blocked_at: now,
                    hold_until,
                }
                .into()])
            }
            C::Unblock { by } => {
                let id = self.id.ok_or(AccountError::NotFound)?;
                if self.blocked_until.is_none() {
                    return Err(AccountError::NotBlocked);
                }
                Ok(vec![AccountUnblocked {
                    account_id: id,
                    unblocked_by: by,
                    unblocked_at: now,
                }
                .into()])
            }
            C::Purge => {
                let id = self.id.ok_or(AccountError::NotFound)?;
                // A blocked account goes as if its deletion was requested at the block, once
                // the security hold is over (R24).
                let until = self
                    .quarantine_until
                    .or(self.blocked_until)
                    .ok_or(AccountError::NotQuarantined)?;
                if now < until {
                    return Err(AccountError::QuarantineNotOver(until));
                }
                if let Some(hold) = self.security_hold_until.filter(|h| now < *h) {
                    return Err(AccountError::SecurityHold(hold));
                }
                if !self.legal_holds.is_empty() {
                    return Err(AccountError::LegalHold);
                }
                Ok(vec![AccountPurged {
                    account_id: id,
                    purged_at: now,
                }
                .into()])
            }
        }
    }

    fn evolve(mut self, event: &DomainEvent) -> Self {
        match event {
            DomainEvent::AccountRegistered(e) => self.id = Some(e.account_id),
            DomainEvent::AccountDeletionRequested(e) => {
                self.quarantine_until = Some(e.quarantine_until)
            }
            DomainEvent::AccountRestored(_) => self.quarantine_until = None,
            DomainEvent::AccountBlocked(e) => {
                self.blocked_until = Some(e.hold_until);
                self.security_hold_until = Some(e.hold_until);
            }
            DomainEvent::AccountUnblocked(_) => self.blocked_until = None,
            DomainEvent::AccountPurged(_) => self.purged = true,
            DomainEvent::LegalHoldPlaced(e) => {
                self.legal_holds.insert(e.hold_id);
            }
            DomainEvent::LegalHoldReleased(e) => {
                self.legal_holds.remove(&e.hold_id);
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
    use crate::{Category, Subject};
    use chrono::TimeZone;

    fn t0() -> Now {
        Utc.with_ymd_and_hms(2026, 3, 1, 12, 0, 0)
            .single()
            .expect("valid time")
    }
    fn id() -> AccountId {
        AccountId(uuid::Uuid::from_u128(7))
    }
    fn profile() -> Personal<InstagramProfile> {
        Personal::new(
            Subject::account(id()),
            Category::Profile,
            InstagramProfile {
                instagram_user_id: "1784".into(),
                username: "alice".into(),
                profile_picture_url: None,
                account_type: "PERSONAL".into(),
            },
        )
    }
    fn token() -> Personal<String> {
        Personal::new(Subject::account(id()), Category::Profile, "tok".into())
    }
    fn sign_in() -> AccountCommand {
        AccountCommand::SignIn {
            account_id: id(),
            profile: profile(),
            access_token: token(),
        }
    }
    fn registered() -> DomainEvent {
        AccountRegistered {
            account_id: id(),
            profile: profile(),
            registered_at: t0(),
        }
        .into()
    }
    fn signed_in(at: Now) -> DomainEvent {
        AccountSignedIn {
            account_id: id(),
            access_token: token(),
            signed_in_at: at,
        }
        .into()
    }
    fn deletion_requested() -> DomainEvent {
        AccountDeletionRequested {
            account_id: id(),
            requested_at: t0(),
            quarantine_until: t0() + Duration::days(90),
        }
        .into()
    }
    fn blocked() -> DomainEvent {
        AccountBlocked {
            account_id: id(),
            blocked_by: StaffId(uuid::Uuid::from_u128(1)),
            reason: Personal::new(Subject::account(id()), Category::Security, "spam".into()),
            blocked_at: t0(),
            hold_until: t0() + Duration::days(365),
        }
        .into()
    }
    fn unblocked() -> DomainEvent {
        AccountUnblocked {
            account_id: id(),
            unblocked_by: StaffId(uuid::Uuid::from_u128(1)),
            unblocked_at: t0(),
        }
        .into()
    }

    #[test]
    fn first_sign_in_registers() {
        given::<Account>([])
            .when(sign_in(), t0())
            .then([registered(), signed_in(t0())]);
    }

    #[test]
    fn later_sign_in_only_signs_in() {
        let later = t0() + Duration::hours(1);
        given::<Account>([registered()])
            .when(sign_in(), later)
            .then([signed_in(later)]);
    }

    #[test]
    fn blocked_account_cannot_sign_in_or_delete() {
        given::<Account>([registered(), blocked()])
            .when(sign_in(), t0())
            .then_err(AccountError::Blocked);
        given::<Account>([registered(), blocked()])
            .when(AccountCommand::RequestDeletion, t0())
            .then_err(AccountError::Blocked);
    }

    #[test]
    fn deletion_starts_a_90_day_quarantine() {
        given::<Account>([registered()])
            .when(AccountCommand::RequestDeletion, t0())
            .then([deletion_requested()]);
    }

    #[test]
    fn deleting_twice_is_an_error_not_a_second_event() {
        given::<Account>([registered(), deletion_requested()])
            .when(AccountCommand::RequestDeletion, t0())
            .then_err(AccountError::AlreadyQuarantined);
    }

    #[test]
    fn unknown_account_cannot_be_deleted() {
        given::<Account>([])
            .when(AccountCommand::RequestDeletion, t0())
            .then_err(AccountError::NotFound);
    }

    #[test]
    fn restore_only_during_quarantine() {
        let day_89 = t0() + Duration::days(89);
        given::<Account>([registered(), deletion_requested()])
            .when(AccountCommand::Restore, day_89)
            .then([AccountRestored {
                account_id: id(),
                restored_at: day_89,
            }
            .into()]);
        given::<Account>([registered(), deletion_requested()])
            .when(AccountCommand::Restore, t0() + Duration::days(90))
            .then_err(AccountError::QuarantineOver(t0() + Duration::days(90)));
        given::<Account>([registered()])
            .when(AccountCommand::Restore, t0())
            .then_err(AccountError::NotQuarantined);
    }

    #[test]
    fn block_holds_twelve_months_and_cannot_repeat() {
        let by = StaffId(uuid::Uuid::from_u128(1));
        let reason = Personal::new(Subject::account(id()), Category::Security, "spam".into());
        given::<Account>([registered()])
            .when(
                AccountCommand::Block {
                    by,
                    reason: reason.clone(),
                },
                t0(),
            )
            .then([AccountBlocked {
                account_id: id(),
                blocked_by: by,
                reason: reason.clone(),
                blocked_at: t0(),
                hold_until: Utc
                    .with_ymd_and_hms(2027, 3, 1, 12, 0, 0)
                    .single()
                    .expect("valid"),
            }
            .into()]);
        given::<Account>([registered(), blocked()])
            .when(AccountCommand::Block { by, reason }, t0())
            .then_err(AccountError::AlreadyBlocked);
    }

    #[test]
    fn unblock_only_when_blocked() {
        let by = StaffId(uuid::Uuid::from_u128(1));
        given::<Account>([registered()])
            .when(AccountCommand::Unblock { by }, t0())
            .then_err(AccountError::NotBlocked);
        given::<Account>([registered(), blocked()])
            .when(AccountCommand::Unblock { by }, t0())
            .then([unblocked()]);
    }

    #[test]
    fn purge_waits_for_quarantine_end() {
        given::<Account>([registered(), deletion_requested()])
            .when(AccountCommand::Purge, t0() + Duration::days(89))
            .then_err(AccountError::QuarantineNotOver(t0() + Duration::days(90)));
        let day_90 = t0() + Duration::days(90);
        given::<Account>([registered(), deletion_requested()])
            .when(AccountCommand::Purge, day_90)
            .then([AccountPurged {
                account_id: id(),
                purged_at: day_90,
            }
            .into()]);
    }

    #[test]
    fn purge_waits_for_the_security_hold_even_after_unblock() {
        // Deleted on day 0, blocked on day 0: the 12-month hold outlasts the 90-day quarantine.
        let history = [registered(), deletion_requested(), blocked(), unblocked()];
        given::<Account>(history.clone())
            .when(AccountCommand::Purge, t0() + Duration::days(100))
            .then_err(AccountError::SecurityHold(t0() + Duration::days(365)));
        let after = t0() + Duration::days(365);
        given::<Account>(history)
            .when(AccountCommand::Purge, after)
            .then([AccountPurged {
                account_id: id(),
                purged_at: after,
            }
            .into()]);
    }

    #[test]
    fn a_blocked_account_is_purged_as_if_deleted_at_the_block_once_held_12_months() {
        given::<Account>([registered(), blocked()])
            .when(AccountCommand::Purge, t0() + Duration::days(364))
            .then_err(AccountError::QuarantineNotOver(t0() + Duration::days(365)));
        let after = t0() + Duration::days(365);
        given::<Account>([registered(), blocked()])
            .when(AccountCommand::Purge, after)
            .then([AccountPurged {
                account_id: id(),
                purged_at: after,
            }
            .into()]);
        // Unblocked and never deleted: nothing to purge.
        given::<Account>([registered(), blocked(), unblocked()])
            .when(AccountCommand::Purge, after)
            .then_err(AccountError::NotQuarantined);
    }

    #[test]
    fn a_legal_hold_on_the_stream_refuses_the_purge_until_released() {
        let hold = crate::HoldId(uuid::Uuid::from_u128(9));
        let by = StaffId(uuid::Uuid::from_u128(1));
        let placed: DomainEvent = LegalHoldPlaced {
            hold_id: hold,
            account_id: id(),
            reason: "court order".into(),
            case_ref: "KR-1".into(),
            placed_by: by,
            placed_at: t0(),
        }
        .into();
        let released: DomainEvent = LegalHoldReleased {
            hold_id: hold,
            account_id: id(),
            released_by: by,
            released_at: t0(),
        }
        .into();
        let day_91 = t0() + Duration::days(91);
        given::<Account>([registered(), deletion_requested(), placed.clone()])
            .when(AccountCommand::Purge, day_91)
            .then_err(AccountError::LegalHold);
        given::<Account>([registered(), deletion_requested(), placed, released])
            .when(AccountCommand::Purge, day_91)
            .then([AccountPurged {
                account_id: id(),
                purged_at: day_91,
            }
            .into()]);
    }

    #[test]
    fn purge_requires_a_deletion_request() {
        given::<Account>([registered()])
            .when(AccountCommand::Purge, t0() + Duration::days(400))
            .then_err(AccountError::NotQuarantined);
    }

    #[test]
    fn a_purged_account_refuses_everything() {
        let purged: DomainEvent = AccountPurged {
            account_id: id(),
            purged_at: t0(),
        }
        .into();
        for cmd in [sign_in(), AccountCommand::Restore, AccountCommand::Purge] {
            given::<Account>([registered(), deletion_requested(), purged.clone()])
                .when(cmd, t0() + Duration::days(100))
                .then_err(AccountError::Purged);
        }
    }

    #[test]
    fn status_prefers_blocked_over_quarantined() {
        let a = Account::fold(&[registered(), deletion_requested(), blocked()]);
        assert_eq!(a.status(), OwnerStatus::Blocked);
        let a = Account::fold(&[registered(), deletion_requested()]);
        assert_eq!(a.status(), OwnerStatus::Quarantined);
    }
}

//! Staff members, the API tokens issued to owners and staff, and the record of staff reads
//! of an account's personal data (R22): the decisions behind `StaffAdded`, `TokenIssued` and
//! `AccountDataRead`.

use crate::event::*;
use crate::values::StaffName;
use crate::{AccountId, Aggregate, Category, DomainEvent, Now, Personal, StaffId, Subject};

/// A staff member, as the stream `staff-<id>` tells it.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct StaffMember {
    pub id: Option<StaffId>,
    pub role: Option<Role>,
    pub removed: bool,
}

#[derive(Clone, Debug)]
pub struct AddStaff {
    pub staff_id: StaffId,
    pub name: StaffName,
    pub role: Role,
    /// The admin who adds them; `None` for the first admin of an installation.
    pub added_by: Option<StaffId>,
}

/// What may be decided on a staff member.
#[derive(Clone, Debug)]
pub enum StaffCommand {
    Add(AddStaff),
    /// An admin removes them (never themself: an installation keeps the admin who acts).
    Remove {
        by: StaffId,
    },
    /// Their tokens so far are revoked; the new one is issued beside this decision.
    RotateTokens {
        by: Option<StaffId>,
    },
}

impl From<AddStaff> for StaffCommand {
    fn from(a: AddStaff) -> Self {
        StaffCommand::Add(a)
    }
}

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum StaffError {
    #[error("the staff member already exists")]
    AlreadyExists,
    #[error("owners are not staff")]
    NotAStaffRole,
    #[error("no such staff member")]
    NotFound,
    #[error("the staff member was removed")]
    Removed,
    #[error("an admin cannot remove themself")]
    RemovingSelf,
    #[error("the installation's admin is not removed; rotate its token instead")]
    InstallationAdmin,
}

impl Aggregate for StaffMember {
    const READS_PERSONAL_DATA: bool = false;
    type Command = StaffCommand;
    type Error = StaffError;

    fn decide(&self, c: StaffCommand, now: Now) -> Result<Vec<DomainEvent>, StaffError> {
        match c {
            StaffCommand::Add(c) => self.add(c, now),
            StaffCommand::Remove { by } => {
                let staff_id = self.existing()?;
                if staff_id == by {
                    return Err(StaffError::RemovingSelf);
                }
                Ok(vec![StaffRemoved {
                    staff_id,
                    removed_by: by,
                    removed_at: now,
                }
                .into()])
            }
            StaffCommand::RotateTokens { by } => Ok(vec![StaffTokensRotated {
                staff_id: self.existing()?,
                rotated_by: by,
                rotated_at: now,
            }
            .into()]),
        }
    }

    fn evolve(mut self, event: &DomainEvent) -> Self {
        match event {
            DomainEvent::StaffAdded(a) => {
                self.role = Some(a.role);
                self.id = Some(a.staff_id);
            }
            DomainEvent::StaffRemoved(_) => self.removed = true,
            _ => {}
        }
        self
    }
}

impl StaffMember {
    fn add(&self, c: AddStaff, now: Now) -> Result<Vec<DomainEvent>, StaffError> {
        if self.role.is_some() {
            return Err(StaffError::AlreadyExists);
        }
        if c.role == Role::Owner {
            return Err(StaffError::NotAStaffRole);
        }
        Ok(vec![StaffAdded {
            staff_id: c.staff_id,
            name: Personal::new(
                Subject::staff(c.staff_id),
                Category::Profile,
                c.name.into_inner(),
            ),
            role: c.role,
            added_by: c.added_by,
            added_at: now,
        }
        .into()])
    }

    /// The member's id, if they exist and were not removed.
    fn existing(&self) -> Result<StaffId, StaffError> {
        match (self.id, self.removed) {
            (None, _) => Err(StaffError::NotFound),
            (Some(_), true) => Err(StaffError::Removed),
            (Some(id), false) => Ok(id),
        }
    }
}

/// An API token, as the stream `token-<hash>` tells it: issued once, to one principal, and
/// maybe revoked.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Token {
    pub hash: Option<String>,
    pub issued: Option<(Principal, Role)>,
    pub revoked: bool,
}

#[derive(Clone, Debug)]
pub struct IssueToken {
    /// The hex SHA-256 of the token; the token itself is never stored.
    pub token_hash: String,
    pub principal: Principal,
    pub role: Role,
}

/// What may be decided on a token.
#[derive(Clone, Debug)]
pub enum TokenCommand {
    Issue(IssueToken),
    /// Its holder signs out.
    Revoke,
}

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    #[error("the token was already issued")]
    AlreadyIssued,
    #[error("an owner's token carries the owner role, a staff token a staff role")]
    RoleMismatch,
    #[error("no such token")]
    NotIssued,
    #[error("the token was already revoked")]
    AlreadyRevoked,
}

impl Aggregate for Token {
    const READS_PERSONAL_DATA: bool = false;
    type Command = TokenCommand;
    type Error = TokenError;

    fn decide(&self, c: TokenCommand, now: Now) -> Result<Vec<DomainEvent>, TokenError> {
        let c = match c {
            TokenCommand::Issue(c) => c,
            TokenCommand::Revoke => {
                return match (&self.hash, self.revoked) {
                    (None, _) => Err(TokenError::NotIssued),
                    (Some(_), true) => Err(TokenError::AlreadyRevoked),
                    (Some(hash), false) => Ok(vec![TokenRevoked {
                        token_hash: hash.clone(),
                        revoked_at: now,
                    }
                    .into()]),
                };
            }
        };
        if self.issued.is_some() {
            return Err(TokenError::AlreadyIssued);
        }
        let owner = matches!(c.principal, Principal::Owner { .. });
        if owner != (c.role == Role::Owner) {
            return Err(TokenError::RoleMismatch);
        }
        Ok(vec![TokenIssued {
            token_hash: c.token_hash,
            principal: c.principal,
            role: c.role,
            issued_at: now,
        }
        .into()])
    }

    fn evolve(mut self, event: &DomainEvent) -> Self {
        match event {
            DomainEvent::TokenIssued(t) => {
                self.issued = Some((t.principal, t.role));
                self.hash = Some(t.token_hash.clone());
            }
            DomainEvent::TokenRevoked(_) => self.revoked = true,
            _ => {}
        }
        self
    }
}

/// The staff reads of one account's personal data (`access-<account>`). Every read is
/// recorded, before it is answered; nothing is refused here (who may read is the caller's
/// role, checked before).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct AccountReads;

#[derive(Clone, Debug)]
pub struct RecordRead {
    pub account_id: AccountId,
    pub read_by: StaffId,
    /// The stated reason, 1 to 500 characters (checked by the caller's parser).
    pub reason: String,
}

impl Aggregate for AccountReads {
    const READS_PERSONAL_DATA: bool = false;
    type Command = RecordRead;
    type Error = std::convert::Infallible;

    fn decide(&self, c: RecordRead, now: Now) -> Result<Vec<DomainEvent>, Self::Error> {
        Ok(vec![AccountDataRead {
            account_id: c.account_id,
            read_by: c.read_by,
            reason: Personal::new(Subject::account(c.account_id), Category::Profile, c.reason),
            read_at: now,
        }
        .into()])
    }

    fn evolve(self, _: &DomainEvent) -> Self {
        self
    }
}

/// Auditors' revealing reads of the log (`audit-reads`): every one is recorded before it is
/// answered; who may read is the caller's role, checked before.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct AuditReads;

#[derive(Clone, Debug)]
pub struct RecordReveal {
    pub read_by: StaffId,
    /// The stated reason, 1 to 500 characters (checked by the caller's parser).
    pub reason: String,
    /// What is read: the endpoint and its query.
    pub scope: String,
}

impl Aggregate for AuditReads {
    const READS_PERSONAL_DATA: bool = false;
    type Command = RecordReveal;
    type Error = std::convert::Infallible;

    fn decide(&self, c: RecordReveal, now: Now) -> Result<Vec<DomainEvent>, Self::Error> {
        Ok(vec![AuditDataRevealed {
            read_by: c.read_by,
            reason: c.reason,
            scope: c.scope,
            read_at: now,
        }
        .into()])
    }

    fn evolve(self, _: &DomainEvent) -> Self {
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::aggregate::testing::given;

    fn now() -> Now {
        chrono::DateTime::from_timestamp(1_700_000_000, 0).unwrap_or_default()
    }

    fn add(role: Role) -> StaffCommand {
        StaffCommand::Add(AddStaff {
            staff_id: StaffId(uuid::Uuid::from_u128(9)),
            name: StaffName::parse("Ann").expect("accepted"),
            role,
            added_by: None,
        })
    }

    #[test]
    fn staff_is_added_once_and_never_as_owner() {
        let events = given::<StaffMember>([])
            .when(add(Role::Auditor), now())
            .result()
            .expect("accepted");
        assert!(matches!(&events[..], [DomainEvent::StaffAdded(a)] if a.role == Role::Auditor));
        given::<StaffMember>(events)
            .when(add(Role::Auditor), now())
            .then_err(StaffError::AlreadyExists);
        given::<StaffMember>([])
            .when(add(Role::Owner), now())
            .then_err(StaffError::NotAStaffRole);
    }

    #[test]
    fn a_token_is_issued_once_with_a_matching_role() {
        let issue = |role| {
            TokenCommand::Issue(IssueToken {
                token_hash: "ab".into(),
                principal: Principal::Owner {
                    account_id: AccountId(uuid::Uuid::from_u128(1)),
                },
                role,
            })
        };
        let events = given::<Token>([])
            .when(issue(Role::Owner), now())
            .result()
            .expect("accepted");
        given::<Token>(events)
            .when(issue(Role::Owner), now())
            .then_err(TokenError::AlreadyIssued);
        given::<Token>([])
            .when(issue(Role::Admin), now())
            .then_err(TokenError::RoleMismatch);
    }

    #[test]
    fn a_token_is_revoked_once_and_only_if_issued() {
        given::<Token>([])
            .when(TokenCommand::Revoke, now())
            .then_err(TokenError::NotIssued);
        let issued: DomainEvent = TokenIssued {
            token_hash: "ab".into(),
            principal: Principal::Owner {
                account_id: AccountId(uuid::Uuid::from_u128(1)),
            },
            role: Role::Owner,
            issued_at: now(),
        }
        .into();
        given::<Token>([issued.clone()])
            .when(TokenCommand::Revoke, now())
            .then([TokenRevoked {
                token_hash: "ab".into(),
                revoked_at: now(),
            }
            .into()]);
        let revoked = TokenRevoked {
            token_hash: "ab".into(),
            revoked_at: now(),
        };
        given::<Token>([issued, revoked.into()])
            .when(TokenCommand::Revoke, now())
            .then_err(TokenError::AlreadyRevoked);
    }

    #[test]
    fn staff_are_removed_by_another_admin_once_and_rotate_only_while_present() {
        let ann = StaffId(uuid::Uuid::from_u128(9));
        let boss = StaffId(uuid::Uuid::from_u128(1));
        given::<StaffMember>([])
            .when(StaffCommand::Remove { by: boss }, now())
            .then_err(StaffError::NotFound);
        let added = given::<StaffMember>([])
            .when(add(Role::Admin), now())
            .result()
            .expect("accepted");
        given::<StaffMember>(added.clone())
            .when(StaffCommand::Remove { by: ann }, now())
            .then_err(StaffError::RemovingSelf);
        given::<StaffMember>(added.clone())
            .when(StaffCommand::RotateTokens { by: Some(ann) }, now())
            .then([StaffTokensRotated {
                staff_id: ann,
                rotated_by: Some(ann),
                rotated_at: now(),
            }
            .into()]);
        let removed: DomainEvent = StaffRemoved {
            staff_id: ann,
            removed_by: boss,
            removed_at: now(),
        }
        .into();
        given::<StaffMember>(added.clone())
            .when(StaffCommand::Remove { by: boss }, now())
            .then([removed.clone()]);
        let gone: Vec<DomainEvent> = added.into_iter().chain([removed]).collect();
        given::<StaffMember>(gone.clone())
            .when(StaffCommand::Remove { by: boss }, now())
            .then_err(StaffError::Removed);
        given::<StaffMember>(gone)
            .when(StaffCommand::RotateTokens { by: None }, now())
            .then_err(StaffError::Removed);
    }
}

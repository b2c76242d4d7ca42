//! Staff members, the API tokens issued to owners and staff, and the record of staff reads
//! of an account's personal data (R22): the decisions behind `StaffAdded`, `TokenIssued` and
//! `AccountDataRead`.

use crate::event::*;
use crate::values::StaffName;
use crate::{AccountId, Aggregate, Category, DomainEvent, Now, Personal, StaffId, Subject};

/// A staff member, as the stream `staff-<id>` tells it.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct StaffMember {
    pub role: Option<Role>,
}

#[derive(Clone, Debug)]
pub struct AddStaff {
    pub staff_id: StaffId,
    pub name: StaffName,
    pub role: Role,
    /// The admin who adds them; `None` for the first admin of an installation.
    pub added_by: Option<StaffId>,
}

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum StaffError {
    #[error("the staff member already exists")]
    AlreadyExists,
    #[error("owners are not staff")]
    NotAStaffRole,
}

impl Aggregate for StaffMember {
    const READS_PERSONAL_DATA: bool = false;
    type Command = AddStaff;
    type Error = StaffError;

    fn decide(&self, c: AddStaff, now: Now) -> Result<Vec<DomainEvent>, StaffError> {
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

    fn evolve(mut self, event: &DomainEvent) -> Self {
        if let DomainEvent::StaffAdded(a) = event {
            self.role = Some(a.role);
        }
        self
    }
}

/// An API token, as the stream `token-<hash>` tells it: issued once, to one principal.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Token {
    pub issued: Option<(Principal, Role)>,
}

#[derive(Clone, Debug)]
pub struct IssueToken {
    /// The hex SHA-256 of the token; the token itself is never stored.
    pub token_hash: String,
    pub principal: Principal,
    pub role: Role,
}

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    #[error("the token was already issued")]
    AlreadyIssued,
    #[error("an owner's token carries the owner role, a staff token a staff role")]
    RoleMismatch,
}

impl Aggregate for Token {
    const READS_PERSONAL_DATA: bool = false;
    type Command = IssueToken;
    type Error = TokenError;

    fn decide(&self, c: IssueToken, now: Now) -> Result<Vec<DomainEvent>, TokenError> {
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
        if let DomainEvent::TokenIssued(t) = event {
            self.issued = Some((t.principal, t.role));
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::aggregate::testing::given;

    fn now() -> Now {
        chrono::DateTime::from_timestamp(1_700_000_000, 0).unwrap_or_default()
    }

    fn add(role: Role) -> AddStaff {
        AddStaff {
            staff_id: StaffId(uuid::Uuid::from_u128(9)),
            name: StaffName::parse("Ann").expect("accepted"),
            role,
            added_by: None,
        }
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
        let issue = |role| IssueToken {
            token_hash: "ab".into(),
            principal: Principal::Owner {
                account_id: AccountId(uuid::Uuid::from_u128(1)),
            },
            role,
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
}

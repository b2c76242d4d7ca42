//! The erasure of one subject's data in one category: the event the retention sweeper
//! appends to `retention-<subject>` while the store shreds the data key in the same
//! transaction. Erasing is final: a second erasure is refused, so a sweep run twice (or two
//! sweeps at once) records each erasure exactly once.

use crate::event::*;
use crate::{AccountId, Aggregate, Category, DomainEvent, Now, Subject};
use chrono::{DateTime, Utc};
use std::collections::BTreeSet;

/// The stream that records a subject's erasures.
pub fn retention_stream(subject: &Subject) -> String {
    crate::streams::retention(subject)
}

#[derive(Clone, Debug, Default, PartialEq)]
pub struct SubjectErasures {
    pub erased: BTreeSet<Category>,
}

#[derive(Clone, Debug)]
pub struct Erase {
    pub subject: Subject,
    pub category: Category,
    pub account_id: Option<AccountId>,
    /// The rule of the retention policy that made the data due, e.g. `profile.quarantine`.
    pub rule: String,
    pub due_at: DateTime<Utc>,
}

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ErasureError {
    #[error("already erased")]
    AlreadyErased,
    #[error("not due until {0}")]
    NotDue(DateTime<Utc>),
}

impl Aggregate for SubjectErasures {
    const READS_PERSONAL_DATA: bool = false;
    type Command = Erase;
    type Error = ErasureError;

    fn decide(&self, cmd: Erase, now: Now) -> Result<Vec<DomainEvent>, ErasureError> {
        if self.erased.contains(&cmd.category) {
            return Err(ErasureError::AlreadyErased);
        }
        if now < cmd.due_at {
            return Err(ErasureError::NotDue(cmd.due_at));
        }
        Ok(vec![PersonalDataErased {
            subject: cmd.subject,
            category: cmd.category,
            account_id: cmd.account_id,
            rule: cmd.rule,
            due_at: cmd.due_at,
            erased_at: now,
        }
        .into()])
    }

    fn evolve(mut self, event: &DomainEvent) -> Self {
        if let DomainEvent::PersonalDataErased(e) = event {
            self.erased.insert(e.category);
        }
        self
    }
}

/// What a subject's retention stream says of archiving (R21): the categories archived under
/// a hold, and those erased (which are never archived again).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct SubjectArchive {
    pub archived: BTreeSet<Category>,
    pub erased: BTreeSet<Category>,
}

#[derive(Clone, Debug)]
pub struct Archive {
    pub subject: Subject,
    pub category: Category,
    pub account_id: Option<AccountId>,
    pub rule: String,
    pub due_at: DateTime<Utc>,
    /// The holds in force: at least one.
    pub holds: Vec<crate::HoldId>,
}

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ArchiveError {
    #[error("already archived")]
    AlreadyArchived,
    #[error("already erased")]
    AlreadyErased,
    #[error("not due until {0}")]
    NotDue(DateTime<Utc>),
    #[error("no legal hold keeps it")]
    NotHeld,
}

impl Aggregate for SubjectArchive {
    const READS_PERSONAL_DATA: bool = false;
    type Command = Archive;
    type Error = ArchiveError;

    fn decide(&self, cmd: Archive, now: Now) -> Result<Vec<DomainEvent>, ArchiveError> {
        if self.erased.contains(&cmd.category) {
            return Err(ArchiveError::AlreadyErased);
        }
        if self.archived.contains(&cmd.category) {
            return Err(ArchiveError::AlreadyArchived);
        }
        if now < cmd.due_at {
            return Err(ArchiveError::NotDue(cmd.due_at));
        }
        if cmd.holds.is_empty() {
            return Err(ArchiveError::NotHeld);
        }
        Ok(vec![PersonalDataArchived {
            subject: cmd.subject,
            category: cmd.category,
            account_id: cmd.account_id,
            rule: cmd.rule,
            due_at: cmd.due_at,
            holds: cmd.holds,
            archived_at: now,
        }
        .into()])
    }

    fn evolve(mut self, event: &DomainEvent) -> Self {
        match event {
            DomainEvent::PersonalDataArchived(e) => {
                self.archived.insert(e.category);
            }
            DomainEvent::PersonalDataErased(e) => {
                self.erased.insert(e.category);
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
    use chrono::{Duration, TimeZone};

    fn t0() -> Now {
        Utc.with_ymd_and_hms(2026, 7, 1, 0, 0, 0)
            .single()
            .expect("valid")
    }
    fn erase(due_at: DateTime<Utc>) -> Erase {
        Erase {
            subject: Subject::new("visitor", "v1"),
            category: Category::AccessLog,
            account_id: None,
            rule: "access_log.recorded".into(),
            due_at,
        }
    }

    #[test]
    fn erases_once_when_due() {
        let event: DomainEvent = PersonalDataErased {
            subject: Subject::new("visitor", "v1"),
            category: Category::AccessLog,
            account_id: None,
            rule: "access_log.recorded".into(),
            due_at: t0(),
            erased_at: t0(),
        }
        .into();
        given::<SubjectErasures>([])
            .when(erase(t0()), t0())
            .then([event.clone()]);
        given::<SubjectErasures>([event])
            .when(erase(t0()), t0())
            .then_err(ErasureError::AlreadyErased);
    }

    #[test]
    fn archives_once_when_due_and_held_never_after_erasure() {
        let hold = crate::HoldId(uuid::Uuid::from_u128(5));
        let archive = |due_at, holds: Vec<crate::HoldId>| Archive {
            subject: Subject::new("account", "a1"),
            category: Category::Profile,
            account_id: None,
            rule: "profile:90 days".into(),
            due_at,
            holds,
        };
        let events = given::<SubjectArchive>([])
            .when(archive(t0(), vec![hold]), t0())
            .result()
            .expect("archived");
        given::<SubjectArchive>(events)
            .when(archive(t0(), vec![hold]), t0())
            .then_err(ArchiveError::AlreadyArchived);
        given::<SubjectArchive>([])
            .when(archive(t0(), vec![]), t0())
            .then_err(ArchiveError::NotHeld);
        let due = t0() + Duration::days(1);
        given::<SubjectArchive>([])
            .when(archive(due, vec![hold]), t0())
            .then_err(ArchiveError::NotDue(due));
        let erased: DomainEvent = PersonalDataErased {
            subject: Subject::new("account", "a1"),
            category: Category::Profile,
            account_id: None,
            rule: "profile:90 days".into(),
            due_at: t0(),
            erased_at: t0(),
        }
        .into();
        given::<SubjectArchive>([erased])
            .when(archive(t0(), vec![hold]), t0())
            .then_err(ArchiveError::AlreadyErased);
    }

    #[test]
    fn not_before_it_is_due() {
        let due = t0() + Duration::days(1);
        given::<SubjectErasures>([])
            .when(erase(due), t0())
            .then_err(ErasureError::NotDue(due));
    }
}

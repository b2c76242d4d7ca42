//! Versions of the privacy policy (R25): a new version is published at least 5 days before
//! it takes effect; the first version (the seed's text) is in force from the first start.
//! All versions live on one stream (`privacy-policies`), so labels are unique and the order
//! of publication is the log's.

use crate::event::*;
use crate::{Aggregate, DomainEvent, Now, StaffId};
use chrono::{DateTime, Duration, Utc};

/// How long before it takes effect a version must be published (R25).
pub const NOTICE_DAYS: i64 = 5;

/// A published version: its label and when it takes effect.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PolicyVersion {
    pub version: String,
    pub effective_at: DateTime<Utc>,
}

/// The published versions, in the order of publication.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct PolicyVersions {
    pub versions: Vec<PolicyVersion>,
}

impl PolicyVersions {
    /// The version in force at `now`: the one that took effect last, at or before it.
    pub fn in_force(&self, now: DateTime<Utc>) -> Option<&str> {
        self.versions
            .iter()
            .filter(|v| v.effective_at <= now)
            .max_by_key(|v| v.effective_at)
            .map(|v| v.version.as_str())
    }
}

#[derive(Clone, Debug)]
pub enum PolicyCommand {
    /// The first version, in force at once; only while none is published.
    Seed { version: String, text: String },
    Publish {
        version: String,
        text: String,
        effective_at: DateTime<Utc>,
        by: StaffId,
    },
}

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum PolicyError {
    #[error("a version with that label is already published")]
    VersionTaken,
    #[error("effective_at must be at least 5 days after publication (R25)")]
    TooSoon,
    #[error("the first version is already published")]
    AlreadySeeded,
}

impl Aggregate for PolicyVersions {
    const READS_PERSONAL_DATA: bool = false;
    type Command = PolicyCommand;
    type Error = PolicyError;

    fn decide(&self, command: PolicyCommand, now: Now) -> Result<Vec<DomainEvent>, PolicyError> {
        let taken = |label: &str| self.versions.iter().any(|v| v.version == label);
        match command {
            PolicyCommand::Seed { version, text } => {
                if !self.versions.is_empty() {
                    return Err(PolicyError::AlreadySeeded);
                }
                Ok(vec![PolicyPublished {
                    version,
                    text,
                    effective_at: now,
                    published_by: None,
                }
                .into()])
            }
            PolicyCommand::Publish {
                version,
                text,
                effective_at,
                by,
            } => {
                if taken(&version) {
                    return Err(PolicyError::VersionTaken);
                }
                if effective_at < now + Duration::days(NOTICE_DAYS) {
                    return Err(PolicyError::TooSoon);
                }
                Ok(vec![PolicyPublished {
                    version,
                    text,
                    effective_at,
                    published_by: Some(by),
                }
                .into()])
            }
        }
    }

    fn evolve(mut self, event: &DomainEvent) -> Self {
        if let DomainEvent::PolicyPublished(p) = event {
            self.versions.push(PolicyVersion {
                version: p.version.clone(),
                effective_at: p.effective_at,
            });
        }
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::aggregate::testing::given;

    fn now() -> Now {
        chrono::DateTime::from_timestamp(1_800_000_000, 0).unwrap_or_default()
    }

    fn publish(version: &str, effective_at: DateTime<Utc>) -> PolicyCommand {
        PolicyCommand::Publish {
            version: version.into(),
            text: "text".into(),
            effective_at,
            by: StaffId(uuid::Uuid::from_u128(1)),
        }
    }

    #[test]
    fn a_version_is_published_at_least_five_days_ahead_under_a_new_label() {
        let seed = PolicyCommand::Seed {
            version: "1".into(),
            text: "the seed".into(),
        };
        let seeded = given::<PolicyVersions>([])
            .when(seed.clone(), now())
            .result()
            .expect("seeded");
        given::<PolicyVersions>(seeded.clone())
            .when(seed, now())
            .then_err(PolicyError::AlreadySeeded);
        given::<PolicyVersions>(seeded.clone())
            .when(
                publish("2", now() + Duration::days(5) - Duration::seconds(1)),
                now(),
            )
            .then_err(PolicyError::TooSoon);
        given::<PolicyVersions>(seeded.clone())
            .when(publish("1", now() + Duration::days(6)), now())
            .then_err(PolicyError::VersionTaken);
        let two = given::<PolicyVersions>(seeded.clone())
            .when(publish("2", now() + Duration::days(5)), now())
            .result()
            .expect("published");
        let state = PolicyVersions::fold(seeded.iter().chain(&two));
        assert_eq!(state.in_force(now()), Some("1"));
        assert_eq!(state.in_force(now() + Duration::days(5)), Some("2"));
    }
}

//! Widget previews: created with a 15-minute life (R8). Expiry is decided by time alone;
//! the retention sweeper erases the preview's data once it has expired.

use crate::account::OwnerStatus;
use crate::event::*;
use crate::widget::{owner_may_act, WidgetError};
use crate::{AccountId, Aggregate, DomainEvent, Now, Personal, PreviewId};
use chrono::{DateTime, Duration, Utc};

/// How long a preview lives (R8).
pub const PREVIEW_LIFETIME_MINUTES: i64 = 15;

#[derive(Clone, Debug, Default, PartialEq)]
pub struct Preview {
    pub id: Option<PreviewId>,
    pub expires_at: Option<DateTime<Utc>>,
}

impl Preview {
    /// True when the preview exists and has not yet expired at `now`.
    pub fn is_live(&self, now: Now) -> bool {
        self.expires_at.is_some_and(|at| now < at)
    }
}

#[derive(Clone, Debug)]
pub enum PreviewCommand {
    Create {
        preview_id: PreviewId,
        account_id: AccountId,
        settings: Personal<WidgetSettings>,
        owner: OwnerStatus,
    },
}

impl Aggregate for Preview {
    const READS_PERSONAL_DATA: bool = false;
    type Command = PreviewCommand;
    type Error = WidgetError;

    fn decide(&self, command: PreviewCommand, now: Now) -> Result<Vec<DomainEvent>, WidgetError> {
        match command {
            PreviewCommand::Create {
                preview_id,
                account_id,
                settings,
                owner,
            } => {
                if self.id.is_some() {
                    return Err(WidgetError::AlreadyExists);
                }
                owner_may_act(owner)?;
                Ok(vec![PreviewCreated {
                    preview_id,
                    account_id,
                    settings,
                    created_at: now,
                    expires_at: now + Duration::minutes(PREVIEW_LIFETIME_MINUTES),
                }
                .into()])
            }
        }
    }

    fn evolve(mut self, event: &DomainEvent) -> Self {
        if let DomainEvent::PreviewCreated(e) = event {
            self.id = Some(e.preview_id);
            self.expires_at = Some(e.expires_at);
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
        Utc.with_ymd_and_hms(2026, 1, 2, 3, 4, 5)
            .single()
            .expect("valid")
    }
    fn create(owner: OwnerStatus) -> PreviewCommand {
        let preview_id = PreviewId(uuid::Uuid::from_u128(3));
        PreviewCommand::Create {
            preview_id,
            account_id: AccountId(uuid::Uuid::from_u128(4)),
            settings: Personal::new(
                Subject::preview(preview_id),
                Category::Preview,
                WidgetSettings {
                    title: "p".into(),
                    layout: Layout::Slider,
                    columns: 2,
                },
            ),
            owner,
        }
    }

    #[test]
    fn preview_lives_fifteen_minutes() {
        let events = given::<Preview>([])
            .when(create(OwnerStatus::Active), t0())
            .result()
            .expect("created");
        let p = Preview::fold(&events);
        assert!(p.is_live(t0() + Duration::minutes(14)));
        assert!(!p.is_live(t0() + Duration::minutes(15)));
    }

    #[test]
    fn blocked_account_cannot_preview() {
        given::<Preview>([])
            .when(create(OwnerStatus::Blocked), t0())
            .then_err(WidgetError::AccountBlocked);
    }

    #[test]
    fn preview_ids_are_single_use() {
        let events = given::<Preview>([])
            .when(create(OwnerStatus::Active), t0())
            .result()
            .expect("created");
        given::<Preview>(events)
            .when(create(OwnerStatus::Active), t0())
            .then_err(WidgetError::AlreadyExists);
    }
}

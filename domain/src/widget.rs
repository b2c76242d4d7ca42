//! The widget aggregate: create, update, upgrade, delete into quarantine, restore, purge.

use crate::account::OwnerStatus;
use crate::event::*;
use crate::{AccountId, Aggregate, DomainEvent, Now, OrderId, Personal, WidgetId, QUARANTINE_DAYS};
use chrono::{DateTime, Duration, Utc};

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum WidgetStatus {
    #[default]
    Missing,
    Active,
    Quarantined {
        until: DateTime<Utc>,
        cause: DeletionCause,
    },
    Purged,
}

#[derive(Clone, Debug, Default, PartialEq)]
pub struct Widget {
    pub id: Option<WidgetId>,
    pub account_id: Option<AccountId>,
    pub plan: Plan,
    pub status: WidgetStatus,
}

#[derive(Clone, Debug)]
pub enum WidgetCommand {
    Create {
        widget_id: WidgetId,
        account_id: AccountId,
        settings: Personal<WidgetSettings>,
        owner: OwnerStatus,
    },
    Update {
        settings: Personal<WidgetSettings>,
        owner: OwnerStatus,
    },
    /// A paid order (issued by the payment handler, not by the owner).
    Upgrade {
        order_id: OrderId,
        plan: Plan,
    },
    RequestDeletion {
        cause: DeletionCause,
        owner: OwnerStatus,
    },
    Restore {
        owner: OwnerStatus,
    },
    /// Issued by the retention sweeper once the quarantine is over.
    Purge,
    /// Issued by the retention sweeper when the widget's account is purged (its deletion
    /// clock ran out, or it was blocked and its security hold ended): the widget goes with
    /// it, quarantined or not.
    PurgeWithAccount,
}

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum WidgetError {
    #[error("no such widget")]
    NotFound,
    #[error("the widget already exists")]
    AlreadyExists,
    #[error("the owner's account is blocked")]
    AccountBlocked,
    #[error("the owner's account is in quarantine")]
    AccountQuarantined,
    #[error("the widget is in quarantine")]
    Quarantined,
    #[error("the widget was purged")]
    Purged,
    #[error("the widget is already in quarantine")]
    AlreadyQuarantined,
    #[error("the widget is not in quarantine")]
    NotQuarantined,
    #[error("the quarantine ended at {0}")]
    QuarantineOver(DateTime<Utc>),
    #[error("the quarantine lasts until {0}")]
    QuarantineNotOver(DateTime<Utc>),
    #[error("the widget already has that plan")]
    AlreadyOnPlan,
}

/// An owner may act only while active (R17: a blocked account cannot act).
pub(crate) fn owner_may_act(owner: OwnerStatus) -> Result<(), WidgetError> {
    match owner {
        OwnerStatus::Active => Ok(()),
        OwnerStatus::Blocked => Err(WidgetError::AccountBlocked),
        OwnerStatus::Quarantined | OwnerStatus::Purged => Err(WidgetError::AccountQuarantined),
    }
}

impl Widget {
    fn require_active(&self) -> Result<WidgetId, WidgetError> {
        match self.status {
            WidgetStatus::Missing => Err(WidgetError::NotFound),
            WidgetStatus::Active => self.id.ok_or(WidgetError::NotFound),
            WidgetStatus::Quarantined { .. } => Err(WidgetError::Quarantined),
            WidgetStatus::Purged => Err(WidgetError::Purged),
        }
    }
}

impl Aggregate for Widget {
    const READS_PERSONAL_DATA: bool = false;
    type Command = WidgetCommand;
    type Error = WidgetError;

    fn decide(&self, command: WidgetCommand, now: Now) -> Result<Vec<DomainEvent>, WidgetError> {
        use WidgetCommand as C;
        match command {
            C::Create {
                widget_id,
                account_id,
                settings,
                owner,
            } => {
                if self.status != WidgetStatus::Missing {
                    return Err(WidgetError::AlreadyExists);
                }
                owner_may_act(owner)?;
                Ok(vec![WidgetCreated {
                    widget_id,
                    account_id,
                    settings,
                    created_at: now,
                }
                .into()])
            }
            C::Update { settings, owner } => {
                let widget_id = self.require_active()?;
                owner_may_act(owner)?;
                Ok(vec![WidgetUpdated {
                    widget_id,
                    settings,
                    updated_at: now,
                }
                .into()])
            }
            C::Upgrade { order_id, plan } => {
                let widget_id = self.require_active()?;
                if self.plan == plan {
                    return Err(WidgetError::AlreadyOnPlan);
                }
                Ok(vec![WidgetUpgraded {
                    widget_id,
                    order_id,
                    plan,
                    upgraded_at: now,
                }
                .into()])
            }
            C::RequestDeletion { cause, owner } => {
                let widget_id = match self.require_active() {
                    Err(WidgetError::Quarantined) => return Err(WidgetError::AlreadyQuarantined),
                    other => other?,
                };
                if cause == DeletionCause::Owner {
                    owner_may_act(owner)?;
                }
                let account_id = self.account_id.ok_or(WidgetError::NotFound)?;
                Ok(vec![WidgetDeletionRequested {
                    widget_id,
                    account_id,
                    cause,
                    requested_at: now,
                    quarantine_until: now + Duration::days(QUARANTINE_DAYS),
                }
                .into()])
            }
            C::Restore { owner } => {
                let widget_id = self.id.ok_or(WidgetError::NotFound)?;
                let (until, cause) = match self.status {
                    WidgetStatus::Quarantined { until, cause } => (until, cause),
                    WidgetStatus::Purged => return Err(WidgetError::Purged),
                    _ => return Err(WidgetError::NotQuarantined),
                };
                // A widget that went down with its account comes back with the account, whose
                // restore the command layer runs first; on its own it needs an active owner.
                if !(cause == DeletionCause::AccountDeletion && owner == OwnerStatus::Active) {
                    owner_may_act(owner)?;
                }
                if now >= until {
                    return Err(WidgetError::QuarantineOver(until));
                }
                Ok(vec![WidgetRestored {
                    widget_id,
                    restored_at: now,
                }
                .into()])
            }
            C::Purge => {
                let widget_id = self.id.ok_or(WidgetError::NotFound)?;
                match self.status {
                    WidgetStatus::Quarantined { until, .. } if now < until => {
                        Err(WidgetError::QuarantineNotOver(until))
                    }
                    WidgetStatus::Quarantined { .. } => Ok(vec![WidgetPurged {
                        widget_id,
                        purged_at: now,
                    }
                    .into()]),
                    WidgetStatus::Purged => Err(WidgetError::Purged),
                    _ => Err(WidgetError::NotQuarantined),
                }
            }
            C::PurgeWithAccount => {
                let widget_id = self.id.ok_or(WidgetError::NotFound)?;
                if self.status == WidgetStatus::Purged {
                    return Err(WidgetError::Purged);
                }
                Ok(vec![WidgetPurged {
                    widget_id,
                    purged_at: now,
                }
                .into()])
            }
        }
    }

    fn evolve(mut self, event: &DomainEvent) -> Self {
        match event {
            DomainEvent::WidgetCreated(e) => {
                self.id = Some(e.widget_id);
                self.account_id = Some(e.account_id);
                self.status = WidgetStatus::Active;
            }
            DomainEvent::WidgetUpgraded(e) => self.plan = e.plan,
            DomainEvent::WidgetDeletionRequested(e) => {
                self.status = WidgetStatus::Quarantined {
                    until: e.quarantine_until,
                    cause: e.cause,
                }
            }
            DomainEvent::WidgetRestored(_) => self.status = WidgetStatus::Active,
            DomainEvent::WidgetPurged(_) => self.status = WidgetStatus::Purged,
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
        Utc.with_ymd_and_hms(2026, 5, 10, 8, 0, 0)
            .single()
            .expect("valid")
    }
    fn wid() -> WidgetId {
        WidgetId(uuid::Uuid::from_u128(11))
    }
    fn aid() -> AccountId {
        AccountId(uuid::Uuid::from_u128(12))
    }
    fn settings(title: &str) -> Personal<WidgetSettings> {
        Personal::new(
            Subject::widget(wid()),
            Category::WidgetContent,
            WidgetSettings {
                title: title.into(),
                layout: Layout::Grid,
                columns: 3,
            },
        )
    }
    fn create(owner: OwnerStatus) -> WidgetCommand {
        WidgetCommand::Create {
            widget_id: wid(),
            account_id: aid(),
            settings: settings("t"),
            owner,
        }
    }
    fn created() -> DomainEvent {
        WidgetCreated {
            widget_id: wid(),
            account_id: aid(),
            settings: settings("t"),
            created_at: t0(),
        }
        .into()
    }
    fn deleted(cause: DeletionCause) -> DomainEvent {
        WidgetDeletionRequested {
            widget_id: wid(),
            account_id: aid(),
            cause,
            requested_at: t0(),
            quarantine_until: t0() + Duration::days(90),
        }
        .into()
    }
    fn delete() -> WidgetCommand {
        WidgetCommand::RequestDeletion {
            cause: DeletionCause::Owner,
            owner: OwnerStatus::Active,
        }
    }

    #[test]
    fn active_owner_creates() {
        given::<Widget>([])
            .when(create(OwnerStatus::Active), t0())
            .then([created()]);
    }

    #[test]
    fn blocked_account_cannot_create_widgets() {
        given::<Widget>([])
            .when(create(OwnerStatus::Blocked), t0())
            .then_err(WidgetError::AccountBlocked);
    }

    #[test]
    fn quarantined_account_cannot_create_widgets() {
        given::<Widget>([])
            .when(create(OwnerStatus::Quarantined), t0())
            .then_err(WidgetError::AccountQuarantined);
    }

    #[test]
    fn creating_twice_is_refused() {
        given::<Widget>([created()])
            .when(create(OwnerStatus::Active), t0())
            .then_err(WidgetError::AlreadyExists);
    }

    #[test]
    fn update_needs_an_active_widget_and_owner() {
        let update = |owner| WidgetCommand::Update {
            settings: settings("new"),
            owner,
        };
        given::<Widget>([created()])
            .when(update(OwnerStatus::Active), t0())
            .then([WidgetUpdated {
                widget_id: wid(),
                settings: settings("new"),
                updated_at: t0(),
            }
            .into()]);
        given::<Widget>([created()])
            .when(update(OwnerStatus::Blocked), t0())
            .then_err(WidgetError::AccountBlocked);
        given::<Widget>([created(), deleted(DeletionCause::Owner)])
            .when(update(OwnerStatus::Active), t0())
            .then_err(WidgetError::Quarantined);
        given::<Widget>([])
            .when(update(OwnerStatus::Active), t0())
            .then_err(WidgetError::NotFound);
    }

    #[test]
    fn upgrade_once() {
        let order_id = OrderId(uuid::Uuid::from_u128(5));
        let upgraded: DomainEvent = WidgetUpgraded {
            widget_id: wid(),
            order_id,
            plan: Plan::Pro,
            upgraded_at: t0(),
        }
        .into();
        given::<Widget>([created()])
            .when(
                WidgetCommand::Upgrade {
                    order_id,
                    plan: Plan::Pro,
                },
                t0(),
            )
            .then([upgraded.clone()]);
        given::<Widget>([created(), upgraded])
            .when(
                WidgetCommand::Upgrade {
                    order_id,
                    plan: Plan::Pro,
                },
                t0(),
            )
            .then_err(WidgetError::AlreadyOnPlan);
    }

    #[test]
    fn delete_enters_quarantine_for_90_days() {
        given::<Widget>([created()])
            .when(delete(), t0())
            .then([deleted(DeletionCause::Owner)]);
    }

    #[test]
    fn deleting_twice_is_an_error_not_a_second_event() {
        given::<Widget>([created(), deleted(DeletionCause::Owner)])
            .when(delete(), t0())
            .then_err(WidgetError::AlreadyQuarantined);
    }

    #[test]
    fn account_deletion_quarantines_even_though_the_owner_is_quarantined() {
        given::<Widget>([created()])
            .when(
                WidgetCommand::RequestDeletion {
                    cause: DeletionCause::AccountDeletion,
                    owner: OwnerStatus::Quarantined,
                },
                t0(),
            )
            .then([deleted(DeletionCause::AccountDeletion)]);
    }

    #[test]
    fn restore_only_during_quarantine() {
        let restore = WidgetCommand::Restore {
            owner: OwnerStatus::Active,
        };
        let day_89 = t0() + Duration::days(89);
        given::<Widget>([created(), deleted(DeletionCause::Owner)])
            .when(restore.clone(), day_89)
            .then([WidgetRestored {
                widget_id: wid(),
                restored_at: day_89,
            }
            .into()]);
        given::<Widget>([created(), deleted(DeletionCause::Owner)])
            .when(restore.clone(), t0() + Duration::days(90))
            .then_err(WidgetError::QuarantineOver(t0() + Duration::days(90)));
        given::<Widget>([created()])
            .when(restore, t0())
            .then_err(WidgetError::NotQuarantined);
    }

    #[test]
    fn blocked_owner_cannot_restore() {
        given::<Widget>([created(), deleted(DeletionCause::Owner)])
            .when(
                WidgetCommand::Restore {
                    owner: OwnerStatus::Blocked,
                },
                t0(),
            )
            .then_err(WidgetError::AccountBlocked);
    }

    #[test]
    fn purge_only_after_quarantine() {
        given::<Widget>([created(), deleted(DeletionCause::Owner)])
            .when(WidgetCommand::Purge, t0() + Duration::days(89))
            .then_err(WidgetError::QuarantineNotOver(t0() + Duration::days(90)));
        let day_91 = t0() + Duration::days(91);
        given::<Widget>([created(), deleted(DeletionCause::Owner)])
            .when(WidgetCommand::Purge, day_91)
            .then([WidgetPurged {
                widget_id: wid(),
                purged_at: day_91,
            }
            .into()]);
        given::<Widget>([created()])
            .when(WidgetCommand::Purge, day_91)
            .then_err(WidgetError::NotQuarantined);
    }

    #[test]
    fn a_widget_goes_with_its_account_quarantined_or_not() {
        let purged: DomainEvent = WidgetPurged {
            widget_id: wid(),
            purged_at: t0(),
        }
        .into();
        given::<Widget>([created()])
            .when(WidgetCommand::PurgeWithAccount, t0())
            .then([purged.clone()]);
        given::<Widget>([created(), purged])
            .when(WidgetCommand::PurgeWithAccount, t0())
            .then_err(WidgetError::Purged);
        given::<Widget>([])
            .when(WidgetCommand::PurgeWithAccount, t0())
            .then_err(WidgetError::NotFound);
    }

    #[test]
    fn a_purged_widget_is_gone_for_good() {
        let purged: DomainEvent = WidgetPurged {
            widget_id: wid(),
            purged_at: t0(),
        }
        .into();
        let history = [created(), deleted(DeletionCause::Owner), purged];
        given::<Widget>(history.clone())
            .when(
                WidgetCommand::Restore {
                    owner: OwnerStatus::Active,
                },
                t0(),
            )
            .then_err(WidgetError::Purged);
        given::<Widget>(history)
            .when(delete(), t0())
            .then_err(WidgetError::Purged);
    }
}

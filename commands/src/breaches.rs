//! The breach register (R16): compliance staff record a breach with the time it became
//! known, and record when the supervisory authority was told.

use crate::context::run_keyed;
use crate::context::Invocation;
use crate::unit::{transact, Unit, UseCase};
use crate::{CommandError, Context};
use chrono::{DateTime, Utc};
use lightwidget_domain::breach::{Breach, BreachCommand};
use lightwidget_domain::{AccountId, BreachId, Category, DomainEvent, StaffId};
use lightwidget_store::Metadata;

/// A breach as compliance staff report it (parsed by the caller).
#[derive(Clone, Debug)]
pub struct BreachReport {
    pub description: String,
    pub detected_at: DateTime<Utc>,
    pub categories: Vec<Category>,
    pub affected_accounts: Vec<AccountId>,
}

/// A recorded breach: its id, when the authority must be told, and its position.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BreachRecorded {
    pub breach_id: BreachId,
    pub notify_by: DateTime<Utc>,
    pub position: u64,
}

/// Records a breach (R16).
pub async fn record(
    cx: &Context,
    inv: Invocation<'_>,
    by: StaffId,
    report: BreachReport,
) -> Result<BreachRecorded, CommandError> {
    let breach_id = BreachId(inv.new_id("breach"));
    let work = OnBreach {
        breach_id,
        command: BreachCommand::Record {
            breach_id,
            description: report.description,
            detected_at: report.detected_at,
            categories: report.categories,
            affected_accounts: report.affected_accounts,
            by,
        },
    };
    let done = run_keyed(cx, inv, &work).await?;
    let recorded = match done.value.iter().flatten().next() {
        Some(DomainEvent::BreachRecorded(b)) => b.notify_by,
        // A replayed key: the date is the stored breach's.
        _ => crate::load::<Breach>(&*cx.store, &breach_id.stream())
            .await?
            .state
            .detected_at
            .map(|d| d + chrono::Duration::hours(lightwidget_domain::breach::NOTIFY_WITHIN_HOURS))
            .ok_or(CommandError::NotFound("breach"))?,
    };
    Ok(BreachRecorded {
        breach_id,
        notify_by: recorded,
        position: done.position,
    })
}

/// Records that the authority was told of a breach (R16).
pub async fn notified(
    cx: &Context,
    meta: &Metadata,
    breach_id: BreachId,
    by: StaffId,
    authority: String,
    notified_at: DateTime<Utc>,
) -> Result<u64, CommandError> {
    let work = OnBreach {
        breach_id,
        command: BreachCommand::Notified {
            authority,
            notified_at,
            by,
        },
    };
    Ok(transact(&*cx.store, &*cx.clock, meta, None, &work)
        .await?
        .position)
}

struct OnBreach {
    breach_id: BreachId,
    command: BreachCommand,
}

#[async_trait::async_trait]
impl UseCase for OnBreach {
    type Output = Vec<DomainEvent>;

    async fn run(&self, u: &mut Unit<'_>) -> Result<Vec<DomainEvent>, CommandError> {
        let stream = self.breach_id.stream();
        let breach = u.load::<Breach>(&stream).await?;
        u.decide(&stream, &breach, self.command.clone())
    }
}

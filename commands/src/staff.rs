//! Staff: members added by an admin with their token, and the recorded reads of an
//! account's personal data by security staff (R22).

use crate::context::Invocation;
use crate::tokens;
use crate::unit::{transact, Unit, UseCase};
use crate::{CommandError, Context};
use lightwidget_domain::account::Account;
use lightwidget_domain::event::{Principal, Role};
use lightwidget_domain::hold::{HeldDataReads, LegalHolds, RecordHeldRead};
use lightwidget_domain::staff::{
    AccountReads, AddStaff, AuditReads, RecordRead, RecordReveal, StaffCommand, StaffError,
    StaffMember,
};
use lightwidget_domain::values::StaffName;
use lightwidget_domain::{streams, AccountId, HoldId, StaffId};
use lightwidget_store::RecordedEvent;

/// A new staff member and their token (shown once).
#[derive(Clone, Debug)]
pub struct StaffCreated {
    pub staff_id: StaffId,
    pub token: String,
    pub position: u64,
}

/// Adds a staff member with a role and issues their token (an admin's act). Under an
/// idempotency key the staff id is derived from it: a repeat finds the member there and is
/// refused (the token, shown once, cannot be shown again).
pub async fn add_staff(
    cx: &Context,
    inv: Invocation<'_>,
    admin: StaffId,
    name: StaffName,
    role: Role,
) -> Result<StaffCreated, CommandError> {
    let staff_id = StaffId(inv.new_id("staff"));
    let token = tokens::generate_token();
    let work = Add {
        add: AddStaff {
            staff_id,
            name,
            role,
            added_by: Some(admin),
        },
        token: &token,
    };
    let done = transact(&*cx.store, &*cx.clock, inv.meta, None, &work).await?;
    Ok(StaffCreated {
        staff_id,
        token,
        position: done.position,
    })
}

struct Add<'a> {
    add: AddStaff,
    token: &'a str,
}

#[async_trait::async_trait]
impl UseCase for Add<'_> {
    type Output = ();

    async fn run(&self, u: &mut Unit<'_>) -> Result<(), CommandError> {
        let stream = self.add.staff_id.stream();
        let member = u.load::<StaffMember>(&stream).await?;
        u.decide(&stream, &member, StaffCommand::Add(self.add.clone()))?;
        let principal = Principal::Staff {
            staff_id: self.add.staff_id,
        };
        tokens::issue(u, self.token, principal, self.add.role).await
    }
}

/// Removes a staff member (an admin's act): every token of theirs answers 401 from then on.
/// The installation's admin is not removed (their token is rotated instead), nor is the
/// admin who asks. `NotFound` for no such member.
pub async fn remove_staff(
    cx: &Context,
    meta: &lightwidget_store::Metadata,
    admin: StaffId,
    staff_id: StaffId,
) -> Result<u64, CommandError> {
    if staff_id == tokens::BOOTSTRAP_ADMIN {
        return Err(StaffError::InstallationAdmin.into());
    }
    let work = Remove { admin, staff_id };
    Ok(transact(&*cx.store, &*cx.clock, meta, None, &work)
        .await?
        .position)
}

struct Remove {
    admin: StaffId,
    staff_id: StaffId,
}

#[async_trait::async_trait]
impl UseCase for Remove {
    type Output = ();

    async fn run(&self, u: &mut Unit<'_>) -> Result<(), CommandError> {
        let stream = self.staff_id.stream();
        let member = u.load::<StaffMember>(&stream).await?;
        u.decide(&stream, &member, StaffCommand::Remove { by: self.admin })?;
        Ok(())
    }
}

/// Records an auditor's revealing read before it is answered (R22): the position of the
/// record.
pub async fn record_reveal(
    cx: &Context,
    inv: Invocation<'_>,
    read_by: StaffId,
    reason: String,
    scope: String,
) -> Result<u64, CommandError> {
    let work = Reveal(RecordReveal {
        read_by,
        reason,
        scope,
    });
    Ok(transact(&*cx.store, &*cx.clock, inv.meta, None, &work)
        .await?
        .position)
}

struct Reveal(RecordReveal);

#[async_trait::async_trait]
impl UseCase for Reveal {
    type Output = ();

    async fn run(&self, u: &mut Unit<'_>) -> Result<(), CommandError> {
        u.decide_unversioned::<AuditReads>(streams::AUDIT_READS, self.0.clone())?;
        Ok(())
    }
}

/// What a recorded read found.
#[derive(Clone, Debug)]
pub struct AccountRead {
    /// The account's stream, opened.
    pub events: Vec<RecordedEvent>,
    /// The position of the access record.
    pub position: u64,
}

/// Reads an account's stream for security staff, case by case: the read is recorded, with
/// its reason, before anything is read (R22). `NotFound` for an account that does not exist.
pub async fn read_account(
    cx: &Context,
    inv: Invocation<'_>,
    account_id: AccountId,
    read_by: StaffId,
    reason: String,
) -> Result<AccountRead, CommandError> {
    let work = Record(RecordRead {
        account_id,
        read_by,
        reason,
    });
    let done = transact(&*cx.store, &*cx.clock, inv.meta, None, &work).await?;
    let events = cx.store.read_whole_stream(&account_id.stream()).await?;
    Ok(AccountRead {
        events,
        position: done.position,
    })
}

struct Record(RecordRead);

#[async_trait::async_trait]
impl UseCase for Record {
    type Output = ();

    async fn run(&self, u: &mut Unit<'_>) -> Result<(), CommandError> {
        let account_id = self.0.account_id;
        // Not fenced: a read of an account need not wait for it to stand still.
        let account = crate::load::<Account>(u.store(), &account_id.stream()).await?;
        if !account.state.exists() {
            return Err(CommandError::NotFound("account"));
        }
        u.decide_unversioned::<AccountReads>(&streams::account_access(account_id), self.0.clone())?;
        Ok(())
    }
}

/// One category of one subject that a hold keeps past its date, as the retention view
/// lists it.
#[derive(Clone, Debug)]
pub struct HeldItem {
    pub subject: lightwidget_domain::Subject,
    pub category: lightwidget_domain::Category,
}

/// A personal datum read from the archive: the event that recorded it, when, and its value.
#[derive(Clone, Debug)]
pub struct HeldDatum {
    pub event_type: String,
    pub recorded_at: chrono::DateTime<chrono::Utc>,
    pub value: serde_json::Value,
}

/// The compliance read of the data a legal hold keeps past its date (R21): recorded first
/// (the hold must be in force on the account), then each archived item's values, opened
/// with the archived keys alone. Subjects without a stream of their own give no values.
/// Returns the position of the recorded read and the data per item, in the items' order.
pub async fn read_held_data(
    cx: &Context,
    inv: Invocation<'_>,
    account_id: AccountId,
    hold_id: HoldId,
    read_by: StaffId,
    items: &[HeldItem],
) -> Result<(u64, Vec<Vec<HeldDatum>>), CommandError> {
    let work = RecordHeld {
        account_id,
        hold_id,
        read_by,
    };
    let done = transact(&*cx.store, &*cx.clock, inv.meta, None, &work).await?;
    let mut data = Vec::with_capacity(items.len());
    for item in items {
        let (subject, category) = (item.subject.as_str(), item.category);
        let mut values = Vec::new();
        if let Some(stream) = streams::of_subject(subject) {
            let raw = cx.store.read_whole_stream_raw(&stream).await?;
            let opened = lightwidget_store::open_archived(&*cx.store, raw, &[category]).await?;
            for e in &opened {
                let mut found = Vec::new();
                // Credentials are never shown, not even under a hold.
                let shown = lightwidget_store::sealing::event_for_reader(e, true);
                lightwidget_store::sealing::personal_values(
                    &shown,
                    subject,
                    category.as_str(),
                    &mut found,
                );
                values.extend(found.into_iter().map(|value| HeldDatum {
                    event_type: e.event_type.clone(),
                    recorded_at: e.recorded_at,
                    value,
                }));
            }
        }
        data.push(values);
    }
    Ok((done.position, data))
}

struct RecordHeld {
    account_id: AccountId,
    hold_id: HoldId,
    read_by: StaffId,
}

#[async_trait::async_trait]
impl UseCase for RecordHeld {
    type Output = ();

    async fn run(&self, u: &mut Unit<'_>) -> Result<(), CommandError> {
        // Fenced: a release at the same moment makes this append conflict, and the retry
        // finds the hold no longer in force.
        let holds = u.load::<LegalHolds>(&self.account_id.stream()).await?;
        let command = RecordHeldRead {
            hold_id: self.hold_id,
            account_id: self.account_id,
            read_by: self.read_by,
            in_force: holds.state.in_force(self.hold_id),
        };
        u.decide_unversioned::<HeldDataReads>(&streams::account_access(self.account_id), command)?;
        Ok(())
    }
}

//! Sign-in (R5), the owner's account deleted into quarantine and restored with its widgets
//! (R20), blocks by security staff (R17, R24) and legal holds by compliance staff (R21).

use crate::context::run_keyed;
use crate::context::Invocation;
use crate::instagram::InstagramError;
use crate::tokens;
use crate::unit::{transact, Unit, UseCase};
use crate::widgets::Quarantined;
use crate::{CommandError, Context, Loaded};
use lightwidget_domain::account::{Account, AccountCommand, OwnerStatus};
use lightwidget_domain::event::{DeletionCause, Principal, Role};
use lightwidget_domain::hold::{HoldCommand, HoldError, LegalHolds};
use lightwidget_domain::identity::{IdentityLinks, Link};
use lightwidget_domain::widget::{Widget, WidgetCommand, WidgetStatus};
use lightwidget_domain::{
    streams, AccountId, Category, DomainEvent, HoldId, Now, Personal, StaffId, Subject, WidgetId,
};
use lightwidget_store::{Metadata, StoreError, ViewQuery};
use std::time::Duration;

/// A signed-in owner: the token (shown once) and the account.
#[derive(Clone, Debug)]
pub struct SignedIn {
    pub token: String,
    pub account_id: AccountId,
    pub position: u64,
}

/// Signs in with an Instagram OAuth code; the first sign-in registers the account and links
/// the Instagram identity to it. A user whose account was purged and who comes back gets a
/// new account, linked after the old one.
pub async fn sign_in(cx: &Context, code: &str) -> Result<SignedIn, CommandError> {
    if code.is_empty() || code.len() > 2048 {
        return Err(lightwidget_domain::values::Invalid::new(
            "code",
            "the code must be 1 to 2048 characters",
        )
        .into());
    }
    let user = match cx.instagram.exchange(code).await {
        Ok(u) => u,
        Err(InstagramError::Refused) => {
            return Err(lightwidget_domain::values::Invalid::new(
                "code",
                "Instagram refused the code",
            )
            .into())
        }
        Err(InstagramError::Unavailable(why)) => {
            tracing::warn!(reason = %why, "Instagram sign-in failed");
            return Err(CommandError::Unreachable("instagram"));
        }
    };
    let token = tokens::generate_token();
    let work = SignIn {
        identity: cx.identity(&user.profile.instagram_user_id),
        user,
        token: &token,
    };
    let done = transact(&*cx.store, &*cx.clock, &Metadata::anonymous(), None, &work).await?;
    let account_id = done
        .value
        .ok_or_else(|| StoreError::Internal("a sign-in was replayed".into()))?;
    Ok(SignedIn {
        token,
        account_id,
        position: done.position,
    })
}

struct SignIn<'a> {
    identity: String,
    user: crate::instagram::SignedIn,
    token: &'a str,
}

#[async_trait::async_trait]
impl UseCase for SignIn<'_> {
    type Output = AccountId;

    async fn run(&self, u: &mut Unit<'_>) -> Result<AccountId, CommandError> {
        // The identity's links, latest last.
        let link_stream = streams::instagram_identity(&self.identity);
        let links = u.load::<IdentityLinks>(&link_stream).await?;
        let mut account_id = links.state.latest.unwrap_or_else(AccountId::new);
        let mut account = u.load::<Account>(&account_id.stream()).await?;
        let new = match links.state.latest {
            None => true,
            Some(_) if account.state.purged => {
                account_id = AccountId::new();
                account = u.load::<Account>(&account_id.stream()).await?;
                true
            }
            Some(_) => false,
        };
        let subject = Subject::account(account_id);
        let sign_in = AccountCommand::SignIn {
            account_id,
            profile: Personal::new(
                subject.clone(),
                Category::Profile,
                self.user.profile.clone(),
            ),
            access_token: Personal::new(
                subject,
                Category::Credentials,
                self.user.access_token.clone(),
            ),
        };
        u.decide(&account_id.stream(), &account, sign_in)?;
        if new {
            let link = Link {
                identity: self.identity.clone(),
                account_id,
            };
            u.decide(&link_stream, &links, link)?;
        }
        let principal = Principal::Owner { account_id };
        tokens::issue(u, self.token, principal, Role::Owner).await?;
        Ok(account_id)
    }
}

/// An account deletion, decided.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Deleted {
    pub quarantined: Quarantined,
    /// The erasure receipt's token (128 random bits, hex), to be given once; only its
    /// SHA-256 is recorded (`ErasureReceiptRequested`).
    pub receipt_token: String,
}

/// Deletes the caller's account: it and all its active widgets enter the 90-day quarantine
/// (R20), in one append, which also records the hash of a new erasure receipt's token.
pub async fn delete_account(
    cx: &Context,
    meta: &Metadata,
    account_id: AccountId,
) -> Result<Deleted, CommandError> {
    let receipt_token = {
        use rand::RngCore;
        let mut bytes = [0u8; 16];
        rand::thread_rng().fill_bytes(&mut bytes);
        hex::encode(bytes)
    };
    let work = WithWidgets {
        cx,
        account_id,
        command: AccountCommand::RequestDeletion,
        receipt: Some(crate::tokens::token_hash(&receipt_token)),
        widget_command: |w: &Widget| {
            (w.status == WidgetStatus::Active).then_some(WidgetCommand::RequestDeletion {
                cause: DeletionCause::AccountDeletion,
                // The owner's status before this deletion: active, or the account refused.
                owner: OwnerStatus::Active,
            })
        },
    };
    let done = transact(&*cx.store, &*cx.clock, meta, None, &work).await?;
    let quarantined = crate::widgets::quarantined(&done, |e| match e {
        DomainEvent::AccountDeletionRequested(e) => Some(e.quarantine_until),
        _ => None,
    })?;
    Ok(Deleted {
        quarantined,
        receipt_token,
    })
}

/// Restores the caller's account during its quarantine, with the widgets that went with it.
pub async fn restore_account(
    cx: &Context,
    meta: &Metadata,
    account_id: AccountId,
) -> Result<u64, CommandError> {
    let work = WithWidgets {
        cx,
        account_id,
        command: AccountCommand::Restore,
        receipt: None,
        widget_command: |w: &Widget| {
            matches!(
                w.status,
                WidgetStatus::Quarantined {
                    cause: DeletionCause::AccountDeletion,
                    ..
                }
            )
            .then_some(WidgetCommand::Restore {
                owner: OwnerStatus::Active,
            })
        },
    };
    Ok(transact(&*cx.store, &*cx.clock, meta, None, &work)
        .await?
        .position)
}

/// How long a command waits for the widgets read model to name an account's widgets.
const WIDGETS_WAIT: Duration = Duration::from_secs(5);

/// The widgets of an account, as the widgets read model names them once it has seen the
/// whole log so far.
async fn account_widgets(
    cx: &Context,
    account_id: AccountId,
) -> Result<Vec<WidgetId>, CommandError> {
    use lightwidget_projections::models::widgets;
    let head = cx.store.head().await?.position;
    lightwidget_projections::wait_for_position(&*cx.views, widgets::VIEW, head, WIDGETS_WAIT)
        .await
        .map_err(|e| StoreError::Unavailable(format!("the widgets read model: {e}")))?;
    let query = ViewQuery {
        owner: Some(account_id.to_string()),
        ..ViewQuery::default()
    };
    let docs = cx.views.query_all(widgets::VIEW, query).await?;
    Ok(docs.iter().filter_map(|d| d.key.parse().ok()).collect())
}

/// An account command together with what it means for each of the account's widgets
/// (`widget_command`: `None` leaves a widget alone), in one append.
struct WithWidgets<'c, F> {
    cx: &'c Context,
    account_id: AccountId,
    command: AccountCommand,
    /// The hash of an erasure receipt's token to record with the command.
    receipt: Option<String>,
    widget_command: F,
}

#[async_trait::async_trait]
impl<F> UseCase for WithWidgets<'_, F>
where
    F: Fn(&Widget) -> Option<WidgetCommand> + Send + Sync,
{
    type Output = Vec<DomainEvent>;

    async fn run(&self, u: &mut Unit<'_>) -> Result<Vec<DomainEvent>, CommandError> {
        let stream = self.account_id.stream();
        let account = u.load::<Account>(&stream).await?;
        let events = u.decide(&stream, &account, self.command.clone())?;
        if let Some(token_hash) = &self.receipt {
            u.decide(
                &stream,
                &account,
                AccountCommand::RequestErasureReceipt {
                    token_hash: token_hash.clone(),
                },
            )?;
        }
        for id in account_widgets(self.cx, self.account_id).await? {
            let widget = u.load::<Widget>(&id.stream()).await?;
            if let Some(c) = (self.widget_command)(&widget.state) {
                // A widget that refuses (purged meanwhile) is left as it is.
                if u.try_decide(&id.stream(), &widget, c).is_ok() {
                    crate::outbox::purge_from_cdn_if_pro(u, id, widget.state.plan).await?;
                }
            }
        }
        Ok(events)
    }
}

/// The account, loaded; `None` when it does not exist.
async fn existing(
    u: &mut Unit<'_>,
    account_id: AccountId,
) -> Result<Option<Loaded<Account>>, CommandError> {
    let account = u.load::<Account>(&account_id.stream()).await?;
    Ok(account.state.exists().then_some(account))
}

/// A block placed by security staff.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Blocked {
    pub hold_until: Now,
    pub position: u64,
}

/// Blocks an account (security staff, R17); its data is kept for the security hold (R24).
pub async fn block(
    cx: &Context,
    inv: Invocation<'_>,
    account_id: AccountId,
    by: StaffId,
    reason: String,
) -> Result<Blocked, CommandError> {
    let work = OnAccount {
        account_id,
        command: AccountCommand::Block {
            by,
            reason: Personal::new(Subject::account(account_id), Category::Security, reason),
        },
    };
    let done = run_keyed(cx, inv, &work).await?;
    let hold_until = match done.value.iter().flatten().next() {
        Some(DomainEvent::AccountBlocked(b)) => b.hold_until,
        // A replayed key: the hold date is the account's.
        _ => crate::load::<Account>(&*cx.store, &account_id.stream())
            .await?
            .state
            .security_hold_until
            .ok_or_else(|| StoreError::Internal("a blocked account without a hold".into()))?,
    };
    Ok(Blocked {
        hold_until,
        position: done.position,
    })
}

/// Unblocks an account (security staff).
pub async fn unblock(
    cx: &Context,
    meta: &Metadata,
    account_id: AccountId,
    by: StaffId,
) -> Result<u64, CommandError> {
    let work = OnAccount {
        account_id,
        command: AccountCommand::Unblock { by },
    };
    Ok(transact(&*cx.store, &*cx.clock, meta, None, &work)
        .await?
        .position)
}

/// A command on an account that must exist.
struct OnAccount {
    account_id: AccountId,
    command: AccountCommand,
}

#[async_trait::async_trait]
impl UseCase for OnAccount {
    type Output = Vec<DomainEvent>;

    async fn run(&self, u: &mut Unit<'_>) -> Result<Vec<DomainEvent>, CommandError> {
        let account = existing(u, self.account_id)
            .await?
            .ok_or(CommandError::NotFound("account"))?;
        u.decide(&self.account_id.stream(), &account, self.command.clone())
    }
}

/// A legal hold placed by compliance staff.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HoldPlaced {
    pub hold_id: HoldId,
    pub position: u64,
}

/// Places a legal hold on an account (compliance staff, R21). Holds live on the account's
/// stream, so that a purge of the account cannot pass a hold placed meanwhile.
pub async fn place_hold(
    cx: &Context,
    inv: Invocation<'_>,
    account_id: AccountId,
    by: StaffId,
    reason: String,
    case_ref: String,
) -> Result<HoldPlaced, CommandError> {
    let hold_id = HoldId(inv.new_id("hold"));
    let work = OnHolds {
        account_id,
        command: HoldCommand::Place {
            hold_id,
            account_id,
            reason,
            case_ref,
            by,
        },
    };
    let done = run_keyed(cx, inv, &work).await?;
    Ok(HoldPlaced {
        hold_id,
        position: done.position,
    })
}

/// Releases a legal hold of an account.
pub async fn release_hold(
    cx: &Context,
    meta: &Metadata,
    account_id: AccountId,
    hold_id: HoldId,
    by: StaffId,
) -> Result<u64, CommandError> {
    let work = OnHolds {
        account_id,
        command: HoldCommand::Release { hold_id, by },
    };
    Ok(transact(&*cx.store, &*cx.clock, meta, None, &work)
        .await?
        .position)
}

/// A command on an existing account's legal holds.
struct OnHolds {
    account_id: AccountId,
    command: HoldCommand,
}

#[async_trait::async_trait]
impl UseCase for OnHolds {
    type Output = Vec<DomainEvent>;

    async fn run(&self, u: &mut Unit<'_>) -> Result<Vec<DomainEvent>, CommandError> {
        let stream = self.account_id.stream();
        if existing(u, self.account_id).await?.is_none() {
            return Err(HoldError::NoAccount.into());
        }
        let holds = u.load::<LegalHolds>(&stream).await?;
        u.decide(&stream, &holds, self.command.clone())
    }
}

//! Widgets (R9, R18) and previews (R8): create, change, delete into quarantine, restore.

use crate::context::{run_keyed, CachedOwner, Invocation};
use crate::unit::{transact, Unit, UseCase};
use crate::{CommandError, Context, Loaded};
use lightwidget_domain::account::{Account, OwnerStatus};
use lightwidget_domain::event::{DeletionCause, WidgetSettings};
use lightwidget_domain::preview::{Preview, PreviewCommand};
use lightwidget_domain::values::SettingsPatch;
use lightwidget_domain::widget::{Widget, WidgetCommand, WidgetError};
use lightwidget_domain::{
    AccountId, Aggregate, Category, DomainEvent, Now, Personal, PreviewId, Subject, WidgetId,
};
use lightwidget_store::Metadata;

/// A new widget.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WidgetCreated {
    pub widget_id: WidgetId,
    pub version: u64,
    pub position: u64,
}

/// A widget's version after a change, and the position of its last event.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Versioned {
    pub version: u64,
    pub position: u64,
}

/// A widget or account in quarantine.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Quarantined {
    pub until: Now,
    pub position: u64,
}

/// A new preview.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PreviewCreated {
    pub preview_id: PreviewId,
    pub expires_at: Now,
    pub position: u64,
}

/// Creates a widget for `account_id` (the caller).
pub async fn create_widget(
    cx: &Context,
    inv: Invocation<'_>,
    account_id: AccountId,
    settings: WidgetSettings,
) -> Result<WidgetCreated, CommandError> {
    let widget_id = WidgetId(inv.new_id("widget"));
    let work = CreateAsOwner::<Widget, _> {
        cx,
        account_id,
        stream: widget_id.stream(),
        fresh: inv.key.is_none(),
        aggregate: std::marker::PhantomData,
        command: move |owner| WidgetCommand::Create {
            widget_id,
            account_id,
            settings: Personal::new(
                Subject::widget(widget_id),
                Category::WidgetContent,
                settings.clone(),
            ),
            owner,
        },
    };
    let done = run_keyed(cx, inv, &work).await?;
    Ok(WidgetCreated {
        widget_id,
        version: done.version,
        position: done.position,
    })
}

/// Creates a preview that lives 15 minutes (R8).
pub async fn create_preview(
    cx: &Context,
    inv: Invocation<'_>,
    account_id: AccountId,
    settings: WidgetSettings,
) -> Result<PreviewCreated, CommandError> {
    let preview_id = PreviewId(inv.new_id("preview"));
    let work = CreateAsOwner::<Preview, _> {
        cx,
        account_id,
        stream: preview_id.stream(),
        fresh: inv.key.is_none(),
        aggregate: std::marker::PhantomData,
        command: move |owner| PreviewCommand::Create {
            preview_id,
            account_id,
            settings: Personal::new(
                Subject::preview(preview_id),
                Category::Preview,
                settings.clone(),
            ),
            owner,
        },
    };
    let done = run_keyed(cx, inv, &work).await?;
    let created = done.value.iter().flatten().find_map(|e| match e {
        DomainEvent::PreviewCreated(p) => Some(p.expires_at),
        _ => None,
    });
    // A replayed Idempotency-Key appended nothing: the expiry is the stored preview's.
    let expires_at = match created {
        Some(at) => at,
        None => crate::load::<Preview>(&*cx.store, &preview_id.stream())
            .await?
            .state
            .expires_at
            .ok_or(CommandError::NotFound("preview"))?,
    };
    Ok(PreviewCreated {
        preview_id,
        expires_at,
        position: done.position,
    })
}

/// Changes a widget's settings; `expected` is the version the caller saw (`If-Match`).
pub async fn patch_widget(
    cx: &Context,
    meta: &Metadata,
    account_id: AccountId,
    widget_id: WidgetId,
    expected: u64,
    patch: SettingsPatch,
) -> Result<Versioned, CommandError> {
    let work = PatchWidget {
        cx,
        account_id,
        widget_id,
        expected,
        patch,
    };
    let done = transact(&*cx.store, &*cx.clock, meta, None, &work).await?;
    Ok(Versioned {
        version: done.version,
        position: done.position,
    })
}

/// Deletes a widget into its 90-day quarantine (R18); `expected`, when given, is the
/// version the caller saw.
pub async fn delete_widget(
    cx: &Context,
    meta: &Metadata,
    account_id: AccountId,
    widget_id: WidgetId,
    expected: Option<u64>,
) -> Result<Quarantined, CommandError> {
    let work = OwnWidget {
        cx,
        account_id,
        widget_id,
        expected,
        command: |owner| WidgetCommand::RequestDeletion {
            cause: DeletionCause::Owner,
            owner,
        },
    };
    let done = transact(&*cx.store, &*cx.clock, meta, None, &work).await?;
    quarantined(&done, |e| match e {
        DomainEvent::WidgetDeletionRequested(d) => Some(d.quarantine_until),
        _ => None,
    })
}

/// The quarantine a deletion decided: the end `until` finds among its events, and its
/// position.
pub(crate) fn quarantined(
    done: &crate::Done<Vec<DomainEvent>>,
    until: impl Fn(&DomainEvent) -> Option<Now>,
) -> Result<Quarantined, CommandError> {
    let until = done.value.iter().flatten().find_map(until).ok_or_else(|| {
        lightwidget_store::StoreError::Internal("a deletion decided no quarantine".into())
    })?;
    Ok(Quarantined {
        until,
        position: done.position,
    })
}

/// Restores a widget during its quarantine.
pub async fn restore_widget(
    cx: &Context,
    inv: Invocation<'_>,
    account_id: AccountId,
    widget_id: WidgetId,
) -> Result<Versioned, CommandError> {
    let work = OwnWidget {
        cx,
        account_id,
        widget_id,
        expected: None,
        command: |owner| WidgetCommand::Restore { owner },
    };
    let done = run_keyed(cx, inv, &work).await?;
    Ok(Versioned {
        version: done.version,
        position: done.position,
    })
}

/// The owner's account status, read from the account stream (and kept in the process's
/// cache).
pub(crate) async fn owner_status(
    cx: &Context,
    u: &mut Unit<'_>,
    account_id: AccountId,
) -> Result<CachedOwner, CommandError> {
    let loaded = u.load::<Account>(&account_id.stream()).await?;
    let owner = CachedOwner {
        status: loaded.state.status(),
        version: loaded.version,
    };
    cx.owners.put(account_id, owner);
    Ok(owner)
}

/// Creates a stream with a fresh id, on a decision that reads the owner's status. Under an
/// idempotency key the status is read and the stream loaded. Without one nothing is read
/// that the append checks anyway: the stream is taken to be new, and the status comes from
/// the process's cache with the account stream fenced at the version it was read at. A
/// refusal decided on a cached status is decided again on a fresh read when the account has
/// moved on since (a refusal appends nothing for a fence to check).
struct CreateAsOwner<'c, A, F> {
    cx: &'c Context,
    account_id: AccountId,
    stream: String,
    fresh: bool,
    command: F,
    aggregate: std::marker::PhantomData<fn() -> A>,
}

#[async_trait::async_trait]
impl<A, F> UseCase for CreateAsOwner<'_, A, F>
where
    A: Aggregate + Send + Sync,
    A::Command: Send,
    A::Error: std::fmt::Display + Send,
    CommandError: From<A::Error>,
    F: Fn(OwnerStatus) -> A::Command + Send + Sync,
{
    type Output = Vec<DomainEvent>;

    async fn run(&self, u: &mut Unit<'_>) -> Result<Vec<DomainEvent>, CommandError> {
        let cached = match (self.fresh, u.attempt()) {
            (true, 1) => self.cx.owners.get(self.account_id),
            _ => None,
        };
        let owner = match cached {
            Some(c) => {
                u.fence(&self.account_id.stream(), c.version);
                c
            }
            None => owner_status(self.cx, u, self.account_id).await?,
        };
        let loaded: Loaded<A> = match self.fresh {
            true => u.assume_new::<A>(&self.stream).await?,
            false => u.load::<A>(&self.stream).await?,
        };
        match u.try_decide(&self.stream, &loaded, (self.command)(owner.status)) {
            Ok(events) => Ok(events),
            Err(refused) if cached.is_some() => {
                let now = owner_status(self.cx, u, self.account_id).await?;
                if now.version == owner.version {
                    return Err(refused.into());
                }
                u.decide(&self.stream, &loaded, (self.command)(now.status))
            }
            Err(refused) => Err(refused.into()),
        }
    }
}

/// The caller's widget, loaded, with the owner's status; `NotFound` for another owner's
/// widget too (its existence must not leak).
pub(crate) async fn own_widget(
    cx: &Context,
    u: &mut Unit<'_>,
    account_id: AccountId,
    widget_id: WidgetId,
) -> Result<(Loaded<Widget>, OwnerStatus), CommandError> {
    let loaded = u.load::<Widget>(&widget_id.stream()).await?;
    if loaded.state.account_id != Some(account_id) {
        return Err(CommandError::NotFound("widget"));
    }
    let status = owner_status(cx, u, account_id).await?.status;
    Ok((loaded, status))
}

/// A command on one of the caller's widgets, decided on the owner's status.
struct OwnWidget<'c, F> {
    cx: &'c Context,
    account_id: AccountId,
    widget_id: WidgetId,
    expected: Option<u64>,
    command: F,
}

#[async_trait::async_trait]
impl<F> UseCase for OwnWidget<'_, F>
where
    F: Fn(OwnerStatus) -> WidgetCommand + Send + Sync,
{
    type Output = Vec<DomainEvent>;

    async fn run(&self, u: &mut Unit<'_>) -> Result<Vec<DomainEvent>, CommandError> {
        let (loaded, owner) = own_widget(self.cx, u, self.account_id, self.widget_id).await?;
        let stream = self.widget_id.stream();
        if self
            .expected
            .is_some_and(|expected| expected != loaded.version)
        {
            return Err(CommandError::Stale {
                stream,
                current: loaded.version,
            });
        }
        let events = u.decide(&stream, &loaded, (self.command)(owner))?;
        crate::outbox::purge_from_cdn_if_pro(u, self.widget_id, loaded.state.plan).await?;
        Ok(events)
    }
}

struct PatchWidget<'c> {
    cx: &'c Context,
    account_id: AccountId,
    widget_id: WidgetId,
    expected: u64,
    patch: SettingsPatch,
}

#[async_trait::async_trait]
impl UseCase for PatchWidget<'_> {
    type Output = Vec<DomainEvent>;

    async fn run(&self, u: &mut Unit<'_>) -> Result<Vec<DomainEvent>, CommandError> {
        let (loaded, owner) = own_widget(self.cx, u, self.account_id, self.widget_id).await?;
        let stream = self.widget_id.stream();
        let current = current_settings(u, &stream)
            .await?
            .ok_or(WidgetError::Purged)?;
        if loaded.version != self.expected {
            return Err(CommandError::Stale {
                stream,
                current: loaded.version,
            });
        }
        let settings = Personal::new(
            Subject::widget(self.widget_id),
            Category::WidgetContent,
            current.patched(self.patch.clone()),
        );
        let events = u.decide(&stream, &loaded, WidgetCommand::Update { settings, owner })?;
        crate::outbox::purge_from_cdn_if_pro(u, self.widget_id, loaded.state.plan).await?;
        Ok(events)
    }
}

/// The settings a widget has now, from its stream (opened: they are personal data).
async fn current_settings(
    u: &Unit<'_>,
    stream: &str,
) -> Result<Option<WidgetSettings>, CommandError> {
    let mut settings = None;
    for e in u.store().read_whole_stream(stream).await? {
        match e.to_domain()? {
            DomainEvent::WidgetCreated(w) => settings = w.settings.into_value(),
            DomainEvent::WidgetUpdated(w) => settings = w.settings.into_value(),
            _ => {}
        }
    }
    Ok(settings)
}

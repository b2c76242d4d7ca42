//! The outbox (R4, R12, R14, R15): messages to processors are queued by use cases in the
//! append of their cause ([`queue`]), and delivered by the [`Dispatcher`] through a
//! [`Sender`] per configured processor, at least once, with backoff and jitter.
//!
//! One delivery: the message is taken for an attempt (recorded, with a lease), its content
//! read and checked against the registry, sent, and the answer recorded. A message whose
//! personal data was erased meanwhile is cancelled instead. A processor without a sender is
//! "not configured": its messages wait, pending.

use crate::processors::{NotListed, Registry};
use crate::unit::{transact_with_attempts, Unit, UseCase};
use crate::{CommandError, Context};
use chrono::{DateTime, Duration, Utc};
use lightwidget_domain::event::{MessageContent, Outbound};
use lightwidget_domain::outbox::{
    backoff, Message, MessageCommand, MessageError, MessageState, Outbox, QueueMessage,
};
use lightwidget_domain::{DomainEvent, MessageId};
use lightwidget_projections::models::outbox::{MessageDoc, VIEW};
use lightwidget_projections::Runner;
use lightwidget_store::{Metadata, ViewQuery};
use std::collections::BTreeMap;
use std::sync::Arc;

/// Queues a message to `processor` in the unit's append, after the registry allowed the
/// category it carries (R12): a hand-over the registry does not list is an error, and
/// nothing of the unit is appended.
pub async fn queue(
    u: &mut Unit<'_>,
    registry: &Registry,
    processor: &str,
    content: MessageContent,
) -> Result<MessageId, CommandError> {
    match content.category() {
        Some(category) => registry.check(processor, category)?,
        // Open content carries no personal data, and only the kinds that carry none are
        // ever sent open.
        None => debug_assert!(matches!(
            content.outbound(),
            Some(Outbound::CdnPurge { .. })
        )),
    }
    let message_id = MessageId::new();
    let stream = message_id.stream();
    let fresh = u.assume_new::<Outbox>(&stream).await?;
    u.decide(
        &stream,
        &fresh,
        QueueMessage {
            message_id,
            processor: processor.to_owned(),
            content,
        },
    )?;
    Ok(message_id)
}

/// Queues the CDN purge of a `pro` widget's page (R14): after its settings changed, or when
/// it goes out of service or comes back. A free widget's page is never cached: nothing to
/// purge.
pub async fn purge_from_cdn_if_pro(
    u: &mut Unit<'_>,
    widget_id: lightwidget_domain::WidgetId,
    plan: lightwidget_domain::event::Plan,
) -> Result<(), CommandError> {
    if plan == lightwidget_domain::event::Plan::Pro {
        // A widget's id is no personal data: nothing for the registry to allow.
        let purge = MessageContent::Open(Outbound::CdnPurge { widget_id });
        queue(u, &Registry::none(), "cdn", purge).await?;
    }
    Ok(())
}

/// How a processor answered an attempt that failed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SendFailure {
    /// A status or a transport failure; never anything of the message.
    pub error: String,
    /// The processor's `Retry-After`.
    pub retry_after: Option<Duration>,
    /// The processor refused the message as it is: another attempt would be refused too,
    /// so the message is dead at once.
    pub permanent: bool,
}

impl SendFailure {
    /// A message this processor cannot take at all.
    pub fn refused(why: &str) -> Self {
        SendFailure {
            error: format!("refused: {why}"),
            retry_after: None,
            permanent: true,
        }
    }
}

/// A processor's API: sends one message under its id, which the processor receives (as an
/// idempotency key or a custom field), so that a duplicate is recognisable.
#[async_trait::async_trait]
pub trait Sender: Send + Sync {
    /// The HTTP status of an accepted message.
    async fn send(&self, message_id: MessageId, message: &Outbound) -> Result<u16, SendFailure>;
}

/// The dispatcher's timing.
#[derive(Clone, Copy, Debug)]
pub struct DispatchConfig {
    /// How long an attempt is the taker's alone.
    pub lease: Duration,
    /// The first retry's window; each later one doubles, up to `cap`.
    pub base: Duration,
    pub cap: Duration,
    /// A message not delivered this long after it was queued is dead.
    pub give_up_after: Duration,
    /// Messages taken per processor and pass.
    pub batch: usize,
}

impl Default for DispatchConfig {
    fn default() -> Self {
        DispatchConfig {
            lease: Duration::seconds(60),
            base: Duration::seconds(1),
            cap: Duration::minutes(10),
            give_up_after: Duration::hours(24),
            batch: 64,
        }
    }
}

/// What one pass did, per message.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DispatchReport {
    pub delivered: Vec<MessageId>,
    pub failed: Vec<MessageId>,
    pub dead: Vec<MessageId>,
    pub cancelled: Vec<MessageId>,
}

impl DispatchReport {
    pub fn is_empty(&self) -> bool {
        self.delivered.is_empty()
            && self.failed.is_empty()
            && self.dead.is_empty()
            && self.cancelled.is_empty()
    }
}

/// Delivers due messages to the configured processors.
pub struct Dispatcher {
    cx: Arc<Context>,
    senders: BTreeMap<String, Arc<dyn Sender>>,
    runner: Runner,
    config: DispatchConfig,
}

/// What became of one message in a pass.
enum Fate {
    Delivered,
    Failed,
    Dead,
    Cancelled,
    /// Not due, taken by another dispatcher, or final meanwhile.
    Skipped,
}

impl Dispatcher {
    /// A dispatcher for the processors in `senders` (by registry kind).
    pub fn new(
        cx: Arc<Context>,
        senders: BTreeMap<String, Arc<dyn Sender>>,
        config: DispatchConfig,
    ) -> Self {
        let runner = Runner::new(
            cx.store.clone(),
            cx.views.clone(),
            Arc::new(lightwidget_projections::models::Outbox),
        );
        Dispatcher {
            cx,
            senders,
            runner,
            config,
        }
    }

    /// The processors this dispatcher sends to.
    pub fn configured(&self) -> impl Iterator<Item = &str> {
        self.senders.keys().map(String::as_str)
    }

    /// One pass: every message due now, of every configured processor, attempted once.
    pub async fn dispatch_due(&self) -> Result<DispatchReport, CommandError> {
        use futures::StreamExt;
        self.runner.catch_up().await.map_err(|e| {
            CommandError::Store(lightwidget_store::StoreError::Internal(e.to_string()))
        })?;
        let now = self.cx.clock.now();
        let mut report = DispatchReport::default();
        for (processor, sender) in &self.senders {
            let due = self
                .cx
                .views
                .query(
                    VIEW,
                    &ViewQuery {
                        owner: Some(processor.clone()),
                        due_before: Some(now + Duration::microseconds(1)),
                        limit: self.config.batch,
                        ..ViewQuery::default()
                    },
                )
                .await?;
            let ids: Vec<MessageId> = due
                .iter()
                .filter_map(|d| d.read::<MessageDoc>().ok())
                .map(|d| d.message_id)
                .collect();
            let fates: Vec<(MessageId, Result<Fate, CommandError>)> = futures::stream::iter(ids)
                .map(|id| async move { (id, self.deliver(id, processor, &**sender).await) })
                .buffer_unordered(8)
                .collect()
                .await;
            for (id, fate) in fates {
                match fate? {
                    Fate::Delivered => report.delivered.push(id),
                    Fate::Failed => report.failed.push(id),
                    Fate::Dead => report.dead.push(id),
                    Fate::Cancelled => report.cancelled.push(id),
                    Fate::Skipped => {}
                }
            }
        }
        Ok(report)
    }

    /// The earliest time a message of a configured processor is due, if any.
    pub async fn next_due(&self) -> Result<Option<DateTime<Utc>>, CommandError> {
        let mut next = None;
        for processor in self.senders.keys() {
            let first = self
                .cx
                .views
                .query(
                    VIEW,
                    &ViewQuery {
                        owner: Some(processor.clone()),
                        due_before: Some(DateTime::<Utc>::MAX_UTC),
                        limit: 1,
                        ..ViewQuery::default()
                    },
                )
                .await?;
            if let Some(due) = first.first().and_then(|d| d.due_at) {
                next = Some(next.map_or(due, |n: DateTime<Utc>| n.min(due)));
            }
        }
        Ok(next)
    }

    /// Runs passes until `stop` is set: after each, sleeps until the next message is due or
    /// the log moves (a new message), at most a second.
    pub async fn run(self: Arc<Self>, mut stop: tokio::sync::watch::Receiver<bool>) {
        if self.senders.is_empty() {
            return;
        }
        loop {
            if *stop.borrow() {
                return;
            }
            match self.dispatch_due().await {
                Ok(report) if !report.is_empty() => continue,
                Ok(_) => {}
                Err(e) => tracing::warn!(error = %e, "outbox pass"),
            }
            let head = self.cx.store.head().await.map(|h| h.position).unwrap_or(0);
            let now = self.cx.clock.now();
            let wait = match self.next_due().await {
                Ok(Some(due)) if due > now => (due - now)
                    .to_std()
                    .unwrap_or_default()
                    .min(std::time::Duration::from_secs(1)),
                Ok(Some(_)) => std::time::Duration::from_millis(10),
                _ => std::time::Duration::from_secs(1),
            };
            tokio::select! {
                _ = self.cx.store.wait_for(head, wait) => {}
                _ = stop.changed() => return,
            }
        }
    }

    fn meta() -> Metadata {
        Metadata {
            actor: "system:outbox".into(),
            ..Metadata::system()
        }
    }

    /// One message: taken, checked, sent, answered; or cancelled.
    async fn deliver(
        &self,
        id: MessageId,
        processor: &str,
        sender: &dyn Sender,
    ) -> Result<Fate, CommandError> {
        let cx = &*self.cx;
        let meta = Self::meta();
        let take = Take {
            id,
            lease: self.config.lease,
        };
        let taken = transact_with_attempts(&*cx.store, &*cx.clock, &meta, None, 4, &take).await;
        let (attempt, queued_at, outbound) = match taken {
            Ok(done) => match done.value.flatten() {
                Some(Taken::Attempt {
                    attempt,
                    queued_at,
                    outbound,
                }) => (attempt, queued_at, outbound),
                Some(Taken::Cancelled) => {
                    metrics::counter!("lw_outbox_cancelled_total", "processor" => processor.to_owned()).increment(1);
                    return Ok(Fate::Cancelled);
                }
                None => return Ok(Fate::Skipped),
            },
            // Another dispatcher took it first.
            Err(CommandError::Conflict { .. }) => return Ok(Fate::Skipped),
            Err(e) => return Err(e),
        };
        let started = std::time::Instant::now();
        let sent = sender.send(id, &outbound).await;
        metrics::histogram!("lw_outbox_send_seconds", "processor" => processor.to_owned())
            .record(started.elapsed().as_secs_f64());
        let now = cx.clock.now();
        let (command, fate) = match sent {
            Ok(status) => {
                metrics::counter!("lw_outbox_delivered_total", "processor" => processor.to_owned())
                    .increment(1);
                if let Ok(waited) = (now - queued_at).to_std() {
                    metrics::histogram!("lw_outbox_delivery_seconds", "processor" => processor.to_owned())
                        .record(waited.as_secs_f64());
                }
                (
                    MessageCommand::Delivered { attempt, status },
                    Fate::Delivered,
                )
            }
            Err(failure) => {
                metrics::counter!("lw_outbox_failures_total", "processor" => processor.to_owned())
                    .increment(1);
                let jitter: f64 = rand::random();
                let delay = backoff(
                    attempt,
                    self.config.base,
                    self.config.cap,
                    jitter,
                    failure.retry_after,
                );
                let give_up_at = queued_at + self.config.give_up_after;
                let retry_at = if failure.permanent {
                    give_up_at.max(now) + Duration::milliseconds(1)
                } else {
                    now + delay
                };
                let fate = if retry_at <= give_up_at {
                    Fate::Failed
                } else {
                    Fate::Dead
                };
                (
                    MessageCommand::Failed {
                        attempt,
                        error: failure.error,
                        retry_at,
                        give_up_at,
                    },
                    fate,
                )
            }
        };
        let answer = Answer { id, command };
        match transact_with_attempts(&*cx.store, &*cx.clock, &meta, None, 4, &answer).await {
            Ok(_) => Ok(fate),
            // The lease ended and another dispatcher took the message: its attempt answers.
            Err(CommandError::Rejected(crate::Rejection::Message(MessageError::NotInFlight(
                _,
            )))) => Ok(Fate::Skipped),
            Err(e) => Err(e),
        }
    }
}

/// What taking a message came to.
enum Taken {
    Attempt {
        attempt: u32,
        queued_at: DateTime<Utc>,
        outbound: Outbound,
    },
    /// Its personal data is gone: cancelled, never to be sent.
    Cancelled,
}

/// Takes a message for its next attempt; or cancels it when its content was erased.
struct Take {
    id: MessageId,
    lease: Duration,
}

#[async_trait::async_trait]
impl UseCase for Take {
    /// `None`: nothing to do (not due, final, or unknown).
    type Output = Option<Taken>;

    async fn run(&self, u: &mut Unit<'_>) -> Result<Option<Taken>, CommandError> {
        let stream = self.id.stream();
        let loaded = u.load::<Message>(&stream).await?;
        if loaded.state.state.is_final() || loaded.state.state == MessageState::Unknown {
            return Ok(None);
        }
        // The content, opened: the queuing event is the stream's first.
        let first = u.store().read_stream(&stream, 0, 1).await?;
        let queued = match first.first().map(|e| e.to_domain()) {
            Some(Ok(DomainEvent::MessageQueued(q))) => q,
            Some(Err(e)) => return Err(e.into()),
            _ => return Ok(None),
        };
        let Some(outbound) = queued.content.outbound().cloned() else {
            u.decide(
                &stream,
                &loaded,
                MessageCommand::Cancel {
                    reason: "its personal data was erased before delivery".into(),
                },
            )?;
            return Ok(Some(Taken::Cancelled));
        };
        let lease_until = u.now() + self.lease;
        match u.try_decide(&stream, &loaded, MessageCommand::Take { lease_until }) {
            Ok(_) => Ok(Some(Taken::Attempt {
                attempt: loaded.state.attempts + 1,
                queued_at: queued.queued_at,
                outbound,
            })),
            Err(MessageError::NotDue(_) | MessageError::Final(_)) => Ok(None),
            Err(e) => Err(CommandError::Rejected(e.into())),
        }
    }
}

/// Records a processor's answer to an attempt.
struct Answer {
    id: MessageId,
    command: MessageCommand,
}

#[async_trait::async_trait]
impl UseCase for Answer {
    type Output = ();

    async fn run(&self, u: &mut Unit<'_>) -> Result<(), CommandError> {
        let stream = self.id.stream();
        let loaded = u.load::<Message>(&stream).await?;
        u.decide(&stream, &loaded, self.command.clone())?;
        Ok(())
    }
}

impl From<NotListed> for CommandError {
    fn from(e: NotListed) -> Self {
        CommandError::NotListed(e)
    }
}

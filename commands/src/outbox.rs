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
    backoff, Deliverable, Message, MessageCommand, MessageError, MessageState, Outbox, QueueMessage,
};
use lightwidget_domain::MessageId;
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
    if let Some(category) = content.category() {
        registry.check(processor, category)?;
    }
    append_message(u, processor, content).await
}

/// Queues a message whose content the registry has allowed, or that carries no personal
/// data at all (`MessageContent::Open`).
async fn append_message(
    u: &mut Unit<'_>,
    processor: &str,
    content: MessageContent,
) -> Result<MessageId, CommandError> {
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
        append_message(u, "cdn", purge).await?;
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
                .due(
                    processor,
                    now + Duration::microseconds(1),
                    self.config.batch,
                )
                .await?;
            let ids: Vec<MessageId> = due
                .iter()
                .filter_map(|d| d.read::<MessageDoc>().ok())
                .map(|d| d.message_id)
                .collect();
            // A few at a time: taken in one append, sent together, answered in one append;
            // a chunk is sent within one send's time of its taking, well inside the lease.
            // Several chunks at once: a chunk's unit reads its messages one after another.
            let owned: Vec<Vec<MessageId>> = ids.chunks(IN_FLIGHT).map(<[_]>::to_vec).collect();
            let sender: &dyn Sender = &**sender;
            let chunks: Vec<_> = futures::stream::iter(owned)
                .map(|chunk| async move { self.deliver_chunk(&chunk, processor, sender).await })
                .buffer_unordered(CHUNKS_AT_ONCE)
                .collect()
                .await;
            for chunk in chunks {
                for (id, fate) in chunk? {
                    match fate {
                        Fate::Delivered => report.delivered.push(id),
                        Fate::Failed => report.failed.push(id),
                        Fate::Dead => report.dead.push(id),
                        Fate::Cancelled => report.cancelled.push(id),
                        Fate::Skipped => {}
                    }
                }
            }
        }
        Ok(report)
    }

    /// Up to `limit` messages of `processor` due before `before`, earliest first.
    async fn due(
        &self,
        processor: &str,
        before: DateTime<Utc>,
        limit: usize,
    ) -> Result<Vec<lightwidget_store::ViewDoc>, CommandError> {
        let query = ViewQuery {
            owner: Some(processor.to_owned()),
            due_before: Some(before),
            limit,
            ..ViewQuery::default()
        };
        Ok(self.cx.views.query(VIEW, &query).await?)
    }

    /// The earliest time a message of a configured processor is due, if any.
    pub async fn next_due(&self) -> Result<Option<DateTime<Utc>>, CommandError> {
        let mut next = None;
        for processor in self.senders.keys() {
            let first = self.due(processor, DateTime::<Utc>::MAX_UTC, 1).await?;
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

    /// A chunk of messages: taken (or cancelled) in one append, sent concurrently, their
    /// answers recorded in one append.
    async fn deliver_chunk(
        &self,
        ids: &[MessageId],
        processor: &str,
        sender: &dyn Sender,
    ) -> Result<Vec<(MessageId, Fate)>, CommandError> {
        use futures::StreamExt;
        let cx = &*self.cx;
        let meta = Self::meta();
        let take = TakeMany {
            ids: ids.to_vec(),
            lease: self.config.lease,
        };
        let taken =
            match transact_with_attempts(&*cx.store, &*cx.clock, &meta, None, 4, &take).await {
                Ok(done) => done.value.unwrap_or_default(),
                // Other dispatchers kept taking them: theirs to send.
                Err(CommandError::Conflict { .. }) => return Ok(vec![]),
                Err(e) => return Err(e),
            };
        let label = processor.to_owned();
        let mut fates = Vec::new();
        let mut attempts = Vec::new();
        for (id, t) in taken {
            match t {
                Taken::Cancelled => {
                    metrics::counter!("lw_outbox_cancelled_total", "processor" => label.clone())
                        .increment(1);
                    fates.push((id, Fate::Cancelled));
                }
                Taken::Attempt {
                    attempt,
                    queued_at,
                    outbound,
                } => attempts.push((id, attempt, queued_at, outbound)),
            }
        }
        let sent: Vec<_> = futures::stream::iter(attempts)
            .map(|(id, attempt, queued_at, outbound)| async move {
                let started = std::time::Instant::now();
                let result = sender.send(id, &outbound).await;
                (id, attempt, queued_at, started.elapsed(), result)
            })
            .buffer_unordered(IN_FLIGHT)
            .collect()
            .await;
        let now = cx.clock.now();
        let mut answers = Vec::new();
        for (id, attempt, queued_at, took, result) in sent {
            metrics::histogram!("lw_outbox_send_seconds", "processor" => label.clone())
                .record(took.as_secs_f64());
            let (command, fate) = match result {
                Ok(status) => {
                    metrics::counter!("lw_outbox_delivered_total", "processor" => label.clone())
                        .increment(1);
                    if let Ok(waited) = (now - queued_at).to_std() {
                        metrics::histogram!("lw_outbox_delivery_seconds", "processor" => label.clone())
                            .record(waited.as_secs_f64());
                    }
                    (
                        MessageCommand::Delivered { attempt, status },
                        Fate::Delivered,
                    )
                }
                Err(failure) => {
                    metrics::counter!("lw_outbox_failures_total", "processor" => label.clone())
                        .increment(1);
                    let give_up_at = queued_at + self.config.give_up_after;
                    let retry_at = if failure.permanent {
                        give_up_at.max(now) + Duration::milliseconds(1)
                    } else {
                        let jitter: f64 = rand::random();
                        let delay = backoff(
                            attempt,
                            self.config.base,
                            self.config.cap,
                            jitter,
                            failure.retry_after,
                        );
                        now + delay
                    };
                    let fate = if retry_at <= give_up_at {
                        Fate::Failed
                    } else {
                        Fate::Dead
                    };
                    let command = MessageCommand::Failed {
                        attempt,
                        error: failure.error,
                        retry_at,
                        give_up_at,
                    };
                    (command, fate)
                }
            };
            answers.push((id, command));
            fates.push((id, fate));
        }
        if answers.is_empty() {
            return Ok(fates);
        }
        let answer = AnswerMany { answers };
        let recorded =
            transact_with_attempts(&*cx.store, &*cx.clock, &meta, None, 4, &answer).await?;
        // An answer to an attempt whose lease ended and that another dispatcher took is that
        // dispatcher's to record: this one's fate is not reported.
        let stale = recorded.value.unwrap_or_default();
        Ok(fates
            .into_iter()
            .map(|(id, fate)| {
                if stale.contains(&id) {
                    (id, Fate::Skipped)
                } else {
                    (id, fate)
                }
            })
            .collect())
    }
}

/// Messages taken per append and sent together.
const IN_FLIGHT: usize = 16;
/// Chunks delivered at once.
const CHUNKS_AT_ONCE: usize = 4;

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

/// Takes messages for their next attempt in one append; cancels those whose content was
/// erased. A message not due (another dispatcher took it) or final is left out.
struct TakeMany {
    ids: Vec<MessageId>,
    lease: Duration,
}

#[async_trait::async_trait]
impl UseCase for TakeMany {
    type Output = Vec<(MessageId, Taken)>;

    async fn run(&self, u: &mut Unit<'_>) -> Result<Self::Output, CommandError> {
        let lease_until = u.now() + self.lease;
        let mut out = Vec::new();
        for id in &self.ids {
            let stream = id.stream();
            // One read: the state and the opened content.
            let loaded = u.load::<Deliverable>(&stream).await?;
            let m = &loaded.state.message;
            if m.state.is_final() || m.state == MessageState::Unknown {
                continue;
            }
            let Some(outbound) = loaded.state.outbound.clone() else {
                u.decide(
                    &stream,
                    &loaded,
                    MessageCommand::Cancel {
                        reason: "its personal data was erased before delivery".into(),
                    },
                )?;
                out.push((*id, Taken::Cancelled));
                continue;
            };
            let queued_at = m.queued_at.unwrap_or_else(|| u.now());
            let attempt = m.attempts + 1;
            match u.try_decide(&stream, &loaded, MessageCommand::Take { lease_until }) {
                Ok(_) => out.push((
                    *id,
                    Taken::Attempt {
                        attempt,
                        queued_at,
                        outbound,
                    },
                )),
                Err(MessageError::NotDue(_) | MessageError::Final(_)) => {}
                Err(e) => return Err(CommandError::Rejected(e.into())),
            }
        }
        Ok(out)
    }
}

/// Records the processors' answers to attempts in one append. An attempt that is no longer
/// the one in flight (its lease ended and another dispatcher took the message) is left out
/// and named in the output.
struct AnswerMany {
    answers: Vec<(MessageId, MessageCommand)>,
}

#[async_trait::async_trait]
impl UseCase for AnswerMany {
    type Output = Vec<MessageId>;

    async fn run(&self, u: &mut Unit<'_>) -> Result<Vec<MessageId>, CommandError> {
        let mut stale = Vec::new();
        for (id, command) in &self.answers {
            let stream = id.stream();
            let loaded = u.load::<Message>(&stream).await?;
            match u.try_decide(&stream, &loaded, command.clone()) {
                Ok(_) => {}
                Err(MessageError::NotInFlight(_) | MessageError::Final(_)) => stale.push(*id),
                Err(e) => return Err(CommandError::Rejected(e.into())),
            }
        }
        Ok(stale)
    }
}

impl From<NotListed> for CommandError {
    fn from(e: NotListed) -> Self {
        CommandError::NotListed(e)
    }
}

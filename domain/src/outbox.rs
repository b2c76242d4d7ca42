//! Messages to processors (R4, R12, R14, R15): an outbox in the log.
//!
//! A message is decided in the same append as the event that causes it, on a stream of its
//! own (`message-<id>`). A dispatcher takes it for one attempt at a time (a lease, so that
//! two dispatchers never send it at once), sends it, and records the answer: delivered, or
//! failed with the time of the next attempt, or dead when that time would pass the give-up
//! bound. A message whose personal data was erased before delivery is cancelled, never sent.
//!
//! Each attempt is recorded before the send, so after a crash the message is sent again only
//! if the crash fell between a send and its recorded answer (and then with the same message
//! id, which the processor receives).

use crate::event::*;
use crate::{Aggregate, Category, DomainEvent, MessageId, Now, Personal};
use chrono::{DateTime, Duration, Utc};

/// Where a message stands.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum MessageState {
    /// Not queued (no such stream).
    #[default]
    Unknown,
    /// Waiting for its next attempt at `next_attempt_at`.
    Pending,
    /// Taken by a dispatcher for an attempt, until the lease ends.
    InFlight,
    Sent,
    /// Given up: no attempt succeeded within the bound.
    Dead,
    /// Its personal data was erased before it could be sent.
    Cancelled,
}

impl MessageState {
    pub fn as_str(self) -> &'static str {
        match self {
            MessageState::Unknown => "unknown",
            MessageState::Pending => "pending",
            MessageState::InFlight => "in_flight",
            MessageState::Sent => "sent",
            MessageState::Dead => "dead",
            MessageState::Cancelled => "cancelled",
        }
    }

    /// Whether nothing more will happen to it.
    pub fn is_final(self) -> bool {
        matches!(
            self,
            MessageState::Sent | MessageState::Dead | MessageState::Cancelled
        )
    }
}

/// A message as its stream tells it.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Message {
    pub message_id: Option<MessageId>,
    pub state: MessageState,
    pub processor: String,
    pub kind: String,
    pub queued_at: Option<DateTime<Utc>>,
    /// Attempts taken so far.
    pub attempts: u32,
    /// When it may be attempted (pending) or taken again (in flight: the lease's end).
    pub next_attempt_at: Option<DateTime<Utc>>,
    pub last_error: Option<String>,
}

#[derive(Clone, Debug)]
pub enum MessageCommand {
    /// Takes the message for its next attempt, until `lease_until`.
    Take { lease_until: DateTime<Utc> },
    /// The processor accepted attempt `attempt`.
    Delivered { attempt: u32, status: u16 },
    /// Attempt `attempt` failed (`error` names no personal data); the next is due at
    /// `retry_at`, unless that passes `give_up_at`: then the message is dead.
    Failed {
        attempt: u32,
        error: String,
        retry_at: DateTime<Utc>,
        give_up_at: DateTime<Utc>,
    },
    /// Its personal data is gone: it will never be sent.
    Cancel { reason: String },
}

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum MessageError {
    #[error("no such message")]
    Unknown,
    #[error("the message is already {0}")]
    Final(&'static str),
    #[error("the message is not due before {0}")]
    NotDue(DateTime<Utc>),
    #[error("attempt {0} is not the attempt in flight")]
    NotInFlight(u32),
}

impl Aggregate for Message {
    const READS_PERSONAL_DATA: bool = false;
    type Command = MessageCommand;
    type Error = MessageError;

    fn decide(&self, command: MessageCommand, now: Now) -> Result<Vec<DomainEvent>, MessageError> {
        if self.state == MessageState::Unknown {
            return Err(MessageError::Unknown);
        }
        if self.state.is_final() {
            return Err(MessageError::Final(self.state.as_str()));
        }
        let message_id = self.message_id.ok_or(MessageError::Unknown)?;
        let in_flight = |attempt: u32| {
            if self.state == MessageState::InFlight && attempt == self.attempts {
                Ok(())
            } else {
                Err(MessageError::NotInFlight(attempt))
            }
        };
        match command {
            MessageCommand::Take { lease_until } => {
                // Pending and due, or in flight with its lease ended (the dispatcher that took
                // it stopped before recording an answer).
                if let Some(next) = self.next_attempt_at.filter(|t| *t > now) {
                    return Err(MessageError::NotDue(next));
                }
                Ok(vec![MessageAttempted {
                    message_id,
                    attempt: self.attempts + 1,
                    lease_until,
                    attempted_at: now,
                }
                .into()])
            }
            MessageCommand::Delivered { attempt, status } => {
                in_flight(attempt)?;
                Ok(vec![MessageDelivered {
                    message_id,
                    attempt,
                    status,
                    delivered_at: now,
                }
                .into()])
            }
            MessageCommand::Failed {
                attempt,
                error,
                retry_at,
                give_up_at,
            } => {
                in_flight(attempt)?;
                Ok(vec![MessageFailed {
                    message_id,
                    attempt,
                    error,
                    retry_at: (retry_at <= give_up_at).then_some(retry_at),
                    failed_at: now,
                }
                .into()])
            }
            MessageCommand::Cancel { reason } => Ok(vec![MessageCancelled {
                message_id,
                reason,
                cancelled_at: now,
            }
            .into()]),
        }
    }

    fn evolve(mut self, event: &DomainEvent) -> Self {
        match event {
            DomainEvent::MessageQueued(e) => {
                self.message_id = Some(e.message_id);
                self.state = MessageState::Pending;
                self.processor = e.processor.clone();
                self.kind = e.kind.clone();
                self.queued_at = Some(e.queued_at);
                self.next_attempt_at = Some(e.queued_at);
            }
            DomainEvent::MessageAttempted(e) => {
                self.state = MessageState::InFlight;
                self.attempts = e.attempt;
                self.next_attempt_at = Some(e.lease_until);
            }
            DomainEvent::MessageDelivered(_) => {
                self.state = MessageState::Sent;
                self.next_attempt_at = None;
                self.last_error = None;
            }
            DomainEvent::MessageFailed(e) => {
                self.last_error = Some(e.error.clone());
                match e.retry_at {
                    Some(at) => {
                        self.state = MessageState::Pending;
                        self.next_attempt_at = Some(at);
                    }
                    None => {
                        self.state = MessageState::Dead;
                        self.next_attempt_at = None;
                    }
                }
            }
            DomainEvent::MessageCancelled(_) => {
                self.state = MessageState::Cancelled;
                self.next_attempt_at = None;
            }
            _ => {}
        }
        self
    }
}

/// A message with its content opened: what a dispatcher loads to take it for an attempt
/// (one read gives both the state and what to send).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Deliverable {
    pub message: Message,
    /// What to send; `None` before the message is queued or once its data was erased.
    pub outbound: Option<Outbound>,
}

impl Aggregate for Deliverable {
    const READS_PERSONAL_DATA: bool = true;
    type Command = MessageCommand;
    type Error = MessageError;

    fn decide(&self, command: MessageCommand, now: Now) -> Result<Vec<DomainEvent>, MessageError> {
        self.message.decide(command, now)
    }

    fn evolve(mut self, event: &DomainEvent) -> Self {
        if let DomainEvent::MessageQueued(q) = event {
            self.outbound = q.content.outbound().cloned();
        }
        self.message = self.message.evolve(event);
        self
    }
}

impl MessageContent {
    /// What kind of message it is, as the admin sees it.
    pub fn kind(&self) -> &'static str {
        match self {
            MessageContent::Sealed(p) => p.value().map_or("erased", Outbound::kind),
            MessageContent::Open(o) => o.kind(),
        }
    }

    /// The message as sent: `None` once its personal data was erased.
    pub fn outbound(&self) -> Option<&Outbound> {
        match self {
            MessageContent::Sealed(p) => p.value(),
            MessageContent::Open(o) => Some(o),
        }
    }

    /// The category of personal data it carries, if any.
    pub fn category(&self) -> Option<Category> {
        match self {
            MessageContent::Sealed(p) => Some(p.category()),
            MessageContent::Open(_) => None,
        }
    }
}

impl Outbound {
    pub fn kind(&self) -> &'static str {
        match self {
            Outbound::Ticket { .. } => "ticket",
            Outbound::CommentNotification { .. } => "comment_notification",
            Outbound::OrderConfirmation { .. } => "order_confirmation",
            Outbound::Invoice { .. } => "invoice",
            Outbound::CdnPurge { .. } => "cdn_purge",
            Outbound::PageView { .. } => "page_view",
        }
    }
}

/// A message to queue: the processor (its registry kind) and the content.
#[derive(Clone, Debug)]
pub struct QueueMessage {
    pub message_id: MessageId,
    pub processor: String,
    pub content: MessageContent,
}

/// The outbox: queues a message on its own, new stream, in the append of its cause.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Outbox;

impl Aggregate for Outbox {
    const READS_PERSONAL_DATA: bool = false;
    type Command = QueueMessage;
    type Error = std::convert::Infallible;

    fn decide(&self, q: QueueMessage, now: Now) -> Result<Vec<DomainEvent>, Self::Error> {
        Ok(vec![queued(q, now)])
    }

    fn evolve(self, _: &DomainEvent) -> Self {
        self
    }
}

/// The event that queues a message.
pub fn queued(q: QueueMessage, now: Now) -> DomainEvent {
    MessageQueued {
        message_id: q.message_id,
        processor: q.processor,
        kind: q.content.kind().to_owned(),
        content: q.content,
        queued_at: now,
    }
    .into()
}

/// Seals an outbound message with the personal data it carries.
pub fn sealed(subject: crate::Subject, category: Category, outbound: Outbound) -> MessageContent {
    MessageContent::Sealed(Personal::new(subject, category, outbound))
}

/// The delay before attempt `n + 1` after `n` failed ones: doubling from `base`, at most
/// `cap`, with full jitter (`jitter` in [0, 1) picks the point in the window), and never
/// sooner than a processor's `Retry-After`.
pub fn backoff(
    failed: u32,
    base: Duration,
    cap: Duration,
    jitter: f64,
    retry_after: Option<Duration>,
) -> Duration {
    let exp = failed.saturating_sub(1).min(20);
    let window = base
        .checked_mul(1 << exp)
        .map_or(cap, |w| w.min(cap))
        .max(Duration::milliseconds(1));
    let ms = (window.num_milliseconds() as f64 * jitter.clamp(0.0, 1.0)) as i64;
    let delay = Duration::milliseconds(ms.max(1));
    match retry_after {
        Some(r) if r > delay => r,
        _ => delay,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::aggregate::testing::given;
    use crate::event::SupportRequest;

    fn t(s: i64) -> Now {
        chrono::DateTime::from_timestamp(1_700_000_000 + s, 0).unwrap_or_default()
    }

    fn queued_ticket() -> DomainEvent {
        let ticket_id = crate::TicketId(uuid::Uuid::from_u128(1));
        queued(
            QueueMessage {
                message_id: MessageId(uuid::Uuid::from_u128(2)),
                processor: "ticketing".into(),
                content: sealed(
                    crate::Subject::ticket(ticket_id),
                    Category::Support,
                    Outbound::Ticket {
                        ticket_id,
                        request: SupportRequest::parse(Some("a@b.co"), None, Some("help"))
                            .expect("valid"),
                    },
                ),
            },
            t(0),
        )
    }

    fn after(events: &[DomainEvent]) -> Message {
        events.iter().fold(Message::default(), |m, e| m.evolve(e))
    }

    fn take(history: &[DomainEvent], lease_s: i64, now: i64) -> Vec<DomainEvent> {
        given::<Message>(history.to_vec())
            .when(
                MessageCommand::Take {
                    lease_until: t(now + lease_s),
                },
                t(now),
            )
            .result()
            .expect("taken")
    }

    #[test]
    fn a_message_is_taken_then_delivered_once() {
        let mut h = vec![queued_ticket()];
        h.extend(take(&h, 30, 0));
        assert_eq!(after(&h).state, MessageState::InFlight);
        // Taken: nobody else takes it before the lease ends.
        given::<Message>(h.clone())
            .when(MessageCommand::Take { lease_until: t(60) }, t(10))
            .then_err(MessageError::NotDue(t(30)));
        let delivered = given::<Message>(h.clone())
            .when(
                MessageCommand::Delivered {
                    attempt: 1,
                    status: 201,
                },
                t(1),
            )
            .result()
            .expect("delivered");
        h.extend(delivered);
        assert_eq!(after(&h).state, MessageState::Sent);
        given::<Message>(h)
            .when(MessageCommand::Take { lease_until: t(99) }, t(90))
            .then_err(MessageError::Final("sent"));
    }

    #[test]
    fn a_lease_that_ends_unanswered_lets_another_attempt_take_it() {
        let mut h = vec![queued_ticket()];
        h.extend(take(&h, 30, 0));
        h.extend(take(&h, 30, 31));
        let m = after(&h);
        assert_eq!((m.state, m.attempts), (MessageState::InFlight, 2));
        // The first attempt's late answer is not the attempt in flight.
        given::<Message>(h)
            .when(
                MessageCommand::Delivered {
                    attempt: 1,
                    status: 200,
                },
                t(40),
            )
            .then_err(MessageError::NotInFlight(1));
    }

    #[test]
    fn failures_retry_until_the_bound_then_the_message_is_dead() {
        let mut h = vec![queued_ticket()];
        h.extend(take(&h, 30, 0));
        let failed = |h: &[DomainEvent], attempt, retry_at, now| {
            given::<Message>(h.to_vec())
                .when(
                    MessageCommand::Failed {
                        attempt,
                        error: "HTTP 500".into(),
                        retry_at,
                        give_up_at: t(100),
                    },
                    now,
                )
                .result()
                .expect("recorded")
        };
        h.extend(failed(&h, 1, t(50), t(1)));
        let m = after(&h);
        assert_eq!(m.state, MessageState::Pending);
        assert_eq!(m.next_attempt_at, Some(t(50)));
        assert_eq!(m.last_error.as_deref(), Some("HTTP 500"));
        given::<Message>(h.clone())
            .when(MessageCommand::Take { lease_until: t(80) }, t(49))
            .then_err(MessageError::NotDue(t(50)));
        h.extend(take(&h, 30, 50));
        h.extend(failed(&h, 2, t(101), t(51)));
        assert_eq!(after(&h).state, MessageState::Dead);
    }

    #[test]
    fn a_cancelled_message_is_never_taken() {
        let mut h = vec![queued_ticket()];
        let cancelled = given::<Message>(h.clone())
            .when(
                MessageCommand::Cancel {
                    reason: "erased".into(),
                },
                t(1),
            )
            .result()
            .expect("cancelled");
        h.extend(cancelled);
        given::<Message>(h)
            .when(MessageCommand::Take { lease_until: t(9) }, t(2))
            .then_err(MessageError::Final("cancelled"));
        given::<Message>([])
            .when(MessageCommand::Take { lease_until: t(9) }, t(2))
            .then_err(MessageError::Unknown);
    }

    #[test]
    fn backoff_doubles_with_jitter_to_its_cap_and_honours_retry_after() {
        let s = Duration::seconds;
        assert_eq!(backoff(1, s(1), s(60), 1.0, None), s(1));
        assert_eq!(backoff(3, s(1), s(60), 1.0, None), s(4));
        assert_eq!(backoff(30, s(1), s(60), 1.0, None), s(60));
        assert_eq!(backoff(3, s(1), s(60), 0.5, None), s(2));
        assert!(backoff(3, s(1), s(60), 0.0, None) > Duration::zero());
        assert_eq!(backoff(1, s(1), s(60), 0.5, Some(s(30))), s(30));
        assert_eq!(backoff(8, s(1), s(60), 1.0, Some(s(2))), s(60));
    }
}

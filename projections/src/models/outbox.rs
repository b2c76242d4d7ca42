//! `outbox`: one document per message to a processor (R12, R15), for the dispatcher and the
//! admin. The owner column is the processor; the state column the message's state; the due
//! date the time of its next attempt (or the end of the lease of the attempt in flight),
//! while it may still be sent. No personal data: the content is not in it.

use crate::{Overlay, Projection, ViewReader};
use lightwidget_domain::outbox::{Message, MessageState};
use lightwidget_domain::{Aggregate, DomainEvent, MessageId};
use lightwidget_store::{format_time, RecordedEvent, ViewDoc};
use serde::{Deserialize, Serialize};

pub struct Outbox;

pub const VIEW: &str = "outbox";

/// A message as the admin sees it. Times are RFC 3339 text as stored.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct MessageDoc {
    pub message_id: MessageId,
    pub processor: String,
    pub kind: String,
    pub state: String,
    pub attempts: u32,
    pub queued_at: Option<String>,
    pub next_attempt_at: Option<String>,
    pub last_error: Option<String>,
    /// The log position of the message's queuing, for the delivery latency.
    pub queued_position: u64,
}

fn message_of(d: &DomainEvent) -> Option<MessageId> {
    Some(match d {
        DomainEvent::MessageQueued(e) => e.message_id,
        DomainEvent::MessageAttempted(e) => e.message_id,
        DomainEvent::MessageDelivered(e) => e.message_id,
        DomainEvent::MessageFailed(e) => e.message_id,
        DomainEvent::MessageCancelled(e) => e.message_id,
        _ => return None,
    })
}

/// The part of a message's state the document keeps, to fold the next event onto.
fn state_of(doc: &MessageDoc) -> Message {
    let parse = |t: &Option<String>| {
        t.as_deref()
            .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
            .map(|t| t.with_timezone(&chrono::Utc))
    };
    Message {
        message_id: Some(doc.message_id),
        state: match doc.state.as_str() {
            "pending" => MessageState::Pending,
            "in_flight" => MessageState::InFlight,
            "sent" => MessageState::Sent,
            "dead" => MessageState::Dead,
            "cancelled" => MessageState::Cancelled,
            _ => MessageState::Unknown,
        },
        processor: doc.processor.clone(),
        kind: doc.kind.clone(),
        queued_at: parse(&doc.queued_at),
        attempts: doc.attempts,
        next_attempt_at: parse(&doc.next_attempt_at),
        last_error: doc.last_error.clone(),
    }
}

impl Projection for Outbox {
    fn name(&self) -> &'static str {
        VIEW
    }

    fn event_types(&self) -> Option<&'static [&'static str]> {
        Some(&[
            "MessageQueued",
            "MessageAttempted",
            "MessageDelivered",
            "MessageFailed",
            "MessageCancelled",
        ])
    }

    fn follows_references(&self) -> bool {
        false
    }

    fn reads(&self, _e: &RecordedEvent, d: &DomainEvent, _loaded: &dyn ViewReader) -> Vec<String> {
        message_of(d)
            .map(|m| vec![m.to_string()])
            .unwrap_or_default()
    }

    fn handle(&self, e: &RecordedEvent, d: &DomainEvent, view: &mut Overlay) {
        let Some(id) = message_of(d) else { return };
        let key = id.to_string();
        let (before, queued_position) = match view.get(&key).map(ViewDoc::read::<MessageDoc>) {
            Some(Ok(doc)) => (state_of(&doc), doc.queued_position),
            Some(Err(err)) => {
                tracing::error!(error = %err, "an outbox document does not read");
                return;
            }
            None if matches!(d, DomainEvent::MessageQueued(_)) => (Message::default(), e.position),
            None => return,
        };
        let m = before.evolve(d);
        let doc = MessageDoc {
            message_id: id,
            processor: m.processor.clone(),
            kind: m.kind.clone(),
            state: m.state.as_str().to_owned(),
            attempts: m.attempts,
            queued_at: m.queued_at.map(format_time),
            next_attempt_at: m.next_attempt_at.map(format_time),
            last_error: m.last_error.clone(),
            queued_position,
        };
        if let Ok(mut out) = ViewDoc::typed(key, &doc) {
            out = out.owner(m.processor.clone()).state(m.state.as_str());
            if let (Some(next), false) = (m.next_attempt_at, m.state.is_final()) {
                out = out.due_at(next);
            }
            view.put(out);
        }
    }
}

//! What visitors send: comments on articles (R6), support tickets (R4), and the Instagram
//! media fetched for a widget's page (R7).

use crate::event::*;
use crate::values::CommentText;
use crate::{
    Aggregate, Category, CommentId, DomainEvent, Now, Personal, Subject, TicketId, WidgetId,
};

/// An article's comments (`article-<slug>`). Comments never depend on each other, so they
/// are appended without a version check.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Article;

#[derive(Clone, Debug)]
pub struct PostComment {
    pub comment_id: CommentId,
    /// The article's slug.
    pub article: String,
    pub comment: CommentText,
    /// The client's IP, kept for abuse prevention only (R6).
    pub ip: String,
}

impl Aggregate for Article {
    const READS_PERSONAL_DATA: bool = false;
    type Command = PostComment;
    type Error = std::convert::Infallible;

    fn decide(&self, c: PostComment, now: Now) -> Result<Vec<DomainEvent>, Self::Error> {
        Ok(vec![CommentPosted {
            comment_id: c.comment_id,
            article: c.article,
            author: CommentAuthor::Sealed(Personal::new(
                Subject::comment(c.comment_id),
                Category::CommentAuthor,
                c.comment.author,
            )),
            text: c.comment.text,
            ip: Personal::new(Subject::comment(c.comment_id), Category::CommentIp, c.ip),
            posted_at: now,
        }
        .into()])
    }

    fn evolve(self, _: &DomainEvent) -> Self {
        self
    }
}

/// A support ticket (`ticket-<id>`): opened once.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Ticket {
    pub opened: bool,
}

#[derive(Clone, Debug)]
pub struct OpenTicket {
    pub ticket_id: TicketId,
    pub request: SupportRequest,
}

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum TicketError {
    #[error("the ticket was already opened")]
    AlreadyOpened,
}

impl Aggregate for Ticket {
    const READS_PERSONAL_DATA: bool = false;
    type Command = OpenTicket;
    type Error = TicketError;

    fn decide(&self, c: OpenTicket, now: Now) -> Result<Vec<DomainEvent>, TicketError> {
        if self.opened {
            return Err(TicketError::AlreadyOpened);
        }
        Ok(vec![TicketOpened {
            ticket_id: c.ticket_id,
            request: Personal::new(Subject::ticket(c.ticket_id), Category::Support, c.request),
            opened_at: now,
        }
        .into()])
    }

    fn evolve(mut self, event: &DomainEvent) -> Self {
        if matches!(event, DomainEvent::TicketOpened(_)) {
            self.opened = true;
        }
        self
    }
}

/// A widget's fetches of its owner's Instagram media (`media-<widget>`).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct MediaCache;

#[derive(Clone, Debug)]
pub struct CacheMedia {
    pub widget_id: WidgetId,
    pub items: Vec<MediaItem>,
}

impl Aggregate for MediaCache {
    const READS_PERSONAL_DATA: bool = false;
    type Command = CacheMedia;
    type Error = std::convert::Infallible;

    fn decide(&self, c: CacheMedia, now: Now) -> Result<Vec<DomainEvent>, Self::Error> {
        Ok(vec![MediaCached {
            widget_id: c.widget_id,
            media: Personal::new(
                Subject::media(c.widget_id, now),
                Category::MediaCache,
                c.items,
            ),
            fetched_at: now,
        }
        .into()])
    }

    fn evolve(self, _: &DomainEvent) -> Self {
        self
    }
}

/// A view of a widget's public page (R1, R2), recorded through the hit recorder.
pub fn viewed(widget_id: WidgetId, access: AccessLog, now: Now) -> DomainEvent {
    WidgetViewed {
        widget_id,
        access: Personal::new(
            Subject::access_log(widget_id, now),
            Category::AccessLog,
            access,
        ),
        viewed_at: now,
    }
    .into()
}

/// A click in a widget (R1, R2), recorded through the hit recorder.
pub fn clicked(widget_id: WidgetId, access: AccessLog, now: Now) -> DomainEvent {
    WidgetClicked {
        widget_id,
        access: Personal::new(
            Subject::access_log(widget_id, now),
            Category::AccessLog,
            access,
        ),
        clicked_at: now,
    }
    .into()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::aggregate::testing::given;

    #[test]
    fn a_ticket_opens_once_with_its_request_sealed_as_support() {
        let now = chrono::DateTime::from_timestamp(1_700_000_000, 0).unwrap_or_default();
        let open = || OpenTicket {
            ticket_id: TicketId(uuid::Uuid::from_u128(3)),
            request: SupportRequest::parse(Some("a@b.co"), None, None).expect("accepted"),
        };
        let events = given::<Ticket>([])
            .when(open(), now)
            .result()
            .expect("accepted");
        match &events[..] {
            [DomainEvent::TicketOpened(t)] => assert_eq!(t.request.category(), Category::Support),
            other => panic!("{other:?}"),
        }
        given::<Ticket>(events)
            .when(open(), now)
            .then_err(TicketError::AlreadyOpened);
    }
}

//! What anyone may send: comments on articles (R6), support tickets (R4), and the views
//! and clicks of widgets (R1, R2).

use crate::context::run_keyed;
use crate::context::Invocation;
use crate::processors::Registry;
use crate::unit::{Unit, UseCase};
use crate::{CommandError, Context, HitRecorder};
use lightwidget_domain::event::{AccessLog, Outbound, SupportRequest};
use lightwidget_domain::support::{self, Article, OpenTicket, PostComment, Ticket};
use lightwidget_domain::values::CommentText;
use lightwidget_domain::{consent, outbox};
use lightwidget_domain::{streams, CommentId, TicketId, WidgetId};
use lightwidget_domain::{Aggregate, Category, MessageId, Subject, VisitorId};
use lightwidget_store::StoreError;
use std::sync::Arc;

/// Something a visitor created, with the position of its event.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Created<Id> {
    pub id: Id,
    pub position: u64,
}

/// Posts a comment on the article `slug`. The client's IP is kept with it for abuse
/// prevention only, 12 months (R6).
pub async fn post_comment(
    cx: &Context,
    inv: Invocation<'_>,
    slug: &str,
    comment: CommentText,
    ip: String,
) -> Result<Created<CommentId>, CommandError> {
    let comment_id = CommentId(inv.new_id("comment"));
    let work = Post(
        PostComment {
            comment_id,
            article: slug.to_owned(),
            comment,
            ip,
        },
        cx.processors.clone(),
    );
    let done = run_keyed(cx, inv, &work).await?;
    Ok(Created {
        id: comment_id,
        position: done.position,
    })
}

struct Post(PostComment, Arc<Registry>);

#[async_trait::async_trait]
impl UseCase for Post {
    type Output = ();

    async fn run(&self, u: &mut Unit<'_>) -> Result<(), CommandError> {
        let c = &self.0;
        let stream = streams::article(&c.article);
        u.decide_unversioned::<Article>(&stream, c.clone())?;
        // The editor is told by e-mail (R15); the author's name goes sealed with the
        // author's key, and the IP not at all.
        let notification = outbox::sealed(
            Subject::comment(c.comment_id),
            Category::CommentAuthor,
            Outbound::CommentNotification {
                comment_id: c.comment_id,
                article: c.article.clone(),
                author: Some(c.comment.author.clone()),
                text: c.comment.text.clone(),
            },
        );
        crate::outbox::queue(u, &self.1, "email", notification).await?;
        Ok(())
    }
}

/// Opens a support ticket (R4): only the fields filled in are kept, 24 months.
pub async fn open_ticket(
    cx: &Context,
    inv: Invocation<'_>,
    request: SupportRequest,
) -> Result<Created<TicketId>, CommandError> {
    let ticket_id = TicketId(inv.new_id("ticket"));
    let work = Open(OpenTicket { ticket_id, request }, cx.processors.clone());
    let done = run_keyed(cx, inv, &work).await?;
    Ok(Created {
        id: ticket_id,
        position: done.position,
    })
}

struct Open(OpenTicket, Arc<Registry>);

#[async_trait::async_trait]
impl UseCase for Open {
    type Output = ();

    async fn run(&self, u: &mut Unit<'_>) -> Result<(), CommandError> {
        let t = &self.0;
        let stream = t.ticket_id.stream();
        let ticket = u.assume_new::<Ticket>(&stream).await?;
        u.decide(&stream, &ticket, t.clone())?;
        // Forwarded to the ticketing with the fields the visitor filled in (R4), sealed
        // with the ticket's key.
        let forward = outbox::sealed(
            Subject::ticket(t.ticket_id),
            Category::Support,
            Outbound::Ticket {
                ticket_id: t.ticket_id,
                request: t.request.clone(),
            },
        );
        crate::outbox::queue(u, &self.1, "ticketing", forward).await?;
        Ok(())
    }
}

/// Who viewed a page, for analytics (R3): the id the visitor's browser made, whether the
/// request carried `DNT: 1`, and the client's address.
#[derive(Clone, Debug)]
pub struct Viewer<'a> {
    pub visitor_id: VisitorId,
    pub do_not_track: bool,
    pub ip: &'a str,
}

/// Records a view of a widget's public page (R1, R2), queued to the batching recorder. With a
/// `viewer` who consented to analytics and sent no `DNT: 1`, the page view for analytics is
/// queued in the same append, its IP anonymized (R3).
pub async fn record_view(
    cx: &Context,
    hits: &HitRecorder,
    widget_id: WidgetId,
    access: AccessLog,
    viewer: Option<Viewer<'_>>,
) -> Result<(), CommandError> {
    let now = cx.clock.now();
    let message = match viewer.filter(|v| !v.do_not_track) {
        None => None,
        Some(v) => {
            let consent = crate::consent::current(cx, v.visitor_id).await?;
            match consent::page_view(&consent, v.visitor_id, widget_id, false, v.ip) {
                None => None,
                Some(content) => {
                    if let Some(category) = content.category() {
                        cx.processors.check("analytics", category)?;
                    }
                    let queued = outbox::Outbox.decide(
                        outbox::QueueMessage {
                            message_id: MessageId::new(),
                            processor: "analytics".into(),
                            content,
                        },
                        now,
                    );
                    let Ok(events) = queued;
                    events.into_iter().next()
                }
            }
        }
    };
    // Queued, not awaited (issue 23): the page answers now, the view is stored within
    // `recorder::FLUSH_WITHIN`.
    hits.queue(support::viewed(widget_id, access, now), message)
        .await?;
    Ok(())
}

/// Records a click in a widget (R1, R2), durable before the answer.
pub async fn record_click(
    cx: &Context,
    hits: &HitRecorder,
    widget_id: WidgetId,
    access: AccessLog,
) -> Result<(), StoreError> {
    hits.record(support::clicked(widget_id, access, cx.clock.now()))
        .await
        .map(|_| ())
}

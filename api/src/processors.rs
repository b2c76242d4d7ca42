//! The processors' HTTP APIs: the [`Sender`]s the outbox's dispatcher delivers through, each
//! a client of the real API's shape (API.md, Processors). Every request carries the message
//! id where the API has a place for it, so that the processor can tell a duplicate.
//!
//! Errors name a status or a kind of transport failure, never a URL, a body or a header: a
//! processor's answer may echo what it was sent.

use crate::settings::{
    AnalyticsSettings, CloudflareSettings, ProcessorSettings, SendGridSettings, ZendeskSettings,
};
use chrono::Duration;
use lightwidget_commands::outbox::{SendFailure, Sender};
use lightwidget_domain::event::Outbound;
use lightwidget_domain::MessageId;
use serde_json::json;
use std::collections::BTreeMap;
use std::sync::Arc;

/// A sender for each configured processor, by registry kind.
pub fn senders(settings: &ProcessorSettings) -> BTreeMap<String, Arc<dyn Sender>> {
    let mut out: BTreeMap<String, Arc<dyn Sender>> = BTreeMap::new();
    if let Some(s) = &settings.sendgrid {
        out.insert("email".into(), Arc::new(SendGrid::new(s.clone())));
    }
    if let Some(s) = &settings.zendesk {
        out.insert("ticketing".into(), Arc::new(Zendesk::new(s.clone())));
    }
    if let Some(s) = &settings.cloudflare {
        out.insert("cdn".into(), Arc::new(Cloudflare::new(s.clone())));
    }
    if let Some(s) = &settings.analytics {
        out.insert("analytics".into(), Arc::new(Analytics::new(s.clone())));
    }
    out
}

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(std::time::Duration::from_secs(10))
        .build()
        .unwrap_or_default()
}

/// The outcome of a request, as the outbox records it.
async fn answered(sent: Result<reqwest::Response, reqwest::Error>) -> Result<u16, SendFailure> {
    let response = sent.map_err(|e| SendFailure {
        error: transport(&e),
        retry_after: None,
        permanent: false,
    })?;
    let status = response.status();
    if status.is_success() {
        return Ok(status.as_u16());
    }
    let retry_after = response
        .headers()
        .get(reqwest::header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<i64>().ok())
        .filter(|s| *s >= 0)
        .map(Duration::seconds);
    let code = status.as_u16();
    Err(SendFailure {
        error: format!("HTTP {code}"),
        retry_after,
        // A request the processor refuses as it is will be refused again: no retry. A
        // timeout, a conflict, throttling and its own failures are worth another attempt.
        permanent: status.is_client_error() && !matches!(code, 408 | 409 | 425 | 429),
    })
}

/// The kind of a transport failure, without its URL.
fn transport(e: &reqwest::Error) -> String {
    let kind = if e.is_timeout() {
        "timeout"
    } else if e.is_connect() {
        "connection refused or unreachable"
    } else if e.is_body() || e.is_decode() {
        "bad response body"
    } else {
        "request failed"
    };
    format!("transport: {kind}")
}

/// SendGrid v3: `POST {url}/v3/mail/send` with a bearer key; the message id goes in
/// `custom_args`, which SendGrid hands back in its events.
pub struct SendGrid {
    settings: SendGridSettings,
    client: reqwest::Client,
}

impl SendGrid {
    pub fn new(settings: SendGridSettings) -> Self {
        SendGrid {
            settings,
            client: client(),
        }
    }

    /// Recipient, subject and text of a message, or `None` for a kind that is no e-mail.
    fn mail(&self, message: &Outbound) -> Option<(String, String, String)> {
        Some(match message {
            Outbound::CommentNotification {
                article,
                author,
                text,
                ..
            } => (
                self.settings.editor.clone(),
                format!("New comment on {article}"),
                format!(
                    "{} wrote on {article}:\n\n{text}",
                    author.as_deref().unwrap_or("Someone")
                ),
            ),
            Outbound::OrderConfirmation {
                order_id,
                to,
                name,
                amount_minor,
                currency,
            } => (
                to.clone(),
                "Your LightWidget order".into(),
                format!(
                    "Hello {name},\n\nthank you for your order {order_id} of {}.",
                    money(*amount_minor, currency)
                ),
            ),
            Outbound::Invoice {
                invoice_number,
                order_id,
                to,
                amount_minor,
                currency,
            } => (
                to.clone(),
                format!("Invoice {invoice_number}"),
                format!(
                    "Invoice {invoice_number} for order {order_id}: {} paid.",
                    money(*amount_minor, currency)
                ),
            ),
            Outbound::Ticket { .. } | Outbound::CdnPurge { .. } | Outbound::PageView { .. } => {
                return None
            }
        })
    }
}

fn money(minor: i64, currency: &str) -> String {
    format!("{}.{:02} {currency}", minor / 100, (minor % 100).abs())
}

#[async_trait::async_trait]
impl Sender for SendGrid {
    async fn send(&self, message_id: MessageId, message: &Outbound) -> Result<u16, SendFailure> {
        let Some((to, subject, text)) = self.mail(message) else {
            return Err(SendFailure::refused("not an e-mail"));
        };
        let body = json!({
            "personalizations": [{"to": [{"email": to}]}],
            "from": {"email": self.settings.from},
            "subject": subject,
            "content": [{"type": "text/plain", "value": text}],
            "custom_args": {"message_id": message_id.to_string()},
        });
        answered(
            self.client
                .post(format!("{}/v3/mail/send", self.settings.url))
                .bearer_auth(&self.settings.api_key)
                .json(&body)
                .send()
                .await,
        )
        .await
    }
}

/// Zendesk: `POST {url}/api/v2/tickets.json` with basic auth `{email}/token:{token}`; the
/// message id is the ticket's `external_id` and the request's `Idempotency-Key`.
pub struct Zendesk {
    settings: ZendeskSettings,
    client: reqwest::Client,
}

impl Zendesk {
    pub fn new(settings: ZendeskSettings) -> Self {
        Zendesk {
            settings,
            client: client(),
        }
    }
}

#[async_trait::async_trait]
impl Sender for Zendesk {
    async fn send(&self, message_id: MessageId, message: &Outbound) -> Result<u16, SendFailure> {
        let Outbound::Ticket { request, .. } = message else {
            return Err(SendFailure::refused("not a ticket"));
        };
        // Only the fields the visitor filled in (R4).
        let mut ticket = serde_json::Map::new();
        ticket.insert("external_id".into(), json!(message_id.to_string()));
        ticket.insert("requester".into(), json!({"email": request.email}));
        if let Some(subject) = &request.subject {
            ticket.insert("subject".into(), json!(subject));
        }
        if let Some(m) = &request.message {
            ticket.insert("comment".into(), json!({"body": m}));
        }
        answered(
            self.client
                .post(format!("{}/api/v2/tickets.json", self.settings.url))
                .basic_auth(
                    format!("{}/token", self.settings.email),
                    Some(&self.settings.token),
                )
                .header("Idempotency-Key", message_id.to_string())
                .json(&json!({ "ticket": ticket }))
                .send()
                .await,
        )
        .await
    }
}

/// Cloudflare: `POST {url}/client/v4/zones/{zone}/purge_cache` `{"files": [...]}` with a
/// bearer token. A purge is idempotent: the API has no place for an id, and a duplicate does
/// no harm.
pub struct Cloudflare {
    settings: CloudflareSettings,
    client: reqwest::Client,
}

impl Cloudflare {
    pub fn new(settings: CloudflareSettings) -> Self {
        Cloudflare {
            settings,
            client: client(),
        }
    }
}

#[async_trait::async_trait]
impl Sender for Cloudflare {
    async fn send(&self, _message_id: MessageId, message: &Outbound) -> Result<u16, SendFailure> {
        let Outbound::CdnPurge { widget_id } = message else {
            return Err(SendFailure::refused("not a CDN purge"));
        };
        let page = format!("{}/w/{widget_id}", self.settings.public_url);
        answered(
            self.client
                .post(format!(
                    "{}/client/v4/zones/{}/purge_cache",
                    self.settings.url, self.settings.zone
                ))
                .bearer_auth(&self.settings.token)
                .json(&json!({ "files": [page] }))
                .send()
                .await,
        )
        .await
    }
}

/// Google Analytics 4's Measurement Protocol: `POST {url}/mp/collect?measurement_id=&
/// api_secret=` with the visitor's browser-made id as `client_id`, the anonymized address as
/// `ip_override`, and the message id as the event's `lw_message_id` parameter.
pub struct Analytics {
    settings: AnalyticsSettings,
    client: reqwest::Client,
}

impl Analytics {
    pub fn new(settings: AnalyticsSettings) -> Self {
        Analytics {
            settings,
            client: client(),
        }
    }
}

#[async_trait::async_trait]
impl Sender for Analytics {
    async fn send(&self, message_id: MessageId, message: &Outbound) -> Result<u16, SendFailure> {
        let Outbound::PageView {
            widget_id,
            client_id,
            ip,
        } = message
        else {
            return Err(SendFailure::refused("not a page view"));
        };
        let body = json!({
            "client_id": client_id.to_string(),
            "ip_override": ip,
            "events": [{
                "name": "page_view",
                "params": {
                    "page_location": format!("{}/w/{widget_id}", self.settings.public_url),
                    "engagement_time_msec": 1,
                    "lw_message_id": message_id.to_string(),
                },
            }],
        });
        answered(
            self.client
                .post(format!("{}/mp/collect", self.settings.url))
                .query(&[
                    ("measurement_id", self.settings.measurement_id.as_str()),
                    ("api_secret", self.settings.api_secret.as_str()),
                ])
                .json(&body)
                .send()
                .await,
        )
        .await
    }
}

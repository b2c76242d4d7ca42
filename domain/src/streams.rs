//! Every stream name of the log, in one place. A stream is `<kind>-<id>`; the kinds are the
//! ones below and nothing else invents a name. The id types' `stream()` methods call these.

use crate::{AccountId, Subject, WidgetId};
use std::fmt::Display;

/// The stream of one thing: `<kind>-<id>` (account, widget, preview, order, hold, staff,
/// comment, ticket: the typed ids' own streams).
pub fn of(kind: &str, id: impl Display) -> String {
    format!("{kind}-{id}")
}

/// The stream of a calendar year's invoices; its version orders the invoice numbers.
pub fn invoices(year: i32) -> String {
    of("invoices", year)
}

/// The stream that records a subject's erasures.
pub fn retention(subject: &Subject) -> String {
    of("retention", subject)
}

/// The stream of an issued token, named by the token's hash.
pub fn token(token_hash: &str) -> String {
    of("token", token_hash)
}

/// The stream linking an Instagram identity (its keyed hash) to accounts, latest last.
pub fn instagram_identity(identity: &str) -> String {
    of("instagram", identity)
}

/// The stream of a widget's Instagram media fetches.
pub fn media(widget: WidgetId) -> String {
    of("media", widget)
}

/// The stream of an article's comments.
pub fn article(slug: &str) -> String {
    of("article", slug)
}

/// The stream recording staff reads of an account's personal data (R22).
pub fn account_access(account: AccountId) -> String {
    of("access", account)
}

/// The stream recording one idempotency key (named by the key's hash).
pub fn idempotency(key_hash: &str) -> String {
    of("idempotency", key_hash)
}

/// The stream recording auditors' revealing reads of the log (R22).
pub const AUDIT_READS: &str = "audit-reads";

/// The stream of the privacy policy's versions (R25).
pub const PRIVACY_POLICIES: &str = "privacy-policies";

/// The stream views and clicks are recorded on.
pub const HITS: &str = "hits";

/// The stream that holds a subject's personal data, for the kinds whose data lives on one
/// stream of their own (`account:<id>`, `widget:<id>`, `preview:<id>`, `order:<id>`,
/// `ticket:<id>`, `visitor:<id>`, `media:<widget>:<time>`); `None` for other subjects.
pub fn of_subject(subject: &str) -> Option<String> {
    let (kind, id) = subject.split_once(':')?;
    match kind {
        "account" | "widget" | "preview" | "order" | "ticket" | "visitor" => Some(of(kind, id)),
        "media" => Some(of("media", id.split_once(':')?.0)),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_kind_dash_id() {
        let w = WidgetId(uuid::Uuid::from_u128(7));
        assert_eq!(media(w), format!("media-{}", w.0));
        assert_eq!(w.stream(), format!("widget-{}", w.0));
        assert_eq!(invoices(2026), "invoices-2026");
        assert_eq!(
            of_subject(&format!("media:{}:2026-01-01T00:00:00Z", w.0)),
            Some(media(w))
        );
        assert_eq!(of_subject("ticket:1").as_deref(), Some("ticket-1"));
        assert_eq!(of_subject("comment:1"), None);
        assert_eq!(of_subject("nocolon"), None);
    }
}

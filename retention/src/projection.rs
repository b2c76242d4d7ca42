//! The retention projection: one item per (subject, category) that holds personal data,
//! with the rule that applies, the date it falls due, its state and the holds on it, and a
//! sentence that explains all of that to compliance staff.
//!
//! Two kinds of documents live in the `retention` view:
//!
//! * `item:<subject>|<category>` — the facts of one item (its own clock, its deletion
//!   request, its invoice, …) and what follows from them: `state`, `due_at`, `holds`,
//!   `explanation`. Indexed by owner (the account), state, and due date — the due date only
//!   while the item may actually be purged, so that the sweeper reads exactly the due items
//!   through the due-date index: a held or purged item is not in it.
//! * `account:<id>` — the facts that reach every item of an account: its deletion request,
//!   its block and security hold (R24), its legal holds (R21), and how many pages list its
//!   items. An event that changes these re-evaluates every item of the account.
//! * `items:<account>:<n>` — the keys of an account's items, at most [`ITEMS_PER_PAGE`] a
//!   page: a new item is added to the last page, so the cost of listing it does not grow
//!   with the account (an account gets two items per widget and one per widget and day with
//!   views).
//!
//! The projection is a pure function of the log and the retention policy: a changed policy
//! file needs a rebuild of this view to move due dates already computed.

use crate::policy::RetentionPolicy;
use chrono::{DateTime, Timelike, Utc};
use lightwidget_domain::event::CommentAuthor;
use lightwidget_domain::{AccountId, Category, DomainEvent, HoldId, Subject, WidgetId};
use lightwidget_projections::{Overlay, Projection, ViewReader};
use lightwidget_store::{format_time, RecordedEvent, ViewDoc};
use serde::{Deserialize, Serialize};
use std::sync::Arc;

pub const VIEW: &str = "retention";

/// The key of an item document.
pub fn item_key(subject: &Subject, category: Category) -> String {
    format!("item:{subject}|{category}")
}

/// The key of an account document.
pub fn account_key(account: AccountId) -> String {
    format!("account:{account}")
}

/// Item keys per page of an account's item list. Every new item rewrites the last page, so
/// a page is kept short: with 1,000 keys a page, creating widgets spent most of the
/// retention runner's time decoding and encoding page lists (a profile of
/// `POST /v1/widgets` under load).
pub const ITEMS_PER_PAGE: usize = 100;

/// The key of page `n` of an account's item list.
pub fn items_page_key(account: AccountId, n: u32) -> String {
    format!("items:{account}:{n}")
}

/// A clock that started: when, and the position of the event that started it (the purge's
/// causation).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Started {
    pub at: DateTime<Utc>,
    pub position: u64,
    /// The earliest the data may go whatever the policy says (a quarantine's end as the
    /// event promised it to the user).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub not_before: Option<DateTime<Utc>>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Invoice {
    pub number: String,
    pub year: i32,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HoldRef {
    pub hold_id: String,
    pub case_ref: String,
    pub placed_at: DateTime<Utc>,
}

/// The facts of one item, as the log tells them.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ItemFacts {
    pub subject_id: Subject,
    pub category: Category,
    pub account_id: Option<AccountId>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub widget_id: Option<WidgetId>,
    pub since: DateTime<Utc>,
    /// The item's own clock (preview created, last view, invoice issued, block).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub own_clock: Option<Started>,
    /// A deletion request of the item itself (a widget).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deletion: Option<Started>,
    /// Whether the account's deletion (or block) starts this item's clock.
    pub follows_account: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub invoice: Option<Invoice>,
    /// A widget's access-log subjects: they go with the widget (R18).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub access_logs: Vec<Subject>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub purged: Option<Purged>,
    /// Archived under a legal hold past its date (R21): served to compliance only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub archived: Option<Archived>,
}

/// When an item was archived under a legal hold, and by which event.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Archived {
    pub at: DateTime<Utc>,
    pub holds: Vec<String>,
    pub position: u64,
}

impl ItemFacts {
    /// An item of no account that goes by its own clock alone, started at `at` by the event
    /// at `position` (what benchmarks and tests seed).
    pub fn on_own_clock(
        subject: Subject,
        category: Category,
        at: DateTime<Utc>,
        position: u64,
    ) -> Self {
        ItemFacts {
            subject_id: subject,
            category,
            account_id: None,
            widget_id: None,
            since: at,
            own_clock: Some(Started {
                at,
                position,
                not_before: None,
            }),
            deletion: None,
            follows_account: false,
            invoice: None,
            access_logs: vec![],
            purged: None,
            archived: None,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Purged {
    pub at: DateTime<Utc>,
    pub rule: String,
    pub position: u64,
}

/// The facts of an account that reach all its items.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccountFacts {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deletion: Option<Started>,
    /// Set while the account is blocked: its deletion clock runs from the block (R24).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub blocked: Option<Started>,
    /// The latest block's hold date; it stays after an unblock.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub security_until: Option<(DateTime<Utc>, DateTime<Utc>)>,
    #[serde(default)]
    pub holds: Vec<HoldRef>,
    /// Item keys listed on the account document itself, as documents written before the
    /// list moved to pages have them: still read, never added to.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub items: Vec<String>,
    /// How many `items:<account>:<n>` pages list the account's items.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub item_pages: u32,
    /// Reads of the account's data by security staff (R22).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub reads: Vec<AccessRecord>,
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

/// An item's document (`item:<subject>|<category>`): its facts, what they mean under the
/// policy, and the holds that keep it. `due_at` is RFC 3339 text as stored.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ItemDoc {
    pub subject_id: Subject,
    pub account_id: Option<AccountId>,
    pub category: Category,
    pub rule: String,
    pub due_at: Option<String>,
    pub state: String,
    pub holds: Vec<HoldRef>,
    pub explanation: String,
    pub cause_position: Option<u64>,
    pub facts: ItemFacts,
}

/// Whether a document of the retention view is an item.
pub fn is_item(doc: &ViewDoc) -> bool {
    doc.key.starts_with("item:")
}

/// A hold's document (`hold:<id>`): which account it is on, for its release by id.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HoldDoc {
    pub account_id: AccountId,
}

/// The key of a hold's document.
pub fn hold_key(hold: HoldId) -> String {
    format!("hold:{hold}")
}

/// A security staff read of the account (R22): who, when, where in the log.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccessRecord {
    pub staff_id: String,
    pub read_at: DateTime<Utc>,
    pub position: u64,
}

/// What the facts mean now: the state (`due` is a matter of the reader's clock and is not
/// stored), the due date, the position of the cause, and the explanation.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Verdict {
    pub state: String,
    pub due_at: Option<DateTime<Utc>>,
    pub cause_position: Option<u64>,
    pub rule: String,
    pub explanation: String,
}

/// A day or an instant, as people read it: a due date at midnight is "kept until" the day
/// before; any other instant is shown to the minute.
fn kept_until(due: DateTime<Utc>) -> String {
    if due.num_seconds_from_midnight() == 0 && due.nanosecond() == 0 {
        (due.date_naive() - chrono::Days::new(1)).to_string()
    } else {
        due.format("%Y-%m-%d %H:%M UTC").to_string()
    }
}

fn day(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%d").to_string()
}

/// Evaluates an item against its account and the policy.
pub fn evaluate(
    item: &ItemFacts,
    account: Option<&AccountFacts>,
    policy: &RetentionPolicy,
) -> Verdict {
    let rule = policy.rule(item.category);
    if let Some(p) = &item.purged {
        return Verdict {
            state: "purged".into(),
            due_at: None,
            cause_position: None,
            rule: p.rule.clone(),
            explanation: format!("erased on {} under rule {}", day(p.at), p.rule),
        };
    }
    // The earliest running clock decides.
    let Some(clock) = clocks(item, account, policy)
        .into_iter()
        .min_by_key(|c| c.due)
    else {
        return with_holds(unclocked(item, rule), account);
    };
    let Clock {
        mut due,
        cause_position,
        mut why,
        quarantine,
    } = clock;
    if let Some((blocked_at, until)) = account.and_then(|a| a.security_until) {
        if until > due {
            due = until;
            why = format!(
                "{why}; the account was blocked on {}, so it is kept at least to the end of the security hold (R24)",
                day(blocked_at)
            );
        }
    }
    let mut v = with_holds(
        Verdict {
            state: if quarantine { "quarantined" } else { "active" }.into(),
            due_at: Some(due),
            cause_position: Some(cause_position),
            rule: rule.name(),
            explanation: format!("kept until {}: {why}", kept_until(due)),
        },
        account,
    );
    if let (Some(a), "held") = (&item.archived, v.state.as_str()) {
        v.explanation = format!(
            "{}; archived on {} past its date, read only by compliance under the hold (R21)",
            v.explanation,
            day(a.at)
        );
    }
    v
}

/// A clock that runs for an item: when it makes the item due, the event that started it,
/// why, and whether it is a quarantine (restorable until then).
#[derive(Clone, Debug, PartialEq, Eq)]
struct Clock {
    due: DateTime<Utc>,
    cause_position: u64,
    why: String,
    quarantine: bool,
}

/// Every clock that runs for an item: its own, its widget's deletion, and (for items that
/// follow their account) the account's deletion or block.
fn clocks(
    item: &ItemFacts,
    account: Option<&AccountFacts>,
    policy: &RetentionPolicy,
) -> Vec<Clock> {
    let rule = policy.rule(item.category);
    // An order never invoiced has no accounting reason to stay: it goes with the profile.
    let account_rule = match item.category {
        Category::Billing => policy.rule(Category::Profile),
        _ => rule,
    };
    let due_by = |r: &crate::Rule, s: &Started| {
        let due = r.due_at(s.at);
        s.not_before.map_or(due, |nb| due.max(nb))
    };
    let mut clocks = Vec::new();
    if let Some(s) = &item.own_clock {
        clocks.push(Clock {
            due: due_by(rule, s),
            cause_position: s.position,
            why: own_clock_reason(item, rule, s),
            quarantine: false,
        });
    }
    if let Some(s) = &item.deletion {
        clocks.push(Clock {
            due: due_by(rule, s),
            cause_position: s.position,
            why: format!(
                "widget deleted on {}, {} quarantine (R18, R20)",
                day(s.at),
                rule.keep
            ),
            quarantine: true,
        });
    }
    let account = account.filter(|_| item.follows_account);
    if let Some(s) = account.and_then(|a| a.deletion.as_ref()) {
        clocks.push(Clock {
            due: due_by(account_rule, s),
            cause_position: s.position,
            why: format!(
                "account deletion requested on {}, {} quarantine (R20)",
                day(s.at),
                rule.keep
            ),
            quarantine: true,
        });
    }
    if let Some(s) = account.and_then(|a| a.blocked.as_ref()) {
        clocks.push(Clock {
            due: due_by(account_rule, s),
            cause_position: s.position,
            why: format!(
                "account blocked on {}: its data goes as if deletion was requested then (R24)",
                day(s.at)
            ),
            quarantine: true,
        });
    }
    clocks
}

/// Why an item's own clock runs, as people read it.
fn own_clock_reason(item: &ItemFacts, rule: &crate::Rule, s: &Started) -> String {
    match item.category {
        Category::Preview => format!(
            "preview created {}, {} (R8)",
            s.at.format("%Y-%m-%d %H:%M UTC"),
            rule.keep
        ),
        Category::AccessLog => format!(
            "last view or click recorded {}, {} (R1)",
            day(s.at),
            rule.keep
        ),
        Category::Billing => match &item.invoice {
            Some(i) => format!("invoice {} of {}, accounting law (R19)", i.number, i.year),
            None => "accounting law (R19)".into(),
        },
        Category::Security => format!(
            "evidence of the block of {}, kept {} (R24)",
            day(s.at),
            rule.keep
        ),
        Category::MediaCache => format!(
            "Instagram media fetched {}, cached at most {} (R7)",
            s.at.format("%Y-%m-%d %H:%M UTC"),
            rule.keep
        ),
        Category::CommentIp => format!(
            "the IP of a comment posted {}, kept {} for abuse prevention (R6)",
            day(s.at),
            rule.keep
        ),
        Category::Support => format!(
            "support ticket opened {}, kept {} (R4)",
            day(s.at),
            rule.keep
        ),
        Category::CommentAuthor => format!(
            "the author's name of a comment posted {}, kept {}; the text stays (R6)",
            day(s.at),
            rule.keep
        ),
        Category::Consent => format!(
            "the visitor's last statement of consent {}, kept {} (R3)",
            day(s.at),
            rule.keep
        ),
        other => format!("{other} recorded {}, {}", day(s.at), rule.keep),
    }
}

/// An item no clock runs for: kept while what it belongs to exists.
fn unclocked(item: &ItemFacts, rule: &crate::Rule) -> Verdict {
    let what = match item.category {
        Category::Profile if item.subject_id.as_str().starts_with("staff:") => {
            "kept while the staff member is on staff"
        }
        Category::Profile => "kept while the account exists (R20)",
        Category::WidgetContent | Category::Statistics => "kept while the widget exists (R9)",
        Category::Billing => "kept while the order is open and the account exists",
        _ => "kept while it is in use",
    };
    Verdict {
        state: "active".into(),
        due_at: None,
        cause_position: None,
        rule: rule.name(),
        explanation: what.into(),
    }
}

fn with_holds(mut v: Verdict, account: Option<&AccountFacts>) -> Verdict {
    let holds = account.map(|a| a.holds.as_slice()).unwrap_or_default();
    if holds.is_empty() {
        return v;
    }
    let named: Vec<String> = holds
        .iter()
        .map(|h| format!("legal hold {}, case {}", h.hold_id, h.case_ref))
        .collect();
    v.state = "held".into();
    v.explanation = format!(
        "held by {} (R21); otherwise {}",
        named.join(" and "),
        v.explanation
    );
    v
}

/// The retention projection over a policy.
pub struct Retention {
    policy: Arc<RetentionPolicy>,
}

impl Retention {
    pub fn new(policy: Arc<RetentionPolicy>) -> Self {
        Retention { policy }
    }
}

/// The item keys an event concerns directly (before references are followed), and the
/// account it names, if it names one.
/// The item documents an event reaches directly (an access-log event: its bucket first,
/// then the widget's content item), and the account it names, if any.
struct Reach {
    keys: Vec<String>,
    account: Option<AccountId>,
}

fn direct(d: &DomainEvent) -> Reach {
    use DomainEvent as E;
    let widget_items = |w: WidgetId| {
        vec![
            item_key(&Subject::widget(w), Category::WidgetContent),
            item_key(&Subject::widget(w), Category::Statistics),
        ]
    };
    let (keys, account) = match d {
        E::AccountRegistered(e) => (
            vec![item_key(&Subject::account(e.account_id), Category::Profile)],
            Some(e.account_id),
        ),
        E::AccountBlocked(e) => (
            vec![item_key(
                &Subject::account(e.account_id),
                Category::Security,
            )],
            Some(e.account_id),
        ),
        E::AccountDeletionRequested(e) => (vec![], Some(e.account_id)),
        E::AccountRestored(e) => (vec![], Some(e.account_id)),
        E::AccountUnblocked(e) => (vec![], Some(e.account_id)),
        E::AccountPurged(e) => (vec![], Some(e.account_id)),
        E::AccountDataRead(e) => (vec![], Some(e.account_id)),
        E::LegalHoldPlaced(e) => (vec![], Some(e.account_id)),
        E::LegalHoldReleased(e) => (vec![], Some(e.account_id)),
        E::PreviewCreated(e) => (
            vec![item_key(&Subject::preview(e.preview_id), Category::Preview)],
            Some(e.account_id),
        ),
        E::WidgetCreated(e) => (widget_items(e.widget_id), Some(e.account_id)),
        E::WidgetDeletionRequested(e) => (widget_items(e.widget_id), Some(e.account_id)),
        E::WidgetRestored(e) => (widget_items(e.widget_id), None),
        E::WidgetPurged(e) => (widget_items(e.widget_id), None),
        E::WidgetViewed(e) => (
            vec![
                item_key(e.access.subject(), Category::AccessLog),
                item_key(&Subject::widget(e.widget_id), Category::WidgetContent),
            ],
            None,
        ),
        E::WidgetClicked(e) => (
            vec![
                item_key(e.access.subject(), Category::AccessLog),
                item_key(&Subject::widget(e.widget_id), Category::WidgetContent),
            ],
            None,
        ),
        E::OrderPlaced(e) => (
            vec![item_key(e.billing.subject(), Category::Billing)],
            Some(e.account_id),
        ),
        E::InvoiceIssued(e) => (
            vec![item_key(e.billing.subject(), Category::Billing)],
            Some(e.account_id),
        ),
        E::StaffAdded(e) => (vec![item_key(e.name.subject(), Category::Profile)], None),
        E::CommentPosted(e) => {
            let mut keys = vec![item_key(e.ip.subject(), Category::CommentIp)];
            if let CommentAuthor::Sealed(author) = &e.author {
                keys.push(item_key(author.subject(), Category::CommentAuthor));
            }
            (keys, None)
        }
        E::ConsentStated(e) => (vec![item_key(e.choice.subject(), Category::Consent)], None),
        E::MediaCached(e) => (
            vec![
                item_key(e.media.subject(), Category::MediaCache),
                item_key(&Subject::widget(e.widget_id), Category::WidgetContent),
            ],
            None,
        ),
        E::TicketOpened(e) => (vec![item_key(e.request.subject(), Category::Support)], None),
        E::PersonalDataErased(e) => (vec![item_key(&e.subject, e.category)], e.account_id),
        E::PersonalDataArchived(e) => (vec![item_key(&e.subject, e.category)], e.account_id),
        _ => (vec![], None),
    };
    Reach { keys, account }
}

fn is_account_wide(d: &DomainEvent) -> bool {
    use DomainEvent as E;
    matches!(
        d,
        E::AccountDeletionRequested(_)
            | E::AccountRestored(_)
            | E::AccountBlocked(_)
            | E::AccountUnblocked(_)
            | E::AccountPurged(_)
            | E::LegalHoldPlaced(_)
            | E::LegalHoldReleased(_)
    )
}

fn read_item(view: &dyn ViewReader, key: &str) -> Option<ItemFacts> {
    view.get(key)
        .and_then(|d| ItemFacts::deserialize(&d.doc["facts"]).ok())
}

/// The account of an item, read from its document without decoding the rest of it (a
/// runner asks this for every view and click, in every round of its reads).
fn account_of(view: &dyn ViewReader, key: &str) -> Option<AccountId> {
    view.get(key)?.doc["facts"]["account_id"]
        .as_str()?
        .parse()
        .ok()
}

fn read_account(view: &dyn ViewReader, id: AccountId) -> Option<AccountFacts> {
    view.get(&account_key(id))
        .and_then(|d| AccountFacts::deserialize(&d.doc).ok())
}

/// The keys listed on page `n` of an account's item list, if that page is loaded.
fn read_page(view: &dyn ViewReader, account: AccountId, n: u32) -> Option<Vec<String>> {
    view.get(&items_page_key(account, n))
        .and_then(|d| Vec::<String>::deserialize(&d.doc["items"]).ok())
}

/// Every item key of an account: the pages loaded and the list of older documents.
fn all_items(view: &dyn ViewReader, account: AccountId, a: &AccountFacts) -> Vec<String> {
    let mut keys = a.items.clone();
    for n in 0..a.item_pages {
        keys.extend(read_page(view, account, n).unwrap_or_default());
    }
    keys
}

impl Retention {
    fn put_item(
        &self,
        view: &mut Overlay,
        key: &str,
        item: &ItemFacts,
        account: Option<&AccountFacts>,
    ) {
        view.put(self.item_doc(key, item, account));
    }

    /// The document of an item: its facts, what they mean under the policy, and the index
    /// fields (owner = the account; the due date only while the item may be purged).
    pub fn item_doc(&self, key: &str, item: &ItemFacts, account: Option<&AccountFacts>) -> ViewDoc {
        let v = evaluate(item, account, &self.policy);
        let holds: Vec<HoldRef> = match (&item.purged, account) {
            (None, Some(a)) => a.holds.clone(),
            _ => vec![],
        };
        let doc = ItemDoc {
            subject_id: item.subject_id.clone(),
            account_id: item.account_id,
            category: item.category,
            rule: v.rule,
            due_at: v.due_at.map(format_time),
            state: v.state.clone(),
            holds,
            explanation: v.explanation,
            cause_position: v.cause_position,
            facts: item.clone(),
        };
        let doc = serde_json::to_value(&doc).unwrap_or_default();
        let mut out = ViewDoc::new(key, doc).state(v.state.clone());
        if let Some(a) = item.account_id {
            out = out.owner(a.to_string());
        }
        // Only what may be purged is in the due-date index.
        if let (Some(due), "active" | "quarantined") = (v.due_at, v.state.as_str()) {
            out = out.due_at(due);
        }
        out
    }

    /// Adds item keys to the last page of the account's list, opening pages as they fill.
    /// A last page that is not loaded is never overwritten: a new page is opened instead.
    /// The keys are pushed onto the page's document in place: a page is not decoded and
    /// encoded again for each key (a batch of widget creations adds to one page many times).
    fn list_items(view: &mut Overlay, id: AccountId, a: &mut AccountFacts, keys: Vec<String>) {
        let mut n = match a.item_pages.checked_sub(1) {
            Some(last) if Self::page_room(view, id, last).is_some() => last,
            Some(last) => {
                Self::put_page(view, id, last + 1, &[]);
                last + 1
            }
            None => {
                Self::put_page(view, id, 0, &[]);
                0
            }
        };
        for k in keys {
            if Self::page_room(view, id, n) == Some(0) {
                n += 1;
                Self::put_page(view, id, n, &[]);
            }
            let page = view
                .get_mut(&items_page_key(id, n))
                .and_then(|d| d.doc.get_mut("items"))
                .and_then(|items| items.as_array_mut());
            if let Some(items) = page {
                items.push(serde_json::Value::String(k));
            }
        }
        a.item_pages = n + 1;
    }

    /// How many more keys page `n` takes, if it is loaded and well formed.
    fn page_room(view: &Overlay, id: AccountId, n: u32) -> Option<usize> {
        let items = view
            .get(&items_page_key(id, n))?
            .doc
            .get("items")?
            .as_array()?;
        Some(ITEMS_PER_PAGE.saturating_sub(items.len()))
    }

    fn put_page(view: &mut Overlay, id: AccountId, n: u32, keys: &[String]) {
        view.put(ViewDoc::new(
            items_page_key(id, n),
            serde_json::json!({ "account_id": id, "items": keys }),
        ));
    }

    fn put_account(view: &mut Overlay, id: AccountId, a: &AccountFacts) {
        let doc = serde_json::to_value(a).unwrap_or_default();
        view.put(ViewDoc::new(account_key(id), doc));
    }
}

/// An account's facts as an event found and left them.
struct AccountChange {
    id: Option<AccountId>,
    before: Option<AccountFacts>,
    after: Option<AccountFacts>,
}

/// What one event's handling works with: the event and the account it concerns.
struct EventCx<'a> {
    e: &'a RecordedEvent,
    account_id: Option<AccountId>,
}

impl EventCx<'_> {
    /// A clock started by this event.
    fn started(&self, at: DateTime<Utc>, not_before: Option<DateTime<Utc>>) -> Started {
        Started {
            at,
            position: self.e.position,
            not_before,
        }
    }

    /// An item this event creates.
    fn new_item(
        &self,
        subject: &Subject,
        category: Category,
        widget_id: Option<WidgetId>,
        own_clock: Option<Started>,
        follows_account: bool,
    ) -> ItemFacts {
        ItemFacts {
            subject_id: subject.clone(),
            category,
            account_id: self.account_id,
            widget_id,
            since: self.e.recorded_at,
            own_clock,
            deletion: None,
            follows_account,
            invoice: None,
            access_logs: vec![],
            purged: None,
            archived: None,
        }
    }

    /// What the event changes in the facts that reach every item of the account.
    fn change_account(&self, d: &DomainEvent, a: &mut AccountFacts) {
        use DomainEvent as E;
        match d {
            E::AccountBlocked(b) => {
                a.blocked = Some(self.started(b.blocked_at, Some(b.hold_until)));
                a.security_until = Some((b.blocked_at, b.hold_until));
            }
            E::AccountUnblocked(_) => a.blocked = None,
            E::AccountDeletionRequested(r) => {
                a.deletion = Some(self.started(r.requested_at, Some(r.quarantine_until)));
            }
            E::AccountRestored(_) => a.deletion = None,
            E::AccountDataRead(r) => a.reads.push(AccessRecord {
                staff_id: r.read_by.to_string(),
                read_at: r.read_at,
                position: self.e.position,
            }),
            E::LegalHoldPlaced(h) => a.holds.push(HoldRef {
                hold_id: h.hold_id.to_string(),
                case_ref: h.case_ref.clone(),
                placed_at: h.placed_at,
            }),
            E::LegalHoldReleased(h) => {
                let id = h.hold_id.to_string();
                a.holds.retain(|x| x.hold_id != id);
            }
            _ => {}
        }
    }

    /// The items the event changes, as they end up; `None` when it changes nothing (an
    /// event the view does not handle, an entry for an erased access-log bucket).
    fn items(
        &self,
        d: &DomainEvent,
        keys: &[String],
        view: &dyn ViewReader,
    ) -> Option<Vec<(String, ItemFacts)>> {
        use DomainEvent as E;
        match d {
            E::AccountUnblocked(_)
            | E::AccountDeletionRequested(_)
            | E::AccountRestored(_)
            | E::AccountPurged(_)
            | E::AccountDataRead(_)
            | E::LegalHoldPlaced(_)
            | E::LegalHoldReleased(_)
            | E::WidgetPurged(_) => Some(vec![]),
            E::WidgetCreated(_) | E::WidgetDeletionRequested(_) | E::WidgetRestored(_) => {
                Some(self.widget_items(d, keys, view))
            }
            E::WidgetViewed(_) | E::WidgetClicked(_) => {
                let [bucket, widget] = keys else {
                    return None;
                };
                self.hit_items(d, bucket, widget, view)
            }
            // The IP and the author's name: two items on the same clock (R6).
            E::CommentPosted(c) => Some(
                keys.iter()
                    .zip([Category::CommentIp, Category::CommentAuthor])
                    .map(|(key, category)| {
                        let clock = Some(self.started(c.posted_at, None));
                        let item = self.new_item(c.ip.subject(), category, None, clock, false);
                        (key.clone(), item)
                    })
                    .collect(),
            ),
            _ => {
                let key = keys.first()?;
                Some(vec![(key.clone(), self.own_item(d, key, view)?)])
            }
        }
    }

    /// The one item of an event that reaches one (a profile, a block's evidence, a preview,
    /// an order's billing, media, a comment's IP, a ticket, a staff member, an erasure).
    fn own_item(&self, d: &DomainEvent, key: &str, view: &dyn ViewReader) -> Option<ItemFacts> {
        use DomainEvent as E;
        let on_own_clock = |subject: &Subject, category, widget, at| {
            self.new_item(
                subject,
                category,
                widget,
                Some(self.started(at, None)),
                false,
            )
        };
        Some(match d {
            E::AccountRegistered(r) => {
                let s = Subject::account(r.account_id);
                self.new_item(&s, Category::Profile, None, None, true)
            }
            E::AccountBlocked(b) => {
                let clock = self.started(b.blocked_at, Some(b.hold_until));
                match read_item(view, key) {
                    Some(mut i) => {
                        i.own_clock = Some(clock);
                        i.purged = None;
                        i
                    }
                    None => {
                        let s = Subject::account(b.account_id);
                        self.new_item(&s, Category::Security, None, Some(clock), false)
                    }
                }
            }
            E::PreviewCreated(p) => {
                let s = Subject::preview(p.preview_id);
                on_own_clock(&s, Category::Preview, None, p.created_at)
            }
            E::OrderPlaced(o) => {
                let s = o.billing.subject();
                self.new_item(s, Category::Billing, Some(o.widget_id), None, true)
            }
            E::InvoiceIssued(i) => {
                let mut item = read_item(view, key).unwrap_or_else(|| {
                    let s = i.billing.subject();
                    self.new_item(s, Category::Billing, Some(i.widget_id), None, true)
                });
                item.own_clock = Some(self.started(i.issued_at, None));
                item.follows_account = false;
                item.invoice = Some(Invoice {
                    number: i.invoice_number.clone(),
                    year: i.year,
                });
                item
            }
            E::MediaCached(m) => on_own_clock(
                m.media.subject(),
                Category::MediaCache,
                Some(m.widget_id),
                m.fetched_at,
            ),
            // Each statement restarts the clock of the visitor's consent record (R3); a
            // statement after an erasure starts a new record.
            E::ConsentStated(c) => {
                let clock = self.started(c.stated_at, None);
                match read_item(view, key) {
                    Some(mut i) if i.purged.is_none() => {
                        i.own_clock = Some(clock);
                        i
                    }
                    _ => self.new_item(
                        c.choice.subject(),
                        Category::Consent,
                        None,
                        Some(clock),
                        false,
                    ),
                }
            }
            E::TicketOpened(t) => {
                on_own_clock(t.request.subject(), Category::Support, None, t.opened_at)
            }
            E::StaffAdded(s) => {
                self.new_item(s.name.subject(), Category::Profile, None, None, false)
            }
            E::PersonalDataArchived(p) => {
                let mut item = read_item(view, key)?;
                item.archived = Some(Archived {
                    at: p.archived_at,
                    holds: p.holds.iter().map(ToString::to_string).collect(),
                    position: self.e.position,
                });
                item
            }
            E::PersonalDataErased(p) => {
                let mut item = read_item(view, key)
                    .unwrap_or_else(|| self.new_item(&p.subject, p.category, None, None, false));
                item.purged = Some(Purged {
                    at: p.erased_at,
                    rule: p.rule.clone(),
                    position: self.e.position,
                });
                item
            }
            _ => return None,
        })
    }

    /// A widget's content and statistics items: created, or their deletion clock started or
    /// stopped.
    fn widget_items(
        &self,
        d: &DomainEvent,
        keys: &[String],
        view: &dyn ViewReader,
    ) -> Vec<(String, ItemFacts)> {
        use DomainEvent as E;
        match d {
            E::WidgetCreated(w) => {
                let s = Subject::widget(w.widget_id);
                keys.iter()
                    .zip([Category::WidgetContent, Category::Statistics])
                    .map(|(k, c)| {
                        (
                            k.clone(),
                            self.new_item(&s, c, Some(w.widget_id), None, true),
                        )
                    })
                    .collect()
            }
            E::WidgetDeletionRequested(w) => {
                let clock = self.started(w.requested_at, Some(w.quarantine_until));
                self.existing(keys, view, |i| i.deletion = Some(clock.clone()))
            }
            E::WidgetRestored(_) => self.existing(keys, view, |i| i.deletion = None),
            _ => vec![],
        }
    }

    /// The items of `keys` that exist, changed by `change`.
    fn existing(
        &self,
        keys: &[String],
        view: &dyn ViewReader,
        change: impl Fn(&mut ItemFacts),
    ) -> Vec<(String, ItemFacts)> {
        keys.iter()
            .filter_map(|k| {
                let mut i = read_item(view, k)?;
                change(&mut i);
                Some((k.clone(), i))
            })
            .collect()
    }

    /// A view or click: its access-log bucket gets the entry's date (a new bucket is listed
    /// on the widget's content item); `None` for a bucket already erased, whose key is gone.
    fn hit_items(
        &self,
        d: &DomainEvent,
        bucket_key: &str,
        widget_key: &str,
        view: &dyn ViewReader,
    ) -> Option<Vec<(String, ItemFacts)>> {
        use DomainEvent as E;
        let (subject, widget_id, at) = match d {
            E::WidgetViewed(v) => (v.access.subject(), v.widget_id, v.viewed_at),
            E::WidgetClicked(c) => (c.access.subject(), c.widget_id, c.clicked_at),
            _ => return None,
        };
        let clock = self.started(at, None);
        let mut items = Vec::new();
        let bucket = match read_item(view, bucket_key) {
            Some(i) if i.purged.is_some() => return None,
            Some(mut i) => {
                if i.own_clock.as_ref().is_none_or(|c| c.at <= at) {
                    i.own_clock = Some(clock);
                }
                i
            }
            None => {
                if let Some(mut w) = read_item(view, widget_key) {
                    if !w.access_logs.contains(subject) {
                        w.access_logs.push(subject.clone());
                        items.push((widget_key.to_owned(), w));
                    }
                }
                let widget = Some(widget_id);
                self.new_item(subject, Category::AccessLog, widget, Some(clock), false)
            }
        };
        items.push((bucket_key.to_owned(), bucket));
        Some(items)
    }
}

impl Projection for Retention {
    fn name(&self) -> &'static str {
        VIEW
    }

    fn event_types(&self) -> Option<&'static [&'static str]> {
        Some(&[
            "AccountRegistered",
            "AccountDeletionRequested",
            "AccountRestored",
            "AccountBlocked",
            "AccountUnblocked",
            "AccountPurged",
            "AccountDataRead",
            "LegalHoldPlaced",
            "LegalHoldReleased",
            "PreviewCreated",
            "WidgetCreated",
            "WidgetDeletionRequested",
            "WidgetRestored",
            "WidgetPurged",
            "WidgetViewed",
            "WidgetClicked",
            "HitsRecorded",
            "OrderPlaced",
            "InvoiceIssued",
            "StaffAdded",
            "CommentPosted",
            "ConsentStated",
            "TicketOpened",
            "MediaCached",
            "PersonalDataErased",
            "PersonalDataArchived",
        ])
    }

    fn needs_personal_data(&self) -> bool {
        false
    }

    /// Views and clicks move access-log buckets' dates; letting them gather makes one
    /// document write per bucket per batch. Nothing waits on this view but the sweeper,
    /// which catches it up itself.
    fn linger(&self) -> std::time::Duration {
        std::time::Duration::from_millis(100)
    }

    fn reads(&self, e: &RecordedEvent, d: &DomainEvent, loaded: &dyn ViewReader) -> Vec<String> {
        let DomainEvent::HitsRecorded(_) = d else {
            return self.reads_one(e, d, loaded);
        };
        // Each view and click as if it came alone; hits in one bucket (its subject names the
        // widget and the month) read the same documents, so the first of each stands for all.
        let mut seen = std::collections::HashSet::new();
        let mut keys: Vec<String> = hits_of(d)
            .filter(|h| seen.insert(h.subject()))
            .flat_map(|h| self.reads_one(e, &h.single(), loaded))
            .collect();
        keys.sort_unstable();
        keys.dedup();
        keys
    }

    fn handle(&self, e: &RecordedEvent, d: &DomainEvent, view: &mut Overlay) {
        match d {
            DomainEvent::HitsRecorded(h) => {
                h.singles().for_each(|one| self.handle_one(e, &one, view))
            }
            _ => self.handle_one(e, d, view),
        }
    }

    /// Runs of views and clicks are folded per access-log bucket: see [`Retention::handle_hits`].
    fn handle_batch(&self, events: &[RecordedEvent], domain: &[DomainEvent], view: &mut Overlay) {
        let mut i = 0;
        while i < domain.len() {
            let run = domain[i..].iter().take_while(|d| is_hit(d)).count();
            if run == 0 {
                self.handle(&events[i], &domain[i], view);
                i += 1;
            } else {
                self.handle_hits(&events[i..i + run], &domain[i..i + run], view);
                i += run;
            }
        }
    }
}

/// A hit and the index of its event in a run.
type HitIn<'a> = (usize, Hit<'a>);

/// A view or a click, borrowed from the event that holds it.
#[derive(Clone, Copy)]
enum Hit<'a> {
    View(&'a lightwidget_domain::event::WidgetViewed),
    Click(&'a lightwidget_domain::event::WidgetClicked),
}

impl<'a> Hit<'a> {
    fn subject(self) -> &'a Subject {
        match self {
            Hit::View(v) => v.access.subject(),
            Hit::Click(c) => c.access.subject(),
        }
    }

    fn at(self) -> DateTime<Utc> {
        match self {
            Hit::View(v) => v.viewed_at,
            Hit::Click(c) => c.clicked_at,
        }
    }

    /// The hit as the event it stands for alone.
    fn single(self) -> DomainEvent {
        match self {
            Hit::View(v) => DomainEvent::WidgetViewed(v.clone()),
            Hit::Click(c) => DomainEvent::WidgetClicked(c.clone()),
        }
    }
}

/// Whether the event holds only views and clicks (any number, none included).
fn is_hit(d: &DomainEvent) -> bool {
    matches!(
        d,
        DomainEvent::WidgetViewed(_) | DomainEvent::WidgetClicked(_) | DomainEvent::HitsRecorded(_)
    )
}

/// The views and clicks an event holds, in the order `handle` applies them (a
/// `HitsRecorded`'s views, then its clicks); none for any other event.
fn hits_of(d: &DomainEvent) -> Box<dyn Iterator<Item = Hit<'_>> + '_> {
    match d {
        DomainEvent::WidgetViewed(v) => Box::new(std::iter::once(Hit::View(v))),
        DomainEvent::WidgetClicked(c) => Box::new(std::iter::once(Hit::Click(c))),
        DomainEvent::HitsRecorded(h) => Box::new(
            h.views
                .iter()
                .map(Hit::View)
                .chain(h.clicks.iter().map(Hit::Click)),
        ),
        _ => Box::new(std::iter::empty()),
    }
}

impl Retention {
    fn reads_one(
        &self,
        _e: &RecordedEvent,
        d: &DomainEvent,
        loaded: &dyn ViewReader,
    ) -> Vec<String> {
        let Reach { mut keys, account } = direct(d);
        // The account is named by the event, or by the item it concerns.
        let account = account.or_else(|| keys.iter().find_map(|k| account_of(loaded, k)));
        if let Some(a) = account {
            if is_account_wide(d) {
                if let Some(facts) = read_account(loaded, a) {
                    // Every page, then (next round) every item they list.
                    keys.extend((0..facts.item_pages).map(|n| items_page_key(a, n)));
                    keys.extend(all_items(loaded, a, &facts));
                }
            } else if keys.iter().any(|k| loaded.get(k).is_none()) {
                // An item this event may create is listed on the last page (the count of
                // pages read alone: the rest of the account's facts is not needed here).
                if let Some(account_doc) = loaded.get(&account_key(a)) {
                    let pages = account_doc.doc["item_pages"].as_u64().unwrap_or(0) as u32;
                    keys.push(items_page_key(a, pages.saturating_sub(1)));
                }
            }
            keys.push(account_key(a));
        }
        keys
    }

    /// A run of consecutive events that hold only views and clicks, applied as one at a time
    /// would leave the documents, with two hits per access-log bucket instead of all of them.
    ///
    /// One at a time, a hit into a bucket that does not exist yet creates it (dated by that
    /// hit and its event, listed on the widget's item and the account's item pages); every
    /// later hit whose time is not before the bucket's clock moves the clock to itself; a
    /// bucket already erased takes nothing. So a bucket ends up as its first hit of the run
    /// made it, then moved by the last of the run's hits at the latest time (a later one at
    /// the same time replaces an earlier one). Hits change no account, and a bucket's
    /// document reads nothing but its own facts and its account; so the first hits are
    /// applied in log order (buckets are created and listed in the same order), then each
    /// bucket's latest hit.
    fn handle_hits(&self, events: &[RecordedEvent], domain: &[DomainEvent], view: &mut Overlay) {
        // Per bucket, in the order of their first hits: (event, first hit, latest hit).
        let mut buckets: Vec<(usize, Hit<'_>, Option<HitIn<'_>>)> = Vec::new();
        let mut index: std::collections::HashMap<&Subject, usize> =
            std::collections::HashMap::new();
        for (n, d) in domain.iter().enumerate() {
            for hit in hits_of(d) {
                match index.get(hit.subject()) {
                    None => {
                        index.insert(hit.subject(), buckets.len());
                        buckets.push((n, hit, None));
                    }
                    Some(&b) => {
                        let (_, first, latest) = &mut buckets[b];
                        let at_latest = latest.map_or(first.at(), |(_, l)| l.at());
                        if hit.at() >= at_latest {
                            *latest = Some((n, hit));
                        }
                    }
                }
            }
        }
        for (n, first, _) in &buckets {
            self.handle_one(&events[*n], &first.single(), view);
        }
        for (n, latest) in buckets.iter().filter_map(|(_, _, l)| l.as_ref()) {
            self.handle_one(&events[*n], &latest.single(), view);
        }
    }

    /// One event's changes; a `HitsRecorded` comes here one view or click at a time.
    fn handle_one(&self, e: &RecordedEvent, d: &DomainEvent, view: &mut Overlay) {
        let Reach { keys, account } = direct(d);
        let account_id = account.or_else(|| keys.iter().find_map(|k| account_of(view, k)));
        let account_before = account_id.and_then(|a| read_account(view, a));
        let mut account = account_id.map(|_| account_before.clone().unwrap_or_default());
        let cx = EventCx { e, account_id };
        if let DomainEvent::LegalHoldPlaced(h) = d {
            // Which account a hold is on, for its release by id.
            let hold = HoldDoc {
                account_id: h.account_id,
            };
            view.put(ViewDoc::new(
                hold_key(h.hold_id),
                serde_json::to_value(&hold).unwrap_or_default(),
            ));
        }
        if let Some(a) = account.as_mut() {
            cx.change_account(d, a);
        }
        // The items this event changes, as they end up; `None`: nothing to write.
        let Some(items) = cx.items(d, &keys, view) else {
            return;
        };
        let account = AccountChange {
            id: account_id,
            before: account_before,
            after: account,
        };
        self.write_back(view, d, account, items);
    }

    /// Lists new items on the account's pages, writes the account when it changed, and
    /// writes the items (every item of the account, for an event that reaches them all).
    fn write_back(
        &self,
        view: &mut Overlay,
        d: &DomainEvent,
        account: AccountChange,
        items: Vec<(String, ItemFacts)>,
    ) {
        let AccountChange {
            id: account_id,
            before: account_before,
            after: mut account,
        } = account;
        if let (Some(id), Some(a)) = (account_id, account.as_mut()) {
            // An item without a document yet is new: list it (items are never deleted).
            let new: Vec<String> = items
                .iter()
                .map(|(k, _)| k)
                .filter(|k| view.get(k).is_none() && !a.items.contains(k))
                .cloned()
                .collect();
            if !new.is_empty() {
                Self::list_items(view, id, a, new);
            }
            if account_before.as_ref() != Some(a) {
                Self::put_account(view, id, a);
            }
        }
        let account = account.as_ref();
        if let (true, Some(id), Some(a)) = (is_account_wide(d), account_id, account) {
            for k in all_items(view, id, a) {
                if items.iter().any(|(x, _)| *x == k) {
                    continue;
                }
                if let Some(i) = read_item(view, &k) {
                    self.put_item(view, &k, &i, account);
                }
            }
        }
        for (k, i) in &items {
            self.put_item(view, k, i, account);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{Duration, TimeZone};
    use lightwidget_domain::event::AccessLog;

    fn t0() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 3, 10, 9, 0, 0)
            .single()
            .expect("valid")
    }
    fn account() -> AccountId {
        AccountId(uuid::Uuid::from_u128(7))
    }
    fn item(category: Category, subject: Subject) -> ItemFacts {
        ItemFacts {
            subject_id: subject,
            category,
            account_id: Some(account()),
            widget_id: None,
            since: t0(),
            own_clock: None,
            deletion: None,
            follows_account: false,
            invoice: None,
            access_logs: vec![],
            purged: None,
            archived: None,
        }
    }
    fn started(at: DateTime<Utc>, position: u64) -> Started {
        Started {
            at,
            position,
            not_before: None,
        }
    }

    /// A stored event at `position`, recorded at `at`, for the projection alone.
    fn recorded(position: u64, at: DateTime<Utc>, d: &DomainEvent) -> RecordedEvent {
        RecordedEvent {
            position,
            stream: format!("s-{position}"),
            version: 1,
            event_id: uuid::Uuid::from_u128(position as u128),
            event_type: d.event_type().to_owned(),
            schema_version: 1,
            recorded_at: at,
            actor: "test".into(),
            correlation_id: uuid::Uuid::from_u128(1),
            causation_id: None,
            data: serde_json::Value::Null,
            prev_hash: [0; 32],
            hash: [0; 32],
        }
    }

    fn access(w: WidgetId, at: DateTime<Utc>) -> lightwidget_domain::Personal<AccessLog> {
        lightwidget_domain::Personal::new(
            Subject::access_log(w, at),
            Category::AccessLog,
            AccessLog {
                ip: "198.51.100.7".into(),
                user_agent: None,
                browser: None,
                os: None,
                device_id: None,
                referrer: None,
            },
        )
    }

    /// Folding runs of hits per bucket (`handle_batch`) leaves every document exactly as
    /// applying each event alone (`handle`) does: over buckets new and old, several months,
    /// times out of order and tied, single hits beside batches, a bucket erased in the middle
    /// of a run, a legal hold between runs, and a widget the view knows nothing of; in one
    /// batch and in batches of several sizes.
    #[test]
    fn folded_hits_leave_the_documents_as_hits_one_at_a_time() {
        use lightwidget_domain::event::*;
        use lightwidget_domain::{HoldId, StaffId};
        let a = account();
        let widgets: Vec<WidgetId> = (1..=4)
            .map(|i| WidgetId(uuid::Uuid::from_u128(100 + i)))
            .collect();
        let mut history: Vec<DomainEvent> = vec![lightwidget_testkit::bench::account_registered(
            a,
            "fold",
            t0(),
        )];
        // The last widget is never created: its buckets have no account.
        for w in &widgets[..3] {
            history.push(lightwidget_testkit::bench::widget_created(a, *w, t0()));
        }
        // Whole days over two months: the same bucket and the same time (ties) come again,
        // and times go back and forth.
        let mut seed = 7u64;
        let mut next = |n: u64| {
            seed = seed
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            (seed >> 33) % n
        };
        let view = |next: &mut dyn FnMut(u64) -> u64| {
            let w = widgets[next(4) as usize];
            let at = t0() + Duration::days(next(60) as i64);
            WidgetViewed {
                widget_id: w,
                access: access(w, at),
                viewed_at: at,
            }
        };
        let click = |next: &mut dyn FnMut(u64) -> u64| {
            let v = view(next);
            WidgetClicked {
                widget_id: v.widget_id,
                access: v.access,
                clicked_at: v.viewed_at,
            }
        };
        let mut erased = None;
        for round in 0..60 {
            let event: DomainEvent = match next(5) {
                0 => view(&mut next).into(),
                1 => click(&mut next).into(),
                _ => HitsRecorded {
                    views: (0..next(12)).map(|_| view(&mut next)).collect(),
                    clicks: (0..next(4)).map(|_| click(&mut next)).collect(),
                }
                .into(),
            };
            if round == 25 {
                // Erase the bucket of the first hit so far: later hits into it change nothing.
                let subject = hits_of(&event)
                    .next()
                    .map(|h| h.subject().clone())
                    .unwrap_or_else(|| Subject::access_log(widgets[0], t0()));
                erased = Some(subject.clone());
                history.push(
                    PersonalDataErased {
                        subject,
                        category: Category::AccessLog,
                        account_id: Some(a),
                        rule: "access_log:12 months".into(),
                        due_at: t0(),
                        erased_at: t0(),
                    }
                    .into(),
                );
            }
            if round == 40 {
                history.push(
                    LegalHoldPlaced {
                        hold_id: HoldId(uuid::Uuid::from_u128(9)),
                        account_id: a,
                        reason: "court order".into(),
                        case_ref: "KR-1".into(),
                        placed_by: StaffId(uuid::Uuid::from_u128(8)),
                        placed_at: t0(),
                    }
                    .into(),
                );
            }
            history.push(event);
        }
        let events: Vec<RecordedEvent> = history
            .iter()
            .enumerate()
            .map(|(n, d)| recorded(n as u64 + 1, t0() + Duration::seconds(n as i64), d))
            .collect();
        let retention = Retention::new(Arc::new(RetentionPolicy::defaults()));

        let mut alone = Overlay::default();
        for (e, d) in events.iter().zip(&history) {
            retention.handle(e, d, &mut alone);
        }
        let alone = alone.into_docs();
        let buckets = alone
            .values()
            .filter(|d| d.doc["category"] == "access_log")
            .count();
        assert!(buckets >= 8, "the history makes many buckets ({buckets})");
        let erased_key = item_key(&erased.expect("a bucket erased"), Category::AccessLog);
        assert_eq!(alone[&erased_key].doc["state"], "purged");

        for size in [1, 3, 7, events.len()] {
            let mut folded = Overlay::default();
            for (e, d) in events.chunks(size).zip(history.chunks(size)) {
                retention.handle_batch(e, d, &mut folded);
            }
            let folded = folded.into_docs();
            assert_eq!(folded.len(), alone.len(), "batches of {size}");
            for (key, doc) in &alone {
                assert_eq!(folded.get(key), Some(doc), "{key} in batches of {size}");
            }
        }
    }

    #[test]
    fn an_invoice_keeps_billing_to_the_end_of_the_fifth_year() {
        let mut i = item(Category::Billing, Subject::new("order", "o1"));
        i.own_clock = Some(started(t0(), 12));
        i.invoice = Some(Invoice {
            number: "FV/2026/000003".into(),
            year: 2026,
        });
        let v = evaluate(&i, None, &RetentionPolicy::defaults());
        assert_eq!(v.state, "active");
        assert_eq!(v.due_at, Utc.with_ymd_and_hms(2032, 1, 1, 0, 0, 0).single());
        assert_eq!(v.cause_position, Some(12));
        assert_eq!(
            v.explanation,
            "kept until 2031-12-31: invoice FV/2026/000003 of 2026, accounting law (R19)"
        );
    }

    #[test]
    fn an_order_never_invoiced_goes_with_the_profile() {
        let mut i = item(Category::Billing, Subject::new("order", "o2"));
        i.follows_account = true;
        let policy = RetentionPolicy::defaults();
        assert_eq!(evaluate(&i, None, &policy).due_at, None);
        let a = AccountFacts {
            deletion: Some(started(t0(), 3)),
            ..Default::default()
        };
        let v = evaluate(&i, Some(&a), &policy);
        assert_eq!(
            (v.state.as_str(), v.due_at),
            ("quarantined", Some(t0() + Duration::days(90)))
        );
        assert_eq!(v.rule, "billing:5 years");
    }

    #[test]
    fn a_block_holds_everything_at_least_to_its_end() {
        let mut i = item(Category::Profile, Subject::account(account()));
        i.follows_account = true;
        let until = t0() + Duration::days(365);
        let a = AccountFacts {
            deletion: Some(started(t0(), 3)),
            security_until: Some((t0(), until)),
            ..Default::default()
        };
        let v = evaluate(&i, Some(&a), &RetentionPolicy::defaults());
        assert_eq!(v.due_at, Some(until));
        assert!(v.explanation.contains("(R24)"), "{}", v.explanation);
        // A preview of a blocked account waits as well.
        let mut p = item(Category::Preview, Subject::new("preview", "p"));
        p.own_clock = Some(started(t0(), 4));
        assert_eq!(
            evaluate(&p, Some(&a), &RetentionPolicy::defaults()).due_at,
            Some(until)
        );
        assert_eq!(
            evaluate(&p, None, &RetentionPolicy::defaults()).due_at,
            Some(t0() + Duration::minutes(15))
        );
    }

    #[test]
    fn a_legal_hold_names_itself_and_keeps_the_date() {
        let mut i = item(Category::WidgetContent, Subject::new("widget", "w"));
        i.deletion = Some(started(t0(), 5));
        let a = AccountFacts {
            holds: vec![HoldRef {
                hold_id: "7f3".into(),
                case_ref: "KR-2026-17".into(),
                placed_at: t0(),
            }],
            ..Default::default()
        };
        let v = evaluate(&i, Some(&a), &RetentionPolicy::defaults());
        assert_eq!(v.state, "held");
        assert_eq!(v.due_at, Some(t0() + Duration::days(90)));
        assert!(
            v.explanation
                .starts_with("held by legal hold 7f3, case KR-2026-17 (R21); otherwise kept until 2026-06-08 09:00 UTC: widget deleted on 2026-03-10"),
            "{}",
            v.explanation
        );
    }

    #[test]
    fn a_purged_item_says_when_and_why() {
        let mut i = item(Category::Preview, Subject::new("preview", "p"));
        i.purged = Some(Purged {
            at: t0(),
            rule: "preview:15 minutes".into(),
            position: 9,
        });
        let v = evaluate(&i, None, &RetentionPolicy::defaults());
        assert_eq!(v.state, "purged");
        assert_eq!(v.due_at, None);
        assert_eq!(
            v.explanation,
            "erased on 2026-03-10 under rule preview:15 minutes"
        );
    }
}

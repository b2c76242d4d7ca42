//! Every event the system records, with its payload type and schema version.
//!
//! The set of events and the version of each is declared once, in the `events!` list below;
//! `lightwidget-schemas` generates `schemas/events/<Type>.v<N>.json` from the same list and
//! fails its test when a payload's shape changes without a new version.

use crate::personal::{Category, Personal, Subject};
use crate::{
    AccountId, BreachId, CommentId, HoldId, MessageId, OrderId, PreviewId, StaffId, TicketId,
    VisitorId, WidgetId,
};
use chrono::{DateTime, NaiveDate, Utc};
use serde::{Deserialize, Serialize};

macro_rules! schema_derive {
    ($($item:item)*) => {
        $(
            #[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
            #[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
            #[serde(deny_unknown_fields)]
            $item
        )*
    };
}

// ----- value types used inside payloads -----

/// What Instagram tells us about the user at sign-in. The e-mail address and password of the
/// Instagram account are deliberately absent (R5): there is no field to put them in.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct InstagramProfile {
    pub instagram_user_id: String,
    pub username: String,
    pub profile_picture_url: Option<String>,
    pub account_type: String,
}

/// What a visitor stated about analytics (R3): allowed or not, and whether the request
/// carried `DNT: 1` (which makes it a refusal).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct ConsentChoice {
    pub analytics: bool,
    pub do_not_track: bool,
}

/// A comment's author name: sealed personal data of the commenter since version 2 of
/// `CommentPosted`; comments of version 1 hold it in clear.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(untagged)]
pub enum CommentAuthor {
    Sealed(Personal<String>),
    /// Written before the author was sealed (version 1); no key erases it.
    Clear(String),
}

impl CommentAuthor {
    /// The name, or `None` once erased.
    pub fn name(&self) -> Option<&str> {
        match self {
            CommentAuthor::Sealed(p) => p.value().map(String::as_str),
            CommentAuthor::Clear(s) => Some(s),
        }
    }
}

/// What a processor receives (R4, R14, R15), by kind.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum Outbound {
    /// A support ticket, with the fields the visitor filled in (R4), to the ticketing.
    Ticket {
        ticket_id: TicketId,
        request: SupportRequest,
    },
    /// A new comment, to the editor by e-mail (R15).
    CommentNotification {
        comment_id: CommentId,
        article: String,
        author: Option<String>,
        text: String,
    },
    /// The confirmation of an order, to its billing e-mail (R15).
    OrderConfirmation {
        order_id: OrderId,
        to: String,
        name: String,
        amount_minor: i64,
        currency: String,
    },
    /// An invoice, to the order's billing e-mail (R15).
    Invoice {
        invoice_number: String,
        order_id: OrderId,
        to: String,
        amount_minor: i64,
        currency: String,
    },
    /// A `pro` widget's page changed or went out of service: purge it from the CDN (R14).
    CdnPurge { widget_id: WidgetId },
    /// A view of a widget's page by a visitor who consented, without `DNT: 1`, to
    /// analytics; `ip` already anonymized (R3).
    PageView {
        widget_id: WidgetId,
        client_id: VisitorId,
        ip: String,
    },
}

/// A message's content: sealed with the personal data it carries (erased with it), or open
/// when it carries none.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(untagged)]
pub enum MessageContent {
    Sealed(Personal<Outbound>),
    Open(Outbound),
}

/// How a widget lays out its photos.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "snake_case")]
pub enum Layout {
    Grid,
    Slider,
    Masonry,
    List,
}

impl Layout {
    /// The name clients send and see.
    pub fn as_str(self) -> &'static str {
        match self {
            Layout::Grid => "grid",
            Layout::Slider => "slider",
            Layout::Masonry => "masonry",
            Layout::List => "list",
        }
    }
}

/// The settings a user gives a widget or preview.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct WidgetSettings {
    pub title: String,
    pub layout: Layout,
    pub columns: u8,
}

/// A widget's plan.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "snake_case")]
pub enum Plan {
    #[default]
    Free,
    Pro,
}

impl Plan {
    /// The name clients see.
    pub fn as_str(self) -> &'static str {
        match self {
            Plan::Free => "free",
            Plan::Pro => "pro",
        }
    }
}

/// Why a widget entered quarantine.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "snake_case")]
pub enum DeletionCause {
    /// The owner deleted the widget (R18).
    Owner,
    /// The owner deleted the whole account (R20).
    AccountDeletion,
}

/// The order form of R10. Card numbers and PayPal logins have no field here (R11).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct BillingDetails {
    pub name: String,
    pub address: String,
    pub email: String,
    pub vat_id: Option<String>,
    pub country: String,
}

/// What a view or click of a widget records for abuse prevention (R1). Personal data of
/// category `access_log`, kept 12 months.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct AccessLog {
    pub ip: String,
    pub user_agent: Option<String>,
    pub browser: Option<String>,
    pub os: Option<String>,
    pub device_id: Option<String>,
    pub referrer: Option<String>,
}

/// What a visitor wrote into the support form (R4): only the fields filled in are kept.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct SupportRequest {
    pub email: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

/// One post of the owner's Instagram media, as a widget shows it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct MediaItem {
    pub id: String,
    /// The image (for a video, the video itself: its still is `thumbnail_url`).
    pub media_url: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub caption: Option<String>,
    /// The post on Instagram (v4).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub permalink: Option<String>,
    /// An image, a video or a carousel (v4; absent: an image).
    #[serde(default, skip_serializing_if = "MediaKind::is_image")]
    pub kind: MediaKind,
    /// A video's still image (v4).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub thumbnail_url: Option<String>,
    /// The image's size in pixels, when the source tells it (v4).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub width: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub height: Option<u32>,
}

impl MediaItem {
    /// What a page shows of the post: the image, or a video's still.
    pub fn image_url(&self) -> &str {
        match (self.kind, &self.thumbnail_url) {
            (MediaKind::Video, Some(t)) => t,
            _ => &self.media_url,
        }
    }
}

/// What an Instagram post is.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "snake_case")]
pub enum MediaKind {
    #[default]
    Image,
    Video,
    Carousel,
}

impl MediaKind {
    pub fn is_image(&self) -> bool {
        *self == MediaKind::Image
    }
}

/// The role an API token carries (API.md, Conventions). An admin holds every staff role.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "snake_case")]
pub enum Role {
    Owner,
    Security,
    Compliance,
    Auditor,
    Admin,
}

impl Role {
    /// Whether a holder of this role may act as `needed`.
    pub fn grants(self, needed: Role) -> bool {
        self == needed || (self == Role::Admin && needed != Role::Owner)
    }
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Owner => "owner",
            Role::Security => "security",
            Role::Compliance => "compliance",
            Role::Auditor => "auditor",
            Role::Admin => "admin",
        }
    }
}

/// Whom an API token speaks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum Principal {
    Owner { account_id: AccountId },
    Staff { staff_id: StaffId },
}

// ----- payloads -----

schema_derive! {
    /// First Instagram sign-in: the OAuth code exchange succeeded (R5).
    pub struct AccountRegistered {
        pub account_id: AccountId,
        pub profile: Personal<InstagramProfile>,
        pub registered_at: DateTime<Utc>,
    }

    /// A sign-in. The access token is a credential (category `credentials`, under the
    /// profile's key: erased with the profile, never shown); up to version 2 it was labelled
    /// `profile` (withheld all the same, see `lightwidget_schemas::withheld_fields`).
    pub struct AccountSignedIn {
        pub account_id: AccountId,
        pub access_token: Personal<String>,
        pub signed_in_at: DateTime<Utc>,
    }

    /// The owner asked to delete the account: 90 days of quarantine begin (R20).
    pub struct AccountDeletionRequested {
        pub account_id: AccountId,
        pub requested_at: DateTime<Utc>,
        pub quarantine_until: DateTime<Utc>,
    }

    pub struct AccountRestored {
        pub account_id: AccountId,
        pub restored_at: DateTime<Utc>,
    }

    /// Security staff blocked the account (R17, R24); its data is kept at least to `hold_until`.
    pub struct AccountBlocked {
        pub account_id: AccountId,
        pub blocked_by: StaffId,
        pub reason: Personal<String>,
        pub blocked_at: DateTime<Utc>,
        pub hold_until: DateTime<Utc>,
    }

    pub struct AccountUnblocked {
        pub account_id: AccountId,
        pub unblocked_by: StaffId,
        pub unblocked_at: DateTime<Utc>,
    }

    /// The account's quarantine ended and its profile was erased: it is a tombstone now.
    pub struct AccountPurged {
        pub account_id: AccountId,
        pub purged_at: DateTime<Utc>,
    }

    /// A preview, gone 15 minutes later (R8).
    pub struct PreviewCreated {
        pub preview_id: PreviewId,
        pub account_id: AccountId,
        pub settings: Personal<WidgetSettings>,
        pub created_at: DateTime<Utc>,
        pub expires_at: DateTime<Utc>,
    }

    pub struct WidgetCreated {
        pub widget_id: WidgetId,
        pub account_id: AccountId,
        pub settings: Personal<WidgetSettings>,
        pub created_at: DateTime<Utc>,
    }

    pub struct WidgetUpdated {
        pub widget_id: WidgetId,
        pub settings: Personal<WidgetSettings>,
        pub updated_at: DateTime<Utc>,
    }

    /// A paid order upgraded the widget (R10, R14).
    pub struct WidgetUpgraded {
        pub widget_id: WidgetId,
        pub order_id: OrderId,
        pub plan: Plan,
        pub upgraded_at: DateTime<Utc>,
    }

    /// The widget entered its 90-day quarantine (R18, R20).
    pub struct WidgetDeletionRequested {
        pub widget_id: WidgetId,
        pub account_id: AccountId,
        pub cause: DeletionCause,
        pub requested_at: DateTime<Utc>,
        pub quarantine_until: DateTime<Utc>,
    }

    pub struct WidgetRestored {
        pub widget_id: WidgetId,
        pub restored_at: DateTime<Utc>,
    }

    /// The widget's quarantine ended; its content and statistics are gone.
    pub struct WidgetPurged {
        pub widget_id: WidgetId,
        pub purged_at: DateTime<Utc>,
    }

    /// A view of a widget's public page (R1, R2).
    pub struct WidgetViewed {
        pub widget_id: WidgetId,
        pub access: Personal<AccessLog>,
        pub viewed_at: DateTime<Utc>,
    }

    /// A click in a widget (R1, R2).
    pub struct WidgetClicked {
        pub widget_id: WidgetId,
        pub access: Personal<AccessLog>,
        pub clicked_at: DateTime<Utc>,
    }

    /// Views and clicks stored together by the hit recorder (R1, R2): everything that
    /// queued while the previous append was on its way, as one event. Each view and click
    /// is whole, its access log sealed under its own widget-and-month key as it would be
    /// alone; the event adds nothing but the grouping.
    pub struct HitsRecorded {
        pub views: Vec<WidgetViewed>,
        pub clicks: Vec<WidgetClicked>,
    }

    /// A command carried an idempotency key: a repeat with the same key and the same
    /// request (`fingerprint`) answers with this command's result and appends nothing.
    pub struct CommandRecorded {
        pub key_hash: String,
        pub fingerprint: String,
        pub stream: String,
        pub events: u32,
        pub version: u64,
    }

    /// An upgrade order with its billing form (R10).
    pub struct OrderPlaced {
        pub order_id: OrderId,
        pub widget_id: WidgetId,
        pub account_id: AccountId,
        pub plan: Plan,
        pub amount_minor: i64,
        pub currency: String,
        pub billing: Personal<BillingDetails>,
        pub placed_at: DateTime<Utc>,
    }

    /// PayPal confirmed the payment; only its transaction id is kept (R11).
    pub struct OrderPaid {
        pub order_id: OrderId,
        pub transaction_id: Personal<String>,
        pub amount_minor: i64,
        pub currency: String,
        pub paid_at: DateTime<Utc>,
    }

    /// An invoice with a gapless number of its year (R10), kept to `retain_until` (R19).
    pub struct InvoiceIssued {
        pub invoice_number: String,
        pub year: i32,
        pub sequence: u32,
        pub order_id: OrderId,
        pub widget_id: WidgetId,
        pub account_id: AccountId,
        pub amount_minor: i64,
        pub currency: String,
        pub billing: Personal<BillingDetails>,
        pub issued_at: DateTime<Utc>,
        pub retain_until: NaiveDate,
    }

    /// Compliance staff placed a legal hold on an account (R21, R24).
    pub struct LegalHoldPlaced {
        pub hold_id: HoldId,
        pub account_id: AccountId,
        pub reason: String,
        pub case_ref: String,
        pub placed_by: StaffId,
        pub placed_at: DateTime<Utc>,
    }

    pub struct LegalHoldReleased {
        pub hold_id: HoldId,
        pub account_id: AccountId,
        pub released_by: StaffId,
        pub released_at: DateTime<Utc>,
    }

    /// The first sign-in of an Instagram user reserved that identity for the new account, on
    /// the stream `instagram-<identity>` (appended only if the stream is new, in the same
    /// append as the registration: two first sign-ins at once make one account). `identity`
    /// is an HMAC of the Instagram user id under a key derived from the master key.
    pub struct InstagramIdentityLinked {
        pub identity: String,
        pub account_id: AccountId,
        pub linked_at: DateTime<Utc>,
    }

    /// An API token was issued, on the stream `token-<token_hash>`. Only the token's
    /// SHA-256 is kept; the token itself is shown once, to whoever it was issued to.
    pub struct TokenIssued {
        pub token_hash: String,
        pub principal: Principal,
        pub role: Role,
        pub issued_at: DateTime<Utc>,
    }

    /// A staff member with a role (added by an admin, or the first admin at first start).
    pub struct StaffAdded {
        pub staff_id: StaffId,
        pub name: Personal<String>,
        pub role: Role,
        pub added_by: Option<StaffId>,
        pub added_at: DateTime<Utc>,
    }

    /// The owner who asked for their account's deletion was given an erasure receipt's URL,
    /// on the account's stream, in the deletion's append. Only the SHA-256 (hex) of the URL's
    /// random token is kept; the receipt becomes servable once a signed checkpoint covers the
    /// account's `AccountPurged`.
    pub struct ErasureReceiptRequested {
        pub account_id: AccountId,
        pub token_hash: String,
        pub requested_at: DateTime<Utc>,
    }

    /// A token was revoked by its holder signing out (`DELETE /v1/auth/session`), on its
    /// stream `token-<token_hash>`: it answers 401 from then on.
    pub struct TokenRevoked {
        pub token_hash: String,
        pub revoked_at: DateTime<Utc>,
    }

    /// An admin removed a staff member: every token of theirs answers 401 from then on, and
    /// none is issued to them again. On `staff-<id>`.
    pub struct StaffRemoved {
        pub staff_id: StaffId,
        pub removed_by: StaffId,
        pub removed_at: DateTime<Utc>,
    }

    /// A staff member's tokens were replaced (`POST /v1/admin/token`, or a new
    /// `LW_ADMIN_TOKEN` at start, `rotated_by: None`): every token of theirs issued before
    /// this event answers 401 from then on. The new token's `TokenIssued` follows it in the
    /// same append. On `staff-<id>`.
    pub struct StaffTokensRotated {
        pub staff_id: StaffId,
        pub rotated_by: Option<StaffId>,
        pub rotated_at: DateTime<Utc>,
    }

    /// Security staff read an account's profile and login history (R22), on the stream
    /// `access-<account>`. The stated reason is sealed with the account's profile and goes
    /// with it; that the read happened, by whom and when, stays.
    pub struct AccountDataRead {
        pub account_id: AccountId,
        pub read_by: StaffId,
        pub reason: Personal<String>,
        pub read_at: DateTime<Utc>,
    }

    /// An auditor asked to see the personal data of the log or of a replayed read model
    /// opened (`reveal=true`), on the stream `audit-reads`, before the answer (R22): who, why,
    /// and what they read (the endpoint and its query). Credentials stay withheld even then.
    pub struct AuditDataRevealed {
        pub read_by: StaffId,
        pub reason: String,
        pub scope: String,
        pub read_at: DateTime<Utc>,
    }

    /// The owner's Instagram media, fetched for a widget and cached at most 24 hours (R7),
    /// on the stream `media-<widget>`.
    pub struct MediaCached {
        pub widget_id: WidgetId,
        pub media: Personal<Vec<MediaItem>>,
        pub fetched_at: DateTime<Utc>,
    }

    /// A comment on an article (R6): the text is public. The author's name is personal data
    /// of the commenter (category `comment_author`), shown with the comment until its rule
    /// erases it; the IP is kept for abuse prevention only (category `comment_ip`) and never
    /// shown. Version 1 stored the author in clear (upcast: it stays so).
    pub struct CommentPosted {
        pub comment_id: CommentId,
        pub article: String,
        pub author: CommentAuthor,
        pub text: String,
        pub ip: Personal<String>,
        pub posted_at: DateTime<Utc>,
    }

    /// A support ticket (R4), personal data of category `support`, kept 24 months.
    pub struct TicketOpened {
        pub ticket_id: TicketId,
        pub request: Personal<SupportRequest>,
        pub opened_at: DateTime<Utc>,
    }

    /// The retention sweeper erased a subject's data of one category by shredding its key
    /// (R20, R23, R26). The purge is itself an event, replayable like any other.
    pub struct PersonalDataErased {
        pub subject: Subject,
        pub category: Category,
        pub account_id: Option<AccountId>,
        pub rule: String,
        pub due_at: DateTime<Utc>,
        pub erased_at: DateTime<Utc>,
    }

    /// A subject's data of one category passed its retention date while a legal hold kept it
    /// (R21): its key is archived, every ordinary read (owner, public, staff, audit) sees it
    /// as erased, and only compliance reads it under a hold named here. When the last hold is
    /// released, the sweep erases it as any other. On `retention-<subject>`.
    pub struct PersonalDataArchived {
        pub subject: Subject,
        pub category: Category,
        pub account_id: Option<AccountId>,
        pub rule: String,
        pub due_at: DateTime<Utc>,
        pub holds: Vec<HoldId>,
        pub archived_at: DateTime<Utc>,
    }

    /// Compliance staff read the data a legal hold keeps past its date (R21), on the stream
    /// `access-<account>`: which hold, who, when.
    pub struct HeldDataRead {
        pub hold_id: HoldId,
        pub account_id: AccountId,
        pub read_by: StaffId,
        pub read_at: DateTime<Utc>,
    }

    /// A personal data breach, recorded by compliance staff with the time it became known
    /// (R16). The supervisory authority must be told by `notify_by` (72 hours later). The
    /// description names no person; the affected accounts are named by id.
    pub struct BreachRecorded {
        pub breach_id: BreachId,
        pub description: String,
        pub detected_at: DateTime<Utc>,
        pub notify_by: DateTime<Utc>,
        pub categories: Vec<Category>,
        pub affected_accounts: Vec<AccountId>,
        pub recorded_by: StaffId,
    }

    /// A version of the privacy policy was published (R25): it takes effect at
    /// `effective_at`, at least 5 days later (the first version, the seed's, at once).
    pub struct PolicyPublished {
        pub version: String,
        pub text: String,
        pub effective_at: DateTime<Utc>,
        pub published_by: Option<StaffId>,
    }

    /// A visitor stated its consent to analytics, or withdrew it (R3), on the stream
    /// `visitor-<id>`, under the policy version then in force.
    pub struct ConsentStated {
        pub visitor_id: VisitorId,
        pub choice: Personal<ConsentChoice>,
        pub policy_version: String,
        pub stated_at: DateTime<Utc>,
    }

    /// A message to a processor, queued in the same append as its cause, on `message-<id>`.
    /// `processor` is the registry's kind (`email`, `ticketing`, `cdn`, `analytics`).
    pub struct MessageQueued {
        pub message_id: MessageId,
        pub processor: String,
        /// What the message is (`ticket`, `invoice`, …): shown to the admin, no data.
        pub kind: String,
        pub content: MessageContent,
        pub queued_at: DateTime<Utc>,
    }

    /// A dispatcher took a message for attempt `attempt`; nobody else takes it before
    /// `lease_until`. Recorded before the send.
    pub struct MessageAttempted {
        pub message_id: MessageId,
        pub attempt: u32,
        pub lease_until: DateTime<Utc>,
        pub attempted_at: DateTime<Utc>,
    }

    /// The processor accepted the message (its HTTP status).
    pub struct MessageDelivered {
        pub message_id: MessageId,
        pub attempt: u32,
        pub status: u16,
        pub delivered_at: DateTime<Utc>,
    }

    /// An attempt failed; `error` names a status or a transport failure, never data. The
    /// next attempt is due at `retry_at`; none means the message is dead (given up).
    pub struct MessageFailed {
        pub message_id: MessageId,
        pub attempt: u32,
        pub error: String,
        pub retry_at: Option<DateTime<Utc>>,
        pub failed_at: DateTime<Utc>,
    }

    /// A message whose personal data was erased before delivery: never sent.
    pub struct MessageCancelled {
        pub message_id: MessageId,
        pub reason: String,
        pub cancelled_at: DateTime<Utc>,
    }

    /// The authority was told of a breach (R16).
    pub struct BreachNotified {
        pub breach_id: BreachId,
        pub authority: String,
        pub notified_at: DateTime<Utc>,
        pub notified_by: StaffId,
    }
}

macro_rules! events {
    ($($name:ident => $version:literal),* $(,)?) => {
        /// Every event of the log. Serialized adjacently tagged (`type` + `data`), which is
        /// how the store splits it into the envelope's `type` and `data` columns.
        #[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
        #[serde(tag = "type", content = "data")]
        pub enum DomainEvent {
            $($name($name)),*
        }

        impl DomainEvent {
            /// The event's type name, as stored in the envelope.
            pub fn event_type(&self) -> &'static str {
                match self {
                    $(DomainEvent::$name(_) => stringify!($name)),*
                }
            }
            /// The current schema version of this event's payload.
            pub fn schema_version(&self) -> u32 {
                match self {
                    $(DomainEvent::$name(_) => $version),*
                }
            }
        }

        $(
            impl From<$name> for DomainEvent {
                fn from(e: $name) -> Self {
                    DomainEvent::$name(e)
                }
            }
        )*

        impl DomainEvent {
            /// Decodes a payload at the current version straight from its JSON text, with no
            /// intermediate tree. `None` for an unknown type.
            pub fn decode_json(event_type: &str, data: &str) -> Option<Result<Self, serde_json::Error>> {
                match event_type {
                    $(stringify!($name) => Some(serde_json::from_str::<$name>(data).map(DomainEvent::$name)),)*
                    _ => None,
                }
            }
        }

        /// Every event type with its current schema version.
        pub const EVENT_TYPES: &[(&str, u32)] = &[$((stringify!($name), $version)),*];

        /// The JSON Schema of every event payload, at its current version.
        #[cfg(feature = "schema")]
        pub fn event_schemas() -> Vec<(&'static str, u32, schemars::schema::RootSchema)> {
            vec![$((stringify!($name), $version, schemars::schema_for!($name))),*]
        }
    };
}

events! {
    AccountRegistered => 3,
    AccountSignedIn => 3,
    AccountDeletionRequested => 1,
    AccountRestored => 1,
    AccountBlocked => 3,
    AccountUnblocked => 1,
    AccountPurged => 1,
    PreviewCreated => 3,
    WidgetCreated => 3,
    WidgetUpdated => 3,
    WidgetUpgraded => 1,
    WidgetDeletionRequested => 1,
    WidgetRestored => 1,
    WidgetPurged => 1,
    WidgetViewed => 3,
    WidgetClicked => 3,
    HitsRecorded => 3,
    CommandRecorded => 1,
    OrderPlaced => 3,
    OrderPaid => 3,
    InvoiceIssued => 3,
    LegalHoldPlaced => 1,
    LegalHoldReleased => 1,
    PersonalDataErased => 3,
    InstagramIdentityLinked => 1,
    TokenIssued => 1,
    StaffAdded => 3,
    MediaCached => 4,
    AccountDataRead => 3,
    CommentPosted => 3,
    TicketOpened => 3,
    BreachRecorded => 3,
    BreachNotified => 1,
    PolicyPublished => 1,
    ConsentStated => 2,
    PersonalDataArchived => 2,
    HeldDataRead => 1,
    MessageQueued => 3,
    MessageAttempted => 1,
    MessageDelivered => 1,
    MessageFailed => 1,
    MessageCancelled => 1,
    TokenRevoked => 1,
    StaffRemoved => 1,
    StaffTokensRotated => 1,
    AuditDataRevealed => 1,
    ErasureReceiptRequested => 1,
}

/// Why stored bytes could not become a [`DomainEvent`].
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum EventDecodeError {
    #[error("unknown event type `{0}`")]
    UnknownType(String),
    #[error("event type `{event_type}` has no schema version {version} (current: {current})")]
    UnknownVersion {
        event_type: String,
        version: u32,
        current: u32,
    },
    #[error("payload of `{event_type}` does not match its schema: {message}")]
    BadPayload { event_type: String, message: String },
}

impl HitsRecorded {
    /// The views and clicks as the single events they stand for.
    pub fn singles(&self) -> impl Iterator<Item = DomainEvent> + '_ {
        self.views
            .iter()
            .cloned()
            .map(DomainEvent::WidgetViewed)
            .chain(self.clicks.iter().cloned().map(DomainEvent::WidgetClicked))
    }

    pub fn len(&self) -> usize {
        self.views.len() + self.clicks.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Personal data that read models serve no more: erased by its retention rule, or archived
/// under a legal hold past its date (R21). Read models treat both alike.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Withdrawn<'a> {
    pub subject: &'a Subject,
    pub category: Category,
    pub account_id: Option<AccountId>,
}

impl DomainEvent {
    /// The data this event takes out of service, if it is an erasure or an archiving.
    pub fn withdrawn(&self) -> Option<Withdrawn<'_>> {
        match self {
            DomainEvent::PersonalDataErased(e) => Some(Withdrawn {
                subject: &e.subject,
                category: e.category,
                account_id: e.account_id,
            }),
            DomainEvent::PersonalDataArchived(e) => Some(Withdrawn {
                subject: &e.subject,
                category: e.category,
                account_id: e.account_id,
            }),
            _ => None,
        }
    }

    /// The payload alone, as stored in the envelope's `data`.
    pub fn to_data(&self) -> serde_json::Value {
        match serde_json::to_value(self) {
            Ok(serde_json::Value::Object(mut map)) => {
                map.remove("data").unwrap_or(serde_json::Value::Null)
            }
            // Every variant holds a struct of plain fields: serialization cannot fail.
            _ => serde_json::Value::Null,
        }
    }

    /// Rebuilds an event from the envelope's `type`, `schema_version` and `data`. Older
    /// versions are upcast by `lightwidget-schemas` before they reach this function.
    pub fn from_parts(
        event_type: &str,
        version: u32,
        data: serde_json::Value,
    ) -> Result<Self, EventDecodeError> {
        let current = EVENT_TYPES
            .iter()
            .find(|(name, _)| *name == event_type)
            .map(|(_, v)| *v)
            .ok_or_else(|| EventDecodeError::UnknownType(event_type.to_owned()))?;
        if version != current {
            return Err(EventDecodeError::UnknownVersion {
                event_type: event_type.to_owned(),
                version,
                current,
            });
        }
        serde_json::from_value(serde_json::json!({"type": event_type, "data": data})).map_err(|e| {
            EventDecodeError::BadPayload {
                event_type: event_type.to_owned(),
                message: redact_values(&e.to_string()),
            }
        })
    }
}

/// Blanks every double-quoted part of a parser message. serde names fields in backticks
/// and quotes offending values (`invalid type: string "…", expected u8`): the value may be
/// personal data and must not travel on in an error.
pub fn redact_values(message: &str) -> String {
    let mut out = String::with_capacity(message.len());
    let mut inside = false;
    for c in message.chars() {
        if c == '"' {
            if inside {
                out.push_str("…\"");
            } else {
                out.push('"');
            }
            inside = !inside;
        } else if !inside {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redaction_keeps_field_names_and_drops_values() {
        assert_eq!(
            redact_values("invalid type: string \"alice\", expected u8 at `columns`"),
            "invalid type: string \"…\", expected u8 at `columns`"
        );
    }

    #[test]
    fn an_admin_holds_every_staff_role_but_is_no_owner() {
        for staff in [Role::Security, Role::Compliance, Role::Auditor, Role::Admin] {
            assert!(Role::Admin.grants(staff));
            assert!(staff.grants(staff));
        }
        assert!(!Role::Admin.grants(Role::Owner));
        assert!(!Role::Security.grants(Role::Compliance));
        assert!(!Role::Owner.grants(Role::Auditor));
    }

    #[test]
    fn parts_round_trip() {
        let e = DomainEvent::from(AccountRestored {
            account_id: AccountId::new(),
            restored_at: Utc::now(),
        });
        let back = DomainEvent::from_parts(e.event_type(), e.schema_version(), e.to_data())
            .expect("decode");
        assert_eq!(back, e);
    }

    #[test]
    fn unknown_type_and_version_are_named() {
        assert_eq!(
            DomainEvent::from_parts("Nope", 1, serde_json::json!({})),
            Err(EventDecodeError::UnknownType("Nope".into()))
        );
        assert!(matches!(
            DomainEvent::from_parts("AccountRestored", 9, serde_json::json!({})),
            Err(EventDecodeError::UnknownVersion { version: 9, .. })
        ));
    }

    #[test]
    fn bad_payload_names_the_field_not_the_value() {
        let err = DomainEvent::from_parts(
            "AccountRestored",
            1,
            serde_json::json!({"account_id": AccountId::new(), "restored_at": "secret-marker"}),
        )
        .expect_err("must fail");
        let EventDecodeError::BadPayload { message, .. } = err else {
            panic!("wrong error");
        };
        assert!(!message.contains("secret-marker"), "{message}");
    }
}

//! The stored contract of the LightWidget ledger: how events and tables look on disk.
//!
//! * `events/<Type>.v<N>.json`: the JSON Schema of every event payload at every version,
//!   generated from the domain types and checked in; `tests/event_schemas.rs` fails when a
//!   type's shape changes without a new version.
//! * upcasters that lift an old payload version to the current one ([`upcast_and_decode`]);
//! * `sql/`: the migrations of both backends, applied in order at start.

use lightwidget_domain::{DomainEvent, EventDecodeError};

/// One migration: its number, name and SQL.
#[derive(Clone, Copy, Debug)]
pub struct Migration {
    pub version: i32,
    pub name: &'static str,
    pub sql: &'static str,
}

/// PostgreSQL migrations, in order.
pub const POSTGRES_MIGRATIONS: &[Migration] = &[
    Migration {
        version: 1,
        name: "log",
        sql: include_str!("../sql/postgres/0001_log.sql"),
    },
    Migration {
        version: 2,
        name: "key_epoch",
        sql: include_str!("../sql/postgres/0002_key_epoch.sql"),
    },
    Migration {
        version: 3,
        name: "views",
        sql: include_str!("../sql/postgres/0003_views.sql"),
    },
    Migration {
        version: 4,
        name: "lz4",
        sql: include_str!("../sql/postgres/0004_lz4.sql"),
    },
    Migration {
        version: 5,
        name: "view_docs_text",
        sql: include_str!("../sql/postgres/0005_view_docs_text.sql"),
    },
    Migration {
        version: 6,
        name: "archived_keys",
        sql: include_str!("../sql/postgres/0006_archived_keys.sql"),
    },
    Migration {
        version: 7,
        name: "tree",
        sql: include_str!("../sql/postgres/0007_tree.sql"),
    },
    Migration {
        version: 8,
        name: "checkpoints",
        sql: include_str!("../sql/postgres/0008_checkpoints.sql"),
    },
    Migration {
        version: 9,
        name: "tree_runs",
        sql: include_str!("../sql/postgres/0009_tree_runs.sql"),
    },
];

/// SQLite migrations of the log's database file, in order. The read models had their tables
/// here until they moved to a file of their own ([`SQLITE_VIEW_MIGRATIONS`]); migration 3
/// still creates them, and the store moves what they hold when it opens.
pub const SQLITE_MIGRATIONS: &[Migration] = &[
    Migration {
        version: 1,
        name: "log",
        sql: include_str!("../sql/sqlite/0001_log.sql"),
    },
    Migration {
        version: 2,
        name: "key_epoch",
        sql: include_str!("../sql/sqlite/0002_key_epoch.sql"),
    },
    Migration {
        version: 3,
        name: "views",
        sql: include_str!("../sql/sqlite/0003_views.sql"),
    },
    Migration {
        version: 4,
        name: "archived_keys",
        sql: include_str!("../sql/sqlite/0004_archived_keys.sql"),
    },
    Migration {
        version: 5,
        name: "tree",
        sql: include_str!("../sql/sqlite/0005_tree.sql"),
    },
    Migration {
        version: 6,
        name: "checkpoints",
        sql: include_str!("../sql/sqlite/0006_checkpoints.sql"),
    },
    Migration {
        version: 7,
        name: "tree_runs",
        sql: include_str!("../sql/sqlite/0007_tree_runs.sql"),
    },
];

/// How a payload is lifted from one version to the next.
#[derive(Clone, Copy)]
enum Upcaster {
    /// Every payload of the old version is a valid payload of the new one: the new version
    /// only widened what may appear (a category added to the policy's list, a field that
    /// may also hold a sealed value). Decoded as it is, on the fast path.
    Widened,
    /// The payload must be rewritten.
    #[allow(dead_code)]
    Rewrite(fn(serde_json::Value) -> serde_json::Value),
}

/// Every upcaster: (event type, from version, how). A new version of a type adds its step
/// here together with its new schema file.
const UPCASTERS: &[(&str, u32, Upcaster)] = &[
    // v2 of these: the categories `comment_author` and `consent` joined the policy (R3, R6),
    // so every payload naming a category may name them.
    ("AccountRegistered", 1, Upcaster::Widened),
    ("AccountSignedIn", 1, Upcaster::Widened),
    ("AccountBlocked", 1, Upcaster::Widened),
    ("PreviewCreated", 1, Upcaster::Widened),
    ("WidgetCreated", 1, Upcaster::Widened),
    ("WidgetUpdated", 1, Upcaster::Widened),
    ("WidgetViewed", 1, Upcaster::Widened),
    ("WidgetClicked", 1, Upcaster::Widened),
    ("HitsRecorded", 1, Upcaster::Widened),
    ("OrderPlaced", 1, Upcaster::Widened),
    ("OrderPaid", 1, Upcaster::Widened),
    ("InvoiceIssued", 1, Upcaster::Widened),
    ("PersonalDataErased", 1, Upcaster::Widened),
    ("StaffAdded", 1, Upcaster::Widened),
    ("MediaCached", 1, Upcaster::Widened),
    ("AccountDataRead", 1, Upcaster::Widened),
    ("TicketOpened", 1, Upcaster::Widened),
    ("BreachRecorded", 1, Upcaster::Widened),
    // v2: the author's name is sealed (R6); a v1 author is a name in clear, which v2's
    // `author` still accepts.
    ("CommentPosted", 1, Upcaster::Widened),
    // v2: a message may be a page view for analytics (R3).
    ("MessageQueued", 1, Upcaster::Widened),
    // v(N+1): a category is a string in event schemas (decision 19), and the Instagram
    // access token of a sign-in is labelled `credentials`; every older payload decodes as is.
    ("AccountRegistered", 2, Upcaster::Widened),
    ("AccountSignedIn", 2, Upcaster::Widened),
    ("AccountBlocked", 2, Upcaster::Widened),
    ("PreviewCreated", 2, Upcaster::Widened),
    ("WidgetCreated", 2, Upcaster::Widened),
    ("WidgetUpdated", 2, Upcaster::Widened),
    ("WidgetViewed", 2, Upcaster::Widened),
    ("WidgetClicked", 2, Upcaster::Widened),
    ("HitsRecorded", 2, Upcaster::Widened),
    ("OrderPlaced", 2, Upcaster::Widened),
    ("OrderPaid", 2, Upcaster::Widened),
    ("InvoiceIssued", 2, Upcaster::Widened),
    ("PersonalDataErased", 2, Upcaster::Widened),
    ("StaffAdded", 2, Upcaster::Widened),
    ("MediaCached", 2, Upcaster::Widened),
    ("AccountDataRead", 2, Upcaster::Widened),
    ("CommentPosted", 2, Upcaster::Widened),
    ("TicketOpened", 2, Upcaster::Widened),
    ("BreachRecorded", 2, Upcaster::Widened),
    ("ConsentStated", 1, Upcaster::Widened),
    ("PersonalDataArchived", 1, Upcaster::Widened),
    ("MessageQueued", 2, Upcaster::Widened),
    // v4: a media item may carry its permalink, kind, a video's still and its size; a v3
    // item is an image without them.
    ("MediaCached", 3, Upcaster::Widened),
];

/// The personal fields of a stored payload that hold credentials under another label:
/// before version 3 a sign-in's Instagram access token was labelled `profile`. Readers
/// withhold them as they withhold the `credentials` category.
pub fn withheld_fields(event_type: &str, version: u32) -> &'static [&'static str] {
    match (event_type, version) {
        ("AccountSignedIn", ..=2) => &["access_token"],
        _ => &[],
    }
}

fn upcaster(event_type: &str, from_version: u32) -> Option<Upcaster> {
    UPCASTERS
        .iter()
        .find(|(t, v, _)| *t == event_type && *v == from_version)
        .map(|(_, _, u)| *u)
}

/// Lifts a stored payload to the current version of its type and decodes it.
pub fn upcast_and_decode(
    event_type: &str,
    mut version: u32,
    mut data: serde_json::Value,
) -> Result<DomainEvent, EventDecodeError> {
    while let Some(up) = upcaster(event_type, version) {
        if let Upcaster::Rewrite(f) = up {
            data = f(data);
        }
        version += 1;
    }
    DomainEvent::from_parts(event_type, version, data)
}

/// Whether an upcaster lifts `event_type` from `from_version`.
pub fn has_upcaster(event_type: &str, from_version: u32) -> bool {
    upcaster(event_type, from_version).is_some()
}

/// Whether every step from `version` to `current` only widened the payload.
fn widened_only(event_type: &str, version: u32, current: u32) -> bool {
    (version..current).all(|v| matches!(upcaster(event_type, v), Some(Upcaster::Widened)))
}

/// Decodes a stored payload straight from its text, without an intermediate JSON tree when
/// it is at the current version or only widened since (the fast path of readers that need
/// no personal data: sealed fields decode as erased).
pub fn decode_str(
    event_type: &str,
    version: u32,
    data: &str,
) -> Result<DomainEvent, EventDecodeError> {
    let current = lightwidget_domain::event::EVENT_TYPES
        .iter()
        .find(|(t, _)| *t == event_type)
        .map(|(_, v)| *v)
        .ok_or_else(|| EventDecodeError::UnknownType(event_type.to_owned()))?;
    if version != current && !(version < current && widened_only(event_type, version, current)) {
        let value: serde_json::Value =
            serde_json::from_str(data).map_err(|e| EventDecodeError::BadPayload {
                event_type: event_type.to_owned(),
                message: lightwidget_domain::event::redact_values(&e.to_string()),
            })?;
        return upcast_and_decode(event_type, version, value);
    }
    match DomainEvent::decode_json(event_type, data) {
        Some(Ok(event)) => Ok(event),
        Some(Err(e)) => Err(EventDecodeError::BadPayload {
            event_type: event_type.to_owned(),
            message: lightwidget_domain::event::redact_values(&e.to_string()),
        }),
        None => Err(EventDecodeError::UnknownType(event_type.to_owned())),
    }
}

/// SQLite migrations of the read models' own database file, in order.
pub const SQLITE_VIEW_MIGRATIONS: &[Migration] = &[Migration {
    version: 1,
    name: "views",
    sql: include_str!("../sql/sqlite/0003_views.sql"),
}];

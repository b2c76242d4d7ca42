//! Typed identifiers. Each wraps a UUID so that an account id can never be passed where a
//! widget id is expected.

use serde::{Deserialize, Serialize};
use std::fmt;
use uuid::Uuid;

macro_rules! id_type {
    ($(#[$doc:meta])* $name:ident, $prefix:literal) => {
        $(#[$doc])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
        #[serde(transparent)]
        pub struct $name(pub Uuid);

        impl $name {
            /// A fresh random id.
            pub fn new() -> Self {
                Self(Uuid::new_v4())
            }
            /// The stream that holds this thing's events.
            pub fn stream(&self) -> String {
                crate::streams::of($prefix, self.0)
            }
        }

        impl Default for $name {
            fn default() -> Self {
                Self::new()
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                self.0.fmt(f)
            }
        }

        impl std::str::FromStr for $name {
            type Err = uuid::Error;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                Ok(Self(s.parse()?))
            }
        }
    };
}

id_type!(
    /// An account, created on the first Instagram sign-in.
    AccountId,
    "account"
);
id_type!(
    /// A widget (free or pro).
    WidgetId,
    "widget"
);
id_type!(
    /// A short-lived widget preview (R8).
    PreviewId,
    "preview"
);
id_type!(
    /// An order for a paid plan (R10).
    OrderId,
    "order"
);
id_type!(
    /// A legal hold placed by compliance staff (R21).
    HoldId,
    "hold"
);
id_type!(
    /// A staff member (security, compliance, auditor, admin).
    StaffId,
    "staff"
);

id_type!(
    /// A comment on a blog post or support article (R6).
    CommentId,
    "comment"
);
id_type!(
    /// A support ticket (R4).
    TicketId,
    "ticket"
);
id_type!(
    /// A visitor of the public pages, known by a UUID its own browser made (R3).
    VisitorId,
    "visitor"
);
id_type!(
    /// A message to a processor, in the outbox (R12, R15); the processor receives it too.
    MessageId,
    "message"
);
id_type!(
    /// A personal data breach in the breach register (R16).
    BreachId,
    "breach"
);

/// The stream of a calendar year's invoices; its version orders the invoice numbers.
pub fn invoice_stream(year: i32) -> String {
    crate::streams::invoices(year)
}

/// Who caused an event: recorded in every envelope.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", content = "id", rename_all = "snake_case")]
pub enum Actor {
    Account(AccountId),
    Staff(StaffId),
    /// A processor calling back (PayPal), identified by name.
    Processor(String),
    /// An anonymous visitor (views, clicks, comments, tickets).
    Visitor,
    /// The system itself: the retention sweeper, preview expiry.
    System,
}

impl fmt::Display for Actor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Actor::Account(id) => write!(f, "account:{id}"),
            Actor::Staff(id) => write!(f, "staff:{id}"),
            Actor::Processor(name) => write!(f, "processor:{name}"),
            Actor::Visitor => f.write_str("visitor"),
            Actor::System => f.write_str("system"),
        }
    }
}

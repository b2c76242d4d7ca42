//! The one error of the application layer. Every use case answers it; the API maps it to
//! HTTP in one place.

use lightwidget_domain::account::AccountError;
use lightwidget_domain::breach::BreachError;
use lightwidget_domain::hold::HoldError;
use lightwidget_domain::identity::LinkError;
use lightwidget_domain::invoice::InvoiceError;
use lightwidget_domain::order::OrderError;
use lightwidget_domain::outbox::MessageError;
use lightwidget_domain::policy::PolicyError;
use lightwidget_domain::retention::ErasureError;
use lightwidget_domain::staff::{StaffError, TokenError};
use lightwidget_domain::support::TicketError;
use lightwidget_domain::values::Invalid;
use lightwidget_domain::widget::WidgetError;
use lightwidget_domain::EventDecodeError;
use lightwidget_store::StoreError;

/// An aggregate's refusal, by aggregate.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Rejection {
    #[error("{0}")]
    Account(#[from] AccountError),
    #[error("{0}")]
    Widget(#[from] WidgetError),
    #[error("{0}")]
    Order(#[from] OrderError),
    #[error("{0}")]
    Invoice(#[from] InvoiceError),
    #[error("{0}")]
    Hold(#[from] HoldError),
    #[error("{0}")]
    Erasure(#[from] ErasureError),
    #[error("{0}")]
    Staff(#[from] StaffError),
    #[error("{0}")]
    Token(#[from] TokenError),
    #[error("{0}")]
    Link(#[from] LinkError),
    #[error("{0}")]
    Ticket(#[from] TicketError),
    #[error("{0}")]
    Breach(#[from] BreachError),
    #[error("{0}")]
    Policy(#[from] PolicyError),
    #[error("{0}")]
    Message(#[from] MessageError),
    /// A PayPal transaction id already paid another order, or another amount.
    #[error("the transaction id was already used for another order or amount")]
    TransactionReused,
}

impl From<std::convert::Infallible> for Rejection {
    fn from(never: std::convert::Infallible) -> Self {
        match never {}
    }
}

#[derive(Debug, thiserror::Error)]
pub enum CommandError {
    /// A value the caller sent was refused before anything was decided.
    #[error("{0}")]
    Invalid(#[from] Invalid),
    /// The thing the command names does not exist (or is not the caller's to see).
    #[error("no such {0}")]
    NotFound(&'static str),
    /// An aggregate refused the command.
    #[error("{0}")]
    Rejected(#[from] Rejection),
    /// The caller named the version it decided on (`If-Match`), and the stream is elsewhere.
    #[error("`{stream}` is at version {current}")]
    Stale { stream: String, current: u64 },
    /// Other writers kept changing a stream the command read; every attempt conflicted.
    #[error("stream `{stream}` kept changing; gave up after {attempts} attempts")]
    Conflict { stream: String, attempts: u32 },
    /// A shared stream (the year's invoice book) kept changing under the command: busy,
    /// worth retrying in a moment.
    #[error("`{stream}` is busy; gave up after {attempts} attempts")]
    Busy { stream: String, attempts: u32 },
    /// A processor the command needs (Instagram) could not be reached.
    #[error("{0} could not be reached")]
    Unreachable(&'static str),
    /// The idempotency key was used before for another request.
    #[error("the idempotency key was already used for another request")]
    KeyReused,
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("stored event could not be decoded: {0}")]
    Decode(#[from] EventDecodeError),
    /// A use case was about to hand a processor a category the registry does not list for
    /// it (R12): a bug, refused before anything was appended.
    #[error(transparent)]
    NotListed(crate::processors::NotListed),
}

macro_rules! rejected_from {
    ($($e:ty),* $(,)?) => {$(
        impl From<$e> for CommandError {
            fn from(e: $e) -> Self {
                CommandError::Rejected(e.into())
            }
        }
    )*};
}

rejected_from!(
    AccountError,
    WidgetError,
    OrderError,
    InvoiceError,
    HoldError,
    ErasureError,
    StaffError,
    TokenError,
    LinkError,
    TicketError,
    BreachError,
    PolicyError,
    MessageError,
    std::convert::Infallible,
);

impl CommandError {
    /// The aggregate's refusal, if that is what this is.
    pub fn rejection(&self) -> Option<&Rejection> {
        match self {
            CommandError::Rejected(r) => Some(r),
            _ => None,
        }
    }
}

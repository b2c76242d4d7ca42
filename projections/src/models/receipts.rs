//! `receipts`: the erasure receipts asked for, one document per receipt token hash (owner:
//! the account): which account it is for and when it was asked. The receipt itself is made
//! from the log when it is read (the account's `AccountPurged` and a signed checkpoint);
//! this model only finds the account from the token's hash. No personal data is held.

use crate::{Overlay, Projection, ViewReader};
use lightwidget_domain::{AccountId, DomainEvent};
use lightwidget_store::{format_time, RecordedEvent, ViewDoc};
use serde::{Deserialize, Serialize};

pub struct Receipts;

pub const VIEW: &str = "receipts";

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ReceiptDoc {
    pub account_id: AccountId,
    pub requested_at: String,
    /// The log position of the request.
    pub position: u64,
}

impl Projection for Receipts {
    fn name(&self) -> &'static str {
        VIEW
    }

    fn event_types(&self) -> Option<&'static [&'static str]> {
        Some(&["ErasureReceiptRequested"])
    }

    fn follows_references(&self) -> bool {
        false
    }

    fn opens(&self, _event_type: &str) -> bool {
        false
    }

    fn reads(&self, _e: &RecordedEvent, _d: &DomainEvent, _loaded: &dyn ViewReader) -> Vec<String> {
        Vec::new()
    }

    fn handle(&self, e: &RecordedEvent, d: &DomainEvent, view: &mut Overlay) {
        let DomainEvent::ErasureReceiptRequested(r) = d else {
            return;
        };
        let doc = ReceiptDoc {
            account_id: r.account_id,
            requested_at: format_time(r.requested_at),
            position: e.position,
        };
        if let Ok(out) = ViewDoc::typed(r.token_hash.clone(), &doc) {
            view.put(out.owner(r.account_id.to_string()));
        }
    }
}

//! `invoices`: one document per invoice number — order, widget, amounts, the billing
//! snapshot (opened personal data), retain-until date (R19). Erasing the order's billing data
//! blanks the snapshot; number, amounts and dates stay. An index document `order:<id>` names
//! each order's invoice so the erasure (which names the order) finds it.

use crate::{Overlay, Projection, ViewReader};
use chrono::{TimeZone, Utc};
use lightwidget_domain::event::BillingDetails;
use lightwidget_domain::{AccountId, Category, DomainEvent, OrderId, WidgetId};
use lightwidget_store::{format_time, DocChange, RecordedEvent, ViewDoc};
use serde::{Deserialize, Serialize};

pub struct Invoices;

pub const VIEW: &str = "invoices";

/// An invoice's document, keyed by its number. Billing fields are `None` once erased (R19:
/// number, amounts and dates stay).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct InvoiceDoc {
    pub invoice_number: String,
    pub order_id: OrderId,
    pub widget_id: WidgetId,
    pub account_id: AccountId,
    pub issued_at: String,
    pub amount_minor: i64,
    pub currency: String,
    pub billing: BillingDoc,
    /// The date until which accounting law keeps it (`YYYY-MM-DD`).
    pub retain_until: String,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub billing_erased: bool,
}

/// The billing snapshot of an invoice (opened personal data).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct BillingDoc {
    pub name: Option<String>,
    pub address: Option<String>,
    pub email: Option<String>,
    pub vat_id: Option<String>,
    pub country: Option<String>,
}

impl From<Option<&BillingDetails>> for BillingDoc {
    fn from(b: Option<&BillingDetails>) -> Self {
        BillingDoc {
            name: b.map(|b| b.name.clone()),
            address: b.map(|b| b.address.clone()),
            email: b.map(|b| b.email.clone()),
            vat_id: b.and_then(|b| b.vat_id.clone()),
            country: b.map(|b| b.country.clone()),
        }
    }
}

/// The index document `order:<id>`: which invoice an order has.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct OrderIndex {
    pub invoice_number: String,
}

/// Whether a document of this view is an invoice (not an order index).
pub fn is_invoice(doc: &ViewDoc) -> bool {
    doc.key.starts_with("FV/")
}

fn order_index(order: &str) -> String {
    format!("order:{order}")
}

/// The invoice number an order's index names, if it is loaded.
fn invoice_of(view: &dyn ViewReader, order: &str) -> Option<String> {
    let index = view.get(&order_index(order))?;
    Some(index.read::<OrderIndex>().ok()?.invoice_number)
}

/// The order an erasure (or an archiving under a legal hold, R21) of billing data concerns.
fn erased_order(d: &DomainEvent) -> Option<&str> {
    match d.withdrawn() {
        Some(w) if w.category == Category::Billing => w.subject.as_str().strip_prefix("order:"),
        _ => None,
    }
}

impl Projection for Invoices {
    fn name(&self) -> &'static str {
        VIEW
    }

    fn event_types(&self) -> Option<&'static [&'static str]> {
        Some(&[
            "InvoiceIssued",
            "PersonalDataErased",
            "PersonalDataArchived",
        ])
    }

    fn reads(&self, _e: &RecordedEvent, d: &DomainEvent, loaded: &dyn ViewReader) -> Vec<String> {
        let Some(order) = erased_order(d) else {
            return vec![];
        };
        let mut keys = vec![order_index(order)];
        keys.extend(invoice_of(loaded, order));
        keys
    }

    fn handle(&self, _e: &RecordedEvent, d: &DomainEvent, view: &mut Overlay) {
        let changes = changes(_e, d, view);
        view.apply(changes);
    }
}

fn changes(_e: &RecordedEvent, d: &DomainEvent, view: &dyn ViewReader) -> Vec<DocChange> {
    match d {
        DomainEvent::InvoiceIssued(i) => {
            let doc = InvoiceDoc {
                invoice_number: i.invoice_number.clone(),
                order_id: i.order_id,
                widget_id: i.widget_id,
                account_id: i.account_id,
                issued_at: format_time(i.issued_at),
                amount_minor: i.amount_minor,
                currency: i.currency.clone(),
                billing: i.billing.value().into(),
                retain_until: i.retain_until.to_string(),
                billing_erased: false,
            };
            let due = i
                .retain_until
                .succ_opt()
                .and_then(|d| d.and_hms_opt(0, 0, 0))
                .map(|t| Utc.from_utc_datetime(&t));
            let index = OrderIndex {
                invoice_number: i.invoice_number.clone(),
            };
            let (Ok(invoice), Ok(index)) = (
                ViewDoc::typed(i.invoice_number.clone(), &doc),
                ViewDoc::typed(order_index(&i.order_id.to_string()), &index),
            ) else {
                return vec![];
            };
            let mut invoice = invoice.owner(i.account_id.to_string()).state("issued");
            if let Some(due) = due {
                invoice = invoice.due_at(due);
            }
            vec![DocChange::Put(invoice), DocChange::Put(index)]
        }
        _ => {
            let Some(order) = erased_order(d) else {
                return vec![];
            };
            let Some(number) = invoice_of(view, order) else {
                return vec![];
            };
            let Some(invoice) = view.get(&number) else {
                return vec![];
            };
            let Ok(mut doc) = invoice.read::<InvoiceDoc>() else {
                tracing::error!(key = %number, "an invoice document does not read");
                return vec![];
            };
            doc.billing = BillingDoc::default();
            doc.billing_erased = true;
            let Ok(erased) = ViewDoc::typed(number, &doc) else {
                return vec![];
            };
            let mut out = invoice.clone();
            out.doc = erased.doc;
            out.state = Some("billing_erased".into());
            vec![DocChange::Put(out)]
        }
    }
}

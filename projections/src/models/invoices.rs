//! `invoices`: one document per invoice number — order, widget, amounts, the billing
//! snapshot (opened personal data), retain-until date (R19). Erasing the order's billing data
//! blanks the snapshot; number, amounts and dates stay. An index document `order:<id>` names
//! each order's invoice so the erasure (which names the order) finds it.

use super::time;
use crate::{Overlay, Projection, ViewReader};
use chrono::{TimeZone, Utc};
use lightwidget_domain::{Category, DomainEvent};
use lightwidget_store::{DocChange, RecordedEvent, ViewDoc};
use serde_json::{json, Value};

pub struct Invoices;

pub const VIEW: &str = "invoices";

fn order_index(order: &str) -> String {
    format!("order:{order}")
}

/// The order an erasure of billing data concerns.
fn erased_order(d: &DomainEvent) -> Option<&str> {
    match d {
        DomainEvent::PersonalDataErased(e) if e.category == Category::Billing => {
            e.subject.as_str().strip_prefix("order:")
        }
        _ => None,
    }
}

impl Projection for Invoices {
    fn name(&self) -> &'static str {
        VIEW
    }

    fn event_types(&self) -> Option<&'static [&'static str]> {
        Some(&["InvoiceIssued", "PersonalDataErased"])
    }

    fn reads(&self, _e: &RecordedEvent, d: &DomainEvent, loaded: &dyn ViewReader) -> Vec<String> {
        let Some(order) = erased_order(d) else {
            return vec![];
        };
        let index = order_index(order);
        let mut keys = vec![index.clone()];
        if let Some(number) = loaded
            .get(&index)
            .and_then(|i| i.doc["invoice_number"].as_str())
        {
            keys.push(number.to_owned());
        }
        keys
    }

    fn handle(&self, _e: &RecordedEvent, d: &DomainEvent, view: &mut Overlay) {
        let changes = changes(_e, d, view);
        view.apply(changes);
    }
}

fn changes(_e: &RecordedEvent, d: &DomainEvent, view: &dyn ViewReader) -> Vec<DocChange> {
    {
        match d {
            DomainEvent::InvoiceIssued(i) => {
                let billing = i.billing.value();
                let doc = json!({
                    "invoice_number": i.invoice_number,
                    "order_id": i.order_id,
                    "widget_id": i.widget_id,
                    "account_id": i.account_id,
                    "issued_at": time(i.issued_at),
                    "amount_minor": i.amount_minor,
                    "currency": i.currency,
                    "billing": {
                        "name": billing.map(|b| &b.name),
                        "address": billing.map(|b| &b.address),
                        "email": billing.map(|b| &b.email),
                        "vat_id": billing.and_then(|b| b.vat_id.as_ref()),
                        "country": billing.map(|b| &b.country),
                    },
                    "retain_until": i.retain_until.to_string(),
                });
                let due = i
                    .retain_until
                    .succ_opt()
                    .and_then(|d| d.and_hms_opt(0, 0, 0))
                    .map(|t| Utc.from_utc_datetime(&t));
                let mut invoice = ViewDoc::new(i.invoice_number.clone(), doc)
                    .owner(i.account_id.to_string())
                    .state("issued");
                if let Some(due) = due {
                    invoice = invoice.due_at(due);
                }
                vec![
                    DocChange::Put(invoice),
                    DocChange::Put(ViewDoc::new(
                        order_index(&i.order_id.to_string()),
                        json!({"invoice_number": i.invoice_number}),
                    )),
                ]
            }
            _ => {
                let Some(order) = erased_order(d) else {
                    return vec![];
                };
                let Some(number) = view
                    .get(&order_index(order))
                    .and_then(|i| i.doc["invoice_number"].as_str())
                else {
                    return vec![];
                };
                let Some(invoice) = view.get(number) else {
                    return vec![];
                };
                let mut doc = invoice.doc.clone();
                doc["billing"] = json!({"name": null, "address": null, "email": null, "vat_id": null, "country": null});
                doc["billing_erased"] = Value::Bool(true);
                let mut out = invoice.clone();
                out.doc = doc;
                out.state = Some("billing_erased".into());
                vec![DocChange::Put(out)]
            }
        }
    }
}

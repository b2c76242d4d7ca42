//! The invoice book of one calendar year: numbers `FV/<year>/<6 digits>`, gapless and unique
//! (R10). The book is one stream (`invoices-<year>`), so the store's optimistic concurrency on
//! that stream is what keeps two concurrent payments from taking the same number.

use crate::event::*;
use crate::{AccountId, Aggregate, DomainEvent, Now, OrderId, Personal, WidgetId};
use chrono::{Datelike, NaiveDate};
use std::collections::HashMap;

/// The last day an invoice of `year` must be kept: 31 December of the 5th year after it
/// (Polish Accounting Act art. 74, R19).
pub fn retain_until(year: i32) -> NaiveDate {
    NaiveDate::from_ymd_opt(year + 5, 12, 31).unwrap_or(NaiveDate::MAX)
}

/// The invoice number of a year and sequence.
pub fn invoice_number(year: i32, sequence: u32) -> String {
    format!("FV/{year}/{sequence:06}")
}

#[derive(Clone, Debug, Default, PartialEq)]
pub struct InvoiceBook {
    pub last_sequence: u32,
    /// Invoice number per order already invoiced: a second payment message for the same
    /// order yields the same invoice, never a second one.
    pub by_order: HashMap<OrderId, String>,
}

#[derive(Clone, Debug)]
pub struct IssueInvoice {
    pub order_id: OrderId,
    pub widget_id: WidgetId,
    pub account_id: AccountId,
    pub amount_minor: i64,
    pub currency: String,
    pub billing: Personal<BillingDetails>,
}

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum InvoiceError {
    #[error("the invoice book of this year is full")]
    BookFull,
}

impl Aggregate for InvoiceBook {
    type Command = IssueInvoice;
    type Error = InvoiceError;

    /// The book's year is the year of `now`: the command layer loads `invoices-<now's year>`.
    fn decide(&self, cmd: IssueInvoice, now: Now) -> Result<Vec<DomainEvent>, InvoiceError> {
        if self.by_order.contains_key(&cmd.order_id) {
            return Ok(vec![]);
        }
        let sequence = self.last_sequence + 1;
        if sequence > 999_999 {
            return Err(InvoiceError::BookFull);
        }
        let year = now.year();
        Ok(vec![InvoiceIssued {
            invoice_number: invoice_number(year, sequence),
            year,
            sequence,
            order_id: cmd.order_id,
            widget_id: cmd.widget_id,
            account_id: cmd.account_id,
            amount_minor: cmd.amount_minor,
            currency: cmd.currency,
            billing: cmd.billing,
            issued_at: now,
            retain_until: retain_until(year),
        }
        .into()])
    }

    fn evolve(mut self, event: &DomainEvent) -> Self {
        if let DomainEvent::InvoiceIssued(e) = event {
            self.last_sequence = e.sequence;
            self.by_order.insert(e.order_id, e.invoice_number.clone());
        }
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::aggregate::testing::given;
    use crate::{Category, Subject};
    use chrono::{TimeZone, Utc};

    fn now() -> Now {
        Utc.with_ymd_and_hms(2026, 11, 29, 10, 0, 0)
            .single()
            .expect("valid")
    }
    fn cmd(n: u128) -> IssueInvoice {
        let order_id = OrderId(uuid::Uuid::from_u128(n));
        IssueInvoice {
            order_id,
            widget_id: WidgetId(uuid::Uuid::from_u128(100 + n)),
            account_id: AccountId(uuid::Uuid::from_u128(200 + n)),
            amount_minor: 4900,
            currency: "PLN".into(),
            billing: Personal::new(
                Subject::order(order_id),
                Category::Billing,
                BillingDetails {
                    name: "A".into(),
                    address: "B".into(),
                    email: "a@b.pl".into(),
                    vat_id: None,
                    country: "PL".into(),
                },
            ),
        }
    }

    fn issue(history: Vec<DomainEvent>, n: u128) -> Vec<DomainEvent> {
        given::<InvoiceBook>(history)
            .when(cmd(n), now())
            .result()
            .expect("issued")
    }

    #[test]
    fn numbers_are_consecutive_from_one() {
        let mut history = Vec::new();
        for n in 1..=3 {
            history.extend(issue(history.clone(), n));
        }
        let numbers: Vec<String> = history
            .iter()
            .filter_map(|e| match e {
                DomainEvent::InvoiceIssued(i) => Some(i.invoice_number.clone()),
                _ => None,
            })
            .collect();
        assert_eq!(
            numbers,
            ["FV/2026/000001", "FV/2026/000002", "FV/2026/000003"]
        );
    }

    #[test]
    fn the_same_order_is_never_invoiced_twice() {
        let first = issue(vec![], 1);
        given::<InvoiceBook>(first).when(cmd(1), now()).then([]);
    }

    #[test]
    fn retained_to_the_end_of_the_fifth_following_year() {
        let events = issue(vec![], 1);
        let DomainEvent::InvoiceIssued(i) = &events[0] else {
            panic!("not an invoice");
        };
        assert_eq!(
            i.retain_until,
            NaiveDate::from_ymd_opt(2031, 12, 31).expect("date")
        );
    }

    #[test]
    fn a_full_book_refuses() {
        let book = InvoiceBook {
            last_sequence: 999_999,
            by_order: HashMap::new(),
        };
        assert_eq!(book.decide(cmd(9), now()), Err(InvoiceError::BookFull));
    }
}

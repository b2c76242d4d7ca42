//! Orders (R10) and their payment. A completed PayPal payment: the order is paid, the year's invoice book issues the next
//! number, the widget is upgraded — in one unit of work across the three streams, so a
//! number is never taken without its payment or paid twice (R10). The PayPal transaction id
//! is the idempotency key: the same transaction again answers with the same invoice and
//! appends nothing.

use crate::processors::Registry;
use crate::unit::{transact, Keyed, Unit, UseCase};
use crate::{load, CommandError, Rejection};
use chrono::Datelike;
use lightwidget_domain::event::{BillingDetails, Outbound, Plan};
use lightwidget_domain::invoice::{InvoiceBook, IssueInvoice};
use lightwidget_domain::order::{Order, OrderCommand, OrderError};
use lightwidget_domain::outbox;
use lightwidget_domain::widget::{Widget, WidgetCommand};
use lightwidget_domain::{
    invoice_stream, AccountId, Category, DomainEvent, OrderId, Personal, Subject, WidgetId,
};
use lightwidget_store::{Clock, EventStore, Metadata, StoreError};

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Paid {
    pub invoice_number: String,
    /// The position of the payment's last event (or of the first payment's, when replayed).
    pub position: u64,
    pub replayed: bool,
}

/// A payment as PayPal reports it.
#[derive(Clone, Copy, Debug)]
pub struct Payment<'a> {
    pub order_id: OrderId,
    pub transaction_id: &'a str,
    pub amount_minor: i64,
    pub currency: &'a str,
}

/// The invoice number issued for a paid order.
pub async fn invoice_of(
    store: &dyn EventStore,
    order_id: OrderId,
) -> Result<Option<String>, CommandError> {
    let order = load::<Order>(store, &order_id.stream()).await?;
    let Some(paid) = order.state.paid else {
        return Ok(None);
    };
    let book = load::<InvoiceBook>(store, &invoice_stream(paid.paid_at.year())).await?;
    Ok(book.state.by_order.get(&order_id).cloned())
}

pub async fn pay_order(
    store: &dyn EventStore,
    clock: &dyn Clock,
    registry: &Registry,
    payment: Payment<'_>,
    meta: &Metadata,
) -> Result<Paid, CommandError> {
    let Payment {
        order_id,
        transaction_id,
        amount_minor,
        currency,
    } = payment;
    let key = format!("paypal-transaction:{transaction_id}");
    let fingerprint = format!("{order_id}|{amount_minor}|{currency}");
    let keyed = Keyed {
        key: &key,
        fingerprint: &fingerprint,
    };
    let done = transact(
        store,
        clock,
        meta,
        Some(keyed),
        &PayOrder(payment, registry),
    )
    .await
    .map_err(|e| match e {
        CommandError::KeyReused => CommandError::Rejected(Rejection::TransactionReused),
        CommandError::Conflict { stream, attempts } => CommandError::Busy { stream, attempts },
        other => other,
    })?;
    let replayed = done.replayed();
    let invoice_number = match done.value {
        Some(number) => number,
        None => invoice_of(store, order_id).await?.ok_or_else(|| {
            StoreError::Corrupt(format!(
                "order {order_id} is recorded paid without an invoice"
            ))
        })?,
    };
    Ok(Paid {
        invoice_number,
        replayed,
        position: done.position,
    })
}

/// The unit of work of a payment: pay the order, issue the invoice, upgrade the widget, and
/// queue the invoice's e-mail (R15) and, for a widget that became `pro`, the CDN purge of
/// its page (R14).
struct PayOrder<'a>(Payment<'a>, &'a Registry);

#[async_trait::async_trait]
impl UseCase for PayOrder<'_> {
    /// The invoice number.
    type Output = String;

    async fn run(&self, u: &mut Unit<'_>) -> Result<String, CommandError> {
        let Payment {
            order_id,
            transaction_id,
            amount_minor,
            currency,
        } = self.0;
        let now = u.now();
        let order = u.load::<Order>(&order_id.stream()).await?;
        let pay = OrderCommand::Pay {
            transaction_id: Personal::new(
                Subject::order(order_id),
                Category::Billing,
                transaction_id.to_owned(),
            ),
            amount_minor,
            currency: currency.to_owned(),
        };
        u.decide(&order_id.stream(), &order, pay)?;
        let placed = order.state.placed.clone().ok_or(OrderError::NotFound)?;
        let book_stream = invoice_stream(now.year());
        let book = u.load::<InvoiceBook>(&book_stream).await?;
        let issue = IssueInvoice {
            order_id,
            widget_id: placed.widget_id,
            account_id: placed.account_id,
            amount_minor,
            currency: currency.to_owned(),
            billing: placed.billing.clone(),
        };
        let issued = u.decide(&book_stream, &book, issue)?;
        let number = issued
            .iter()
            .find_map(|e| match e {
                DomainEvent::InvoiceIssued(i) => Some(i.invoice_number.clone()),
                _ => None,
            })
            .or_else(|| book.state.by_order.get(&order_id).cloned())
            .ok_or_else(|| {
                StoreError::Corrupt(format!("order {order_id} has no invoice number"))
            })?;
        let widget_stream = placed.widget_id.stream();
        let widget = u.load::<Widget>(&widget_stream).await?;
        // An upgrade the widget refuses (already pro, in quarantine) does not stop the payment
        // and its invoice: the money was received and accounting law wants the invoice.
        let upgrade = WidgetCommand::Upgrade {
            order_id,
            plan: placed.plan,
        };
        let upgraded = u.try_decide(&widget_stream, &widget, upgrade).is_ok();
        if let Some(billing) = placed.billing.value() {
            let mail = outbox::sealed(
                Subject::order(order_id),
                Category::Billing,
                Outbound::Invoice {
                    invoice_number: number.clone(),
                    order_id,
                    to: billing.email.clone(),
                    amount_minor,
                    currency: currency.to_owned(),
                },
            );
            crate::outbox::queue(u, self.1, "email", mail).await?;
        }
        if upgraded {
            crate::outbox::purge_from_cdn_if_pro(u, placed.widget_id, Plan::Pro).await?;
        }
        Ok(number)
    }
}

/// An order placed for a paid plan.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OrderPlaced {
    pub order_id: OrderId,
    pub position: u64,
}

/// What the plan costs.
#[derive(Clone, Copy, Debug)]
pub struct Price<'a> {
    pub amount_minor: i64,
    pub currency: &'a str,
}

/// Orders a paid plan for one of the caller's widgets with the billing form (R10).
pub async fn place_order(
    cx: &crate::Context,
    inv: crate::Invocation<'_>,
    account_id: AccountId,
    widget_id: WidgetId,
    plan: Plan,
    price: Price<'_>,
    billing: BillingDetails,
) -> Result<OrderPlaced, CommandError> {
    let order_id = OrderId(inv.new_id("order"));
    let work = PlaceOrder {
        cx,
        order_id,
        account_id,
        widget_id,
        plan,
        price,
        billing,
    };
    let done = crate::context::run_keyed(cx, inv, &work).await?;
    Ok(OrderPlaced {
        order_id,
        position: done.position,
    })
}

struct PlaceOrder<'a> {
    cx: &'a crate::Context,
    order_id: OrderId,
    account_id: AccountId,
    widget_id: WidgetId,
    plan: Plan,
    price: Price<'a>,
    billing: BillingDetails,
}

#[async_trait::async_trait]
impl UseCase for PlaceOrder<'_> {
    type Output = ();

    async fn run(&self, u: &mut Unit<'_>) -> Result<(), CommandError> {
        let (widget, owner) =
            crate::widgets::own_widget(self.cx, u, self.account_id, self.widget_id).await?;
        let stream = self.order_id.stream();
        let order = u.load::<Order>(&stream).await?;
        let place = OrderCommand::Place {
            order_id: self.order_id,
            widget_id: self.widget_id,
            account_id: self.account_id,
            plan: self.plan,
            current_plan: widget.state.plan,
            amount_minor: self.price.amount_minor,
            currency: self.price.currency.to_owned(),
            billing: Personal::new(
                Subject::order(self.order_id),
                Category::Billing,
                self.billing.clone(),
            ),
            owner,
        };
        u.decide(&stream, &order, place)?;
        // The confirmation, to the billing e-mail (R15).
        let mail = outbox::sealed(
            Subject::order(self.order_id),
            Category::Billing,
            Outbound::OrderConfirmation {
                order_id: self.order_id,
                to: self.billing.email.clone(),
                name: self.billing.name.clone(),
                amount_minor: self.price.amount_minor,
                currency: self.price.currency.to_owned(),
            },
        );
        crate::outbox::queue(u, &self.cx.processors, "email", mail).await?;
        Ok(())
    }
}

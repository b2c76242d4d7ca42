//! A completed PayPal payment: the order is paid, the year's invoice book issues the next
//! number, the widget is upgraded — in one atomic append across the three streams, so a
//! number is never taken without its payment or paid twice (R10). The PayPal transaction id
//! is recorded as an idempotency key: the same transaction again answers with the same
//! invoice and appends nothing.

use crate::idempotency::{key_stream, recorded, sha256_hex};
use crate::load;
use chrono::Datelike;
use lightwidget_domain::event::CommandRecorded;
use lightwidget_domain::invoice::{InvoiceBook, InvoiceError, IssueInvoice};
use lightwidget_domain::order::{Order, OrderCommand, OrderError};
use lightwidget_domain::widget::{Widget, WidgetCommand};
use lightwidget_domain::{
    invoice_stream, Aggregate, Category, DomainEvent, OrderId, Personal, Subject,
};
use lightwidget_store::{
    AppendRequest, Clock, EventStore, ExpectedVersion, Metadata, StoreError, StreamWrite,
};

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Paid {
    pub invoice_number: String,
    /// The position of the payment's last event (or of the first payment's, when replayed).
    pub position: u64,
    pub replayed: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum PaymentError {
    #[error("{0}")]
    Order(#[from] OrderError),
    #[error("{0}")]
    Invoice(#[from] InvoiceError),
    #[error("the transaction id was already used for another order or amount")]
    TransactionReused,
    #[error("the invoice book kept changing; gave up")]
    Conflict,
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("a stored event could not be decoded: {0}")]
    Decode(String),
}

impl<E: std::fmt::Debug + std::fmt::Display> From<crate::CommandError<E>> for PaymentError {
    fn from(e: crate::CommandError<E>) -> Self {
        match e {
            crate::CommandError::Store(s) => PaymentError::Store(s),
            other => PaymentError::Decode(other.to_string()),
        }
    }
}

/// The invoice number issued for a paid order.
pub async fn invoice_of(
    store: &dyn EventStore,
    order_id: OrderId,
) -> Result<Option<String>, PaymentError> {
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
    order_id: OrderId,
    transaction_id: &str,
    amount_minor: i64,
    currency: &str,
    meta: &Metadata,
) -> Result<Paid, PaymentError> {
    let key = format!("paypal-transaction:{transaction_id}");
    let fingerprint = sha256_hex(&format!("{order_id}|{amount_minor}|{currency}"));
    for _ in 0..crate::DEFAULT_MAX_ATTEMPTS {
        if let Some(r) = recorded(store, &key).await? {
            if r.fingerprint != fingerprint {
                return Err(PaymentError::TransactionReused);
            }
            let number = invoice_of(store, order_id).await?.ok_or_else(|| {
                StoreError::Corrupt(format!(
                    "order {order_id} is recorded paid without an invoice"
                ))
            })?;
            return Ok(Paid {
                invoice_number: number,
                position: r.position,
                replayed: true,
            });
        }
        let now = clock.now();
        let order = load::<Order>(store, &order_id.stream()).await?;
        let pay = order.state.decide(
            OrderCommand::Pay {
                transaction_id: Personal::new(
                    Subject::order(order_id),
                    Category::Billing,
                    transaction_id.to_owned(),
                ),
                amount_minor,
                currency: currency.to_owned(),
            },
            now,
        )?;
        let placed = order.state.placed.clone().ok_or(OrderError::NotFound)?;
        let book_stream = invoice_stream(now.year());
        let book = load::<InvoiceBook>(store, &book_stream).await?;
        let issued = book.state.decide(
            IssueInvoice {
                order_id,
                widget_id: placed.widget_id,
                account_id: placed.account_id,
                amount_minor,
                currency: currency.to_owned(),
                billing: placed.billing.clone(),
            },
            now,
        )?;
        let number = issued
            .iter()
            .find_map(|e| match e {
                DomainEvent::InvoiceIssued(i) => Some(i.invoice_number.clone()),
                _ => None,
            })
            .or_else(|| book.state.by_order.get(&order_id).cloned())
            .ok_or_else(|| PaymentError::Decode("no invoice number".into()))?;
        let widget = load::<Widget>(store, &placed.widget_id.stream()).await?;
        // An upgrade the widget refuses (already pro, in quarantine) does not stop the payment
        // and its invoice: the money was received and accounting law wants the invoice.
        let upgrade = widget
            .state
            .decide(
                WidgetCommand::Upgrade {
                    order_id,
                    plan: placed.plan,
                },
                now,
            )
            .unwrap_or_default();
        let record: DomainEvent = CommandRecorded {
            key_hash: sha256_hex(&key),
            fingerprint: fingerprint.clone(),
            stream: order_id.stream(),
            events: pay.len() as u32,
            version: order.version + pay.len() as u64,
        }
        .into();
        let mut writes = Vec::new();
        for (stream, version, events) in [
            (order_id.stream(), order.version, &pay),
            (book_stream.clone(), book.version, &issued),
            (placed.widget_id.stream(), widget.version, &upgrade),
        ] {
            if !events.is_empty() {
                writes.push(StreamWrite::of(
                    stream,
                    ExpectedVersion::Exact(version),
                    events,
                    meta,
                ));
            }
        }
        // The record goes last: the position before it is the payment's last event.
        writes.push(StreamWrite::of(
            key_stream(&key),
            ExpectedVersion::NoStream,
            &[record],
            meta,
        ));
        match store
            .append(AppendRequest {
                writes,
                shred: vec![],
            })
            .await
        {
            Ok(r) => {
                return Ok(Paid {
                    invoice_number: number,
                    position: r.last_position.saturating_sub(1),
                    replayed: false,
                })
            }
            Err(StoreError::Conflict { .. }) => continue,
            Err(e) => return Err(e.into()),
        }
    }
    Err(PaymentError::Conflict)
}

//! The order aggregate: an upgrade order with its billing form, paid through PayPal.

use crate::account::OwnerStatus;
use crate::event::*;
use crate::{AccountId, Aggregate, DomainEvent, Now, OrderId, Personal, WidgetId};

#[derive(Clone, Debug, Default, PartialEq)]
pub struct Order {
    pub placed: Option<OrderPlaced>,
    pub paid: Option<OrderPaid>,
}

#[derive(Clone, Debug)]
pub enum OrderCommand {
    Place {
        order_id: OrderId,
        widget_id: WidgetId,
        account_id: AccountId,
        plan: Plan,
        /// The widget's current plan, read by the command layer.
        current_plan: Plan,
        amount_minor: i64,
        currency: String,
        billing: Personal<BillingDetails>,
        owner: OwnerStatus,
    },
    /// PayPal's webhook reported a completed payment.
    Pay {
        transaction_id: Personal<String>,
        amount_minor: i64,
        currency: String,
    },
}

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum OrderError {
    #[error("no such order")]
    NotFound,
    #[error("the order already exists")]
    AlreadyExists,
    #[error("the owner's account is blocked")]
    AccountBlocked,
    #[error("the owner's account is not active")]
    AccountNotActive,
    #[error("the widget already has that plan")]
    AlreadyOnPlan,
    #[error("the amount must be positive")]
    NonPositiveAmount,
    #[error("the payment does not match the order's amount or currency")]
    PaymentMismatch,
    #[error("the order was already paid by another transaction")]
    AlreadyPaid,
}

impl Aggregate for Order {
    type Command = OrderCommand;
    type Error = OrderError;

    fn decide(&self, command: OrderCommand, now: Now) -> Result<Vec<DomainEvent>, OrderError> {
        match command {
            OrderCommand::Place {
                order_id,
                widget_id,
                account_id,
                plan,
                current_plan,
                amount_minor,
                currency,
                billing,
                owner,
            } => {
                if self.placed.is_some() {
                    return Err(OrderError::AlreadyExists);
                }
                match owner {
                    OwnerStatus::Active => {}
                    OwnerStatus::Blocked => return Err(OrderError::AccountBlocked),
                    _ => return Err(OrderError::AccountNotActive),
                }
                if current_plan == plan {
                    return Err(OrderError::AlreadyOnPlan);
                }
                if amount_minor <= 0 {
                    return Err(OrderError::NonPositiveAmount);
                }
                Ok(vec![OrderPlaced {
                    order_id,
                    widget_id,
                    account_id,
                    plan,
                    amount_minor,
                    currency,
                    billing,
                    placed_at: now,
                }
                .into()])
            }
            OrderCommand::Pay {
                transaction_id,
                amount_minor,
                currency,
            } => {
                let placed = self.placed.as_ref().ok_or(OrderError::NotFound)?;
                if let Some(paid) = &self.paid {
                    // The same transaction again is a webhook retry: nothing new happens.
                    return if paid.transaction_id.value() == transaction_id.value() {
                        Ok(vec![])
                    } else {
                        Err(OrderError::AlreadyPaid)
                    };
                }
                if placed.amount_minor != amount_minor || placed.currency != currency {
                    return Err(OrderError::PaymentMismatch);
                }
                Ok(vec![OrderPaid {
                    order_id: placed.order_id,
                    transaction_id,
                    amount_minor,
                    currency,
                    paid_at: now,
                }
                .into()])
            }
        }
    }

    fn evolve(mut self, event: &DomainEvent) -> Self {
        match event {
            DomainEvent::OrderPlaced(e) => self.placed = Some(e.clone()),
            DomainEvent::OrderPaid(e) => self.paid = Some(e.clone()),
            _ => {}
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

    fn t0() -> Now {
        Utc.with_ymd_and_hms(2026, 6, 1, 0, 0, 0)
            .single()
            .expect("valid")
    }
    fn oid() -> OrderId {
        OrderId(uuid::Uuid::from_u128(21))
    }
    fn billing() -> Personal<BillingDetails> {
        Personal::new(
            Subject::order(oid()),
            Category::Billing,
            BillingDetails {
                name: "Jan Kowalski".into(),
                address: "ul. Długa 1, Kraków".into(),
                email: "jan@example.com".into(),
                vat_id: Some("PL1234563218".into()),
                country: "PL".into(),
            },
        )
    }
    fn place(owner: OwnerStatus, current_plan: Plan) -> OrderCommand {
        OrderCommand::Place {
            order_id: oid(),
            widget_id: WidgetId(uuid::Uuid::from_u128(22)),
            account_id: AccountId(uuid::Uuid::from_u128(23)),
            plan: Plan::Pro,
            current_plan,
            amount_minor: 4900,
            currency: "PLN".into(),
            billing: billing(),
            owner,
        }
    }
    fn placed() -> DomainEvent {
        OrderPlaced {
            order_id: oid(),
            widget_id: WidgetId(uuid::Uuid::from_u128(22)),
            account_id: AccountId(uuid::Uuid::from_u128(23)),
            plan: Plan::Pro,
            amount_minor: 4900,
            currency: "PLN".into(),
            billing: billing(),
            placed_at: t0(),
        }
        .into()
    }
    fn txn(id: &str) -> Personal<String> {
        Personal::new(Subject::order(oid()), Category::Billing, id.into())
    }
    fn pay(id: &str, amount_minor: i64) -> OrderCommand {
        OrderCommand::Pay {
            transaction_id: txn(id),
            amount_minor,
            currency: "PLN".into(),
        }
    }
    fn paid(id: &str) -> DomainEvent {
        OrderPaid {
            order_id: oid(),
            transaction_id: txn(id),
            amount_minor: 4900,
            currency: "PLN".into(),
            paid_at: t0(),
        }
        .into()
    }

    #[test]
    fn place_an_order() {
        given::<Order>([])
            .when(place(OwnerStatus::Active, Plan::Free), t0())
            .then([placed()]);
    }

    #[test]
    fn blocked_owner_cannot_order() {
        given::<Order>([])
            .when(place(OwnerStatus::Blocked, Plan::Free), t0())
            .then_err(OrderError::AccountBlocked);
    }

    #[test]
    fn a_pro_widget_cannot_be_upgraded_again() {
        given::<Order>([])
            .when(place(OwnerStatus::Active, Plan::Pro), t0())
            .then_err(OrderError::AlreadyOnPlan);
    }

    #[test]
    fn pay_matching_amount() {
        given::<Order>([placed()])
            .when(pay("TX1", 4900), t0())
            .then([paid("TX1")]);
        given::<Order>([placed()])
            .when(pay("TX1", 100), t0())
            .then_err(OrderError::PaymentMismatch);
        given::<Order>([])
            .when(pay("TX1", 4900), t0())
            .then_err(OrderError::NotFound);
    }

    #[test]
    fn repeated_transaction_is_idempotent_another_is_refused() {
        given::<Order>([placed(), paid("TX1")])
            .when(pay("TX1", 4900), t0())
            .then([]);
        given::<Order>([placed(), paid("TX1")])
            .when(pay("TX2", 4900), t0())
            .then_err(OrderError::AlreadyPaid);
    }
}

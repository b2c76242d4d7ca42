//! Upgrade orders with their billing form (R10), card data refused (R11), the PayPal webhook
//! that pays them and issues the invoice, and invoices.

use super::{docs_of, Call};
use crate::auth::Caller;
use crate::extract::{from_tree, IdempotencyKey, JsonBody, MinPosition, RawBody};
use crate::problem::{ApiResult, Problem};
use crate::state::AppState;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::Json;
use lightwidget_commands::payment::{pay_order, place_order, Payment, Price};
use lightwidget_domain::event::{BillingDetails, Plan, Role};
use lightwidget_domain::values::{BillingForm, Invalid};
use lightwidget_domain::{OrderId, WidgetId};
use lightwidget_projections::models::invoices::{self, InvoiceDoc};
use lightwidget_store::ViewDoc;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;

/// The price of the pro plan, in minor units of [`CURRENCY`].
pub const PRO_PRICE_MINOR: i64 = 2900;
pub const CURRENCY: &str = "EUR";

pub fn format_amount(minor: i64) -> String {
    format!("{}.{:02}", minor / 100, (minor % 100).abs())
}

/// `"29.00"`, `"29"`, `29.0` or `29` as minor units; anything else is `None`.
pub fn parse_amount(v: &Value) -> Option<i64> {
    let text = match v {
        Value::String(s) => s.trim().to_owned(),
        Value::Number(n) => n.to_string(),
        _ => return None,
    };
    let (whole, frac) = text.split_once('.').unwrap_or((&text, ""));
    if whole.is_empty()
        || !whole.bytes().all(|b| b.is_ascii_digit())
        || frac.len() > 2
        || !frac.bytes().all(|b| b.is_ascii_digit())
    {
        return None;
    }
    let whole: i64 = whole.parse().ok()?;
    let frac: i64 = format!("{frac:0<2}").parse().ok()?;
    whole.checked_mul(100)?.checked_add(frac)
}

fn luhn(digits: &str) -> bool {
    let mut sum = 0;
    for (i, c) in digits.bytes().rev().enumerate() {
        let mut d = u32::from(c - b'0');
        if i % 2 == 1 {
            d *= 2;
            if d > 9 {
                d -= 9;
            }
        }
        sum += d;
    }
    sum % 10 == 0
}

/// The path of the first field that looks like card data (R11): a field named like a card
/// number or security code, or a value of 13–19 digits (spaces and dashes allowed) that
/// passes the Luhn check.
pub fn card_like(tree: &Value, path: &str) -> Option<String> {
    let join = |k: &str| {
        if path.is_empty() {
            k.to_owned()
        } else {
            format!("{path}.{k}")
        }
    };
    match tree {
        Value::Object(map) => map.iter().find_map(|(k, v)| {
            let norm: String = k
                .chars()
                .filter(|c| c.is_ascii_alphanumeric())
                .collect::<String>()
                .to_ascii_lowercase();
            let named = norm.contains("card")
                || norm.contains("cvv")
                || norm.contains("cvc")
                || norm.contains("ccnum")
                || norm == "cc"
                || norm == "pan"
                || norm.contains("securitycode")
                || norm.contains("expiry")
                || norm.contains("expdate");
            if named {
                Some(join(k))
            } else {
                card_like(v, &join(k))
            }
        }),
        Value::Array(items) => items
            .iter()
            .enumerate()
            .find_map(|(i, v)| card_like(v, &format!("{path}[{i}]"))),
        Value::String(s) => {
            let kept: String = s.chars().filter(|c| *c != ' ' && *c != '-').collect();
            let digits = kept.len() == s.chars().filter(|c| c.is_ascii_digit()).count();
            (digits && (13..=19).contains(&kept.len()) && luhn(&kept)).then(|| path.to_owned())
        }
        Value::Number(n) => {
            let s = n.to_string();
            (s.bytes().all(|b| b.is_ascii_digit()) && (13..=19).contains(&s.len()) && luhn(&s))
                .then(|| path.to_owned())
        }
        _ => None,
    }
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BillingBody {
    #[schema(min_length = 1, max_length = 200, pattern = "\\S")]
    pub name: String,
    #[schema(min_length = 1, max_length = 500, pattern = "\\S")]
    pub address: String,
    #[schema(
        max_length = 254,
        pattern = "^[!-?A-~]+@[!-\\-/-?A-~][!-?A-~]*\\.[!-?A-~]*[!-\\-/-?A-~]$"
    )]
    pub email: String,
    #[serde(default)]
    pub vat_id: Option<String>,
    /// ISO 3166-1 alpha-2, upper case.
    #[schema(pattern = "^[A-Z]{2}$")]
    pub country: String,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpgradeBody {
    /// `pro`.
    #[schema(pattern = "^pro$")]
    pub plan: String,
    pub billing: BillingBody,
}

impl BillingBody {
    fn parse(&self) -> Result<BillingDetails, Invalid> {
        BillingDetails::parse(BillingForm {
            name: &self.name,
            address: &self.address,
            email: &self.email,
            vat_id: self.vat_id.as_deref(),
            country: &self.country,
        })
    }
}

#[derive(Serialize, ToSchema)]
pub struct OrderCreated {
    #[schema(value_type = String, format = Uuid)]
    pub order_id: OrderId,
    /// Decimal, like `"29.00"`.
    pub amount: String,
    pub currency: String,
    pub position: u64,
}

/// Orders the pro plan for a widget with the billing form (R10). Card data is refused (R11).
#[utoipa::path(post, path = "/v1/widgets/{id}/upgrade", tag = "orders", request_body = UpgradeBody,
    params(("id" = String, Path, description = "a UUID")),
    responses((status = 201, body = OrderCreated), (status = 401, body = Problem),
        (status = 403, body = Problem), (status = 404, body = Problem),
        (status = 409, body = Problem), (status = 422, body = Problem)),
    security(("bearer" = [])))]
pub async fn upgrade(
    State(app): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    IdempotencyKey(key): IdempotencyKey,
    body: JsonBody<Value>,
) -> ApiResult<(StatusCode, Json<OrderCreated>)> {
    let account_id = caller.owner()?;
    if let Some(field) = card_like(&body.tree, "") {
        return Err(Problem::invalid(
            &field,
            format!(
                "`{field}` looks like payment card data, which LightWidget never accepts: \
                 pay through PayPal"
            ),
        ));
    }
    let form: UpgradeBody = from_tree(&body.tree)?;
    if form.plan != "pro" {
        return Err(Problem::invalid("plan", "plan must be `pro`"));
    }
    let billing = form.billing.parse()?;
    let widget_id: WidgetId = id.parse().map_err(|_| Problem::not_found("widget"))?;
    let call = Call::new(
        &app,
        Some(&caller),
        key,
        format!("POST /v1/widgets/{widget_id}/upgrade {}", body.digest),
    );
    let price = Price {
        amount_minor: PRO_PRICE_MINOR,
        currency: CURRENCY,
    };
    let placed = place_order(
        &app.commands,
        call.invocation(),
        account_id,
        widget_id,
        Plan::Pro,
        price,
        billing,
    )
    .await?;
    Ok((
        StatusCode::CREATED,
        Json(OrderCreated {
            order_id: placed.order_id,
            amount: format_amount(PRO_PRICE_MINOR),
            currency: CURRENCY.into(),
            position: placed.position,
        }),
    ))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PaypalBody {
    #[schema(value_type = String, format = Uuid)]
    pub order_id: OrderId,
    #[schema(min_length = 1, max_length = 100, pattern = "\\S")]
    pub transaction_id: String,
    /// Decimal, like `"29.00"`.
    #[schema(value_type = String)]
    pub amount: Value,
    pub currency: String,
    /// `COMPLETED`.
    #[schema(pattern = "^COMPLETED$")]
    pub status: String,
}

#[derive(Serialize, ToSchema)]
pub struct PaymentAccepted {
    pub invoice_number: String,
    pub position: u64,
}

/// PayPal's payment webhook: verifies `X-LW-Signature` (hex HMAC-SHA256 of the body), pays
/// the order, upgrades the widget and issues the invoice; idempotent on `transaction_id`.
#[utoipa::path(post, path = "/v1/payments/paypal", tag = "orders", request_body = PaypalBody,
    params(("X-LW-Signature" = String, Header)),
    responses((status = 200, body = PaymentAccepted), (status = 401, body = Problem),
        (status = 404, body = Problem), (status = 409, body = Problem),
        (status = 422, body = Problem), (status = 503, body = Problem)))]
pub async fn paypal(
    State(app): State<AppState>,
    headers: HeaderMap,
    RawBody(body): RawBody,
) -> ApiResult<Json<PaymentAccepted>> {
    use hmac::Mac;
    let secret = app.paypal_secret.as_ref().ok_or_else(|| {
        Problem::unavailable("payments are not configured (LW_PAYPAL_WEBHOOK_SECRET)", 60)
    })?;
    let signature = headers
        .get("x-lw-signature")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| hex::decode(v.trim()).ok())
        .ok_or_else(|| Problem::unauthorized("X-LW-Signature is missing or not hex"))?;
    let mut mac = <hmac::Hmac<sha2::Sha256> as hmac::Mac>::new_from_slice(secret.as_bytes())
        .expect("HMAC takes a key of any length");
    mac.update(&body);
    mac.verify_slice(&signature)
        .map_err(|_| Problem::unauthorized("X-LW-Signature does not match the body"))?;
    let parsed = crate::extract::parse::<PaypalBody>(&body)?;
    let p = parsed.value;
    if p.status != "COMPLETED" {
        return Err(Problem::invalid(
            "status",
            "only COMPLETED payments are accepted",
        ));
    }
    let txn = p.transaction_id.trim();
    if txn.is_empty() || txn.len() > 100 {
        return Err(Problem::invalid(
            "transaction_id",
            "transaction_id must be 1 to 100 characters",
        ));
    }
    let amount = parse_amount(&p.amount)
        .ok_or_else(|| Problem::invalid("amount", "amount must be a decimal like 29.00"))?;
    let meta = lightwidget_store::Metadata {
        actor: "paypal".into(),
        ..lightwidget_store::Metadata::system()
    };
    let payment = Payment {
        order_id: p.order_id,
        transaction_id: txn,
        amount_minor: amount,
        currency: &p.currency,
    };
    let paid = pay_order(
        &*app.store,
        &*app.clock,
        &app.commands.processors,
        payment,
        &meta,
    )
    .await?;
    Ok(Json(PaymentAccepted {
        invoice_number: paid.invoice_number,
        position: paid.position,
    }))
}

#[derive(Serialize, ToSchema)]
pub struct BillingView {
    pub name: Option<String>,
    pub address: Option<String>,
    pub email: Option<String>,
    pub vat_id: Option<String>,
    pub country: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub struct InvoiceView {
    pub invoice_number: String,
    pub order_id: String,
    pub widget_id: String,
    pub issued_at: String,
    pub amount: String,
    pub currency: String,
    /// Erased billing fields read `null` (R19: numbers and amounts stay).
    pub billing: BillingView,
    pub retain_until: String,
}

#[derive(Serialize, ToSchema)]
pub struct InvoiceList {
    pub invoices: Vec<InvoiceView>,
}

fn invoice_view(doc: &ViewDoc) -> ApiResult<InvoiceView> {
    let d: InvoiceDoc = doc.read()?;
    Ok(InvoiceView {
        invoice_number: d.invoice_number,
        order_id: d.order_id.to_string(),
        widget_id: d.widget_id.to_string(),
        issued_at: d.issued_at,
        amount: format_amount(d.amount_minor),
        currency: d.currency,
        billing: BillingView {
            name: d.billing.name,
            address: d.billing.address,
            email: d.billing.email,
            vat_id: d.billing.vat_id,
            country: d.billing.country,
        },
        retain_until: d.retain_until,
    })
}

/// Invoices: an owner's own, or — for compliance staff — all.
#[utoipa::path(get, path = "/v1/invoices", tag = "orders",
    params(("min_position" = Option<u64>, Query)),
    responses((status = 200, body = InvoiceList), (status = 401, body = Problem),
        (status = 403, body = Problem)),
    security(("bearer" = [])))]
pub async fn list_invoices(
    State(app): State<AppState>,
    caller: Caller,
    MinPosition(min): MinPosition,
) -> ApiResult<Json<InvoiceList>> {
    // An owner sees their own invoices; compliance sees all.
    let owner = match caller.owner() {
        Ok(account) => Some(account.to_string()),
        Err(_) => {
            caller.staff(Role::Compliance)?;
            None
        }
    };
    app.wait_for(invoices::VIEW, min).await?;
    let docs = docs_of(&app, invoices::VIEW, owner.as_deref()).await?;
    Ok(Json(InvoiceList {
        invoices: docs
            .iter()
            .filter(|d| invoices::is_invoice(d))
            .map(invoice_view)
            .collect::<ApiResult<_>>()?,
    }))
}

/// One invoice by number (`FV/2026/000001`, slashes as they are or encoded).
#[utoipa::path(get, path = "/v1/invoices/{number}", tag = "orders",
    params(("number" = String, Path, description = "`FV/<year>/<6 digits>`, its slashes encoded as %2F"),
        ("min_position" = Option<u64>, Query)),
    responses((status = 200, body = InvoiceView), (status = 401, body = Problem),
        (status = 403, body = Problem), (status = 404, body = Problem)),
    security(("bearer" = [])))]
pub async fn get_invoice(
    State(app): State<AppState>,
    caller: Caller,
    Path(number): Path<String>,
    MinPosition(min): MinPosition,
) -> ApiResult<Json<InvoiceView>> {
    let owner = caller.owner().ok();
    if owner.is_none() {
        caller.staff(Role::Compliance)?;
    }
    // `FV/<year>/<6 digits>`: anything else names no invoice (and is never sent to the
    // store, where a NUL byte, say, is not even text).
    let b = number.as_bytes();
    let shaped = b.len() == 14
        && b.starts_with(b"FV/")
        && b[7] == b'/'
        && b[3..7].iter().all(u8::is_ascii_digit)
        && b[8..].iter().all(u8::is_ascii_digit);
    if !shaped {
        return Err(Problem::not_found("invoice"));
    }
    app.wait_for(invoices::VIEW, min).await?;
    let doc = app
        .views
        .get_many(invoices::VIEW, &[number])
        .await?
        .into_iter()
        .filter(invoices::is_invoice)
        .find(|d| match owner {
            Some(a) => d.owner.as_deref() == Some(a.to_string().as_str()),
            None => true,
        })
        .ok_or_else(|| Problem::not_found("invoice"))?;
    Ok(Json(invoice_view(&doc)?))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn card_numbers_are_found_by_value_and_by_name() {
        assert_eq!(
            card_like(&json!({"billing": {"note": "4111 1111 1111 1111"}}), ""),
            Some("billing.note".into())
        );
        assert_eq!(
            card_like(&json!({"x": 4111111111111111u64}), ""),
            Some("x".into())
        );
        assert_eq!(
            card_like(&json!({"billing": {"cardNumber": "x"}}), ""),
            Some("billing.cardNumber".into())
        );
        assert_eq!(card_like(&json!({"cvv": 123}), ""), Some("cvv".into()));
        // Not Luhn-valid, too short, or not digits only: not a card.
        assert_eq!(card_like(&json!({"a": "4111 1111 1111 1112"}), ""), None);
        assert_eq!(card_like(&json!({"a": "123456789012"}), ""), None);
        assert_eq!(card_like(&json!({"vat_id": "PL5260250274"}), ""), None);
    }

    #[test]
    fn amounts() {
        assert_eq!(parse_amount(&json!("29.00")), Some(2900));
        assert_eq!(parse_amount(&json!("29.5")), Some(2950));
        assert_eq!(parse_amount(&json!(29)), Some(2900));
        assert_eq!(parse_amount(&json!("29.001")), None);
        assert_eq!(parse_amount(&json!("-1")), None);
        assert_eq!(parse_amount(&json!("abc")), None);
        assert_eq!(format_amount(2900), "29.00");
    }
}

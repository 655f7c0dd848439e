//! What the contract says, without HTTP or the database: the test card tokens, the
//! requests parsed and checked at the edge, the error codes and the Payment object.

use chrono::{DateTime, SecondsFormat, Utc};
use serde_json::{Value, json};

use crate::entity::psp_payments;

/// The one currency the sandbox takes.
pub const CURRENCY: &str = "KRW";
/// The longest `Idempotency-Key`, in characters.
pub const MAX_IDEMPOTENCY_KEY: usize = 300;

pub const IN_PROGRESS: &str = "IN_PROGRESS";
pub const DONE: &str = "DONE";
pub const ABORTED: &str = "ABORTED";
pub const CANCELED: &str = "CANCELED";

/// What a test card token does at confirm.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Card {
    /// `tok_approve`: 200 DONE.
    Approve,
    /// `tok_decline`: 403 REJECT_CARD_PAYMENT, recorded ABORTED.
    Decline,
    /// `tok_expired`: 400 INVALID_CARD_EXPIRATION, recorded ABORTED.
    Expired,
    /// `tok_charge_drop`: recorded DONE, then the connection is dropped.
    ChargeDrop,
    /// `tok_fail_drop`: recorded ABORTED, then the connection is dropped.
    FailDrop,
    /// `tok_undecided`: recorded IN_PROGRESS, dropped; DONE at the first inquiry.
    Undecided,
    /// `tok_undecided_fail`: as `Undecided`, ABORTED at the first inquiry.
    UndecidedFail,
    /// `tok_slow`: approves, answers after `PSP_SLOW_MS`.
    Slow,
    /// `tok_5xx`: 500 PROVIDER_ERROR, nothing recorded, every time.
    ProviderError,
    /// `tok_5xx_once`: 500 PROVIDER_ERROR on an order's first confirm, then approves.
    ProviderErrorOnce,
    /// `tok_wrong_amount`: approves, answering and recording amount + 1.
    WrongAmount,
}

impl Card {
    /// The behaviour of `token`; `None` for a token the sandbox does not know.
    pub fn parse(token: &str) -> Option<Self> {
        Some(match token {
            "tok_approve" => Self::Approve,
            "tok_decline" => Self::Decline,
            "tok_expired" => Self::Expired,
            "tok_charge_drop" => Self::ChargeDrop,
            "tok_fail_drop" => Self::FailDrop,
            "tok_undecided" => Self::Undecided,
            "tok_undecided_fail" => Self::UndecidedFail,
            "tok_slow" => Self::Slow,
            "tok_5xx" => Self::ProviderError,
            "tok_5xx_once" => Self::ProviderErrorOnce,
            "tok_wrong_amount" => Self::WrongAmount,
            _ => return None,
        })
    }

    /// Whether the connection is closed without an answer once the outcome is stored.
    pub fn drops_connection(self) -> bool {
        matches!(
            self,
            Self::ChargeDrop | Self::FailDrop | Self::Undecided | Self::UndecidedFail
        )
    }
}

/// An error answer: status and `{"code", "message"}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    pub status: u16,
    pub code: &'static str,
    pub message: String,
}

impl Failure {
    pub fn new(status: u16, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
        }
    }

    pub fn invalid(message: impl Into<String>) -> Self {
        Self::new(400, "INVALID_REQUEST", message)
    }

    pub fn body(&self) -> Value {
        json!({"code": self.code, "message": self.message})
    }

    /// The decline of `tok_decline`, `tok_fail_drop` and `tok_undecided_fail`.
    pub fn rejected() -> Self {
        Self::new(
            403,
            "REJECT_CARD_PAYMENT",
            "잔액 부족 (insufficient balance)",
        )
    }

    pub fn expired() -> Self {
        Self::new(
            400,
            "INVALID_CARD_EXPIRATION",
            "유효기간 만료 (the card has expired)",
        )
    }

    pub fn provider_error() -> Self {
        Self::new(
            500,
            "PROVIDER_ERROR",
            "일시적인 오류 (the provider failed; nothing was charged)",
        )
    }

    pub fn processing() -> Self {
        Self::new(
            409,
            "ALREADY_PROCESSING_REQUEST",
            "the first request with this key, or for this order, is still in progress",
        )
    }

    pub fn processed() -> Self {
        Self::new(
            409,
            "ALREADY_PROCESSED_PAYMENT",
            "this order already has a payment",
        )
    }

    pub fn not_found_payment() -> Self {
        Self::new(404, "NOT_FOUND_PAYMENT", "no payment was recorded for it")
    }
}

/// `POST /v1/payments/confirm`'s body, checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfirmRequest {
    pub order_id: String,
    pub amount: i64,
    pub currency: String,
    pub card_token: String,
}

/// `POST /v1/payments/{paymentKey}/cancel`'s body, checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CancelRequest {
    pub cancel_reason: String,
}

fn object(body: &[u8]) -> Result<serde_json::Map<String, Value>, Failure> {
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(object)) => Ok(object),
        Ok(_) => Err(Failure::invalid("the body must be a JSON object")),
        Err(error) => Err(Failure::invalid(format!("the body is not JSON: {error}"))),
    }
}

fn string_field<'a>(
    object: &'a serde_json::Map<String, Value>,
    name: &str,
) -> Result<&'a str, Failure> {
    match object.get(name) {
        Some(Value::String(s)) => Ok(s),
        Some(_) => Err(Failure::invalid(format!("{name} must be a string"))),
        None => Err(Failure::invalid(format!("{name} is required"))),
    }
}

/// Whether `order_id` is 6 to 64 of `[A-Za-z0-9_-]`.
pub fn valid_order_id(order_id: &str) -> bool {
    (6..=64).contains(&order_id.len())
        && order_id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

impl ConfirmRequest {
    pub fn parse(body: &[u8]) -> Result<Self, Failure> {
        let object = object(body)?;
        let order_id = string_field(&object, "orderId")?;
        if !valid_order_id(order_id) {
            return Err(Failure::invalid(
                "orderId must be 6 to 64 characters of A-Z, a-z, 0-9, _ and -",
            ));
        }
        let amount = match object.get("amount") {
            Some(Value::Number(n)) => n
                .as_i64()
                .ok_or_else(|| Failure::invalid("amount must be a whole number"))?,
            Some(_) => return Err(Failure::invalid("amount must be a number")),
            None => return Err(Failure::invalid("amount is required")),
        };
        if amount <= 0 {
            return Err(Failure::invalid("amount must be greater than 0"));
        }
        let currency = string_field(&object, "currency")?;
        if currency != CURRENCY {
            return Err(Failure::invalid("currency must be KRW"));
        }
        let card_token = string_field(&object, "cardToken")?;
        if card_token.is_empty() {
            return Err(Failure::invalid("cardToken must not be empty"));
        }
        Ok(Self {
            order_id: order_id.to_owned(),
            amount,
            currency: currency.to_owned(),
            card_token: card_token.to_owned(),
        })
    }
}

impl CancelRequest {
    pub fn parse(body: &[u8]) -> Result<Self, Failure> {
        let object = object(body)?;
        let reason = string_field(&object, "cancelReason")?;
        if reason.trim().is_empty() {
            return Err(Failure::invalid("cancelReason must not be empty"));
        }
        if reason.chars().count() > 200 || reason.chars().any(char::is_control) {
            return Err(Failure::invalid(
                "cancelReason must be at most 200 characters, without control characters",
            ));
        }
        Ok(Self {
            cancel_reason: reason.to_owned(),
        })
    }
}

/// An `Idempotency-Key` header's value, checked: 1 to 300 characters.
pub fn idempotency_key(value: Option<&http::HeaderValue>) -> Result<String, Failure> {
    let value = value.ok_or_else(|| Failure::invalid("the Idempotency-Key header is required"))?;
    let key = value
        .to_str()
        .map_err(|_| Failure::invalid("the Idempotency-Key header must be visible ASCII"))?;
    if key.is_empty() || key.chars().count() > MAX_IDEMPOTENCY_KEY {
        return Err(Failure::invalid(
            "the Idempotency-Key header must be 1 to 300 characters",
        ));
    }
    Ok(key.to_owned())
}

/// A timestamp as the API shows it (RFC 3339, milliseconds, UTC).
pub fn timestamp(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(SecondsFormat::Millis, true)
}

/// The Payment object of the contract.
pub fn payment_json(payment: &psp_payments::Model) -> Value {
    let failure = match (&payment.failure_code, &payment.failure_message) {
        (Some(code), Some(message)) => json!({"code": code, "message": message}),
        _ => Value::Null,
    };
    let cancels = match (payment.canceled_at, &payment.cancel_reason) {
        (Some(at), Some(reason)) => json!([{
            "cancelAmount": payment.total_amount,
            "canceledAt": timestamp(at),
            "cancelReason": reason,
        }]),
        _ => json!([]),
    };
    json!({
        "paymentKey": payment.payment_key,
        "orderId": payment.order_id,
        "status": payment.status,
        "totalAmount": payment.total_amount,
        "currency": payment.currency,
        "method": "CARD",
        "approvedAt": payment.approved_at.map(timestamp),
        "failure": failure,
        "cancels": cancels,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn confirm_requests_are_checked() {
        let ok = br#"{"orderId":"order_1-a","amount":40000,"currency":"KRW","cardToken":"tok_x"}"#;
        assert_eq!(ConfirmRequest::parse(ok).expect("valid").amount, 40000);
        for bad in [
            &b"{"[..],
            b"[]",
            b"null",
            br#"{"amount":1,"currency":"KRW","cardToken":"t"}"#,
            br#"{"orderId":"short","amount":1,"currency":"KRW","cardToken":"t"}"#,
            br#"{"orderId":"order 12","amount":1,"currency":"KRW","cardToken":"t"}"#,
            br#"{"orderId":"order12","amount":0,"currency":"KRW","cardToken":"t"}"#,
            br#"{"orderId":"order12","amount":1.5,"currency":"KRW","cardToken":"t"}"#,
            br#"{"orderId":"order12","amount":"1","currency":"KRW","cardToken":"t"}"#,
            br#"{"orderId":"order12","amount":1,"currency":"USD","cardToken":"t"}"#,
            br#"{"orderId":"order12","amount":1,"currency":"KRW"}"#,
            br#"{"orderId":"order12","amount":1,"currency":"KRW","cardToken":7}"#,
        ] {
            let failure = ConfirmRequest::parse(bad).unwrap_err();
            assert_eq!(
                failure.code,
                "INVALID_REQUEST",
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
        assert!(valid_order_id(&"a".repeat(64)) && !valid_order_id(&"a".repeat(65)));
    }

    #[test]
    fn every_test_token_is_known() {
        for token in [
            "tok_approve",
            "tok_decline",
            "tok_expired",
            "tok_charge_drop",
            "tok_fail_drop",
            "tok_undecided",
            "tok_undecided_fail",
            "tok_slow",
            "tok_5xx",
            "tok_5xx_once",
            "tok_wrong_amount",
        ] {
            assert!(Card::parse(token).is_some(), "{token}");
        }
        assert_eq!(Card::parse("tok_unknown"), None);
    }
}

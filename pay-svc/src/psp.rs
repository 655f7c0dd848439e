//! The payment provider's HTTP API (`/work/notes/psp-contract.md`, Toss Payments
//! style): confirm, inquiry by order id, cancel. Each call says what is known after
//! it: an answer the PSP gave ([`Answer`]), a request that never reached it
//! ([`CallError::NotSent`]), or an unknown outcome ([`CallError::Unknown`]: a timeout,
//! a connection closed without a response, an unreadable body). Deciding what an
//! answer means for a payment is the resolver's job. JSON stops here.

use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use secrecy::{ExposeSecret as _, SecretString};
use serde::{Deserialize, Serialize};

use crate::config::PspConfig;

/// How long connecting may take, within the whole call's timeout.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);

/// A payment as the PSP reports it.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PspPayment {
    pub payment_key: String,
    pub order_id: String,
    pub status: PspStatus,
    pub total_amount: i64,
    pub currency: String,
    #[serde(default)]
    pub approved_at: Option<DateTime<Utc>>,
    #[serde(default)]
    pub failure: Option<PspFailure>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum PspStatus {
    InProgress,
    Done,
    Aborted,
    Canceled,
    /// A status this client does not know: treated as undecided.
    #[serde(other)]
    Unknown,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct PspFailure {
    pub code: String,
    #[serde(default)]
    pub message: String,
}

/// The PSP's error body.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
struct ErrorBody {
    code: String,
    #[serde(default)]
    message: String,
}

/// What the PSP answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    /// 200 with a payment object.
    Payment(PspPayment),
    /// A 4xx with its error code (`code` empty if the body had none).
    Refused {
        status: u16,
        code: String,
        message: String,
    },
    /// A 5xx: the PSP answered but says nothing about the charge.
    ServerError { status: u16, code: String },
}

/// A call that got no answer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CallError {
    /// The request never reached the PSP (it could not be connected to).
    #[error("payment provider unreachable: {0}")]
    NotSent(String),
    /// The request may have reached the PSP; its outcome is unknown.
    #[error("payment provider outcome unknown: {0}")]
    Unknown(String),
}

/// The operations, as the metrics label them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Operation {
    Confirm,
    Inquire,
    Cancel,
}

impl Operation {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Confirm => "confirm",
            Self::Inquire => "inquire",
            Self::Cancel => "cancel",
        }
    }
}

/// The codes that mean the PSP refused our request rather than the card.
const OUR_FAULT: &[&str] = &["UNAUTHORIZED_KEY", "INVALID_REQUEST"];

/// The PSP's HTTP API.
#[derive(Clone)]
pub struct PspClient {
    http: reqwest::Client,
    base: String,
    secret_key: SecretString,
}

impl std::fmt::Debug for PspClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PspClient")
            .field("base", &self.base)
            .finish_non_exhaustive()
    }
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ConfirmBody<'a> {
    order_id: &'a str,
    amount: i64,
    currency: &'a str,
    card_token: &'a str,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct CancelBody<'a> {
    cancel_reason: &'a str,
}

impl PspClient {
    pub fn new(config: &PspConfig) -> Result<Self, reqwest::Error> {
        let http = reqwest::Client::builder()
            .connect_timeout(CONNECT_TIMEOUT)
            .timeout(config.timeout)
            .build()?;
        Ok(Self {
            http,
            base: config.url.trim_end_matches('/').to_owned(),
            secret_key: config.secret_key.clone(),
        })
    }

    /// `POST /v1/payments/confirm` under `idempotency_key`.
    pub async fn confirm(
        &self,
        order_id: &str,
        amount: i64,
        currency: &str,
        card_token: &str,
        idempotency_key: &str,
    ) -> Result<Answer, CallError> {
        let request = self
            .http
            .post(format!("{}/v1/payments/confirm", self.base))
            .header("Idempotency-Key", idempotency_key)
            .json(&ConfirmBody {
                order_id,
                amount,
                currency,
                card_token,
            });
        self.call(Operation::Confirm, request).await
    }

    /// `GET /v1/payments/orders/{orderId}`.
    pub async fn inquire(&self, order_id: &str) -> Result<Answer, CallError> {
        let request = self.http.get(format!(
            "{}/v1/payments/orders/{}",
            self.base,
            path_segment(order_id)
        ));
        self.call(Operation::Inquire, request).await
    }

    /// `POST /v1/payments/{paymentKey}/cancel` under `idempotency_key`.
    pub async fn cancel(
        &self,
        payment_key: &str,
        reason: &str,
        idempotency_key: &str,
    ) -> Result<Answer, CallError> {
        let request = self
            .http
            .post(format!(
                "{}/v1/payments/{}/cancel",
                self.base,
                path_segment(payment_key)
            ))
            .header("Idempotency-Key", idempotency_key)
            .json(&CancelBody {
                cancel_reason: reason,
            });
        self.call(Operation::Cancel, request).await
    }

    async fn call(
        &self,
        operation: Operation,
        request: reqwest::RequestBuilder,
    ) -> Result<Answer, CallError> {
        let started = Instant::now();
        let result = self.send(request).await;
        // How long each PSP call took, answered or not.
        metrics::histogram!("psp_call_duration_seconds", "operation" => operation.as_str())
            .record(started.elapsed().as_secs_f64());
        let outcome = match &result {
            Ok(Answer::Payment(_)) => "ok",
            Ok(Answer::Refused { code, .. }) if OUR_FAULT.contains(&code.as_str()) => "error",
            Ok(Answer::Refused {
                status: 409, code, ..
            }) if code == "ALREADY_PROCESSING_REQUEST" => "unknown",
            Ok(Answer::Refused { .. }) => "declined",
            Ok(Answer::ServerError { .. }) | Err(CallError::Unknown(_)) => "unknown",
            Err(CallError::NotSent(_)) => "error",
        };
        // PSP calls by operation and what came of them: ok (2xx), declined (a 4xx
        // about the payment), unknown (the charge's fate is not known: 5xx, timeout,
        // dropped connection, still processing), error (never sent, or our request
        // refused as unauthorized or invalid).
        metrics::counter!(
            "psp_calls_total", "operation" => operation.as_str(), "outcome" => outcome
        )
        .increment(1);
        result
    }

    async fn send(&self, request: reqwest::RequestBuilder) -> Result<Answer, CallError> {
        let response = request
            .basic_auth(self.secret_key.expose_secret(), Some(""))
            .send()
            .await
            .map_err(|e| {
                if e.is_connect() {
                    CallError::NotSent(error_chain(&e))
                } else {
                    CallError::Unknown(error_chain(&e))
                }
            })?;
        let status = response.status();
        let body = response
            .bytes()
            .await
            .map_err(|e| CallError::Unknown(format!("reading the answer: {}", error_chain(&e))))?;
        if status.is_success() {
            return serde_json::from_slice::<PspPayment>(&body)
                .map(Answer::Payment)
                .map_err(|e| CallError::Unknown(format!("unreadable {status} answer: {e}")));
        }
        let error = serde_json::from_slice::<ErrorBody>(&body).ok();
        let (code, message) = error.map_or_else(Default::default, |e| (e.code, e.message));
        if status.is_server_error() {
            return Ok(Answer::ServerError {
                status: status.as_u16(),
                code,
            });
        }
        if status.is_client_error() {
            return Ok(Answer::Refused {
                status: status.as_u16(),
                code,
                message,
            });
        }
        Err(CallError::Unknown(format!("unexpected status {status}")))
    }
}

/// `value` percent-encoded for one path segment (order ids and payment keys are
/// usually safe already).
fn path_segment(value: &str) -> String {
    value
        .bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// An error with its sources, e.g. "error sending request: connection closed".
fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_payment_object_parses_and_an_unknown_status_is_undecided() {
        let json = r#"{"paymentKey":"pk_1","orderId":"order-1","status":"DONE","totalAmount":40000,
            "currency":"KRW","method":"CARD","approvedAt":"2026-03-01T10:00:00+09:00",
            "failure":null,"cancels":[]}"#;
        let payment: PspPayment = serde_json::from_str(json).expect("parses");
        assert_eq!(payment.status, PspStatus::Done);
        assert_eq!(payment.total_amount, 40_000);
        assert!(payment.approved_at.is_some());
        let odd = json.replace("\"DONE\"", "\"PARTIAL_CANCELED\"");
        let payment: PspPayment = serde_json::from_str(&odd).expect("parses");
        assert_eq!(payment.status, PspStatus::Unknown);
    }

    #[test]
    fn path_segments_are_encoded() {
        assert_eq!(path_segment("abc-DEF_1"), "abc-DEF_1");
        assert_eq!(path_segment("a/b c"), "a%2Fb%20c");
    }
}

//! A payment provider for the tests, implementing `/work/notes/psp-contract.md` in
//! memory: the test card tokens, idempotency keys, inquiry, cancel and the ledger. Its
//! state outlives [`Psp::stop`], so [`Psp::restart`] is "the PSP back on the same
//! database". (A stand-in until the `psp-sandbox` crate can be a dev-dependency.)

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Json;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::{Value, json};
use tokio::task::JoinHandle;
use uuid::Uuid;

pub const SECRET_KEY: &str = "test_sk_marquee";
/// When `tok_slow` answers (the sandbox's PSP_SLOW_MS).
pub const SLOW_MS: u64 = 1_200;

#[derive(Clone, Debug)]
struct Payment {
    key: String,
    order_id: String,
    status: &'static str,
    amount: i64,
    failure: Option<(&'static str, &'static str)>,
    /// An undecided payment's fate at its first inquiry.
    decides: Option<&'static str>,
    canceled: bool,
}

impl Payment {
    fn json(&self) -> Value {
        json!({
            "paymentKey": self.key, "orderId": self.order_id, "status": self.status,
            "totalAmount": self.amount, "currency": "KRW", "method": "CARD",
            "approvedAt": (self.status == "DONE" || self.status == "CANCELED")
                .then(|| chrono::Utc::now().to_rfc3339()),
            "failure": self.failure.map(|(code, message)| json!({"code": code, "message": message})),
            "cancels": if self.canceled {
                json!([{"cancelAmount": self.amount, "canceledAt": chrono::Utc::now().to_rfc3339(),
                        "cancelReason": "cancel"}])
            } else { json!([]) },
        })
    }
}

#[derive(Default)]
struct Books {
    /// By order id.
    payments: HashMap<String, Payment>,
    /// Answers by idempotency key (`None`: still in progress).
    answers: HashMap<String, Option<(u16, Value)>>,
    /// Orders a `tok_5xx_once` confirm failed for.
    failed_once: Vec<String>,
    /// Successful charges per order.
    charges: HashMap<String, u32>,
}

type Shared = Arc<Mutex<Books>>;

pub struct Psp {
    books: Shared,
    addr: SocketAddr,
    server: Option<JoinHandle<()>>,
}

pub struct Ledger {
    pub captured: i64,
    pub refunded: i64,
    pub net: i64,
    pub double_charges: i64,
}

pub struct OrderLedger {
    pub charges: i64,
    pub captured: i64,
    pub refunded: i64,
}

impl Psp {
    pub async fn start() -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind psp");
        let addr = listener.local_addr().expect("psp address");
        let books = Shared::default();
        let server = Some(serve(listener, books.clone()));
        Self {
            books,
            addr,
            server,
        }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Stops answering (connections are refused or cut); the books stay.
    pub async fn stop(&mut self) {
        if let Some(server) = self.server.take() {
            server.abort();
            let _ = server.await;
        }
    }

    /// Serves again on the same port with the same books.
    pub async fn restart(&mut self) {
        self.stop().await;
        let listener = tokio::net::TcpListener::bind(self.addr)
            .await
            .expect("rebind psp");
        self.server = Some(serve(listener, self.books.clone()));
    }

    pub async fn stop_for_good(mut self) {
        self.stop().await;
    }

    pub async fn ledger(&self) -> Ledger {
        let books = self.books.lock().expect("books");
        let mut ledger = Ledger {
            captured: 0,
            refunded: 0,
            net: 0,
            double_charges: 0,
        };
        for payment in books.payments.values() {
            if payment.status == "DONE" || payment.status == "CANCELED" {
                ledger.captured += payment.amount;
            }
            if payment.canceled {
                ledger.refunded += payment.amount;
            }
        }
        ledger.double_charges = books.charges.values().filter(|n| **n > 1).count() as i64;
        ledger.net = ledger.captured - ledger.refunded;
        ledger
    }

    pub async fn order(&self, booking: Uuid) -> OrderLedger {
        let books = self.books.lock().expect("books");
        let order = booking.to_string();
        let payment = books.payments.get(&order);
        let captured = payment
            .filter(|p| p.status == "DONE" || p.status == "CANCELED")
            .map_or(0, |p| p.amount);
        OrderLedger {
            charges: i64::from(books.charges.get(&order).copied().unwrap_or(0)),
            captured,
            refunded: payment.filter(|p| p.canceled).map_or(0, |p| p.amount),
        }
    }
}

fn serve(listener: tokio::net::TcpListener, books: Shared) -> JoinHandle<()> {
    let app = axum::Router::new()
        .route("/v1/payments/confirm", post(confirm))
        .route("/v1/payments/orders/{order}", get(inquire))
        .route("/v1/payments/{key}/cancel", post(cancel))
        .with_state(books);
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    })
}

fn error(status: u16, code: &str) -> (u16, Value) {
    (
        status,
        json!({"code": code, "message": code.to_lowercase()}),
    )
}

fn reply((status, body): (u16, Value)) -> Response {
    (
        StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
        Json(body),
    )
        .into_response()
}

fn authorized(headers: &HeaderMap) -> bool {
    use base64_free::encode;
    headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v == format!("Basic {}", encode(&format!("{SECRET_KEY}:"))))
}

/// Drops the connection without answering: the handler's task ends without a response.
fn drop_connection() -> ! {
    panic!("psp test double drops the connection on purpose")
}

async fn confirm(
    State(books): State<Shared>,
    headers: HeaderMap,
    Json(body): Json<Value>,
) -> Response {
    if !authorized(&headers) {
        return reply(error(401, "UNAUTHORIZED_KEY"));
    }
    let Some(key) = headers
        .get("idempotency-key")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
    else {
        return reply(error(400, "INVALID_REQUEST"));
    };
    let order = body["orderId"].as_str().unwrap_or_default().to_owned();
    let amount = body["amount"].as_i64().unwrap_or_default();
    let token = body["cardToken"].as_str().unwrap_or_default().to_owned();
    {
        let mut b = books.lock().expect("books");
        match b.answers.get(&key) {
            Some(Some(answer)) => return reply(answer.clone()),
            Some(None) => return reply(error(409, "ALREADY_PROCESSING_REQUEST")),
            None => {}
        }
        if b.payments
            .get(&order)
            .is_some_and(|p| p.status == "DONE" || p.status == "CANCELED")
        {
            return reply(error(409, "ALREADY_PROCESSED_PAYMENT"));
        }
        b.answers.insert(key.clone(), None);
    }
    let new = |status, amount, failure, decides| Payment {
        key: format!("pk_{}", Uuid::new_v4().simple()),
        order_id: order.clone(),
        status,
        amount,
        failure,
        decides,
        canceled: false,
    };
    let record = |payment: Payment, answer: Option<(u16, Value)>| {
        let mut b = books.lock().expect("books");
        if payment.status == "DONE" {
            *b.charges.entry(order.clone()).or_default() += 1;
        }
        let body = payment.json();
        b.payments.insert(order.clone(), payment);
        let answer = answer.unwrap_or((200, body));
        b.answers.insert(key.clone(), Some(answer.clone()));
        answer
    };
    let forget = || {
        books.lock().expect("books").answers.remove(&key);
    };
    let declined = |code: &'static str, status: u16| {
        Some(error(status, code)).map(|answer| {
            record(
                new("ABORTED", amount, Some((code, "declined")), None),
                Some(answer),
            )
        })
    };
    let answer = match token.as_str() {
        "tok_approve" => record(new("DONE", amount, None, None), None),
        "tok_wrong_amount" => record(new("DONE", amount + 1, None, None), None),
        "tok_decline" => declined("REJECT_CARD_PAYMENT", 403).expect("answer"),
        "tok_expired" => declined("INVALID_CARD_EXPIRATION", 400).expect("answer"),
        "tok_charge_drop" => {
            record(new("DONE", amount, None, None), None);
            drop_connection()
        }
        "tok_fail_drop" => {
            declined("REJECT_CARD_PAYMENT", 403);
            drop_connection()
        }
        "tok_undecided" | "tok_undecided_fail" => {
            let fate = if token == "tok_undecided" {
                "DONE"
            } else {
                "ABORTED"
            };
            let mut b = books.lock().expect("books");
            b.payments
                .insert(order.clone(), new("IN_PROGRESS", amount, None, Some(fate)));
            drop(b);
            drop_connection()
        }
        "tok_slow" => {
            // Finishes even if the caller gives up and closes the connection.
            let payment = new("DONE", amount, None, None);
            let (books, key, order) = (books.clone(), key.clone(), order.clone());
            let finished = tokio::spawn(async move {
                tokio::time::sleep(Duration::from_millis(SLOW_MS)).await;
                let mut b = books.lock().expect("books");
                *b.charges.entry(order.clone()).or_default() += 1;
                let answer = (200, payment.json());
                b.payments.insert(order, payment);
                b.answers.insert(key, Some(answer.clone()));
                answer
            });
            finished.await.expect("slow confirm")
        }
        "tok_5xx" => {
            forget();
            error(500, "PROVIDER_ERROR")
        }
        "tok_5xx_once" => {
            let first = {
                let mut b = books.lock().expect("books");
                let first = !b.failed_once.contains(&order);
                if first {
                    b.failed_once.push(order.clone());
                }
                first
            };
            if first {
                forget();
                error(500, "PROVIDER_ERROR")
            } else {
                record(new("DONE", amount, None, None), None)
            }
        }
        _ => declined("INVALID_CARD_NUMBER", 400).expect("answer"),
    };
    reply(answer)
}

async fn inquire(
    State(books): State<Shared>,
    headers: HeaderMap,
    Path(order): Path<String>,
) -> Response {
    if !authorized(&headers) {
        return reply(error(401, "UNAUTHORIZED_KEY"));
    }
    let mut b = books.lock().expect("books");
    let Some(payment) = b.payments.get_mut(&order) else {
        return reply(error(404, "NOT_FOUND_PAYMENT"));
    };
    if let Some(fate) = payment.decides.take() {
        payment.status = fate;
        if fate == "ABORTED" {
            payment.failure = Some(("REJECT_CARD_PAYMENT", "declined"));
        }
    }
    let body = payment.json();
    if payment.status == "DONE" && body["status"] == "DONE" && !b.charges.contains_key(&order) {
        b.charges.insert(order.clone(), 1);
    }
    reply((200, body))
}

async fn cancel(
    State(books): State<Shared>,
    headers: HeaderMap,
    Path(key): Path<String>,
) -> Response {
    if !authorized(&headers) {
        return reply(error(401, "UNAUTHORIZED_KEY"));
    }
    let mut b = books.lock().expect("books");
    let Some(payment) = b.payments.values_mut().find(|p| p.key == key) else {
        return reply(error(404, "NOT_FOUND_PAYMENT"));
    };
    match payment.status {
        "DONE" => {
            payment.status = "CANCELED";
            payment.canceled = true;
            reply((200, payment.json()))
        }
        "CANCELED" => reply((200, payment.json())),
        _ => reply(error(403, "NOT_CANCELABLE_PAYMENT")),
    }
}

/// Base64 without a dependency (the test double's Basic auth check).
mod base64_free {
    const TABLE: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

    pub fn encode(text: &str) -> String {
        let bytes = text.as_bytes();
        let mut out = String::new();
        for chunk in bytes.chunks(3) {
            let b = [
                chunk[0],
                *chunk.get(1).unwrap_or(&0),
                *chunk.get(2).unwrap_or(&0),
            ];
            let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
            for i in 0..4 {
                if i <= chunk.len() {
                    out.push(TABLE[((n >> (18 - 6 * i)) & 63) as usize] as char);
                } else {
                    out.push('=');
                }
            }
        }
        out
    }
}

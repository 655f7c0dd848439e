//! The sandbox PSP over real HTTP (reqwest, and raw TCP where the bytes matter) against
//! the real local PostgreSQL. Each test has a database of its own and drops it at the
//! end, so they run in parallel.

use std::time::{Duration, Instant};

use base64::Engine as _;
use psp_sandbox::{Application, PspConfig};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::sync::oneshot;
use uuid::Uuid;

const SLOW: Duration = Duration::from_millis(1500);

/// A running sandbox on its own database.
struct TestPsp {
    base: String,
    addr: std::net::SocketAddr,
    database_url: String,
    client: reqwest::Client,
    stop: Option<oneshot::Sender<()>>,
    server: Option<tokio::task::JoinHandle<anyhow::Result<()>>>,
}

/// One HTTP answer: status, the body as sent, and the body as JSON.
#[derive(Debug)]
struct Reply {
    status: u16,
    raw: String,
    body: Value,
}

fn auth() -> String {
    let encoded = base64::engine::general_purpose::STANDARD.encode("test_sk_marquee:");
    format!("Basic {encoded}")
}

fn new_order() -> String {
    format!("order_{}", Uuid::new_v4().simple())
}

fn confirm_body(order_id: &str, amount: i64, token: &str) -> Value {
    json!({"orderId": order_id, "amount": amount, "currency": "KRW", "cardToken": token})
}

impl TestPsp {
    async fn spawn() -> Self {
        let database_url = format!(
            "{}/psp_test_{}",
            marquee_testkit::pg_base(),
            Uuid::new_v4().simple()
        );
        Self::on(database_url).await
    }

    /// A sandbox on `database_url` (made if missing).
    async fn on(database_url: String) -> Self {
        let mut config = PspConfig::local(database_url.clone());
        config.slow = SLOW;
        let app = tokio::time::timeout(Duration::from_secs(30), Application::build(config))
            .await
            .expect("build timed out")
            .expect("build the sandbox");
        let addr = app.addr();
        let (stop, stopped) = oneshot::channel::<()>();
        let server = tokio::spawn(app.run_with_shutdown(async {
            let _ = stopped.await;
        }));
        Self {
            base: format!("http://{addr}"),
            addr,
            database_url,
            client: reqwest::Client::builder()
                .timeout(Duration::from_secs(20))
                .build()
                .expect("client"),
            stop: Some(stop),
            server: Some(server),
        }
    }

    /// Stops the server and waits for it, keeping the database.
    async fn stop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(server) = self.server.take() {
            server.await.expect("server task").expect("server ran");
        }
    }

    /// Stops the server and drops the database.
    async fn finish(mut self) {
        self.stop().await;
        marquee_infra::db::drop_database(&self.database_url)
            .await
            .expect("drop the test database");
    }

    async fn send(&self, request: reqwest::RequestBuilder) -> Reply {
        let response = request.send().await.expect("an answer");
        let status = response.status().as_u16();
        let raw = response.text().await.expect("body");
        let body = serde_json::from_str(&raw)
            .unwrap_or_else(|e| panic!("status {status}: not JSON ({e}): {raw:?}"));
        Reply { status, raw, body }
    }

    fn post(&self, path: &str) -> reqwest::RequestBuilder {
        self.client
            .post(format!("{}{path}", self.base))
            .header("authorization", auth())
    }

    fn get(&self, path: &str) -> reqwest::RequestBuilder {
        self.client
            .get(format!("{}{path}", self.base))
            .header("authorization", auth())
    }

    async fn confirm(&self, key: &str, body: &Value) -> Reply {
        self.send(
            self.post("/v1/payments/confirm")
                .header("idempotency-key", key)
                .json(body),
        )
        .await
    }

    async fn inquire(&self, order_id: &str) -> Reply {
        self.send(self.get(&format!("/v1/payments/orders/{order_id}")))
            .await
    }

    async fn cancel(&self, payment_key: &str, key: &str, reason: &str) -> Reply {
        self.send(
            self.post(&format!("/v1/payments/{payment_key}/cancel"))
                .header("idempotency-key", key)
                .json(&json!({"cancelReason": reason})),
        )
        .await
    }

    async fn ledger(&self) -> Value {
        let reply = self.send(self.get("/v1/ledger")).await;
        assert_eq!(reply.status, 200, "{}", reply.raw);
        reply.body
    }

    async fn order_ledger(&self, order_id: &str) -> Value {
        let reply = self
            .send(self.get(&format!("/v1/ledger/orders/{order_id}")))
            .await;
        assert_eq!(reply.status, 200, "{}", reply.raw);
        reply.body
    }

    /// Sends a confirm over a raw TCP connection and returns every byte the server
    /// wrote before closing it.
    async fn raw_confirm(&self, key: &str, body: &Value) -> Vec<u8> {
        let body = body.to_string();
        let request = format!(
            "POST /v1/payments/confirm HTTP/1.1\r\nhost: {}\r\nauthorization: {}\r\n\
             idempotency-key: {key}\r\ncontent-type: application/json\r\n\
             content-length: {}\r\n\r\n{body}",
            self.addr,
            auth(),
            body.len()
        );
        let mut stream = tokio::net::TcpStream::connect(self.addr)
            .await
            .expect("connect");
        stream
            .write_all(request.as_bytes())
            .await
            .expect("write the request");
        let mut received = Vec::new();
        let read = tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut received))
            .await
            .expect("the server closes the connection");
        // A reset instead of an orderly close is as good: nothing was answered.
        if let Err(error) = read {
            assert!(received.is_empty(), "{error}");
        }
        received
    }
}

fn assert_error(reply: &Reply, status: u16, code: &str) {
    assert_eq!(reply.status, status, "{}", reply.raw);
    assert_eq!(reply.body["code"], code, "{}", reply.raw);
    assert!(
        reply.body["message"]
            .as_str()
            .is_some_and(|m| !m.is_empty()),
        "{}",
        reply.raw
    );
}

#[tokio::test]
async fn approve_replays_the_same_answer_and_never_charges_twice() {
    let psp = TestPsp::spawn().await;
    let order = new_order();
    let first = psp
        .confirm("key-1", &confirm_body(&order, 40000, "tok_approve"))
        .await;
    assert_eq!(first.status, 200, "{}", first.raw);
    let payment = &first.body;
    assert_eq!(payment["status"], "DONE");
    assert_eq!(payment["orderId"], order.as_str());
    assert_eq!(payment["totalAmount"], 40000);
    assert_eq!(payment["currency"], "KRW");
    assert_eq!(payment["method"], "CARD");
    assert!(
        payment["paymentKey"]
            .as_str()
            .is_some_and(|k| !k.is_empty())
    );
    assert!(
        chrono::DateTime::parse_from_rfc3339(payment["approvedAt"].as_str().expect("approvedAt"))
            .is_ok()
    );
    assert_eq!(payment["failure"], Value::Null);
    assert_eq!(payment["cancels"], json!([]));

    // The same key: the first answer, byte for byte, whatever the body says now.
    for body in [
        confirm_body(&order, 40000, "tok_approve"),
        confirm_body(&order, 1, "tok_decline"),
        json!({"nonsense": true}),
    ] {
        let again = psp.confirm("key-1", &body).await;
        assert_eq!((again.status, &again.raw), (first.status, &first.raw));
    }
    // Another key for the order: refused, no second charge.
    let other = psp
        .confirm("key-2", &confirm_body(&order, 40000, "tok_approve"))
        .await;
    assert_error(&other, 409, "ALREADY_PROCESSED_PAYMENT");

    let inquiry = psp.inquire(&order).await;
    assert_eq!((inquiry.status, &inquiry.raw), (200, &first.raw));
    assert_eq!(
        psp.order_ledger(&order).await,
        json!({"orderId": order, "charges": 1, "captured": 40000, "refunded": 0})
    );
    assert_eq!(
        psp.ledger().await,
        json!({"captured": 40000, "refunded": 0, "net": 40000, "payments": 1, "doubleCharges": 0})
    );
    psp.finish().await;
}

/// Replays of a decided request neither wait for nor lock each other, and none leaves
/// the key locked behind it: clients retrying at once, again and again, always get the
/// first answer, never "still in progress".
#[tokio::test]
async fn back_to_back_replays_all_get_the_first_answer() {
    let psp = TestPsp::spawn().await;
    let order = new_order();
    let body = confirm_body(&order, 40000, "tok_approve");
    let first = psp.confirm("key-1", &body).await;
    assert_eq!(first.status, 200, "{}", first.raw);
    // Eight clients retrying at once, fifty times each.
    let replays = futures::future::join_all((0..8).map(|_| async {
        let mut replies = Vec::new();
        for _ in 0..50 {
            let again = psp.confirm("key-1", &body).await;
            replies.push((again.status, again.raw));
        }
        replies
    }))
    .await;
    for (attempt, reply) in replays.into_iter().flatten().enumerate() {
        assert_eq!(reply, (first.status, first.raw.clone()), "replay {attempt}");
    }
    assert_eq!(
        psp.order_ledger(&order).await,
        json!({"orderId": order, "charges": 1, "captured": 40000, "refunded": 0})
    );
    psp.finish().await;
}

#[tokio::test]
async fn declines_and_unknown_cards() {
    let psp = TestPsp::spawn().await;

    let declined = new_order();
    let reply = psp
        .confirm("d", &confirm_body(&declined, 5000, "tok_decline"))
        .await;
    assert_error(&reply, 403, "REJECT_CARD_PAYMENT");
    assert_eq!(reply.body["message"], "잔액 부족 (insufficient balance)");
    let inquiry = psp.inquire(&declined).await;
    assert_eq!(inquiry.status, 200);
    assert_eq!(inquiry.body["status"], "ABORTED");
    assert_eq!(inquiry.body["failure"]["code"], "REJECT_CARD_PAYMENT");
    assert_eq!(inquiry.body["approvedAt"], Value::Null);
    let again = psp
        .confirm("d", &confirm_body(&declined, 5000, "tok_approve"))
        .await;
    assert_eq!((again.status, &again.raw), (reply.status, &reply.raw));

    let expired = new_order();
    let reply = psp
        .confirm("e", &confirm_body(&expired, 5000, "tok_expired"))
        .await;
    assert_error(&reply, 400, "INVALID_CARD_EXPIRATION");
    let inquiry = psp.inquire(&expired).await;
    assert_eq!(inquiry.body["status"], "ABORTED");
    assert_eq!(inquiry.body["failure"]["code"], "INVALID_CARD_EXPIRATION");

    let unknown = new_order();
    let reply = psp
        .confirm("u", &confirm_body(&unknown, 5000, "tok_nope"))
        .await;
    assert_error(&reply, 400, "INVALID_CARD_NUMBER");
    assert_error(&psp.inquire(&unknown).await, 404, "NOT_FOUND_PAYMENT");

    // A declined order may be paid with another card under another key.
    let retry = psp
        .confirm("d2", &confirm_body(&declined, 5000, "tok_approve"))
        .await;
    assert_eq!(retry.status, 200, "{}", retry.raw);
    assert_eq!(retry.body["status"], "DONE");
    assert_eq!(psp.order_ledger(&declined).await["charges"], 1);

    let ledger = psp.ledger().await;
    assert_eq!(ledger["captured"], 5000);
    assert_eq!(ledger["payments"], 1);
    psp.finish().await;
}

#[tokio::test]
async fn provider_errors_record_nothing_and_wrong_amounts_are_recorded() {
    let psp = TestPsp::spawn().await;

    let broken = new_order();
    for _ in 0..2 {
        let reply = psp
            .confirm("x", &confirm_body(&broken, 1000, "tok_5xx"))
            .await;
        assert_error(&reply, 500, "PROVIDER_ERROR");
        assert_error(&psp.inquire(&broken).await, 404, "NOT_FOUND_PAYMENT");
    }

    let once = new_order();
    let reply = psp
        .confirm("o", &confirm_body(&once, 1000, "tok_5xx_once"))
        .await;
    assert_error(&reply, 500, "PROVIDER_ERROR");
    assert_error(&psp.inquire(&once).await, 404, "NOT_FOUND_PAYMENT");
    // The retry, with the same key, approves (a 500 is not remembered under its key).
    let retry = psp
        .confirm("o", &confirm_body(&once, 1000, "tok_5xx_once"))
        .await;
    assert_eq!(retry.status, 200, "{}", retry.raw);
    assert_eq!(retry.body["status"], "DONE");

    let wrong = new_order();
    let reply = psp
        .confirm("w", &confirm_body(&wrong, 1000, "tok_wrong_amount"))
        .await;
    assert_eq!(reply.status, 200, "{}", reply.raw);
    assert_eq!(reply.body["totalAmount"], 1001);
    assert_eq!(psp.inquire(&wrong).await.body["totalAmount"], 1001);
    assert_eq!(psp.order_ledger(&wrong).await["captured"], 1001);

    assert_eq!(psp.ledger().await["captured"], 2001);
    psp.finish().await;
}

#[tokio::test]
async fn slow_approves_at_once_and_answers_late() {
    let psp = TestPsp::spawn().await;
    let order = new_order();
    let body = confirm_body(&order, 3000, "tok_slow");
    let started = Instant::now();
    let impatient = psp
        .post("/v1/payments/confirm")
        .header("idempotency-key", "s")
        .timeout(Duration::from_millis(300))
        .json(&body)
        .send()
        .await;
    assert!(impatient.is_err_and(|e| e.is_timeout()));
    // The charge is committed before the answer is sent.
    let inquiry = psp.inquire(&order).await;
    assert_eq!(inquiry.body["status"], "DONE", "{}", inquiry.raw);
    assert!(started.elapsed() < SLOW);

    let started = Instant::now();
    let patient = psp
        .confirm("s2", &confirm_body(&new_order(), 3000, "tok_slow"))
        .await;
    assert_eq!(patient.status, 200, "{}", patient.raw);
    assert!(started.elapsed() >= SLOW, "{:?}", started.elapsed());
    assert_eq!(psp.ledger().await["payments"], 2);
    psp.finish().await;
}

#[tokio::test]
async fn dropping_cards_close_the_connection_after_committing() {
    let psp = TestPsp::spawn().await;

    // tok_charge_drop: no byte comes back, but the charge is recorded.
    let charged = new_order();
    let received = psp
        .raw_confirm("c", &confirm_body(&charged, 7000, "tok_charge_drop"))
        .await;
    assert!(
        received.is_empty(),
        "{:?}",
        String::from_utf8_lossy(&received)
    );
    assert_eq!(psp.order_ledger(&charged).await["charges"], 1);
    assert_eq!(psp.inquire(&charged).await.body["status"], "DONE");
    // reqwest sees an error too, and the order is not charged twice.
    let other = new_order();
    let error = psp
        .post("/v1/payments/confirm")
        .header("idempotency-key", "c2")
        .json(&confirm_body(&other, 7000, "tok_charge_drop"))
        .send()
        .await;
    assert!(error.is_err(), "{error:?}");
    // The same key again: what the dropped answer would have been.
    let replay = psp
        .confirm("c2", &confirm_body(&other, 7000, "tok_charge_drop"))
        .await;
    assert_eq!(replay.status, 200, "{}", replay.raw);
    assert_eq!(replay.body["status"], "DONE");
    assert_eq!(psp.inquire(&other).await.raw, replay.raw);

    // tok_fail_drop: ABORTED recorded, nothing answered.
    let failed = new_order();
    let received = psp
        .raw_confirm("f", &confirm_body(&failed, 7000, "tok_fail_drop"))
        .await;
    assert!(received.is_empty());
    assert_eq!(psp.inquire(&failed).await.body["status"], "ABORTED");
    assert_error(
        &psp.confirm("f", &confirm_body(&failed, 7000, "tok_fail_drop"))
            .await,
        403,
        "REJECT_CARD_PAYMENT",
    );

    // tok_undecided: IN_PROGRESS until the first inquiry, which approves it.
    let undecided = new_order();
    let body = confirm_body(&undecided, 7000, "tok_undecided");
    assert!(psp.raw_confirm("n", &body).await.is_empty());
    assert_error(
        &psp.confirm("n", &body).await,
        409,
        "ALREADY_PROCESSING_REQUEST",
    );
    assert_error(
        &psp.confirm("n-other", &body).await,
        409,
        "ALREADY_PROCESSING_REQUEST",
    );
    assert_eq!(psp.order_ledger(&undecided).await["charges"], 0);
    let decided = psp.inquire(&undecided).await;
    assert_eq!(decided.body["status"], "DONE", "{}", decided.raw);
    assert_eq!(psp.order_ledger(&undecided).await["charges"], 1);
    let replay = psp.confirm("n", &body).await;
    assert_eq!((replay.status, &replay.raw), (200, &decided.raw));
    assert_eq!(psp.inquire(&undecided).await.raw, decided.raw);

    // tok_undecided_fail: decided ABORTED.
    let undecided_fail = new_order();
    let body = confirm_body(&undecided_fail, 7000, "tok_undecided_fail");
    assert!(psp.raw_confirm("nf", &body).await.is_empty());
    let decided = psp.inquire(&undecided_fail).await;
    assert_eq!(decided.body["status"], "ABORTED", "{}", decided.raw);
    assert_eq!(decided.body["failure"]["code"], "REJECT_CARD_PAYMENT");
    assert_error(&psp.confirm("nf", &body).await, 403, "REJECT_CARD_PAYMENT");

    let ledger = psp.ledger().await;
    assert_eq!(ledger["payments"], 3);
    assert_eq!(ledger["captured"], 21000);
    psp.finish().await;
}

#[tokio::test]
async fn concurrent_confirms_of_one_order_charge_once() {
    let psp = TestPsp::spawn().await;
    let order = new_order();
    let body = confirm_body(&order, 12000, "tok_approve");
    let keys: Vec<String> = (0..20).map(|i| format!("key-{i}")).collect();
    let replies = futures::future::join_all(keys.iter().map(|key| psp.confirm(key, &body))).await;
    let approved = replies.iter().filter(|r| r.status == 200).count();
    assert_eq!(approved, 1, "{replies:?}");
    for reply in replies.iter().filter(|r| r.status != 200) {
        assert_error(reply, 409, "ALREADY_PROCESSED_PAYMENT");
    }

    // One key, twenty times at once: one charge; every answer is that one or "in progress".
    let other = new_order();
    let body = confirm_body(&other, 12000, "tok_approve");
    let replies = futures::future::join_all((0..20).map(|_| psp.confirm("same", &body))).await;
    let approved: Vec<&Reply> = replies.iter().filter(|r| r.status == 200).collect();
    assert!(!approved.is_empty(), "{replies:?}");
    assert!(approved.iter().all(|r| r.raw == approved[0].raw));
    for reply in replies.iter().filter(|r| r.status != 200) {
        assert_error(reply, 409, "ALREADY_PROCESSING_REQUEST");
    }

    assert_eq!(psp.order_ledger(&order).await["charges"], 1);
    assert_eq!(psp.order_ledger(&other).await["charges"], 1);
    let ledger = psp.ledger().await;
    assert_eq!(ledger["payments"], 2);
    assert_eq!(ledger["captured"], 24000);
    assert_eq!(ledger["doubleCharges"], 0);
    psp.finish().await;
}

#[tokio::test]
async fn cancel_refunds_once() {
    let psp = TestPsp::spawn().await;
    let order = new_order();
    let paid = psp
        .confirm("p", &confirm_body(&order, 9000, "tok_approve"))
        .await;
    let payment_key = paid.body["paymentKey"]
        .as_str()
        .expect("paymentKey")
        .to_owned();

    let canceled = psp.cancel(&payment_key, "c1", "buyer changed mind").await;
    assert_eq!(canceled.status, 200, "{}", canceled.raw);
    assert_eq!(canceled.body["status"], "CANCELED");
    assert_eq!(canceled.body["approvedAt"], paid.body["approvedAt"]);
    let cancels = canceled.body["cancels"].as_array().expect("cancels");
    assert_eq!(cancels.len(), 1);
    assert_eq!(cancels[0]["cancelAmount"], 9000);
    assert_eq!(cancels[0]["cancelReason"], "buyer changed mind");
    assert!(
        chrono::DateTime::parse_from_rfc3339(cancels[0]["canceledAt"].as_str().expect("at"))
            .is_ok()
    );

    let replay = psp.cancel(&payment_key, "c1", "something else").await;
    assert_eq!((replay.status, &replay.raw), (200, &canceled.raw));
    let other_key = psp.cancel(&payment_key, "c2", "again").await;
    assert_eq!((other_key.status, &other_key.raw), (200, &canceled.raw));
    assert_eq!(psp.inquire(&order).await.raw, canceled.raw);

    // A canceled order is processed: no new charge for it.
    assert_error(
        &psp.confirm("p2", &confirm_body(&order, 9000, "tok_approve"))
            .await,
        409,
        "ALREADY_PROCESSED_PAYMENT",
    );

    let declined = new_order();
    psp.confirm("d", &confirm_body(&declined, 9000, "tok_decline"))
        .await;
    let aborted_key = psp.inquire(&declined).await.body["paymentKey"]
        .as_str()
        .expect("paymentKey")
        .to_owned();
    assert_error(
        &psp.cancel(&aborted_key, "c3", "why").await,
        403,
        "NOT_CANCELABLE_PAYMENT",
    );
    assert_error(
        &psp.cancel("tpk_nope", "c4", "why").await,
        404,
        "NOT_FOUND_PAYMENT",
    );
    assert_error(
        &psp.cancel(&payment_key, "c5", "").await,
        400,
        "INVALID_REQUEST",
    );
    let no_key = psp
        .send(
            psp.post(&format!("/v1/payments/{payment_key}/cancel"))
                .json(&json!({"cancelReason": "x"})),
        )
        .await;
    assert_error(&no_key, 400, "INVALID_REQUEST");

    assert_eq!(
        psp.order_ledger(&order).await,
        json!({"orderId": order, "charges": 1, "captured": 9000, "refunded": 9000})
    );
    assert_eq!(
        psp.ledger().await,
        json!({"captured": 9000, "refunded": 9000, "net": 0, "payments": 1, "doubleCharges": 0})
    );
    psp.finish().await;
}

#[tokio::test]
async fn ledger_sums_every_payment() {
    let psp = TestPsp::spawn().await;
    let mut keys = Vec::new();
    for (i, amount) in [1000, 2500, 40000].into_iter().enumerate() {
        let reply = psp
            .confirm(
                &format!("k{i}"),
                &confirm_body(&new_order(), amount, "tok_approve"),
            )
            .await;
        keys.push(reply.body["paymentKey"].as_str().expect("key").to_owned());
    }
    psp.confirm("kd", &confirm_body(&new_order(), 777, "tok_decline"))
        .await;
    assert_eq!(psp.cancel(&keys[1], "refund", "r").await.status, 200);
    assert_eq!(
        psp.ledger().await,
        json!({"captured": 43500, "refunded": 2500, "net": 41000, "payments": 3, "doubleCharges": 0})
    );
    assert_eq!(
        psp.order_ledger("never_seen").await,
        json!({"orderId": "never_seen", "charges": 0, "captured": 0, "refunded": 0})
    );
    psp.finish().await;
}

#[tokio::test]
async fn every_route_but_healthz_needs_the_secret_key() {
    let psp = TestPsp::spawn().await;
    let wrong = base64::engine::general_purpose::STANDARD.encode("sk_wrong:");
    for header in [
        None,
        Some(format!("Basic {wrong}")),
        Some("Basic not-base64!".to_owned()),
        Some("Bearer test_sk_marquee".to_owned()),
    ] {
        for (method, path) in [
            (reqwest::Method::POST, "/v1/payments/confirm"),
            (reqwest::Method::GET, "/v1/payments/orders/order_1"),
            (reqwest::Method::POST, "/v1/payments/tpk_1/cancel"),
            (reqwest::Method::GET, "/v1/ledger"),
            (reqwest::Method::GET, "/v1/ledger/orders/order_1"),
        ] {
            let mut request = psp
                .client
                .request(method.clone(), format!("{}{path}", psp.base))
                .header("idempotency-key", "k")
                .json(&confirm_body(&new_order(), 1, "tok_approve"));
            if let Some(header) = &header {
                request = request.header("authorization", header);
            }
            let reply = psp.send(request).await;
            assert_error(&reply, 401, "UNAUTHORIZED_KEY");
        }
    }
    let health = psp
        .send(psp.client.get(format!("{}/healthz", psp.base)))
        .await;
    assert_eq!(
        (health.status, &health.body),
        (200, &json!({"status": "ok"}))
    );
    assert_eq!(psp.ledger().await["payments"], 0);
    psp.finish().await;
}

#[tokio::test]
async fn bad_input_gets_a_4xx_json_error() {
    let psp = TestPsp::spawn().await;
    let order = new_order();
    let confirm = |key: &str| {
        psp.post("/v1/payments/confirm")
            .header("idempotency-key", key)
            .header("content-type", "application/json")
    };
    let cases: Vec<(&str, reqwest::RequestBuilder)> = vec![
        ("malformed", confirm("a").body("{\"orderId\":")),
        ("not an object", confirm("b").body("[1, 2]")),
        ("empty", confirm("c").body("")),
        ("missing amount", confirm("d").json(&json!({"orderId": order, "currency": "KRW", "cardToken": "tok_approve"}))),
        ("string amount", confirm("e").json(&json!({"orderId": order, "amount": "100", "currency": "KRW", "cardToken": "tok_approve"}))),
        ("negative amount", confirm("f").json(&confirm_body(&order, -5, "tok_approve"))),
        ("zero amount", confirm("g").json(&confirm_body(&order, 0, "tok_approve"))),
        ("huge amount", confirm("h").body(format!("{{\"orderId\":\"{order}\",\"amount\":1e400,\"currency\":\"KRW\",\"cardToken\":\"tok_approve\"}}"))),
        ("short order id", confirm("i").json(&confirm_body("abc", 5, "tok_approve"))),
        ("bad order id", confirm("j").json(&confirm_body("order id!", 5, "tok_approve"))),
        ("token not a string", confirm("k").json(&json!({"orderId": order, "amount": 5, "currency": "KRW", "cardToken": 5}))),
        ("other currency", confirm("l").json(&json!({"orderId": order, "amount": 5, "currency": "USD", "cardToken": "tok_approve"}))),
        ("no key", psp.post("/v1/payments/confirm").json(&confirm_body(&order, 5, "tok_approve"))),
        ("empty key", confirm("").json(&confirm_body(&order, 5, "tok_approve"))),
        ("long key", confirm(&"k".repeat(301)).json(&confirm_body(&order, 5, "tok_approve"))),
    ];
    for (case, request) in cases {
        let reply = psp.send(request).await;
        assert_eq!(reply.status, 400, "{case}: {}", reply.raw);
        assert_eq!(
            reply.body["code"], "INVALID_REQUEST",
            "{case}: {}",
            reply.raw
        );
        assert!(reply.body["message"].is_string(), "{case}");
    }
    // A key of 300 characters is fine.
    let reply = psp
        .confirm(&"k".repeat(300), &confirm_body(&order, 5, "tok_approve"))
        .await;
    assert_eq!(reply.status, 200, "{}", reply.raw);

    let oversized = format!(
        "{{\"orderId\":\"{}\",\"amount\":5,\"currency\":\"KRW\",\"cardToken\":\"{}\"}}",
        new_order(),
        "x".repeat(100 * 1024)
    );
    let reply = psp.send(confirm("big").body(oversized)).await;
    assert_eq!(reply.status, 413, "{}", reply.raw);
    assert_eq!(reply.body["code"], "INVALID_REQUEST");

    let reply = psp.send(psp.get("/v1/nothing/here")).await;
    assert_error(&reply, 404, "NOT_FOUND");
    let reply = psp.send(psp.client.get(format!("{}/", psp.base))).await;
    assert_error(&reply, 404, "NOT_FOUND");
    let reply = psp.send(psp.get("/v1/payments/confirm")).await;
    assert_error(&reply, 405, "METHOD_NOT_ALLOWED");
    let reply = psp.send(psp.get("/v1/payments/orders/%FF%FE")).await;
    assert!((400..500).contains(&reply.status), "{}", reply.raw);

    // Nothing but the one good confirm was recorded.
    assert_eq!(psp.ledger().await["payments"], 1);
    psp.finish().await;
}

#[tokio::test]
async fn a_restart_keeps_the_ledger_and_the_idempotency_records() {
    let mut psp = TestPsp::spawn().await;
    let order = new_order();
    let first = psp
        .confirm("r", &confirm_body(&order, 15000, "tok_approve"))
        .await;
    assert_eq!(first.status, 200);
    let undecided = new_order();
    assert!(
        psp.raw_confirm("u", &confirm_body(&undecided, 1000, "tok_undecided"))
            .await
            .is_empty()
    );
    let ledger = psp.ledger().await;
    psp.stop().await;

    let psp = TestPsp::on(psp.database_url.clone()).await;
    assert_eq!(psp.ledger().await, ledger);
    let replay = psp
        .confirm("r", &confirm_body(&order, 15000, "tok_approve"))
        .await;
    assert_eq!((replay.status, &replay.raw), (200, &first.raw));
    assert_error(
        &psp.confirm("r2", &confirm_body(&order, 15000, "tok_approve"))
            .await,
        409,
        "ALREADY_PROCESSED_PAYMENT",
    );
    assert_error(
        &psp.confirm("u", &confirm_body(&undecided, 1000, "tok_undecided"))
            .await,
        409,
        "ALREADY_PROCESSING_REQUEST",
    );
    assert_eq!(psp.inquire(&undecided).await.body["status"], "DONE");
    assert_eq!(psp.ledger().await["captured"], 16000);
    psp.finish().await;
}

//! Card payments through the payment provider: pay-svc against the real local
//! PostgreSQL and RabbitMQ and the PSP sandbox (`psp-sandbox`, on port 0). Each test has
//! its own databases and bus prefix. Every test ends with the money check: the PSP's
//! net (captured - refunded) equals pay-svc's card ledger and the amounts of the card
//! payments pay-svc reports captured and not refunded.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use lapin::options::{ExchangeDeleteOptions, QueueDeleteOptions};
use lapin::types::ShortString;
use marquee_infra::bus::{Bus, BusConfig, Envelope, HandleError, Handler};
use marquee_proto::saga;
use pay_svc::{Application, PayConfig, PspConfig};
use prost::Message;
use sqlx::PgPool;
use tokio::sync::{mpsc, oneshot};
use uuid::Uuid;

use marquee_testkit::psp::{SECRET_KEY, Sandbox};

const PG: &str = "postgres://postgres@127.0.0.1:5432";
const AMQP: &str = "amqp://guest:guest@127.0.0.1:5672/%2f";
const WAIT: Duration = Duration::from_secs(20);
const REPLY_QUEUE: &str = "test.replies";
/// When the sandbox answers `tok_slow` (its `PSP_SLOW_MS`).
const SLOW_MS: u64 = 1_200;

/// How pay-svc talks to the PSP in a test.
#[derive(Clone, Copy)]
struct Tuning {
    timeout_ms: u64,
    max_confirms: u32,
}

impl Default for Tuning {
    fn default() -> Self {
        Self {
            timeout_ms: 2_000,
            max_confirms: 3,
        }
    }
}

struct TestApp {
    pool: PgPool,
    database_url: String,
    bus: Bus,
    replies: mpsc::Receiver<Envelope>,
    stop: Option<oneshot::Sender<()>>,
    server: tokio::task::JoinHandle<anyhow::Result<()>>,
    psp: Sandbox,
}

impl TestApp {
    async fn spawn(tuning: Tuning) -> Self {
        let psp = Sandbox::start(Duration::from_millis(SLOW_MS)).await;
        let database_url = format!("{PG}/pay_card_test_{}", Uuid::new_v4().simple());
        let prefix = format!("test.{}.", Uuid::new_v4());
        let config = PayConfig {
            grpc_addr: "127.0.0.1:0".parse().expect("address"),
            metrics_addr: None,
            database_url: database_url.clone(),
            db_max_connections: 10,
            migrate_on_start: true,
            bus: BusConfig::new(AMQP, prefix.clone()),
            consumer_concurrency: 8,
            jwt: "card-test-secret".into(),
            welcome_credit_minor: 100_000,
            psp: PspConfig {
                url: psp.url(),
                secret_key: SECRET_KEY.into(),
                timeout: Duration::from_millis(tuning.timeout_ms),
                max_confirms: tuning.max_confirms,
                resolve_interval: Duration::from_millis(50),
            },
        };
        let app = tokio::time::timeout(Duration::from_secs(30), Application::build(config))
            .await
            .expect("build timed out")
            .expect("build pay-svc");
        let pool = app.pool().get_postgres_connection_pool().clone();
        let (stop, stopped) = oneshot::channel::<()>();
        let server = tokio::spawn(app.run_with_shutdown(async {
            let _ = stopped.await;
        }));
        let bus = Bus::connect(BusConfig::new(AMQP, prefix), WAIT)
            .await
            .expect("test bus");
        let (tx, replies) = mpsc::channel(64);
        let handler: Handler = Arc::new(move |envelope| {
            let tx = tx.clone();
            Box::pin(async move {
                tx.send(envelope)
                    .await
                    .map_err(|e| HandleError::Transient(e.into()))
            })
        });
        bus.consume(
            REPLY_QUEUE,
            &["payment.succeeded", "payment.failed", "refund.completed"],
            1,
            handler,
        )
        .await
        .expect("reply queue declared");
        Self {
            pool,
            database_url,
            bus,
            replies,
            stop: Some(stop),
            server,
            psp,
        }
    }

    async fn publish(&self, envelope: &Envelope) {
        if let Err(error) = self.bus.publish(envelope).await {
            panic!("publish {}: {error}", envelope.kind);
        }
    }

    async fn request_card(&self, booking: Uuid, amount: i64, token: &str) -> Envelope {
        let payload = saga::PaymentRequested {
            booking_id: booking.to_string(),
            buyer_id: Uuid::new_v4().to_string(),
            amount: Some(marquee_proto::Money {
                amount_minor: amount,
                currency: "KRW".to_owned(),
            }),
            method: "CARD".to_owned(),
            card_token: token.to_owned(),
        };
        let envelope = envelope("payment.requested", booking, payload.encode_to_vec());
        self.publish(&envelope).await;
        envelope
    }

    async fn request_refund(&self, booking: Uuid) -> Envelope {
        let payload = saga::RefundRequested {
            booking_id: booking.to_string(),
            buyer_id: Uuid::new_v4().to_string(),
            reason: "BUYER_CANCELLED".to_owned(),
        };
        let envelope = envelope("refund.requested", booking, payload.encode_to_vec());
        self.publish(&envelope).await;
        envelope
    }

    async fn next_reply(&mut self) -> Envelope {
        tokio::time::timeout(WAIT, self.replies.recv())
            .await
            .expect("no reply in time")
            .expect("reply channel closed")
    }

    async fn assert_no_reply(&mut self, within: Duration) {
        if let Ok(Some(reply)) = tokio::time::timeout(within, self.replies.recv()).await {
            panic!("unexpected reply {} for saga {}", reply.kind, reply.saga_id);
        }
    }

    async fn payment(&self, booking: Uuid) -> (String, Option<String>) {
        sqlx::query_as("SELECT status, failure_reason FROM payments WHERE booking_id = $1")
            .bind(booking)
            .fetch_one(&self.pool)
            .await
            .expect("payment row")
    }

    /// Waits until `booking` has a payment row.
    async fn recorded(&self, booking: Uuid) {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let rows: i64 =
                sqlx::query_scalar("SELECT count(*) FROM payments WHERE booking_id = $1")
                    .bind(booking)
                    .fetch_one(&self.pool)
                    .await
                    .expect("payment count");
            if rows == 1 {
                return;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "no payment for {booking}"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Waits until no card payment has PSP work left (every one settled).
    async fn settled(&self) {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let open: i64 = sqlx::query_scalar(
                "SELECT count(*) FROM payments WHERE status IN ('PENDING', 'REFUNDING', 'VOIDING')",
            )
            .fetch_one(&self.pool)
            .await
            .expect("open payments");
            if open == 0 {
                return;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "{open} payments still open"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The money check: the PSP's net = pay-svc's card ledger = the card payments
    /// pay-svc reports captured and not refunded; no double charge. Returns the net.
    async fn money_check(&self) -> i64 {
        self.settled().await;
        let ledger = self.psp.ledger().await;
        assert_eq!(ledger.double_charges, 0, "the PSP charged an order twice");
        let (captured, refunded): (i64, i64) = sqlx::query_as(
            "SELECT coalesce(sum(amount_minor) FILTER (WHERE kind = 'CAPTURE'), 0)::int8,
                    coalesce(sum(amount_minor) FILTER (WHERE kind = 'REFUND'), 0)::int8
             FROM card_ledger_entries",
        )
        .fetch_one(&self.pool)
        .await
        .expect("card ledger");
        assert_eq!(
            (captured, refunded),
            (ledger.captured, ledger.refunded),
            "pay-svc's card ledger differs from the PSP's"
        );
        let reported: i64 = sqlx::query_scalar(
            "SELECT coalesce(sum(amount_minor), 0)::int8 FROM payments
             WHERE method = 'CARD' AND status = 'CAPTURED'",
        )
        .fetch_one(&self.pool)
        .await
        .expect("captured card payments");
        assert_eq!(
            reported, ledger.net,
            "captured card payments differ from the PSP's net"
        );
        ledger.net
    }

    async fn teardown(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        let served = tokio::time::timeout(WAIT, &mut self.server).await;
        assert!(
            matches!(served, Ok(Ok(Ok(())))),
            "pay-svc did not stop cleanly: {served:?}"
        );
        self.bus.shutdown();
        self.pool.close().await;
        marquee_infra::db::drop_database(&self.database_url)
            .await
            .expect("drop test database");
        self.psp.stop_for_good().await;
        let config = self.bus.config().clone();
        if let Ok(connection) =
            lapin::Connection::connect(AMQP, lapin::ConnectionProperties::default()).await
            && let Ok(channel) = connection.create_channel().await
        {
            for name in ["pay.payment-requests", REPLY_QUEUE] {
                for queue in [config.queue(name), format!("{}.dlq", config.queue(name))] {
                    let _ = channel
                        .queue_delete(ShortString::from(queue), QueueDeleteOptions::default())
                        .await;
                }
            }
            for exchange in [config.exchange(), format!("{}dlx", config.prefix)] {
                let _ = channel
                    .exchange_delete(
                        ShortString::from(exchange),
                        ExchangeDeleteOptions::default(),
                    )
                    .await;
            }
            let _ = connection.close(200, ShortString::from("bye")).await;
        }
    }
}

fn envelope(kind: &str, saga_id: Uuid, payload: Vec<u8>) -> Envelope {
    Envelope {
        message_id: Uuid::now_v7(),
        kind: kind.to_owned(),
        saga_id,
        version: 1,
        occurred_at: Utc::now(),
        trace_context: HashMap::new(),
        payload,
    }
}

fn succeeded(reply: &Envelope) -> saga::PaymentSucceeded {
    assert_eq!(reply.kind, "payment.succeeded", "expected PaymentSucceeded");
    saga::PaymentSucceeded::decode(reply.payload.as_slice()).expect("decode PaymentSucceeded")
}

fn failed(reply: &Envelope) -> saga::PaymentFailed {
    assert_eq!(reply.kind, "payment.failed", "expected PaymentFailed");
    saga::PaymentFailed::decode(reply.payload.as_slice()).expect("decode PaymentFailed")
}

fn refund_completed(reply: &Envelope) -> saga::RefundCompleted {
    assert_eq!(reply.kind, "refund.completed", "expected RefundCompleted");
    saga::RefundCompleted::decode(reply.payload.as_slice()).expect("decode RefundCompleted")
}

/// Charges `token` for a new booking and returns the reply for it.
async fn charge(app: &mut TestApp, amount: i64, token: &str) -> (Uuid, Envelope) {
    let booking = Uuid::new_v4();
    app.request_card(booking, amount, token).await;
    let reply = app.next_reply().await;
    assert_eq!(reply.saga_id, booking);
    (booking, reply)
}

#[tokio::test]
async fn approved_card_is_captured_once() {
    let mut app = TestApp::spawn(Tuning::default()).await;
    let (booking, reply) = charge(&mut app, 40_000, "tok_approve").await;
    let paid = succeeded(&reply);
    assert_eq!(paid.booking_id, booking.to_string());
    assert_eq!(paid.amount.map(|m| m.amount_minor), Some(40_000));
    assert_eq!(app.payment(booking).await, ("CAPTURED".to_owned(), None));
    assert_eq!(app.psp.order(booking).await.charges, 1);
    assert_eq!(app.money_check().await, 40_000);
    app.teardown().await;
}

#[tokio::test]
async fn declined_cards_fail_with_the_psp_code() {
    let mut app = TestApp::spawn(Tuning::default()).await;
    for (token, code) in [
        ("tok_decline", "REJECT_CARD_PAYMENT"),
        ("tok_expired", "INVALID_CARD_EXPIRATION"),
        ("tok_nonsense", "INVALID_CARD_NUMBER"),
    ] {
        let (booking, reply) = charge(&mut app, 10_000, token).await;
        assert_eq!(failed(&reply).reason, code, "{token}");
        assert_eq!(
            app.payment(booking).await,
            ("FAILED".to_owned(), Some(code.to_owned()))
        );
    }
    assert_eq!(app.money_check().await, 0);
    app.teardown().await;
}

#[tokio::test]
async fn dropped_and_undecided_answers_are_resolved_by_inquiry() {
    let mut app = TestApp::spawn(Tuning::default()).await;
    for (token, captured) in [
        ("tok_charge_drop", true),
        ("tok_fail_drop", false),
        ("tok_undecided", true),
        ("tok_undecided_fail", false),
    ] {
        let (booking, reply) = charge(&mut app, 20_000, token).await;
        if captured {
            succeeded(&reply);
            assert_eq!(app.psp.order(booking).await.charges, 1, "{token}");
        } else {
            assert!(!failed(&reply).reason.is_empty(), "{token}");
            assert_eq!(app.psp.order(booking).await.charges, 0, "{token}");
        }
        let confirms: i32 =
            sqlx::query_scalar("SELECT psp_confirms FROM payments WHERE booking_id = $1")
                .bind(booking)
                .fetch_one(&app.pool)
                .await
                .expect("confirms");
        assert_eq!(
            confirms, 1,
            "{token}: resolved by inquiry, not a new confirm"
        );
    }
    assert_eq!(app.money_check().await, 40_000);
    app.teardown().await;
}

#[tokio::test]
async fn a_slow_psp_past_the_timeout_charges_once() {
    // The sandbox answers tok_slow after PSP_SLOW_MS (SLOW_MS); the client gives up
    // well before.
    let mut app = TestApp::spawn(Tuning {
        timeout_ms: SLOW_MS / 4,
        ..Tuning::default()
    })
    .await;
    let (booking, reply) = charge(&mut app, 15_000, "tok_slow").await;
    succeeded(&reply);
    assert_eq!(app.psp.order(booking).await.charges, 1);
    assert_eq!(app.money_check().await, 15_000);
    app.teardown().await;
}

#[tokio::test]
async fn server_errors_are_retried_with_the_same_key_then_fail() {
    let mut app = TestApp::spawn(Tuning::default()).await;
    let (once, reply) = charge(&mut app, 12_000, "tok_5xx_once").await;
    succeeded(&reply);
    assert_eq!(app.psp.order(once).await.charges, 1);
    let keys: (String, i32) =
        sqlx::query_as("SELECT psp_confirm_key, psp_confirms FROM payments WHERE booking_id = $1")
            .bind(once)
            .fetch_one(&app.pool)
            .await
            .expect("confirm key");
    assert_eq!(keys.1, 2, "confirmed on the second attempt");

    let (never, reply) = charge(&mut app, 12_000, "tok_5xx").await;
    assert_eq!(failed(&reply).reason, "PSP_UNAVAILABLE");
    let confirms: i32 =
        sqlx::query_scalar("SELECT psp_confirms FROM payments WHERE booking_id = $1")
            .bind(never)
            .fetch_one(&app.pool)
            .await
            .expect("confirms");
    assert_eq!(confirms, 3, "PSP_MAX_CONFIRMS confirms, then failed");
    assert_eq!(app.psp.order(never).await.charges, 0);
    assert_eq!(app.money_check().await, 12_000);
    app.teardown().await;
}

#[tokio::test]
async fn a_wrong_amount_is_cancelled_and_fails() {
    let mut app = TestApp::spawn(Tuning::default()).await;
    let (booking, reply) = charge(&mut app, 30_000, "tok_wrong_amount").await;
    assert_eq!(failed(&reply).reason, "PSP_AMOUNT_MISMATCH");
    app.settled().await;
    assert_eq!(
        app.payment(booking).await,
        ("FAILED".to_owned(), Some("PSP_AMOUNT_MISMATCH".to_owned()))
    );
    let order = app.psp.order(booking).await;
    assert_eq!((order.captured, order.refunded), (30_001, 30_001));
    assert_eq!(app.money_check().await, 0);
    app.teardown().await;
}

#[tokio::test]
async fn redelivered_and_repeated_requests_charge_once() {
    let mut app = TestApp::spawn(Tuning::default()).await;
    let booking = Uuid::new_v4();
    // The same message twice, then another message for the same booking, at once.
    let first = app.request_card(booking, 25_000, "tok_undecided").await;
    app.publish(&first).await;
    app.request_card(booking, 25_000, "tok_undecided").await;
    let original = succeeded(&app.next_reply().await);
    app.settled().await;
    // Asked again after it resolved: the same outcome, no new charge.
    app.request_card(booking, 25_000, "tok_approve").await;
    assert_eq!(succeeded(&app.next_reply().await), original);
    app.assert_no_reply(Duration::from_millis(500)).await;
    assert_eq!(app.psp.order(booking).await.charges, 1);
    assert_eq!(app.money_check().await, 25_000);
    app.teardown().await;
}

#[tokio::test]
async fn refund_of_a_captured_card_nets_zero_once() {
    let mut app = TestApp::spawn(Tuning::default()).await;
    let (booking, reply) = charge(&mut app, 50_000, "tok_approve").await;
    let paid = succeeded(&reply);
    let request = app.request_refund(booking).await;
    let refund = refund_completed(&app.next_reply().await);
    assert_eq!(refund.payment_id, paid.payment_id);
    assert_eq!(refund.amount.as_ref().map(|m| m.amount_minor), Some(50_000));
    assert_eq!(app.payment(booking).await, ("REFUNDED".to_owned(), None));
    // Redelivered and asked again: the same completion, no second refund.
    app.publish(&request).await;
    app.request_refund(booking).await;
    let again = refund_completed(&app.next_reply().await);
    assert_eq!(again, refund);
    app.assert_no_reply(Duration::from_millis(500)).await;
    let order = app.psp.order(booking).await;
    assert_eq!((order.captured, order.refunded), (50_000, 50_000));
    assert_eq!(app.money_check().await, 0);
    app.teardown().await;
}

#[tokio::test]
async fn refund_while_undecided_refunds_once_after_capture() {
    let mut app = TestApp::spawn(Tuning::default()).await;
    // Captured late: the refund waits for it, then gives it back once.
    let booking = Uuid::new_v4();
    app.request_card(booking, 35_000, "tok_undecided").await;
    app.recorded(booking).await;
    app.request_refund(booking).await;
    let mut kinds = Vec::new();
    for _ in 0..2 {
        let reply = app.next_reply().await;
        kinds.push(reply.kind.clone());
        if reply.kind == "refund.completed" {
            assert_eq!(
                refund_completed(&reply).amount.map(|m| m.amount_minor),
                Some(35_000)
            );
        }
    }
    kinds.sort();
    assert_eq!(kinds, ["payment.succeeded", "refund.completed"]);
    assert_eq!(app.payment(booking).await, ("REFUNDED".to_owned(), None));
    // booking-svc answers a PaymentSucceeded for a cancelled booking with a refund: no
    // second refund.
    app.request_refund(booking).await;
    refund_completed(&app.next_reply().await);
    let order = app.psp.order(booking).await;
    assert_eq!((order.captured, order.refunded), (35_000, 35_000));

    // Failed late: nothing to give back.
    let declined = Uuid::new_v4();
    app.request_card(declined, 35_000, "tok_undecided_fail")
        .await;
    app.recorded(declined).await;
    app.request_refund(declined).await;
    let mut replies = Vec::new();
    for _ in 0..2 {
        replies.push(app.next_reply().await);
    }
    replies.sort_by(|a, b| a.kind.cmp(&b.kind));
    failed(&replies[0]);
    assert_eq!(
        refund_completed(&replies[1]).amount.map(|m| m.amount_minor),
        Some(0)
    );
    assert_eq!(app.money_check().await, 0);
    app.teardown().await;
}

#[tokio::test]
async fn a_psp_that_goes_away_mid_charge_is_resolved_once_it_is_back() {
    let mut app = TestApp::spawn(Tuning::default()).await;
    app.psp.stop().await;
    let booking = Uuid::new_v4();
    app.request_card(booking, 45_000, "tok_approve").await;
    app.assert_no_reply(Duration::from_secs(1)).await;
    assert_eq!(app.payment(booking).await.0, "PENDING");
    app.psp.restart().await;
    succeeded(&app.next_reply().await);
    assert_eq!(app.psp.order(booking).await.charges, 1);

    // Charged, then the PSP went away before answering; back on the same database.
    let dropped = Uuid::new_v4();
    app.request_card(dropped, 5_000, "tok_charge_drop").await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    app.psp.stop().await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    app.psp.restart().await;
    succeeded(&app.next_reply().await);
    assert_eq!(app.psp.order(dropped).await.charges, 1);
    assert_eq!(app.money_check().await, 50_000);
    app.teardown().await;
}

//! pay-svc against the real local PostgreSQL and RabbitMQ. Each test has its own
//! database and bus prefix, so they run in parallel, and cleans both up.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use lapin::options::{ExchangeDeleteOptions, QueueDeleteOptions};
use lapin::types::ShortString;
use marquee_infra::auth::TokenKeys;
use marquee_infra::bus::{Bus, BusConfig, Envelope, HandleError, Handler};
use marquee_proto::pay::wallet_service_client::WalletServiceClient;
use marquee_proto::pay::{EntryKind, GetWalletRequest};
use marquee_proto::saga;
use pay_svc::{Application, PayConfig};
use prost::Message;
use sqlx::PgPool;
use tokio::sync::{mpsc, oneshot};
use uuid::Uuid;

const PG: &str = "postgres://postgres@127.0.0.1:5432";
const AMQP: &str = "amqp://guest:guest@127.0.0.1:5672/%2f";
const JWT_SECRET: &str = "pay-test-secret";
const WAIT: Duration = Duration::from_secs(10);
const REPLY_QUEUE: &str = "test.replies";

struct TestApp {
    port: u16,
    pool: PgPool,
    database_url: String,
    bus: Bus,
    replies: mpsc::Receiver<Envelope>,
    stop: Option<oneshot::Sender<()>>,
    server: tokio::task::JoinHandle<anyhow::Result<()>>,
}

impl TestApp {
    async fn spawn() -> Self {
        let database_url = format!("{PG}/pay_test_{}", Uuid::new_v4().simple());
        let prefix = format!("test.{}.", Uuid::new_v4());
        let config = PayConfig {
            grpc_addr: "127.0.0.1:0".parse().expect("address"),
            metrics_addr: None,
            database_url: database_url.clone(),
            db_max_connections: 5,
            migrate_on_start: true,
            bus: BusConfig::new(AMQP, prefix.clone()),
            consumer_concurrency: 16,
            jwt: JWT_SECRET.into(),
            welcome_credit_minor: 100_000,
            psp: pay_svc::PspConfig::default(),
        };
        let app = tokio::time::timeout(Duration::from_secs(30), Application::build(config))
            .await
            .expect("build timed out")
            .expect("build pay-svc");
        let port = app.port();
        // Assertions read rows through sqlx, on the pool sea-orm uses.
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
            &[
                "payment.succeeded",
                "payment.failed",
                "refund.completed",
                "payout.completed",
            ],
            1,
            handler,
        )
        .await
        .expect("reply queue declared");
        Self {
            port,
            pool,
            database_url,
            bus,
            replies,
            stop: Some(stop),
            server,
        }
    }

    /// Publishes a message; pay-svc's queue exists once `build()` returned.
    async fn publish(&self, envelope: &Envelope) {
        if let Err(error) = self.bus.publish(envelope).await {
            panic!("publish {}: {error}", envelope.kind);
        }
    }

    async fn request_payment(
        &self,
        booking: Uuid,
        buyer: Uuid,
        amount: i64,
        method: &str,
    ) -> Envelope {
        let envelope = payment_request(booking, buyer, amount, method);
        self.publish(&envelope).await;
        envelope
    }

    async fn request_refund(&self, booking: Uuid, buyer: Uuid) -> Envelope {
        let payload = saga::RefundRequested {
            booking_id: booking.to_string(),
            buyer_id: buyer.to_string(),
            reason: "BUYER_CANCELLED".to_owned(),
        };
        let envelope = envelope("refund.requested", booking, payload.encode_to_vec());
        self.publish(&envelope).await;
        envelope
    }

    /// Publishes `account.opened` for `account`, as booking-svc does at sign-up.
    async fn open_account(&self, account: Uuid) -> Envelope {
        let payload = saga::AccountOpened {
            account_id: account.to_string(),
            opened_at: Some(prost_types::Timestamp {
                seconds: Utc::now().timestamp(),
                nanos: 0,
            }),
        };
        let envelope = envelope("account.opened", account, payload.encode_to_vec());
        self.publish(&envelope).await;
        envelope
    }

    async fn wallets(&self, account: Uuid) -> i64 {
        sqlx::query_scalar("SELECT count(*) FROM wallets WHERE account_id = $1")
            .bind(account)
            .fetch_one(&self.pool)
            .await
            .expect("wallet count")
    }

    /// Waits (bounded) until `account` has a wallet.
    async fn await_wallet(&self, account: Uuid) {
        let deadline = tokio::time::Instant::now() + WAIT;
        while self.wallets(account).await == 0 {
            assert!(
                tokio::time::Instant::now() < deadline,
                "no wallet for {account} within {WAIT:?}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    async fn next_reply(&mut self) -> Envelope {
        tokio::time::timeout(WAIT, self.replies.recv())
            .await
            .expect("no reply within 10s")
            .expect("reply channel closed")
    }

    async fn assert_no_reply(&mut self, within: Duration) {
        if let Ok(Some(reply)) = tokio::time::timeout(within, self.replies.recv()).await {
            panic!("unexpected reply {} for saga {}", reply.kind, reply.saga_id);
        }
    }

    async fn balance(&self, account: Uuid) -> i64 {
        sqlx::query_scalar("SELECT balance_minor FROM wallets WHERE account_id = $1")
            .bind(account)
            .fetch_one(&self.pool)
            .await
            .expect("wallet balance")
    }

    async fn entries(&self, account: Uuid, kind: &str) -> i64 {
        sqlx::query_scalar(
            "SELECT count(*) FROM ledger_entries WHERE account_id = $1 AND kind = $2",
        )
        .bind(account)
        .bind(kind)
        .fetch_one(&self.pool)
        .await
        .expect("ledger count")
    }

    async fn payment_status(&self, booking: Uuid) -> (String, Option<String>) {
        sqlx::query_as("SELECT status, failure_reason FROM payments WHERE booking_id = $1")
            .bind(booking)
            .fetch_one(&self.pool)
            .await
            .expect("payment row")
    }

    async fn grpc(&self) -> WalletServiceClient<tonic::transport::Channel> {
        WalletServiceClient::connect(format!("http://127.0.0.1:{}", self.port))
            .await
            .expect("connect grpc")
    }

    async fn dead_letter(&self) -> Option<Vec<u8>> {
        self.dead_letter_message().await.map(|(data, _)| data)
    }

    /// The next dead-lettered message (waiting up to [`WAIT`]) with why the broker
    /// dead-lettered it: `rejected` by the consumer at once, or `delivery_limit` after
    /// it was redelivered as often as the queue allows. pay-svc's dead-letter keeper
    /// moves it from the dead-letter queue into its `dead_letters` table, where an
    /// admin lists and redrives it.
    async fn dead_letter_message(&self) -> Option<(Vec<u8>, String)> {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let found: Option<(Vec<u8>, String)> = sqlx::query_as(
                "SELECT payload, reason FROM dead_letters ORDER BY first_dead_lettered_at LIMIT 1",
            )
            .fetch_optional(&self.pool)
            .await
            .expect("dead letters");
            if found.is_some() || tokio::time::Instant::now() >= deadline {
                return found;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Stops pay-svc and removes the test's database, queues and exchanges.
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

/// A `payment.requested` message, as booking-svc sends it.
fn payment_request(booking: Uuid, buyer: Uuid, amount: i64, method: &str) -> Envelope {
    let payload = saga::PaymentRequested {
        booking_id: booking.to_string(),
        buyer_id: buyer.to_string(),
        amount: Some(marquee_proto::Money {
            amount_minor: amount,
            currency: "KRW".to_owned(),
        }),
        method: method.to_owned(),
        card_token: String::new(),
    };
    envelope("payment.requested", booking, payload.encode_to_vec())
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

fn krw(amount_minor: i64) -> Option<marquee_proto::Money> {
    Some(marquee_proto::Money {
        amount_minor,
        currency: "KRW".to_owned(),
    })
}

#[tokio::test]
async fn payment_debits_the_wallet_and_succeeds() {
    let mut app = TestApp::spawn().await;
    let (booking, buyer) = (Uuid::new_v4(), Uuid::new_v4());

    app.request_payment(booking, buyer, 30_000, "WALLET").await;
    let reply = app.next_reply().await;
    assert_eq!(reply.saga_id, booking);
    assert_eq!(reply.version, 1);
    let message = succeeded(&reply);
    assert_eq!(message.booking_id, booking.to_string());
    assert!(message.payment_id.parse::<Uuid>().is_ok());
    assert_eq!(message.amount, krw(30_000));

    assert_eq!(app.balance(buyer).await, 70_000);
    assert_eq!(app.entries(buyer, "WELCOME_CREDIT").await, 1);
    assert_eq!(app.entries(buyer, "PAYMENT").await, 1);
    assert_eq!(
        app.payment_status(booking).await,
        ("CAPTURED".to_owned(), None)
    );
    let (amount, after): (i64, i64) = sqlx::query_as(
        "SELECT amount_minor, balance_after_minor FROM ledger_entries WHERE kind = 'PAYMENT'",
    )
    .fetch_one(&app.pool)
    .await
    .expect("payment entry");
    assert_eq!((amount, after), (-30_000, 70_000));
    app.teardown().await;
}

#[tokio::test]
async fn insufficient_funds_and_bad_requests_fail_without_touching_the_balance() {
    let mut app = TestApp::spawn().await;
    let buyer = Uuid::new_v4();
    let cases = [
        (100_001, "WALLET", "INSUFFICIENT_FUNDS"),
        (1_000, "PAYPAL", "UNSUPPORTED_METHOD"),
        (1_000, "CARD", "INVALID_CARD_TOKEN"),
        (0, "WALLET", "INVALID_AMOUNT"),
    ];
    for (amount, method, reason) in cases {
        let booking = Uuid::new_v4();
        app.request_payment(booking, buyer, amount, method).await;
        let reply = app.next_reply().await;
        assert_eq!(reply.saga_id, booking);
        let message = failed(&reply);
        assert_eq!(message.booking_id, booking.to_string());
        assert_eq!(message.reason, reason);
        assert_eq!(
            app.payment_status(booking).await,
            ("FAILED".to_owned(), Some(reason.to_owned()))
        );
        assert_eq!(app.balance(buyer).await, 100_000);
    }
    assert_eq!(app.entries(buyer, "PAYMENT").await, 0);
    assert_eq!(app.entries(buyer, "WELCOME_CREDIT").await, 1);
    app.teardown().await;
}

#[tokio::test]
async fn a_transfer_payout_credits_the_previous_owner_once() {
    let mut app = TestApp::spawn().await;
    let (payout, owner) = (Uuid::new_v4(), Uuid::new_v4());
    app.open_account(owner).await;
    app.await_wallet(owner).await;
    let payload = saga::PayoutRequested {
        payout_id: payout.to_string(),
        account_id: owner.to_string(),
        amount: Some(marquee_proto::Money {
            amount_minor: 45_000,
            currency: "KRW".to_owned(),
        }),
        reason: "ticket transfer".to_owned(),
    }
    .encode_to_vec();
    let first = envelope("payout.requested", payout, payload.clone());
    app.publish(&first).await;
    let reply = app.next_reply().await;
    assert_eq!(reply.kind, "payout.completed");
    assert_eq!(reply.saga_id, payout);
    let completed = saga::PayoutCompleted::decode(reply.payload.as_slice()).expect("decode");
    assert_eq!(completed.payout_id, payout.to_string());
    assert_eq!(completed.amount.map(|m| m.amount_minor), Some(45_000));
    assert_eq!(app.balance(owner).await, 145_000);

    // Redelivered (the same message id): no effect, no reply.
    app.publish(&first).await;
    app.assert_no_reply(Duration::from_secs(1)).await;
    // The same payout under a new message id (a redrive): completed again, not paid again.
    app.publish(&envelope("payout.requested", payout, payload))
        .await;
    assert_eq!(app.next_reply().await.kind, "payout.completed");
    assert_eq!(app.balance(owner).await, 145_000);
    assert_eq!(app.entries(owner, "TRANSFER_PAYOUT").await, 1);

    // The wallet shows the payout.
    let mut client = app.grpc().await;
    let mut request = tonic::Request::new(marquee_proto::pay::GetWalletRequest { page_size: 10 });
    let token = TokenKeys::new(JWT_SECRET, chrono::Duration::hours(1))
        .issue(&owner.to_string(), "BUYER")
        .expect("token")
        .0;
    request.metadata_mut().insert(
        "authorization",
        format!("Bearer {token}").parse().expect("header"),
    );
    let wallet = client
        .get_wallet(request)
        .await
        .expect("wallet")
        .into_inner();
    assert!(
        wallet.entries.iter().any(|e| e.kind
            == marquee_proto::pay::EntryKind::TransferPayout as i32
            && e.amount.as_ref().map(|m| m.amount_minor) == Some(45_000)),
        "{wallet:?}"
    );
    app.teardown().await;
}

#[tokio::test]
async fn redelivered_and_repeated_requests_charge_once() {
    let mut app = TestApp::spawn().await;
    let (booking, buyer) = (Uuid::new_v4(), Uuid::new_v4());

    // The same message (same id) twice: one effect, one reply.
    let first = app.request_payment(booking, buyer, 25_000, "WALLET").await;
    app.publish(&first).await;
    let original = succeeded(&app.next_reply().await);

    // A new message for the same booking: the same outcome again, no second charge.
    app.request_payment(booking, buyer, 25_000, "WALLET").await;
    let again = succeeded(&app.next_reply().await);
    assert_eq!(again, original);

    app.assert_no_reply(Duration::from_secs(1)).await;
    assert_eq!(app.balance(buyer).await, 75_000);
    assert_eq!(app.entries(buyer, "PAYMENT").await, 1);
    let payments: i64 = sqlx::query_scalar("SELECT count(*) FROM payments")
        .fetch_one(&app.pool)
        .await
        .expect("payments");
    assert_eq!(payments, 1);

    // A failed payment's outcome is resent as it was.
    let poor = Uuid::new_v4();
    app.request_payment(poor, buyer, 1_000_000, "WALLET").await;
    assert_eq!(failed(&app.next_reply().await).reason, "INSUFFICIENT_FUNDS");
    app.request_payment(poor, buyer, 1_000, "WALLET").await;
    assert_eq!(failed(&app.next_reply().await).reason, "INSUFFICIENT_FUNDS");
    assert_eq!(app.balance(buyer).await, 75_000);
    app.teardown().await;
}

#[tokio::test]
async fn refund_restores_the_balance_once() {
    let mut app = TestApp::spawn().await;
    let (booking, buyer) = (Uuid::new_v4(), Uuid::new_v4());

    app.request_payment(booking, buyer, 40_000, "WALLET").await;
    let paid = succeeded(&app.next_reply().await);
    assert_eq!(app.balance(buyer).await, 60_000);

    app.request_refund(booking, buyer).await;
    let reply = app.next_reply().await;
    assert_eq!(reply.saga_id, booking);
    let refund = refund_completed(&reply);
    assert_eq!(refund.booking_id, booking.to_string());
    assert_eq!(refund.payment_id, paid.payment_id);
    assert_eq!(refund.amount, krw(40_000));
    assert_eq!(app.balance(buyer).await, 100_000);
    assert_eq!(app.entries(buyer, "REFUND").await, 1);
    assert_eq!(
        app.payment_status(booking).await,
        ("REFUNDED".to_owned(), None)
    );

    // Asked again: the same completion, no second credit.
    app.request_refund(booking, buyer).await;
    assert_eq!(refund_completed(&app.next_reply().await), refund);
    assert_eq!(app.balance(buyer).await, 100_000);
    assert_eq!(app.entries(buyer, "REFUND").await, 1);

    // Nothing was paid: completed with nothing refunded.
    let unpaid = Uuid::new_v4();
    app.request_refund(unpaid, buyer).await;
    let nothing = refund_completed(&app.next_reply().await);
    assert_eq!(nothing.booking_id, unpaid.to_string());
    assert_eq!(nothing.amount, krw(0));
    assert_eq!(app.balance(buyer).await, 100_000);
    app.teardown().await;
}

#[tokio::test]
async fn undecodable_message_is_dead_lettered() {
    let mut app = TestApp::spawn().await;
    let booking = Uuid::new_v4();
    let garbage = envelope("payment.requested", booking, vec![0xff, 0xff, 0xff]);
    app.publish(&garbage).await;
    assert_eq!(app.dead_letter().await, Some(garbage.payload.clone()));

    // The consumer keeps working afterwards.
    let buyer = Uuid::new_v4();
    app.request_payment(booking, buyer, 1_000, "WALLET").await;
    succeeded(&app.next_reply().await);
    app.teardown().await;
}

#[tokio::test]
async fn get_wallet_needs_a_token_and_shows_the_welcome_credit() {
    let mut app = TestApp::spawn().await;
    let account = Uuid::new_v4();
    let keys = TokenKeys::new(JWT_SECRET, chrono::Duration::minutes(5));
    let (token, _) = keys
        .issue(&account.to_string(), "BUYER")
        .expect("issue token");
    let mut client = app.grpc().await;
    let authorized = |page_size: i32| {
        let mut request = tonic::Request::new(GetWalletRequest { page_size });
        request.metadata_mut().insert(
            "authorization",
            format!("Bearer {token}").parse().expect("metadata value"),
        );
        request
    };

    app.open_account(account).await;
    app.await_wallet(account).await;
    let wallet = client
        .get_wallet(authorized(0))
        .await
        .expect("get wallet")
        .into_inner();
    assert_eq!(wallet.account_id, account.to_string());
    assert_eq!(wallet.balance, krw(100_000));
    assert_eq!(wallet.entries.len(), 1);
    let welcome = &wallet.entries[0];
    assert_eq!(welcome.kind, EntryKind::WelcomeCredit as i32);
    assert_eq!(welcome.amount, krw(100_000));
    assert_eq!(welcome.balance_after, krw(100_000));
    assert!(welcome.created_at.is_some());

    // Idempotent: asking again creates nothing.
    let again = client
        .get_wallet(authorized(0))
        .await
        .expect("get wallet")
        .into_inner();
    assert_eq!(again.entries.len(), 1);
    assert_eq!(again.balance, krw(100_000));

    // A payment shows up newest first.
    let booking = Uuid::new_v4();
    app.request_payment(booking, account, 12_000, "WALLET")
        .await;
    succeeded(&app.next_reply().await);
    let after = client
        .get_wallet(authorized(10))
        .await
        .expect("get wallet")
        .into_inner();
    assert_eq!(after.balance, krw(88_000));
    assert_eq!(after.entries.len(), 2);
    assert_eq!(after.entries[0].kind, EntryKind::Payment as i32);
    assert_eq!(after.entries[0].amount, krw(-12_000));
    assert_eq!(after.entries[0].booking_id, booking.to_string());
    let one = client
        .get_wallet(authorized(1))
        .await
        .expect("get wallet")
        .into_inner();
    assert_eq!(one.entries.len(), 1);

    let negative = client
        .get_wallet(authorized(-1))
        .await
        .expect_err("negative page size");
    assert_eq!(negative.code(), tonic::Code::InvalidArgument);

    let anonymous = client
        .get_wallet(GetWalletRequest { page_size: 0 })
        .await
        .expect_err("no token");
    assert_eq!(anonymous.code(), tonic::Code::Unauthenticated);

    let (forged, _) = TokenKeys::new("other-secret", chrono::Duration::minutes(5))
        .issue(&account.to_string(), "BUYER")
        .expect("issue token");
    let mut request = tonic::Request::new(GetWalletRequest { page_size: 0 });
    request.metadata_mut().insert(
        "authorization",
        format!("Bearer {forged}").parse().expect("metadata value"),
    );
    let refused = client.get_wallet(request).await.expect_err("forged token");
    assert_eq!(refused.code(), tonic::Code::Unauthenticated);

    let (not_an_account, _) = keys.issue("admin", "ADMIN").expect("issue token");
    let mut request = tonic::Request::new(GetWalletRequest { page_size: 0 });
    request.metadata_mut().insert(
        "authorization",
        format!("Bearer {not_an_account}")
            .parse()
            .expect("metadata value"),
    );
    let refused = client
        .get_wallet(request)
        .await
        .expect_err("non-uuid subject");
    assert_eq!(refused.code(), tonic::Code::Unauthenticated);
    drop(client);
    app.teardown().await;
}

fn bearer(keys: &TokenKeys, account: Uuid) -> tonic::Request<GetWalletRequest> {
    let (token, _) = keys
        .issue(&account.to_string(), "BUYER")
        .expect("issue token");
    let mut request = tonic::Request::new(GetWalletRequest { page_size: 0 });
    request.metadata_mut().insert(
        "authorization",
        format!("Bearer {token}").parse().expect("metadata value"),
    );
    request
}

#[tokio::test]
async fn get_wallet_creates_no_money_for_an_account_that_never_opened() {
    let app = TestApp::spawn().await;
    let keys = TokenKeys::new(JWT_SECRET, chrono::Duration::minutes(5));
    let stranger = Uuid::new_v4();
    let mut client = app.grpc().await;

    for _ in 0..2 {
        let refused = client
            .get_wallet(bearer(&keys, stranger))
            .await
            .expect_err("no wallet for an account that never opened");
        assert_eq!(refused.code(), tonic::Code::NotFound, "{refused:?}");
        assert_eq!(refused.message(), "no wallet for this account yet");
    }
    assert_eq!(app.wallets(stranger).await, 0);
    let entries: i64 = sqlx::query_scalar("SELECT count(*) FROM ledger_entries")
        .fetch_one(&app.pool)
        .await
        .expect("ledger count");
    assert_eq!(entries, 0, "no credit was issued");
    drop(client);
    app.teardown().await;
}

#[tokio::test]
async fn account_opened_creates_the_wallet_with_the_welcome_credit_once() {
    let app = TestApp::spawn().await;
    let keys = TokenKeys::new(JWT_SECRET, chrono::Duration::minutes(5));
    let account = Uuid::new_v4();

    // The same message twice (a redelivery), and a second message for the account.
    let opened = app.open_account(account).await;
    app.publish(&opened).await;
    app.open_account(account).await;
    app.await_wallet(account).await;
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let handled: i64 =
            sqlx::query_scalar("SELECT count(*) FROM inbox WHERE consumer = 'pay-svc'")
                .fetch_one(&app.pool)
                .await
                .expect("inbox count");
        if handled == 2 {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "both messages handled"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Give a stray third delivery time to do harm.
    tokio::time::sleep(Duration::from_millis(300)).await;

    assert_eq!(app.wallets(account).await, 1);
    assert_eq!(app.balance(account).await, 100_000);
    assert_eq!(app.entries(account, "WELCOME_CREDIT").await, 1);
    let wallet = app
        .grpc()
        .await
        .get_wallet(bearer(&keys, account))
        .await
        .expect("the opened account's wallet")
        .into_inner();
    assert_eq!(wallet.balance, krw(100_000));
    assert_eq!(wallet.entries.len(), 1);
    assert_eq!(wallet.entries[0].kind, EntryKind::WelcomeCredit as i32);
    app.teardown().await;
}

#[tokio::test]
async fn a_payment_postgres_rejects_is_dead_lettered_after_one_delivery() {
    let mut app = TestApp::spawn().await;
    let (booking, buyer) = (Uuid::new_v4(), Uuid::new_v4());

    // PostgreSQL refuses a NUL byte in a text column: retrying can never succeed.
    let rejected = app.request_payment(booking, buyer, 1_000, "WALLET\0").await;
    let (payload, reason) = app
        .dead_letter_message()
        .await
        .expect("the message is dead-lettered");
    assert_eq!(payload, rejected.payload);
    assert_eq!(
        reason, "rejected",
        "dead-lettered on its first delivery, not retried up to the delivery limit"
    );
    app.assert_no_reply(Duration::from_millis(500)).await;
    assert_eq!(app.wallets(buyer).await, 0, "no wallet was created");
    let payments: i64 = sqlx::query_scalar("SELECT count(*) FROM payments")
        .fetch_one(&app.pool)
        .await
        .expect("payments");
    assert_eq!(payments, 0);

    // The consumer keeps working, and the buyer's first real payment opens the wallet.
    app.request_payment(Uuid::new_v4(), buyer, 1_000, "WALLET")
        .await;
    succeeded(&app.next_reply().await);
    assert_eq!(app.balance(buyer).await, 99_000);
    assert_eq!(app.entries(buyer, "WELCOME_CREDIT").await, 1);
    app.teardown().await;
}

/// A burst arrives faster than it is handled, so messages are handled in batches (one
/// transaction each). A message PostgreSQL refuses, one that cannot be decoded and a
/// duplicate in the middle of the burst cost the others nothing: every good payment is
/// charged once and answered once, and each bad message is dead-lettered on its first
/// delivery.
#[tokio::test]
async fn a_burst_with_bad_messages_in_it_charges_every_good_payment_once() {
    let mut app = TestApp::spawn().await;
    let buyers: Vec<(Uuid, Uuid)> = (0..60).map(|_| (Uuid::new_v4(), Uuid::new_v4())).collect();
    let mut burst: Vec<Envelope> = buyers
        .iter()
        .map(|&(booking, buyer)| payment_request(booking, buyer, 10_000, "WALLET"))
        .collect();
    let refused = payment_request(Uuid::new_v4(), Uuid::new_v4(), 1_000, "WALLET\0");
    let garbage = envelope("payment.requested", Uuid::new_v4(), vec![0xff, 0xff, 0xff]);
    let duplicate = burst[10].clone();
    burst.insert(20, refused.clone());
    burst.insert(40, garbage.clone());
    burst.insert(50, duplicate);
    futures::future::join_all(burst.iter().map(|envelope| app.publish(envelope))).await;

    let mut answered = HashMap::new();
    for _ in 0..buyers.len() {
        let reply = app.next_reply().await;
        succeeded(&reply);
        *answered.entry(reply.saga_id).or_insert(0) += 1;
    }
    app.assert_no_reply(Duration::from_millis(500)).await;
    for &(booking, buyer) in &buyers {
        assert_eq!(answered.get(&booking), Some(&1), "booking {booking}");
        assert_eq!(app.balance(buyer).await, 90_000, "buyer {buyer}");
        assert_eq!(app.entries(buyer, "PAYMENT").await, 1, "buyer {buyer}");
    }
    let deadline = tokio::time::Instant::now() + WAIT;
    let letters = loop {
        let letters: Vec<(Vec<u8>, String)> =
            sqlx::query_as("SELECT payload, reason FROM dead_letters ORDER BY payload")
                .fetch_all(&app.pool)
                .await
                .expect("dead letters");
        if letters.len() >= 2 || tokio::time::Instant::now() >= deadline {
            break letters;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let mut expected = vec![
        (refused.payload.clone(), "rejected".to_owned()),
        (garbage.payload.clone(), "rejected".to_owned()),
    ];
    expected.sort();
    assert_eq!(letters, expected);
    let payments: i64 = sqlx::query_scalar("SELECT count(*) FROM payments")
        .fetch_one(&app.pool)
        .await
        .expect("payments");
    assert_eq!(payments, 60);
    app.teardown().await;
}

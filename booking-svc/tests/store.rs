//! booking-svc's data layer end to end against the real PostgreSQL, Redis and
//! RabbitMQ: sign-up and log-in, an event's creation and layout, holds checked out into
//! bookings (paid and free), the saga replies that move them, cancellation, seat
//! statuses and sales, and what reconciliation and the sweeper read; card checkouts and
//! the payment deadline.

use std::sync::Arc;
use std::time::Duration;

use booking_svc::accounts::{self, Hasher, KnownAccounts, NewAccount};
use booking_svc::bookings::{
    Bookings, DEADLINE_REASON, HoldTiming, PAYMENT_FAILED, PAYMENT_REQUESTED, PAYMENT_SUCCEEDED,
    REFUND_COMPLETED, REFUND_REQUESTED,
};
use booking_svc::catalog::EventInfo;
use booking_svc::catalog::{Catalog, EventDetails, NewEvent, NewRow, NewSeat, NewSection};
use booking_svc::changes::ChangeFeed;
use booking_svc::domain::{
    AccountId, BookingId, BookingStatus, CardToken, Currency, Email, EventId, IdempotencyKey,
    Password, Payment, PaymentMethod, Role, SeatId, SeatSelection, SeatStatus,
};
use booking_svc::error::BookingError;
use booking_svc::holds::{HoldStore, RedisTimeouts};
use booking_svc::migration::Migrator;
use chrono::Utc;
use futures::FutureExt as _;
use marquee_infra::bus::{Bus, BusConfig, Envelope, HandleError};
use marquee_infra::db;
use marquee_infra::outbox::Relay;
use marquee_proto::booking as pb;
use marquee_proto::saga;
use prost::Message as _;
use sea_orm::{ConnectionTrait, DatabaseConnection, DbBackend, Statement};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

struct Rig {
    db: DatabaseConnection,
    bookings: Arc<Bookings>,
    relay: Relay,
    hasher: Hasher,
}

/// What the rig runs with unless a test says otherwise.
const TIMING: HoldTiming = HoldTiming {
    hold_ttl: Duration::from_secs(60),
    checkout_grace: Duration::from_secs(15),
    payment_deadline: Duration::from_secs(60),
};

async fn with_rig<F, Fut>(test: F)
where
    F: FnOnce(Rig) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    with_rig_timing(TIMING, test).await;
}

async fn with_rig_timing<F, Fut>(timing: HoldTiming, test: F)
where
    F: FnOnce(Rig) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let id = Uuid::new_v4().simple().to_string();
    let url = format!("{}/test_store_booking_{id}", marquee_testkit::pg_base());
    let redis_prefix = format!("test:{id}:");
    let db = db::connect(&url, 4).await.expect("database");
    db::migrate::<Migrator>(&db).await.expect("migrate");
    let bus = Bus::connect(
        BusConfig::new(marquee_testkit::amqp_url(), format!("test.{id}.")),
        Duration::from_secs(10),
    )
    .await
    .expect("bus");
    let stop = CancellationToken::new();
    let holds = HoldStore::connect(
        &marquee_infra::redis_conn::RedisTarget::Single(marquee_testkit::redis_url()),
        &redis_prefix,
        RedisTimeouts::default(),
    )
    .await
    .expect("redis");
    let relay = Relay::spawn(
        "booking-svc",
        db.clone(),
        bus.clone(),
        Duration::from_millis(200),
        stop.clone(),
    );
    let bookings = Arc::new(Bookings::new(
        db.clone(),
        holds,
        Catalog::default(),
        relay.clone(),
        ChangeFeed::spawn(bus.clone(), stop.clone()),
        timing,
    ));
    bookings.restore_redis().await.expect("prime redis");
    let rig = Rig {
        db: db.clone(),
        bookings,
        relay,
        hasher: Hasher::new(1024).expect("hasher"),
    };
    let outcome = std::panic::AssertUnwindSafe(test(rig)).catch_unwind().await;
    stop.cancel();
    let _ = bus.delete_topology(&[]).await;
    bus.shutdown();
    let _ = db.close().await;
    let _ = db::drop_database(&url).await;
    let _ = marquee_testkit::delete_redis_keys(&redis_prefix).await;
    if let Err(panic) = outcome {
        std::panic::resume_unwind(panic);
    }
}

async fn sign_up(rig: &Rig, email: &str, role: Role) -> AccountId {
    accounts::sign_up(
        &rig.db,
        &rig.hasher,
        &rig.relay,
        NewAccount {
            email: Email::parse(email).expect("email"),
            password: Password::parse("correct horse").expect("password"),
            display_name: "Someone".into(),
            role,
        },
    )
    .await
    .expect("sign up")
    .id
}

fn seats(row: &str, n: usize) -> NewRow {
    NewRow {
        label: row.into(),
        seats: (1..=n)
            .map(|i| NewSeat {
                number: i.to_string(),
                x: i as f64,
                y: 0.0,
            })
            .collect(),
    }
}

fn reply(kind: &str, booking: BookingId, payload: Vec<u8>) -> Envelope {
    Envelope {
        message_id: Uuid::now_v7(),
        kind: kind.to_owned(),
        saga_id: booking.0,
        version: 1,
        occurred_at: Utc::now(),
        trace_context: Default::default(),
        payload,
    }
}

async fn outbox_count(db: &DatabaseConnection, kind: &str, saga: Uuid) -> i64 {
    db.query_one_raw(Statement::from_sql_and_values(
        DbBackend::Postgres,
        "SELECT count(*) FROM outbox WHERE kind = $1 AND saga_id = $2",
        [kind.into(), saga.into()],
    ))
    .await
    .expect("outbox")
    .expect("a row")
    .try_get_by_index::<i64>(0)
    .expect("a count")
}

fn select(seats: &[SeatId]) -> SeatSelection {
    SeatSelection::parse(&seats.iter().map(ToString::to_string).collect::<Vec<_>>())
        .expect("selection")
}

#[tokio::test]
async fn accounts_events_bookings_and_the_saga_through_the_database() {
    with_rig(|rig| async move {
        // Accounts: sign-up announces the account; an email is unique whatever its case.
        let seller = sign_up(&rig, "seller@example.com", Role::Seller).await;
        let buyer = sign_up(&rig, "Buyer@Example.com", Role::Buyer).await;
        assert_eq!(
            outbox_count(&rig.db, "account.opened", buyer.0).await,
            1,
            "sign-up wrote no account.opened"
        );
        let taken = accounts::sign_up(
            &rig.db,
            &rig.hasher,
            &rig.relay,
            NewAccount {
                email: Email::parse("BUYER@example.com").expect("email"),
                password: Password::parse("another one").expect("password"),
                display_name: "Again".into(),
                role: Role::Buyer,
            },
        )
        .await;
        assert!(
            matches!(taken, Err(BookingError::AlreadyExists(_))),
            "{taken:?}"
        );
        let me = accounts::log_in(&rig.db, &rig.hasher, "BUYER@EXAMPLE.COM", "correct horse")
            .await
            .expect("log in");
        assert_eq!(me.id, buyer);
        assert_eq!(me.email, "buyer@example.com");
        assert!(matches!(
            accounts::log_in(&rig.db, &rig.hasher, "buyer@example.com", "wrong password").await,
            Err(BookingError::Unauthenticated(_))
        ));
        assert_eq!(
            accounts::get(&rig.db, seller).await.expect("get").role,
            Role::Seller
        );
        assert!(matches!(
            accounts::get(&rig.db, AccountId::new()).await,
            Err(BookingError::NotFound(_))
        ));
        let known = KnownAccounts::spawn(rig.db.clone());
        assert!(known.exists(buyer).await.expect("exists"));
        assert!(!known.exists(AccountId::new()).await.expect("exists"));
        // Many misses at once (an on-sale minute) are answered in batches, each
        // correctly: the accounts that exist, and the ids that name none.
        let mut existing = vec![seller];
        for n in 0..40 {
            existing.push(sign_up(&rig, &format!("crowd{n}@example.com"), Role::Buyer).await);
        }
        let cold = KnownAccounts::spawn(rig.db.clone());
        let asks: Vec<(AccountId, bool)> = existing
            .iter()
            .map(|id| (*id, true))
            .chain((0..2000).map(|_| (AccountId::new(), false)))
            .chain(existing.iter().map(|id| (*id, true)))
            .collect();
        let answers = futures::future::join_all(asks.iter().map(|(id, _)| cold.exists(*id))).await;
        for ((id, exists), answer) in asks.iter().zip(answers) {
            assert_eq!(answer.expect("lookup"), *exists, "account {id}");
        }

        // An event: its layout is read back in order.
        let event = rig
            .bookings
            .create_event(
                seller,
                NewEvent {
                    details: EventDetails {
                        description: "A show".into(),
                        ..details_on_sale("Show")
                    },
                    sections: vec![
                        NewSection {
                            name: "R".into(),
                            price_minor: 30_000,
                            rows: vec![seats("A", 3), seats("B", 2)],
                        },
                        NewSection {
                            name: "Free".into(),
                            price_minor: 0,
                            rows: vec![seats("C", 2)],
                        },
                    ],
                    transfers: Default::default(),
                },
            )
            .await
            .expect("create event");
        assert_eq!(event.seller, seller);
        assert_eq!(event.details.max_seats_per_buyer, 4);
        let names: Vec<&str> = event.sections.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(names, ["R", "Free"]);
        assert_eq!(event.sections[0].seat_count, 5);
        assert_eq!(event.sections[1].price.amount_minor, 0);
        let labels: Vec<String> = event
            .seats
            .iter()
            .map(|s| format!("{}{}", s.row, s.number))
            .collect();
        assert_eq!(labels, ["A1", "A2", "A3", "B1", "B2", "C1", "C2"]);
        assert_eq!(
            rig.bookings.event_ids(0, 10).await.expect("event ids"),
            vec![event.id]
        );
        assert!(
            rig.bookings
                .event_ids(1, 10)
                .await
                .expect("page 2")
                .is_empty()
        );
        assert!(matches!(
            rig.bookings.event(EventId::new()).await,
            Err(BookingError::NotFound(_))
        ));
        let paid: Vec<SeatId> = event.seats[..2].iter().map(|s| s.id).collect();
        let free = event.seats[5].id;

        // Hold and check out: PENDING_PAYMENT and a payment request; a retry replays.
        let hold = rig
            .bookings
            .hold(buyer, event.id, select(&paid), None)
            .await
            .expect("hold");
        let key = IdempotencyKey::parse("checkout-1").expect("key");
        let booking = rig
            .bookings
            .checkout(buyer, hold.hold_id, Payment::Wallet, key.clone())
            .await
            .expect("checkout");
        assert_eq!(booking.status, BookingStatus::PendingPayment);
        assert_eq!(booking.total.amount_minor, 60_000);
        assert_eq!(booking.seats.len(), 2);
        assert_eq!(
            outbox_count(&rig.db, "payment.requested", booking.id.0).await,
            1
        );
        let replayed = rig
            .bookings
            .checkout(buyer, hold.hold_id, Payment::Wallet, key)
            .await
            .expect("checkout replayed");
        assert_eq!(replayed.id, booking.id);
        assert_eq!(replayed.created_at, booking.created_at);
        let statuses = rig.bookings.seat_statuses(&event).await.expect("statuses");
        assert_eq!(
            &statuses[..3],
            [SeatStatus::Held, SeatStatus::Held, SeatStatus::Available]
        );

        // Paid: CONFIRMED once, however often the reply comes.
        let paid_reply = reply(
            PAYMENT_SUCCEEDED,
            booking.id,
            saga::PaymentSucceeded::default().encode_to_vec(),
        );
        rig.bookings.handle(paid_reply.clone()).await.expect("paid");
        rig.bookings.handle(paid_reply).await.expect("paid again");
        let confirmed = rig.bookings.get(buyer, booking.id).await.expect("get");
        assert_eq!(confirmed.status, BookingStatus::Confirmed);
        assert!(confirmed.updated_at >= confirmed.created_at);
        let sorted = {
            let mut ids: Vec<SeatId> = paid.clone();
            ids.sort_by_key(|s| s.0);
            ids
        };
        let booked: Vec<SeatId> = confirmed.seats.iter().map(|s| s.seat).collect();
        assert_eq!(booked, sorted, "seats in seat order");
        assert_eq!(confirmed.seats[0].section, "R");
        assert!(matches!(
            rig.bookings.get(seller, booking.id).await,
            Err(BookingError::NotFound(_))
        ));
        let statuses = rig.bookings.seat_statuses(&event).await.expect("statuses");
        assert_eq!(&statuses[..2], [SeatStatus::Sold, SeatStatus::Sold]);
        let sales = rig.bookings.sales(&event).await.expect("sales");
        assert_eq!(sales[0].seats_sold, 2);
        assert_eq!(sales[0].revenue_minor, 60_000);
        assert_eq!(sales[1].seats_sold, 0);

        // A free booking is confirmed at once, without a payment request.
        let free_hold = rig
            .bookings
            .hold(buyer, event.id, select(&[free]), None)
            .await
            .expect("free hold");
        let gift = rig
            .bookings
            .checkout(
                buyer,
                free_hold.hold_id,
                Payment::Wallet,
                IdempotencyKey::parse("checkout-free").expect("key"),
            )
            .await
            .expect("free checkout");
        assert_eq!(gift.status, BookingStatus::Confirmed);
        assert!(gift.updated_at > gift.created_at);
        assert_eq!(
            outbox_count(&rig.db, "payment.requested", gift.id.0).await,
            0
        );
        let listed = rig.bookings.list(buyer, 0, 10).await.expect("list");
        let ids: Vec<BookingId> = listed.iter().map(|b| b.id).collect();
        assert_eq!(ids, [gift.id, booking.id], "newest first");
        assert_eq!(
            rig.bookings.list(buyer, 1, 10).await.expect("page").len(),
            1
        );

        // The per-buyer limit: 3 seats owned, 2 more is one too many.
        let over: Vec<SeatId> = event.seats[2..4].iter().map(|s| s.id).collect();
        let too_many = rig
            .bookings
            .hold(buyer, event.id, select(&over), None)
            .await;
        assert!(
            matches!(too_many, Err(BookingError::SeatLimit { .. })),
            "{too_many:?}"
        );

        // Cancelling the free booking frees its seat at once; the paid one asks for a
        // refund and is CANCELLED when it comes back.
        let cancelled_gift = rig.bookings.cancel(buyer, gift.id).await.expect("cancel");
        assert_eq!(cancelled_gift.status, BookingStatus::Cancelled);
        assert_eq!(cancelled_gift.cancel_reason, "cancelled by buyer");
        let cancelling = rig
            .bookings
            .cancel(buyer, booking.id)
            .await
            .expect("cancel");
        assert_eq!(cancelling.status, BookingStatus::Cancelling);
        assert_eq!(
            outbox_count(&rig.db, REFUND_REQUESTED, booking.id.0).await,
            1
        );
        let again = rig.bookings.cancel(buyer, booking.id).await.expect("again");
        assert_eq!(again.status, BookingStatus::Cancelling);
        assert_eq!(
            outbox_count(&rig.db, REFUND_REQUESTED, booking.id.0).await,
            1
        );
        rig.bookings
            .handle(reply(
                REFUND_COMPLETED,
                booking.id,
                saga::RefundCompleted::default().encode_to_vec(),
            ))
            .await
            .expect("refunded");
        let cancelled = rig.bookings.get(buyer, booking.id).await.expect("get");
        assert_eq!(cancelled.status, BookingStatus::Cancelled);
        let statuses = rig.bookings.seat_statuses(&event).await.expect("statuses");
        assert_eq!(
            &statuses[..2],
            [SeatStatus::Available, SeatStatus::Available]
        );
        assert_eq!(statuses[5], SeatStatus::Available);

        // A payment that arrives for a cancelled booking is given back.
        rig.bookings
            .handle(reply(
                PAYMENT_SUCCEEDED,
                booking.id,
                saga::PaymentSucceeded::default().encode_to_vec(),
            ))
            .await
            .expect("late payment");
        assert_eq!(
            outbox_count(&rig.db, REFUND_REQUESTED, booking.id.0).await,
            2
        );

        // A failed payment cancels with its reason, and the seats can be booked again.
        let retry = rig
            .bookings
            .hold(buyer, event.id, select(&paid), None)
            .await
            .expect("hold again");
        let second = rig
            .bookings
            .checkout(
                buyer,
                retry.hold_id,
                Payment::Wallet,
                IdempotencyKey::parse("checkout-2").expect("key"),
            )
            .await
            .expect("checkout again");
        rig.bookings
            .handle(reply(
                PAYMENT_FAILED,
                second.id,
                saga::PaymentFailed {
                    booking_id: second.id.to_string(),
                    reason: "INSUFFICIENT_FUNDS".into(),
                }
                .encode_to_vec(),
            ))
            .await
            .expect("failed");
        let failed = rig.bookings.get(buyer, second.id).await.expect("get");
        assert_eq!(failed.status, BookingStatus::Cancelled);
        assert_eq!(failed.cancel_reason, "payment failed: INSUFFICIENT_FUNDS");

        // What the sweeper and a restore read.
        rig.bookings.sweep().await.expect("sweep");
        assert!(!rig.bookings.restore_redis().await.expect("restore"));
        rig.bookings.reconcile(second.id).await.expect("reconcile");
        rig.bookings
            .reconcile(BookingId::new())
            .await
            .expect("reconcile nothing");
    })
    .await;
}

/// An event titled `title` on sale now (for an hour), at most 4 seats a buyer.
fn details_on_sale(title: &str) -> EventDetails {
    let now = Utc::now();
    EventDetails {
        title: title.into(),
        category: "concert".into(),
        description: String::new(),
        venue: "Hall".into(),
        starts_at: now + chrono::Duration::days(2),
        sale_starts_at: now - chrono::Duration::hours(1),
        sale_ends_at: now + chrono::Duration::hours(1),
        currency: Currency::parse("currency", "KRW").expect("currency"),
        max_seats_per_buyer: 4,
    }
}

/// An event on sale now: section "R" (4 seats at 30,000) and section "Free" (2 seats).
async fn on_sale(rig: &Rig, seller: AccountId) -> Arc<EventInfo> {
    rig.bookings
        .create_event(
            seller,
            NewEvent {
                details: details_on_sale("Show"),
                sections: vec![
                    NewSection {
                        name: "R".into(),
                        price_minor: 30_000,
                        rows: vec![seats("A", 4)],
                    },
                    NewSection {
                        name: "Free".into(),
                        price_minor: 0,
                        rows: vec![seats("F", 2)],
                    },
                ],
                transfers: Default::default(),
            },
        )
        .await
        .expect("create event")
}

/// Holds `seats` for `buyer` and checks them out with `payment`.
async fn buy(
    rig: &Rig,
    buyer: AccountId,
    event: &EventInfo,
    seats: &[SeatId],
    payment: Payment,
    key: &str,
) -> booking_svc::domain::Booking {
    let hold = rig
        .bookings
        .hold(buyer, event.id, select(seats), None)
        .await
        .expect("hold");
    rig.bookings
        .checkout(
            buyer,
            hold.hold_id,
            payment,
            IdempotencyKey::parse(key).expect("key"),
        )
        .await
        .expect("checkout")
}

fn card(token: &str) -> Payment {
    Payment::Card(CardToken::parse(token).expect("token"))
}

/// The one `payment.requested` of a booking, decoded from its outbox row.
async fn payment_requested(db: &DatabaseConnection, booking: BookingId) -> saga::PaymentRequested {
    let row = db
        .query_one_raw(Statement::from_sql_and_values(
            DbBackend::Postgres,
            "SELECT payload FROM outbox WHERE kind = $1 AND saga_id = $2",
            [PAYMENT_REQUESTED.into(), booking.0.into()],
        ))
        .await
        .expect("outbox")
        .expect("a payment.requested row");
    let payload: Vec<u8> = row.try_get_by_index(0).expect("payload");
    saga::PaymentRequested::decode(payload.as_slice()).expect("a PaymentRequested")
}

#[tokio::test]
async fn a_card_checkout_sends_its_token_and_a_bad_token_names_card_token() {
    with_rig(|rig| async move {
        let seller = sign_up(&rig, "seller@example.com", Role::Seller).await;
        let buyer = sign_up(&rig, "buyer@example.com", Role::Buyer).await;
        let event = on_sale(&rig, seller).await;

        // CARD: the booking records the method, and the payment request carries the
        // method and the token (it is kept nowhere else).
        let booking = buy(
            &rig,
            buyer,
            &event,
            &[event.seats[0].id],
            card("tok_approve"),
            "card-1",
        )
        .await;
        assert_eq!(booking.status, BookingStatus::PendingPayment);
        assert_eq!(booking.method, PaymentMethod::Card);
        let stored = rig.bookings.get(buyer, booking.id).await.expect("get");
        assert_eq!(stored.method, PaymentMethod::Card);
        assert_eq!(
            booking_svc::wire::api::booking_pb(&stored).payment_method,
            pb::PaymentMethod::Card as i32
        );
        let requested = payment_requested(&rig.db, booking.id).await;
        assert_eq!(requested.method, "CARD");
        assert_eq!(requested.card_token, "tok_approve");
        assert_eq!(requested.booking_id, booking.id.to_string());
        assert_eq!(requested.buyer_id, buyer.to_string());
        assert_eq!(
            requested.amount.as_ref().map(|m| m.amount_minor),
            Some(30_000)
        );
        // A wallet payment has no token.
        let wallet = buy(
            &rig,
            buyer,
            &event,
            &[event.seats[1].id],
            Payment::Wallet,
            "wallet-1",
        )
        .await;
        let requested = payment_requested(&rig.db, wallet.id).await;
        assert_eq!(requested.method, "WALLET");
        assert_eq!(requested.card_token, "");

        // A free booking is confirmed without a payment, whatever the method.
        let free = buy(
            &rig,
            buyer,
            &event,
            &[event.seats[4].id],
            card("tok_approve"),
            "card-free",
        )
        .await;
        assert_eq!(free.status, BookingStatus::Confirmed);
        assert_eq!(free.method, PaymentMethod::Card);
        assert_eq!(outbox_count(&rig.db, PAYMENT_REQUESTED, free.id.0).await, 0);

        // The database takes only the methods there are.
        let refused = rig
            .db
            .execute_raw(Statement::from_sql_and_values(
                DbBackend::Postgres,
                "UPDATE bookings SET payment_method = 'BITCOIN' WHERE id = $1",
                [booking.id.0.into()],
            ))
            .await
            .expect_err("an unknown method");
        assert_eq!(
            db::violated_constraint(&refused).as_deref(),
            Some("bookings_payment_method_check")
        );

        // At the edge: CARD without a token, WALLET with one, a malformed token: each a
        // 400 naming cardToken, without the token in the message.
        let card_method = pb::PaymentMethod::Card as i32;
        let wallet_method = pb::PaymentMethod::Wallet as i32;
        for (method, token) in [
            (card_method, ""),
            (card_method, "  "),
            (wallet_method, "tok_approve"),
            (card_method, "4111111111111111"),
            (card_method, "tok_has space"),
            (card_method, "tok_"),
        ] {
            let error = booking_svc::wire::api::payment(method, token).unwrap_err();
            assert!(
                matches!(
                    error,
                    BookingError::InvalidArgument {
                        field: "cardToken",
                        ..
                    }
                ),
                "{method} {token:?}: {error}"
            );
            let status = tonic::Status::from(error);
            assert_eq!(status.code(), tonic::Code::InvalidArgument);
            assert!(status.message().starts_with("cardToken: "), "{status:?}");
            // The message never repeats a token sent.
            assert!(
                token.trim().len() <= 4 || !status.message().contains(token),
                "{status:?}"
            );
        }
        let unknown = booking_svc::wire::api::payment(0, "").unwrap_err();
        assert!(
            matches!(
                unknown,
                BookingError::InvalidArgument {
                    field: "paymentMethod",
                    ..
                }
            ),
            "{unknown}"
        );
        assert_eq!(
            booking_svc::wire::api::payment(card_method, "tok_decline_1").expect("card"),
            card("tok_decline_1")
        );
    })
    .await;
}

#[tokio::test]
async fn a_booking_past_its_payment_deadline_is_cancelled_and_a_late_payment_refunded() {
    let deadline = Duration::from_millis(400);
    let timing = HoldTiming {
        payment_deadline: deadline,
        ..TIMING
    };
    with_rig_timing(timing, |rig| async move {
        let seller = sign_up(&rig, "seller@example.com", Role::Seller).await;
        let buyer = sign_up(&rig, "buyer@example.com", Role::Buyer).await;
        let other = sign_up(&rig, "other@example.com", Role::Buyer).await;
        let event = on_sale(&rig, seller).await;
        let late_seats = [event.seats[0].id, event.seats[1].id];
        let late = buy(&rig, buyer, &event, &late_seats, card("tok_slow"), "late").await;
        let paid = buy(
            &rig,
            buyer,
            &event,
            &[event.seats[2].id],
            Payment::Wallet,
            "paid",
        )
        .await;
        rig.bookings
            .handle(reply(
                PAYMENT_SUCCEEDED,
                paid.id,
                saga::PaymentSucceeded::default().encode_to_vec(),
            ))
            .await
            .expect("paid");
        // Before its deadline a pending booking is left alone (checked only while the
        // deadline is surely ahead, should this machine be slow).
        rig.bookings.sweep().await.expect("sweep");
        if Utc::now() - late.created_at < chrono::Duration::milliseconds(200) {
            let pending = rig.bookings.get(buyer, late.id).await.expect("get");
            assert_eq!(pending.status, BookingStatus::PendingPayment);
        }

        // After it, the sweeper cancels it with the reason.
        let started = std::time::Instant::now();
        let cancelled = loop {
            rig.bookings.sweep().await.expect("sweep");
            let booking = rig.bookings.get(buyer, late.id).await.expect("get");
            if booking.status != BookingStatus::PendingPayment {
                break booking;
            }
            assert!(
                started.elapsed() < Duration::from_secs(10),
                "still pending long after its deadline"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        };
        assert_eq!(cancelled.status, BookingStatus::Cancelled);
        assert_eq!(cancelled.cancel_reason, DEADLINE_REASON);
        assert_eq!(cancelled.cancel_reason, "payment deadline passed");
        assert!(
            cancelled.updated_at - cancelled.created_at
                >= chrono::Duration::from_std(deadline).expect("deadline")
        );
        // Nothing is refunded for it: nothing is known to have been charged.
        assert_eq!(outbox_count(&rig.db, REFUND_REQUESTED, late.id.0).await, 0);
        // The paid booking is not touched.
        let confirmed = rig.bookings.get(buyer, paid.id).await.expect("get");
        assert_eq!(confirmed.status, BookingStatus::Confirmed);
        // Its seats are free again in Redis (and no longer active in Postgres): the
        // snapshot shows them available and someone else can hold them.
        let (_, snapshot) = rig.bookings.seat_snapshot(&event).await.expect("snapshot");
        assert_eq!(
            &snapshot[..3],
            [
                SeatStatus::Available,
                SeatStatus::Available,
                SeatStatus::Sold
            ]
        );
        let again = rig
            .bookings
            .hold(other, event.id, select(&late_seats), None)
            .await
            .expect("the seats can be held again");
        rig.bookings
            .release(other, again.hold_id)
            .await
            .expect("release");
        // A second pass finds nothing more to cancel.
        assert_eq!(rig.bookings.cancel_overdue().await.expect("sweep"), 0);

        // pay-svc's late answer. A failure changes nothing: the status and the reason
        // stay the deadline's.
        rig.bookings
            .handle(reply(
                PAYMENT_FAILED,
                late.id,
                saga::PaymentFailed {
                    booking_id: late.id.to_string(),
                    reason: "CARD_DECLINED".into(),
                }
                .encode_to_vec(),
            ))
            .await
            .expect("late failure");
        let after_failure = rig.bookings.get(buyer, late.id).await.expect("get");
        assert_eq!(after_failure.status, BookingStatus::Cancelled);
        assert_eq!(after_failure.cancel_reason, DEADLINE_REASON);
        assert_eq!(after_failure.updated_at, cancelled.updated_at);
        assert_eq!(outbox_count(&rig.db, REFUND_REQUESTED, late.id.0).await, 0);

        // A success is given back: exactly one refund request, however often the same
        // reply is delivered.
        let late_payment = reply(
            PAYMENT_SUCCEEDED,
            late.id,
            saga::PaymentSucceeded::default().encode_to_vec(),
        );
        rig.bookings
            .handle(late_payment.clone())
            .await
            .expect("late payment");
        rig.bookings
            .handle(late_payment)
            .await
            .expect("late payment again");
        assert_eq!(outbox_count(&rig.db, REFUND_REQUESTED, late.id.0).await, 1);
        // The refund's completion finds the booking CANCELLED already: nothing moves.
        rig.bookings
            .handle(reply(
                REFUND_COMPLETED,
                late.id,
                saga::RefundCompleted::default().encode_to_vec(),
            ))
            .await
            .expect("refund completed");
        let settled = rig.bookings.get(buyer, late.id).await.expect("get");
        assert_eq!(settled.status, BookingStatus::Cancelled);
        assert_eq!(settled.cancel_reason, DEADLINE_REASON);
        assert_eq!(settled.updated_at, cancelled.updated_at);
        let (_, snapshot) = rig.bookings.seat_snapshot(&event).await.expect("snapshot");
        assert_eq!(
            &snapshot[..2],
            [SeatStatus::Available, SeatStatus::Available]
        );
    })
    .await;
}

/// A rolling sale expires more holds a sweep tick than one batch of due holds: one
/// sweep releases every hold past its deadline (here 600, more than two batches), so no
/// seat stays held after its hold's time is up.
#[tokio::test]
async fn one_sweep_releases_every_due_hold_not_only_the_first_batch() {
    let timing = HoldTiming {
        hold_ttl: Duration::from_millis(500),
        ..TIMING
    };
    with_rig_timing(timing, |rig| async move {
        const HOLDS: usize = 600;
        let seller = sign_up(&rig, "seller@example.com", Role::Seller).await;
        let event = rig
            .bookings
            .create_event(
                seller,
                NewEvent {
                    details: details_on_sale("Rolling sale"),
                    sections: vec![NewSection {
                        name: "R".into(),
                        price_minor: 30_000,
                        rows: (0..HOLDS / 100)
                            .map(|r| seats(&format!("R{r}"), 100))
                            .collect(),
                    }],
                    transfers: Default::default(),
                },
            )
            .await
            .expect("create event");
        // One seat a buyer (the data layer takes the buyer as the gateway verified it).
        let held = futures::future::join_all(event.seats.iter().map(|seat| {
            rig.bookings
                .hold(AccountId::new(), event.id, select(&[seat.id]), None)
        }))
        .await;
        assert!(held.iter().all(Result::is_ok), "every seat held");
        let statuses = rig.bookings.seat_statuses(&event).await.expect("statuses");
        assert_eq!(statuses.len(), HOLDS);
        assert!(statuses.iter().all(|s| *s == SeatStatus::Held));

        tokio::time::sleep(Duration::from_millis(700)).await;
        let released = rig.bookings.sweep().await.expect("sweep");
        assert_eq!(released, HOLDS, "one sweep releases every due hold");
        let statuses = rig.bookings.seat_statuses(&event).await.expect("statuses");
        assert!(
            statuses.iter().all(|s| *s == SeatStatus::Available),
            "every seat is on sale again"
        );
        assert_eq!(
            rig.bookings.sweep().await.expect("sweep"),
            0,
            "nothing left due"
        );
    })
    .await;
}

/// Replies that arrive together are applied in one transaction; an unreadable one in
/// their middle is refused on its own, and the others still move their bookings once.
#[tokio::test]
async fn replies_handled_together_move_their_bookings_and_a_bad_one_fails_alone() {
    with_rig(|rig| async move {
        let seller = sign_up(&rig, "seller@example.com", Role::Seller).await;
        let buyer = sign_up(&rig, "buyer@example.com", Role::Buyer).await;
        let event = on_sale(&rig, seller).await;
        let mut bought = Vec::new();
        for (i, seat) in event.seats[..3].iter().enumerate() {
            bought.push(
                buy(
                    &rig,
                    buyer,
                    &event,
                    &[seat.id],
                    Payment::Wallet,
                    &format!("b{i}"),
                )
                .await,
            );
        }
        let paid = |booking: BookingId| {
            reply(
                PAYMENT_SUCCEEDED,
                booking,
                saga::PaymentSucceeded::default().encode_to_vec(),
            )
        };
        let first_paid = paid(bought[0].id);
        let results = rig
            .bookings
            .handle_batch(vec![
                first_paid.clone(),
                reply(PAYMENT_SUCCEEDED, bought[1].id, vec![0xff, 0xff]),
                reply(
                    PAYMENT_FAILED,
                    bought[2].id,
                    saga::PaymentFailed {
                        booking_id: bought[2].id.0.to_string(),
                        reason: "INSUFFICIENT_FUNDS".into(),
                    }
                    .encode_to_vec(),
                ),
                first_paid,
            ])
            .await;
        assert_eq!(results.len(), 4);
        assert!(results[0].is_ok(), "{:?}", results[0]);
        assert!(
            matches!(results[1], Err(HandleError::Permanent(_))),
            "{:?}",
            results[1]
        );
        assert!(results[2].is_ok(), "{:?}", results[2]);
        assert!(
            results[3].is_ok(),
            "a duplicate is no error: {:?}",
            results[3]
        );
        let status = async |i: usize| {
            rig.bookings
                .get(buyer, bought[i].id)
                .await
                .expect("get")
                .status
        };
        assert_eq!(status(0).await, BookingStatus::Confirmed);
        assert_eq!(status(1).await, BookingStatus::PendingPayment);
        assert_eq!(status(2).await, BookingStatus::Cancelled);
        let statuses = rig.bookings.seat_statuses(&event).await.expect("statuses");
        assert_eq!(
            &statuses[..3],
            [SeatStatus::Sold, SeatStatus::Held, SeatStatus::Available]
        );
        assert_eq!(
            steps_of(&rig, bought[0].id, "CONFIRMED").await,
            1,
            "confirmed once"
        );

        // A batch without a bad reply goes through whole.
        let results = rig
            .bookings
            .handle_batch(vec![paid(bought[1].id), paid(bought[0].id)])
            .await;
        assert!(results.iter().all(Result::is_ok), "{results:?}");
        assert_eq!(status(1).await, BookingStatus::Confirmed);
        assert_eq!(status(0).await, BookingStatus::Confirmed);
        let statuses = rig.bookings.seat_statuses(&event).await.expect("statuses");
        assert_eq!(&statuses[..2], [SeatStatus::Sold, SeatStatus::Sold]);
    })
    .await;
}

/// How many timeline steps moved booking `booking` to `status`.
async fn steps_of(rig: &Rig, booking: BookingId, status: &str) -> i64 {
    rig.db
        .query_one_raw(Statement::from_sql_and_values(
            DbBackend::Postgres,
            "SELECT count(*) FROM saga_steps WHERE booking_id = $1 AND to_status = $2",
            [booking.0.into(), status.into()],
        ))
        .await
        .expect("steps")
        .expect("a row")
        .try_get_by_index::<i64>(0)
        .expect("count")
}

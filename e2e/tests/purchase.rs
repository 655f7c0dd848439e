//! End-to-end purchase flows through the REST gateway, on real PostgreSQL, Redis and
//! RabbitMQ: the saga, its compensation, refunds, hold expiry and idempotency.

use std::time::Duration;

use marquee_e2e::{Options, System};
use marquee_infra::bus::Envelope;
use reqwest::Method;
use serde_json::json;
use sqlx::Row;

/// Seat ids of an event, in seat-map order.
async fn seat_ids(sys: &System, event_id: &str) -> Vec<String> {
    sys.seats(event_id).await.into_iter().map(|s| s.0).collect()
}

async fn count_status(sys: &System, event_id: &str, status: &str) -> usize {
    sys.seats(event_id)
        .await
        .iter()
        .filter(|s| s.1 == status)
        .count()
}

#[tokio::test]
async fn buyer_books_pays_and_gets_a_refund() {
    let sys = System::start().await;
    let (seller_id, seller) = sys.account("SELLER").await;
    let event = sys
        .event(&seller, &[("R", 30_000, 1, 4), ("S", 10_000, 1, 4)], 0)
        .await;
    let event_id = event["eventId"].as_str().unwrap().to_owned();
    assert_eq!(event["sellerId"], seller_id);
    assert_eq!(event["seatCount"], 8);
    assert_eq!(event["maxSeatsPerBuyer"], 4);

    let (buyer_id, buyer) = sys.account("BUYER").await;
    let me = sys.get("/v1/me", Some(&buyer)).await;
    assert_eq!(me.status, 200, "{:?}", me.body);
    assert_eq!(me.str("/account/accountId"), buyer_id);
    assert_eq!(me.str("/walletBalance/amountMinor"), "100000");

    let seats = sys.seats(&event_id).await;
    assert!(seats.iter().all(|s| s.1 == "AVAILABLE"));
    let r_seats: Vec<String> = seats
        .iter()
        .filter(|s| s.2 == 30_000)
        .take(2)
        .map(|s| s.0.clone())
        .collect();

    let hold = sys.hold(&buyer, &event_id, &r_seats).await;
    assert_eq!(hold.status, 201, "{:?}", hold.body);
    assert_eq!(hold.str("/total/amountMinor"), "60000");
    assert!(hold.str("/expiresAt").ends_with('Z'));
    let hold_id = hold.str("/holdId");
    assert_eq!(count_status(&sys, &event_id, "HELD").await, 2);

    // Another buyer cannot take a held seat, and is told which one.
    let (_, rival) = sys.account("BUYER").await;
    let clash = sys.hold(&rival, &event_id, &r_seats[..1]).await;
    assert_eq!(clash.status, 409, "{:?}", clash.body);
    assert!(
        clash.body["message"]
            .as_str()
            .unwrap()
            .contains(&r_seats[0])
    );
    assert_eq!(clash.body["details"][0]["reason"], "SEATS_UNAVAILABLE");

    let booking = sys.checkout(&buyer, &hold_id, "key-1").await;
    assert_eq!(booking.status, 202, "{:?}", booking.body);
    assert_eq!(booking.str("/status"), "PENDING_PAYMENT");
    let booking_id = booking.str("/bookingId");
    // Same key again: the same booking, not a second one.
    let again = sys.checkout(&buyer, &hold_id, "key-1").await;
    assert_eq!(again.status, 202, "{:?}", again.body);
    assert_eq!(again.str("/bookingId"), booking_id);

    let confirmed = sys.await_booking(&buyer, &booking_id, "CONFIRMED").await;
    assert_eq!(confirmed["total"]["amountMinor"], "60000");
    assert_eq!(confirmed["seats"].as_array().unwrap().len(), 2);
    assert_eq!(count_status(&sys, &event_id, "SOLD").await, 2);
    assert_eq!(sys.balance(&buyer).await, 40_000);

    let wallet = sys.get("/v1/wallet", Some(&buyer)).await;
    let kinds: Vec<&str> = wallet.body["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["kind"].as_str().unwrap())
        .collect();
    assert_eq!(kinds, ["PAYMENT", "WELCOME_CREDIT"]);

    let listed = sys.get("/v1/bookings", Some(&buyer)).await;
    assert_eq!(listed.body["bookings"].as_array().unwrap().len(), 1);

    // The seller sees the sale; nobody else does.
    let sales_path = format!("/v1/events/{event_id}/sales");
    let sales = sys.get(&sales_path, Some(&seller)).await;
    assert_eq!(sales.status, 200, "{:?}", sales.body);
    assert_eq!(sales.body["seatsSold"], 2);
    assert_eq!(sales.str("/revenue/amountMinor"), "60000");
    let r = sales.body["sections"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == "R")
        .unwrap()
        .clone();
    assert_eq!(r["seatsSold"], 2);
    assert_eq!(sys.get(&sales_path, Some(&buyer)).await.status, 403);
    let (_, other_seller) = sys.account("SELLER").await;
    assert_eq!(sys.get(&sales_path, Some(&other_seller)).await.status, 403);

    // A buyer sees only their own booking and wallet.
    let cancel_path = format!("/v1/bookings/{booking_id}:cancel");
    assert_eq!(
        sys.get(&format!("/v1/bookings/{booking_id}"), Some(&rival))
            .await
            .status,
        404
    );
    assert_eq!(sys.balance(&rival).await, 100_000);
    assert_eq!(
        sys.post(&cancel_path, Some(&rival), json!({})).await.status,
        404
    );

    // Cancel: the refund saga gives the money back and frees the seats.
    let cancelling = sys.post(&cancel_path, Some(&buyer), json!({})).await;
    assert_eq!(cancelling.status, 202, "{:?}", cancelling.body);
    let cancelled = sys.await_booking(&buyer, &booking_id, "CANCELLED").await;
    assert_eq!(cancelled["cancelReason"], "cancelled by buyer");
    assert_eq!(sys.balance(&buyer).await, 100_000);
    assert_eq!(count_status(&sys, &event_id, "AVAILABLE").await, 8);
    assert_eq!(
        sys.get(&sales_path, Some(&seller)).await.body["seatsSold"],
        0
    );
    let again = sys.post(&cancel_path, Some(&buyer), json!({})).await;
    assert_eq!(again.status, 400, "{:?}", again.body);

    // The freed seats can be bought again.
    let hold = sys.hold(&rival, &event_id, &r_seats).await;
    assert_eq!(hold.status, 201, "{:?}", hold.body);
    sys.stop().await;
}

#[tokio::test]
async fn insufficient_funds_cancels_the_booking_and_releases_the_seats() {
    let sys = System::start().await;
    let (_, event_id) = sys.seller_event(&[("VIP", 60_000, 1, 4)], 0).await;
    let (_, buyer) = sys.account("BUYER").await;
    let seats = seat_ids(&sys, &event_id).await;
    let hold = sys.hold(&buyer, &event_id, &seats[..2]).await;
    assert_eq!(hold.status, 201, "{:?}", hold.body);
    let booking = sys.checkout(&buyer, &hold.str("/holdId"), "poor").await;
    assert_eq!(booking.status, 202, "{:?}", booking.body);
    let cancelled = sys
        .await_booking(&buyer, &booking.str("/bookingId"), "CANCELLED")
        .await;
    assert_eq!(
        cancelled["cancelReason"],
        "payment failed: INSUFFICIENT_FUNDS"
    );
    assert_eq!(sys.balance(&buyer).await, 100_000);
    assert_eq!(count_status(&sys, &event_id, "AVAILABLE").await, 4);
    // The released seats no longer count against the buyer's limit; one is affordable.
    let hold = sys.hold(&buyer, &event_id, &seats[..1]).await;
    assert_eq!(hold.status, 201, "{:?}", hold.body);
    let booking = sys
        .checkout(&buyer, &hold.str("/holdId"), "rich-enough")
        .await;
    sys.await_booking(&buyer, &booking.str("/bookingId"), "CONFIRMED")
        .await;
    assert_eq!(sys.balance(&buyer).await, 40_000);
    sys.stop().await;
}

#[tokio::test]
async fn holds_expire_and_can_be_released() {
    let sys = System::start_with(Options {
        hold_ttl: Duration::from_millis(1500),
        ..Options::default()
    })
    .await;
    let (_, event_id) = sys.seller_event(&[("A", 1_000, 1, 6)], 0).await;
    let (_, buyer) = sys.account("BUYER").await;
    let seats = seat_ids(&sys, &event_id).await;

    let hold = sys.hold(&buyer, &event_id, &seats[..2]).await;
    assert_eq!(hold.status, 201, "{:?}", hold.body);
    let hold_id = hold.str("/holdId");
    assert_eq!(count_status(&sys, &event_id, "HELD").await, 2);

    // The service releases it by itself once its time is up.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while count_status(&sys, &event_id, "HELD").await > 0 {
        assert!(tokio::time::Instant::now() < deadline, "hold never expired");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let late = sys.checkout(&buyer, &hold_id, "late").await;
    assert_eq!(late.status, 404, "{:?}", late.body);
    assert_eq!(
        sys.get("/v1/bookings", Some(&buyer)).await.body["bookings"]
            .as_array()
            .unwrap()
            .len(),
        0
    );

    // An explicit release frees the seats at once; only the owner may release.
    let hold_id = sys
        .hold(&buyer, &event_id, &seats[2..4])
        .await
        .str("/holdId");
    let (_, rival) = sys.account("BUYER").await;
    let path = format!("/v1/holds/{hold_id}");
    let stolen = sys
        .call(Method::DELETE, &path, Some(&rival), None, &[])
        .await;
    assert_eq!(stolen.status, 404, "{:?}", stolen.body);
    let released = sys
        .call(Method::DELETE, &path, Some(&buyer), None, &[])
        .await;
    assert_eq!(released.status, 200, "{:?}", released.body);
    assert_eq!(count_status(&sys, &event_id, "AVAILABLE").await, 6);
    sys.stop().await;
}

#[tokio::test]
async fn per_buyer_limit_spans_holds() {
    let sys = System::start().await;
    let (_, event_id) = sys.seller_event(&[("A", 1_000, 2, 5)], 3).await;
    let (_, buyer) = sys.account("BUYER").await;
    let seats = seat_ids(&sys, &event_id).await;
    assert_eq!(sys.hold(&buyer, &event_id, &seats[..2]).await.status, 201);
    let second = sys.hold(&buyer, &event_id, &seats[2..4]).await;
    assert_eq!(second.status, 400, "{:?}", second.body);
    assert_eq!(second.body["details"][0]["reason"], "SEAT_LIMIT");
    let one_more = sys.hold(&buyer, &event_id, &seats[2..3]).await;
    assert_eq!(one_more.status, 201, "{:?}", one_more.body);
    sys.stop().await;
}

#[tokio::test]
async fn a_redelivered_bus_message_has_one_effect() {
    let sys = System::start().await;
    let (_, event_id) = sys.seller_event(&[("A", 25_000, 1, 4)], 0).await;
    let (_, buyer) = sys.account("BUYER").await;
    let seats = seat_ids(&sys, &event_id).await;
    let hold = sys.hold(&buyer, &event_id, &seats[..1]).await;
    let booking_id = sys
        .checkout(&buyer, &hold.str("/holdId"), "once")
        .await
        .str("/bookingId");
    sys.await_booking(&buyer, &booking_id, "CONFIRMED").await;
    assert_eq!(sys.balance(&buyer).await, 75_000);

    // Deliver the very same PaymentRequested again, twice, and pay-svc's reply too.
    for (pool, kind) in [
        (&sys.booking_pool, "payment.requested"),
        (&sys.pay_pool, "payment.succeeded"),
    ] {
        let row = sqlx::query(
            "SELECT message_id, saga_id, version, payload, occurred_at FROM outbox WHERE kind = $1",
        )
        .bind(kind)
        .fetch_one(pool)
        .await
        .unwrap();
        let envelope = Envelope {
            message_id: row.get("message_id"),
            kind: kind.to_owned(),
            saga_id: row.get("saga_id"),
            version: row.get("version"),
            occurred_at: row.get("occurred_at"),
            trace_context: Default::default(),
            payload: row.get("payload"),
        };
        sys.bus.publish(&envelope).await.unwrap();
        sys.bus.publish(&envelope).await.unwrap();
    }
    // A later purchase through the same queues completes after the duplicates were
    // delivered; by then they must have had no effect.
    let (_, later) = sys.account("BUYER").await;
    let hold = sys.hold(&later, &event_id, &seats[1..2]).await;
    let second = sys.checkout(&later, &hold.str("/holdId"), "later").await;
    sys.await_booking(&later, &second.str("/bookingId"), "CONFIRMED")
        .await;
    tokio::time::sleep(Duration::from_millis(300)).await;

    let count = |pool: &sqlx::PgPool, sql: &'static str| {
        let pool = pool.clone();
        async move {
            sqlx::query_scalar::<_, i64>(sql)
                .fetch_one(&pool)
                .await
                .unwrap()
        }
    };
    assert_eq!(
        count(&sys.pay_pool, "SELECT count(*) FROM payments").await,
        2
    );
    assert_eq!(
        count(
            &sys.pay_pool,
            "SELECT count(*) FROM ledger_entries WHERE kind = 'PAYMENT'"
        )
        .await,
        2
    );
    assert_eq!(
        count(
            &sys.pay_pool,
            "SELECT count(*) FROM outbox WHERE kind = 'payment.succeeded'"
        )
        .await,
        2,
        "a duplicate request must not produce another reply"
    );
    assert_eq!(
        count(
            &sys.booking_pool,
            "SELECT count(*) FROM outbox WHERE kind = 'refund.requested'"
        )
        .await,
        0
    );
    assert_eq!(sys.balance(&buyer).await, 75_000);
    sys.await_booking(&buyer, &booking_id, "CONFIRMED").await;
    sys.stop().await;
}

#[tokio::test]
async fn one_idempotency_key_cannot_book_two_holds() {
    let sys = System::start().await;
    let (_, event_id) = sys.seller_event(&[("A", 1_000, 1, 4)], 0).await;
    let (_, buyer) = sys.account("BUYER").await;
    let seats = seat_ids(&sys, &event_id).await;
    let a = sys
        .hold(&buyer, &event_id, &seats[..1])
        .await
        .str("/holdId");
    let b = sys
        .hold(&buyer, &event_id, &seats[1..2])
        .await
        .str("/holdId");
    assert_eq!(sys.checkout(&buyer, &a, "same").await.status, 202);
    let second = sys.checkout(&buyer, &b, "same").await;
    assert_eq!(second.status, 409, "{:?}", second.body);
    // Concurrent retries of one checkout produce one booking.
    let c = sys
        .hold(&buyer, &event_id, &seats[2..3])
        .await
        .str("/holdId");
    let replies =
        futures::future::join_all((0..5).map(|_| sys.checkout(&buyer, &c, "burst"))).await;
    let ids: std::collections::HashSet<String> = replies
        .iter()
        .inspect(|r| assert_eq!(r.status, 202, "{:?}", r.body))
        .map(|r| r.str("/bookingId"))
        .collect();
    assert_eq!(ids.len(), 1);
    let count: i64 = sqlx::query_scalar("SELECT count(*) FROM bookings")
        .fetch_one(&sys.booking_pool)
        .await
        .unwrap();
    assert_eq!(count, 2);
    sys.stop().await;
}

#[tokio::test]
async fn a_payment_arriving_for_a_cancelled_booking_is_refunded() {
    let sys = System::start().await;
    let (_, event_id) = sys.seller_event(&[("VIP", 60_000, 1, 4)], 0).await;
    let (_, buyer) = sys.account("BUYER").await;
    let seats = seat_ids(&sys, &event_id).await;
    let hold = sys.hold(&buyer, &event_id, &seats[..2]).await;
    let booking_id = sys
        .checkout(&buyer, &hold.str("/holdId"), "late-pay")
        .await
        .str("/bookingId");
    sys.await_booking(&buyer, &booking_id, "CANCELLED").await;

    // A success for the same booking arrives after it was compensated.
    let booking_uuid: uuid::Uuid = booking_id.parse().unwrap();
    let late = marquee_proto::saga::PaymentSucceeded {
        booking_id: booking_id.clone(),
        payment_id: uuid::Uuid::new_v4().to_string(),
        amount: Some(marquee_proto::Money {
            amount_minor: 120_000,
            currency: "KRW".into(),
        }),
    };
    sys.bus
        .publish(&Envelope {
            message_id: uuid::Uuid::now_v7(),
            kind: "payment.succeeded".into(),
            saga_id: booking_uuid,
            version: 1,
            occurred_at: chrono::Utc::now(),
            trace_context: Default::default(),
            payload: prost::Message::encode_to_vec(&late),
        })
        .await
        .unwrap();

    // booking-svc asks for the money back and the booking stays cancelled.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let refunds: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM outbox WHERE kind = 'refund.requested' AND saga_id = $1",
        )
        .bind(booking_uuid)
        .fetch_one(&sys.booking_pool)
        .await
        .unwrap();
        if refunds == 1 {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no refund requested"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let booking = sys.await_booking(&buyer, &booking_id, "CANCELLED").await;
    assert_eq!(
        booking["cancelReason"],
        "payment failed: INSUFFICIENT_FUNDS"
    );
    assert_eq!(count_status(&sys, &event_id, "AVAILABLE").await, 4);
    assert_eq!(sys.balance(&buyer).await, 100_000);
    sys.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn free_seats_confirm_without_a_payment_and_cancel_without_a_refund() {
    let sys = System::start().await;
    let (_, event_id) = sys
        .seller_event(&[("Invitation", 0, 1, 4), ("R", 30_000, 1, 4)], 4)
        .await;
    let free: Vec<String> = sys
        .seats(&event_id)
        .await
        .into_iter()
        .filter(|s| s.2 == 0)
        .take(2)
        .map(|s| s.0)
        .collect();
    let (_, buyer) = sys.account("BUYER").await;
    let mut progress = sys
        .sse(&format!("/v1/events/{event_id}/seats:watch"), None, None)
        .await
        .unwrap_or_else(|r| panic!("watch refused: {r:?}"));
    progress.next().await;

    let hold = sys.hold(&buyer, &event_id, &free).await;
    assert_eq!(hold.status, 201, "{:?}", hold.body);
    assert_eq!(hold.str("/total/amountMinor"), "0");
    let booking = sys.checkout(&buyer, &hold.str("/holdId"), "free-1").await;
    assert_eq!(booking.status, 202, "{:?}", booking.body);
    let booking_id = booking.str("/bookingId");
    // Nothing to pay: confirmed at once, never cancelled for an invalid amount.
    assert_eq!(booking.str("/status"), "CONFIRMED", "{:?}", booking.body);
    let confirmed = sys.await_booking(&buyer, &booking_id, "CONFIRMED").await;
    assert_eq!(confirmed["total"]["amountMinor"], "0");
    assert_eq!(count_status(&sys, &event_id, "SOLD").await, 2);
    assert_eq!(sys.balance(&buyer).await, 100_000);
    // The live map shows them held, then sold, like any sale.
    let mut reasons = Vec::new();
    while reasons.len() < 2 {
        let event = progress.next().await;
        for item in event.data["changes"]["items"].as_array().expect("items") {
            reasons.push(item["reason"].as_str().unwrap_or_default().to_owned());
        }
    }
    assert_eq!(reasons, ["SEATS_HELD", "SEATS_SOLD"]);

    let cancelled = sys
        .post(
            &format!("/v1/bookings/{booking_id}:cancel"),
            Some(&buyer),
            serde_json::json!({}),
        )
        .await;
    assert_eq!(cancelled.status, 202, "{:?}", cancelled.body);
    assert_eq!(
        cancelled.str("/status"),
        "CANCELLED",
        "{:?}",
        cancelled.body
    );
    assert_eq!(count_status(&sys, &event_id, "AVAILABLE").await, 8);
    // No refund: nothing was paid, and the wallet never moved.
    assert_eq!(sys.balance(&buyer).await, 100_000);
    let wallet = sys.get("/v1/wallet", Some(&buyer)).await;
    let entries = wallet.body["entries"].as_array().map_or(0, Vec::len);
    assert_eq!(entries, 1, "only the welcome credit: {:?}", wallet.body);
    sys.stop().await;
}

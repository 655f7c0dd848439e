//! The shared sale checks (`marquee_e2e::checks`) pass on an honest sale and catch each
//! violation they exist for: a seat in two active bookings, a seat map that disagrees
//! with the bookings, and money created out of nothing.

use std::collections::HashSet;

use marquee_e2e::{Money, Oversell, System, WELCOME_CREDIT_MINOR};
use uuid::Uuid;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_checks_pass_an_honest_sale_and_catch_each_violation() {
    let sys = System::start().await;
    let (_, event_id) = sys.seller_event(&[("R", 30_000, 1, 4)], 4).await;
    let seats = sys.seat_ids(&event_id).await;
    let (buyer_id, buyer) = sys.account("BUYER").await;
    let hold = sys.hold(&buyer, &event_id, &seats[0..2]).await;
    assert_eq!(hold.status, 201, "{:?}", hold.body);
    let booked = sys.checkout(&buyer, &hold.str("/holdId"), "honest").await;
    assert_eq!(booked.status, 202, "{:?}", booked.body);
    let booking_id = booked.str("/bookingId");
    sys.await_booking(&buyer, &booking_id, "CONFIRMED").await;

    let sold: HashSet<String> = sys
        .seats(&event_id)
        .await
        .into_iter()
        .filter(|s| s.1 == "SOLD")
        .map(|s| s.0)
        .collect();
    assert_eq!(sold.len(), 2);

    // An honest sale passes both checks.
    let honest = Oversell::check(&sys.booking_pool, &sold).await;
    assert!(honest.ok(), "{honest:?}");
    assert_eq!(honest.confirmed_seats(), 2);
    assert_eq!(honest.revenue(), 60_000);
    let buyer_uuid: Uuid = buyer_id.parse().expect("account id");
    assert_eq!(honest.spent_by(buyer_uuid), 60_000);
    let money = Money::check(&sys.pay_pool).await;
    assert!(money.conserved(), "{money:?}");
    assert_eq!(money.captured, 60_000);
    assert_eq!(
        money.balances,
        money.wallets * WELCOME_CREDIT_MINOR - 60_000
    );

    // The seat map missing a sold seat, or showing a free one SOLD, is caught.
    let first = seats[0].clone();
    let mut missing = sold.clone();
    missing.remove(&first);
    let check = Oversell::check(&sys.booking_pool, &missing).await;
    assert!(!check.seat_map_agrees() && !check.ok(), "{check:?}");
    assert_eq!(check.booked_not_sold, vec![first.clone()]);
    let mut extra = sold.clone();
    extra.insert(seats[3].clone());
    let check = Oversell::check(&sys.booking_pool, &extra).await;
    assert_eq!(check.sold_without_booking, vec![seats[3].clone()]);
    assert!(!check.ok());

    // A second confirmed booking of the same seats (written past the unique index as
    // inactive rows, as a broken release would) is caught as a seat sold twice.
    let original: Uuid = booking_id.parse().expect("booking id");
    let forged = Uuid::new_v4();
    sqlx::query(
        "INSERT INTO bookings (id, event_id, buyer_id, hold_id, status, total_minor, currency,
                               payment_method, idempotency_key)
         SELECT $1, event_id, buyer_id, $2, 'CONFIRMED', total_minor, currency,
                payment_method, 'forged'
         FROM bookings WHERE id = $3",
    )
    .bind(forged)
    .bind(Uuid::new_v4())
    .bind(original)
    .execute(&sys.booking_pool)
    .await
    .expect("forged booking");
    sqlx::query(
        "INSERT INTO booking_seats (booking_id, seat_id, event_id, price_minor, active)
         SELECT $1, seat_id, event_id, price_minor, false FROM booking_seats
         WHERE booking_id = $2",
    )
    .bind(forged)
    .bind(original)
    .execute(&sys.booking_pool)
    .await
    .expect("forged seats");
    let check = Oversell::check(&sys.booking_pool, &sold).await;
    assert!(!check.never_sold_twice() && !check.ok(), "{check:?}");
    let mut twice: Vec<String> = check.sold_twice.iter().map(Uuid::to_string).collect();
    twice.sort();
    let mut expected: Vec<String> = sold.iter().cloned().collect();
    expected.sort();
    assert_eq!(twice, expected);

    // One minor unit appearing in a wallet is money created.
    sqlx::query(
        "UPDATE wallets SET balance_minor = balance_minor + 1
         WHERE account_id = (SELECT account_id FROM wallets LIMIT 1)",
    )
    .execute(&sys.pay_pool)
    .await
    .expect("wallet credited");
    let money = Money::check(&sys.pay_pool).await;
    assert!(!money.conserved(), "{money:?}");

    sys.stop().await;
}

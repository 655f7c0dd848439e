//! A crowd at the same seats: 200 concurrent buyers over REST for 50 seats. Every seat
//! is sold at most once, SOLD seats match confirmed bookings, and money is conserved;
//! with the hold store on the local Redis and on a real three-master Redis Cluster.

use std::collections::HashSet;
use std::time::Duration;

use marquee_e2e::{Money, Options, Oversell, System, WELCOME_CREDIT_MINOR};
use rand::Rng;
use rand::seq::IndexedRandom;

const BUYERS: usize = 200;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hundred_buyers_fifty_seats() {
    crowd(None).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hundred_buyers_fifty_seats_on_a_redis_cluster() {
    crowd(Some(marquee_testkit::redis_cluster::redis_cluster())).await;
}

async fn crowd(redis: Option<marquee_infra::redis_conn::RedisTarget>) {
    let sys = System::start_with(Options {
        booking_connections: 20,
        pay_connections: 10,
        redis,
        ..Options::default()
    })
    .await;
    let (_, seller) = sys.account("SELLER").await;
    // Two price tiers: four B seats (160,000) exceed a wallet, so some payments fail.
    let event = sys
        .event(&seller, &[("A", 10_000, 3, 10), ("B", 40_000, 2, 10)], 4)
        .await;
    let event_id = event["eventId"].as_str().unwrap().to_owned();
    let seat_ids: Vec<String> = sys.seat_ids(&event_id).await;
    assert_eq!(seat_ids.len(), 50);

    let buyers = futures::future::join_all((0..BUYERS).map(|_| sys.account("BUYER"))).await;

    let outcomes = futures::future::join_all(buyers.iter().enumerate().map(|(i, (_, token))| {
        let sys = &sys;
        let seat_ids = &seat_ids;
        let event_id = &event_id;
        async move {
            let picks: Vec<String> = {
                let mut rng = rand::rng();
                let n = rng.random_range(1..=4);
                seat_ids.choose_multiple(&mut rng, n).cloned().collect()
            };
            let hold = sys.hold(token, event_id, &picks).await;
            match hold.status {
                201 => {}
                409 => return (409u16, None),
                other => panic!("hold answered {other}: {:?}", hold.body),
            }
            let booking = sys
                .checkout(token, &hold.str("/holdId"), &format!("buyer-{i}"))
                .await;
            assert_eq!(booking.status, 202, "{:?}", booking.body);
            (201, Some(booking.str("/bookingId")))
        }
    }))
    .await;
    let granted = outcomes.iter().filter(|o| o.0 == 201).count();
    let refused = outcomes.iter().filter(|o| o.0 == 409).count();
    assert!(granted > 0, "nobody got a seat");
    assert!(refused > 0, "200 buyers for 50 seats must collide");

    // Wait for every saga to settle.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let pending: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM bookings WHERE status IN ('PENDING_PAYMENT', 'CANCELLING')",
        )
        .fetch_one(&sys.booking_pool)
        .await
        .unwrap();
        if pending == 0 {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{pending} bookings never settled"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // Every seat sold at most once, and what buyers see as SOLD is exactly what
    // confirmed bookings hold.
    let seats = sys.seats(&event_id).await;
    let sold: HashSet<String> = seats
        .iter()
        .filter(|s| s.1 == "SOLD")
        .map(|s| s.0.clone())
        .collect();
    let oversell = Oversell::check(&sys.booking_pool, &sold).await;
    oversell.assert_ok();
    // Every granted hold was checked out and every saga settled: no seat is left held.
    let held: Vec<&String> = seats
        .iter()
        .filter(|s| s.1 == "HELD")
        .map(|s| &s.0)
        .collect();
    assert!(
        held.is_empty(),
        "seats left held after the sale settled: {held:?}"
    );
    let cancelled: i64 =
        sqlx::query_scalar("SELECT count(*) FROM bookings WHERE status = 'CANCELLED'")
            .fetch_one(&sys.booking_pool)
            .await
            .unwrap();
    let booked = outcomes.iter().filter(|o| o.1.is_some()).count();
    let confirmed_bookings: i64 =
        sqlx::query_scalar("SELECT count(*) FROM bookings WHERE status = 'CONFIRMED'")
            .fetch_one(&sys.booking_pool)
            .await
            .unwrap();
    assert_eq!(confirmed_bookings + cancelled, booked as i64);

    // Money is conserved: wallets + captured payments = credits issued, and each
    // buyer paid exactly for their confirmed seats.
    let money = Money::check(&sys.pay_pool).await;
    money.assert_conserved();
    let revenue = oversell.revenue();
    assert_eq!(money.captured, revenue);
    for (buyer_id, token) in buyers.iter().take(40) {
        let buyer: uuid::Uuid = buyer_id.parse().expect("account id");
        let expected = WELCOME_CREDIT_MINOR - oversell.spent_by(buyer);
        assert_eq!(sys.balance(token).await, expected, "buyer {buyer_id}");
    }
    let sales = sys
        .get(&format!("/v1/events/{event_id}/sales"), Some(&seller))
        .await;
    assert_eq!(
        sales.body["seatsSold"].as_i64().unwrap(),
        oversell.confirmed_seats() as i64
    );
    assert_eq!(sales.str("/revenue/amountMinor"), revenue.to_string());
    sys.stop().await;
}

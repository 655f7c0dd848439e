//! The service shell as an operator sees it: gRPC health that follows the dependencies
//! (checked, not assumed), gRPC reflection listing every service's methods, and a
//! shutdown signal in the middle of purchases that loses nothing.

use std::collections::HashSet;
use std::time::Duration;

use marquee_e2e::{Money, Options, Oversell, System, WELCOME_CREDIT_MINOR};
use marquee_testkit::grpc::{await_health, described_methods, health, reflected_methods};
use marquee_testkit::proxy::DelayProxy;
use marquee_testkit::redis_addr;

const BOOKING: &str = "marquee.booking.v1.BookingService";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn booking_health_goes_not_serving_while_redis_is_gone_and_back_after() {
    let proxy = DelayProxy::start(&redis_addr()).await.expect("proxy");
    let sys = System::start_with(Options {
        booking_redis_url: Some(format!("redis://{}", proxy.addr())),
        ..Options::default()
    })
    .await;
    let url = format!("http://127.0.0.1:{}", sys.booking_port);
    for service in ["", BOOKING] {
        await_health(&url, service, "SERVING", Duration::from_secs(5))
            .await
            .unwrap_or_else(|now| {
                panic!("{service:?} never SERVING with every dependency up: {now}")
            });
    }

    proxy.set_refusing(true);
    for service in ["", BOOKING] {
        await_health(&url, service, "NOT_SERVING", Duration::from_secs(5))
            .await
            .unwrap_or_else(|now| panic!("{service:?} still {now} with Redis gone"));
    }
    // Still answering (it is alive, just not ready): the check itself is no error.
    assert_eq!(health(&url, BOOKING).await, "NOT_SERVING");

    proxy.set_refusing(false);
    for service in ["", BOOKING] {
        await_health(&url, service, "SERVING", Duration::from_secs(10))
            .await
            .unwrap_or_else(|now| panic!("{service:?} still {now} after Redis came back"));
    }
    // And it serves for real again: a purchase goes through.
    let (_, event_id) = sys.seller_event(&[("A", 10_000, 1, 2)], 0).await;
    let seats = sys.seat_ids(&event_id).await;
    let (_, buyer) = sys.account("BUYER").await;
    let hold = sys.hold(&buyer, &event_id, &seats[..1]).await;
    assert_eq!(hold.status, 201, "{:?}", hold.body);
    sys.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reflection_lists_every_service_and_its_methods() {
    let sys = System::start().await;
    // booking-svc and pay-svc also serve the dead letters' admin service.
    let servers: [(&str, u16, &[&str]); 3] = [
        (
            "booking",
            sys.booking_port,
            &["marquee.booking.v1", "marquee.admin.v1"],
        ),
        ("pay", sys.pay_port, &["marquee.pay.v1", "marquee.admin.v1"]),
        ("realtime", sys.realtime_ports[0], &["marquee.realtime.v1"]),
    ];
    for (name, port, packages) in servers {
        let listed = reflected_methods(&format!("http://127.0.0.1:{port}"))
            .await
            .unwrap_or_else(|e| panic!("{name}: reflection failed: {e:#}"));
        for package in packages {
            let expected = described_methods(marquee_proto::DESCRIPTOR_SET, package).expect("set");
            assert!(!expected.is_empty(), "{package} has services");
            for (service, methods) in &expected {
                assert_eq!(
                    listed.get(service),
                    Some(methods),
                    "{name} lists {service} with its methods; it listed {listed:?}"
                );
            }
        }
        assert!(
            listed.contains_key("grpc.health.v1.Health"),
            "{name}: {listed:?}"
        );
        // Nothing it does not serve: no other package's services.
        for service in listed.keys() {
            assert!(
                packages
                    .iter()
                    .any(|p| service.starts_with(&format!("{p}.")))
                    || service.starts_with("grpc."),
                "{name} lists {service}, which it does not serve"
            );
        }
    }
    sys.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shutdown_signal_during_purchases_loses_nothing() {
    let mut sys = System::start().await;
    let price = 10_000;
    let (_, event_id) = sys.seller_event(&[("A", price, 1, 4)], 0).await;
    let seats = sys.seat_ids(&event_id).await;
    let mut buyers = Vec::new();
    for (n, seat) in seats.iter().enumerate().take(3) {
        let (_, token) = sys.account("BUYER").await;
        let hold = sys
            .hold(&token, &event_id, std::slice::from_ref(seat))
            .await;
        assert_eq!(hold.status, 201, "{:?}", hold.body);
        buyers.push((token, hold.str("/holdId"), format!("checkout-{n}")));
    }

    // The first checkout is answered (its payment saga is now under way), the others
    // are sent as booking-svc gets its shutdown signal.
    let first = sys.checkout(&buyers[0].0, &buyers[0].1, &buyers[0].2).await;
    assert_eq!(first.status, 202, "{:?}", first.body);
    let mut in_flight = Vec::new();
    for (token, hold, key) in buyers.iter().skip(1) {
        let (http, base) = (sys.http.clone(), sys.base.clone());
        let (token, hold, key) = (token.clone(), hold.clone(), key.clone());
        in_flight.push(tokio::spawn(async move {
            http.post(format!("{base}/v1/bookings"))
                .bearer_auth(token)
                .header("Idempotency-Key", key)
                .json(&serde_json::json!({"holdId": hold, "paymentMethod": "WALLET"}))
                .send()
                .await
                .map(|r| r.status().as_u16())
        }));
    }
    tokio::time::sleep(Duration::from_millis(2)).await;
    sys.signal_booking();
    for answer in in_flight {
        // Either drained (202) or refused cleanly (503): never a half-done checkout.
        let status = answer.await.expect("joins").expect("answered");
        assert!(status == 202 || status == 503, "checkout answered {status}");
    }
    sys.booking_stopped().await;
    let url = format!("http://127.0.0.1:{}", sys.booking_port);
    assert_ne!(health(&url, BOOKING).await, "SERVING");

    sys.restart_booking().await;
    await_health(&url, BOOKING, "SERVING", Duration::from_secs(10))
        .await
        .unwrap_or_else(|now| panic!("restarted booking-svc is {now}"));
    // Each buyer's retry (same key) finds or makes the one booking of its hold.
    for (token, hold, key) in &buyers {
        let booking = sys.checkout(token, hold, key).await;
        assert!(
            booking.status == 202 || booking.status == 200 || booking.status == 201,
            "retry: {} {:?}",
            booking.status,
            booking.body
        );
        let booking_id = booking.str("/bookingId");
        sys.await_booking(token, &booking_id, "CONFIRMED").await;
        assert_eq!(sys.balance(token).await, WELCOME_CREDIT_MINOR - price);
    }
    let sold: HashSet<String> = sys
        .seats(&event_id)
        .await
        .into_iter()
        .filter(|s| s.1 == "SOLD")
        .map(|s| s.0)
        .collect();
    assert_eq!(sold.len(), 3);
    Oversell::check(&sys.booking_pool, &sold).await.assert_ok();
    let bookings: i64 = sqlx::query_scalar("SELECT count(*) FROM bookings")
        .fetch_one(&sys.booking_pool)
        .await
        .expect("count");
    assert_eq!(bookings, 3, "one booking per hold");
    // Money is conserved: wallets + captured payments = credits issued.
    let money = Money::check(&sys.pay_pool).await;
    money.assert_conserved();
    assert_eq!(money.captured, 3 * price);
    sys.stop().await;
}

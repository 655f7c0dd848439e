//! The hold store against the real Redis, with its seat relay on the real RabbitMQ:
//! what re-priming (after Redis lost its data) writes and announces.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use booking_svc::changes::SEATS_CHANGED;
use booking_svc::domain::{AccountId, BookingId, EventId, HoldId, SeatId, SeatStatus};
use booking_svc::error::BookingError;
use booking_svc::holds::{HoldStore, RedisTimeouts};
use marquee_infra::bus::{Bus, BusConfig};
use marquee_proto::booking as pb;
use prost::Message;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

#[tokio::test]
async fn priming_restores_a_bookings_seats_and_announces_them_once() {
    let id = Uuid::new_v4().simple().to_string();
    let prefix = format!("test:{id}:");
    let bus = Bus::connect(
        BusConfig::new(marquee_testkit::amqp_url(), format!("test.{id}.")),
        Duration::from_secs(10),
    )
    .await
    .expect("bus");
    let announced = Arc::new(Mutex::new(Vec::<pb::SeatsChanged>::new()));
    let sink = announced.clone();
    bus.subscribe(
        &[SEATS_CHANGED],
        Arc::new(|| {}),
        Arc::new(move |envelope| {
            let batch = pb::SeatChanges::decode(envelope.payload.as_slice()).expect("seat changes");
            sink.lock().expect("lock").extend(batch.changes);
        }),
    )
    .await
    .expect("subscribed");
    let stop = CancellationToken::new();
    let holds = HoldStore::connect(
        &marquee_testkit::redis_url(),
        &prefix,
        RedisTimeouts::default(),
    )
    .await
    .expect("redis");
    booking_svc::seat_relay::spawn(
        &marquee_testkit::redis_url(),
        RedisTimeouts::default(),
        holds.stream_key(),
        bus.clone(),
        stop.clone(),
    )
    .await
    .expect("seat relay");

    let (event, buyer) = (EventId(Uuid::new_v4()), AccountId(Uuid::new_v4()));
    let sold: Vec<SeatId> = (0..3).map(|_| SeatId(Uuid::new_v4())).collect();
    let free = SeatId(Uuid::new_v4());
    let (booking, hold) = (BookingId(Uuid::new_v4()), HoldId(Uuid::new_v4()));
    // Before priming ends, the store refuses to answer for seats.
    assert!(matches!(
        holds.snapshot(event, &sold).await,
        Err(BookingError::RedisLost)
    ));
    // After a loss, versions start at the base priming chose.
    let base = 1_000_000;
    holds
        .prime(booking, hold, buyer, event, &sold, true, base)
        .await
        .expect("primed");
    // Priming again (a second restart) changes nothing.
    holds
        .prime(booking, hold, buyer, event, &sold, true, base)
        .await
        .expect("primed again");
    holds.finish_priming(base).await.expect("epoch");

    let mut seats = sold.clone();
    seats.push(free);
    let (version, statuses) = holds.snapshot(event, &seats).await.expect("snapshot");
    assert_eq!(version, base + 1);
    assert_eq!(
        statuses,
        vec![
            SeatStatus::Sold,
            SeatStatus::Sold,
            SeatStatus::Sold,
            SeatStatus::Available
        ]
    );

    // The buyer owns exactly those seats: the per-buyer limit counts them.
    let mut redis = redis::Client::open(marquee_testkit::redis_url())
        .expect("client")
        .get_multiplexed_async_connection()
        .await
        .expect("connection");
    let mut owned: Vec<String> = redis::cmd("SMEMBERS")
        .arg(format!("{prefix}buyer:{event}:{buyer}"))
        .query_async(&mut redis)
        .await
        .expect("smembers");
    owned.sort();
    let mut expected: Vec<String> = sold.iter().map(ToString::to_string).collect();
    expected.sort();
    assert_eq!(owned, expected);

    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while announced.lock().expect("lock").is_empty() && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let announced = announced.lock().expect("lock").clone();
    assert_eq!(announced.len(), 1, "{announced:?}");
    assert_eq!(announced[0].version, base + 1);
    assert_eq!(announced[0].status, pb::SeatStatus::Sold as i32);
    let in_order: Vec<String> = sold.iter().map(ToString::to_string).collect();
    assert_eq!(announced[0].seat_ids, in_order);

    stop.cancel();
    let _ = bus.delete_topology(&[]).await;
    bus.shutdown();
    let _ = marquee_testkit::delete_redis_keys(&prefix).await;
}

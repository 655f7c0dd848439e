//! The hold store against real Redis, both a single server and a real three-master
//! Redis Cluster (started on loopback ports from the machine's redis-server), with its
//! seat relay on the real RabbitMQ: holds under contention across partitions, releases
//! and sales, every change announced, and what re-priming (after Redis lost its data)
//! writes and announces.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use booking_svc::changes::SEATS_CHANGED;
use booking_svc::domain::{AccountId, BookingId, EventId, SeatId, SeatStatus};
use booking_svc::error::BookingError;
use booking_svc::holds::{
    HoldOutcome, HoldRecord, HoldRequest, HoldState, HoldStore, PARTITIONS, Partition,
    RedisTimeouts, new_hold_id,
};
use marquee_infra::bus::{Bus, BusConfig};
use marquee_infra::redis_conn::RedisTarget;
use marquee_proto::booking as pb;
use marquee_testkit::redis_cluster::{MASTERS, redis_cluster, redis_cluster_nodes};
use prost::Message;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

fn single() -> RedisTarget {
    RedisTarget::Single(marquee_testkit::redis_url())
}

/// A hold store under a fresh prefix with its relay running, and what the relay
/// announced on the bus.
struct Rig {
    holds: HoldStore,
    target: RedisTarget,
    prefix: String,
    bus: Bus,
    stop: CancellationToken,
    announced: Arc<Mutex<Vec<pb::SeatsChanged>>>,
}

impl Rig {
    async fn start(target: RedisTarget) -> Self {
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
                let batch =
                    pb::SeatChanges::decode(envelope.payload.as_slice()).expect("seat changes");
                sink.lock().expect("lock").extend(batch.changes);
            }),
        )
        .await
        .expect("subscribed");
        let stop = CancellationToken::new();
        let holds = HoldStore::connect(&target, &prefix, RedisTimeouts::default())
            .await
            .expect("redis");
        booking_svc::seat_relay::spawn(&holds, bus.clone(), stop.clone())
            .await
            .expect("seat relay");
        Self {
            holds,
            target,
            prefix,
            bus,
            stop,
            announced,
        }
    }

    /// Announced changes, once `done` holds of them (or 10 s passed) and a moment more
    /// for any duplicate.
    async fn announced_when(
        &self,
        done: impl Fn(&[pb::SeatsChanged]) -> bool,
    ) -> Vec<pb::SeatsChanged> {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while !done(&self.announced.lock().expect("lock")) && tokio::time::Instant::now() < deadline
        {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
        self.announced.lock().expect("lock").clone()
    }

    async fn finish(self) {
        self.stop.cancel();
        let _ = self.bus.delete_topology(&[]).await;
        self.bus.shutdown();
        let _ = marquee_testkit::delete_redis_keys_in(&self.target, &self.prefix).await;
    }
}

#[tokio::test]
async fn priming_restores_a_bookings_seats_and_announces_them_once() {
    priming(single()).await;
}

#[tokio::test]
async fn priming_restores_a_bookings_seats_and_announces_them_once_on_a_redis_cluster() {
    priming(redis_cluster()).await;
}

async fn priming(target: RedisTarget) {
    let rig = Rig::start(target).await;
    let holds = &rig.holds;
    let (event, buyer) = (EventId(Uuid::now_v7()), AccountId(Uuid::new_v4()));
    let partition = Partition::of(event.0);
    let sold: Vec<SeatId> = (0..3).map(|_| SeatId(Uuid::new_v4())).collect();
    let free = SeatId(Uuid::new_v4());
    let (booking, hold) = (BookingId(Uuid::new_v4()), new_hold_id(event));
    // Before priming ends, the store refuses to answer for seats.
    assert!(matches!(
        holds.snapshot(event, &sold).await,
        Err(BookingError::RedisLost)
    ));
    assert_eq!(
        holds.lost_partitions().await.expect("epochs").len(),
        usize::from(PARTITIONS)
    );
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
    holds
        .finish_priming(base, &[partition])
        .await
        .expect("epoch");
    // Only the primed partition is usable; the others still wait for theirs.
    let lost = holds.lost_partitions().await.expect("epochs");
    assert!(!lost.contains(&partition));
    assert_eq!(lost.len(), usize::from(PARTITIONS) - 1);

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
    assert_eq!(
        holds.seat_versions(&[event]).await.expect("versions"),
        vec![base + 1]
    );

    // The buyer owns exactly those seats: the per-buyer limit counts them (a fifth seat
    // is over the limit of four).
    let extra: Vec<SeatId> = (0..2).map(|_| SeatId(Uuid::new_v4())).collect();
    let outcome = holds
        .hold(request(new_hold_id(event), buyer, event, &extra))
        .await
        .expect("hold");
    assert!(
        matches!(outcome, HoldOutcome::Limit { current: 3 }),
        "{outcome:?}"
    );

    let announced = rig.announced_when(|a| !a.is_empty()).await;
    assert_eq!(announced.len(), 1, "{announced:?}");
    assert_eq!(announced[0].version, base + 1);
    assert_eq!(announced[0].status, pb::SeatStatus::Sold as i32);
    let in_order: Vec<String> = sold.iter().map(ToString::to_string).collect();
    assert_eq!(announced[0].seat_ids, in_order);
    rig.finish().await;
}

fn request<'a>(
    hold: booking_svc::domain::HoldId,
    buyer: AccountId,
    event: EventId,
    seats: &'a [SeatId],
) -> HoldRequest<'a> {
    HoldRequest {
        hold,
        buyer,
        event,
        seats,
        expires_at: chrono::Utc::now() + chrono::Duration::minutes(5),
        limit: 4,
        key: None,
        key_ttl: Duration::from_secs(60),
        block: None,
        terms: None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn contended_holds_never_share_a_seat_and_every_change_is_announced() {
    contention(single()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn contended_holds_never_share_a_seat_and_every_change_is_announced_on_a_redis_cluster() {
    let rig = contention(redis_cluster()).await;
    // The events' keys really are spread over every master of the cluster.
    let mut masters_with_keys = 0;
    for url in redis_cluster_nodes() {
        let mut node = redis::Client::open(url.as_str())
            .expect("client")
            .get_multiplexed_async_connection()
            .await
            .expect("node");
        let (_, keys): (u64, Vec<String>) = redis::cmd("SCAN")
            .arg(0)
            .arg("MATCH")
            .arg(format!("{}*seat:*", rig.prefix))
            .arg("COUNT")
            .arg(100_000)
            .query_async(&mut node)
            .await
            .expect("scan");
        masters_with_keys += usize::from(!keys.is_empty());
    }
    assert_eq!(masters_with_keys, MASTERS);
    rig.finish().await;
}

/// An event id in partition `n`.
fn event_in(n: u8) -> EventId {
    let mut bytes = *Uuid::now_v7().as_bytes();
    bytes[15] = (bytes[15] & !(PARTITIONS - 1)) | n;
    EventId(Uuid::from_bytes(bytes))
}

/// 48 buyers race for the seats of 16 events in 16 partitions: each tries pairs of
/// seats, and releases or sells some of what it gets. Afterwards every seat is held or
/// sold by at most one hold, Redis agrees with what the buyers were told, and the relay
/// announced every version of every event. Returns the rig (still running).
async fn contention(target: RedisTarget) -> Rig {
    let rig = Rig::start(target).await;
    rig.holds
        .finish_priming(0, &Partition::all().collect::<Vec<_>>())
        .await
        .expect("epochs");
    let events: Vec<EventId> = (0..16).map(event_in).collect();
    let seats: HashMap<EventId, Vec<SeatId>> = events
        .iter()
        .map(|e| (*e, (0..12).map(|_| SeatId(Uuid::now_v7())).collect()))
        .collect();
    let seats = Arc::new(seats);

    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    enum Fate {
        Held,
        Released,
        Sold,
    }
    let mut tasks = Vec::new();
    for b in 0..48u64 {
        let (holds, events, seats) = (rig.holds.clone(), events.clone(), seats.clone());
        tasks.push(tokio::spawn(async move {
            let buyer = AccountId(Uuid::new_v4());
            let mut mine: Vec<(HoldRecord, Fate)> = Vec::new();
            let mut rng = b.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
            let mut next = move |n: usize| {
                rng ^= rng << 13;
                rng ^= rng >> 7;
                rng ^= rng << 17;
                (rng % n as u64) as usize
            };
            for _ in 0..20 {
                let event = events[next(events.len())];
                let all = &seats[&event];
                let first = next(all.len() - 1);
                let pair = vec![all[first], all[first + 1]];
                let hold = new_hold_id(event);
                match holds
                    .hold(request(hold, buyer, event, &pair))
                    .await
                    .expect("hold")
                {
                    HoldOutcome::Held { block: 0 } => {
                        let record = holds.get(hold).await.expect("get").expect("the hold");
                        assert_eq!(record.seats, pair);
                        assert_eq!(record.state, HoldState::Held);
                        let fate = match next(3) {
                            0 => {
                                assert!(holds.release_held(&record).await.expect("release"));
                                Fate::Released
                            }
                            1 => {
                                holds
                                    .mark_sold(BookingId(Uuid::new_v4()), hold, event, &pair)
                                    .await
                                    .expect("sold");
                                Fate::Sold
                            }
                            _ => Fate::Held,
                        };
                        mine.push((record, fate));
                    }
                    HoldOutcome::Taken(_) | HoldOutcome::Limit { .. } => {}
                    other => panic!("unexpected {other:?}"),
                }
            }
            mine
        }));
    }
    let mut granted = Vec::new();
    for task in tasks {
        granted.extend(task.await.expect("buyer"));
    }
    assert!(
        granted.len() > 50,
        "too little got through: {}",
        granted.len()
    );

    // Each seat belongs to at most one hold that is still held or sold, and Redis
    // shows exactly that.
    let mut owner: HashMap<SeatId, (&HoldRecord, Fate)> = HashMap::new();
    for (record, fate) in &granted {
        if *fate == Fate::Released {
            continue;
        }
        for seat in &record.seats {
            if let Some((other, _)) = owner.insert(*seat, (record, *fate)) {
                panic!(
                    "seat {seat} went to hold {} and hold {}",
                    other.hold_id, record.hold_id
                );
            }
        }
    }
    let mut versions = BTreeMap::new();
    for event in &events {
        let all = &seats[event];
        let (version, statuses) = rig.holds.snapshot(*event, all).await.expect("snapshot");
        versions.insert(event.to_string(), version);
        for (seat, status) in all.iter().zip(statuses) {
            let expected = match owner.get(seat) {
                None => SeatStatus::Available,
                Some((_, Fate::Held)) => SeatStatus::Held,
                Some((_, _)) => SeatStatus::Sold,
            };
            assert_eq!(status, expected, "seat {seat} of event {event}");
        }
    }
    // A released hold is gone; one still held is still there.
    for (record, fate) in &granted {
        let stored = rig.holds.get(record.hold_id).await.expect("get");
        assert_eq!(stored.is_some(), *fate == Fate::Held, "{:?}", record.keys());
    }

    // Every version of every event was announced, in one piece (versions count from 1).
    let complete = |announced: &[pb::SeatsChanged]| {
        let mut seen: HashMap<&str, HashSet<i64>> = HashMap::new();
        for change in announced {
            seen.entry(change.event_id.as_str())
                .or_default()
                .insert(change.version);
        }
        versions.iter().all(|(event, last)| {
            seen.get(event.as_str())
                .is_some_and(|v| (1..=*last).all(|n| v.contains(&n)))
        })
    };
    let announced = rig.announced_when(complete).await;
    assert!(
        complete(&announced),
        "some seat changes were never announced"
    );
    rig
}

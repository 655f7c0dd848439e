//! Live seat maps and booking progress over SSE, end to end: booking-svc's change
//! events through RabbitMQ into realtime-svc, out through the gateway as SSE.

use std::collections::HashMap;
use std::time::Duration;

use futures::StreamExt;
use marquee_e2e::{Options, SseEvent, SseStream, System};
use marquee_infra::bus::Envelope;
use marquee_proto::booking as pb;
use marquee_proto::realtime::realtime_service_client::RealtimeServiceClient;
use marquee_proto::realtime::{WatchSeatsRequest, seat_update};
use prost::Message;
use serde_json::Value;

fn statuses(snapshot: &SseEvent) -> HashMap<String, String> {
    assert_eq!(snapshot.event, "snapshot", "{snapshot:?}");
    snapshot.data["snapshot"]["seats"]
        .as_array()
        .expect("snapshot seats")
        .iter()
        .map(|s| {
            (
                s["seatId"].as_str().unwrap_or_default().to_owned(),
                s["status"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect()
}

/// One change as a client applies it.
#[derive(Debug, Clone, PartialEq)]
struct Change {
    version: i64,
    reason: String,
    status: String,
    seats: Vec<String>,
    changed_at: String,
}

impl Change {
    fn what(&self) -> (&str, &str, &[String]) {
        (&self.reason, &self.status, &self.seats)
    }
}

/// The changes of a `changes` event, checking that its `id:` is the last one's version.
fn changes(event: &SseEvent) -> Vec<Change> {
    assert_eq!(event.event, "changes", "{event:?}");
    let items: Vec<Change> = event.data["changes"]["items"]
        .as_array()
        .expect("change items")
        .iter()
        .map(|c| Change {
            version: c["version"]
                .as_str()
                .and_then(|v| v.parse().ok())
                .expect("version"),
            reason: c["reason"].as_str().unwrap_or_default().to_owned(),
            status: c["status"].as_str().unwrap_or_default().to_owned(),
            seats: c["seatIds"]
                .as_array()
                .expect("seat ids")
                .iter()
                .map(|s| s.as_str().unwrap_or_default().to_owned())
                .collect(),
            changed_at: c["changedAt"].as_str().unwrap_or_default().to_owned(),
        })
        .collect();
    assert!(!items.is_empty(), "{event:?}");
    assert_eq!(items.last().map(|c| c.version), Some(event.version()));
    items
}

/// The next `n` changes, however the stream grouped them.
async fn next_changes(stream: &mut SseStream, n: usize) -> Vec<Change> {
    let mut seen = Vec::new();
    while seen.len() < n {
        seen.extend(changes(&stream.next().await));
    }
    assert_eq!(seen.len(), n, "more changes than expected: {seen:?}");
    seen
}

async fn watch(system: &System, event_id: &str, last: Option<&str>) -> SseStream {
    system
        .sse(&format!("/v1/events/{event_id}/seats:watch"), None, last)
        .await
        .unwrap_or_else(|r| panic!("watch refused: {} {:?}", r.status, r.body))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_seat_stream_starts_with_a_snapshot_then_sends_each_change_in_order() {
    let system = System::start().await;
    let (_, event_id) = system.seller_event(&[("R", 30_000, 2, 4)], 4).await;
    let seats: Vec<String> = system.seat_ids(&event_id).await;
    let mut stream = watch(&system, &event_id, None).await;

    let snapshot = stream.next().await;
    let map = statuses(&snapshot);
    assert_eq!(map.len(), 8);
    assert!(map.values().all(|s| s == "AVAILABLE"), "{map:?}");
    let v0 = snapshot.version();

    let (_, buyer) = system.account("BUYER").await;
    let held = system.hold(&buyer, &event_id, &seats[0..2]).await;
    assert_eq!(held.status, 201, "{:?}", held.body);
    let first = next_changes(&mut stream, 1).await.remove(0);
    assert_eq!(first.version, v0 + 1);
    assert_eq!(first.what(), ("SEATS_HELD", "HELD", &seats[0..2]));

    let released = system
        .call(
            reqwest::Method::DELETE,
            &format!("/v1/holds/{}", held.str("/holdId")),
            Some(&buyer),
            None,
            &[],
        )
        .await;
    assert_eq!(released.status, 200, "{:?}", released.body);
    let second = next_changes(&mut stream, 1).await.remove(0);
    assert_eq!(second.version, v0 + 2);
    assert_eq!(second.what(), ("SEATS_RELEASED", "AVAILABLE", &seats[0..2]));

    let held = system.hold(&buyer, &event_id, &seats[2..3]).await;
    assert_eq!(held.status, 201, "{:?}", held.body);
    let booked = system.checkout(&buyer, &held.str("/holdId"), "k-1").await;
    assert_eq!(booked.status, 202, "{:?}", booked.body);
    let both = next_changes(&mut stream, 2).await;
    assert_eq!((both[0].version, both[1].version), (v0 + 3, v0 + 4));
    assert_eq!(both[0].what(), ("SEATS_HELD", "HELD", &seats[2..3]));
    assert_eq!(both[1].what(), ("SEATS_SOLD", "SOLD", &seats[2..3]));
    // Each change says when it was made, so a client can tell how fresh it is.
    assert!(both[1].changed_at.ends_with('Z'), "{:?}", both[1]);

    // A newcomer's snapshot agrees with what the first watcher has pieced together.
    let mut late = watch(&system, &event_id, None).await;
    let late_snapshot = late.next().await;
    assert_eq!(late_snapshot.version(), v0 + 4);
    let late_map = statuses(&late_snapshot);
    assert_eq!(late_map[&seats[2]], "SOLD");
    assert_eq!(late_map[&seats[0]], "AVAILABLE");
    system.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn reconnecting_with_last_event_id_resumes_without_loss() {
    let system = System::start().await;
    let (_, event_id) = system.seller_event(&[("R", 30_000, 1, 8)], 4).await;
    let seats: Vec<String> = system.seat_ids(&event_id).await;
    let mut stream = watch(&system, &event_id, None).await;
    let v0 = stream.next().await.version();
    drop(stream);

    // Changes made while the client is away.
    let mut buyers = Vec::new();
    for seat in &seats[0..3] {
        let (_, buyer) = system.account("BUYER").await;
        let held = system
            .hold(&buyer, &event_id, std::slice::from_ref(seat))
            .await;
        assert_eq!(held.status, 201, "{:?}", held.body);
        buyers.push(buyer);
    }

    let last = v0.to_string();
    let mut resumed = watch(&system, &event_id, Some(&last)).await;
    // What was missed comes in order (grouped as it was ready: the last hold's change
    // may still be on its way to realtime-svc when the client reconnects).
    let missed = next_changes(&mut resumed, 3).await;
    for (i, (change, seat)) in missed.iter().zip(&seats[0..3]).enumerate() {
        assert_eq!(change.version, v0 + 1 + i as i64);
        assert_eq!(change.seats, vec![seat.clone()]);
    }
    // Nothing more: the resume did not start with a snapshot.
    resumed.assert_quiet(Duration::from_millis(300)).await;

    // Already up to date: nothing to send until the next change.
    let current = (v0 + 3).to_string();
    let mut idle = watch(&system, &event_id, Some(&current)).await;
    idle.assert_quiet(Duration::from_millis(300)).await;
    let held = system.hold(&buyers[0], &event_id, &seats[3..4]).await;
    assert_eq!(held.status, 201, "{:?}", held.body);
    assert_eq!(next_changes(&mut idle, 1).await[0].version, v0 + 4);

    // A version this replica never had (from the future) yields a snapshot.
    let mut future = watch(&system, &event_id, Some("999999")).await;
    let snapshot = future.next().await;
    assert_eq!(snapshot.event, "snapshot");
    assert_eq!(snapshot.version(), v0 + 4);

    // Garbage is refused with a JSON 400, not a stream.
    let refused = system
        .sse_refused(
            &format!("/v1/events/{event_id}/seats:watch"),
            None,
            Some("yesterday"),
        )
        .await;
    assert_eq!(refused.status, 400, "{:?}", refused.body);
    assert!(
        refused.body["message"]
            .as_str()
            .is_some_and(|m| m.contains("lastEventId"))
    );
    system.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_resume_older_than_the_buffer_yields_a_fresh_snapshot() {
    let system = System::start_with(Options {
        realtime_resume_buffer: 2,
        ..Options::default()
    })
    .await;
    let (_, event_id) = system.seller_event(&[("R", 30_000, 1, 8)], 4).await;
    let seats: Vec<String> = system.seat_ids(&event_id).await;
    let mut stream = watch(&system, &event_id, None).await;
    let v0 = stream.next().await.version();
    for seat in &seats[0..4] {
        let (_, buyer) = system.account("BUYER").await;
        let held = system
            .hold(&buyer, &event_id, std::slice::from_ref(seat))
            .await;
        assert_eq!(held.status, 201, "{:?}", held.body);
    }
    let seen: Vec<i64> = next_changes(&mut stream, 4)
        .await
        .iter()
        .map(|c| c.version)
        .collect();
    assert_eq!(seen, (v0 + 1..=v0 + 4).collect::<Vec<_>>());
    drop(stream);

    // v0 + 1 … v0 + 2 are gone from the buffer of two: a snapshot, not a partial replay.
    let last = v0.to_string();
    let mut resumed = watch(&system, &event_id, Some(&last)).await;
    let snapshot = resumed.next().await;
    assert_eq!(snapshot.version(), v0 + 4);
    let map = statuses(&snapshot);
    for seat in &seats[0..4] {
        assert_eq!(map[seat], "HELD");
    }
    // Within the buffer, a resume replays.
    let recent = (v0 + 2).to_string();
    let mut replay = watch(&system, &event_id, Some(&recent)).await;
    let replayed = changes(&replay.next().await);
    assert_eq!(
        replayed.iter().map(|c| c.version).collect::<Vec<_>>(),
        vec![v0 + 3, v0 + 4]
    );
    system.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_expired_hold_is_streamed_as_expired() {
    let system = System::start_with(Options {
        hold_ttl: Duration::from_millis(800),
        ..Options::default()
    })
    .await;
    let (_, event_id) = system.seller_event(&[("R", 30_000, 1, 4)], 4).await;
    let seats: Vec<String> = system.seat_ids(&event_id).await;
    let mut stream = watch(&system, &event_id, None).await;
    let v0 = stream.next().await.version();
    let (_, buyer) = system.account("BUYER").await;
    assert_eq!(
        system.hold(&buyer, &event_id, &seats[0..1]).await.status,
        201
    );
    let seen = next_changes(&mut stream, 2).await;
    assert_eq!(seen[0].reason, "SEATS_HELD");
    assert_eq!(seen[1].version, v0 + 2);
    assert_eq!(seen[1].what(), ("SEATS_EXPIRED", "AVAILABLE", &seats[0..1]));
    system.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_missing_version_is_repaired_with_a_fresh_snapshot() {
    let system = System::start_with(Options {
        realtime_gap_timeout: Duration::from_millis(200),
        ..Options::default()
    })
    .await;
    let (_, event_id) = system.seller_event(&[("R", 30_000, 1, 4)], 4).await;
    let seats: Vec<String> = system.seat_ids(&event_id).await;
    let mut stream = watch(&system, &event_id, None).await;
    let v0 = stream.next().await.version();

    // A notification from two versions ahead: the one in between was lost.
    let lost = pb::SeatChanges {
        changes: vec![pb::SeatsChanged {
            event_id: event_id.clone(),
            version: v0 + 2,
            reason: pb::SeatChangeReason::SeatsHeld as i32,
            status: pb::SeatStatus::Held as i32,
            seat_ids: vec![seats[3].clone()],
            changed_at: None,
        }],
    };
    system
        .bus
        .broadcast(&Envelope {
            message_id: uuid::Uuid::new_v4(),
            kind: marquee_proto::kinds::SEATS_CHANGED.into(),
            saga_id: uuid::Uuid::nil(),
            version: 1,
            occurred_at: chrono::Utc::now(),
            trace_context: Default::default(),
            payload: lost.encode_to_vec(),
        })
        .await
        .expect("published");
    // Nothing is applied out of order; after the gap timeout the feed re-reads the
    // seats from booking-svc and every watcher gets the truth as a snapshot.
    let repaired = stream.next().await;
    assert_eq!(repaired.event, "snapshot", "{repaired:?}");
    assert_eq!(repaired.version(), v0);
    // (booking-svc never made version v0 + 1, so the snapshot is still v0 and the
    // bogus seat is not shown held.)
    assert_eq!(statuses(&repaired)[&seats[3]], "AVAILABLE");

    // Real changes keep flowing afterwards.
    let (_, buyer) = system.account("BUYER").await;
    assert_eq!(
        system.hold(&buyer, &event_id, &seats[0..1]).await.status,
        201
    );
    assert_eq!(next_changes(&mut stream, 1).await[0].reason, "SEATS_HELD");
    system.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_unannounced_change_on_a_quiet_event_is_noticed_and_repaired() {
    let system = System::start().await;
    let (_, event_id) = system.seller_event(&[("R", 30_000, 1, 4)], 4).await;
    let seats: Vec<String> = system.seat_ids(&event_id).await;
    let mut stream = watch(&system, &event_id, None).await;
    let v0 = stream.next().await.version();
    stream.assert_quiet(Duration::from_millis(300)).await;

    // booking-svc changes a seat and its notification is lost (a publish that failed,
    // a reply that never came), and nothing else happens on the event: no later
    // version arrives to reveal the gap. Done here the way the hold script does it.
    let client = redis::Client::open(marquee_testkit::redis_url()).expect("redis url");
    let mut redis = client
        .get_multiplexed_async_connection()
        .await
        .expect("redis reachable");
    let prefix = &booking_svc::holds::partition_prefix(
        &system.redis_prefix,
        booking_svc::holds::Partition::of(event_id.parse().expect("event id")),
    );
    let _: () = redis::AsyncCommands::set(
        &mut redis,
        format!("{prefix}seat:{}", seats[1]),
        uuid::Uuid::new_v4().to_string(),
    )
    .await
    .expect("seat set");
    let version: i64 =
        redis::AsyncCommands::incr(&mut redis, format!("{prefix}seatver:{event_id}"), 1)
            .await
            .expect("version bumped");
    assert_eq!(version, v0 + 1);

    // The watcher is told the truth within a few seconds, as a snapshot.
    let repaired = stream
        .next_within(Duration::from_secs(3))
        .await
        .expect("the missing version is noticed and repaired within 3 s");
    assert_eq!(repaired.event, "snapshot", "{repaired:?}");
    assert_eq!(repaired.version(), v0 + 1);
    let map = statuses(&repaired);
    assert_eq!(map[&seats[1]], "HELD");
    assert_eq!(map[&seats[0]], "AVAILABLE");

    // A newcomer starts from the repaired map, not the stale one in memory.
    let mut late = watch(&system, &event_id, None).await;
    let first = late.next().await;
    assert_eq!(first.version(), v0 + 1);
    assert_eq!(statuses(&first)[&seats[1]], "HELD");
    system.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_seat_version_gone_back_in_booking_svc_resyncs_every_watcher() {
    let system = System::start().await;
    let (_, event_id) = system.seller_event(&[("R", 30_000, 1, 4)], 4).await;
    let seats: Vec<String> = system.seat_ids(&event_id).await;
    let mut stream = watch(&system, &event_id, None).await;
    let v0 = stream.next().await.version();
    let (_, buyer) = system.account("BUYER").await;
    let held = system.hold(&buyer, &event_id, &seats[0..1]).await;
    assert_eq!(held.status, 201, "{:?}", held.body);
    assert_eq!(next_changes(&mut stream, 1).await[0].version, v0 + 1);

    // booking-svc's Redis loses its data (the hold and the event's seat version): its
    // versions start again below what the watchers have, and nothing is announced.
    let client = redis::Client::open(marquee_testkit::redis_url()).expect("redis url");
    let mut redis = client
        .get_multiplexed_async_connection()
        .await
        .expect("redis reachable");
    let prefix = &booking_svc::holds::partition_prefix(
        &system.redis_prefix,
        booking_svc::holds::Partition::of(event_id.parse().expect("event id")),
    );
    let _: () = redis::AsyncCommands::del(
        &mut redis,
        &[
            format!("{prefix}seat:{}", seats[0]),
            format!("{prefix}seatver:{event_id}"),
        ],
    )
    .await
    .expect("keys deleted");

    let resynced = stream
        .next_within(Duration::from_secs(3))
        .await
        .expect("the lost versions are noticed within 3 s");
    assert_eq!(resynced.event, "snapshot", "{resynced:?}");
    assert_eq!(resynced.version(), 0);
    assert_eq!(statuses(&resynced)[&seats[0]], "AVAILABLE");
    let mut late = watch(&system, &event_id, None).await;
    let first = late.next().await;
    assert_eq!(first.version(), 0);
    assert_eq!(statuses(&first)[&seats[0]], "AVAILABLE");
    system.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn seat_versions_are_read_for_many_events_at_once_within_a_bound() {
    let system = System::start().await;
    let (_, event_id) = system.seller_event(&[("R", 30_000, 1, 4)], 4).await;
    let seats: Vec<String> = system.seat_ids(&event_id).await;
    let (_, buyer) = system.account("BUYER").await;
    let held = system.hold(&buyer, &event_id, &seats[0..1]).await;
    assert_eq!(held.status, 201, "{:?}", held.body);
    let mut catalog = pb::catalog_service_client::CatalogServiceClient::connect(format!(
        "http://127.0.0.1:{}",
        system.booking_port
    ))
    .await
    .expect("booking-svc reachable");

    // One hold made one seat change; an event without any is at version 0.
    let quiet = uuid::Uuid::new_v4().to_string();
    let versions = catalog
        .get_seat_versions(pb::GetSeatVersionsRequest {
            event_ids: vec![event_id.clone(), quiet.clone()],
        })
        .await
        .expect("versions")
        .into_inner()
        .versions;
    let versions: Vec<(String, i64)> = versions
        .into_iter()
        .map(|v| (v.event_id, v.version))
        .collect();
    assert_eq!(versions, vec![(event_id.clone(), 1), (quiet.clone(), 0)]);

    // Bounded, and every id must be one.
    let Err(too_many) = catalog
        .get_seat_versions(pb::GetSeatVersionsRequest {
            event_ids: vec![quiet.clone(); 1001],
        })
        .await
    else {
        panic!("1001 events must be refused");
    };
    assert_eq!(too_many.code(), tonic::Code::InvalidArgument);
    assert!(too_many.message().contains("eventIds"), "{too_many:?}");
    let Err(bad) = catalog
        .get_seat_versions(pb::GetSeatVersionsRequest {
            event_ids: vec![quiet, "nope".into()],
        })
        .await
    else {
        panic!("a bad event id must be refused");
    };
    assert_eq!(bad.code(), tonic::Code::InvalidArgument);
    assert!(bad.message().contains("eventIds"), "{bad:?}");
    system.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_realtime_replica_sees_every_change() {
    let system = System::start_with(Options {
        realtime_replicas: 2,
        ..Options::default()
    })
    .await;
    let (_, event_id) = system.seller_event(&[("R", 30_000, 1, 4)], 4).await;
    let seats: Vec<String> = system.seat_ids(&event_id).await;
    let mut streams = Vec::new();
    for port in &system.realtime_ports {
        let mut client = RealtimeServiceClient::connect(format!("http://127.0.0.1:{port}"))
            .await
            .expect("replica reachable");
        let mut stream = client
            .watch_seats(WatchSeatsRequest {
                event_id: event_id.clone(),
                last_event_id: String::new(),
            })
            .await
            .expect("watch")
            .into_inner();
        let first = stream.next().await.expect("snapshot").expect("ok");
        assert!(matches!(first.kind, Some(seat_update::Kind::Snapshot(_))));
        streams.push(stream);
    }
    let (_, buyer) = system.account("BUYER").await;
    assert_eq!(
        system.hold(&buyer, &event_id, &seats[1..3]).await.status,
        201
    );
    for stream in &mut streams {
        let update = tokio::time::timeout(Duration::from_secs(5), stream.next())
            .await
            .expect("change within 5 s")
            .expect("open")
            .expect("ok");
        let Some(seat_update::Kind::Changes(changes)) = update.kind else {
            panic!("expected changes, got {update:?}");
        };
        assert_eq!(changes.items.len(), 1);
        assert_eq!(changes.items[0].seat_ids, seats[1..3].to_vec());
        assert_eq!(changes.items[0].status, pb::SeatStatus::Held as i32);
    }
    system.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_booking_stream_follows_its_booking_for_its_buyer_only() {
    let system = System::start().await;
    let (_, event_id) = system.seller_event(&[("R", 30_000, 1, 4)], 4).await;
    let seats: Vec<String> = system.seat_ids(&event_id).await;
    let (_, buyer) = system.account("BUYER").await;
    let held = system.hold(&buyer, &event_id, &seats[0..2]).await;
    let booked = system.checkout(&buyer, &held.str("/holdId"), "k-1").await;
    assert_eq!(booked.status, 202, "{:?}", booked.body);
    let booking_id = booked.str("/bookingId");
    let path = format!("/v1/bookings/{booking_id}:watch");

    // A browser's EventSource cannot send headers: the token rides in the query.
    let mut stream = system
        .sse(&format!("{path}?access_token={buyer}"), None, None)
        .await
        .unwrap_or_else(|r| panic!("watch refused: {} {:?}", r.status, r.body));
    let mut seen = Vec::new();
    while seen.last().map(String::as_str) != Some("CONFIRMED") {
        let update = stream.next().await;
        assert_eq!(
            update.data["booking"]["bookingId"],
            Value::from(booking_id.clone())
        );
        seen.push(
            update.data["booking"]["status"]
                .as_str()
                .unwrap_or_default()
                .to_owned(),
        );
    }
    assert!(
        seen == ["CONFIRMED"] || seen == ["PENDING_PAYMENT", "CONFIRMED"],
        "{seen:?}"
    );

    let cancelled = system
        .post(
            &format!("/v1/bookings/{booking_id}:cancel"),
            Some(&buyer),
            serde_json::json!({}),
        )
        .await;
    assert_eq!(cancelled.status, 202, "{:?}", cancelled.body);
    let cancelling = stream.next().await;
    assert_eq!(cancelling.data["booking"]["status"], "CANCELLING");
    let done = stream.next().await;
    assert_eq!(done.data["booking"]["status"], "CANCELLED");
    assert_eq!(
        done.data["booking"]["seats"].as_array().map(Vec::len),
        Some(2)
    );

    // Another buyer cannot watch it, nor can nobody; nonsense ids are 400.
    let (_, other) = system.account("BUYER").await;
    let refused = system.sse_refused(&path, Some(&other), None).await;
    assert_eq!(refused.status, 404, "{:?}", refused.body);
    let anonymous = system.sse_refused(&path, None, None).await;
    assert_eq!(anonymous.status, 401, "{:?}", anonymous.body);
    let forged = system
        .sse_refused(&format!("{path}?access_token=not-a-token"), None, None)
        .await;
    assert_eq!(forged.status, 401, "{:?}", forged.body);
    let bad = system
        .sse_refused("/v1/bookings/not-a-uuid:watch", Some(&buyer), None)
        .await;
    assert_eq!(bad.status, 400, "{:?}", bad.body);
    system.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn watching_an_unknown_event_is_a_json_404() {
    let system = System::start().await;
    let missing = system
        .sse(
            &format!("/v1/events/{}/seats:watch", uuid::Uuid::new_v4()),
            None,
            None,
        )
        .await
        .err()
        .expect("refused");
    assert_eq!(missing.status, 404, "{:?}", missing.body);
    let bad = system
        .sse_refused("/v1/events/nope/seats:watch", None, None)
        .await;
    assert_eq!(bad.status, 400, "{:?}", bad.body);
    assert!(bad.body["message"].is_string());
    system.stop().await;
}

/// `n` seat watchers of `event_id`, each past its snapshot.
async fn snapshot_watchers(system: &System, event_id: &str, n: usize) -> Vec<SseStream> {
    let mut watchers = Vec::with_capacity(n);
    for _ in 0..n {
        let mut stream = watch(system, event_id, None).await;
        assert_eq!(stream.next().await.event, "snapshot");
        watchers.push(stream);
    }
    watchers
}

/// Fails unless every stream ends (within 2 s) without another event.
async fn assert_all_ended(watchers: Vec<SseStream>) {
    for mut stream in watchers {
        assert!(stream.next_within(Duration::from_secs(2)).await.is_none());
        assert!(stream.ended, "a watcher's stream did not end");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn stopping_with_watchers_connected_ends_their_streams_and_finishes_the_drain() {
    let system = System::start().await;
    let (_, event_id) = system.seller_event(&[("R", 30_000, 1, 4)], 4).await;
    let watchers = snapshot_watchers(&system, &event_id, 3).await;

    // What SIGTERM does: the drain must not wait on streams that never end by
    // themselves; each watcher sees its stream end and would resume elsewhere.
    assert!(
        system.stopped_within(Duration::from_secs(10)).await,
        "the system was still draining 10 s after the signal, with 3 seat watchers open"
    );
    assert_all_ended(watchers).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_gateway_stopping_alone_ends_its_sse_streams_and_finishes_the_drain() {
    let mut system = System::start().await;
    let (_, event_id) = system.seller_event(&[("R", 30_000, 1, 4)], 4).await;
    let watchers = snapshot_watchers(&system, &event_id, 3).await;

    // realtime-svc keeps streaming; only the gateway got the signal. Its drain must not
    // wait on the SSE streams, which would otherwise never end.
    assert!(
        system.gateway_stopped_within(Duration::from_secs(10)).await,
        "the gateway was still draining 10 s after the signal, with 3 SSE watchers open"
    );
    assert_all_ended(watchers).await;
    system.stop().await;
}

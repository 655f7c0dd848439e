//! Ambiguous outcomes and lost data, made to happen for real: Redis replies that arrive
//! after booking-svc's timeout (a delaying TCP proxy in front of the real Redis), and a
//! Redis that loses every key of the system mid-sale. Each test checks what a buyer and
//! a seat-map watcher would notice.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use marquee_e2e::{Options, Oversell, Reply, SseStream, System};
use marquee_testkit::proxy::DelayProxy;
use serde_json::{Value, json};

/// A seat map as a watcher pieces it together from snapshots and changes.
#[derive(Debug, Default)]
struct Watched {
    version: i64,
    seats: HashMap<String, String>,
    /// Every (version, reason, seats) change seen, in order.
    changes: Vec<(i64, String, Vec<String>)>,
}

impl Watched {
    /// Applies the next SSE event; fails the test if a version goes backwards.
    fn apply(&mut self, event: &marquee_e2e::SseEvent) {
        let version = event.version();
        assert!(
            version >= self.version,
            "the stream went back from version {} to {version}: {event:?}",
            self.version
        );
        match event.event.as_str() {
            "snapshot" => {
                self.seats = event.data["snapshot"]["seats"]
                    .as_array()
                    .expect("snapshot seats")
                    .iter()
                    .map(|s| {
                        (
                            s["seatId"].as_str().unwrap_or_default().to_owned(),
                            s["status"].as_str().unwrap_or_default().to_owned(),
                        )
                    })
                    .collect();
            }
            "changes" => {
                for change in event.data["changes"]["items"].as_array().expect("items") {
                    let seats: Vec<String> = change["seatIds"]
                        .as_array()
                        .expect("seat ids")
                        .iter()
                        .map(|s| s.as_str().unwrap_or_default().to_owned())
                        .collect();
                    let status = change["status"].as_str().unwrap_or_default();
                    for seat in &seats {
                        self.seats.insert(seat.clone(), status.to_owned());
                    }
                    let v = change["version"]
                        .as_str()
                        .and_then(|v| v.parse().ok())
                        .expect("version");
                    let reason = change["reason"].as_str().unwrap_or_default().to_owned();
                    self.changes.push((v, reason, seats));
                }
            }
            other => panic!("unexpected sse event {other}"),
        }
        self.version = version;
    }

    /// Reads the stream until `done` holds for what was pieced together; fails the test
    /// after `within`.
    async fn until(
        &mut self,
        stream: &mut SseStream,
        within: Duration,
        what: &str,
        done: impl Fn(&Watched) -> bool,
    ) {
        let deadline = tokio::time::Instant::now() + within;
        while !done(self) {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            match stream.next_within(left).await {
                Some(event) => self.apply(&event),
                None => panic!("{what} not seen within {within:?}; watched: {self:?}"),
            }
        }
    }
}

async fn watch(system: &System, event_id: &str) -> SseStream {
    system
        .sse(&format!("/v1/events/{event_id}/seats:watch"), None, None)
        .await
        .unwrap_or_else(|r| panic!("watch refused: {} {:?}", r.status, r.body))
}

/// Seat id → status, as `GET /seats` says.
async fn seat_map(system: &System, event_id: &str) -> HashMap<String, String> {
    system
        .seats(event_id)
        .await
        .into_iter()
        .map(|(id, status, _)| (id, status))
        .collect()
}

async fn hold_with_key(
    system: &System,
    token: &str,
    event_id: &str,
    seats: &[String],
    key: &str,
) -> Reply {
    system
        .call(
            reqwest::Method::POST,
            &format!("/v1/events/{event_id}/holds"),
            Some(token),
            Some(json!({ "seatIds": seats })),
            &[("Idempotency-Key", key)],
        )
        .await
}

/// A system whose booking-svc reaches Redis through a delaying proxy and gives up on
/// a reply after 300 ms.
async fn behind_proxy(options: Options) -> (System, DelayProxy) {
    let proxy = DelayProxy::start(&marquee_testkit::redis_addr())
        .await
        .expect("proxy");
    let system = System::start_with(Options {
        booking_redis_url: Some(format!("redis://{}", proxy.addr())),
        redis_response_timeout: Duration::from_millis(300),
        ..options
    })
    .await;
    (system, proxy)
}

/// Ends the delay, and waits for the replies already delayed to arrive.
async fn end_delay(proxy: &DelayProxy) {
    proxy.set_delay(Duration::ZERO);
    tokio::time::sleep(Duration::from_millis(1_500)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_hold_whose_reply_is_lost_is_announced_and_undone_so_a_503_means_nothing_held() {
    let (system, proxy) = behind_proxy(Options::default()).await;
    let (_, event_id) = system.seller_event(&[("R", 30_000, 1, 4)], 4).await;
    let seats = system.seat_ids(&event_id).await;
    let (_, buyer) = system.account("BUYER").await;
    let mut stream = watch(&system, &event_id).await;
    let mut watched = Watched::default();
    watched.apply(&stream.next().await);

    // Redis runs the hold script, but its reply comes after booking-svc gave up.
    proxy.set_delay(Duration::from_millis(1_000));
    let lost = system.hold(&buyer, &event_id, &seats[0..2]).await;
    assert_eq!(lost.status, 503, "{:?}", lost.body);
    end_delay(&proxy).await;

    // The hold took effect and was announced although nobody got its reply; then it
    // was undone, and that was announced too.
    watched
        .until(
            &mut stream,
            Duration::from_secs(10),
            "held, then released",
            |w| w.changes.iter().any(|c| c.1 == "SEATS_RELEASED"),
        )
        .await;
    let reasons: Vec<&str> = watched.changes.iter().map(|c| c.1.as_str()).collect();
    assert_eq!(reasons, ["SEATS_HELD", "SEATS_RELEASED"], "{watched:?}");
    assert!(
        watched.changes.iter().all(|c| c.2 == seats[0..2]),
        "{watched:?}"
    );

    // Nothing is held: the map agrees, and the buyer's limit is whole (all four seats).
    assert!(
        seat_map(&system, &event_id)
            .await
            .values()
            .all(|s| s == "AVAILABLE")
    );
    assert!(
        watched.seats.values().all(|s| s == "AVAILABLE"),
        "{watched:?}"
    );
    let all = system.hold(&buyer, &event_id, &seats).await;
    assert_eq!(all.status, 201, "{:?}", all.body);
    system.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_hold_retried_with_its_idempotency_key_returns_the_hold_the_lost_reply_made() {
    let (system, proxy) = behind_proxy(Options::default()).await;
    let (_, event_id) = system.seller_event(&[("R", 30_000, 1, 4)], 4).await;
    let seats = system.seat_ids(&event_id).await;
    let (_, buyer) = system.account("BUYER").await;
    let mut stream = watch(&system, &event_id).await;
    let mut watched = Watched::default();
    watched.apply(&stream.next().await);

    proxy.set_delay(Duration::from_millis(1_000));
    let lost = hold_with_key(&system, &buyer, &event_id, &seats[0..2], "hold-1").await;
    assert_eq!(lost.status, 503, "{:?}", lost.body);
    assert!(
        lost.str("/message").contains("Idempotency-Key"),
        "the client is told to retry with its key: {:?}",
        lost.body
    );
    end_delay(&proxy).await;

    let retry = hold_with_key(&system, &buyer, &event_id, &seats[0..2], "hold-1").await;
    assert_eq!(retry.status, 201, "{:?}", retry.body);
    let hold_id = retry.str("/holdId");
    let again = hold_with_key(&system, &buyer, &event_id, &seats[0..2], "hold-1").await;
    assert_eq!(again.status, 201, "{:?}", again.body);
    assert_eq!(
        again.str("/holdId"),
        hold_id,
        "the same hold, not a second one"
    );
    assert_eq!(again.body["expiresAt"], retry.body["expiresAt"]);

    // One hold of two seats, announced once, and it is the one the buyer can check out.
    watched
        .until(&mut stream, Duration::from_secs(10), "the hold", |w| {
            !w.changes.is_empty()
        })
        .await;
    stream.assert_quiet(Duration::from_millis(800)).await;
    assert_eq!(watched.changes.len(), 1, "{watched:?}");
    assert_eq!(watched.changes[0].1, "SEATS_HELD");
    let held: Vec<_> = seat_map(&system, &event_id)
        .await
        .into_iter()
        .filter(|(_, s)| s == "HELD")
        .collect();
    assert_eq!(held.len(), 2, "{held:?}");
    let other = hold_with_key(&system, &buyer, &event_id, &seats[2..4], "hold-1").await;
    assert_eq!(
        other.status, 409,
        "a key reused for other seats: {:?}",
        other.body
    );
    let booked = system.checkout(&buyer, &hold_id, "buy-1").await;
    assert_eq!(booked.status, 202, "{:?}", booked.body);
    system
        .await_booking(&buyer, &booked.str("/bookingId"), "CONFIRMED")
        .await;

    // A key whose first answer arrived: the retry's answer is the same, to the letter.
    let first = hold_with_key(&system, &buyer, &event_id, &seats[2..4], "hold-2").await;
    assert_eq!(first.status, 201, "{:?}", first.body);
    let replayed = hold_with_key(&system, &buyer, &event_id, &seats[2..4], "hold-2").await;
    assert_eq!(replayed.status, 201, "{:?}", replayed.body);
    assert_eq!(replayed.body, first.body);
    system.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_checkout_whose_claim_reply_was_lost_completes_on_retry_within_the_grace() {
    let (system, proxy) = behind_proxy(Options {
        checkout_grace: Duration::from_secs(2),
        ..Options::default()
    })
    .await;
    let (_, event_id) = system.seller_event(&[("R", 30_000, 1, 4)], 4).await;
    let seats = system.seat_ids(&event_id).await;
    let (_, buyer) = system.account("BUYER").await;
    let held = system.hold(&buyer, &event_id, &seats[0..2]).await;
    assert_eq!(held.status, 201, "{:?}", held.body);
    let hold_id = held.str("/holdId");

    // The claim runs in Redis, its reply is lost, and no booking is written: what a
    // booking-svc crash between claim and insert leaves behind.
    proxy.set_delay(Duration::from_millis(1_000));
    let lost = system.checkout(&buyer, &hold_id, "buy-1").await;
    assert_eq!(lost.status, 503, "{:?}", lost.body);
    end_delay(&proxy).await;

    // The buyer retries with the same key; within the grace (not the hold's five
    // minutes) the checkout goes through.
    let started = tokio::time::Instant::now();
    let booked = loop {
        let retry = system.checkout(&buyer, &hold_id, "buy-1").await;
        if retry.status == 202 {
            break retry;
        }
        assert_eq!(
            retry.status, 409,
            "in progress until the grace ends: {:?}",
            retry.body
        );
        assert!(
            started.elapsed() < Duration::from_secs(15),
            "still refused after {:?}: {:?}",
            started.elapsed(),
            retry.body
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    let booking_id = booked.str("/bookingId");
    system.await_booking(&buyer, &booking_id, "CONFIRMED").await;
    let sold: Vec<_> = seat_map(&system, &event_id)
        .await
        .into_iter()
        .filter(|(_, s)| s == "SOLD")
        .collect();
    assert_eq!(sold.len(), 2, "{sold:?}");
    system.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn redis_losing_its_data_mid_sale_is_noticed_repaired_and_never_oversells() {
    let system = System::start().await;
    let (_, event_id) = system.seller_event(&[("R", 30_000, 2, 4)], 4).await;
    let seats = system.seat_ids(&event_id).await;
    let (_, ana) = system.account("BUYER").await;
    let (_, ben) = system.account("BUYER").await;
    let (_, cho) = system.account("BUYER").await;

    // Ana owns two seats; Ben holds two without checking out.
    let held = system.hold(&ana, &event_id, &seats[0..2]).await;
    assert_eq!(held.status, 201, "{:?}", held.body);
    let booked = system.checkout(&ana, &held.str("/holdId"), "ana-1").await;
    assert_eq!(booked.status, 202, "{:?}", booked.body);
    system
        .await_booking(&ana, &booked.str("/bookingId"), "CONFIRMED")
        .await;
    let bens = system.hold(&ben, &event_id, &seats[2..4]).await;
    assert_eq!(bens.status, 201, "{:?}", bens.body);

    let mut stream = watch(&system, &event_id).await;
    let mut watched = Watched::default();
    let before = seat_map(&system, &event_id).await;
    watched
        .until(
            &mut stream,
            Duration::from_secs(5),
            "the current map",
            |w| w.seats == before,
        )
        .await;
    let version_before = watched.version;

    // Redis loses every key of this system.
    marquee_testkit::delete_redis_keys(&system.redis_prefix)
        .await
        .expect("keys deleted");

    // From the moment of the loss, a sold seat is never held again: refused while the
    // store is restored (503), taken once it is (409).
    let started = tokio::time::Instant::now();
    loop {
        let sold_again = system.hold(&cho, &event_id, &seats[0..1]).await;
        assert!(
            [503, 409].contains(&sold_again.status),
            "a sold seat was held again: {:?}",
            sold_again.body
        );
        if sold_again.status == 409 {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "never restored"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // Ben's hold went with the data (nothing in Postgres kept it): his seats are free.
    let after = seat_map(&system, &event_id).await;
    assert_eq!(after[&seats[0]], "SOLD");
    assert_eq!(after[&seats[1]], "SOLD");
    assert_eq!(after[&seats[2]], "AVAILABLE");
    assert_eq!(after[&seats[3]], "AVAILABLE");
    let chos = system.hold(&cho, &event_id, &seats[4..6]).await;
    assert_eq!(chos.status, 201, "{:?}", chos.body);

    // The live map recovers: never a version going back (checked on every event), and
    // it ends where GET /seats is.
    let expected = seat_map(&system, &event_id).await;
    let sold: HashSet<String> = expected
        .iter()
        .filter(|(_, status)| *status == "SOLD")
        .map(|(seat, _)| seat.clone())
        .collect();
    Oversell::check(&system.booking_pool, &sold)
        .await
        .assert_ok();
    watched
        .until(
            &mut stream,
            Duration::from_secs(10),
            "the map after the loss",
            |w| w.seats == expected,
        )
        .await;
    assert!(watched.version > version_before, "{watched:?}");

    // A newcomer sees the same, at a version above anything handed out before.
    let mut late = watch(&system, &event_id).await;
    let mut fresh = Watched::default();
    fresh.apply(&late.next().await);
    assert_eq!(fresh.seats, expected);
    assert!(fresh.version > version_before);
    system.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn checkout_enforces_the_per_buyer_limit_from_postgres_when_redis_forgot() {
    let system = System::start().await;
    let (_, event_id) = system.seller_event(&[("R", 30_000, 1, 4)], 2).await;
    let seats = system.seat_ids(&event_id).await;
    let (ana_id, ana) = system.account("BUYER").await;
    let held = system.hold(&ana, &event_id, &seats[0..2]).await;
    assert_eq!(held.status, 201, "{:?}", held.body);
    let booked = system.checkout(&ana, &held.str("/holdId"), "ana-1").await;
    assert_eq!(booked.status, 202, "{:?}", booked.body);
    system
        .await_booking(&ana, &booked.str("/bookingId"), "CONFIRMED")
        .await;

    // Redis forgets which seats Ana owns (a failover to a replica that missed them):
    // it lets her hold two more.
    let mut redis = redis::Client::open(marquee_testkit::redis_url())
        .expect("client")
        .get_multiplexed_async_connection()
        .await
        .expect("redis");
    let () = redis::cmd("DEL")
        .arg(format!(
            "{}buyer:{event_id}:{ana_id}",
            booking_svc::holds::partition_prefix(
                &system.redis_prefix,
                booking_svc::holds::Partition::of(event_id.parse().expect("event id")),
            )
        ))
        .query_async(&mut redis)
        .await
        .expect("del");
    let more = system.hold(&ana, &event_id, &seats[2..4]).await;
    assert_eq!(more.status, 201, "{:?}", more.body);

    // Postgres knows: the checkout is refused with the limit, and the seats go back on sale.
    let refused = system.checkout(&ana, &more.str("/holdId"), "ana-2").await;
    assert_eq!(refused.status, 400, "{:?}", refused.body);
    assert!(
        refused.body.to_string().contains("SEAT_LIMIT"),
        "{:?}",
        refused.body
    );
    let map = seat_map(&system, &event_id).await;
    assert_eq!(map[&seats[2]], "AVAILABLE");
    assert_eq!(map[&seats[3]], "AVAILABLE");
    let bookings = system.get("/v1/bookings", Some(&ana)).await;
    let owned: Vec<&Value> = bookings.body["bookings"]
        .as_array()
        .expect("bookings")
        .iter()
        .filter(|b| b["status"] == "CONFIRMED" || b["status"] == "PENDING_PAYMENT")
        .collect();
    assert_eq!(owned.len(), 1, "{:?}", bookings.body);
    system.stop().await;
}

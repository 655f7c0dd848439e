//! Watchers of one event's seat map share one upstream stream at the gateway: each
//! starts on its own stream (its snapshot, or its resume after `Last-Event-ID`) and
//! moves onto the shared one without losing or repeating a change, while a buyer keeps
//! the seats changing. Its own test binary, so the process's metrics (realtime-svc's
//! open seat streams) are this test's alone.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use marquee_e2e::{SseEvent, SseStream, System};
use serde_json::Value;

fn render() -> String {
    marquee_infra::metrics::prometheus().render()
}

/// The value of the gauge `name`, if exported.
fn gauge(name: &str) -> Option<f64> {
    marquee_e2e::metric_sample(&render(), name, &[])
}

async fn gauge_becomes(name: &str, wanted: f64, within: Duration) {
    let started = Instant::now();
    loop {
        let seen = gauge(name);
        if seen == Some(wanted) {
            return;
        }
        assert!(
            started.elapsed() < within,
            "{name} never became {wanted} within {within:?}; last seen {seen:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A watcher's seat map, pieced together as a client would.
struct Watcher {
    stream: SseStream,
    seats: HashMap<String, String>,
    version: i64,
}

impl Watcher {
    async fn open(system: &System, event_id: &str, last: Option<&Watcher>) -> Watcher {
        let last_id = last.map(|w| w.version.to_string());
        let stream = system
            .sse(
                &format!("/v1/events/{event_id}/seats:watch"),
                None,
                last_id.as_deref(),
            )
            .await
            .unwrap_or_else(|r| panic!("watch refused: {} {:?}", r.status, r.body));
        let (seats, version) = last.map_or((HashMap::new(), -1), |w| (w.seats.clone(), w.version));
        let mut watcher = Watcher {
            stream,
            seats,
            version,
        };
        if last.is_none() {
            let first = watcher.stream.next().await;
            watcher.apply(&first);
        }
        watcher
    }

    /// Applies one event, failing on a change that does not follow the last one.
    fn apply(&mut self, event: &SseEvent) {
        match event.event.as_str() {
            "snapshot" => {
                self.seats = event.data["snapshot"]["seats"]
                    .as_array()
                    .expect("snapshot seats")
                    .iter()
                    .map(|s| (text(&s["seatId"]), text(&s["status"])))
                    .collect();
            }
            "changes" => {
                for change in event.data["changes"]["items"]
                    .as_array()
                    .expect("change items")
                {
                    let version: i64 = text(&change["version"]).parse().expect("version");
                    assert_eq!(
                        version,
                        self.version + 1,
                        "a change lost or repeated at the hand-over: {event:?}"
                    );
                    self.version = version;
                    for seat in change["seatIds"].as_array().expect("seat ids") {
                        self.seats.insert(text(seat), text(&change["status"]));
                    }
                }
            }
            other => panic!("unexpected event {other}: {event:?}"),
        }
        self.version = event.version();
    }

    /// Reads until the watcher is at `version`.
    async fn catch_up(&mut self, version: i64) {
        while self.version < version {
            let event = self
                .stream
                .next_within(Duration::from_secs(10))
                .await
                .unwrap_or_else(|| panic!("stuck at {} of {version}", self.version));
            self.apply(&event);
        }
        assert_eq!(self.version, version);
    }
}

fn text(value: &Value) -> String {
    value.as_str().unwrap_or_default().to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn watchers_of_one_event_share_one_upstream_stream_and_each_gets_every_change_once() {
    let _ = marquee_infra::metrics::prometheus();
    let system = Arc::new(System::start().await);
    let (_, event_id) = system.seller_event(&[("R", 30_000, 2, 10)], 4).await;
    let seats: Vec<String> = system.seat_ids(&event_id).await;
    let (_, buyer) = system.account("BUYER").await;

    // A buyer holds and releases seats without pause while the watchers come.
    let churning = Arc::new(AtomicBool::new(true));
    let churn = tokio::spawn({
        let (system, event_id, churning) = (system.clone(), event_id.clone(), churning.clone());
        async move {
            let mut made = 0;
            while churning.load(Ordering::Relaxed) {
                let seat = &seats[made % seats.len()..][..1];
                let held = system.hold(&buyer, &event_id, seat).await;
                assert_eq!(held.status, 201, "{:?}", held.body);
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
                made += 1;
            }
            made
        }
    });

    let mut watchers = Vec::new();
    for i in 0..24 {
        // Every fourth one resumes where an earlier one stands, as a reconnecting
        // EventSource does.
        let resume_from = (i % 4 == 3).then(|| &watchers[i - 1]);
        let watcher = Watcher::open(&system, &event_id, resume_from).await;
        watchers.push(watcher);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    churning.store(false, Ordering::Relaxed);
    let made = churn.await.expect("the buyer's task");
    assert!(made >= 5, "only {made} hold/release pairs were made");

    // The final map, as a newcomer has it once the last change has reached it.
    let mut fresh = Watcher::open(&system, &event_id, None).await;
    while let Some(event) = fresh.stream.next_within(Duration::from_millis(500)).await {
        fresh.apply(&event);
    }
    let (version, map) = (fresh.version, fresh.seats.clone());
    for watcher in &mut watchers {
        watcher.catch_up(version).await;
        assert_eq!(
            watcher.seats, map,
            "a watcher's map differs from a newcomer's"
        );
    }

    // 25 clients, and realtime-svc streams once to the gateway: every client's own
    // stream closed when it moved onto the shared one.
    gauge_becomes("sse_clients", 25.0, Duration::from_secs(5)).await;
    gauge_becomes("sse_shared_streams", 1.0, Duration::from_secs(5)).await;
    gauge_becomes("realtime_seat_watchers", 1.0, Duration::from_secs(5)).await;

    // The last client gone, the shared stream closes too.
    drop(watchers);
    drop(fresh);
    gauge_becomes("sse_shared_streams", 0.0, Duration::from_secs(5)).await;
    gauge_becomes("realtime_seat_watchers", 0.0, Duration::from_secs(5)).await;
    Arc::into_inner(system)
        .expect("the buyer's task has ended")
        .stop()
        .await;
}

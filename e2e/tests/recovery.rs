//! The bus connection is supervised: when the broker drops booking-svc's, pay-svc's
//! and realtime-svc's connections, each reconnects, redeclares its topology and
//! resubscribes; the next purchase goes through as if nothing happened, and a seat-map
//! watcher that stayed connected sees it (realtime-svc re-reads what it may have missed).

use std::process::Command;
use std::time::Duration;

use marquee_e2e::System;

/// The broker's connections, one a line: `pid<TAB>client_properties`, where the
/// properties hold `{"connection_name","NAME"}`.
fn listing() -> String {
    let listed = Command::new("rabbitmqctl")
        .args([
            "-q",
            "--no-table-headers",
            "list_connections",
            "pid",
            "client_properties",
        ])
        .output()
        .expect("rabbitmqctl runs (it ships with rabbitmq-server)");
    assert!(
        listed.status.success(),
        "{}",
        String::from_utf8_lossy(&listed.stderr)
    );
    String::from_utf8_lossy(&listed.stdout).into_owned()
}

/// Makes RabbitMQ close every connection whose name starts with `prefix` (but the
/// test's own), the way a broker restart or a network cut would. Returns the pids of
/// the closed connections.
fn close_connections(prefix: &str) -> Vec<String> {
    let mut closed = Vec::new();
    for line in listing().lines() {
        let Some((pid, properties)) = line.split_once('\t') else {
            continue;
        };
        let ours = properties.contains(&format!("{{\"connection_name\",\"{prefix}"));
        let the_tests_own = properties.contains(&format!("\"{prefix}test\"}}"));
        if ours && !the_tests_own {
            let status = Command::new("rabbitmqctl")
                .args(["-q", "close_connection", pid, "simulated connection loss"])
                .status()
                .expect("rabbitmqctl runs");
            assert!(status.success());
            closed.push(pid.to_owned());
        }
    }
    closed
}

async fn purchase(sys: &System, event_id: &str, seat: &str, key: &str) {
    let (_, buyer) = sys.account("BUYER").await;
    let hold = sys.hold(&buyer, event_id, &[seat.to_owned()]).await;
    assert_eq!(hold.status, 201, "{:?}", hold.body);
    let booking = sys.checkout(&buyer, &hold.str("/holdId"), key).await;
    assert_eq!(booking.status, 202, "{:?}", booking.body);
    sys.await_booking(&buyer, &booking.str("/bookingId"), "CONFIRMED")
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn purchases_survive_the_broker_dropping_connections() {
    let sys = System::start().await;
    let (_, event_id) = sys.seller_event(&[("A", 10_000, 1, 4)], 0).await;
    let seats: Vec<String> = sys.seat_ids(&event_id).await;
    purchase(&sys, &event_id, &seats[0], "before").await;
    let mut watcher = sys
        .sse(&format!("/v1/events/{event_id}/seats:watch"), None, None)
        .await
        .unwrap_or_else(|r| panic!("watch refused: {} {:?}", r.status, r.body));
    let snapshot = watcher.next().await;
    assert_eq!(snapshot.event, "snapshot");

    let closed = close_connections(&sys.bus_prefix);
    assert_eq!(
        closed.len(),
        3,
        "booking-svc's, pay-svc's and realtime-svc's connections among:\n{}",
        listing()
    );
    tokio::time::sleep(Duration::from_millis(200)).await;

    // Publishing (both outbox relays) and consuming (both saga consumers) recover.
    purchase(&sys, &event_id, &seats[1], "after").await;
    assert_eq!(
        sys.seats(&event_id)
            .await
            .iter()
            .filter(|s| s.1 == "SOLD")
            .count(),
        2
    );
    // The watcher learns that seat 2 was sold: from the change itself, or from the
    // snapshot realtime-svc sends after re-reading the seats on resubscribing.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let mut sold = false;
    while !sold && tokio::time::Instant::now() < deadline {
        let Some(event) = watcher.next_within(Duration::from_secs(1)).await else {
            assert!(!watcher.ended, "the watcher's stream ended");
            continue;
        };
        sold = match event.event.as_str() {
            "snapshot" => event.data["snapshot"]["seats"]
                .as_array()
                .expect("seats")
                .iter()
                .any(|s| s["seatId"] == seats[1].as_str() && s["status"] == "SOLD"),
            _ => event.data["changes"]["items"]
                .as_array()
                .expect("items")
                .iter()
                .any(|c| {
                    c["status"] == "SOLD"
                        && c["seatIds"]
                            .as_array()
                            .is_some_and(|ids| ids.contains(&seats[1].clone().into()))
                }),
        };
    }
    assert!(sold, "the watcher never saw seat 2 sold");
    sys.stop().await;
}

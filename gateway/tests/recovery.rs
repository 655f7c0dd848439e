//! The bus connection is supervised: when the broker drops booking-svc's and pay-svc's
//! connections, both reconnect, redeclare their topology and resubscribe, and the next
//! purchase goes through as if nothing happened.

mod common;

use std::process::Command;
use std::time::Duration;

use common::System;

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
    let seats: Vec<String> = sys
        .seats(&event_id)
        .await
        .into_iter()
        .map(|s| s.0)
        .collect();
    purchase(&sys, &event_id, &seats[0], "before").await;

    let closed = close_connections(&sys.bus_prefix);
    assert_eq!(
        closed.len(),
        2,
        "booking-svc's and pay-svc's connections among:\n{}",
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
    sys.stop().await;
}

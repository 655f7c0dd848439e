//! Throughput of the JSON ⇄ protobuf transcoding on the hot routes: a 20,000-seat
//! `ListSeats` answer, a hold answer, and the hold request (`POST
//! /v1/events/{event_id}/holds`, body `*` plus a path variable) and a seat-map request
//! (GET with a path variable).
//!
//! Plain `Instant` loops (no bench framework dependency): each case runs for about a
//! second after a warm-up and prints ns/op and MB/s of JSON written or read.
//!
//! `cargo bench -p marquee-gateway --bench transcode`

use std::hint::black_box;
use std::time::{Duration, Instant};

use http::Method;
use marquee_gateway::RouteTable;
use marquee_gateway::routes::Route;
use marquee_gateway::transcode::{build_request, response_json};
use prost_reflect::{DynamicMessage, MessageDescriptor, Value};

// As in the gateway binary, so allocation costs are the ones production sees.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

const SEATS: usize = 20_000;

fn message(table: &RouteTable, name: &str) -> MessageDescriptor {
    table
        .pool()
        .get_message_by_name(name)
        .unwrap_or_else(|| panic!("no message {name}"))
}

fn money(table: &RouteTable, amount_minor: i64) -> Value {
    let mut money = DynamicMessage::new(message(table, "marquee.type.v1.Money"));
    money.set_field_by_name("amount_minor", Value::I64(amount_minor));
    money.set_field_by_name("currency", Value::String("KRW".into()));
    Value::Message(money)
}

fn timestamp(table: &RouteTable) -> Value {
    let mut at = DynamicMessage::new(message(table, "google.protobuf.Timestamp"));
    at.set_field_by_name("seconds", Value::I64(1_767_225_600));
    at.set_field_by_name("nanos", Value::I32(123_000_000));
    Value::Message(at)
}

/// A seat map as booking-svc answers it: 20 sections of 20 rows of 50 seats.
fn seat_map(table: &RouteTable) -> DynamicMessage {
    let seat = message(table, "marquee.booking.v1.Seat");
    let seats = (0..SEATS)
        .map(|i| {
            let (section, row, number) = (i / 1000, (i / 50) % 20, i % 50);
            let mut s = DynamicMessage::new(seat.clone());
            s.set_field_by_name(
                "seat_id",
                Value::String(format!("0190b6c2-7f3a-7c1e-9d4b-{i:012x}")),
            );
            s.set_field_by_name(
                "section_id",
                Value::String(format!("0190b6c2-7f3a-7c1e-8a00-{section:012x}")),
            );
            s.set_field_by_name("section", Value::String(format!("Section {section}")));
            s.set_field_by_name(
                "row",
                Value::String(format!("{}", (b'A' + row as u8) as char)),
            );
            s.set_field_by_name("number", Value::String(number.to_string()));
            s.set_field_by_name("price", money(table, 55_000 + 10_000 * section as i64));
            s.set_field_by_name(
                "x",
                Value::F64(number as f64 * 1.25 + section as f64 * 70.0),
            );
            s.set_field_by_name("y", Value::F64(row as f64 * 1.5));
            // Most seats available (1), a few held or sold.
            s.set_field_by_name("status", Value::EnumNumber([1, 1, 1, 2, 3][i % 5]));
            Value::Message(s)
        })
        .collect();
    let mut response = DynamicMessage::new(message(table, "marquee.booking.v1.ListSeatsResponse"));
    response.set_field_by_name("seats", Value::List(seats));
    response
}

fn hold(table: &RouteTable) -> DynamicMessage {
    let mut hold = DynamicMessage::new(message(table, "marquee.booking.v1.Hold"));
    hold.set_field_by_name(
        "hold_id",
        Value::String("0190b6c2-7f3a-7c1e-9d4b-aaaaaaaaaaaa".into()),
    );
    hold.set_field_by_name(
        "event_id",
        Value::String("0190b6c2-7f3a-7c1e-9d4b-eeeeeeeeeeee".into()),
    );
    let seat_ids = (0..4)
        .map(|i| Value::String(format!("0190b6c2-7f3a-7c1e-9d4b-{i:012x}")))
        .collect();
    hold.set_field_by_name("seat_ids", Value::List(seat_ids));
    hold.set_field_by_name("expires_at", timestamp(table));
    hold.set_field_by_name("total", money(table, 220_000));
    hold
}

fn route(table: &RouteTable, method: Method, template: &str) -> std::sync::Arc<Route> {
    table
        .find(&method, template)
        .unwrap_or_else(|| panic!("no route {method} {template}"))
}

/// Runs `op` for about a second (after a warm-up) and prints ns/op and MB/s of `bytes`
/// per op.
fn bench(name: &str, bytes: usize, mut op: impl FnMut()) {
    let warm = Instant::now();
    while warm.elapsed() < Duration::from_millis(300) {
        op();
    }
    let mut iterations = 0u64;
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(1) || iterations < 10 {
        op();
        iterations += 1;
    }
    let elapsed = start.elapsed();
    let ns = elapsed.as_nanos() as f64 / iterations as f64;
    let mb_s = bytes as f64 * iterations as f64 / elapsed.as_secs_f64() / 1e6;
    println!("{name:<44} {ns:>14.0} ns/op {mb_s:>10.1} MB/s  ({bytes} B, {iterations} ops)");
}

fn main() {
    let table = RouteTable::marquee().expect("route table");

    let seats = seat_map(&table);
    let seats_len = response_json(&seats, None).expect("serializes").len();
    bench("response_json ListSeats (20,000 seats)", seats_len, || {
        black_box(response_json(black_box(&seats), None).expect("serializes"));
    });

    let hold = hold(&table);
    let hold_len = response_json(&hold, None).expect("serializes").len();
    bench("response_json Hold", hold_len, || {
        black_box(response_json(black_box(&hold), None).expect("serializes"));
    });

    let create_hold = route(&table, Method::POST, "/v1/events/{event_id}/holds");
    let bindings = vec![(
        "event_id".to_owned(),
        "0190b6c2-7f3a-7c1e-9d4b-eeeeeeeeeeee".to_owned(),
    )];
    let body = br#"{"seatIds": ["0190b6c2-7f3a-7c1e-9d4b-000000000000", "0190b6c2-7f3a-7c1e-9d4b-000000000001", "0190b6c2-7f3a-7c1e-9d4b-000000000002", "0190b6c2-7f3a-7c1e-9d4b-000000000003"], "idempotencyKey": "3f1c9a7e-hold-retry-key"}"#;
    build_request(&create_hold, &bindings, None, body).expect("builds");
    bench(
        "build_request CreateHold (body * + path)",
        body.len(),
        || {
            black_box(
                build_request(&create_hold, black_box(&bindings), None, black_box(body))
                    .expect("builds"),
            );
        },
    );

    let list_seats = route(&table, Method::GET, "/v1/events/{event_id}/seats");
    build_request(&list_seats, &bindings, None, b"").expect("builds");
    bench("build_request ListSeats (GET + path)", 0, || {
        black_box(build_request(&list_seats, black_box(&bindings), None, b"").expect("builds"));
    });
}

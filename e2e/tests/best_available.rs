//! Best available through the REST gateway: `POST /v1/events/{id}/holds` with a
//! `quantity` (and optionally a `sectionId` and a `maxPrice`) instead of `seatIds`
//! holds the best block of adjacent seats in one row, answers 400 JSON for a request
//! that mixes the two or asks for too many, and 409 JSON when no block exists.

use marquee_e2e::{Reply, System};
use reqwest::Method;
use serde_json::{Value, json};

/// The seat map of an event: seat id → (section id, row, number).
async fn seat_map(sys: &System, event_id: &str) -> Vec<(String, String, String, String)> {
    let seats = sys.get(&format!("/v1/events/{event_id}/seats"), None).await;
    assert_eq!(seats.status, 200, "{:?}", seats.body);
    seats.body["seats"]
        .as_array()
        .expect("seats")
        .iter()
        .map(|s| {
            let field = |name: &str| s[name].as_str().unwrap_or_default().to_owned();
            (
                field("seatId"),
                field("sectionId"),
                field("row"),
                field("number"),
            )
        })
        .collect()
}

/// The seats a hold reply lists as (section id, row, number), checking that they are
/// adjacent seats of one row: consecutive in the seat map's (layout) order.
async fn one_block(sys: &System, event_id: &str, hold: &Reply) -> Vec<(String, String, String)> {
    let map = seat_map(sys, event_id).await;
    let ids: Vec<&str> = hold.body["seatIds"]
        .as_array()
        .expect("seatIds")
        .iter()
        .map(|id| id.as_str().expect("a seat id"))
        .collect();
    let mut positions: Vec<usize> = ids
        .iter()
        .map(|id| {
            map.iter()
                .position(|s| s.0 == *id)
                .expect("a seat of the event")
        })
        .collect();
    positions.sort_unstable();
    for pair in positions.windows(2) {
        assert_eq!(pair[1], pair[0] + 1, "not adjacent: {:?}", hold.body);
    }
    let seats: Vec<(String, String, String)> = positions
        .iter()
        .map(|&p| (map[p].1.clone(), map[p].2.clone(), map[p].3.clone()))
        .collect();
    assert!(
        seats
            .iter()
            .all(|s| (&s.0, &s.1) == (&seats[0].0, &seats[0].1)),
        "not one row: {seats:?}"
    );
    seats
}

/// The BadRequest field violations of an error reply, as `field` names.
fn violated_fields(reply: &Reply) -> Vec<String> {
    reply.body["details"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|d| d["fieldViolations"].as_array().into_iter().flatten())
        .filter_map(|v| v["field"].as_str().map(str::to_owned))
        .collect()
}

fn assert_json_error(reply: &Reply, status: u16, what: &str) {
    assert_eq!(reply.status, status, "{what}: {:?}", reply.body);
    assert!(reply.body["code"].is_number(), "{what}: {:?}", reply.body);
    assert!(
        !reply.body["message"]
            .as_str()
            .unwrap_or_default()
            .is_empty(),
        "{what}: {:?}",
        reply.body
    );
}

fn message(reply: &Reply) -> &str {
    reply.body["message"].as_str().unwrap_or_default()
}

#[tokio::test]
async fn a_quantity_holds_the_best_adjacent_seats_and_bad_requests_are_json_errors() {
    let sys = System::start().await;
    let (_, seller) = sys.account("SELLER").await;
    // Section R: rows A and B of six seats (x 0, 10, .. 50); section S: one row of four.
    let event = sys
        .event(&seller, &[("R", 30_000, 2, 6), ("S", 10_000, 1, 4)], 4)
        .await;
    let event_id = event["eventId"].as_str().expect("event id").to_owned();
    let section = |i: usize| -> String {
        event["sections"][i]["sectionId"]
            .as_str()
            .expect("section id")
            .to_owned()
    };
    let holds = format!("/v1/events/{event_id}/holds");
    let (_, buyer) = sys.account("BUYER").await;

    // Three seats: the first section, its first row, the block nearest the row's
    // centre that strands no single seat (the centred 2-4 and 3-5 would strand 1 or 6).
    let hold = sys.post(&holds, Some(&buyer), json!({"quantity": 3})).await;
    assert_eq!(hold.status, 201, "{:?}", hold.body);
    assert_eq!(hold.body["seatIds"].as_array().map(Vec::len), Some(3));
    assert_eq!(hold.str("/total/amountMinor"), "90000");
    let seats = one_block(&sys, &event_id, &hold).await;
    let numbers: Vec<&str> = seats.iter().map(|s| s.2.as_str()).collect();
    assert_eq!((&seats[0].0, seats[0].1.as_str()), (&section(0), "A"));
    assert_eq!(numbers, ["1", "2", "3"]);
    let held: Vec<String> = hold.body["seatIds"]
        .as_array()
        .expect("seatIds")
        .iter()
        .filter_map(|id| id.as_str().map(str::to_owned))
        .collect();
    let statuses = sys.seats(&event_id).await;
    for (id, status, _) in &statuses {
        let expected = if held.contains(id) {
            "HELD"
        } else {
            "AVAILABLE"
        };
        assert_eq!(status, expected, "{id}");
    }

    // An Idempotency-Key retry gets the same hold, though other seats would be chosen.
    let (_, group) = sys.account("BUYER").await;
    let keyed = |body: Value| {
        let (sys, holds, group) = (&sys, &holds, &group);
        async move {
            sys.call(
                Method::POST,
                holds,
                Some(group),
                Some(body),
                &[("Idempotency-Key", "best-2")],
            )
            .await
        }
    };
    let first = keyed(json!({"quantity": 2, "sectionId": section(1)})).await;
    assert_eq!(first.status, 201, "{:?}", first.body);
    let seats = one_block(&sys, &event_id, &first).await;
    assert!(seats.iter().all(|s| s.0 == section(1)), "{seats:?}");
    let again = keyed(json!({"quantity": 2, "sectionId": section(1)})).await;
    assert_eq!(again.status, 201, "{:?}", again.body);
    assert_eq!(again.str("/holdId"), first.str("/holdId"));
    assert_eq!(again.body["seatIds"], first.body["seatIds"]);
    let reused = keyed(json!({"quantity": 1})).await;
    assert_json_error(&reused, 409, "key used for another request");

    // No block: the other pair of section S is left, not three adjacent seats.
    let (_, late) = sys.account("BUYER").await;
    let none = sys
        .post(
            &holds,
            Some(&late),
            json!({"quantity": 3, "sectionId": section(1)}),
        )
        .await;
    assert_json_error(&none, 409, "no block of three");
    assert!(
        message(&none).contains("no 3 adjacent seats available in one row"),
        "{:?}",
        none.body
    );
    assert_eq!(none.body["details"][0]["reason"], "NO_ADJACENT_SEATS");
    // At most 10,000 a seat is section S too: its last pair.
    let cheap = sys
        .post(
            &holds,
            Some(&late),
            json!({"quantity": 2, "maxPrice": {"amountMinor": "10000", "currency": "KRW"}}),
        )
        .await;
    assert_eq!(cheap.status, 201, "{:?}", cheap.body);
    assert_eq!(cheap.str("/total/amountMinor"), "20000");
    let cheap_seats = one_block(&sys, &event_id, &cheap).await;
    assert!(cheap_seats.iter().all(|s| s.0 == section(1)));

    // Bad requests: 400 JSON naming the fields.
    let seat = held[0].clone();
    let both = sys
        .post(
            &holds,
            Some(&late),
            json!({"quantity": 3, "seatIds": [seat]}),
        )
        .await;
    assert_json_error(&both, 400, "seats and a quantity");
    assert!(
        message(&both).contains("seatIds") && message(&both).contains("quantity"),
        "{:?}",
        both.body
    );
    assert_eq!(violated_fields(&both), ["quantity"]);
    for (body, field, what) in [
        (json!({"quantity": 0}), "seatIds", "quantity 0 and no seats"),
        (json!({"quantity": -1}), "quantity", "a negative quantity"),
        (
            json!({"quantity": 5}),
            "quantity",
            "over the per-buyer limit",
        ),
        (
            json!({"quantity": 2, "sectionId": "front"}),
            "sectionId",
            "a malformed section",
        ),
        (
            json!({"quantity": 2, "sectionId": uuid::Uuid::now_v7().to_string()}),
            "sectionId",
            "a section of no such event",
        ),
        (
            json!({"quantity": 2, "maxPrice": {"amountMinor": "100", "currency": "USD"}}),
            "maxPrice.currency",
            "a price in another currency",
        ),
        (
            json!({"seatIds": [held[0]], "sectionId": section(0)}),
            "sectionId",
            "a section with named seats",
        ),
    ] {
        let reply = sys.post(&holds, Some(&late), body).await;
        assert_json_error(&reply, 400, what);
        assert_eq!(violated_fields(&reply), [field], "{what}: {:?}", reply.body);
    }
    // Nothing of that held a seat: only the three holds made.
    let held_now = sys
        .seats(&event_id)
        .await
        .iter()
        .filter(|s| s.1 == "HELD")
        .count();
    assert_eq!(held_now, 7);
    sys.stop().await;
}

//! The waiting room end to end (issue 11): sellers turn it on, buyers join through the
//! REST gateway, booking-svc admits them in line order at the room's pace or cap, and
//! holds and checkouts need the signed admission token, checked at the gateway and
//! again by booking-svc.

use std::time::{Duration, Instant};

use futures::StreamExt as _;
use marquee_e2e::{JWT_SECRET, System, int};
use marquee_infra::auth::TokenKeys;
use reqwest::Method;
use serde_json::{Value, json};
use uuid::Uuid;

/// A buyer signed up and logged in, without waiting for its wallet (joining a queue
/// needs none): (account id, token).
async fn quick_buyer(sys: &System) -> (String, String) {
    let email = format!("q-{}@example.com", Uuid::new_v4().simple());
    let body = json!({"email": email, "password": "correct horse battery", "displayName": "Q", "role": "BUYER"});
    let signed = sys.post("/v1/accounts", None, body).await;
    assert_eq!(signed.status, 201, "sign-up: {:?}", signed.body);
    let login = json!({"email": email, "password": "correct horse battery"});
    let session = sys.post("/v1/sessions", None, login).await;
    assert_eq!(session.status, 201, "log-in: {:?}", session.body);
    (signed.str("/accountId"), session.str("/accessToken"))
}

async fn quick_buyers(sys: &System, n: usize) -> Vec<(String, String)> {
    futures::stream::iter(0..n)
        .map(|_| quick_buyer(sys))
        .buffered(32)
        .collect()
        .await
}

/// Turns the event's waiting room on with `settings`.
async fn configure(sys: &System, seller: &str, event_id: &str, settings: Value) -> Value {
    let reply = sys
        .call(
            Method::PUT,
            &format!("/v1/events/{event_id}/waiting-room"),
            Some(seller),
            Some(json!({ "waitingRoom": settings })),
            &[],
        )
        .await;
    assert_eq!(reply.status, 200, "configure: {:?}", reply.body);
    reply.body
}

async fn join(sys: &System, buyer: &str, event_id: &str) -> Value {
    let reply = sys
        .post(
            &format!("/v1/events/{event_id}/queue"),
            Some(buyer),
            json!({}),
        )
        .await;
    assert_eq!(reply.status, 201, "join: {:?}", reply.body);
    reply.body
}

async fn ticket(sys: &System, buyer: &str, ticket_id: &str) -> Value {
    let reply = sys
        .get(&format!("/v1/queue/{ticket_id}"), Some(buyer))
        .await;
    assert_eq!(reply.status, 200, "ticket: {:?}", reply.body);
    reply.body
}

fn number(ticket: &Value) -> u64 {
    ticket["number"]
        .as_str()
        .and_then(|n| n.parse().ok())
        .or_else(|| ticket["number"].as_u64())
        .unwrap_or(0)
}

/// Polls the ticket until it is ADMITTED (panics after `within`); its admission token.
async fn admitted(sys: &System, buyer: &str, ticket_id: &str, within: Duration) -> String {
    let deadline = Instant::now() + within;
    loop {
        let t = ticket(sys, buyer, ticket_id).await;
        if t["state"] == "ADMITTED" {
            let token = t["admissionToken"].as_str().unwrap_or_default().to_owned();
            assert!(!token.is_empty(), "admitted without a token: {t}");
            return token;
        }
        assert!(Instant::now() < deadline, "never admitted: {t}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn hold_with(
    sys: &System,
    buyer: &str,
    event_id: &str,
    seat: &str,
    admission: Option<&str>,
) -> marquee_e2e::Reply {
    let headers: Vec<(&str, &str)> = admission
        .map(|t| ("X-Admission-Token", t))
        .into_iter()
        .collect();
    sys.call(
        Method::POST,
        &format!("/v1/events/{event_id}/holds"),
        Some(buyer),
        Some(json!({ "seatIds": [seat] })),
        &headers,
    )
    .await
}

/// Number of pairs out of order between two sequences of the same items.
fn inversions(numbers: &[u64]) -> usize {
    let mut count = 0;
    for i in 0..numbers.len() {
        for j in i + 1..numbers.len() {
            if numbers[i] > numbers[j] {
                count += 1;
            }
        }
    }
    count
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_thousand_concurrent_joins_are_numbered_and_admitted_in_arrival_order() {
    let sys = System::start().await;
    let (seller, event_id) = sys.seller_event(&[("R", 10_000, 2, 10)], 4).await;
    // A cap and no pace: 500 admitted, then the line stops until someone checks out.
    configure(
        &sys,
        &seller,
        &event_id,
        json!({"maxShoppers": 500, "admissionSeconds": 600}),
    )
    .await;
    let buyers = quick_buyers(&sys, 2000).await;

    // All 2,000 in flight together, started 1 ms apart (so some are answered before
    // others are sent: those pairs have a known arrival order); each remembers when it
    // was sent and answered.
    let started = Instant::now();
    let joins = futures::future::join_all(buyers.iter().enumerate().map(|(i, (_, token))| {
        let sys = &sys;
        let event_id = &event_id;
        async move {
            tokio::time::sleep_until((started + Duration::from_millis(i as u64)).into()).await;
            let sent = started.elapsed();
            let t = join(sys, token, event_id).await;
            (sent, started.elapsed(), t)
        }
    }))
    .await;
    let mut numbers: Vec<u64> = joins.iter().map(|(_, _, t)| number(t)).collect();
    numbers.sort_unstable();
    assert_eq!(
        numbers,
        (1..=2000).collect::<Vec<_>>(),
        "numbers are 1..=2000, each once"
    );

    // Arrival order: a join answered before another was sent has the smaller number.
    let mut by_answer: Vec<(Duration, u64)> =
        joins.iter().map(|(_, a, t)| (*a, number(t))).collect();
    by_answer.sort_unstable();
    let mut prefix_max = Vec::with_capacity(by_answer.len());
    let mut max = 0;
    for (_, n) in &by_answer {
        max = max.max(*n);
        prefix_max.push(max);
    }
    let mut ordered_pairs = 0usize;
    for (sent, _, t) in &joins {
        let before = by_answer.partition_point(|(answered, _)| answered < sent);
        if before > 0 {
            ordered_pairs += before;
            assert!(
                prefix_max[before - 1] < number(t),
                "a later arrival got an earlier place: {t}"
            );
        }
    }
    assert!(
        ordered_pairs > 10_000,
        "the test saw only {ordered_pairs} ordered pairs; it proves too little"
    );

    // Joining again returns the same ticket.
    let again = join(&sys, &buyers[7].1, &event_id).await;
    assert_eq!(again["ticketId"], joins[7].2["ticketId"]);

    // The cap admits exactly tickets 1..=500, in line order.
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let status = sys
            .get(&format!("/v1/events/{event_id}/queue"), Some(&seller))
            .await;
        assert_eq!(status.status, 200, "{:?}", status.body);
        if int(&status.body["admitted"]) == 500 {
            assert_eq!(int(&status.body["joined"]), 2000);
            assert_eq!(int(&status.body["waiting"]), 1500);
            assert_eq!(int(&status.body["shopping"]), 500);
            break;
        }
        assert!(
            Instant::now() < deadline,
            "cap never reached: {:?}",
            status.body
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let states = futures::stream::iter(buyers.iter().zip(&joins))
        .map(|((_, token), (_, _, t))| {
            let sys = &sys;
            async move { ticket(sys, token, t["ticketId"].as_str().unwrap_or_default()).await }
        })
        .buffer_unordered(64)
        .collect::<Vec<_>>()
        .await;
    for t in &states {
        let n = number(t);
        if n <= 500 {
            assert_eq!(t["state"], "ADMITTED", "{t}");
            assert!(t["admissionToken"].as_str().is_some_and(|s| !s.is_empty()));
        } else {
            assert_eq!(t["state"], "WAITING", "{t}");
            assert_eq!(int(&t["position"]), (n - 501) as i64, "{t}");
            assert!(t.get("admissionToken").is_none_or(|v| v == ""), "{t}");
        }
    }

    // A checkout ends an admission, and the next in line (501) is admitted.
    let first = joins
        .iter()
        .position(|(_, _, t)| number(t) == 1)
        .expect("ticket 1");
    let (_, buyer) = &buyers[first];
    let token = admitted(
        &sys,
        buyer,
        joins[first].2["ticketId"].as_str().unwrap_or_default(),
        Duration::from_secs(1),
    )
    .await;
    let seat = sys.seat_ids(&event_id).await.remove(0);
    let hold = hold_with(&sys, buyer, &event_id, &seat, Some(&token)).await;
    assert_eq!(hold.status, 201, "{:?}", hold.body);
    let booked = sys
        .call(
            Method::POST,
            "/v1/bookings",
            Some(buyer),
            Some(json!({"holdId": hold.str("/holdId"), "paymentMethod": "WALLET"})),
            &[("Idempotency-Key", "wr-1"), ("X-Admission-Token", &token)],
        )
        .await;
    assert_eq!(booked.status, 202, "{:?}", booked.body);
    let next = joins
        .iter()
        .position(|(_, _, t)| number(t) == 501)
        .expect("ticket 501");
    admitted(
        &sys,
        &buyers[next].1,
        joins[next].2["ticketId"].as_str().unwrap_or_default(),
        Duration::from_secs(5),
    )
    .await;
    sys.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_crowd_before_the_opening_is_shuffled_then_first_come_first_served() {
    let sys = System::start().await;
    let (seller, event_id) = sys.seller_event(&[("R", 10_000, 1, 10)], 4).await;
    let buyers = quick_buyers(&sys, 201).await;
    let opens = chrono::Utc::now() + chrono::Duration::seconds(8);
    configure(
        &sys,
        &seller,
        &event_id,
        json!({"opensAt": opens.to_rfc3339_opts(chrono::SecondsFormat::Millis, true), "admitPerSecond": 1000}),
    )
    .await;
    // 200 join one after the other before the opening, in a known order.
    let mut tickets = Vec::new();
    for (_, token) in &buyers[..200] {
        let t = join(&sys, token, &event_id).await;
        assert_eq!(t["state"], "BEFORE_OPENING", "{t}");
        assert_eq!(number(&t), 0, "no place before the opening: {t}");
        tickets.push(t["ticketId"].as_str().unwrap_or_default().to_owned());
    }
    assert!(
        chrono::Utc::now() < opens,
        "the pre-opening joins took too long for this test"
    );
    tokio::time::sleep(
        (opens - chrono::Utc::now()).to_std().unwrap_or_default() + Duration::from_millis(300),
    )
    .await;
    let late = join(&sys, &buyers[200].1, &event_id).await;
    assert_eq!(
        number(&late),
        201,
        "after the opening, a newcomer is behind the whole crowd: {late}"
    );

    let mut numbers = Vec::new();
    for ((_, token), id) in buyers.iter().zip(&tickets) {
        numbers.push(number(&ticket(&sys, token, id).await));
    }
    let mut sorted = numbers.clone();
    sorted.sort_unstable();
    assert_eq!(sorted, (1..=200).collect::<Vec<_>>());
    // In join order, a shuffle leaves about half the pairs inverted; first come, first
    // served (or its reverse) would leave none (or all).
    let pairs = 200 * 199 / 2;
    let inverted = inversions(&numbers);
    assert!(
        (pairs * 3 / 10..=pairs * 7 / 10).contains(&inverted),
        "{inverted} of {pairs} pairs inverted: the pre-opening crowd was not shuffled"
    );
    sys.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn holds_and_checkouts_need_a_valid_admission_of_their_own() {
    let sys = System::start().await;
    let (seller, event_id) = sys.seller_event(&[("R", 10_000, 1, 10)], 4).await;
    let (_, other_event) = sys.seller_event(&[("R", 10_000, 1, 10)], 4).await;
    let (_, plain_event) = sys.seller_event(&[("R", 10_000, 1, 10)], 4).await;
    let event = configure(&sys, &seller, &event_id, json!({"admitPerSecond": 50})).await;
    assert_eq!(int(&event["waitingRoom"]["admitPerSecond"]), 50, "{event}");
    let shown = sys.get(&format!("/v1/events/{event_id}"), None).await;
    assert_eq!(
        int(&shown.body["waitingRoom"]["admitPerSecond"]),
        50,
        "{:?}",
        shown.body
    );
    let other_seller = sys
        .get(&format!("/v1/events/{other_event}"), None)
        .await
        .body["sellerId"]
        .clone();
    assert!(other_seller.is_string());
    let seats = sys.seat_ids(&event_id).await;
    let (buyer_id, buyer) = sys.account("BUYER").await;
    let (_, intruder) = sys.account("BUYER").await;

    // No token: refused, by name.
    let bare = hold_with(&sys, &buyer, &event_id, &seats[0], None).await;
    assert_eq!(bare.status, 403, "{:?}", bare.body);
    assert!(
        bare.str("/message").contains("admission token"),
        "{:?}",
        bare.body
    );

    // Nobody signed in: 401 first.
    let anonymous = sys
        .post(
            &format!("/v1/events/{event_id}/holds"),
            None,
            json!({ "seatIds": [seats[0]] }),
        )
        .await;
    assert_eq!(anonymous.status, 401, "{:?}", anonymous.body);

    let t = join(&sys, &buyer, &event_id).await;
    let ticket_id = t["ticketId"].as_str().unwrap_or_default().to_owned();
    let token = admitted(&sys, &buyer, &ticket_id, Duration::from_secs(5)).await;

    // Someone else's token, a tampered one, an expired one, one for another event.
    let stolen = hold_with(&sys, &intruder, &event_id, &seats[0], Some(&token)).await;
    assert_eq!(stolen.status, 403, "{:?}", stolen.body);
    assert!(
        stolen.str("/message").contains("another account"),
        "{:?}",
        stolen.body
    );
    let mut tampered = token.clone();
    let last = tampered.pop().unwrap_or('A');
    tampered.push(if last == 'A' { 'B' } else { 'A' });
    let forged = hold_with(&sys, &buyer, &event_id, &seats[0], Some(&tampered)).await;
    assert_eq!(forged.status, 403, "{:?}", forged.body);
    assert!(
        forged.str("/message").contains("not valid"),
        "{:?}",
        forged.body
    );
    let keys = TokenKeys::new(JWT_SECRET, chrono::Duration::minutes(5));
    let expired = keys
        .issue_admission(
            &buyer_id,
            &event_id,
            &ticket_id,
            chrono::Utc::now() - chrono::Duration::minutes(1),
        )
        .expect("token");
    let late = hold_with(&sys, &buyer, &event_id, &seats[0], Some(&expired)).await;
    assert_eq!(late.status, 403, "{:?}", late.body);
    assert!(late.str("/message").contains("expired"), "{:?}", late.body);
    let elsewhere = hold_with(
        &sys,
        &buyer,
        &other_event,
        &sys.seat_ids(&other_event).await[0],
        Some(&token),
    )
    .await;
    assert_eq!(elsewhere.status, 403, "{:?}", elsewhere.body);
    assert!(
        elsewhere.str("/message").contains("another event"),
        "{:?}",
        elsewhere.body
    );
    // None of those held anything.
    assert!(
        sys.seats(&event_id)
            .await
            .iter()
            .all(|s| s.1 == "AVAILABLE")
    );

    // booking-svc checks again, for callers that skip the gateway.
    let direct = direct_hold(&sys, &buyer, &event_id, &seats[0], None).await;
    assert_eq!(direct.code(), tonic::Code::PermissionDenied, "{direct:?}");
    let forged = keys
        .issue_admission(
            &buyer_id,
            &other_event,
            &ticket_id,
            chrono::Utc::now() + chrono::Duration::minutes(5),
        )
        .expect("token");
    let direct = direct_hold(&sys, &buyer, &event_id, &seats[0], Some(&forged)).await;
    assert_eq!(direct.code(), tonic::Code::PermissionDenied, "{direct:?}");

    // The right token holds and checks out; the checkout ends the admission.
    let hold = hold_with(&sys, &buyer, &event_id, &seats[0], Some(&token)).await;
    assert_eq!(hold.status, 201, "{:?}", hold.body);
    let no_token = sys.checkout(&buyer, &hold.str("/holdId"), "wr-k").await;
    assert_eq!(no_token.status, 403, "{:?}", no_token.body);
    let booked = sys
        .call(
            Method::POST,
            "/v1/bookings",
            Some(&buyer),
            Some(json!({"holdId": hold.str("/holdId"), "paymentMethod": "WALLET"})),
            &[("Idempotency-Key", "wr-k"), ("X-Admission-Token", &token)],
        )
        .await;
    assert_eq!(booked.status, 202, "{:?}", booked.body);
    // A retry of that checkout still gets its booking, token or not.
    let retry = sys.checkout(&buyer, &hold.str("/holdId"), "wr-k").await;
    assert_eq!(retry.status, 202, "{:?}", retry.body);
    assert_eq!(retry.str("/bookingId"), booked.str("/bookingId"));
    let used = ticket(&sys, &buyer, &ticket_id).await;
    assert_eq!(used["state"], "USED", "{used}");
    let again = hold_with(&sys, &buyer, &event_id, &seats[1], Some(&token)).await;
    assert_eq!(again.status, 403, "{:?}", again.body);
    assert!(
        again.str("/message").contains("ended with a checkout"),
        "{:?}",
        again.body
    );
    // Joining again after the admission ended gives a new ticket at the back.
    let rejoined = join(&sys, &buyer, &event_id).await;
    assert_ne!(rejoined["ticketId"], ticket_id.as_str(), "{rejoined}");
    assert!(number(&rejoined) > number(&used), "{rejoined} after {used}");
    let token = admitted(
        &sys,
        &buyer,
        rejoined["ticketId"].as_str().unwrap_or_default(),
        Duration::from_secs(5),
    )
    .await;
    let second = hold_with(&sys, &buyer, &event_id, &seats[1], Some(&token)).await;
    assert_eq!(second.status, 201, "{:?}", second.body);

    // An event without a waiting room works as before, with no token.
    let plain = hold_with(
        &sys,
        &buyer,
        &plain_event,
        &sys.seat_ids(&plain_event).await[0],
        None,
    )
    .await;
    assert_eq!(plain.status, 201, "{:?}", plain.body);
    sys.stop().await;
}

/// `CreateHold` straight to booking-svc over gRPC, past the gateway: its error.
async fn direct_hold(
    sys: &System,
    buyer: &str,
    event_id: &str,
    seat: &str,
    admission: Option<&str>,
) -> tonic::Status {
    use marquee_proto::booking::CreateHoldRequest;
    use marquee_proto::booking::booking_service_client::BookingServiceClient;
    let mut client =
        BookingServiceClient::connect(format!("http://127.0.0.1:{}", sys.booking_port))
            .await
            .expect("booking-svc reachable");
    let mut request = tonic::Request::new(CreateHoldRequest {
        event_id: event_id.to_owned(),
        seat_ids: vec![seat.to_owned()],
        ..Default::default()
    });
    request.metadata_mut().insert(
        "authorization",
        format!("Bearer {buyer}").parse().expect("ascii"),
    );
    if let Some(token) = admission {
        request
            .metadata_mut()
            .insert("x-admission-token", token.parse().expect("ascii"));
    }
    match client.create_hold(request).await {
        Ok(hold) => panic!("held without a valid admission: {hold:?}"),
        Err(status) => status,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sellers_see_their_queue_and_bad_input_is_a_clear_4xx() {
    let sys = System::start().await;
    let (seller, event_id) = sys.seller_event(&[("R", 10_000, 1, 10)], 4).await;
    let (_, plain_event) = sys.seller_event(&[("R", 10_000, 1, 10)], 4).await;
    let (_, buyer) = sys.account("BUYER").await;

    for (settings, field) in [
        (json!({"admitPerSecond": -1}), "admitPerSecond"),
        (
            json!({"admitPerSecond": 0, "maxShoppers": 0}),
            "admitPerSecond",
        ),
        (
            json!({"admitPerSecond": 5, "admissionSeconds": 5}),
            "admissionSeconds",
        ),
        // Not a number at all: the gateway's transcoding refuses it (its message names
        // the problem, not the field).
        (json!({"admitPerSecond": "many"}), "invalid"),
    ] {
        let reply = sys
            .call(
                Method::PUT,
                &format!("/v1/events/{event_id}/waiting-room"),
                Some(&seller),
                Some(json!({"waitingRoom": settings})),
                &[],
            )
            .await;
        assert_eq!(reply.status, 400, "{settings}: {:?}", reply.body);
        assert!(
            reply.body.to_string().contains(field),
            "{settings}: {:?}",
            reply.body
        );
    }
    // Only the event's seller may turn it on.
    let denied = sys
        .call(
            Method::PUT,
            &format!("/v1/events/{event_id}/waiting-room"),
            Some(&buyer),
            Some(json!({"waitingRoom": {"admitPerSecond": 5}})),
            &[],
        )
        .await;
    assert_eq!(denied.status, 403, "{:?}", denied.body);
    // Nothing was turned on by those.
    let event = sys.get(&format!("/v1/events/{event_id}"), None).await;
    assert!(event.body["waitingRoom"].is_null(), "{:?}", event.body);

    // No waiting room: nothing to join.
    let none = sys
        .post(
            &format!("/v1/events/{plain_event}/queue"),
            Some(&buyer),
            json!({}),
        )
        .await;
    assert_eq!(none.status, 404, "{:?}", none.body);
    let unknown = sys
        .post(
            &format!("/v1/events/{}/queue", Uuid::new_v4()),
            Some(&buyer),
            json!({}),
        )
        .await;
    assert_eq!(unknown.status, 404, "{:?}", unknown.body);
    for bad in ["nope", "0123"] {
        let reply = sys.get(&format!("/v1/queue/{bad}"), Some(&buyer)).await;
        assert_eq!(reply.status, 400, "{:?}", reply.body);
    }

    configure(
        &sys,
        &seller,
        &event_id,
        json!({"admitPerSecond": 2, "admissionSeconds": 60}),
    )
    .await;
    let t = join(&sys, &buyer, &event_id).await;
    // Another account's ticket is not found.
    let (_, stranger) = sys.account("BUYER").await;
    let hidden = sys
        .get(
            &format!("/v1/queue/{}", t["ticketId"].as_str().unwrap_or_default()),
            Some(&stranger),
        )
        .await;
    assert_eq!(hidden.status, 404, "{:?}", hidden.body);
    let status = sys
        .get(&format!("/v1/events/{event_id}/queue"), Some(&seller))
        .await;
    assert_eq!(status.status, 200, "{:?}", status.body);
    assert_eq!(int(&status.body["joined"]), 1, "{:?}", status.body);
    assert_eq!(status.body["opened"], true);
    assert!(
        (status.body["admitRate"].as_f64().unwrap_or(0.0) - 2.0).abs() < 1e-9,
        "{:?}",
        status.body
    );
    let buyer_view = sys
        .get(&format!("/v1/events/{event_id}/queue"), Some(&buyer))
        .await;
    assert_eq!(buyer_view.status, 403, "{:?}", buyer_view.body);

    // Turning it off: holds need no token again.
    let off = sys
        .call(
            Method::PUT,
            &format!("/v1/events/{event_id}/waiting-room"),
            Some(&seller),
            Some(json!({})),
            &[],
        )
        .await;
    assert_eq!(off.status, 200, "{:?}", off.body);
    assert!(off.body["waitingRoom"].is_null(), "{:?}", off.body);
    let hold = hold_with(
        &sys,
        &buyer,
        &event_id,
        &sys.seat_ids(&event_id).await[0],
        None,
    )
    .await;
    assert_eq!(hold.status, 201, "{:?}", hold.body);
    sys.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ticket_streams_its_place_until_admitted_then_its_token() {
    let sys = System::start().await;
    let (seller, event_id) = sys.seller_event(&[("R", 10_000, 1, 10)], 4).await;
    configure(
        &sys,
        &seller,
        &event_id,
        json!({"admitPerSecond": 2, "admissionSeconds": 60}),
    )
    .await;
    let buyers = quick_buyers(&sys, 6).await;
    let mut last = Value::Null;
    for (_, token) in &buyers {
        last = join(&sys, token, &event_id).await;
    }
    let watcher = &buyers[5].1;
    let ticket_id = last["ticketId"].as_str().unwrap_or_default().to_owned();
    let mut stream = sys
        .sse(&format!("/v1/queue/{ticket_id}:watch"), Some(watcher), None)
        .await
        .unwrap_or_else(|reply| panic!("watch refused: {reply:?}"));
    let mut positions = Vec::new();
    let admitted = loop {
        let event = stream
            .next_within(Duration::from_secs(10))
            .await
            .expect("an update within 10 s");
        let t = &event.data["ticket"];
        assert_eq!(t["ticketId"], ticket_id.as_str(), "{t}");
        match t["state"].as_str() {
            Some("WAITING") => positions.push(int(&t["position"])),
            Some("ADMITTED") => break t.clone(),
            other => panic!("unexpected state {other:?}: {t}"),
        }
    };
    // At 2 a second, six tickets take about three seconds: the watcher saw its place
    // go down on the way, never up (an update may repeat a place with a new ETA).
    assert!(positions.len() >= 2, "too few updates: {positions:?}");
    assert!(
        positions.windows(2).all(|w| w[0] >= w[1]) && positions[0] > positions[positions.len() - 1],
        "positions did not go down: {positions:?}"
    );
    let token = admitted["admissionToken"].as_str().unwrap_or_default();
    assert!(!token.is_empty(), "{admitted}");
    assert!(
        stream.next_within(Duration::from_secs(2)).await.is_none(),
        "the stream goes on after admission"
    );
    let seat = sys.seat_ids(&event_id).await.remove(0);
    let hold = hold_with(&sys, watcher, &event_id, &seat, Some(token)).await;
    assert_eq!(hold.status, 201, "{:?}", hold.body);
    // Someone else's ticket cannot be watched.
    let refused = sys
        .sse_refused(
            &format!("/v1/queue/{ticket_id}:watch"),
            Some(&buyers[0].1),
            None,
        )
        .await;
    assert_eq!(refused.status, 404, "{:?}", refused.body);
    sys.stop().await;
}

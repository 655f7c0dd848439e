//! Live seat auctions end to end (issue 14): a seller auctions seats, a crowd bids
//! through the REST gateway (at most three submissions each, bursts of identical
//! amounts), the ranking is consistent and streamed live, the close awards the seats
//! to the top bids in order, and a seat passes down the ranking when its winner
//! cancels, declines or lets the payment window pass. Every winner pays their own bid
//! through the saga.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use futures::StreamExt as _;
use marquee_e2e::{Reply, System, WELCOME_CREDIT_MINOR, auction_pseudonym, int};
use reqwest::Method;
use serde_json::{Value, json};
use uuid::Uuid;

fn krw(amount: i64) -> Value {
    json!({"amountMinor": amount.to_string(), "currency": "KRW"})
}

/// The pseudonym the API shows for `bidder` in `auction`.
fn pseudonym(auction: &str, bidder: &str) -> String {
    auction_pseudonym(
        Uuid::parse_str(auction).expect("auction id"),
        Uuid::parse_str(bidder).expect("bidder id"),
    )
}

/// Puts the first `seats` seats of the event up for auction, closing in an hour (the
/// tests move the close to now by hand, like a clock passing).
async fn create(sys: &System, seller: &str, event_id: &str, seats: &[String]) -> Value {
    let reply = sys
        .post(
            &format!("/v1/events/{event_id}/auctions"),
            Some(seller),
            json!({
                "seatIds": seats,
                "openingPrice": krw(10_000),
                "minIncrement": krw(1_000),
                "closesAt": (chrono::Utc::now() + chrono::Duration::hours(1)).to_rfc3339(),
                "paymentWindowSeconds": 60,
            }),
        )
        .await;
    assert_eq!(reply.status, 201, "create auction: {:?}", reply.body);
    reply.body["auction"].clone()
}

async fn bid(sys: &System, token: &str, auction: &str, amount: i64) -> Reply {
    sys.post(
        &format!("/v1/auctions/{auction}/bids"),
        Some(token),
        json!({ "amount": krw(amount) }),
    )
    .await
}

async fn auction(sys: &System, token: Option<&str>, id: &str) -> Value {
    let reply = sys.get(&format!("/v1/auctions/{id}"), token).await;
    assert_eq!(reply.status, 200, "get auction: {:?}", reply.body);
    reply.body["auction"].clone()
}

/// Moves the auction's close to now (the ticker closes it within a tick) and waits for
/// the close.
async fn close_now(sys: &System, id: &str) -> Value {
    sqlx::query("UPDATE auctions SET closes_at = now() WHERE id = $1")
        .bind(Uuid::parse_str(id).expect("auction id"))
        .execute(&sys.booking_pool)
        .await
        .expect("move the close");
    until(sys, id, Duration::from_secs(10), |a| {
        a["state"] == "AUCTION_STATE_CLOSED"
    })
    .await
}

/// Ends the award's payment window now (as if its time had passed).
async fn end_window(sys: &System, id: &str, bidder: &str) {
    sqlx::query(
        "UPDATE auction_awards SET pay_by = now() WHERE auction_id = $1 AND bidder_id = $2",
    )
    .bind(Uuid::parse_str(id).expect("auction id"))
    .bind(Uuid::parse_str(bidder).expect("bidder id"))
    .execute(&sys.booking_pool)
    .await
    .expect("end the window");
}

/// Polls the auction (as anyone) until `done` holds; panics after `within`.
async fn until(sys: &System, id: &str, within: Duration, done: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + within;
    loop {
        let a = auction(sys, None, id).await;
        if done(&a) {
            return a;
        }
        assert!(Instant::now() < deadline, "auction never got there: {a}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn award_of<'a>(a: &'a Value, seat: &str) -> &'a Value {
    a["awards"]
        .as_array()
        .and_then(|awards| awards.iter().find(|w| w["seatId"] == seat))
        .unwrap_or_else(|| panic!("no award for seat {seat}: {a}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn five_hundred_bidders_twenty_seats_and_the_cascade() {
    let sys = System::start().await;
    let (seller, event_id) = sys.seller_event(&[("Floor", 10_000, 5, 10)], 4).await;
    let seats = sys.seat_ids(&event_id).await;
    let auctioned: Vec<String> = seats[..20].to_vec();
    let created = create(&sys, &seller, &event_id, &auctioned).await;
    let id = created["auctionId"]
        .as_str()
        .expect("auction id")
        .to_owned();
    assert_eq!(created["state"], "AUCTION_STATE_OPEN");
    assert_eq!(created["seats"].as_array().map(Vec::len), Some(20));

    // The auctioned seats are off the regular sale: shown sold, not holdable.
    let (_, buyer) = sys.account("BUYER").await;
    let held = sys.hold(&buyer, &event_id, &auctioned[..1]).await;
    assert_eq!(
        held.status, 409,
        "an auctioned seat was held: {:?}",
        held.body
    );
    let listed = sys.get(&format!("/v1/events/{event_id}/seats"), None).await;
    let sold: HashSet<String> = listed.body["seats"]
        .as_array()
        .expect("seats")
        .iter()
        .filter(|s| s["status"] == "SOLD")
        .map(|s| s["seatId"].as_str().unwrap_or_default().to_owned())
        .collect();
    assert!(
        auctioned.iter().all(|s| sold.contains(s)),
        "auctioned seats not shown sold"
    );

    // A live watcher from the start.
    let mut stream = sys
        .sse(&format!("/v1/auctions/{id}:watch"), None, None)
        .await
        .expect("watch the auction");

    // Three buyers with wallets bid highest; 500 more bid in bursts of equal amounts.
    let mut rich = Vec::new();
    let mut rich_ids = Vec::new();
    for _ in 0..3 {
        let (account, token) = sys.account("BUYER").await;
        rich_ids.push(account);
        rich.push(token);
    }
    let crowd = sys.bulk_buyers(500, "auction").await;
    for round in 0..3i64 {
        let replies: Vec<u16> = futures::stream::iter(crowd.iter().enumerate())
            .map(|(i, token)| {
                let amount = 10_000 + round * 2_000 + (i as i64 % 5) * 1_000;
                let (sys, id) = (&sys, &id);
                async move { bid(sys, token, id, amount).await.status }
            })
            .buffer_unordered(64)
            .collect()
            .await;
        assert!(
            replies.iter().all(|s| *s == 201),
            "round {round}: refused bids: {:?}",
            replies.iter().filter(|s| **s != 201).count()
        );
    }
    // A fourth submission is refused for everyone, concurrently.
    let fourth: Vec<(u16, Value)> = futures::stream::iter(crowd.iter().take(100))
        .map(|token| {
            let (sys, id) = (&sys, &id);
            async move {
                let r = bid(sys, token, id, 30_000).await;
                (r.status, r.body)
            }
        })
        .buffer_unordered(64)
        .collect()
        .await;
    for (status, body) in &fourth {
        assert_eq!(*status, 409, "a fourth bid: {body}");
        assert!(
            body["message"]
                .as_str()
                .unwrap_or_default()
                .contains("at most 3"),
            "{body}"
        );
    }
    for (i, token) in rich.iter().enumerate() {
        let r = bid(&sys, token, &id, 50_000 - i as i64 * 1_000).await;
        assert_eq!(r.status, 201, "rich bid: {:?}", r.body);
        assert_eq!(int(&r.body["bid"]["rank"]), i as i64 + 1, "{:?}", r.body);
    }

    // The ranking: every bidder at most 3 submissions, the order (amount, then the
    // earlier bid) the same as the stored bids', and the same as GET shows.
    let auction_id = Uuid::parse_str(&id).expect("uuid");
    let rows: Vec<(Uuid, i64, i64, i16)> = sqlx::query_as(
        "SELECT bidder_id, amount_minor, seq, submissions FROM auction_bids
         WHERE auction_id = $1 ORDER BY amount_minor DESC, seq",
    )
    .bind(auction_id)
    .fetch_all(&sys.booking_pool)
    .await
    .expect("bids");
    assert_eq!(rows.len(), 503);
    assert!(rows.iter().all(|r| r.3 <= 3), "a bidder over 3 submissions");
    assert_eq!(rows.iter().filter(|r| r.3 == 3).count(), 500);
    let shown = auction(&sys, None, &id).await;
    assert_eq!(int(&shown["bidders"]), 503);
    let ranking = shown["ranking"].as_array().expect("ranking");
    assert_eq!(ranking.len(), 40);
    for (i, (entry, row)) in ranking.iter().zip(&rows).enumerate() {
        assert_eq!(int(&entry["rank"]), i as i64 + 1);
        assert_eq!(
            entry["bidder"],
            pseudonym(&id, &row.0.to_string()),
            "rank {}",
            i + 1
        );
        assert_eq!(int(&entry["amount"]["amountMinor"]), row.1);
    }
    // Bursts of equal amounts: among equals the earlier bid ranks first.
    for pair in ranking.windows(2) {
        let (a, b) = (
            int(&pair[0]["amount"]["amountMinor"]),
            int(&pair[1]["amount"]["amountMinor"]),
        );
        assert!(a >= b, "ranking out of order: {a} before {b}");
        if a == b {
            assert!(
                pair[0]["bidAt"].as_str() <= pair[1]["bidAt"].as_str(),
                "a later bid ranked first among equals: {pair:?}"
            );
        }
    }
    assert_eq!(int(&shown["cutoff"]["amountMinor"]), rows[19].1);

    // The live stream: its updates come in version order and the last one it got
    // matches the final ranking.
    let mut last = Value::Null;
    let mut versions = Vec::new();
    while let Some(event) = stream.next_within(Duration::from_millis(1500)).await {
        versions.push(event.version());
        last = event.data;
    }
    assert!(
        versions.windows(2).all(|w| w[0] < w[1]),
        "versions out of order"
    );
    assert_eq!(
        int(&last["version"]),
        int(&shown["version"]),
        "stream behind GET"
    );
    assert_eq!(last["auction"]["ranking"], shown["ranking"]);

    // The close: the top 20 bids get the 20 seats in order.
    let closed = close_now(&sys, &id).await;
    let bid_after = bid(&sys, &rich[0], &id, 90_000).await;
    assert_eq!(
        bid_after.status, 400,
        "a bid after the close: {:?}",
        bid_after.body
    );
    let awards = closed["awards"].as_array().expect("awards");
    assert_eq!(awards.len(), 20);
    for (i, award) in awards.iter().enumerate() {
        assert_eq!(award["seatId"], auctioned[i]);
        assert_eq!(int(&award["rank"]), i as i64 + 1);
        assert_eq!(award["bidder"], pseudonym(&id, &rows[i].0.to_string()));
        assert_eq!(award["state"], "AWARD_STATE_AWAITING_PAYMENT");
    }
    let winners: HashSet<Uuid> = rows[..20].iter().map(|r| r.0).collect();
    assert_eq!(winners.len(), 20, "a bidder won two seats");

    // Winner 1 pays its own bid through the saga, then cancels: refunded, and the seat
    // passes to the best bid without an award (rank 21).
    let start = sys.balance(&rich[0]).await;
    assert_eq!(start, WELCOME_CREDIT_MINOR);
    let paid = sys
        .call(
            Method::POST,
            &format!("/v1/auctions/{id}/award:pay"),
            Some(&rich[0]),
            Some(json!({"paymentMethod": "WALLET"})),
            &[("Idempotency-Key", "win-1")],
        )
        .await;
    assert_eq!(paid.status, 202, "pay: {:?}", paid.body);
    let booking_id = paid.str("/booking/bookingId");
    assert_eq!(int(&paid.body["booking"]["total"]["amountMinor"]), 50_000);
    let again = sys
        .call(
            Method::POST,
            &format!("/v1/auctions/{id}/award:pay"),
            Some(&rich[0]),
            Some(json!({"paymentMethod": "WALLET"})),
            &[("Idempotency-Key", "win-1")],
        )
        .await;
    assert_eq!(
        again.str("/booking/bookingId"),
        booking_id,
        "a retried payment made another booking"
    );
    sys.await_booking(&rich[0], &booking_id, "CONFIRMED").await;
    assert_eq!(sys.balance(&rich[0]).await, start - 50_000);
    let a = until(&sys, &id, Duration::from_secs(10), |a| {
        award_of(a, &auctioned[0])["state"] == "AWARD_STATE_PAID"
    })
    .await;
    assert_eq!(int(&award_of(&a, &auctioned[0])["rank"]), 1);
    let cancel = sys
        .post(
            &format!("/v1/bookings/{booking_id}:cancel"),
            Some(&rich[0]),
            json!({}),
        )
        .await;
    assert_eq!(cancel.status, 202, "cancel: {:?}", cancel.body);
    sys.await_booking(&rich[0], &booking_id, "CANCELLED").await;
    assert_eq!(
        sys.balance(&rich[0]).await,
        start,
        "the refund did not come back"
    );
    let a = until(&sys, &id, Duration::from_secs(10), |a| {
        int(&award_of(a, &auctioned[0])["rank"]) == 21
    })
    .await;
    let passed = award_of(&a, &auctioned[0]);
    assert_eq!(passed["bidder"], pseudonym(&id, &rows[20].0.to_string()));
    assert_eq!(passed["state"], "AWARD_STATE_AWAITING_PAYMENT");
    let mine = auction(&sys, Some(&rich[0]), &id).await;
    assert_eq!(mine["myAward"]["state"], "AWARD_STATE_CANCELLED");

    // Winner 2 declines: the seat passes to rank 22.
    let declined = sys
        .post(
            &format!("/v1/auctions/{id}/award:decline"),
            Some(&rich[1]),
            json!({}),
        )
        .await;
    assert_eq!(declined.status, 200, "decline: {:?}", declined.body);
    assert_eq!(
        declined.body["auction"]["myAward"]["state"],
        "AWARD_STATE_DECLINED"
    );
    let a = until(&sys, &id, Duration::from_secs(10), |a| {
        int(&award_of(a, &auctioned[1])["rank"]) == 22
    })
    .await;
    assert_eq!(
        award_of(&a, &auctioned[1])["bidder"],
        pseudonym(&id, &rows[21].0.to_string())
    );

    // Winner 3 lets the window pass: the seat passes to rank 23, and paying is refused.
    end_window(&sys, &id, &rich_ids[2]).await;
    let a = until(&sys, &id, Duration::from_secs(10), |a| {
        int(&award_of(a, &auctioned[2])["rank"]) == 23
    })
    .await;
    assert_eq!(
        award_of(&a, &auctioned[2])["bidder"],
        pseudonym(&id, &rows[22].0.to_string())
    );
    let late = sys
        .call(
            Method::POST,
            &format!("/v1/auctions/{id}/award:pay"),
            Some(&rich[2]),
            Some(json!({"paymentMethod": "WALLET"})),
            &[("Idempotency-Key", "late")],
        )
        .await;
    assert_eq!(late.status, 400, "a lapsed award was paid: {:?}", late.body);
    assert_eq!(sys.balance(&rich[2]).await, WELCOME_CREDIT_MINOR);

    // Nobody ever holds two awards, and each seat has at most one live award.
    let awards: Vec<(Uuid, Uuid, String)> = sqlx::query_as(
        "SELECT bidder_id, seat_id, state FROM auction_awards WHERE auction_id = $1",
    )
    .bind(auction_id)
    .fetch_all(&sys.booking_pool)
    .await
    .expect("awards");
    let mut live: HashMap<Uuid, usize> = HashMap::new();
    for (_, seat, state) in &awards {
        if state == "AWAITING_PAYMENT" || state == "PAID" {
            *live.entry(*seat).or_default() += 1;
        }
    }
    assert!(
        live.values().all(|n| *n == 1),
        "a seat with two live awards"
    );
    assert_eq!(live.len(), 20);
    sys.stop().await;
}

/// A bad request: method, path, token, body (Null for none), the status expected, and
/// the field its error must name ("" for none).
type Case<'a> = (Method, String, Option<&'a str>, Value, u16, &'a str);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unbid_seats_go_back_on_sale_and_bad_input_changes_nothing() {
    let sys = System::start().await;
    let (seller, event_id) = sys.seller_event(&[("Floor", 10_000, 1, 6)], 4).await;
    let seats = sys.seat_ids(&event_id).await;
    let (_, buyer) = sys.account("BUYER").await;
    let id = create(&sys, &seller, &event_id, &seats[..3]).await["auctionId"]
        .as_str()
        .expect("id")
        .to_owned();

    let cases: Vec<Case> = vec![
        // Creating.
        (
            Method::POST,
            format!("/v1/events/{event_id}/auctions"),
            Some(&buyer),
            json!({"seatIds": [seats[4]], "openingPrice": krw(1), "minIncrement": krw(1), "closesAt": "2999-01-01T00:00:00Z"}),
            403,
            "",
        ),
        (
            Method::POST,
            format!("/v1/events/{event_id}/auctions"),
            Some(&seller),
            json!({"seatIds": [], "openingPrice": krw(1), "minIncrement": krw(1), "closesAt": (chrono::Utc::now() + chrono::Duration::hours(1)).to_rfc3339()}),
            400,
            "seatIds",
        ),
        (
            Method::POST,
            format!("/v1/events/{event_id}/auctions"),
            Some(&seller),
            json!({"seatIds": [seats[4], seats[4]], "openingPrice": krw(1), "minIncrement": krw(1), "closesAt": (chrono::Utc::now() + chrono::Duration::hours(1)).to_rfc3339()}),
            400,
            "seatIds",
        ),
        (
            Method::POST,
            format!("/v1/events/{event_id}/auctions"),
            Some(&seller),
            json!({"seatIds": [seats[4]], "openingPrice": krw(0), "minIncrement": krw(1), "closesAt": (chrono::Utc::now() + chrono::Duration::hours(1)).to_rfc3339()}),
            400,
            "openingPrice",
        ),
        (
            Method::POST,
            format!("/v1/events/{event_id}/auctions"),
            Some(&seller),
            json!({"seatIds": [seats[4]], "openingPrice": krw(5), "minIncrement": krw(1), "closesAt": "2001-01-01T00:00:00Z"}),
            400,
            "closesAt",
        ),
        (
            Method::POST,
            format!("/v1/events/{event_id}/auctions"),
            Some(&seller),
            json!({"seatIds": [seats[4]], "openingPrice": krw(5), "minIncrement": krw(1), "closesAt": (chrono::Utc::now() + chrono::Duration::hours(1)).to_rfc3339(), "paymentWindowSeconds": 5}),
            400,
            "paymentWindowSeconds",
        ),
        (
            Method::POST,
            format!("/v1/events/{event_id}/auctions"),
            Some(&seller),
            json!({"seatIds": [Uuid::new_v4()], "openingPrice": krw(5), "minIncrement": krw(1), "closesAt": (chrono::Utc::now() + chrono::Duration::hours(1)).to_rfc3339()}),
            400,
            "seatIds",
        ),
        (
            Method::POST,
            format!("/v1/events/{event_id}/auctions"),
            Some(&seller),
            json!({"seatIds": [seats[0]], "openingPrice": krw(5), "minIncrement": krw(1), "closesAt": (chrono::Utc::now() + chrono::Duration::hours(1)).to_rfc3339()}),
            409,
            "",
        ),
        (
            Method::POST,
            format!("/v1/events/{event_id}/auctions"),
            Some(&seller),
            json!({"seatIds": [seats[4]], "openingPrice": {"amountMinor": "5", "currency": "USD"}, "minIncrement": {"amountMinor": "1", "currency": "USD"}, "closesAt": (chrono::Utc::now() + chrono::Duration::hours(1)).to_rfc3339()}),
            400,
            "openingPrice",
        ),
        (
            Method::POST,
            "/v1/events/not-a-uuid/auctions".into(),
            Some(&seller),
            json!({}),
            400,
            "eventId",
        ),
        // Bidding.
        (
            Method::POST,
            format!("/v1/auctions/{id}/bids"),
            None,
            json!({"amount": krw(20_000)}),
            401,
            "",
        ),
        (
            Method::POST,
            format!("/v1/auctions/{id}/bids"),
            Some(&buyer),
            json!({"amount": krw(9_999)}),
            400,
            "amount",
        ),
        (
            Method::POST,
            format!("/v1/auctions/{id}/bids"),
            Some(&buyer),
            json!({"amount": krw(-5)}),
            400,
            "amount",
        ),
        (
            Method::POST,
            format!("/v1/auctions/{id}/bids"),
            Some(&buyer),
            json!({}),
            400,
            "amount",
        ),
        (
            Method::POST,
            format!("/v1/auctions/{id}/bids"),
            Some(&buyer),
            json!({"amount": {"amountMinor": "20000", "currency": "USD"}}),
            400,
            "amount",
        ),
        (
            Method::POST,
            format!("/v1/auctions/{id}/bids"),
            Some(&seller),
            json!({"amount": krw(20_000)}),
            403,
            "",
        ),
        (
            Method::POST,
            format!("/v1/auctions/{}/bids", Uuid::new_v4()),
            Some(&buyer),
            json!({"amount": krw(20_000)}),
            404,
            "",
        ),
        (
            Method::POST,
            "/v1/auctions/zzz/bids".into(),
            Some(&buyer),
            json!({"amount": krw(20_000)}),
            400,
            "auctionId",
        ),
        // Awards before the close.
        (
            Method::POST,
            format!("/v1/auctions/{id}/award:pay"),
            Some(&buyer),
            json!({"paymentMethod": "WALLET"}),
            400,
            "idempotencyKey",
        ),
        (
            Method::POST,
            format!("/v1/auctions/{id}/award:decline"),
            Some(&buyer),
            json!({}),
            404,
            "",
        ),
        (
            Method::GET,
            format!("/v1/auctions/{}", Uuid::new_v4()),
            None,
            Value::Null,
            404,
            "",
        ),
        (
            Method::GET,
            "/v1/auctions/nope".into(),
            None,
            Value::Null,
            400,
            "auctionId",
        ),
    ];
    for (method, path, token, body, status, field) in cases {
        let body = (!body.is_null()).then_some(body);
        let reply = sys
            .call(method.clone(), &path, token, body.clone(), &[])
            .await;
        assert_eq!(
            reply.status, status,
            "{method} {path} {body:?}: {:?}",
            reply.body
        );
        assert!(
            reply.body["message"].is_string(),
            "no JSON error body: {:?}",
            reply.body
        );
        if !field.is_empty() {
            assert!(
                reply.body.to_string().contains(field),
                "{method} {path}: the error does not name {field}: {:?}",
                reply.body
            );
        }
    }
    // Nothing changed: one auction, no bids.
    let listed = sys
        .get(&format!("/v1/events/{event_id}/auctions"), None)
        .await;
    assert_eq!(listed.status, 200);
    assert_eq!(listed.body["auctions"].as_array().map(Vec::len), Some(1));
    let a = auction(&sys, Some(&buyer), &id).await;
    assert_eq!(int(&a["bidders"]), 0);
    assert_eq!(a["mySubmissionsLeft"], 3);
    // Seats outside the auction still sell.
    let held = sys.hold(&buyer, &event_id, &seats[4..5]).await;
    assert_eq!(held.status, 201, "{:?}", held.body);

    // One bid for three seats: at the close the two seats without a bid go back on sale.
    let r = bid(&sys, &buyer, &id, 12_000).await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    let raise = bid(&sys, &buyer, &id, 12_500).await;
    assert_eq!(
        raise.status, 400,
        "a raise below the increment: {:?}",
        raise.body
    );
    let closed = close_now(&sys, &id).await;
    assert_eq!(closed["awards"].as_array().map(Vec::len), Some(1));
    let (_, other) = sys.account("BUYER").await;
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let held = sys.hold(&other, &event_id, &seats[1..3]).await;
        if held.status == 201 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "released seats never on sale: {:?}",
            held.body
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // The awarded seat is not.
    let held = sys.hold(&other, &event_id, &seats[..1]).await;
    assert_eq!(held.status, 409, "{:?}", held.body);
    sys.stop().await;
}

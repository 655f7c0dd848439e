//! Ticket transfer at face value (issue 14) through the REST gateway, on real
//! PostgreSQL, Redis and RabbitMQ: offers, the accept paid through the payment saga,
//! the payout to the previous owner, races with cancels and other recipients, and what
//! every party sees (bookings, wallets, the seat map, the chain of owners).

use std::time::Duration;

use std::collections::HashSet;

use marquee_e2e::checks::{Money, Oversell};
use marquee_e2e::{Reply, System};
use reqwest::Method;
use serde_json::{Value, json};

/// The R section's price: a seat of it costs this much.
const R: i64 = 30_000;
const WELCOME: i64 = 100_000;

/// An event with two sections (R: 2 rows of 4 at 30,000; V: 1 row of 4 at 40,000) and
/// 4 seats per buyer: (seller token, event id).
async fn event(sys: &System) -> (String, String) {
    sys.seller_event(&[("R", R, 2, 4), ("V", 40_000, 1, 4)], 4)
        .await
}

/// Seats of the event at `price`, in layout order.
async fn seats_at(sys: &System, event: &str, price: i64) -> Vec<String> {
    sys.seats(event)
        .await
        .into_iter()
        .filter(|s| s.2 == price)
        .map(|s| s.0)
        .collect()
}

/// Holds and buys `seats` with the wallet; waits until CONFIRMED; the booking id.
async fn buy(sys: &System, token: &str, event: &str, seats: &[String]) -> String {
    let hold = sys.hold(token, event, seats).await;
    assert_eq!(hold.status, 201, "hold: {:?}", hold.body);
    let key = uuid::Uuid::new_v4().to_string();
    let booking = sys.checkout(token, &hold.str("/holdId"), &key).await;
    assert_eq!(booking.status, 202, "checkout: {:?}", booking.body);
    let id = booking.str("/bookingId");
    sys.await_booking(token, &id, "CONFIRMED").await;
    id
}

async fn offer(
    sys: &System,
    owner: &str,
    booking: &str,
    price: i64,
    recipient: Option<&str>,
) -> Reply {
    let mut body = json!({"price": {"amountMinor": price.to_string(), "currency": "KRW"}});
    if let Some(email) = recipient {
        body["recipientEmail"] = json!(email);
    }
    sys.post(
        &format!("/v1/bookings/{booking}/transfer-offers"),
        Some(owner),
        body,
    )
    .await
}

/// Offers and expects 201; the offer id.
async fn offered(
    sys: &System,
    owner: &str,
    booking: &str,
    price: i64,
    recipient: Option<&str>,
) -> String {
    let reply = offer(sys, owner, booking, price, recipient).await;
    assert_eq!(reply.status, 201, "offer: {:?}", reply.body);
    assert_eq!(reply.str("/offer/status"), "TRANSFER_OFFER_STATUS_OFFERED");
    reply.str("/offer/offerId")
}

async fn accept(sys: &System, token: &str, offer: &str, key: &str) -> Reply {
    sys.call(
        Method::POST,
        &format!("/v1/transfer-offers/{offer}:accept"),
        Some(token),
        Some(json!({"paymentMethod": "WALLET"})),
        &[("Idempotency-Key", key)],
    )
    .await
}

async fn email(sys: &System, token: &str) -> String {
    let me = sys.get("/v1/me", Some(token)).await;
    assert_eq!(me.status, 200, "{:?}", me.body);
    me.str("/account/email")
}

async fn status(sys: &System, token: &str, booking: &str) -> String {
    let reply = sys
        .get(&format!("/v1/bookings/{booking}"), Some(token))
        .await;
    assert_eq!(reply.status, 200, "{:?}", reply.body);
    reply.str("/status")
}

async fn offer_status(sys: &System, token: &str, offer: &str) -> String {
    let reply = sys
        .get(&format!("/v1/transfer-offers/{offer}"), Some(token))
        .await;
    assert_eq!(reply.status, 200, "{:?}", reply.body);
    reply.str("/offer/status")
}

/// Waits (bounded) until the wallet's balance is `expected`.
async fn await_balance(sys: &System, token: &str, expected: i64) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    loop {
        let balance = sys.balance(token).await;
        if balance == expected {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "balance {balance}, expected {expected}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Every seat in `seats` is SOLD on the public seat map.
async fn assert_sold(sys: &System, event: &str, seats: &[String], when: &str) {
    let map = sys.seats(event).await;
    for seat in seats {
        let status = map
            .iter()
            .find(|s| &s.0 == seat)
            .map(|s| s.1.clone())
            .unwrap_or_default();
        assert_eq!(status, "SOLD", "{when}: seat {seat} is {status}");
    }
}

/// The seat ids of a booking (as its buyer sees it), sorted.
fn seat_ids(booking: &Value) -> Vec<String> {
    let mut ids: Vec<String> = booking["seats"]
        .as_array()
        .map(|seats| {
            seats
                .iter()
                .filter_map(|s| s["seatId"].as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default();
    ids.sort();
    ids
}

fn amount(value: &Value) -> i64 {
    value["amountMinor"]
        .as_str()
        .and_then(|a| a.parse().ok())
        .unwrap_or(0)
}

async fn assert_money(sys: &System) {
    Money::check(&sys.pay_pool).await.assert_conserved();
}

/// No seat in two active bookings, and the seat map shows SOLD exactly the seats of
/// confirmed (or transferring) bookings.
async fn assert_no_oversell(sys: &System, event: &str) {
    let sold: HashSet<String> = sys
        .seats(event)
        .await
        .into_iter()
        .filter(|s| s.1 == "SOLD")
        .map(|s| s.0)
        .collect();
    Oversell::check(&sys.booking_pool, &sold).await.assert_ok();
}

#[tokio::test]
async fn a_named_transfer_moves_the_seats_and_pays_the_owner_once() {
    let sys = System::start().await;
    let (_, event) = event(&sys).await;
    let r = seats_at(&sys, &event, R).await;
    let (owner_id, owner) = sys.account("BUYER").await;
    let original = buy(&sys, &owner, &event, &r[..2]).await;
    let (recipient_id, recipient) = sys.account("BUYER").await;
    let (_, stranger) = sys.account("BUYER").await;
    let recipient_email = email(&sys, &recipient).await;

    let offer = offered(&sys, &owner, &original, 50_000, Some(&recipient_email)).await;
    assert_sold(&sys, &event, &r[..2], "on offer").await;
    // A named offer is the recipient's (and the owner's) only: nobody else sees or
    // accepts it, nor finds it among the event's listings.
    for token in [&owner, &recipient] {
        assert_eq!(
            offer_status(&sys, token, &offer).await,
            "TRANSFER_OFFER_STATUS_OFFERED"
        );
    }
    let hidden = sys
        .get(&format!("/v1/transfer-offers/{offer}"), Some(&stranger))
        .await;
    assert_eq!(hidden.status, 404, "{:?}", hidden.body);
    let refused = accept(&sys, &stranger, &offer, "s-1").await;
    assert_eq!(refused.status, 404, "{:?}", refused.body);
    let listings = sys
        .get(&format!("/v1/events/{event}/transfer-offers"), None)
        .await;
    assert_eq!(listings.status, 200, "{:?}", listings.body);
    assert!(listings.body["offers"].as_array().is_none_or(Vec::is_empty));
    // The owner cannot buy their own offer.
    let own = accept(&sys, &owner, &offer, "o-1").await;
    assert_eq!(own.status, 400, "{:?}", own.body);

    // The same key twice at once (a client retrying a slow request): one booking.
    let (accepted, twin) = tokio::join!(
        accept(&sys, &recipient, &offer, "t-1"),
        accept(&sys, &recipient, &offer, "t-1")
    );
    assert_eq!(accepted.status, 202, "{:?}", accepted.body);
    assert_eq!(twin.status, 202, "{:?}", twin.body);
    assert_eq!(
        twin.str("/booking/bookingId"),
        accepted.str("/booking/bookingId")
    );
    assert_eq!(accepted.str("/booking/status"), "PENDING_PAYMENT");
    assert_eq!(accepted.str("/booking/transferOf"), original);
    assert_eq!(accepted.str("/booking/total/amountMinor"), "50000");
    let transfer = accepted.str("/booking/bookingId");
    let again = accept(&sys, &recipient, &offer, "t-1").await;
    assert_eq!(again.status, 202, "{:?}", again.body);
    assert_eq!(
        again.str("/booking/bookingId"),
        transfer,
        "same key, same booking"
    );
    assert_sold(&sys, &event, &r[..2], "paying").await;

    let mine = sys.await_booking(&recipient, &transfer, "CONFIRMED").await;
    let mut bought: Vec<String> = r[..2].to_vec();
    bought.sort();
    assert_eq!(seat_ids(&mine), bought, "the recipient owns the same seats");
    let prices: i64 = mine["seats"]
        .as_array()
        .expect("seats")
        .iter()
        .map(|s| amount(&s["price"]))
        .sum();
    assert_eq!(prices, 50_000, "seat prices sum to what the recipient paid");
    assert_eq!(status(&sys, &owner, &original).await, "TRANSFERRED");
    assert_eq!(
        offer_status(&sys, &owner, &offer).await,
        "TRANSFER_OFFER_STATUS_COMPLETED"
    );
    assert_sold(&sys, &event, &r[..2], "transferred").await;

    // The owner paid 60,000 and is paid 50,000 back; the recipient paid 50,000.
    await_balance(&sys, &owner, WELCOME - 60_000 + 50_000).await;
    await_balance(&sys, &recipient, WELCOME - 50_000).await;
    let wallet = sys.get("/v1/wallet", Some(&owner)).await;
    let payouts: Vec<&Value> = wallet.body["entries"]
        .as_array()
        .expect("entries")
        .iter()
        .filter(|e| e["kind"] == "TRANSFER_PAYOUT")
        .collect();
    assert_eq!(payouts.len(), 1, "one payout: {:?}", wallet.body);
    assert_eq!(amount(&payouts[0]["amount"]), 50_000);
    // The recipient's saga timeline shows the payout asked for, credited by pay-svc and
    // its completion received by booking-svc.
    let (_, admin) = sys.admin().await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let timeline = sys
            .get(&format!("/v1/admin/sagas/{transfer}"), Some(&admin))
            .await;
        assert_eq!(timeline.status, 200, "{:?}", timeline.body);
        let steps = timeline.body["steps"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        let has = |service: &str, kind: &str, message: &str| {
            steps.iter().any(|s| {
                s["service"].as_str() == Some(service)
                    && s["kind"].as_str() == Some(kind)
                    && s["messageType"].as_str() == Some(message)
            })
        };
        if has("booking-svc", "message_sent", "payout.requested")
            && has("pay-svc", "message_received", "payout.requested")
            && has("pay-svc", "message_sent", "payout.completed")
            && has("booking-svc", "message_received", "payout.completed")
        {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "payout steps missing: {:?}",
            timeline.body
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_no_oversell(&sys, &event).await;
    assert_money(&sys).await;

    // The seats count towards the new owner's limit (4 per buyer), no longer the
    // previous owner's: the owner may hold 4 again, the recipient only 2 more.
    let again = sys.hold(&owner, &event, &r[2..6]).await;
    assert_eq!(again.status, 201, "{:?}", again.body);
    let released = sys
        .call(
            Method::DELETE,
            &format!("/v1/holds/{}", again.str("/holdId")),
            Some(&owner),
            None,
            &[],
        )
        .await;
    assert_eq!(released.status, 200, "{:?}", released.body);
    let over = sys.hold(&recipient, &event, &r[2..5]).await;
    assert_eq!(over.status, 400, "{:?}", over.body);
    assert_eq!(
        over.body["details"][0]["reason"], "SEAT_LIMIT",
        "{:?}",
        over.body
    );

    // The previous owner can no longer cancel; the recipient's booking shows its
    // history, and both see the chain.
    let cancel = sys
        .post(
            &format!("/v1/bookings/{original}:cancel"),
            Some(&owner),
            json!({}),
        )
        .await;
    assert_eq!(cancel.status, 400, "{:?}", cancel.body);
    assert!(
        cancel.body["message"]
            .as_str()
            .unwrap_or_default()
            .contains("transferred"),
        "{:?}",
        cancel.body
    );
    for (token, booking) in [(&owner, &original), (&recipient, &transfer)] {
        let chain = sys
            .get(&format!("/v1/bookings/{booking}/transfers"), Some(token))
            .await;
        assert_eq!(chain.status, 200, "{:?}", chain.body);
        let owners: Vec<&str> = chain.body["links"]
            .as_array()
            .expect("links")
            .iter()
            .filter_map(|l| l["ownerId"].as_str())
            .collect();
        assert_eq!(owners, vec![owner_id.as_str(), recipient_id.as_str()]);
    }
    let outsider = sys
        .get(
            &format!("/v1/bookings/{transfer}/transfers"),
            Some(&stranger),
        )
        .await;
    assert_eq!(outsider.status, 404, "{:?}", outsider.body);

    // The recipient may cancel like any buyer: refunded what they paid, the seats free.
    let cancelled = sys
        .post(
            &format!("/v1/bookings/{transfer}:cancel"),
            Some(&recipient),
            json!({}),
        )
        .await;
    assert_eq!(cancelled.status, 202, "{:?}", cancelled.body);
    sys.await_booking(&recipient, &transfer, "CANCELLED").await;
    await_balance(&sys, &recipient, WELCOME).await;
    assert_eq!(
        sys.balance(&owner).await,
        WELCOME - 10_000,
        "the owner keeps the payout"
    );
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let map = sys.seats(&event).await;
        if r[..2]
            .iter()
            .all(|seat| map.iter().any(|s| &s.0 == seat && s.1 == "AVAILABLE"))
        {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "seats not freed");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_money(&sys).await;
    sys.stop().await;
}

#[tokio::test]
async fn price_caps_and_the_sellers_policy_are_enforced() {
    let sys = System::start().await;
    let (seller, event) = event(&sys).await;
    let r = seats_at(&sys, &event, R).await;
    let (_, owner) = sys.account("BUYER").await;
    let booking = buy(&sys, &owner, &event, &r[..2]).await;

    // Above face value (what the booking cost): 400 naming the price.
    let above = offer(&sys, &owner, &booking, 60_001, None).await;
    assert_eq!(above.status, 400, "{:?}", above.body);
    assert!(
        above.body["message"]
            .as_str()
            .unwrap_or_default()
            .starts_with("price.amountMinor:")
    );
    let zero = offer(&sys, &owner, &booking, 0, None).await;
    assert_eq!(zero.status, 400, "{:?}", zero.body);
    let dollars = sys
        .post(
            &format!("/v1/bookings/{booking}/transfer-offers"),
            Some(&owner),
            json!({"price": {"amountMinor": "100", "currency": "USD"}}),
        )
        .await;
    assert_eq!(dollars.status, 400, "{:?}", dollars.body);
    assert!(
        dollars.body["message"]
            .as_str()
            .unwrap_or_default()
            .starts_with("price.currency:")
    );

    // The seller caps transfers at 80 % of face value: 48,000 of 60,000.
    let (_, other) = sys.account("BUYER").await;
    let policy = json!({"transfers": {"maxPricePercent": 80}});
    let path = format!("/v1/events/{event}/transfer-policy");
    let forbidden = sys
        .call(Method::PUT, &path, Some(&other), Some(policy.clone()), &[])
        .await;
    assert_eq!(forbidden.status, 403, "{:?}", forbidden.body);
    let set = sys
        .call(Method::PUT, &path, Some(&seller), Some(policy), &[])
        .await;
    assert_eq!(set.status, 200, "{:?}", set.body);
    assert_eq!(set.body["event"]["transfers"]["maxPricePercent"], 80);
    assert_eq!(set.body["event"]["transfers"]["allowed"], true);
    let shown = sys.get(&format!("/v1/events/{event}"), None).await;
    assert_eq!(
        shown.body["transfers"]["maxPricePercent"], 80,
        "{:?}",
        shown.body
    );
    let capped = offer(&sys, &owner, &booking, 48_001, None).await;
    assert_eq!(capped.status, 400, "{:?}", capped.body);
    assert!(
        capped.body["message"]
            .as_str()
            .unwrap_or_default()
            .contains("80 %")
    );
    let offer_id = offered(&sys, &owner, &booking, 48_000, None).await;
    // One live offer per booking.
    let second = offer(&sys, &owner, &booking, 40_000, None).await;
    assert_eq!(second.status, 409, "{:?}", second.body);

    // Withdrawal: only the owner; twice is harmless; then nobody can accept it.
    let (_, taker) = sys.account("BUYER").await;
    let not_yours = sys
        .call(
            Method::DELETE,
            &format!("/v1/transfer-offers/{offer_id}"),
            Some(&taker),
            None,
            &[],
        )
        .await;
    assert_eq!(not_yours.status, 403, "{:?}", not_yours.body);
    for _ in 0..2 {
        let withdrawn = sys
            .call(
                Method::DELETE,
                &format!("/v1/transfer-offers/{offer_id}"),
                Some(&owner),
                None,
                &[],
            )
            .await;
        assert_eq!(withdrawn.status, 200, "{:?}", withdrawn.body);
        assert_eq!(
            withdrawn.str("/offer/status"),
            "TRANSFER_OFFER_STATUS_WITHDRAWN"
        );
    }
    let late = accept(&sys, &taker, &offer_id, "late-1").await;
    assert_eq!(late.status, 409, "{:?}", late.body);
    assert_eq!(sys.balance(&taker).await, WELCOME);
    assert_eq!(status(&sys, &owner, &booking).await, "CONFIRMED");
    let listings = sys
        .get(&format!("/v1/events/{event}/transfer-offers"), None)
        .await;
    assert!(
        listings.body["offers"].as_array().is_none_or(Vec::is_empty),
        "{:?}",
        listings.body
    );

    // The seller forbids transfers: a new offer is refused.
    let off = sys
        .call(
            Method::PUT,
            &path,
            Some(&seller),
            Some(json!({"transfers": {"allowed": false}})),
            &[],
        )
        .await;
    assert_eq!(off.status, 200, "{:?}", off.body);
    assert_eq!(off.body["event"]["transfers"]["allowed"], false);
    let refused = offer(&sys, &owner, &booking, 10_000, None).await;
    assert_eq!(refused.status, 403, "{:?}", refused.body);
    // No rule: back to the default, allowed at up to face value.
    let reset = sys
        .call(Method::PUT, &path, Some(&seller), Some(json!({})), &[])
        .await;
    assert_eq!(reset.status, 200, "{:?}", reset.body);
    assert_eq!(reset.body["event"]["transfers"]["allowed"], true);
    assert_eq!(reset.body["event"]["transfers"]["maxPricePercent"], 100);
    offered(&sys, &owner, &booking, 60_000, None).await;
    assert_money(&sys).await;
    sys.stop().await;
}

#[tokio::test]
async fn concurrent_accepts_confirm_one_booking_and_leave_the_losers_money_alone() {
    let sys = System::start().await;
    let (_, event) = event(&sys).await;
    let r = seats_at(&sys, &event, R).await;
    let (_, owner) = sys.account("BUYER").await;
    let booking = buy(&sys, &owner, &event, &r[..2]).await;
    let offer_id = offered(&sys, &owner, &booking, 60_000, None).await;
    // A second listing, of one seat: each listing shows its own booking's seats.
    let (_, other) = sys.account("BUYER").await;
    let other_booking = buy(&sys, &other, &event, &r[2..3]).await;
    let other_offer = offered(&sys, &other, &other_booking, 30_000, None).await;
    let listings = sys
        .get(&format!("/v1/events/{event}/transfer-offers"), None)
        .await;
    assert_eq!(listings.status, 200, "{:?}", listings.body);
    let listed = &listings.body["offers"][0];
    assert_eq!(listed["offerId"], offer_id.as_str());
    let sorted = |seats: &[String]| {
        let mut seats = seats.to_vec();
        seats.sort();
        seats
    };
    assert_eq!(seat_ids(listed), sorted(&r[..2]));
    assert_eq!(listed["seats"][0]["section"], "R");
    let second = &listings.body["offers"][1];
    assert_eq!(second["offerId"], other_offer.as_str());
    assert_eq!(seat_ids(second), sorted(&r[2..3]));

    let mut recipients = Vec::new();
    for _ in 0..4 {
        recipients.push(sys.account("BUYER").await.1);
    }
    let replies = futures::future::join_all(recipients.iter().enumerate().map(|(i, token)| {
        let sys = &sys;
        let offer_id = &offer_id;
        async move { accept(sys, token, offer_id, &format!("race-{i}")).await }
    }))
    .await;
    let winners: Vec<usize> = (0..replies.len())
        .filter(|i| replies[*i].status == 202)
        .collect();
    assert_eq!(winners.len(), 1, "exactly one accept wins: {replies:?}");
    for (i, reply) in replies.iter().enumerate() {
        if i != winners[0] {
            assert_eq!(reply.status, 409, "a loser gets 409: {:?}", reply.body);
        }
    }
    let winner = &recipients[winners[0]];
    let transfer = replies[winners[0]].str("/booking/bookingId");
    sys.await_booking(winner, &transfer, "CONFIRMED").await;
    assert_eq!(status(&sys, &owner, &booking).await, "TRANSFERRED");
    await_balance(&sys, winner, WELCOME - 60_000).await;
    await_balance(&sys, &owner, WELCOME).await;
    for (i, token) in recipients.iter().enumerate() {
        if i == winners[0] {
            continue;
        }
        assert_eq!(
            sys.balance(token).await,
            WELCOME,
            "a loser's money is untouched"
        );
        let theirs = sys.get("/v1/bookings", Some(token)).await;
        assert!(
            theirs.body["bookings"].as_array().is_none_or(Vec::is_empty),
            "{:?}",
            theirs.body
        );
    }
    // The accepted offer has left the listings; the other one is still there.
    let listings = sys
        .get(&format!("/v1/events/{event}/transfer-offers"), None)
        .await;
    let listed: Vec<&str> = listings.body["offers"]
        .as_array()
        .map(|offers| {
            offers
                .iter()
                .filter_map(|o| o["offerId"].as_str())
                .collect()
        })
        .unwrap_or_default();
    assert_eq!(listed, [other_offer.as_str()], "{:?}", listings.body);
    assert_sold(&sys, &event, &r[..2], "after the race").await;
    assert_money(&sys).await;
    sys.stop().await;
}

#[tokio::test]
async fn a_transfer_and_a_cancel_racing_never_both_happen() {
    const ROUNDS: usize = 12;
    let sys = System::start().await;
    let (_, event) = sys.seller_event(&[("R", R, 2, ROUNDS / 2)], 4).await;
    let seats = seats_at(&sys, &event, R).await;
    let (mut transferred, mut cancelled) = (0, 0);
    for (round, seat) in seats.iter().enumerate().take(ROUNDS) {
        let (_, owner) = sys.account("BUYER").await;
        let (_, recipient) = sys.account("BUYER").await;
        let booking = buy(&sys, &owner, &event, std::slice::from_ref(seat)).await;
        let offer_id = offered(&sys, &owner, &booking, R, None).await;
        let cancel_path = format!("/v1/bookings/{booking}:cancel");
        let key = format!("round-{round}");
        // The accept does a few reads before its transaction: the cancel starts a
        // little later in some rounds, so both get to win some.
        let lag = Duration::from_millis((round % 4) as u64 * 4);
        let (cancel, accept) = tokio::join!(
            async {
                tokio::time::sleep(lag).await;
                sys.post(&cancel_path, Some(&owner), json!({})).await
            },
            accept(&sys, &recipient, &offer_id, &key),
        );
        match (cancel.status, accept.status) {
            (202, 409) => {
                cancelled += 1;
                sys.await_booking(&owner, &booking, "CANCELLED").await;
                await_balance(&sys, &owner, WELCOME).await;
                assert_eq!(sys.balance(&recipient).await, WELCOME);
                assert_eq!(
                    offer_status(&sys, &owner, &offer_id).await,
                    "TRANSFER_OFFER_STATUS_WITHDRAWN"
                );
            }
            (400, 202) => {
                transferred += 1;
                assert!(
                    cancel.body["message"]
                        .as_str()
                        .unwrap_or_default()
                        .contains("transfer"),
                    "{:?}",
                    cancel.body
                );
                let transfer = accept.str("/booking/bookingId");
                sys.await_booking(&recipient, &transfer, "CONFIRMED").await;
                assert_eq!(status(&sys, &owner, &booking).await, "TRANSFERRED");
                await_balance(&sys, &owner, WELCOME).await;
                await_balance(&sys, &recipient, WELCOME - R).await;
                assert_sold(&sys, &event, std::slice::from_ref(seat), "transferred").await;
            }
            other => panic!(
                "round {round}: exactly one of cancel and accept must succeed, got {other:?}: {:?} / {:?}",
                cancel.body, accept.body
            ),
        }
    }
    assert_eq!(transferred + cancelled, ROUNDS);
    println!("transfer vs cancel: {transferred} transferred, {cancelled} cancelled");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        // The cancelled rounds' seats are freed in Redis once their refunds completed.
        let sold: HashSet<String> = sys
            .seats(&event)
            .await
            .into_iter()
            .filter(|s| s.1 == "SOLD")
            .map(|s| s.0)
            .collect();
        let check = Oversell::check(&sys.booking_pool, &sold).await;
        if check.ok() || tokio::time::Instant::now() > deadline {
            check.assert_ok();
            assert_eq!(check.confirmed_seats(), transferred);
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_money(&sys).await;
    sys.stop().await;
}

#[tokio::test]
async fn a_recipient_who_cannot_pay_puts_the_offer_back_on_the_market() {
    let sys = System::start().await;
    let (_, event) = event(&sys).await;
    let r = seats_at(&sys, &event, R).await;
    let v = seats_at(&sys, &event, 40_000).await;
    let (owner_id, owner) = sys.account("BUYER").await;
    let booking = buy(&sys, &owner, &event, &r[..2]).await;
    let offer_id = offered(&sys, &owner, &booking, 50_000, None).await;

    // The recipient spent 80,000 of 100,000: 50,000 is more than their wallet holds.
    let (_, poor) = sys.account("BUYER").await;
    buy(&sys, &poor, &event, &v[..2]).await;
    let accepted = accept(&sys, &poor, &offer_id, "poor-1").await;
    assert_eq!(accepted.status, 202, "{:?}", accepted.body);
    let failed = accepted.str("/booking/bookingId");
    let cancelled = sys.await_booking(&poor, &failed, "CANCELLED").await;
    assert!(
        cancelled["cancelReason"]
            .as_str()
            .unwrap_or_default()
            .contains("INSUFFICIENT_FUNDS"),
        "{cancelled:?}"
    );
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while status(&sys, &owner, &booking).await != "CONFIRMED" {
        assert!(
            tokio::time::Instant::now() < deadline,
            "original not CONFIRMED again"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        offer_status(&sys, &owner, &offer_id).await,
        "TRANSFER_OFFER_STATUS_OFFERED"
    );
    let listings = sys
        .get(&format!("/v1/events/{event}/transfer-offers"), None)
        .await;
    assert_eq!(
        listings.body["offers"][0]["offerId"],
        offer_id.as_str(),
        "{:?}",
        listings.body
    );
    assert_eq!(sys.balance(&poor).await, WELCOME - 80_000);
    assert_eq!(sys.balance(&owner).await, WELCOME - 60_000);
    assert_sold(&sys, &event, &r[..2], "after the failed payment").await;

    // Back on the market: someone who can pay takes it.
    let (_, rich) = sys.account("BUYER").await;
    let taken = accept(&sys, &rich, &offer_id, "rich-1").await;
    assert_eq!(taken.status, 202, "{:?}", taken.body);
    sys.await_booking(&rich, &taken.str("/booking/bookingId"), "CONFIRMED")
        .await;
    await_balance(&sys, &owner, WELCOME - 10_000).await;
    let chain = sys
        .get(&format!("/v1/bookings/{failed}/transfers"), Some(&owner))
        .await;
    assert_eq!(chain.status, 200, "{:?}", chain.body);
    assert_eq!(chain.body["links"][0]["ownerId"], owner_id.as_str());
    assert_eq!(
        chain.body["links"].as_array().map(Vec::len),
        Some(2),
        "the failed try is no link"
    );
    assert_money(&sys).await;
    sys.stop().await;
}

#[tokio::test]
async fn the_chain_shows_every_owner_after_two_transfers() {
    let sys = System::start().await;
    let (_, event) = event(&sys).await;
    let r = seats_at(&sys, &event, R).await;
    let (a_id, a) = sys.account("BUYER").await;
    let (b_id, b) = sys.account("BUYER").await;
    let (c_id, c) = sys.account("BUYER").await;
    let (_, d) = sys.account("BUYER").await;
    let first = buy(&sys, &a, &event, &r[..2]).await;

    let to_b = offered(&sys, &a, &first, 50_000, Some(&email(&sys, &b).await)).await;
    let accepted = accept(&sys, &b, &to_b, "b-1").await;
    assert_eq!(accepted.status, 202, "{:?}", accepted.body);
    let second = accepted.str("/booking/bookingId");
    sys.await_booking(&b, &second, "CONFIRMED").await;
    assert_sold(&sys, &event, &r[..2], "first transfer").await;

    // The recipient passes it on, for less (B paid 50,000: that is its face value now).
    let too_much = offer(&sys, &b, &second, 50_001, None).await;
    assert_eq!(too_much.status, 400, "{:?}", too_much.body);
    let to_c = offered(&sys, &b, &second, 40_000, None).await;
    let accepted = accept(&sys, &c, &to_c, "c-1").await;
    assert_eq!(accepted.status, 202, "{:?}", accepted.body);
    let third = accepted.str("/booking/bookingId");
    sys.await_booking(&c, &third, "CONFIRMED").await;
    assert_eq!(status(&sys, &b, &second).await, "TRANSFERRED");
    assert_sold(&sys, &event, &r[..2], "second transfer").await;

    let expected = [
        (a_id.as_str(), &first, 60_000),
        (b_id.as_str(), &second, 50_000),
        (c_id.as_str(), &third, 40_000),
    ];
    for (token, booking) in [(&a, &first), (&b, &second), (&c, &third)] {
        let chain = sys
            .get(&format!("/v1/bookings/{booking}/transfers"), Some(token))
            .await;
        assert_eq!(chain.status, 200, "{:?}", chain.body);
        let links = chain.body["links"].as_array().expect("links");
        assert_eq!(links.len(), 3, "{:?}", chain.body);
        let mut last_at = None;
        for (link, (owner, id, price)) in links.iter().zip(expected) {
            assert_eq!(link["ownerId"], owner);
            assert_eq!(link["bookingId"], id.as_str());
            assert_eq!(amount(&link["price"]), price);
            let at = chrono::DateTime::parse_from_rfc3339(
                link["transferredAt"].as_str().unwrap_or_default(),
            )
            .expect("transferredAt is RFC 3339");
            assert!(Some(at) > last_at, "links in time order: {:?}", chain.body);
            last_at = Some(at);
        }
    }
    let outsider = sys
        .get(&format!("/v1/bookings/{first}/transfers"), Some(&d))
        .await;
    assert_eq!(outsider.status, 404, "{:?}", outsider.body);

    await_balance(&sys, &a, WELCOME - 60_000 + 50_000).await;
    await_balance(&sys, &b, WELCOME - 50_000 + 40_000).await;
    await_balance(&sys, &c, WELCOME - 40_000).await;
    assert_no_oversell(&sys, &event).await;
    assert_money(&sys).await;
    sys.stop().await;
}

/// A 400 whose message names `field` first.
fn assert_field(reply: &Reply, what: &str, field: &str) {
    assert_eq!(reply.status, 400, "{what}: {:?}", reply.body);
    let message = reply.body["message"].as_str().unwrap_or_default();
    assert!(
        message.starts_with(&format!("{field}:")),
        "{what}: {message:?} does not name {field}"
    );
}

#[tokio::test]
async fn bad_input_on_every_transfer_route_is_a_400_naming_the_field() {
    let sys = System::start().await;
    let (seller, event) = event(&sys).await;
    let r = seats_at(&sys, &event, R).await;
    let (_, owner) = sys.account("BUYER").await;
    let (_, other) = sys.account("BUYER").await;
    let booking = buy(&sys, &owner, &event, &r[..1]).await;
    let offers = format!("/v1/bookings/{booking}/transfer-offers");

    let reply = sys
        .post(
            "/v1/bookings/nope/transfer-offers",
            Some(&owner),
            json!({"price": {"amountMinor": "1", "currency": "KRW"}}),
        )
        .await;
    assert_field(&reply, "offer on a bad booking id", "bookingId");
    let reply = sys.post(&offers, Some(&owner), json!({})).await;
    assert_field(&reply, "offer without a price", "price");
    let reply = sys
        .post(
            &offers,
            Some(&owner),
            json!({"price": {"amountMinor": "-5", "currency": "KRW"}}),
        )
        .await;
    assert_field(&reply, "negative price", "price.amountMinor");
    let reply = sys
        .post(
            &offers,
            Some(&owner),
            json!({"price": {"amountMinor": "5", "currency": "krw!"}}),
        )
        .await;
    assert_field(&reply, "bad currency", "price.currency");
    let reply = sys
        .post(
            &offers,
            Some(&owner),
            json!({"price": {"amountMinor": "5", "currency": "KRW"}, "recipientEmail": "not an email"}),
        )
        .await;
    assert_field(&reply, "bad recipient", "recipientEmail");
    let reply = sys.get("/v1/transfer-offers/nope", Some(&owner)).await;
    assert_field(&reply, "get a bad offer id", "offerId");
    let reply = sys
        .call(
            Method::DELETE,
            "/v1/transfer-offers/nope",
            Some(&owner),
            None,
            &[],
        )
        .await;
    assert_field(&reply, "withdraw a bad offer id", "offerId");
    let reply = accept(&sys, &other, "nope", "k-1").await;
    assert_field(&reply, "accept a bad offer id", "offerId");

    let offer_id = offered(&sys, &owner, &booking, 10_000, None).await;
    let accept_path = format!("/v1/transfer-offers/{offer_id}:accept");
    let reply = sys
        .post(
            &accept_path,
            Some(&other),
            json!({"paymentMethod": "WALLET"}),
        )
        .await;
    assert_field(&reply, "accept without a key", "idempotencyKey");
    let reply = sys
        .call(
            Method::POST,
            &accept_path,
            Some(&other),
            Some(json!({})),
            &[("Idempotency-Key", "k-2")],
        )
        .await;
    assert_field(&reply, "accept without a method", "paymentMethod");
    let reply = sys
        .call(
            Method::POST,
            &accept_path,
            Some(&other),
            Some(json!({"paymentMethod": "CARD"})),
            &[("Idempotency-Key", "k-3")],
        )
        .await;
    assert_field(&reply, "card without a token", "cardToken");

    let reply = sys.get("/v1/events/nope/transfer-offers", None).await;
    assert_field(&reply, "listings of a bad event id", "eventId");
    let reply = sys
        .get(
            &format!("/v1/events/{event}/transfer-offers?pageSize=-1"),
            None,
        )
        .await;
    assert_field(&reply, "negative page size", "pageSize");
    let reply = sys
        .get(
            &format!("/v1/events/{event}/transfer-offers?pageToken=x"),
            None,
        )
        .await;
    assert_field(&reply, "bad page token", "pageToken");

    let policy = format!("/v1/events/{event}/transfer-policy");
    let reply = sys
        .call(
            Method::PUT,
            &policy,
            Some(&seller),
            Some(json!({"transfers": {"maxPricePercent": 101}})),
            &[],
        )
        .await;
    assert_field(&reply, "cap over 100 %", "transfers.maxPricePercent");
    let reply = sys
        .call(
            Method::PUT,
            "/v1/events/nope/transfer-policy",
            Some(&seller),
            Some(json!({"transfers": {"maxPricePercent": 50}})),
            &[],
        )
        .await;
    assert_field(&reply, "policy of a bad event id", "eventId");
    let reply = sys.get("/v1/bookings/nope/transfers", Some(&owner)).await;
    assert_field(&reply, "chain of a bad booking id", "bookingId");

    // Nothing changed: the offer is still on offer, the booking CONFIRMED, the rule the
    // default, nobody paid.
    assert_eq!(
        offer_status(&sys, &owner, &offer_id).await,
        "TRANSFER_OFFER_STATUS_OFFERED"
    );
    assert_eq!(status(&sys, &owner, &booking).await, "CONFIRMED");
    let shown = sys.get(&format!("/v1/events/{event}"), None).await;
    assert_eq!(
        shown.body["transfers"]["maxPricePercent"], 100,
        "{:?}",
        shown.body
    );
    assert_eq!(sys.balance(&other).await, WELCOME);
    assert!(
        sys.get("/v1/bookings", Some(&other)).await.body["bookings"]
            .as_array()
            .is_none_or(Vec::is_empty)
    );
    sys.stop().await;
}

#[tokio::test]
async fn a_transfer_paid_too_late_is_undone_and_the_late_payment_refunded() {
    // The recipient's card answers after 3 s; the payment deadline is 1 s. pay-svc
    // waits for the answer (its timeout is longer), so only the deadline decides.
    let sys = System::start_with(marquee_e2e::Options {
        payment_deadline: Duration::from_secs(1),
        psp_slow: Duration::from_secs(3),
        psp_timeout: Duration::from_secs(5),
        ..marquee_e2e::Options::default()
    })
    .await;
    let (_, event) = event(&sys).await;
    let r = seats_at(&sys, &event, R).await;
    let (_, owner) = sys.account("BUYER").await;
    let booking = buy(&sys, &owner, &event, &r[..1]).await;
    let offer_id = offered(&sys, &owner, &booking, 20_000, None).await;
    let (_, late) = sys.account("BUYER").await;
    let accepted = sys
        .call(
            Method::POST,
            &format!("/v1/transfer-offers/{offer_id}:accept"),
            Some(&late),
            Some(json!({"paymentMethod": "CARD", "cardToken": "tok_slow"})),
            &[("Idempotency-Key", "late-1")],
        )
        .await;
    assert_eq!(accepted.status, 202, "{:?}", accepted.body);
    let transfer = accepted.str("/booking/bookingId");
    let cancelled = sys.await_booking(&late, &transfer, "CANCELLED").await;
    assert_eq!(cancelled["cancelReason"], "payment deadline passed");
    assert_eq!(status(&sys, &owner, &booking).await, "CONFIRMED");
    assert_eq!(
        offer_status(&sys, &owner, &offer_id).await,
        "TRANSFER_OFFER_STATUS_OFFERED"
    );
    assert_sold(&sys, &event, &r[..1], "after the deadline").await;

    // The capture that comes later is refunded at the provider; nobody is paid out.
    let order: uuid::Uuid = transfer.parse().expect("uuid");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let order = sys.psp.order(order).await;
        if order.refunded == 20_000 {
            assert_eq!(order.captured, 20_000);
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "never refunded: {order:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(sys.balance(&owner).await, WELCOME - R, "no payout");
    assert_eq!(status(&sys, &late, &transfer).await, "CANCELLED");
    assert_eq!(status(&sys, &owner, &booking).await, "CONFIRMED");
    assert_money(&sys).await;
    sys.stop().await;
}

//! Dead letters through the REST gateway: a payment that pay-svc cannot take (an
//! operator's review hold on the buyer's wallet, a trigger that refuses its payment
//! row) is retried up to the delivery limit and dead-lettered while other purchases
//! complete; `GET /v1/admin/dead-letters` shows it (with a letter booking-svc keeps,
//! merged in) to admins only; after the fix one redrive takes the payment once, and a
//! second one is reported as already redriven and changes nothing. Malformed
//! selections are 400 and change nothing.

use std::time::Duration;

use marquee_e2e::System;
use marquee_infra::bus::Envelope;
use serde_json::{Value, json};
use uuid::Uuid;

const PASSWORD: &str = "correct horse battery";

/// An admin: signed up as a buyer, made ADMIN in the booking database (sign-up
/// refuses ADMIN), logged in again. Returns its token.
async fn admin(sys: &System) -> String {
    let email = format!("admin-{}@example.com", Uuid::new_v4().simple());
    let signed = sys
        .post(
            "/v1/accounts",
            None,
            json!({"email": email, "password": PASSWORD, "displayName": "Admin", "role": "BUYER"}),
        )
        .await;
    assert_eq!(signed.status, 201, "sign-up: {:?}", signed.body);
    let id: Uuid = signed.str("/accountId").parse().expect("account id");
    sqlx::query("UPDATE accounts SET role = 'ADMIN' WHERE id = $1")
        .bind(id)
        .execute(&sys.booking_pool)
        .await
        .expect("made admin");
    let session = sys
        .post(
            "/v1/sessions",
            None,
            json!({"email": email, "password": PASSWORD}),
        )
        .await;
    assert_eq!(session.status, 201, "log-in: {:?}", session.body);
    session.str("/accessToken")
}

fn letters(body: &Value) -> Vec<Value> {
    body["deadLetters"].as_array().cloned().unwrap_or_default()
}

/// Lists until `ok` holds for the letters (panics after 20 s).
async fn await_letters(sys: &System, token: &str, ok: impl Fn(&[Value]) -> bool) -> Vec<Value> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let listed = sys.get("/v1/admin/dead-letters", Some(token)).await;
        assert_eq!(listed.status, 200, "{:?}", listed.body);
        let found = letters(&listed.body);
        if ok(&found) {
            return found;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "dead letters not as expected: {found:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn payments_of(sys: &System, booking_id: Uuid) -> (i64, i64) {
    let payments: i64 = sqlx::query_scalar("SELECT count(*) FROM payments WHERE booking_id = $1")
        .bind(booking_id)
        .fetch_one(&sys.pay_pool)
        .await
        .expect("payments counted");
    let debits: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM ledger_entries WHERE booking_id = $1 AND kind = 'PAYMENT'",
    )
    .bind(booking_id)
    .fetch_one(&sys.pay_pool)
    .await
    .expect("debits counted");
    (payments, debits)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_dead_lettered_payment_is_listed_and_redriven_once() {
    let sys = System::start().await;
    let (_, event_id) = sys.seller_event(&[("R", 10_000, 1, 4)], 0).await;
    let seats = sys.seat_ids(&event_id).await;
    let (victim_id, victim) = sys.account("BUYER").await;
    let (_, other) = sys.account("BUYER").await;
    let (_, buyer) = sys.account("BUYER").await;
    let admin = admin(&sys).await;
    let balance_before = sys.balance(&victim).await;

    // The poison: the victim's wallet is under review (an operator's hold, kept in the
    // payment database), so inserting its payment fails (SQLSTATE P0001, transient for
    // pay-svc) on every delivery until the hold is lifted.
    sqlx::raw_sql(
        "CREATE TABLE review_holds (account_id UUID PRIMARY KEY);
         CREATE FUNCTION review_hold() RETURNS trigger LANGUAGE plpgsql AS $$
         BEGIN
           IF EXISTS (SELECT 1 FROM review_holds WHERE account_id = NEW.account_id) THEN
             RAISE EXCEPTION 'wallet % is under review', NEW.account_id;
           END IF;
           RETURN NEW;
         END $$;
         CREATE TRIGGER review_hold BEFORE INSERT ON payments
         FOR EACH ROW EXECUTE FUNCTION review_hold();",
    )
    .execute(&sys.pay_pool)
    .await
    .expect("review hold installed");
    let victim_uuid: Uuid = victim_id.parse().expect("account id");
    sqlx::query("INSERT INTO review_holds (account_id) VALUES ($1)")
        .bind(victim_uuid)
        .execute(&sys.pay_pool)
        .await
        .expect("victim under review");

    let hold = sys.hold(&victim, &event_id, &seats[..1]).await;
    assert_eq!(hold.status, 201, "{:?}", hold.body);
    let stuck = sys.checkout(&victim, &hold.str("/holdId"), "stuck").await;
    assert_eq!(stuck.status, 202, "{:?}", stuck.body);
    let stuck_id = stuck.str("/bookingId");
    // Another purchase completes meanwhile.
    let hold = sys.hold(&other, &event_id, &seats[1..2]).await;
    let fine = sys.checkout(&other, &hold.str("/holdId"), "fine").await;
    assert_eq!(fine.status, 202, "{:?}", fine.body);
    sys.await_booking(&other, &fine.str("/bookingId"), "CONFIRMED")
        .await;

    // And a reply booking-svc cannot read: booking-svc keeps that letter.
    let garbage = Uuid::now_v7();
    sys.bus
        .publish(&Envelope {
            message_id: garbage,
            kind: "payment.succeeded".into(),
            saga_id: Uuid::now_v7(),
            version: 1,
            occurred_at: chrono::Utc::now(),
            trace_context: Default::default(),
            payload: vec![0xff, 0xff, 0xff],
        })
        .await
        .expect("garbage published");

    let found = await_letters(&sys, &admin, |found| found.len() == 2).await;
    let pay_letter = found
        .iter()
        .find(|l| l["service"] == "pay-svc")
        .cloned()
        .expect("pay-svc's letter");
    let prefix = sys.bus_prefix.clone();
    assert_eq!(
        pay_letter["queue"],
        format!("{prefix}pay.payment-requests"),
        "{pay_letter:?}"
    );
    assert_eq!(pay_letter["messageType"], "payment.requested");
    assert_eq!(pay_letter["bookingId"], stuck_id.as_str());
    assert_eq!(pay_letter["state"], "PENDING");
    assert_eq!(pay_letter["timesDeadLettered"], "1");
    let error = pay_letter["firstError"].as_str().unwrap_or_default();
    assert!(error.contains("is under review"), "{error}");
    let deliveries: i64 = pay_letter["deliveries"]
        .as_str()
        .unwrap_or("0")
        .parse()
        .unwrap_or(0);
    assert!(
        deliveries >= 5,
        "retried up to the delivery limit: {deliveries}"
    );
    let booking_letter = found
        .iter()
        .find(|l| l["service"] == "booking-svc")
        .cloned()
        .expect("booking-svc's letter");
    assert_eq!(booking_letter["messageId"], garbage.to_string());
    assert_eq!(
        booking_letter["queue"],
        format!("{prefix}booking.payment-results")
    );
    let pay_id = pay_letter["id"].as_str().unwrap_or_default().to_owned();
    let booking_letter_id = booking_letter["id"].as_str().unwrap_or_default().to_owned();

    // Filtered by queue, and paged one by one across both services.
    let queue = format!("{prefix}pay.payment-requests");
    let only = sys
        .get(
            &format!("/v1/admin/dead-letters?queue={queue}"),
            Some(&admin),
        )
        .await;
    assert_eq!(only.status, 200, "{:?}", only.body);
    assert_eq!(letters(&only.body).len(), 1);
    assert_eq!(letters(&only.body)[0]["id"], pay_id.as_str());
    let first = sys
        .get("/v1/admin/dead-letters?pageSize=1", Some(&admin))
        .await;
    assert_eq!(letters(&first.body).len(), 1, "{:?}", first.body);
    let token = first.str("/nextPageToken");
    let second = sys
        .get(
            &format!("/v1/admin/dead-letters?pageSize=1&pageToken={token}"),
            Some(&admin),
        )
        .await;
    assert_eq!(letters(&second.body).len(), 1, "{:?}", second.body);
    assert_ne!(
        letters(&first.body)[0]["id"],
        letters(&second.body)[0]["id"]
    );
    assert_eq!(second.body["nextPageToken"].as_str().unwrap_or(""), "");

    // Admins only.
    let refused = sys.get("/v1/admin/dead-letters", Some(&buyer)).await;
    assert_eq!(refused.status, 403, "{:?}", refused.body);
    let refused = sys
        .post(
            "/v1/admin/dead-letters:redrive",
            Some(&buyer),
            json!({"ids": [pay_id]}),
        )
        .await;
    assert_eq!(refused.status, 403, "{:?}", refused.body);
    let anonymous = sys.get("/v1/admin/dead-letters", None).await;
    assert_eq!(anonymous.status, 401, "{:?}", anonymous.body);

    // Malformed selections: 400 with a JSON error, nothing redriven.
    let too_many: Vec<String> = (0..501).map(|_| Uuid::now_v7().to_string()).collect();
    for body in [
        json!({"ids": []}),
        json!({}),
        json!({"ids": ["not-a-uuid"]}),
        json!({"ids": [pay_id, "not-a-uuid"]}),
        json!({"ids": [pay_id], "force": true}),
        json!({"ids": too_many}),
        json!({"ids": "one"}),
    ] {
        let bad = sys
            .post("/v1/admin/dead-letters:redrive", Some(&admin), body.clone())
            .await;
        assert_eq!(bad.status, 400, "{body}: {:?}", bad.body);
        assert!(bad.body.is_object(), "{body}: {:?}", bad.body);
    }
    let unchanged = await_letters(&sys, &admin, |found| found.len() == 2).await;
    assert!(
        unchanged.iter().all(|l| l["state"] == "PENDING"),
        "{unchanged:?}"
    );
    let booking_uuid: Uuid = stuck_id.parse().expect("booking id");
    assert_eq!(payments_of(&sys, booking_uuid).await, (0, 0));

    // The fix: the review is over. One redrive of both letters (one per service) and
    // an unknown id.
    sqlx::query("DELETE FROM review_holds WHERE account_id = $1")
        .bind(victim_uuid)
        .execute(&sys.pay_pool)
        .await
        .expect("review hold lifted");
    let unknown = Uuid::now_v7().to_string();
    let redrive = sys
        .post(
            "/v1/admin/dead-letters:redrive",
            Some(&admin),
            json!({"ids": [pay_id, booking_letter_id, unknown]}),
        )
        .await;
    assert_eq!(redrive.status, 200, "{:?}", redrive.body);
    let mut redriven: Vec<String> = redrive.body["redriven"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .iter()
        .filter_map(|v| v.as_str().map(str::to_owned))
        .collect();
    redriven.sort();
    let mut expected = vec![pay_id.clone(), booking_letter_id.clone()];
    expected.sort();
    assert_eq!(redriven, expected, "{:?}", redrive.body);
    assert_eq!(redrive.body["notFound"], json!([unknown]));
    sys.await_booking(&victim, &stuck_id, "CONFIRMED").await;
    assert_eq!(payments_of(&sys, booking_uuid).await, (1, 1));
    assert_eq!(sys.balance(&victim).await, balance_before - 10_000);

    // Twice has one effect.
    let again = sys
        .post(
            "/v1/admin/dead-letters:redrive",
            Some(&admin),
            json!({"ids": [pay_id]}),
        )
        .await;
    assert_eq!(again.status, 200, "{:?}", again.body);
    assert_eq!(again.body["alreadyRedriven"], json!([pay_id]));
    assert!(
        again.body["redriven"]
            .as_array()
            .is_none_or(|r| r.is_empty()),
        "{:?}",
        again.body
    );
    // The garbage reply fails again: pending again, dead-lettered twice; the payment
    // letter stays redriven.
    let after = await_letters(&sys, &admin, |found| {
        found
            .iter()
            .any(|l| l["id"] == booking_letter_id.as_str() && l["timesDeadLettered"] == "2")
    })
    .await;
    for letter in &after {
        if letter["id"] == pay_id.as_str() {
            assert_eq!(letter["state"], "REDRIVEN", "{letter:?}");
            assert!(letter["redrivenAt"].is_string(), "{letter:?}");
        } else {
            assert_eq!(letter["state"], "PENDING", "{letter:?}");
        }
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(payments_of(&sys, booking_uuid).await, (1, 1));
    assert_eq!(sys.balance(&victim).await, balance_before - 10_000);
    let pending = sys
        .get("/v1/admin/dead-letters?state=PENDING", Some(&admin))
        .await;
    assert_eq!(pending.status, 200, "{:?}", pending.body);
    assert_eq!(letters(&pending.body).len(), 1, "{:?}", pending.body);

    sys.stop().await;
}

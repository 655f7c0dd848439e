//! Bad input through the REST gateway gets a clear 4xx with a JSON error body — never
//! a 5xx — and stores nothing.

mod common;

use common::{JWT_SECRET, Reply, System};
use marquee_infra::auth::TokenKeys;
use reqwest::Method;
use serde_json::{Value, json};

fn assert_error(reply: &Reply, status: u16, what: &str) {
    assert_eq!(reply.status, status, "{what}: {:?}", reply.body);
    assert!(
        reply.body["code"].is_number(),
        "{what}: no code in {:?}",
        reply.body
    );
    assert!(
        !reply.body["message"]
            .as_str()
            .unwrap_or_default()
            .is_empty(),
        "{what}: no message in {:?}",
        reply.body
    );
    assert!(
        reply.body["details"].is_array(),
        "{what}: no details in {:?}",
        reply.body
    );
}

async fn raw(sys: &System, method: Method, path: &str, token: Option<&str>, body: &str) -> Reply {
    let mut request = sys
        .http
        .request(method, format!("{}{path}", sys.base))
        .header("content-type", "application/json")
        .body(body.to_owned());
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    let text = response.text().await.unwrap();
    let body: Value =
        serde_json::from_str(&text).unwrap_or_else(|_| panic!("non-JSON error body: {text}"));
    Reply { status, body }
}

#[tokio::test]
async fn bad_input_is_refused_with_json_errors_and_nothing_is_stored() {
    let sys = System::start().await;
    let (_, seller) = sys.account("SELLER").await;
    let event = sys.event(&seller, &[("A", 5_000, 1, 6)], 0).await;
    let event_id = event["eventId"].as_str().unwrap().to_owned();
    let other = sys.event(&seller, &[("A", 5_000, 1, 2)], 0).await;
    let other_seat = sys.seats(other["eventId"].as_str().unwrap()).await[0]
        .0
        .clone();
    let (_, buyer) = sys.account("BUYER").await;
    let seats: Vec<String> = sys.seat_ids(&event_id).await;
    let accounts_before: i64 = sqlx::query_scalar("SELECT count(*) FROM accounts")
        .fetch_one(&sys.booking_pool)
        .await
        .unwrap();

    // Malformed and incomplete sign-ups.
    assert_error(
        &raw(&sys, Method::POST, "/v1/accounts", None, "{\"email\": ").await,
        400,
        "malformed JSON",
    );
    assert_error(
        &raw(&sys, Method::POST, "/v1/accounts", None, "[1,2]").await,
        400,
        "JSON array",
    );
    assert_error(
        &sys.post("/v1/accounts", None, json!({})).await,
        400,
        "empty sign-up",
    );
    assert_error(
        &sys.post("/v1/accounts", None, json!({"email": "nope", "password": "long enough pw", "displayName": "x", "role": "BUYER"})).await,
        400,
        "bad email",
    );
    assert_error(
        &sys.post(
            "/v1/accounts",
            None,
            json!({"email": "a@b.co", "password": "short", "displayName": "x", "role": "BUYER"}),
        )
        .await,
        400,
        "short password",
    );
    assert_error(
        &sys.post("/v1/accounts", None, json!({"email": "a@b.co", "password": "long enough pw", "displayName": "x", "role": "ADMIN"})).await,
        400,
        "self-made admin",
    );
    assert_error(
        &sys.post("/v1/accounts", None, json!({"email": "a@b.co", "password": "long enough pw", "displayName": "x", "role": "KING"})).await,
        400,
        "unknown role",
    );
    assert_error(
        &sys.post("/v1/accounts", None, json!({"email": "a@b.co", "password": "long enough pw", "displayName": "x", "role": "BUYER", "isAdmin": true})).await,
        400,
        "unknown field",
    );
    assert_error(
        &sys.post(
            "/v1/sessions",
            None,
            json!({"email": "a@b.co", "password": "whatever1"}),
        )
        .await,
        401,
        "unknown login",
    );

    // Events: only sellers, only complete ones.
    assert_error(
        &sys.post("/v1/events", Some(&buyer), json!({"title": "x"}))
            .await,
        403,
        "buyer creates event",
    );
    assert_error(
        &sys.post("/v1/events", None, json!({"title": "x"})).await,
        401,
        "anonymous creates event",
    );
    assert_error(
        &sys.post("/v1/events", Some(&seller), json!({"title": "x"}))
            .await,
        400,
        "incomplete event",
    );
    assert_error(
        &sys.get("/v1/events/not-a-uuid", None).await,
        400,
        "bad event id",
    );
    assert_error(
        &sys.get(&format!("/v1/events/{}", uuid::Uuid::new_v4()), None)
            .await,
        404,
        "unknown event",
    );

    // Holds.
    let holds = format!("/v1/events/{event_id}/holds");
    assert_error(
        &sys.post(&holds, Some(&buyer), json!({"seatIds": []})).await,
        400,
        "zero seats",
    );
    assert_error(
        &sys.post(&holds, Some(&buyer), json!({"seatIds": &seats[..5]}))
            .await,
        400,
        "too many seats",
    );
    assert_error(
        &sys.post(
            &holds,
            Some(&buyer),
            json!({"seatIds": [seats[0], seats[0]]}),
        )
        .await,
        400,
        "duplicate seat",
    );
    assert_error(
        &sys.post(&holds, Some(&buyer), json!({"seatIds": ["junk"]}))
            .await,
        400,
        "junk seat id",
    );
    assert_error(
        &sys.post(&holds, Some(&buyer), json!({"seatIds": "x"}))
            .await,
        400,
        "wrong type",
    );
    assert_error(
        &sys.post(
            &holds,
            Some(&buyer),
            json!({"seatIds": [uuid::Uuid::new_v4().to_string()]}),
        )
        .await,
        400,
        "unknown seat",
    );
    assert_error(
        &sys.post(&holds, Some(&buyer), json!({"seatIds": [other_seat]}))
            .await,
        400,
        "seat of another event",
    );
    assert_error(
        &sys.post(
            &format!("/v1/events/{}/holds", uuid::Uuid::new_v4()),
            Some(&buyer),
            json!({"seatIds": [seats[0]]}),
        )
        .await,
        404,
        "hold at unknown event",
    );
    assert_error(
        &sys.post(&holds, None, json!({"seatIds": [seats[0]]})).await,
        401,
        "anonymous hold",
    );

    // Tokens: expired, forged, garbage.
    let claims = TokenKeys::new(JWT_SECRET, chrono::Duration::hours(1))
        .verify(&buyer)
        .unwrap();
    let (expired, _) = TokenKeys::new(JWT_SECRET, chrono::Duration::minutes(-10))
        .issue(&claims.sub, "BUYER")
        .unwrap();
    let (forged, _) = TokenKeys::new("not-the-secret", chrono::Duration::hours(1))
        .issue(&claims.sub, "SELLER")
        .unwrap();
    for (token, what) in [
        (expired.as_str(), "expired"),
        (forged.as_str(), "forged"),
        ("garbage", "garbage"),
    ] {
        assert_error(
            &sys.post(&holds, Some(token), json!({"seatIds": [seats[0]]}))
                .await,
            401,
            what,
        );
        assert_error(&sys.get("/v1/wallet", Some(token)).await, 401, what);
    }

    // Checkout.
    let book = |body: Value, key: Option<&'static str>| {
        let sys = &sys;
        let buyer = &buyer;
        async move {
            let headers: Vec<(&str, &str)> = key
                .map(|k| vec![("Idempotency-Key", k)])
                .unwrap_or_default();
            sys.call(
                Method::POST,
                "/v1/bookings",
                Some(buyer),
                Some(body),
                &headers,
            )
            .await
        }
    };
    let unknown_hold = uuid::Uuid::new_v4().to_string();
    assert_error(
        &book(
            json!({"holdId": unknown_hold, "paymentMethod": "WALLET"}),
            None,
        )
        .await,
        400,
        "no idempotency key",
    );
    assert_error(
        &book(
            json!({"holdId": unknown_hold, "paymentMethod": "WALLET"}),
            Some("k1"),
        )
        .await,
        404,
        "unknown hold",
    );
    assert_error(
        &book(json!({"holdId": unknown_hold}), Some("k2")).await,
        400,
        "no payment method",
    );
    assert_error(
        &book(
            json!({"holdId": unknown_hold, "paymentMethod": "CASH"}),
            Some("k3"),
        )
        .await,
        400,
        "unknown payment method",
    );
    assert_error(
        &book(json!({"paymentMethod": "WALLET"}), Some("k4")).await,
        400,
        "no hold id",
    );
    assert_error(
        &sys.get(
            &format!("/v1/bookings/{}", uuid::Uuid::new_v4()),
            Some(&buyer),
        )
        .await,
        404,
        "unknown booking",
    );
    assert_error(
        &sys.get("/v1/bookings?pageSize=-3", Some(&buyer)).await,
        400,
        "negative page size",
    );
    assert_error(
        &sys.get("/v1/bookings?pageSize=abc", Some(&buyer)).await,
        400,
        "junk page size",
    );

    // Routes that do not exist.
    assert_error(
        &sys.get("/v1/nothing-here", None).await,
        404,
        "unknown route",
    );
    assert_error(
        &sys.call(Method::PUT, "/v1/accounts", None, Some(json!({})), &[])
            .await,
        405,
        "wrong method",
    );

    // Nothing was stored by any of it.
    let accounts_after: i64 = sqlx::query_scalar("SELECT count(*) FROM accounts")
        .fetch_one(&sys.booking_pool)
        .await
        .unwrap();
    assert_eq!(accounts_after, accounts_before);
    let bookings: i64 = sqlx::query_scalar("SELECT count(*) FROM bookings")
        .fetch_one(&sys.booking_pool)
        .await
        .unwrap();
    assert_eq!(bookings, 0);
    let events: i64 = sqlx::query_scalar("SELECT count(*) FROM events")
        .fetch_one(&sys.booking_pool)
        .await
        .unwrap();
    assert_eq!(events, 2);
    assert!(
        sys.seats(&event_id)
            .await
            .iter()
            .all(|s| s.1 == "AVAILABLE")
    );
    // And the system still works.
    let hold = sys
        .post(&holds, Some(&buyer), json!({"seatIds": [seats[0]]}))
        .await;
    assert_eq!(hold.status, 201, "{:?}", hold.body);
    sys.stop().await;
}

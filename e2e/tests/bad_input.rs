//! Bad input through the REST gateway gets a clear 4xx with a JSON error body — never
//! a 5xx — and stores nothing.

use marquee_e2e::{JWT_SECRET, Reply, System};
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

/// `body` with the string at JSON `pointer` replaced by `value`.
fn with(body: &Value, pointer: &str, value: &str) -> Value {
    let mut body = body.clone();
    *body
        .pointer_mut(pointer)
        .unwrap_or_else(|| panic!("no {pointer} in the body")) = json!(value);
    body
}

#[tokio::test]
async fn unstorable_characters_in_text_fields_are_a_400_naming_the_field_and_store_nothing() {
    let sys = System::start().await;
    let (_, seller) = sys.account("SELLER").await;
    let (_, buyer) = sys.account("BUYER").await;
    let accounts_before: i64 = sqlx::query_scalar("SELECT count(*) FROM accounts")
        .fetch_one(&sys.booking_pool)
        .await
        .unwrap();

    // Sign-ups: each row uses a fresh, valid email unless the email is the bad field.
    let sign_up = |email: &str| json!({"email": email, "password": "long enough pw", "displayName": "Ann", "role": "BUYER"});
    let fresh = || format!("nul-{}@example.com", uuid::Uuid::new_v4().simple());
    let account_rows: Vec<(&str, Value, &str)> = vec![
        ("NUL in email", sign_up("ann\u{0}@example.com"), "email"),
        (
            "NUL at the end of email",
            sign_up(&format!("{}\u{0}", fresh())),
            "email",
        ),
        (
            "NUL in displayName",
            with(&sign_up(&fresh()), "/displayName", "Ann\u{0}Lee"),
            "displayName",
        ),
        (
            "NUL alone as displayName",
            with(&sign_up(&fresh()), "/displayName", "\u{0}"),
            "displayName",
        ),
        (
            "escape in displayName",
            with(&sign_up(&fresh()), "/displayName", "\u{1b}[31mAnn"),
            "displayName",
        ),
        (
            "newline in displayName",
            with(&sign_up(&fresh()), "/displayName", "Ann\nLee"),
            "displayName",
        ),
        (
            "DEL in displayName",
            with(&sign_up(&fresh()), "/displayName", "Ann\u{7f}"),
            "displayName",
        ),
        (
            "C1 control in displayName",
            with(&sign_up(&fresh()), "/displayName", "An\u{85}n"),
            "displayName",
        ),
        (
            "NUL in password",
            with(&sign_up(&fresh()), "/password", "long enough\u{0}pw"),
            "password",
        ),
    ];
    for (what, body, field) in &account_rows {
        let reply = sys.post("/v1/accounts", None, body.clone()).await;
        assert_field_error(&reply, what, field);
        // Nothing was stored: the account cannot log in.
        let email = body["email"].as_str().unwrap();
        if !email.contains('\u{0}') {
            let login = sys
                .post(
                    "/v1/sessions",
                    None,
                    json!({"email": email, "password": body["password"]}),
                )
                .await;
            assert_eq!(
                login.status, 401,
                "{what}: log-in after a refused sign-up: {:?}",
                login.body
            );
        }
    }

    // Log-in: the email is looked up in the database.
    for (what, body) in [
        (
            "NUL in log-in email",
            json!({"email": "ann\u{0}@example.com", "password": "long enough pw"}),
        ),
        (
            "NUL alone as log-in email",
            json!({"email": "\u{0}", "password": "long enough pw"}),
        ),
    ] {
        assert_field_error(&sys.post("/v1/sessions", None, body).await, what, "email");
    }

    // Events: every text field of the event and of its layout.
    let starts = chrono::Utc::now() + chrono::Duration::days(30);
    let event = json!({
        "title": "Nul Night",
        "category": "CONCERT",
        "description": "fine",
        "venue": "Olympic Hall",
        "startsAt": starts.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        "sections": [{
            "name": "VIP",
            "price": {"amountMinor": "1000", "currency": "KRW"},
            "rows": [{"label": "A", "seats": [{"number": "1", "x": 0.0, "y": 0.0}]}],
        }],
    });
    let events_before = sys.get("/v1/events?pageSize=100", None).await;
    assert_eq!(events_before.status, 200, "{:?}", events_before.body);
    let event_rows = [
        ("/title", "Nul\u{0} Night", "title"),
        ("/title", "\u{0}", "title"),
        ("/title", "Nul\u{1}Night", "title"),
        ("/category", "CON\u{0}CERT", "category"),
        ("/description", "fine\u{0}", "description"),
        ("/description", "bell\u{7}", "description"),
        ("/venue", "Olympic\u{0}Hall", "venue"),
        ("/venue", "Olympic\nHall", "venue"),
        ("/sections/0/name", "V\u{0}IP", "sections.name"),
        ("/sections/0/rows/0/label", "A\u{0}", "sections.rows.label"),
        (
            "/sections/0/rows/0/seats/0/number",
            "1\u{0}",
            "sections.rows.seats.number",
        ),
        (
            "/sections/0/rows/0/seats/0/number",
            "1\t2",
            "sections.rows.seats.number",
        ),
        (
            "/sections/0/price/currency",
            "KR\u{0}",
            "sections.price.currency",
        ),
    ];
    for (pointer, value, field) in event_rows {
        let what = format!("{value:?} in {pointer}");
        let reply = sys
            .post("/v1/events", Some(&seller), with(&event, pointer, value))
            .await;
        assert_field_error(&reply, &what, field);
    }
    let events_after = sys.get("/v1/events?pageSize=100", None).await;
    assert_eq!(events_after.body, events_before.body, "an event was stored");

    // Checkout: the idempotency key is stored with the booking.
    let reply = sys
        .post(
            "/v1/bookings",
            Some(&buyer),
            json!({"holdId": uuid::Uuid::new_v4().to_string(), "paymentMethod": "WALLET", "idempotencyKey": "k\u{0}"}),
        )
        .await;
    assert_field_error(&reply, "NUL in idempotencyKey", "idempotencyKey");
    // Page tokens and ids are parsed, never stored, but NUL is still a 400.
    assert_field_error(
        &sys.get("/v1/events?pageToken=%00", None).await,
        "NUL in pageToken",
        "pageToken",
    );
    assert_field_error(
        &sys.get("/v1/bookings?pageToken=1%00", Some(&buyer)).await,
        "NUL in bookings pageToken",
        "pageToken",
    );
    assert_field_error(
        &sys.get("/v1/events/%00", None).await,
        "NUL as event id",
        "eventId",
    );
    assert_error(
        &sys.get("/v1/wallet?pageSize=%00", Some(&buyer)).await,
        400,
        "NUL as wallet pageSize",
    );
    // A lone surrogate is not text at all.
    assert_error(
        &raw(
            &sys,
            Method::POST,
            "/v1/accounts",
            None,
            r#"{"email": "ann@example.com", "password": "long enough pw", "displayName": "\ud800", "role": "BUYER"}"#,
        )
        .await,
        400,
        "lone surrogate in displayName",
    );

    let accounts_after: i64 = sqlx::query_scalar("SELECT count(*) FROM accounts")
        .fetch_one(&sys.booking_pool)
        .await
        .unwrap();
    assert_eq!(accounts_after, accounts_before, "an account was stored");

    // Line breaks around an email are trimmed, at sign-up and at log-in alike.
    let email = fresh();
    let signed = sys
        .post("/v1/accounts", None, sign_up(&format!(" {email}\r\n")))
        .await;
    assert_eq!(signed.status, 201, "{:?}", signed.body);
    let login = sys
        .post(
            "/v1/sessions",
            None,
            json!({"email": format!("{email}\n"), "password": "long enough pw"}),
        )
        .await;
    assert_eq!(login.status, 201, "{:?}", login.body);

    // A description keeps its tabs and line breaks; other text still trims.
    let multiline = with(&event, "/description", "line one\n\tline two\r\nthree");
    let multiline = with(&multiline, "/title", "  Nul Night  ");
    let created = sys.post("/v1/events", Some(&seller), multiline).await;
    assert_eq!(created.status, 201, "{:?}", created.body);
    assert_eq!(created.str("/description"), "line one\n\tline two\r\nthree");
    assert_eq!(created.str("/title"), "Nul Night");
    sys.stop().await;
}

/// A 400 INVALID_ARGUMENT whose message and field violation name `field`.
fn assert_field_error(reply: &Reply, what: &str, field: &str) {
    assert_error(reply, 400, what);
    assert_eq!(reply.body["code"], 3, "{what}: {:?}", reply.body);
    let message = reply.body["message"].as_str().unwrap_or_default();
    assert!(
        message.starts_with(&format!("{field}:")),
        "{what}: message {message:?} does not name {field}"
    );
    assert_eq!(
        violated_fields(reply),
        vec![field.to_owned()],
        "{what}: {:?}",
        reply.body
    );
}

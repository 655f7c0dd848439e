//! Two-factor sign-in (issue 14) through the REST gateway, against the whole system:
//! enrolment and confirmation, log-in with a TOTP code (single-use, one step of clock
//! skew), the lockout after five wrong codes and its end, recovery codes (single-use,
//! even when sent twice at once, and unlocking), selling routes refusing a session
//! without the second factor, and bad input on every new route.

use std::time::Duration;

use marquee_e2e::{JWT_SECRET, Options, PASSWORD, Reply, System, event_body};
use marquee_infra::auth::TokenKeys;
use marquee_testkit::totp::{self, code_at_offset};
use serde_json::{Value, json};
use uuid::Uuid;

/// The `reason` of the reply's ErrorInfo, or "".
fn reason(reply: &Reply) -> String {
    reply.body["details"]
        .as_array()
        .into_iter()
        .flatten()
        .find_map(|d| d["reason"].as_str())
        .unwrap_or_default()
        .to_owned()
}

/// The fields the reply's BadRequest names.
fn violations(reply: &Reply) -> Vec<String> {
    reply.body["details"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|d| d["fieldViolations"].as_array().into_iter().flatten())
        .filter_map(|v| v["field"].as_str().map(str::to_owned))
        .collect()
}

fn assert_reason(reply: &Reply, status: u16, expected: &str, what: &str) {
    assert_eq!(reply.status, status, "{what}: {:?}", reply.body);
    assert_eq!(reason(reply), expected, "{what}: {:?}", reply.body);
}

/// A 6-digit code that is not the secret's code for the previous, current or next step
/// (so it is wrong whenever the server checks it).
fn wrong_code(secret: &str) -> String {
    let right: Vec<String> = [-30, 0, 30, 60]
        .iter()
        .map(|offset| code_at_offset(secret, *offset))
        .collect();
    (0..1_000_000)
        .map(|n: u32| format!("{:06}", (n * 7_919) % 1_000_000))
        .find(|c| !right.contains(c))
        .expect("a wrong code")
}

/// The stored two-factor state of an account: (failed attempts, locked, last step).
async fn stored(sys: &System, account: &str) -> (i32, bool, Option<i64>) {
    let id: Uuid = account.parse().expect("account id");
    sqlx::query_as(
        "SELECT failed_attempts, locked_until IS NOT NULL, last_step
         FROM account_two_factor WHERE account_id = $1",
    )
    .bind(id)
    .fetch_one(&sys.booking_pool)
    .await
    .expect("two-factor row")
}

#[tokio::test]
async fn enrolment_confirmation_and_a_log_in_with_a_single_use_code() {
    let sys = System::start().await;
    let (account_id, email) = sys.sign_up("SELLER").await;
    let before = sys.log_in(&email, json!({})).await;
    assert_eq!(before.status, 201, "{:?}", before.body);
    assert_eq!(before.body["twoFactor"], json!(false), "{:?}", before.body);
    let token = before.str("/accessToken");

    // Enrolment: a base32 secret and its otpauth URI; again before confirming: a new
    // secret replaces the first, whose codes no longer confirm.
    let first = sys.post("/v1/me/two-factor", Some(&token), json!({})).await;
    assert_eq!(first.status, 201, "{:?}", first.body);
    let first_secret = first.str("/secret");
    assert_eq!(first_secret.len(), 32, "160 bits in base32: {first_secret}");
    assert!(
        first_secret
            .bytes()
            .all(|b| b.is_ascii_uppercase() || (b'2'..=b'7').contains(&b)),
        "{first_secret}"
    );
    assert_eq!(
        first.str("/otpauthUri"),
        format!(
            "otpauth://totp/Marquee:{email}?secret={first_secret}&issuer=Marquee&algorithm=SHA1&digits=6&period=30"
        )
    );
    let second = sys.post("/v1/me/two-factor", Some(&token), json!({})).await;
    assert_eq!(second.status, 201, "{:?}", second.body);
    let secret = second.str("/secret");
    assert_ne!(secret, first_secret, "enrolling again gives a fresh secret");
    totp::settle(Duration::from_secs(5)).await;
    let stale = sys
        .post(
            "/v1/me/two-factor:confirm",
            Some(&token),
            json!({"code": code_at_offset(&first_secret, 0)}),
        )
        .await;
    assert_eq!(
        stale.status, 400,
        "the replaced secret's code: {:?}",
        stale.body
    );
    assert_eq!(violations(&stale), ["code"], "{:?}", stale.body);

    // Until it is confirmed, the password alone still logs in.
    assert_eq!(sys.log_in(&email, json!({})).await.status, 201);

    // Confirmation: ten distinct recovery codes, stored only as hashes.
    let confirmed = sys
        .post(
            "/v1/me/two-factor:confirm",
            Some(&token),
            json!({"code": code_at_offset(&secret, 0)}),
        )
        .await;
    assert_eq!(confirmed.status, 200, "{:?}", confirmed.body);
    let codes: Vec<String> = confirmed.body["recoveryCodes"]
        .as_array()
        .expect("recovery codes")
        .iter()
        .map(|c| c.as_str().expect("code").to_owned())
        .collect();
    assert_eq!(codes.len(), 10);
    let mut distinct = codes.clone();
    distinct.sort();
    distinct.dedup();
    assert_eq!(distinct.len(), 10);
    for code in &codes {
        assert_eq!(code.len(), 19, "xxxx-xxxx-xxxx-xxxx: {code}");
    }
    let stored_codes: Vec<String> =
        sqlx::query_scalar("SELECT code_hash FROM recovery_codes WHERE account_id = $1")
            .bind(account_id.parse::<Uuid>().expect("id"))
            .fetch_all(&sys.booking_pool)
            .await
            .expect("hashes");
    assert_eq!(stored_codes.len(), 10);
    for code in &codes {
        let bare = code.replace('-', "");
        assert!(
            stored_codes
                .iter()
                .all(|h| h.len() == 64 && *h != bare && h != code),
            "a recovery code is stored as it is shown"
        );
    }

    // Once confirmed: enrolling or confirming again is 409.
    let again = sys.post("/v1/me/two-factor", Some(&token), json!({})).await;
    assert_eq!(again.status, 409, "{:?}", again.body);
    let reconfirm = sys
        .post(
            "/v1/me/two-factor:confirm",
            Some(&token),
            json!({"code": code_at_offset(&secret, 30)}),
        )
        .await;
    assert_eq!(reconfirm.status, 409, "{:?}", reconfirm.body);

    // The password alone is no longer enough: 401 TWO_FACTOR_REQUIRED. A wrong password
    // is the usual 401, whatever the code, and is not a two-factor failure.
    let missing = sys.log_in(&email, json!({})).await;
    assert_reason(&missing, 401, "TWO_FACTOR_REQUIRED", "no code");
    let wrong_password = sys
        .post(
            "/v1/sessions",
            None,
            json!({"email": email, "password": "not the password", "code": wrong_code(&secret)}),
        )
        .await;
    assert_eq!(wrong_password.status, 401, "{:?}", wrong_password.body);
    assert_eq!(reason(&wrong_password), "", "{:?}", wrong_password.body);
    assert_eq!(
        stored(&sys, &account_id).await.0,
        0,
        "a wrong password counted"
    );

    // A valid code: a session with the second factor, in the token too.
    let code = code_at_offset(&secret, 30);
    let session = sys.log_in(&email, json!({"code": code})).await;
    assert_eq!(session.status, 201, "{:?}", session.body);
    assert_eq!(session.body["twoFactor"], json!(true));
    let claims = TokenKeys::new(JWT_SECRET, chrono::Duration::hours(1))
        .verify(&session.str("/accessToken"))
        .expect("token");
    assert!(
        claims.mfa,
        "the token does not say it has the second factor"
    );
    assert_eq!(
        sys.get("/v1/me", Some(&session.str("/accessToken")))
            .await
            .status,
        200
    );

    // The same code again, within its window: refused, and counted as a failure.
    let replay = sys.log_in(&email, json!({"code": code})).await;
    assert_reason(&replay, 401, "TWO_FACTOR_CODE_INVALID", "replayed code");
    assert_eq!(replay.body["details"][0]["metadata"]["attemptsLeft"], "4");
    assert_eq!(stored(&sys, &account_id).await.0, 1);
    sys.stop().await;
}

#[tokio::test]
async fn one_step_of_clock_skew_is_accepted_and_two_are_not() {
    let sys = System::start().await;
    let seller = sys.seller().await;
    let secret = seller.authenticator.secret.clone();
    // As if the last code had been used long ago: otherwise a code for an earlier step
    // than the confirmation's would be refused as used, whatever the window.
    sqlx::query("UPDATE account_two_factor SET last_step = NULL WHERE account_id = $1")
        .bind(seller.account_id.parse::<Uuid>().expect("id"))
        .execute(&sys.booking_pool)
        .await
        .expect("reset last step");
    // The offsets below mean what they say only if the server checks in this step.
    totp::settle(Duration::from_secs(10)).await;
    for offset in [-60, 60] {
        let far = sys
            .log_in(
                &seller.email,
                json!({"code": code_at_offset(&secret, offset)}),
            )
            .await;
        assert_reason(&far, 401, "TWO_FACTOR_CODE_INVALID", &format!("{offset} s"));
    }
    let behind = sys
        .log_in(&seller.email, json!({"code": code_at_offset(&secret, -30)}))
        .await;
    assert_eq!(behind.status, 201, "a code 30 s behind: {:?}", behind.body);
    let ahead = sys
        .log_in(&seller.email, json!({"code": code_at_offset(&secret, 30)}))
        .await;
    assert_eq!(ahead.status, 201, "a code 30 s ahead: {:?}", ahead.body);
    // The current step is before the last accepted one: its code is spent too.
    let current = sys
        .log_in(&seller.email, json!({"code": code_at_offset(&secret, 0)}))
        .await;
    assert_reason(
        &current,
        401,
        "TWO_FACTOR_CODE_INVALID",
        "a step before the last",
    );
    sys.stop().await;
}

#[tokio::test]
async fn five_wrong_codes_lock_the_account_until_the_lockout_ends() {
    let sys = System::start_with(Options {
        two_factor_lockout: Duration::from_secs(4),
        ..Options::default()
    })
    .await;
    let mut seller = sys.seller().await;
    // A right code, taken before the lock (the authenticator may have to wait for a
    // fresh step, longer than the lock lasts).
    let right = seller.authenticator.next_code().await;
    let wrong = wrong_code(&seller.authenticator.secret);
    for left in (1..=4).rev() {
        let refused = sys.log_in(&seller.email, json!({"code": wrong})).await;
        assert_reason(&refused, 401, "TWO_FACTOR_CODE_INVALID", "wrong code");
        assert_eq!(
            refused.body["details"][0]["metadata"]["attemptsLeft"],
            left.to_string()
        );
    }
    let fifth = sys.log_in(&seller.email, json!({"code": wrong})).await;
    assert_reason(&fifth, 403, "ACCOUNT_LOCKED", "fifth wrong code");
    let until = fifth.body["details"][0]["metadata"]["lockedUntil"]
        .as_str()
        .expect("lockedUntil")
        .to_owned();
    let until = chrono::DateTime::parse_from_rfc3339(&until).expect("an RFC 3339 time");
    assert!(until > chrono::Utc::now(), "{until}");

    // While locked, even a right code is refused (and nothing counts).
    let locked = sys.log_in(&seller.email, json!({"code": right})).await;
    assert_reason(&locked, 403, "ACCOUNT_LOCKED", "right code while locked");
    let (failed, locked, _) = stored(&sys, &seller.account_id).await;
    assert_eq!((failed, locked), (5, true));

    // The lock ends: a right code logs in and the count starts again.
    let left = (until.with_timezone(&chrono::Utc) - chrono::Utc::now())
        .to_std()
        .unwrap_or_default();
    tokio::time::sleep(left + Duration::from_millis(200)).await;
    let code = seller.authenticator.next_code().await;
    let after = sys.log_in(&seller.email, json!({"code": code})).await;
    assert_eq!(after.status, 201, "after the lockout: {:?}", after.body);
    assert_eq!(after.body["twoFactor"], json!(true));
    let (failed, locked, _) = stored(&sys, &seller.account_id).await;
    assert_eq!((failed, locked), (0, false));

    // Wrong codes sent at once cannot count past five: four are told how many are
    // left, the rest find the account locked.
    let other = sys.seller().await;
    let wrong = wrong_code(&other.authenticator.secret);
    let replies = futures::future::join_all(
        (0..10).map(|_| sys.log_in(&other.email, json!({"code": wrong}))),
    )
    .await;
    let invalid = replies
        .iter()
        .filter(|r| r.status == 401 && reason(r) == "TWO_FACTOR_CODE_INVALID")
        .count();
    let locked = replies
        .iter()
        .filter(|r| r.status == 403 && reason(r) == "ACCOUNT_LOCKED")
        .count();
    assert_eq!((invalid, locked), (4, 6), "{replies:?}");
    let (failed, locked, _) = stored(&sys, &other.account_id).await;
    assert_eq!((failed, locked), (5, true));
    sys.stop().await;
}

#[tokio::test]
async fn a_recovery_code_unlocks_the_account_once() {
    let sys = System::start().await;
    let mut seller = sys.seller().await;
    let wrong = wrong_code(&seller.authenticator.secret);
    for _ in 0..5 {
        sys.log_in(&seller.email, json!({"code": wrong})).await;
    }
    let code = seller.authenticator.next_code().await;
    assert_reason(
        &sys.log_in(&seller.email, json!({"code": code})).await,
        403,
        "ACCOUNT_LOCKED",
        "locked",
    );

    // With a wrong password the recovery code does nothing (and is not used up).
    let recovery = seller.recovery_codes[0].clone();
    let wrong_password = sys
        .post(
            "/v1/sessions",
            None,
            json!({"email": seller.email, "password": "not the password", "recoveryCode": recovery}),
        )
        .await;
    assert_eq!(wrong_password.status, 401, "{:?}", wrong_password.body);

    // With the password: a two-factor session, the account unlocked, the count reset.
    let unlocked = sys
        .log_in(&seller.email, json!({"recoveryCode": recovery}))
        .await;
    assert_eq!(unlocked.status, 201, "{:?}", unlocked.body);
    assert_eq!(unlocked.body["twoFactor"], json!(true));
    let (failed, locked, _) = stored(&sys, &seller.account_id).await;
    assert_eq!((failed, locked), (0, false));
    let code = seller.authenticator.next_code().await;
    assert_eq!(
        sys.log_in(&seller.email, json!({"code": code}))
            .await
            .status,
        201,
        "a code works again"
    );

    // Used once: the same recovery code again is refused.
    let again = sys
        .log_in(&seller.email, json!({"recoveryCode": recovery}))
        .await;
    assert_reason(&again, 401, "TWO_FACTOR_CODE_INVALID", "used recovery code");

    // Typed in another case, without the dashes, another code works.
    let typed = seller.recovery_codes[1].replace('-', "").to_uppercase();
    assert_eq!(
        sys.log_in(&seller.email, json!({"recoveryCode": typed}))
            .await
            .status,
        201
    );

    // One code sent twice at the same moment logs in once.
    let twice = seller.recovery_codes[2].clone();
    let (a, b) = tokio::join!(
        sys.log_in(&seller.email, json!({"recoveryCode": twice})),
        sys.log_in(&seller.email, json!({"recoveryCode": twice})),
    );
    let mut statuses = [a.status, b.status];
    statuses.sort_unstable();
    assert_eq!(statuses, [201, 401], "{a:?} {b:?}");
    let used: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM recovery_codes WHERE account_id = $1 AND used_at IS NOT NULL",
    )
    .bind(seller.account_id.parse::<Uuid>().expect("id"))
    .fetch_one(&sys.booking_pool)
    .await
    .expect("count");
    assert_eq!(used, 3);
    sys.stop().await;
}

#[tokio::test]
async fn a_seller_session_without_the_second_factor_sells_nothing() {
    let sys = System::start().await;
    let (_, email) = sys.sign_up("SELLER").await;
    let session = sys.log_in(&email, json!({})).await;
    let password_only = session.str("/accessToken");

    // Without an authenticator: no event.
    let refused = sys
        .post("/v1/events", Some(&password_only), event_body("Nope", 4, 2))
        .await;
    assert_reason(&refused, 403, "TWO_FACTOR_REQUIRED", "create event");

    // A token from before the enrolment stays valid but still cannot sell, on any route.
    let (mut authenticator, _) = sys.enroll_two_factor(&password_only).await;
    let refused = sys
        .post("/v1/events", Some(&password_only), event_body("Nope", 4, 2))
        .await;
    assert_reason(
        &refused,
        403,
        "TWO_FACTOR_REQUIRED",
        "create event, enrolled",
    );
    let code = authenticator.next_code().await;
    let with_code = sys.log_in(&email, json!({"code": code})).await;
    let seller = with_code.str("/accessToken");
    let event = sys.event(&seller, &[("A", 5_000, 1, 4)], 0).await;
    let event_id = event["eventId"].as_str().expect("event id");
    let seat = sys.seat_ids(event_id).await[0].clone();
    for (reply, what) in [
        (
            sys.get(
                &format!("/v1/events/{event_id}/sales"),
                Some(&password_only),
            )
            .await,
            "sales",
        ),
        (
            sys.call(
                reqwest::Method::PUT,
                &format!("/v1/events/{event_id}/waiting-room"),
                Some(&password_only),
                Some(json!({"waitingRoom": {"admitPerSecond": 10}})),
                &[],
            )
            .await,
            "configure waiting room",
        ),
        (
            sys.get(
                &format!("/v1/events/{event_id}/queue"),
                Some(&password_only),
            )
            .await,
            "queue status",
        ),
        (
            sys.post(
                &format!("/v1/events/{event_id}/auctions"),
                Some(&password_only),
                json!({
                    "seatIds": [seat],
                    "openingPrice": {"amountMinor": "1000", "currency": "KRW"},
                    "minIncrement": {"amountMinor": "100", "currency": "KRW"},
                    "closesAt": (chrono::Utc::now() + chrono::Duration::hours(1)).to_rfc3339(),
                }),
            )
            .await,
            "create auction",
        ),
        (
            sys.call(
                reqwest::Method::PUT,
                &format!("/v1/events/{event_id}/transfer-policy"),
                Some(&password_only),
                Some(json!({"transfers": {"allowed": false}})),
                &[],
            )
            .await,
            "set transfer policy",
        ),
    ] {
        assert_reason(&reply, 403, "TWO_FACTOR_REQUIRED", what);
        assert!(
            reply.body["message"]
                .as_str()
                .is_some_and(|m| m.contains("two-factor")),
            "{what}: {:?}",
            reply.body
        );
    }
    // Nothing was made: one event (the two-factor session's), without a waiting room.
    let events: i64 = sqlx::query_scalar("SELECT count(*) FROM events")
        .fetch_one(&sys.booking_pool)
        .await
        .expect("count");
    assert_eq!(events, 1);
    let rooms: i64 = sqlx::query_scalar("SELECT count(*) FROM waiting_rooms")
        .fetch_one(&sys.booking_pool)
        .await
        .expect("count");
    assert_eq!(rooms, 0);
    let auctions: i64 = sqlx::query_scalar("SELECT count(*) FROM auctions")
        .fetch_one(&sys.booking_pool)
        .await
        .expect("count");
    assert_eq!(auctions, 0);
    // The two-factor session can.
    assert_eq!(
        sys.get(&format!("/v1/events/{event_id}/sales"), Some(&seller))
            .await
            .status,
        200
    );
    // A buyer's refusal is about the role, not the second factor.
    let (_, buyer) = sys.account("BUYER").await;
    let buyer_refused = sys
        .post("/v1/events", Some(&buyer), event_body("Nope", 4, 2))
        .await;
    assert_eq!(buyer_refused.status, 403);
    assert_eq!(reason(&buyer_refused), "");
    sys.stop().await;
}

#[tokio::test]
async fn bad_input_on_the_two_factor_routes_is_a_clear_400_and_changes_nothing() {
    let sys = System::start().await;
    let (account_id, email) = sys.sign_up("SELLER").await;
    let token = sys.log_in(&email, json!({})).await.str("/accessToken");

    // Without a token: 401.
    assert_eq!(
        sys.post("/v1/me/two-factor", None, json!({})).await.status,
        401
    );
    assert_eq!(
        sys.post("/v1/me/two-factor:confirm", None, json!({"code": "123456"}))
            .await
            .status,
        401
    );
    // Confirming before enrolling: 400 FAILED_PRECONDITION, saying what to do.
    let early = sys
        .post(
            "/v1/me/two-factor:confirm",
            Some(&token),
            json!({"code": "123456"}),
        )
        .await;
    assert_eq!(early.status, 400, "{:?}", early.body);
    assert!(early.str("/message").contains("enroll"), "{:?}", early.body);
    // An unknown field on enrolment.
    let unknown = sys
        .post("/v1/me/two-factor", Some(&token), json!({"secret": "AAAA"}))
        .await;
    assert_eq!(unknown.status, 400, "{:?}", unknown.body);
    let rows: i64 = sqlx::query_scalar("SELECT count(*) FROM account_two_factor")
        .fetch_one(&sys.booking_pool)
        .await
        .expect("count");
    assert_eq!(rows, 0, "bad enrolment stored something");

    let enrolled = sys.post("/v1/me/two-factor", Some(&token), json!({})).await;
    let secret = enrolled.str("/secret");
    let malformed: [(Value, &str); 7] = [
        (json!({"code": "12345"}), "five digits"),
        (json!({"code": "1234567"}), "seven digits"),
        (json!({"code": "12a456"}), "a letter"),
        (json!({"code": ""}), "empty"),
        (json!({}), "missing"),
        (json!({"code": "１２３４５６"}), "full-width digits"),
        (json!({"code": wrong_code(&secret)}), "a wrong code"),
    ];
    for (body, what) in malformed {
        let reply = sys
            .post("/v1/me/two-factor:confirm", Some(&token), body)
            .await;
        assert_eq!(reply.status, 400, "{what}: {:?}", reply.body);
        assert_eq!(violations(&reply), ["code"], "{what}: {:?}", reply.body);
    }
    for (body, what) in [
        (json!({"code": 123456}), "a number"),
        (json!({"code": "123456", "extra": 1}), "an unknown field"),
    ] {
        let reply = sys
            .post("/v1/me/two-factor:confirm", Some(&token), body)
            .await;
        assert_eq!(reply.status, 400, "{what}: {:?}", reply.body);
        assert!(
            !reply.str("/message").is_empty(),
            "{what}: {:?}",
            reply.body
        );
    }
    let (confirmed, codes): (Option<chrono::DateTime<chrono::Utc>>, i64) = sqlx::query_as(
        "SELECT confirmed_at, (SELECT count(*) FROM recovery_codes) FROM account_two_factor",
    )
    .fetch_one(&sys.booking_pool)
    .await
    .expect("row");
    assert_eq!(
        (confirmed, codes),
        (None, 0),
        "bad confirmations changed something"
    );

    // Log-in: a malformed code or recovery code, or both at once, is 400 naming the
    // field, and counts no failure.
    totp::settle(Duration::from_secs(3)).await;
    let confirmed = sys
        .post(
            "/v1/me/two-factor:confirm",
            Some(&token),
            json!({"code": code_at_offset(&secret, 0)}),
        )
        .await;
    assert_eq!(confirmed.status, 200, "{:?}", confirmed.body);
    for (extra, field, what) in [
        (json!({"code": "12345"}), "code", "short code"),
        (json!({"code": "abcdef"}), "code", "letters"),
        (
            json!({"recoveryCode": "nope"}),
            "recoveryCode",
            "short recovery code",
        ),
        (
            json!({"recoveryCode": "abcd-efgh-ijkl-mno1"}),
            "recoveryCode",
            "a 1 in a recovery code",
        ),
        (
            json!({"code": "123456", "recoveryCode": "abcd-efgh-ijkl-mnop"}),
            "recoveryCode",
            "both",
        ),
    ] {
        let reply = sys.log_in(&email, extra).await;
        assert_eq!(reply.status, 400, "{what}: {:?}", reply.body);
        assert_eq!(violations(&reply), [field], "{what}: {:?}", reply.body);
    }
    assert_eq!(
        stored(&sys, &account_id).await.0,
        0,
        "bad input counted as failures"
    );
    // A code for an account without two-factor sign-in: 400, not a silent one-factor
    // session.
    let (_, buyer_email) = sys.sign_up("BUYER").await;
    let no_two_factor = sys.log_in(&buyer_email, json!({"code": "123456"})).await;
    assert_eq!(no_two_factor.status, 400, "{:?}", no_two_factor.body);
    sys.stop().await;
}

#[tokio::test]
async fn old_password_only_log_ins_still_work_for_accounts_without_two_factor() {
    let sys = System::start().await;
    let (_, email) = sys.sign_up("BUYER").await;
    let session = sys
        .post(
            "/v1/sessions",
            None,
            json!({"email": email, "password": PASSWORD}),
        )
        .await;
    assert_eq!(session.status, 201, "{:?}", session.body);
    assert_eq!(session.body["twoFactor"], json!(false));
    sys.stop().await;
}

//! The gateway's rate limits, end to end: two gateway replicas share every count in
//! Redis, so a client over its limit gets 429 with `Retry-After` from either of them;
//! other accounts and other client addresses are unaffected; after `Retry-After` the
//! client is let in again; log-ins have their own, stricter limit per email, which holds
//! from any address; a refusal by one limit uses up nothing of the other; and the
//! refusals show up on the gateway's metrics. Other clients are told apart by their
//! address: Linux answers on all of 127.0.0.0/8, so a client bound to 127.0.0.2 is
//! another address.

use std::net::IpAddr;
use std::time::Duration;

use marquee_e2e::{Options, System};
use marquee_gateway::ratelimit::{Limit, Limits};
use serde_json::{Value, json};
use uuid::Uuid;

const PASSWORD: &str = "correct horse battery";

/// Writes: 5 per 10 s per account (one more every 2 s). Log-ins: 3 a minute per
/// email, 5 a minute per address. Reads are generous: the setup polls wallets.
fn limits() -> Limits {
    let mut limits = Limits::default();
    limits.write.per_account = Some(Limit::new(5, Duration::from_secs(10)));
    limits.login.per_account = Some(Limit::new(3, Duration::from_secs(60)));
    limits.login.per_address = Some(Limit::new(5, Duration::from_secs(60)));
    limits.read.per_account = Some(Limit::new(1000, Duration::from_secs(1)));
    limits
}

/// A client whose requests come from `address` (on loopback).
fn client_from(address: [u8; 4]) -> reqwest::Client {
    reqwest::Client::builder()
        .local_address(IpAddr::from(address))
        .timeout(Duration::from_secs(30))
        .build()
        .expect("http client")
}

#[derive(Debug)]
struct Answer {
    status: u16,
    retry_after: Option<u64>,
    body: Value,
}

async fn call(
    client: &reqwest::Client,
    base: &str,
    path: &str,
    token: Option<&str>,
    body: Value,
) -> Answer {
    let mut request = client
        .post(format!("{base}{path}"))
        .header("idempotency-key", Uuid::new_v4().to_string())
        .json(&body);
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    let response = request.send().await.expect("request sent");
    let status = response.status().as_u16();
    let retry_after = response.headers().get("retry-after").map(|v| {
        v.to_str()
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("Retry-After {v:?} is not whole seconds"))
    });
    let text = response.text().await.expect("body read");
    let body = serde_json::from_str(&text).unwrap_or(Value::String(text));
    Answer {
        status,
        retry_after,
        body,
    }
}

/// A checkout of a hold that does not exist: a write booking-svc refuses cheaply.
async fn write(client: &reqwest::Client, base: &str, token: &str) -> Answer {
    let body = json!({"holdId": Uuid::new_v4().to_string(), "paymentMethod": "WALLET"});
    call(client, base, "/v1/bookings", Some(token), body).await
}

async fn log_in(client: &reqwest::Client, base: &str, email: &str, password: &str) -> Answer {
    let body = json!({"email": email, "password": password});
    call(client, base, "/v1/sessions", None, body).await
}

/// Let through: whatever the service answered, not the limiter's 429.
fn assert_let_through(answer: &Answer, what: &str) {
    assert!(
        answer.status != 429 && answer.status < 500,
        "{what}: {answer:?}"
    );
    assert_eq!(answer.retry_after, None, "{what}: {answer:?}");
}

/// Refused by the limiter: 429, `Retry-After` of whole seconds within `wait`, and a JSON
/// body in the gateway's error shape with RESOURCE_EXHAUSTED, naming what was counted.
/// Returns the `Retry-After`.
fn assert_refused(answer: &Answer, message: &str, wait: std::ops::RangeInclusive<u64>) -> u64 {
    assert_eq!(answer.status, 429, "{message}: {answer:?}");
    let retry_after = answer.retry_after.expect("a Retry-After header");
    assert!(wait.contains(&retry_after), "{message}: {answer:?}");
    assert_eq!(answer.body["code"], 8, "RESOURCE_EXHAUSTED: {answer:?}");
    assert_eq!(answer.body["details"], json!([]), "{answer:?}");
    assert_eq!(
        answer.body["message"],
        format!("{message}; retry in {retry_after} s"),
        "{answer:?}"
    );
    retry_after
}

async fn sign_up(sys: &System) -> String {
    let email = format!("limits-{}@example.com", Uuid::new_v4().simple());
    let signed = sys
        .post(
            "/v1/accounts",
            None,
            json!({"email": email, "password": PASSWORD, "displayName": "Limits", "role": "BUYER"}),
        )
        .await;
    assert_eq!(signed.status, 201, "sign-up: {:?}", signed.body);
    email
}

/// A buyer alternating between the two replicas is refused after the shared 5 writes,
/// by either replica and from any address; another buyer is not.
async fn writes_are_limited_across_replicas(ann: &str, bob: &str, bases: [&str; 2]) -> u64 {
    let home = client_from([127, 0, 0, 1]);
    for i in 0..5 {
        let answer = write(&home, bases[i % 2], ann).await;
        assert_let_through(&answer, &format!("ann's write {} of 5", i + 1));
    }
    let mut waits = Vec::new();
    for base in bases {
        let refused = write(&home, base, ann).await;
        waits.push(assert_refused(
            &refused,
            "too many writes from this account",
            1..=2,
        ));
    }
    // The limit is the account's: another address does not help.
    let elsewhere = write(&client_from([127, 0, 0, 2]), bases[0], ann).await;
    assert_refused(&elsewhere, "too many writes from this account", 1..=2);
    // Another buyer, from the same address, on both replicas: unaffected.
    for base in bases {
        assert_let_through(&write(&home, base, bob).await, "bob's write");
    }
    waits.into_iter().max().unwrap_or(2)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_client_over_its_limit_gets_429_from_both_replicas_and_others_do_not() {
    let _ = marquee_infra::metrics::prometheus();
    let mut sys = System::start_with(Options {
        gateway_rate_limits: Some(limits()),
        ..Options::default()
    })
    .await;
    let replica = sys.gateway_replica().await;
    let bases = [sys.base.clone(), replica.base.clone()];
    let bases = [bases[0].as_str(), bases[1].as_str()];
    let (_, ann) = sys.account("BUYER").await;
    let (_, bob) = sys.account("BUYER").await;

    let wait = writes_are_limited_across_replicas(&ann, &bob, bases).await;
    // After Retry-After, ann is let in again (one write: the next is 2 s away).
    tokio::time::sleep(Duration::from_secs(wait)).await;
    let home = client_from([127, 0, 0, 1]);
    assert_let_through(&write(&home, bases[1], &ann).await, "ann after Retry-After");
    assert_refused(
        &write(&home, bases[0], &ann).await,
        "too many writes from this account",
        1..=2,
    );

    // Log-ins: 3 a minute per email, whichever the replica, whatever the address.
    let known = sign_up(&sys).await;
    let other = sign_up(&sys).await;
    let (second, third, fourth) = (
        client_from([127, 0, 0, 2]),
        client_from([127, 0, 0, 3]),
        client_from([127, 0, 0, 4]),
    );
    for i in 0..3 {
        let wrong = log_in(&second, bases[i % 2], &known, "wrong password").await;
        assert_eq!(wrong.status, 401, "wrong password {}: {wrong:?}", i + 1);
    }
    let refused = log_in(&second, bases[1], &known, "wrong password").await;
    assert_refused(
        &refused,
        "too many log-in attempts from this account",
        1..=20,
    );
    // From another address, and even with the right password: the email waits.
    let refused = log_in(&third, bases[0], &known, PASSWORD).await;
    assert_refused(
        &refused,
        "too many log-in attempts from this account",
        1..=20,
    );
    // Another account logs in from there at once.
    let session = log_in(&third, bases[1], &other, PASSWORD).await;
    assert_eq!(session.status, 201, "{session:?}");

    // 5 a minute per address: the refusal above took nothing of 127.0.0.3's, which has
    // 4 left after `other`'s log-in.
    for i in 0..4 {
        let email = format!("nobody-{i}-{}@example.com", Uuid::new_v4().simple());
        let wrong = log_in(&third, bases[i % 2], &email, "wrong password").await;
        assert_eq!(
            wrong.status,
            401,
            "attempt {} from 127.0.0.3: {wrong:?}",
            i + 2
        );
    }
    let late = format!("late-{}@example.com", Uuid::new_v4().simple());
    let refused = log_in(&third, bases[0], &late, "wrong password").await;
    assert_refused(
        &refused,
        "too many log-in attempts from this address",
        1..=12,
    );
    // That refusal took nothing of `late`'s 3 either.
    for i in 0..3 {
        let wrong = log_in(&fourth, bases[i % 2], &late, "wrong password").await;
        assert_eq!(wrong.status, 401, "late's attempt {}: {wrong:?}", i + 1);
    }
    let refused = log_in(&fourth, bases[1], &late, "wrong password").await;
    assert_refused(
        &refused,
        "too many log-in attempts from this account",
        1..=20,
    );

    // The refusals and the configured limits, on the replica's own /metrics.
    let metrics_url = replica.metrics_url.expect("the replica serves metrics");
    let text = reqwest::get(&metrics_url)
        .await
        .expect("metrics answer")
        .text()
        .await
        .expect("metrics text");
    let sample = |name: &str, class: &str, scope: &str| -> f64 {
        text.lines()
            .find(|l| {
                l.starts_with(&format!("{name}{{"))
                    && l.contains(&format!("class=\"{class}\""))
                    && l.contains(&format!("scope=\"{scope}\""))
            })
            .and_then(|l| l.rsplit_once(' '))
            .and_then(|(_, v)| v.parse().ok())
            .unwrap_or_else(|| panic!("no {name}{{{class},{scope}}} in\n{text}"))
    };
    assert!(sample("rate_limited_total", "write", "account") >= 4.0);
    assert!(sample("rate_limited_total", "login", "account") >= 3.0);
    assert!(sample("rate_limited_total", "login", "address") >= 1.0);
    assert_eq!(sample("rate_limit_requests", "write", "account"), 5.0);
    assert_eq!(
        sample("rate_limit_period_seconds", "write", "account"),
        10.0
    );
    assert_eq!(sample("rate_limit_requests", "signup", "address"), 20.0);

    sys.stop().await;
}

/// On a Redis Cluster each key is checked on its own slot's master: the limits hold
/// there the same way.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_limits_hold_on_a_redis_cluster() {
    let mut sys = System::start_with(Options {
        redis: Some(marquee_testkit::redis_cluster::redis_cluster()),
        gateway_rate_limits: Some(limits()),
        ..Options::default()
    })
    .await;
    let replica = sys.gateway_replica().await;
    let (_, ann) = sys.account("BUYER").await;
    let (_, bob) = sys.account("BUYER").await;
    writes_are_limited_across_replicas(&ann, &bob, [sys.base.as_str(), replica.base.as_str()])
        .await;
    sys.stop().await;
}

//! Tokens carry and must pass `kid`, `iss` and `aud`: a token made for another audience
//! or issuer, or without a known key id, is refused with 401 JSON at the gateway, while
//! one with the right claims is served. Tokens are made by hand here, with the
//! harness's secret, so only the claims under test differ.

use jsonwebtoken::{Algorithm, EncodingKey, Header};
use marquee_e2e::{JWT_SECRET, Options, Reply, System};
use marquee_infra::auth::JwtConfig;
use serde_json::json;

/// A token for `sub` signed with `secret` (HS256), with the given `kid` header and
/// `iss`/`aud` claims (left out when `None`).
fn token(
    sub: &str,
    secret: &str,
    kid: Option<&str>,
    iss: Option<&str>,
    aud: Option<&str>,
) -> String {
    let now = chrono::Utc::now().timestamp();
    let mut claims = json!({"sub": sub, "role": "BUYER", "iat": now, "exp": now + 3600});
    if let Some(iss) = iss {
        claims["iss"] = json!(iss);
    }
    if let Some(aud) = aud {
        claims["aud"] = json!(aud);
    }
    let mut header = Header::new(Algorithm::HS256);
    header.kid = kid.map(str::to_owned);
    jsonwebtoken::encode(
        &header,
        &claims,
        &EncodingKey::from_secret(secret.as_bytes()),
    )
    .expect("token")
}

fn assert_refused(reply: &Reply, what: &str) {
    assert_eq!(reply.status, 401, "{what}: {:?}", reply.body);
    assert_eq!(reply.body["code"], 16, "{what}: {:?}", reply.body);
    assert!(
        !reply.body["message"]
            .as_str()
            .unwrap_or_default()
            .is_empty(),
        "{what}: no message in {:?}",
        reply.body
    );
}

#[tokio::test]
async fn a_token_for_another_audience_issuer_or_key_is_refused_and_the_right_one_served() {
    let sys = System::start().await;
    let (account, issued) = sys.account("BUYER").await;

    // What log-in issues names its key and carries the issuer and audience.
    let header = jsonwebtoken::decode_header(&issued).expect("issued token header");
    assert_eq!(header.kid.as_deref(), Some("k1"), "kid of an issued token");

    let good = token(
        &account,
        JWT_SECRET,
        Some("k1"),
        Some("marquee"),
        Some("marquee"),
    );
    let me = sys.get("/v1/me", Some(&good)).await;
    assert_eq!(me.status, 200, "right claims, booking-svc: {:?}", me.body);
    let wallet = sys.get("/v1/wallet", Some(&good)).await;
    assert_eq!(
        wallet.status, 200,
        "right claims, pay-svc: {:?}",
        wallet.body
    );

    let refused = [
        (
            token(
                &account,
                JWT_SECRET,
                Some("k1"),
                Some("marquee"),
                Some("someone-else"),
            ),
            "wrong aud",
        ),
        (
            token(&account, JWT_SECRET, Some("k1"), Some("marquee"), None),
            "no aud",
        ),
        (
            token(
                &account,
                JWT_SECRET,
                Some("k1"),
                Some("evil-issuer"),
                Some("marquee"),
            ),
            "wrong iss",
        ),
        (
            token(&account, JWT_SECRET, Some("k1"), None, Some("marquee")),
            "no iss",
        ),
        (
            token(&account, JWT_SECRET, None, Some("marquee"), Some("marquee")),
            "no kid",
        ),
        (
            token(
                &account,
                JWT_SECRET,
                Some("k9"),
                Some("marquee"),
                Some("marquee"),
            ),
            "unknown kid",
        ),
    ];
    for (token, what) in &refused {
        assert_refused(&sys.get("/v1/me", Some(token)).await, what);
        assert_refused(&sys.get("/v1/wallet", Some(token)).await, what);
    }
    sys.stop().await;
}

#[tokio::test]
async fn after_a_rotation_to_a_new_kid_a_token_signed_with_the_old_key_still_works() {
    // Every service rotated: new tokens are signed with k2, k1 (the old secret) is kept
    // for verification only.
    let rotated = JwtConfig::new("the-new-secret-for-k2")
        .with_key_id("k2")
        .with_previous("k1", JWT_SECRET);
    let sys = System::start_with(Options {
        jwt: rotated,
        ..Options::default()
    })
    .await;
    let (account, issued) = sys.account("BUYER").await;
    let header = jsonwebtoken::decode_header(&issued).expect("issued token header");
    assert_eq!(
        header.kid.as_deref(),
        Some("k2"),
        "log-in signs with the new key"
    );

    // A session from before the rotation: signed with the old secret under k1.
    let old = token(
        &account,
        JWT_SECRET,
        Some("k1"),
        Some("marquee"),
        Some("marquee"),
    );
    let me = sys.get("/v1/me", Some(&old)).await;
    assert_eq!(me.status, 200, "old token, booking-svc: {:?}", me.body);
    let wallet = sys.get("/v1/wallet", Some(&old)).await;
    assert_eq!(wallet.status, 200, "old token, pay-svc: {:?}", wallet.body);

    // The old secret does not pass for the new key.
    let mislabelled = token(
        &account,
        JWT_SECRET,
        Some("k2"),
        Some("marquee"),
        Some("marquee"),
    );
    assert_refused(
        &sys.get("/v1/me", Some(&mislabelled)).await,
        "old secret under k2",
    );
    assert_refused(
        &sys.get("/v1/wallet", Some(&mislabelled)).await,
        "old secret under k2",
    );
    sys.stop().await;
}

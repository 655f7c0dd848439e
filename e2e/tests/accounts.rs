//! Money and seats only for accounts that exist: a token signed with the right secret
//! for an account id nobody signed up with opens no wallet and holds no seat.

use std::time::Duration;

use marquee_e2e::{JWT_SECRET, System};
use marquee_infra::auth::TokenKeys;
use uuid::Uuid;

async fn wallets_of(sys: &System, account: Uuid) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM wallets WHERE account_id = $1")
        .bind(account)
        .fetch_one(&sys.pay_pool)
        .await
        .expect("wallet count")
}

#[tokio::test]
async fn a_signed_token_for_an_account_that_does_not_exist_gets_no_seats_and_no_money() {
    let sys = System::start().await;
    let (_, event_id) = sys.seller_event(&[("R", 10_000, 1, 4)], 4).await;
    let seats = sys.seat_ids(&event_id).await;

    let stranger = Uuid::new_v4();
    let (token, _) = TokenKeys::new(JWT_SECRET, chrono::Duration::hours(1))
        .issue(&stranger.to_string(), "BUYER")
        .expect("token");

    let hold = sys.hold(&token, &event_id, &seats[..1]).await;
    assert_eq!(hold.status, 401, "hold: {:?}", hold.body);
    assert_eq!(
        hold.body["message"], "authentication required: this account does not exist",
        "{:?}",
        hold.body
    );
    let wallet = sys.get("/v1/wallet", Some(&token)).await;
    assert_eq!(wallet.status, 404, "wallet: {:?}", wallet.body);
    let me = sys.get("/v1/me", Some(&token)).await;
    assert_eq!(me.status, 401, "me: {:?}", me.body);

    // Nothing was created later either: no wallet, and every seat is still free.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(wallets_of(&sys, stranger).await, 0, "no wallet row");
    let credits: i64 =
        sqlx::query_scalar("SELECT count(*) FROM ledger_entries WHERE account_id = $1")
            .bind(stranger)
            .fetch_one(&sys.pay_pool)
            .await
            .expect("ledger count");
    assert_eq!(credits, 0, "no welcome credit");
    assert!(
        sys.seats(&event_id)
            .await
            .iter()
            .all(|s| s.1 == "AVAILABLE"),
        "no seat held"
    );

    // A real sign-up opens the wallet with the welcome credit.
    let (buyer_id, buyer) = sys.account("BUYER").await;
    assert_eq!(sys.balance(&buyer).await, 100_000);
    let me = sys.get("/v1/me", Some(&buyer)).await;
    assert_eq!(me.status, 200, "{:?}", me.body);
    assert_eq!(me.str("/walletBalance/amountMinor"), "100000");
    let buyer: Uuid = buyer_id.parse().expect("account id");
    assert_eq!(wallets_of(&sys, buyer).await, 1);
    sys.stop().await;
}

#[tokio::test]
async fn me_answers_without_a_balance_before_the_wallet_is_opened() {
    let sys = System::start().await;
    // An account that exists but whose wallet pay-svc has not opened yet (its
    // account.opened is still on its way): inserted directly, as the benchmark does.
    let account = Uuid::new_v4();
    sqlx::query(
        "INSERT INTO accounts (id, email, password_hash, display_name, role)
         VALUES ($1, $2, 'not-a-password-hash', 'Early Bird', 'BUYER')",
    )
    .bind(account)
    .bind(format!("early-{}@example.com", account.simple()))
    .execute(&sys.booking_pool)
    .await
    .expect("insert account");
    let (token, _) = TokenKeys::new(JWT_SECRET, chrono::Duration::hours(1))
        .issue(&account.to_string(), "BUYER")
        .expect("token");

    let me = sys.get("/v1/me", Some(&token)).await;
    assert_eq!(me.status, 200, "{:?}", me.body);
    assert_eq!(me.str("/account/accountId"), account.to_string());
    assert!(
        me.body["walletBalance"].is_null(),
        "no balance before the wallet exists: {:?}",
        me.body
    );
    let wallet = sys.get("/v1/wallet", Some(&token)).await;
    assert_eq!(wallet.status, 404, "{:?}", wallet.body);
    assert_eq!(wallets_of(&sys, account).await, 0);
    sys.stop().await;
}

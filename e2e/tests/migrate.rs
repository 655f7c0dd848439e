//! A deploy with a migration Job: both databases are created and migrated by the
//! services' `migrate` mode, then booking-svc and pay-svc start with
//! `MIGRATE_ON_START=false` (they only check the schema) and a purchase goes through,
//! on real PostgreSQL, Redis and RabbitMQ.

use marquee_e2e::{Options, System};
use sea_orm_migration::MigratorTrait;
use sqlx::PgPool;

async fn applied_migrations(pool: &PgPool) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM seaql_migrations")
        .fetch_one(pool)
        .await
        .expect("seaql_migrations")
}

#[tokio::test]
async fn databases_migrated_by_the_migrate_mode_serve_a_purchase() {
    let sys = System::start_with(Options {
        migrate_on_start: false,
        ..Options::default()
    })
    .await;
    assert_eq!(
        applied_migrations(&sys.booking_pool).await,
        booking_svc::migration::Migrator::migrations().len() as i64
    );
    assert_eq!(
        applied_migrations(&sys.pay_pool).await,
        pay_svc::migration::Migrator::migrations().len() as i64
    );

    let (_, seller) = sys.account("SELLER").await;
    let event = sys.event(&seller, &[("R", 30_000, 1, 4)], 0).await;
    let event_id = event["eventId"].as_str().expect("event id").to_owned();
    let (_, buyer) = sys.account("BUYER").await;
    let seats = sys.seat_ids(&event_id).await;

    let hold = sys.hold(&buyer, &event_id, &seats[..2]).await;
    assert_eq!(hold.status, 201, "{:?}", hold.body);
    let booking = sys
        .checkout(&buyer, &hold.str("/holdId"), "migrate-1")
        .await;
    assert_eq!(booking.status, 202, "{:?}", booking.body);
    sys.await_booking(&buyer, &booking.str("/bookingId"), "CONFIRMED")
        .await;
    assert_eq!(sys.balance(&buyer).await, 100_000 - 60_000);
    let sold = sys
        .seats(&event_id)
        .await
        .into_iter()
        .filter(|s| s.1 == "SOLD")
        .count();
    assert_eq!(sold, 2);

    sys.stop().await;
}

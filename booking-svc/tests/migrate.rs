//! `booking-svc migrate`, the binary a Kubernetes Job runs once per deploy, and
//! `MIGRATE_ON_START=false` replicas: the checks every service with a database passes
//! (`marquee_testkit::migrate`), against the real PostgreSQL, Redis and RabbitMQ.

use marquee_testkit::migrate::{self, Binary};
use sea_orm_migration::MigratorTrait;

const BOOKING: Binary = Binary {
    name: "booking-svc",
    path: env!("CARGO_BIN_EXE_booking-svc"),
    env_prefix: "BOOKING",
    migrations: || booking_svc::migration::Migrator::migrations().len(),
    queues: &["booking.payment-results"],
};

#[tokio::test]
async fn migrate_twice_is_a_no_op_and_a_replica_that_does_not_migrate_serves() {
    migrate::migrate_twice_is_a_no_op_and_a_replica_that_does_not_migrate_serves(BOOKING).await;
}

#[tokio::test]
async fn a_replica_that_does_not_migrate_refuses_an_unmigrated_database() {
    migrate::a_replica_that_does_not_migrate_refuses_an_unmigrated_database(BOOKING).await;
}

#[tokio::test]
async fn an_unknown_argument_prints_the_usage_and_exits_2() {
    migrate::an_unknown_argument_prints_the_usage_and_exits_2(BOOKING).await;
}

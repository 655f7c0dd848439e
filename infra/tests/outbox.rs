//! The outbox and inbox against a real PostgreSQL: claims are once-only, and pruning
//! removes only what is past its keeping time.

use marquee_infra::outbox::{self, NewMessage};
use sea_orm::TransactionTrait;
use sea_orm_migration::{MigrationTrait, MigratorTrait};
use uuid::Uuid;

/// A migrator with nothing but the outbox/inbox migration.
struct OutboxOnly;

impl MigratorTrait for OutboxOnly {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![Box::new(outbox::migration::Migration)]
    }
}

fn database_url() -> String {
    let base = std::env::var("TEST_PG_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432".into());
    format!("{base}/test_infra_{}", Uuid::new_v4().simple())
}

#[tokio::test]
async fn claims_are_once_only_and_pruning_keeps_recent_rows() {
    let url = database_url();
    let db = marquee_infra::db::connect(&url, 2).await.unwrap();
    let first = marquee_infra::db::migrate::<OutboxOnly>(&db).await.unwrap();
    assert_eq!(first.applied, ["m20260101_000002_outbox_inbox"]);
    // Migrating twice (another replica starting) is harmless.
    assert!(
        marquee_infra::db::migrate::<OutboxOnly>(&db)
            .await
            .unwrap()
            .is_empty()
    );
    let pool = db.get_postgres_connection_pool().clone();

    let id = Uuid::now_v7();
    let tx = db.begin().await.unwrap();
    assert!(outbox::claim(&tx, "svc", id).await.unwrap());
    assert!(!outbox::claim(&tx, "svc", id).await.unwrap());
    assert!(outbox::claim(&tx, "other-svc", id).await.unwrap());
    for _ in 0..3 {
        outbox::enqueue(
            &tx,
            NewMessage {
                kind: "thing.happened",
                saga_id: Uuid::now_v7(),
                version: 1,
                payload: vec![1, 2, 3],
            },
        )
        .await
        .unwrap();
    }
    tx.commit().await.unwrap();

    // One row sent long ago, one sent just now, one unsent; one inbox entry is old.
    sqlx::query("UPDATE outbox SET sent_at = now() - interval '2 days' WHERE seq = (SELECT min(seq) FROM outbox)")
        .execute(&pool)
        .await
        .unwrap();
    sqlx::query("UPDATE outbox SET sent_at = now() WHERE seq = (SELECT min(seq) + 1 FROM outbox)")
        .execute(&pool)
        .await
        .unwrap();
    sqlx::query(
        "UPDATE inbox SET received_at = now() - interval '8 days' WHERE consumer = 'other-svc'",
    )
    .execute(&pool)
    .await
    .unwrap();

    assert_eq!(outbox::prune(&db).await.unwrap(), (1, 1));
    let left: i64 = sqlx::query_scalar("SELECT count(*) FROM outbox")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(left, 2, "the recent sent row and the unsent row stay");
    let tx = db.begin().await.unwrap();
    assert!(
        !outbox::claim(&tx, "svc", id).await.unwrap(),
        "a recent claim is still remembered"
    );
    tx.rollback().await.unwrap();

    db.close().await.unwrap();
    marquee_infra::db::drop_database(&url).await.unwrap();
}

//! The outbox and inbox against a real PostgreSQL: claims are once-only, and pruning
//! removes only what is past its keeping time.

use marquee_infra::outbox::{self, NewMessage};
use uuid::Uuid;

fn database_url() -> String {
    let base = std::env::var("TEST_PG_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432".into());
    format!("{base}/test_infra_{}", Uuid::new_v4().simple())
}

#[tokio::test]
async fn claims_are_once_only_and_pruning_keeps_recent_rows() {
    let url = database_url();
    let pool = marquee_infra::db::connect(&url, 2).await.unwrap();
    outbox::migrate(&pool).await.unwrap();
    // Migrating twice (another replica starting) is harmless.
    outbox::migrate(&pool).await.unwrap();

    let id = Uuid::now_v7();
    let mut tx = pool.begin().await.unwrap();
    assert!(outbox::claim(&mut tx, "svc", id).await.unwrap());
    assert!(!outbox::claim(&mut tx, "svc", id).await.unwrap());
    assert!(outbox::claim(&mut tx, "other-svc", id).await.unwrap());
    for _ in 0..3 {
        outbox::enqueue(
            &mut tx,
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

    assert_eq!(outbox::prune(&pool).await.unwrap(), (1, 1));
    let left: i64 = sqlx::query_scalar("SELECT count(*) FROM outbox")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(left, 2, "the recent sent row and the unsent row stay");
    let mut tx = pool.begin().await.unwrap();
    assert!(
        !outbox::claim(&mut tx, "svc", id).await.unwrap(),
        "a recent claim is still remembered"
    );
    tx.rollback().await.unwrap();

    pool.close().await;
    marquee_infra::db::drop_database(&url).await.unwrap();
}

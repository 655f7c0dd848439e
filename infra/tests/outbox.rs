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

/// `db::in_one_statement`, as a checkout uses it: several inserts in one statement land
/// together, the answer reads their RETURNING, and one failing insert leaves none.
#[tokio::test]
async fn inserts_made_together_land_together_or_not_at_all() {
    use marquee_infra::outbox::entity::{message, received};
    use sea_orm::sea_query::{Alias, Query};
    use sea_orm::{ActiveValue::Set, ConnectionTrait, EntityTrait, QueryTrait};

    let url = database_url();
    let db = marquee_infra::db::connect(&url, 2).await.unwrap();
    marquee_infra::db::migrate::<OutboxOnly>(&db).await.unwrap();
    let pool = db.get_postgres_connection_pool().clone();
    let message = |kind| NewMessage {
        kind,
        saga_id: Uuid::now_v7(),
        version: 1,
        payload: vec![7],
    };
    let claim = |id: Uuid| {
        received::Entity::insert(received::ActiveModel {
            consumer: Set("svc".to_owned()),
            message_id: Set(id),
            received_at: sea_orm::ActiveValue::NotSet,
        })
        .into_query()
    };
    let answer = Query::select()
        .column(message::Column::MessageId)
        .from(Alias::new("w0"))
        .to_owned();
    let together = |parts: Vec<sea_orm::sea_query::InsertStatement>| {
        marquee_infra::db::in_one_statement(
            parts.into_iter().map(Into::into).collect(),
            answer.clone(),
        )
    };

    let (sent, mut first) = outbox::enqueue_statement(message("first.happened"));
    first.returning_col(message::Column::MessageId);
    let claimed = Uuid::now_v7();
    let row = db
        .query_one_raw(together(vec![first, claim(claimed)]))
        .await
        .unwrap()
        .expect("the answer");
    let answered: Uuid = row.try_get("", "message_id").unwrap();
    assert_eq!(
        answered, sent,
        "the answer reads the first insert's RETURNING"
    );
    let count = |sql: &'static str| {
        let pool = pool.clone();
        async move {
            sqlx::query_scalar::<_, i64>(sql)
                .fetch_one(&pool)
                .await
                .unwrap()
        }
    };
    assert_eq!(count("SELECT count(*) FROM outbox").await, 1);
    assert_eq!(count("SELECT count(*) FROM inbox").await, 1);

    // The second statement's claim repeats the first's: the whole statement fails, and
    // its outbox row is not written either.
    let (_, mut second) = outbox::enqueue_statement(message("second.happened"));
    second.returning_col(message::Column::MessageId);
    let failed = db
        .query_one_raw(together(vec![second, claim(claimed)]))
        .await
        .expect_err("a repeated claim violates the inbox's key");
    assert!(marquee_infra::db::is_unique_violation(&failed), "{failed}");
    assert_eq!(
        count("SELECT count(*) FROM outbox").await,
        1,
        "nothing of it"
    );
    assert_eq!(count("SELECT count(*) FROM inbox").await, 1);

    db.close().await.unwrap();
    marquee_infra::db::drop_database(&url).await.unwrap();
}

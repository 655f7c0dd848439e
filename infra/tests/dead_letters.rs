//! Dead letters against a real PostgreSQL and RabbitMQ: a message that exhausts its
//! delivery limit and one a handler refuses for good are stored with the handler's
//! error, listed (paged, by queue), and redriven once after the fix: one effect, a
//! second redrive publishes nothing, and a letter that fails again comes back pending.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::Utc;
use marquee_infra::bus::{Bus, BusConfig, DeadLetter, Envelope, HandleError, Handler};
use marquee_infra::dead_letters::{self, DeadLetters, Filter, Recorded, State};
use marquee_infra::outbox::{self, Relay};
use sea_orm::{DatabaseConnection, TransactionTrait};
use sea_orm_migration::{MigrationTrait, MigratorTrait};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

/// The outbox/inbox and dead-letter migrations, as every service lists them.
struct Plumbing;

impl MigratorTrait for Plumbing {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![
            Box::new(outbox::migration::Migration),
            Box::new(dead_letters::migration::Migration),
        ]
    }
}

fn env(name: &str, default: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| default.to_owned())
}

const KIND: &str = "thing.happened";
const QUEUE: &str = "work";
const CONSUMER: &str = "worker";

/// What the worker does with each message id: until `fixed`, a poison id fails
/// (transiently, or for good); a good one is handled once (inbox claim and effect in
/// one transaction).
#[derive(Clone)]
struct Worker {
    db: DatabaseConnection,
    fixed: Arc<Mutex<bool>>,
    transient: Vec<Uuid>,
    refused: Vec<Uuid>,
    /// Ids handled (effects), in order.
    effects: Arc<Mutex<Vec<Uuid>>>,
}

impl Worker {
    async fn handle(&self, envelope: Envelope) -> Result<(), HandleError> {
        let id = envelope.message_id;
        let tx = self
            .db
            .begin()
            .await
            .map_err(|e| HandleError::Transient(e.into()))?;
        if !outbox::claim(&tx, CONSUMER, id)
            .await
            .map_err(|e| HandleError::Transient(e.into()))?
        {
            return Ok(());
        }
        let fixed = *self.fixed.lock().unwrap();
        if !fixed && self.transient.contains(&id) {
            // Dropping `tx` rolls the claim back, as a failed handler's would be.
            return Err(HandleError::Transient(anyhow::anyhow!(
                "widget {id} is missing"
            )));
        }
        if !fixed && self.refused.contains(&id) {
            return Err(HandleError::Permanent(anyhow::anyhow!(
                "thing {id} refused for good"
            )));
        }
        tx.commit()
            .await
            .map_err(|e| HandleError::Transient(e.into()))?;
        self.effects.lock().unwrap().push(id);
        Ok(())
    }
}

fn envelope(id: Uuid) -> Envelope {
    Envelope {
        message_id: id,
        kind: KIND.to_owned(),
        saga_id: Uuid::now_v7(),
        version: 1,
        occurred_at: Utc::now(),
        trace_context: HashMap::new(),
        payload: id.as_bytes().to_vec(),
    }
}

async fn eventually<T>(within: Duration, mut probe: impl AsyncFnMut() -> Option<T>) -> T {
    let started = Instant::now();
    loop {
        if let Some(value) = probe().await {
            return value;
        }
        assert!(
            started.elapsed() < within,
            "not as expected within {within:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn all(limit: u64) -> Filter {
    Filter {
        limit,
        ..Filter::default()
    }
}

#[tokio::test]
async fn dead_letters_are_stored_listed_and_redriven_once() {
    let id = Uuid::new_v4().simple().to_string();
    let url = format!(
        "{}/test_infra_dl_{id}",
        env("TEST_PG_URL", "postgres://postgres@127.0.0.1:5432")
    );
    let db = marquee_infra::db::connect(&url, 4).await.unwrap();
    marquee_infra::db::migrate::<Plumbing>(&db).await.unwrap();
    let pool = db.get_postgres_connection_pool().clone();
    let mut config = BusConfig::new(
        env("AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/%2f"),
        format!("test.dl.{id}."),
    );
    config.delivery_limit = 2;
    let bus = Bus::connect(config, Duration::from_secs(10)).await.unwrap();
    let stop = CancellationToken::new();
    let relay = Relay::spawn(
        "test-svc",
        db.clone(),
        bus.clone(),
        Duration::from_millis(100),
        stop.clone(),
    );

    let (good, slow, refused, hopeless) = (
        Uuid::now_v7(),
        Uuid::now_v7(),
        Uuid::now_v7(),
        Uuid::now_v7(),
    );
    let worker = Worker {
        db: db.clone(),
        fixed: Arc::new(Mutex::new(false)),
        transient: vec![slow],
        refused: vec![refused, hopeless],
        effects: Arc::new(Mutex::new(Vec::new())),
    };
    let handler_worker = worker.clone();
    let handler: Handler = Arc::new(move |envelope| {
        let worker = handler_worker.clone();
        Box::pin(async move { worker.handle(envelope).await })
    });
    bus.consume(QUEUE, &[KIND], 4, handler).await.unwrap();
    let letters = DeadLetters::new("test-svc", db.clone(), relay);
    letters.keep(&bus, stop.clone()).await.unwrap();

    for id in [good, slow, refused, hopeless] {
        bus.publish(&envelope(id)).await.unwrap();
    }
    let stored = eventually(Duration::from_secs(20), async || {
        let rows = letters.list(&all(10)).await.unwrap();
        (rows.len() == 3).then_some(rows)
    })
    .await;
    assert_eq!(*worker.effects.lock().unwrap(), [good]);
    let by_message: HashMap<Uuid, _> = stored.iter().map(|r| (r.message_id, r)).collect();
    let queue = bus.config().queue(QUEUE);
    let slow_row = by_message[&slow];
    assert_eq!(slow_row.queue, queue);
    assert_eq!(slow_row.kind, KIND);
    assert_eq!(slow_row.routing_key, KIND);
    assert_eq!(slow_row.exchange, bus.config().exchange());
    assert_eq!(slow_row.reason, "delivery_limit");
    assert!(
        slow_row.first_error.contains("is missing"),
        "{}",
        slow_row.first_error
    );
    assert!(slow_row.deliveries > 2, "{}", slow_row.deliveries);
    assert_eq!(State::of(slow_row), State::Pending);
    let refused_row = by_message[&refused];
    assert_eq!(refused_row.reason, "rejected");
    assert!(refused_row.first_error.contains("refused for good"));
    assert_eq!(refused_row.times_dead_lettered, 1);

    // Listing: by queue, and paged (newest first, no letter twice or missed).
    let filtered = Filter {
        queue: Some("elsewhere".to_owned()),
        ..all(10)
    };
    assert!(letters.list(&filtered).await.unwrap().is_empty());
    let mut paged = Vec::new();
    let mut after = None;
    loop {
        let page = letters
            .list(&Filter {
                after,
                queue: Some(queue.clone()),
                ..all(2)
            })
            .await
            .unwrap();
        if page.is_empty() {
            break;
        }
        after = page.last().map(dead_letters::Cursor::of);
        paged.extend(page.into_iter().map(|r| r.id));
    }
    assert_eq!(paged, stored.iter().map(|r| r.id).collect::<Vec<_>>());

    // Storing the same dead letter again (a redelivery of the dead-letter queue)
    // changes nothing.
    let again = DeadLetter {
        queue: queue.clone(),
        reason: "rejected".to_owned(),
        exchange: bus.config().exchange(),
        routing_key: KIND.to_owned(),
        message_id: refused,
        kind: KIND.to_owned(),
        envelope: Some(envelope(refused)),
        payload: refused.as_bytes().to_vec(),
        failure: None,
        delivery_count: None,
    };
    assert_eq!(
        letters.record(again.clone()).await.unwrap(),
        Recorded::Duplicate
    );

    // The fix (for two of them); then one redrive of all three and an unknown id.
    *worker.fixed.lock().unwrap() = true;
    let unknown = Uuid::now_v7();
    let ids = [
        slow_row.id,
        refused_row.id,
        by_message[&hopeless].id,
        unknown,
    ];
    let report = letters.redrive(&ids).await.unwrap();
    assert_eq!(report.redriven, ids[..3]);
    assert_eq!(report.not_found, [unknown]);
    let effects = eventually(Duration::from_secs(10), async || {
        let effects = worker.effects.lock().unwrap().clone();
        (effects.len() == 4).then_some(effects)
    })
    .await;
    for id in [good, slow, refused, hopeless] {
        assert_eq!(effects.iter().filter(|e| **e == id).count(), 1, "{id}");
    }
    let outbox_rows: i64 = sqlx::query_scalar("SELECT count(*) FROM outbox")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(outbox_rows, 3);
    let sent: (Uuid, i32) =
        sqlx::query_as("SELECT message_id, version FROM outbox WHERE message_id = $1")
            .bind(slow)
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!(sent, (slow, 1), "redriven with its original id");

    // A second redrive publishes nothing; a duplicate publish has no effect either.
    let second = letters.redrive(&ids[..3]).await.unwrap();
    assert!(second.redriven.is_empty());
    assert_eq!(second.already_redriven, ids[..3]);
    bus.publish(&envelope(slow)).await.unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(worker.effects.lock().unwrap().len(), 4);
    let outbox_rows: i64 = sqlx::query_scalar("SELECT count(*) FROM outbox")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(outbox_rows, 3, "the second redrive wrote nothing");

    // A redriven letter dead-lettered again is pending again, counted twice.
    let broken = Uuid::now_v7();
    let mut worker2 = worker.clone();
    worker2.fixed = Arc::new(Mutex::new(false));
    worker2.refused = vec![broken];
    let handler: Handler = Arc::new(move |envelope| {
        let worker = worker2.clone();
        Box::pin(async move { worker.handle(envelope).await })
    });
    bus.consume("work2", &["other.thing"], 1, handler)
        .await
        .unwrap();
    let letters2 = DeadLetters::new(
        "test-svc",
        db.clone(),
        Relay::spawn(
            "test-svc",
            db.clone(),
            bus.clone(),
            Duration::from_millis(100),
            stop.clone(),
        ),
    );
    letters2.keep(&bus, stop.clone()).await.unwrap();
    let mut broken_envelope = envelope(broken);
    broken_envelope.kind = "other.thing".to_owned();
    bus.publish(&broken_envelope).await.unwrap();
    let filter = Filter {
        queue: Some(bus.config().queue("work2")),
        ..all(10)
    };
    let row = eventually(Duration::from_secs(10), async || {
        letters.list(&filter).await.unwrap().pop()
    })
    .await;
    assert_eq!(letters.redrive(&[row.id]).await.unwrap().redriven, [row.id]);
    let row = eventually(Duration::from_secs(10), async || {
        let row = letters.list(&filter).await.unwrap().pop()?;
        (row.times_dead_lettered == 2).then_some(row)
    })
    .await;
    assert_eq!(State::of(&row), State::Pending);
    assert!(row.redriven_at.is_some());

    stop.cancel();
    bus.delete_topology(&[QUEUE, "work2"]).await.unwrap();
    bus.shutdown();
    db.close().await.unwrap();
    marquee_infra::db::drop_database(&url).await.unwrap();
}

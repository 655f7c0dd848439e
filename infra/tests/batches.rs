//! Batch consumers against a real RabbitMQ: what is waiting when the handler frees is
//! handled together (never more than the batch's bound), and each message is acked or
//! requeued on its own result: the one that failed comes back, the others never.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::Utc;
use lapin::options::QueueDeclareOptions;
use lapin::types::{FieldTable, ShortString};
use marquee_infra::bus::{BatchHandler, Bus, BusConfig, Envelope, HandleError};
use tokio::sync::Semaphore;
use uuid::Uuid;

const KIND: &str = "thing.batched";
const QUEUE: &str = "batched";
const MAX_BATCH: usize = 10;
const AMQP: &str = "amqp://guest:guest@127.0.0.1:5672/%2f";

fn amqp_url() -> String {
    std::env::var("AMQP_URL").unwrap_or_else(|_| AMQP.to_owned())
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

/// Messages of queue `queue` not yet delivered to a consumer.
async fn ready(channel: &lapin::Channel, queue: &str) -> u32 {
    channel
        .queue_declare(
            ShortString::from(queue),
            QueueDeclareOptions {
                passive: true,
                ..QueueDeclareOptions::default()
            },
            FieldTable::default(),
        )
        .await
        .expect("passive declare")
        .message_count()
}

#[tokio::test]
async fn waiting_messages_are_handled_together_and_settled_one_by_one() {
    let prefix = format!("test.batch.{}.", Uuid::new_v4().simple());
    let bus = Bus::connect(BusConfig::new(amqp_url(), prefix), Duration::from_secs(10))
        .await
        .expect("bus");
    // The first batch says it started, then waits here until the burst is delivered.
    let (entered, gate) = (Arc::new(Semaphore::new(0)), Arc::new(Semaphore::new(0)));
    let batches: Arc<Mutex<Vec<Vec<Uuid>>>> = Arc::default();
    let (blocker, poison) = (Uuid::now_v7(), Uuid::now_v7());
    let handler: BatchHandler = {
        let (entered, gate, batches) = (entered.clone(), gate.clone(), batches.clone());
        Arc::new(move |envelopes: Vec<Envelope>| {
            let (entered, gate, batches) = (entered.clone(), gate.clone(), batches.clone());
            Box::pin(async move {
                let ids: Vec<Uuid> = envelopes.iter().map(|e| e.message_id).collect();
                if ids.contains(&blocker) {
                    entered.add_permits(1);
                    gate.acquire().await.expect("gate").forget();
                }
                let first_try = {
                    let mut batches = batches.lock().expect("batches");
                    let first_try = !batches.iter().flatten().any(|id| *id == poison);
                    batches.push(ids.clone());
                    first_try
                };
                ids.iter()
                    .map(|id| {
                        if *id == poison && first_try {
                            Err(HandleError::Transient(anyhow::anyhow!("not yet")))
                        } else {
                            Ok(())
                        }
                    })
                    .collect()
            })
        })
    };
    bus.consume_batches(QUEUE, &[KIND], 1, MAX_BATCH, handler)
        .await
        .expect("consume");

    bus.publish(&envelope(blocker)).await.expect("publish");
    // The burst is published only once the blocker's batch is in the handler.
    tokio::time::timeout(Duration::from_secs(10), entered.acquire())
        .await
        .expect("the first message reaches the handler")
        .expect("entered")
        .forget();
    let mut burst: Vec<Uuid> = (0..14).map(|_| Uuid::now_v7()).collect();
    burst.insert(3, poison);
    for id in &burst {
        bus.publish(&envelope(*id)).await.expect("publish");
    }
    // Everything published is in the consumer's hands (prefetch) before the gate opens.
    let connection =
        lapin::Connection::connect(&amqp_url(), lapin::ConnectionProperties::default())
            .await
            .expect("connect");
    let channel = connection.create_channel().await.expect("channel");
    let queue = bus.config().queue(QUEUE);
    let started = Instant::now();
    while ready(&channel, &queue).await > 0 {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "burst not delivered"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // The broker sent them; give the client a moment to take them off the socket.
    tokio::time::sleep(Duration::from_millis(200)).await;
    gate.add_permits(1);

    // Every message handled successfully once; the poison twice.
    let started = Instant::now();
    let seen = loop {
        let seen: Vec<Vec<Uuid>> = batches.lock().expect("batches").clone();
        let handled = seen.iter().map(Vec::len).sum::<usize>();
        // The blocker, the burst, and the failed message once more.
        if handled >= burst.len() + 2 {
            break seen;
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "only {handled} handled: {seen:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    // Nothing more comes: acked messages are not redelivered.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let seen_after: Vec<Vec<Uuid>> = batches.lock().expect("batches").clone();
    assert_eq!(seen_after, seen, "a message came back after it was acked");

    assert_eq!(
        seen[0],
        [blocker],
        "the first message is handled at once, alone"
    );
    assert!(
        seen[1].len() > 1 && burst.starts_with(&seen[1]),
        "what waited is handled together, in order: {seen:?}"
    );
    assert!(
        seen.iter().all(|batch| batch.len() <= MAX_BATCH),
        "{seen:?}"
    );
    let mut count: HashMap<Uuid, usize> = HashMap::new();
    for id in seen.iter().flatten() {
        *count.entry(*id).or_default() += 1;
    }
    assert_eq!(count[&blocker], 1);
    assert_eq!(count[&poison], 2, "the failed message is redelivered");
    for id in burst.iter().filter(|id| **id != poison) {
        assert_eq!(count[id], 1, "message {id}");
    }
    assert!(
        seen[2..].iter().any(|batch| batch.contains(&poison)),
        "the failed message comes back in a later batch: {seen:?}"
    );

    let _ = connection.close(200, ShortString::from("bye")).await;
    bus.delete_topology(&[QUEUE]).await.expect("cleanup");
    bus.shutdown();
}

//! The AMQP bus on RabbitMQ: a supervised connection that reconnects with backoff and
//! redeclares topology, confirmed publishes awaited under a timeout, and consumers
//! that ack only after their handler (and so its database transaction) succeeded.
//!
//! Topology, for a bus prefix `p`: one durable topic exchange `p` + `exchange`, a
//! dead-letter exchange `p` + `dlx`, and per consumer a durable quorum queue with an
//! explicit `x-delivery-limit` whose rejected or over-delivered messages go to
//! `<queue>.dlq`.
//!
//! Metrics: `bus_connected{connection}` (1 while the supervisor's connection is up) and
//! `bus_dead_letter_messages{queue}` (depth of each dead-letter queue this bus declared,
//! read every [`BusConfig::dead_letter_check`] while connected).

use backon::{ExponentialBuilder, Retryable};
use std::collections::{BTreeSet, HashMap};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use futures::StreamExt;
use lapin::options::{
    BasicAckOptions, BasicConsumeOptions, BasicNackOptions, BasicPublishOptions, BasicQosOptions,
    BasicRejectOptions, ConfirmSelectOptions, ExchangeDeclareOptions, QueueBindOptions,
    QueueDeclareOptions,
};
use lapin::types::{AMQPValue, FieldTable, LongString, ShortString};
use lapin::{
    BasicProperties, Channel, Confirmation, Connection, ConnectionProperties, ExchangeKind,
};
use tokio::sync::{Notify, watch};
use tokio_util::sync::CancellationToken;
use tracing::Instrument;
use uuid::Uuid;

use crate::telemetry;

/// Bus settings.
#[derive(Debug, Clone)]
pub struct BusConfig {
    pub url: String,
    /// Prefix of every exchange and queue name.
    pub prefix: String,
    /// The longest a publish waits for the broker's confirm.
    pub publish_timeout: Duration,
    /// Deliveries of one message before it is dead-lettered.
    pub delivery_limit: i64,
    /// Unacked deliveries a consumer holds at once.
    pub prefetch: u16,
    /// The connection's name as the broker shows it (`rabbitmqctl list_connections name`).
    pub connection_name: String,
    /// How often the depth of each dead-letter queue is read (15 s by default).
    pub dead_letter_check: Duration,
    /// `OUTBOX_PUBLISH_COPIES` (chaos testing only, default 1): how many times the
    /// outbox relay publishes each row, every copy with the same message id, so that
    /// consumers see every message delivered that many times.
    pub outbox_publish_copies: u32,
}

impl BusConfig {
    pub fn new(url: impl Into<String>, prefix: impl Into<String>) -> Self {
        let prefix = prefix.into();
        Self {
            url: url.into(),
            connection_name: format!("{prefix}{}", std::process::id()),
            prefix,
            publish_timeout: Duration::from_secs(5),
            delivery_limit: 5,
            prefetch: 64,
            dead_letter_check: Duration::from_secs(15),
            outbox_publish_copies: 1,
        }
    }

    /// The same settings under another connection name.
    pub fn named(mut self, name: impl Into<String>) -> Self {
        self.connection_name = name.into();
        self
    }

    /// The same settings with the outbox relay publishing each row `copies` times
    /// (at least once); see [`BusConfig::outbox_publish_copies`].
    pub fn with_outbox_publish_copies(mut self, copies: u32) -> Self {
        self.outbox_publish_copies = copies.max(1);
        self
    }

    pub fn exchange(&self) -> String {
        format!("{}exchange", self.prefix)
    }

    fn dead_letter_exchange(&self) -> String {
        format!("{}dlx", self.prefix)
    }

    /// The full name of queue `name`.
    pub fn queue(&self, name: &str) -> String {
        format!("{}{name}", self.prefix)
    }
}

/// A message as it travels: the envelope (design §5) plus a protobuf body.
#[derive(Debug, Clone, PartialEq)]
pub struct Envelope {
    pub message_id: Uuid,
    /// The message type, also its routing key, e.g. `payment.requested`.
    pub kind: String,
    pub saga_id: Uuid,
    pub version: i32,
    pub occurred_at: DateTime<Utc>,
    /// W3C trace context (`traceparent`, `tracestate`).
    pub trace_context: HashMap<String, String>,
    pub payload: Vec<u8>,
}

#[derive(Debug, thiserror::Error)]
pub enum BusError {
    #[error("bus not connected")]
    NotConnected,
    #[error("publish of {0} timed out waiting for the broker's confirm")]
    ConfirmTimeout(Uuid),
    #[error("broker refused message {0}")]
    Nacked(Uuid),
    #[error("message {0} was unroutable and returned")]
    Unroutable(Uuid),
    #[error("amqp: {0}")]
    Amqp(#[from] lapin::Error),
}

/// What a consumer's handler decided about one message.
#[derive(Debug, thiserror::Error)]
pub enum HandleError {
    /// Try again later (the message is requeued; its delivery count grows).
    #[error("transient: {0}")]
    Transient(anyhow::Error),
    /// Never going to work: dead-letter it now.
    #[error("permanent: {0}")]
    Permanent(anyhow::Error),
}

pub type HandlerFuture = Pin<Box<dyn Future<Output = Result<(), HandleError>> + Send>>;
pub type Handler = Arc<dyn Fn(Envelope) -> HandlerFuture + Send + Sync>;
pub type BatchHandlerFuture = Pin<Box<dyn Future<Output = Vec<Result<(), HandleError>>> + Send>>;
/// Handles the messages that arrived together (one or more, in delivery order) and
/// answers one result per message, in the same order.
pub type BatchHandler = Arc<dyn Fn(Vec<Envelope>) -> BatchHandlerFuture + Send + Sync>;

struct Live {
    connection: Connection,
    publisher: Channel,
}

/// A supervised connection to RabbitMQ. Cheap to clone.
#[derive(Clone)]
pub struct Bus {
    config: Arc<BusConfig>,
    live: watch::Receiver<Option<Arc<Live>>>,
    shutdown: CancellationToken,
    dead_letters: DeadLetters,
    failures: Failures,
}

/// The last handler error of each message whose handling failed in this process and
/// has not succeeded since, by (queue, message id): what the dead-letter keeper
/// records as the letter's error. Bounded; a message that failed in another replica
/// is recorded with the broker's reason instead.
#[derive(Clone, Default)]
struct Failures {
    last: Arc<std::sync::Mutex<HashMap<(String, Uuid), Failure>>>,
}

/// A handler's failures of one message in this process.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    /// The last error the handler returned.
    pub error: String,
    /// Deliveries the handler failed.
    pub attempts: i64,
}

/// The most failures [`Failures`] keeps: beyond it, an arbitrary one is forgotten.
const FAILURES_KEPT: usize = 10_000;

impl Failures {
    fn record(&self, queue: &str, id: Uuid, error: String) {
        let mut last = self
            .last
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let key = (queue.to_owned(), id);
        if !last.contains_key(&key) && last.len() >= FAILURES_KEPT {
            let forget = last.keys().next().cloned();
            if let Some(forget) = forget {
                last.remove(&forget);
            }
        }
        let failure = last.entry(key).or_insert(Failure {
            error: String::new(),
            attempts: 0,
        });
        failure.error = error;
        failure.attempts += 1;
    }

    fn clear(&self, queue: &str, id: Uuid) {
        self.last
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .remove(&(queue.to_owned(), id));
    }

    fn get(&self, queue: &str, id: Uuid) -> Option<Failure> {
        self.last
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(&(queue.to_owned(), id))
            .cloned()
    }
}

/// The dead-letter queues this bus declared, whose depth it reports.
#[derive(Clone, Default)]
struct DeadLetters {
    queues: Arc<std::sync::Mutex<BTreeSet<String>>>,
    /// Woken when a queue is added, so its gauge appears without waiting a period.
    added: Arc<Notify>,
}

impl DeadLetters {
    fn add(&self, queue: String) {
        let added = self
            .queues
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(queue);
        if added {
            self.added.notify_one();
        }
    }

    fn names(&self) -> Vec<String> {
        self.queues
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .iter()
            .cloned()
            .collect()
    }
}

impl std::fmt::Debug for Bus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Bus")
            .field("prefix", &self.config.prefix)
            .finish_non_exhaustive()
    }
}

impl Bus {
    /// Starts the connection supervisor and waits (up to `wait`) for the first
    /// connection, so a broker that is down at start-up is reported at once.
    pub async fn connect(config: BusConfig, wait: Duration) -> anyhow::Result<Self> {
        let (tx, rx) = watch::channel(None);
        let shutdown = CancellationToken::new();
        let config = Arc::new(config);
        tokio::spawn(supervise(config.clone(), tx, shutdown.clone()));
        let dead_letters = DeadLetters::default();
        tokio::spawn(watch_dead_letters(
            config.clone(),
            rx.clone(),
            dead_letters.clone(),
            shutdown.clone(),
        ));
        let bus = Self {
            config,
            live: rx,
            shutdown,
            dead_letters,
            failures: Failures::default(),
        };
        bus.live(wait)
            .await
            .map_err(|_| anyhow::anyhow!("could not connect to rabbitmq within {wait:?}"))?;
        Ok(bus)
    }

    pub fn config(&self) -> &BusConfig {
        &self.config
    }

    /// Whether a connection to the broker is open now (cheap: reads the supervisor's
    /// current state). A lost connection reads `false` until the supervisor reconnects.
    pub fn is_connected(&self) -> bool {
        self.live
            .borrow()
            .as_ref()
            .is_some_and(|live| live.connection.status().connected())
    }

    /// Stops the supervisor and every consumer, closing the connection.
    pub fn shutdown(&self) {
        self.shutdown.cancel();
    }

    async fn live(&self, wait: Duration) -> Result<Arc<Live>, BusError> {
        let mut rx = self.live.clone();
        let found = tokio::time::timeout(wait, rx.wait_for(|live| live.is_some())).await;
        match found {
            Ok(Ok(live)) => live.clone().ok_or(BusError::NotConnected),
            _ => Err(BusError::NotConnected),
        }
    }

    /// Deletes the named queues (with their dead-letter queues) and this bus's
    /// exchanges. For tests and tooling that create throwaway topologies.
    pub async fn delete_topology(&self, queues: &[&str]) -> Result<(), BusError> {
        use lapin::options::{ExchangeDeleteOptions, QueueDeleteOptions};
        let live = self.live(self.config.publish_timeout).await?;
        let channel = live.connection.create_channel().await?;
        for name in queues {
            let queue = self.config.queue(name);
            for q in [queue.clone(), format!("{queue}.dlq")] {
                channel
                    .queue_delete(ShortString::from(q), QueueDeleteOptions::default())
                    .await?;
            }
        }
        for exchange in [self.config.exchange(), self.config.dead_letter_exchange()] {
            channel
                .exchange_delete(
                    ShortString::from(exchange),
                    ExchangeDeleteOptions::default(),
                )
                .await?;
        }
        let _ = channel.close(200, ShortString::from("bye")).await;
        Ok(())
    }

    /// Publishes `envelope` to the bus exchange with its kind as routing key, mandatory
    /// and persistent, and returns once the broker confirmed it. Unroutable (returned)
    /// messages and nacks are errors.
    pub async fn publish(&self, envelope: &Envelope) -> Result<(), BusError> {
        self.publish_with(envelope, true).await
    }

    /// Publishes a notification that may have no listener: like [`publish`](Self::publish)
    /// (confirmed, under the timeout) but not mandatory, so an unbound routing key
    /// drops it instead of failing.
    pub async fn broadcast(&self, envelope: &Envelope) -> Result<(), BusError> {
        self.publish_with(envelope, false).await
    }

    async fn publish_with(&self, envelope: &Envelope, mandatory: bool) -> Result<(), BusError> {
        let live = self.live(self.config.publish_timeout).await?;
        let timeout = self.config.publish_timeout;
        let id = envelope.message_id;
        let confirm = tokio::time::timeout(timeout, async {
            let confirm = live
                .publisher
                .basic_publish(
                    ShortString::from(self.config.exchange()),
                    ShortString::from(envelope.kind.as_str()),
                    BasicPublishOptions {
                        mandatory,
                        ..BasicPublishOptions::default()
                    },
                    &envelope.payload,
                    properties(envelope),
                )
                .await?;
            confirm.await
        })
        .await
        .map_err(|_| BusError::ConfirmTimeout(id))??;
        match confirm {
            Confirmation::Ack(None) => Ok(()),
            Confirmation::Ack(Some(_)) => Err(BusError::Unroutable(id)),
            Confirmation::Nack(_) => Err(BusError::Nacked(id)),
            Confirmation::NotRequested => Err(BusError::NotConnected),
        }
    }

    /// Consumes queue `name` (bound to `routing_keys`) until the bus shuts down,
    /// resubscribing after every reconnect. Each delivery runs `handler` inside a span
    /// parented on the message's trace context; it is acked after the handler returns
    /// `Ok`, requeued on a transient error and dead-lettered on a permanent one. Up to
    /// `concurrency` deliveries are handled at once.
    /// The queue and its bindings exist when this returns, so messages published
    /// from then on are routed to it.
    pub async fn consume(
        &self,
        name: &str,
        routing_keys: &[&str],
        concurrency: usize,
        handler: Handler,
    ) -> Result<(), BusError> {
        let one_by_one: BatchHandler = Arc::new(move |envelopes: Vec<Envelope>| {
            let handler = handler.clone();
            Box::pin(async move {
                let mut results = Vec::with_capacity(envelopes.len());
                for envelope in envelopes {
                    results.push(handler(envelope).await);
                }
                results
            })
        });
        self.consume_batches(name, routing_keys, concurrency, 1, one_by_one)
            .await
    }

    /// As [`Bus::consume`], but the deliveries already waiting when a handler slot
    /// frees (up to `max_batch`, never waiting for more) go to `handler` together, so
    /// it can handle them in one transaction: group commit, batches growing with the
    /// load. Each message is still acked, requeued or dead-lettered on its own result,
    /// and only after the handler returned.
    pub async fn consume_batches(
        &self,
        name: &str,
        routing_keys: &[&str],
        concurrency: usize,
        max_batch: usize,
        handler: BatchHandler,
    ) -> Result<(), BusError> {
        let bus = self.clone();
        let queue = self.config.queue(name);
        let keys: Vec<String> = routing_keys.iter().map(|k| (*k).to_owned()).collect();
        let live = self.live(self.config.publish_timeout).await?;
        let channel = live.connection.create_channel().await?;
        declare_queue(&channel, &self.config, &queue, &keys).await?;
        let _ = channel.close(200, ShortString::from("declared")).await;
        self.dead_letters.add(dead_letter_queue(&queue));
        tokio::spawn(async move {
            loop {
                if bus.shutdown.is_cancelled() {
                    return;
                }
                let live = tokio::select! {
                    () = bus.shutdown.cancelled() => return,
                    live = bus.live(Duration::from_secs(3600)) => live,
                };
                let Ok(live) = live else { continue };
                let consumer = Consumer {
                    queue: &queue,
                    keys: &keys,
                    concurrency,
                    max_batch,
                };
                match consume_once(&bus, &live, &consumer, handler.clone()).await {
                    Ok(()) => {
                        tracing::warn!(queue = %queue, "consumer stream ended; resubscribing")
                    }
                    Err(error) => {
                        tracing::warn!(queue = %queue, %error, "consumer failed; resubscribing");
                    }
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        });
        Ok(())
    }
}

impl Bus {
    /// Subscribes this process to `routing_keys` with a queue of its own (server-named,
    /// exclusive, deleted with the connection), so every replica sees every message.
    /// Messages published while no subscription exists (before this call, or between a
    /// lost connection and the next) are not delivered: `on_subscribed` runs after each
    /// (re)subscription so the caller can re-read the state it derives. Deliveries are
    /// handled one at a time, in order, and acked by the broker on delivery.
    pub async fn subscribe(
        &self,
        routing_keys: &[&str],
        on_subscribed: Arc<dyn Fn() + Send + Sync>,
        handler: Arc<dyn Fn(Envelope) + Send + Sync>,
    ) -> Result<(), BusError> {
        let keys: Vec<String> = routing_keys.iter().map(|k| (*k).to_owned()).collect();
        let live = self.live(self.config.publish_timeout).await?;
        let first = subscribe_once(&self.config, &live, &keys).await?;
        on_subscribed();
        let bus = self.clone();
        tokio::spawn(async move {
            let mut consumer = Some(first);
            loop {
                if let Some(deliveries) = consumer.take() {
                    let mut deliveries = std::pin::pin!(
                        deliveries.take_until(bus.shutdown.clone().cancelled_owned())
                    );
                    while let Some(delivery) = deliveries.next().await {
                        match delivery {
                            Ok(delivery) => match envelope_of(&delivery) {
                                Some(envelope) => handler(envelope),
                                None => {
                                    tracing::warn!("notification without a valid envelope; dropped")
                                }
                            },
                            Err(error) => {
                                tracing::warn!(%error, "subscription delivery error");
                                break;
                            }
                        }
                    }
                }
                if bus.shutdown.is_cancelled() {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
                let live = tokio::select! {
                    () = bus.shutdown.cancelled() => return,
                    live = bus.live(Duration::from_secs(3600)) => live,
                };
                let Ok(live) = live else { continue };
                match subscribe_once(&bus.config, &live, &keys).await {
                    Ok(next) => {
                        tracing::info!(keys = ?keys, "resubscribed");
                        on_subscribed();
                        consumer = Some(next);
                    }
                    Err(error) => tracing::warn!(%error, "resubscribe failed"),
                }
            }
        });
        Ok(())
    }
}

/// Handles messages that arrived together: with `together` (one transaction for all
/// of them) when there are several, and if that fails, or for a single message, with
/// `alone` on each in turn, so a bad message neither fails nor holds back the others.
/// `together` answers one result per message, in order; so does this.
pub async fn together_or_alone<'a, R, E, Together, Alone>(
    envelopes: &'a [Envelope],
    together: impl FnOnce(&'a [Envelope]) -> Together,
    mut alone: impl FnMut(&'a Envelope) -> Alone,
) -> Vec<R>
where
    E: std::fmt::Display,
    Together: Future<Output = Result<Vec<R>, E>>,
    Alone: Future<Output = R>,
{
    if envelopes.len() > 1 {
        match together(envelopes).await {
            Ok(results) => return results,
            Err(error) => {
                metrics::counter!("saga_batches_split_total").increment(1);
                tracing::info!(messages = envelopes.len(), %error, "batch failed; handling its messages one by one");
            }
        }
    }
    let mut results = Vec::with_capacity(envelopes.len());
    for envelope in envelopes {
        results.push(alone(envelope).await);
    }
    results
}

/// A message read from a dead-letter queue, as the dead-letter keeper receives it.
#[derive(Debug, Clone)]
pub struct DeadLetter {
    /// The queue that dead-lettered it (full name).
    pub queue: String,
    /// The broker's reason for its latest dead-lettering: `rejected` (a handler refused
    /// it for good), `delivery_limit`, `expired`...
    pub reason: String,
    /// The exchange and routing key it was published with.
    pub exchange: String,
    pub routing_key: String,
    /// Its message id; a fresh one if it had no valid id.
    pub message_id: Uuid,
    /// Its type (the routing key when it had none).
    pub kind: String,
    /// Its envelope, when it had a valid one.
    pub envelope: Option<Envelope>,
    pub payload: Vec<u8>,
    /// How its handler failed in this process, if it did (the last error).
    pub failure: Option<Failure>,
    /// Deliveries before it was dead-lettered as the broker counted them, when it says.
    pub delivery_count: Option<i64>,
}

/// Stores one dead letter; `Ok` acks it, an error leaves it in its queue for later.
pub type DeadLetterHandler = Arc<dyn Fn(DeadLetter) -> HandlerFuture + Send + Sync>;

/// How long a dead letter whose keeper failed waits before it is offered again.
const DEAD_LETTER_RETRY: Duration = Duration::from_secs(1);

impl Bus {
    /// The dead-letter queues of the queues this bus consumes (full names).
    pub fn dead_letter_queues(&self) -> Vec<String> {
        self.dead_letters.names()
    }

    /// Consumes dead-letter queue `dead_letter_queue` (one of
    /// [`dead_letter_queues`](Self::dead_letter_queues)) until the bus shuts down,
    /// resubscribing after every reconnect. Each message is acked after `handler`
    /// returned `Ok`; on an error it is requeued after a pause, never dropped.
    pub async fn keep_dead_letters(
        &self,
        dead_letter_queue: &str,
        handler: DeadLetterHandler,
    ) -> Result<(), BusError> {
        let live = self.live(self.config.publish_timeout).await?;
        let channel = live.connection.create_channel().await?;
        declare_dead_letter_queue(&channel, dead_letter_queue).await?;
        let _ = channel.close(200, ShortString::from("declared")).await;
        let bus = self.clone();
        let queue = dead_letter_queue.to_owned();
        tokio::spawn(async move {
            loop {
                if bus.shutdown.is_cancelled() {
                    return;
                }
                let live = tokio::select! {
                    () = bus.shutdown.cancelled() => return,
                    live = bus.live(Duration::from_secs(3600)) => live,
                };
                let Ok(live) = live else { continue };
                match keep_once(&bus, &live, &queue, handler.clone()).await {
                    Ok(()) => {
                        tracing::warn!(queue = %queue, "dead-letter stream ended; resubscribing")
                    }
                    Err(error) => {
                        tracing::warn!(queue = %queue, %error, "dead-letter consumer failed; resubscribing");
                    }
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        });
        Ok(())
    }
}

async fn declare_dead_letter_queue(channel: &Channel, queue: &str) -> Result<(), lapin::Error> {
    channel
        .queue_declare(
            ShortString::from(queue),
            QueueDeclareOptions {
                durable: true,
                ..QueueDeclareOptions::default()
            },
            table(&[(
                "x-queue-type",
                AMQPValue::LongString(LongString::from("quorum")),
            )]),
        )
        .await
        .map(|_| ())
}

async fn keep_once(
    bus: &Bus,
    live: &Live,
    queue: &str,
    handler: DeadLetterHandler,
) -> Result<(), lapin::Error> {
    let channel = live.connection.create_channel().await?;
    declare_dead_letter_queue(&channel, queue).await?;
    channel.basic_qos(16, BasicQosOptions::default()).await?;
    let consumer = channel
        .basic_consume(
            ShortString::from(queue),
            ShortString::from(""),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await?;
    tracing::info!(queue = %queue, "dead-letter keeper subscribed");
    let deliveries = consumer.take_until(bus.shutdown.clone().cancelled_owned());
    deliveries
        .for_each_concurrent(4, |delivery| {
            let handler = handler.clone();
            async move {
                let delivery = match delivery {
                    Ok(d) => d,
                    Err(error) => {
                        tracing::warn!(queue = %queue, %error, "dead-letter delivery error");
                        return;
                    }
                };
                let letter = dead_letter_of(queue, &delivery, &bus.failures);
                let id = letter.message_id;
                let from = letter.queue.clone();
                let acked = match handler(letter).await {
                    Ok(()) => {
                        bus.failures.clear(&from, id);
                        delivery.acker.ack(BasicAckOptions::default()).await
                    }
                    Err(error) => {
                        tracing::warn!(queue = %queue, message_id = %id, %error, "storing a dead letter failed; requeueing");
                        tokio::time::sleep(DEAD_LETTER_RETRY).await;
                        delivery
                            .acker
                            .nack(BasicNackOptions {
                                requeue: true,
                                multiple: false,
                            })
                            .await
                    }
                };
                if let Err(error) = acked {
                    // Redelivered: storing a letter is idempotent.
                    tracing::warn!(queue = %queue, message_id = %id, %error, "dead-letter ack failed");
                }
            }
        })
        .await;
    let _ = channel.close(200, ShortString::from("bye")).await;
    Ok(())
}

fn int_of(value: &AMQPValue) -> Option<i64> {
    match value {
        AMQPValue::ShortShortInt(v) => Some(i64::from(*v)),
        AMQPValue::ShortShortUInt(v) => Some(i64::from(*v)),
        AMQPValue::ShortInt(v) => Some(i64::from(*v)),
        AMQPValue::ShortUInt(v) => Some(i64::from(*v)),
        AMQPValue::LongInt(v) => Some(i64::from(*v)),
        AMQPValue::LongUInt(v) => Some(i64::from(*v)),
        AMQPValue::LongLongInt(v) => Some(*v),
        _ => None,
    }
}

fn str_of(value: &AMQPValue) -> Option<String> {
    match value {
        AMQPValue::LongString(s) => Some(String::from_utf8_lossy(s.as_bytes()).into_owned()),
        AMQPValue::ShortString(s) => Some(s.as_str().to_owned()),
        _ => None,
    }
}

/// Reads a dead-lettered delivery: its envelope, and from the broker's `x-death`
/// history (most recent first) the queue, reason, exchange and routing key of its
/// latest dead-lettering.
fn dead_letter_of(
    dead_letter_queue: &str,
    delivery: &lapin::message::Delivery,
    failures: &Failures,
) -> DeadLetter {
    let props = &delivery.properties;
    let empty = FieldTable::default();
    let headers = props.headers().as_ref().unwrap_or(&empty);
    let latest = match headers.inner().get("x-death") {
        Some(AMQPValue::FieldArray(deaths)) => deaths.as_slice().iter().find_map(|d| match d {
            AMQPValue::FieldTable(t) => Some(t.clone()),
            _ => None,
        }),
        _ => None,
    };
    let death = |key: &str| {
        latest
            .as_ref()
            .and_then(|t| t.inner().get(key).and_then(str_of))
    };
    let queue = header_str(headers, "x-last-death-queue")
        .or_else(|| death("queue"))
        .unwrap_or_else(|| {
            dead_letter_queue
                .strip_suffix(".dlq")
                .unwrap_or(dead_letter_queue)
                .to_owned()
        });
    let reason = header_str(headers, "x-last-death-reason")
        .or_else(|| death("reason"))
        .unwrap_or_else(|| "unknown".to_owned());
    let exchange = header_str(headers, "x-last-death-exchange")
        .or_else(|| death("exchange"))
        .unwrap_or_else(|| delivery.exchange.as_str().to_owned());
    let routing_key = latest
        .as_ref()
        .and_then(|t| match t.inner().get("routing-keys") {
            Some(AMQPValue::FieldArray(keys)) => keys.as_slice().iter().find_map(str_of),
            _ => None,
        })
        .unwrap_or_else(|| delivery.routing_key.as_str().to_owned());
    let envelope = envelope_of(delivery);
    let message_id = envelope
        .as_ref()
        .map(|e| e.message_id)
        .or_else(|| {
            props
                .message_id()
                .as_ref()
                .and_then(|id| id.as_str().parse().ok())
        })
        .unwrap_or_else(Uuid::now_v7);
    let kind = props
        .kind()
        .as_ref()
        .map(|k| k.as_str().to_owned())
        .unwrap_or_else(|| routing_key.clone());
    let delivery_count = headers.inner().get("x-delivery-count").and_then(int_of);
    DeadLetter {
        failure: failures.get(&queue, message_id),
        queue,
        reason,
        exchange,
        routing_key,
        message_id,
        kind,
        envelope,
        payload: delivery.data.clone(),
        delivery_count,
    }
}

async fn subscribe_once(
    config: &BusConfig,
    live: &Live,
    keys: &[String],
) -> Result<lapin::Consumer, lapin::Error> {
    let channel = live.connection.create_channel().await?;
    declare_exchanges(&channel, config).await?;
    let queue = channel
        .queue_declare(
            ShortString::from(""),
            QueueDeclareOptions {
                exclusive: true,
                auto_delete: true,
                ..QueueDeclareOptions::default()
            },
            FieldTable::default(),
        )
        .await?;
    for key in keys {
        channel
            .queue_bind(
                queue.name().clone(),
                ShortString::from(config.exchange()),
                ShortString::from(key.as_str()),
                QueueBindOptions::default(),
                FieldTable::default(),
            )
            .await?;
    }
    channel
        .basic_consume(
            queue.name().clone(),
            ShortString::from(""),
            BasicConsumeOptions {
                no_ack: true,
                ..BasicConsumeOptions::default()
            },
            FieldTable::default(),
        )
        .await
}

fn properties(envelope: &Envelope) -> BasicProperties {
    let mut headers = FieldTable::default();
    headers.insert(
        ShortString::from("x-saga-id"),
        AMQPValue::LongString(LongString::from(envelope.saga_id.to_string())),
    );
    headers.insert(
        ShortString::from("x-message-version"),
        AMQPValue::LongInt(envelope.version),
    );
    headers.insert(
        ShortString::from("x-occurred-at"),
        AMQPValue::LongString(LongString::from(envelope.occurred_at.to_rfc3339())),
    );
    for (key, value) in &envelope.trace_context {
        headers.insert(
            ShortString::from(key.as_str()),
            AMQPValue::LongString(LongString::from(value.as_str())),
        );
    }
    BasicProperties::default()
        .with_message_id(ShortString::from(envelope.message_id.to_string()))
        .with_type(ShortString::from(envelope.kind.as_str()))
        .with_timestamp(u64::try_from(envelope.occurred_at.timestamp()).unwrap_or_default())
        .with_content_type(ShortString::from("application/x-protobuf"))
        .with_delivery_mode(2)
        .with_headers(headers)
}

fn header_str(headers: &FieldTable, key: &str) -> Option<String> {
    match headers.inner().get(key)? {
        AMQPValue::LongString(s) => Some(String::from_utf8_lossy(s.as_bytes()).into_owned()),
        AMQPValue::ShortString(s) => Some(s.as_str().to_owned()),
        _ => None,
    }
}

/// Reads the envelope back from a delivery; `None` when it lacks a valid id or type.
fn envelope_of(delivery: &lapin::message::Delivery) -> Option<Envelope> {
    let props = &delivery.properties;
    let message_id = props.message_id().as_ref()?.as_str().parse().ok()?;
    let kind = props
        .kind()
        .as_ref()
        .map(|k| k.as_str().to_owned())
        .unwrap_or_else(|| delivery.routing_key.as_str().to_owned());
    let empty = FieldTable::default();
    let headers = props.headers().as_ref().unwrap_or(&empty);
    let saga_id = header_str(headers, "x-saga-id")?.parse().ok()?;
    let version = match headers.inner().get("x-message-version") {
        Some(AMQPValue::LongInt(v)) => *v,
        _ => 1,
    };
    let occurred_at = header_str(headers, "x-occurred-at")
        .and_then(|t| DateTime::parse_from_rfc3339(&t).ok())
        .map(|t| t.with_timezone(&Utc))
        .unwrap_or_else(Utc::now);
    let trace_context = ["traceparent", "tracestate"]
        .into_iter()
        .filter_map(|k| header_str(headers, k).map(|v| (k.to_owned(), v)))
        .collect();
    Some(Envelope {
        message_id,
        kind,
        saga_id,
        version,
        occurred_at,
        trace_context,
        payload: delivery.data.clone(),
    })
}

/// What [`consume_once`] consumes and how.
struct Consumer<'a> {
    queue: &'a str,
    keys: &'a [String],
    /// Batches handled at once.
    concurrency: usize,
    max_batch: usize,
}

async fn consume_once(
    bus: &Bus,
    live: &Live,
    consumer: &Consumer<'_>,
    handler: BatchHandler,
) -> Result<(), lapin::Error> {
    let queue = consumer.queue;
    let channel = live.connection.create_channel().await?;
    declare_queue(&channel, &bus.config, queue, consumer.keys).await?;
    // Enough unacked deliveries in hand to fill every batch slot: with fewer, the
    // slots take the deliveries one by one and batches never form.
    let in_hand = consumer
        .concurrency
        .saturating_mul(consumer.max_batch.max(1));
    let prefetch = bus
        .config
        .prefetch
        .max(u16::try_from(in_hand).unwrap_or(u16::MAX));
    channel
        .basic_qos(prefetch, BasicQosOptions::default())
        .await?;
    let deliveries = channel
        .basic_consume(
            ShortString::from(queue),
            ShortString::from(""),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await?;
    tracing::info!(queue = %queue, max_batch = consumer.max_batch, "consumer subscribed");
    let shutdown = bus.shutdown.clone();
    deliveries
        .take_until(shutdown.cancelled_owned())
        // What is already waiting, without waiting for more.
        .ready_chunks(consumer.max_batch.max(1))
        .for_each_concurrent(consumer.concurrency, |chunk| {
            let handler = handler.clone();
            let failures = bus.failures.clone();
            async move {
                let mut batch = Vec::with_capacity(chunk.len());
                for delivery in chunk {
                    match delivery {
                        Ok(delivery) => batch.push(delivery),
                        Err(error) => tracing::warn!(queue = %queue, %error, "delivery error"),
                    }
                }
                handle_deliveries(queue, batch, handler, &failures).await;
            }
        })
        .await;
    let _ = channel.close(200, ShortString::from("bye")).await;
    Ok(())
}

/// A delivery being handled: its envelope's identity and the span it is handled in.
struct InHand {
    delivery: lapin::message::Delivery,
    kind: String,
    id: Uuid,
    span: tracing::Span,
}

async fn handle_deliveries(
    queue: &str,
    deliveries: Vec<lapin::message::Delivery>,
    handler: BatchHandler,
    failures: &Failures,
) {
    let mut in_hand = Vec::with_capacity(deliveries.len());
    let mut envelopes = Vec::with_capacity(deliveries.len());
    for delivery in deliveries {
        let Some(envelope) = envelope_of(&delivery) else {
            tracing::warn!(queue = %queue, "message without a valid envelope; dead-lettering");
            let _ = delivery
                .acker
                .reject(BasicRejectOptions { requeue: false })
                .await;
            continue;
        };
        let span = tracing::info_span!(
            "amqp.consume",
            otel.name = %format!("consume {}", envelope.kind),
            otel.kind = "consumer",
            messaging.system = "rabbitmq",
            messaging.destination = %queue,
            messaging.message.id = %envelope.message_id,
            saga_id = %envelope.saga_id,
        );
        telemetry::set_parent(&span, telemetry::context_from_map(&envelope.trace_context));
        in_hand.push(InHand {
            delivery,
            kind: envelope.kind.clone(),
            id: envelope.message_id,
            span,
        });
        envelopes.push(envelope);
    }
    let Some(first) = in_hand.first() else {
        return;
    };
    metrics::histogram!("bus_consume_batch_size", "queue" => queue.to_owned())
        .record(in_hand.len() as f64);
    // A batch is handled in its first message's span (alone, the message's own).
    let span = first.span.clone();
    let expected = in_hand.len();
    let mut results = handler(envelopes).instrument(span).await;
    if results.len() != expected {
        tracing::error!(queue = %queue, expected, answered = results.len(), "batch handler answered the wrong number of results; requeueing the rest");
    }
    results.resize_with(expected, || {
        Err(HandleError::Transient(anyhow::anyhow!(
            "the batch handler gave no result for this message"
        )))
    });
    futures::future::join_all(
        in_hand
            .into_iter()
            .zip(results)
            .map(|(message, result)| settle(queue, message, result, failures)),
    )
    .await;
}

/// Acks, requeues or dead-letters one handled message by its handler's result.
async fn settle(
    queue: &str,
    message: InHand,
    result: Result<(), HandleError>,
    failures: &Failures,
) {
    let InHand {
        delivery,
        kind,
        id,
        span,
    } = message;
    let acked = match result {
        Ok(()) => {
            failures.clear(queue, id);
            metrics::counter!("bus_messages_consumed_total", "queue" => queue.to_owned(), "outcome" => "ack").increment(1);
            delivery.acker.ack(BasicAckOptions::default()).await
        }
        Err(HandleError::Transient(error)) => {
            failures.record(queue, id, format!("{error:#}"));
            span.in_scope(|| tracing::warn!(kind = %kind, message_id = %id, %error, "handler failed; requeueing"));
            metrics::counter!("bus_messages_consumed_total", "queue" => queue.to_owned(), "outcome" => "requeue").increment(1);
            tokio::time::sleep(Duration::from_millis(100)).await;
            delivery
                .acker
                .nack(BasicNackOptions {
                    requeue: true,
                    multiple: false,
                })
                .await
        }
        Err(HandleError::Permanent(error)) => {
            failures.record(queue, id, format!("{error:#}"));
            span.in_scope(|| tracing::error!(kind = %kind, message_id = %id, %error, "handler rejected message; dead-lettering"));
            metrics::counter!("bus_messages_consumed_total", "queue" => queue.to_owned(), "outcome" => "dead_letter").increment(1);
            delivery
                .acker
                .reject(BasicRejectOptions { requeue: false })
                .await
        }
    };
    if let Err(error) = acked {
        // The broker redelivers it; the handler's inbox check makes that harmless.
        tracing::warn!(kind = %kind, message_id = %id, %error, "ack failed");
    }
}

fn table(entries: &[(&str, AMQPValue)]) -> FieldTable {
    let mut table = FieldTable::default();
    for (k, v) in entries {
        table.insert(ShortString::from(*k), v.clone());
    }
    table
}

async fn declare_exchanges(channel: &Channel, config: &BusConfig) -> Result<(), lapin::Error> {
    let durable = ExchangeDeclareOptions {
        durable: true,
        ..ExchangeDeclareOptions::default()
    };
    channel
        .exchange_declare(
            ShortString::from(config.exchange()),
            ExchangeKind::Topic,
            durable,
            FieldTable::default(),
        )
        .await?;
    channel
        .exchange_declare(
            ShortString::from(config.dead_letter_exchange()),
            ExchangeKind::Direct,
            durable,
            FieldTable::default(),
        )
        .await
}

async fn declare_queue(
    channel: &Channel,
    config: &BusConfig,
    queue: &str,
    keys: &[String],
) -> Result<(), lapin::Error> {
    declare_exchanges(channel, config).await?;
    let durable = QueueDeclareOptions {
        durable: true,
        ..QueueDeclareOptions::default()
    };
    let dead = dead_letter_queue(queue);
    let quorum = AMQPValue::LongString(LongString::from("quorum"));
    channel
        .queue_declare(
            ShortString::from(dead.as_str()),
            durable,
            table(&[("x-queue-type", quorum.clone())]),
        )
        .await?;
    channel
        .queue_bind(
            ShortString::from(dead.as_str()),
            ShortString::from(config.dead_letter_exchange()),
            ShortString::from(queue),
            QueueBindOptions::default(),
            FieldTable::default(),
        )
        .await?;
    channel
        .queue_declare(
            ShortString::from(queue),
            durable,
            table(&[
                ("x-queue-type", quorum),
                (
                    "x-delivery-limit",
                    AMQPValue::LongLongInt(config.delivery_limit),
                ),
                (
                    "x-dead-letter-exchange",
                    AMQPValue::LongString(LongString::from(config.dead_letter_exchange())),
                ),
                (
                    "x-dead-letter-routing-key",
                    AMQPValue::LongString(LongString::from(queue)),
                ),
            ]),
        )
        .await?;
    for key in keys {
        channel
            .queue_bind(
                ShortString::from(queue),
                ShortString::from(config.exchange()),
                ShortString::from(key.as_str()),
                QueueBindOptions::default(),
                FieldTable::default(),
            )
            .await?;
    }
    Ok(())
}

/// The dead-letter queue of `queue`.
fn dead_letter_queue(queue: &str) -> String {
    format!("{queue}.dlq")
}

/// Reports the depth of every dead-letter queue in `dead_letters` each
/// `config.dead_letter_check` (and at once when one is added), while connected.
async fn watch_dead_letters(
    config: Arc<BusConfig>,
    live: watch::Receiver<Option<Arc<Live>>>,
    dead_letters: DeadLetters,
    shutdown: CancellationToken,
) {
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = dead_letters.added.notified() => {}
            () = tokio::time::sleep(config.dead_letter_check) => {}
        }
        let current = live.borrow().clone();
        let Some(current) = current.filter(|l| l.connection.status().connected()) else {
            continue;
        };
        let queues = dead_letters.names();
        if queues.is_empty() {
            continue;
        }
        match tokio::time::timeout(
            config.publish_timeout,
            record_dead_letters(&current, &queues),
        )
        .await
        {
            Ok(Ok(())) => {}
            Ok(Err(error)) => tracing::warn!(%error, "reading dead-letter queue depths failed"),
            Err(_) => tracing::warn!("reading dead-letter queue depths timed out"),
        }
    }
}

/// One passive `queue.declare` per dead-letter queue, on a channel of its own.
async fn record_dead_letters(live: &Live, queues: &[String]) -> Result<(), lapin::Error> {
    let channel = live.connection.create_channel().await?;
    let passive = QueueDeclareOptions {
        passive: true,
        ..QueueDeclareOptions::default()
    };
    let mut result = Ok(());
    for queue in queues {
        match channel
            .queue_declare(
                ShortString::from(queue.as_str()),
                passive,
                FieldTable::default(),
            )
            .await
        {
            Ok(declared) => {
                // Messages waiting in a dead-letter queue this process declared.
                metrics::gauge!("bus_dead_letter_messages", "queue" => queue.clone())
                    .set(f64::from(declared.message_count()));
            }
            // A missing queue closes the channel: report the error, try again next time.
            Err(error) => {
                result = Err(error);
                break;
            }
        }
    }
    let _ = channel.close(200, ShortString::from("bye")).await;
    result
}

async fn open(config: &BusConfig) -> Result<Live, lapin::Error> {
    let properties = ConnectionProperties::default()
        .with_connection_name(LongString::from(config.connection_name.as_str()));
    let connection = Connection::connect(&config.url, properties).await?;
    let publisher = connection.create_channel().await?;
    publisher
        .confirm_select(ConfirmSelectOptions::default())
        .await?;
    declare_exchanges(&publisher, config).await?;
    Ok(Live {
        connection,
        publisher,
    })
}

/// How the supervisor retries a failed connect: exponential from 100 ms to 5 s, with
/// jitter so replicas that lost the broker together do not reconnect in lockstep.
pub fn reconnect_backoff() -> ExponentialBuilder {
    ExponentialBuilder::new()
        .with_min_delay(Duration::from_millis(100))
        .with_max_delay(Duration::from_secs(5))
        .with_jitter()
        .without_max_times()
}

fn set_connected(config: &BusConfig, up: bool) {
    // 1 while this process's connection to the broker is up, 0 while it is not.
    metrics::gauge!("bus_connected", "connection" => config.connection_name.clone()).set(if up {
        1.0
    } else {
        0.0
    });
}

/// Keeps one connection open: connects with exponential backoff, announces it, and
/// on loss clears it so publishers wait and consumers resubscribe on the next one.
async fn supervise(
    config: Arc<BusConfig>,
    tx: watch::Sender<Option<Arc<Live>>>,
    shutdown: CancellationToken,
) {
    // Not connected yet: the gauge reads 0 (not absent) while the first connect retries.
    set_connected(&config, false);
    loop {
        // A fresh backoff for every connection: it starts short again after a loss.
        let connect = (|| open(&config))
            .retry(reconnect_backoff())
            .notify(|error, retry_in| {
                tracing::warn!(%error, retry_in_ms = retry_in.as_millis() as u64, "bus connect failed");
            });
        let opened = tokio::select! {
            () = shutdown.cancelled() => break,
            opened = connect => opened,
        };
        match opened {
            Ok(live) => {
                let live = Arc::new(live);
                let mut events = live.connection.events_listener();
                tx.send_replace(Some(live.clone()));
                set_connected(&config, true);
                tracing::info!(prefix = %config.prefix, "bus connected");
                loop {
                    tokio::select! {
                        () = shutdown.cancelled() => {
                            tx.send_replace(None);
                            set_connected(&config, false);
                            let _ = live.connection.close(200, ShortString::from("shutdown")).await;
                            return;
                        }
                        event = events.next() => match event {
                            Some(lapin::Event::Error(error)) => {
                                tracing::warn!(%error, "bus connection lost");
                                break;
                            }
                            Some(_) => {}
                            None => break,
                        },
                        () = tokio::time::sleep(Duration::from_secs(1)) => {
                            if !live.connection.status().connected() {
                                tracing::warn!("bus connection closed");
                                break;
                            }
                            // Again each second, so a recorder installed after the
                            // connection came up (the service shell's) has it too.
                            set_connected(&config, true);
                        }
                    }
                }
                tx.send_replace(None);
                set_connected(&config, false);
            }
            // Unreachable with an unbounded backoff; kept so a bound added later is safe.
            Err(error) => tracing::error!(%error, "bus connect gave up"),
        }
    }
    tx.send_replace(None);
}

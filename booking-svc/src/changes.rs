//! The change feed: every booking and catalog change booking-svc makes, published to the
//! bus for realtime-svc and search-svc. Seat changes take another road: the hold scripts
//! append them to a Redis stream that [`crate::seat_relay`] publishes.
//!
//! Changes are queued without waiting and published by one task, which puts all that
//! queued up while its previous publish was in flight into one message per kind: one
//! message per change when the system is quiet, few large ones in a flash sale. They
//! are notifications, not saga messages: not mandatory (nobody may be listening) and
//! not in the outbox. A consumer that misses one notices the gap in the seat versions
//! (or rebuilds) and reads the state again.

use chrono::{DateTime, Utc};
use marquee_infra::bus::{Bus, Envelope};
use marquee_proto::booking as pb;
use prost::Message;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::domain::{AccountId, BookingId, BookingStatus, EventId};
use crate::grpc::{status_pb, timestamp};
pub use marquee_proto::kinds::{BOOKINGS_CHANGED, EVENT_CHANGED, SEATS_CHANGED};

/// Changes waiting to be published; beyond this the feed drops (and counts) them.
const QUEUE: usize = 65_536;
/// Most changes of one kind in one message.
const BATCH: usize = 2_000;

/// A booking's status after a committed transition.
#[derive(Debug, Clone)]
pub struct BookingMoved {
    pub id: BookingId,
    pub buyer: AccountId,
    pub event: EventId,
    pub status: BookingStatus,
    pub cancel_reason: String,
    pub updated_at: DateTime<Utc>,
}

enum Change {
    Booking(pb::BookingChanged),
    Event(Box<pb::Event>),
}

/// Where changes go. Cheap to clone.
#[derive(Debug, Clone)]
pub struct ChangeFeed {
    tx: mpsc::Sender<Change>,
}

impl std::fmt::Debug for Change {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Change::Booking(_) => "Booking",
            Change::Event(_) => "Event",
        })
    }
}

impl ChangeFeed {
    /// Starts the publishing task; it drains what is queued and stops on `shutdown`.
    pub fn spawn(bus: Bus, shutdown: CancellationToken) -> Self {
        let (tx, rx) = mpsc::channel(QUEUE);
        tokio::spawn(publish_loop(bus, rx, shutdown));
        Self { tx }
    }

    fn send(&self, change: Change) {
        if let Err(error) = self.tx.try_send(change) {
            metrics::counter!("changes_dropped_total").increment(1);
            tracing::warn!(change = ?error.into_inner(), "change feed full; change dropped");
        }
    }

    pub fn booking(&self, moved: BookingMoved) {
        self.send(Change::Booking(pb::BookingChanged {
            booking_id: moved.id.to_string(),
            buyer_id: moved.buyer.to_string(),
            event_id: moved.event.to_string(),
            status: status_pb(moved.status) as i32,
            cancel_reason: moved.cancel_reason,
            updated_at: timestamp(moved.updated_at),
        }));
    }

    /// An event was created or changed (`event` as CatalogService returns it).
    pub fn event(&self, event: pb::Event) {
        self.send(Change::Event(Box::new(event)));
    }
}

/// A notification envelope (no saga: notifications are not saga messages).
pub(crate) fn envelope(kind: &str, payload: Vec<u8>) -> Envelope {
    Envelope {
        message_id: Uuid::new_v4(),
        kind: kind.to_owned(),
        saga_id: Uuid::nil(),
        version: 1,
        occurred_at: Utc::now(),
        trace_context: Default::default(),
        payload,
    }
}

async fn publish_loop(bus: Bus, mut rx: mpsc::Receiver<Change>, shutdown: CancellationToken) {
    loop {
        let first = tokio::select! {
            change = rx.recv() => change,
            () = shutdown.cancelled() => {
                rx.close();
                rx.recv().await
            }
        };
        let Some(first) = first else { return };
        let mut bookings = Vec::new();
        let mut envelopes = Vec::new();
        let mut next = Some(first);
        while let Some(change) = next.take() {
            match change {
                Change::Booking(c) => bookings.push(c),
                Change::Event(event) => envelopes.push(envelope(
                    EVENT_CHANGED,
                    pb::EventChanged {
                        event: Some(*event),
                    }
                    .encode_to_vec(),
                )),
            }
            if bookings.len() < BATCH {
                next = rx.try_recv().ok();
            }
        }
        if !bookings.is_empty() {
            let batch = pb::BookingChanges { changes: bookings };
            envelopes.push(envelope(BOOKINGS_CHANGED, batch.encode_to_vec()));
        }
        let results = futures::future::join_all(envelopes.iter().map(|e| bus.broadcast(e))).await;
        for (envelope, result) in envelopes.iter().zip(results) {
            match result {
                Ok(()) => {
                    metrics::counter!("changes_published_total", "kind" => envelope.kind.clone())
                        .increment(1)
                }
                Err(error) => {
                    metrics::counter!("changes_dropped_total").increment(1);
                    tracing::warn!(kind = %envelope.kind, %error, "change publish failed");
                }
            }
        }
    }
}

//! The change feed: every booking and catalog change booking-svc makes, published to the
//! bus for realtime-svc and search-svc. Seat changes take another road: the hold scripts
//! append them to a Redis stream that `seat_relay` publishes.
//!
//! Changes are queued without waiting and published by one task, which puts all that
//! queued up while its previous publish was in flight into one message per kind: one
//! message per change when the system is quiet, few large ones in a flash sale. They
//! are notifications, not saga messages: not mandatory (nobody may be listening) and
//! not in the outbox. A consumer that misses one notices the gap in the seat versions
//! (or rebuilds) and reads the state again.

use marquee_infra::bus::Bus;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::catalog::EventInfo;
use crate::domain::BookingMoved;
use crate::wire;
pub use marquee_proto::kinds::{BOOKINGS_CHANGED, EVENT_CHANGED, SEATS_CHANGED};

/// Changes waiting to be published; beyond this the feed drops (and counts) them.
const QUEUE: usize = 65_536;
/// Most changes of one kind in one message.
const BATCH: usize = 2_000;

enum Change {
    Booking(BookingMoved),
    /// An `event_changed` payload, encoded when the change was made.
    Event(Vec<u8>),
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
        self.send(Change::Booking(moved));
    }

    /// An event was created or changed.
    pub fn event(&self, event: &EventInfo) {
        self.send(Change::Event(wire::bus::event_changed(event)));
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
                Change::Event(payload) => {
                    envelopes.push(wire::bus::notification(EVENT_CHANGED, payload))
                }
            }
            if bookings.len() < BATCH {
                next = rx.try_recv().ok();
            }
        }
        if !bookings.is_empty() {
            envelopes.push(wire::bus::notification(
                BOOKINGS_CHANGED,
                wire::bus::booking_changes(&bookings),
            ));
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

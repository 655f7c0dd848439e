//! Booking watchers: the status changes of one booking, for its buyer.
//!
//! A watch subscribes to the booking's `bookings.changed` notifications first, then
//! reads the booking from booking-svc with the caller's own token (so another buyer's
//! booking is NOT_FOUND, as in GetBooking), and sends it followed by each change that
//! moves it forward. Statuses only move forward, so a notification that arrives late
//! or twice is recognised by its status and skipped.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

use futures::Stream;
use marquee_infra::grpc::PropagateTrace;
use marquee_proto::booking::booking_service_client::BookingServiceClient;
use marquee_proto::booking::{Booking, BookingChanged, BookingChanges, GetBookingRequest};
use marquee_proto::realtime::BookingUpdate;
use tokio::sync::broadcast;
use tonic::metadata::MetadataValue;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel;
use uuid::Uuid;

use crate::error::RealtimeError;

pub type BookingClient = BookingServiceClient<InterceptedService<Channel, PropagateTrace>>;

/// Changes of one booking a watcher may be behind before it re-reads the booking.
const WATCHER_BUFFER: usize = 16;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct BookingId(pub Uuid);

impl BookingId {
    pub fn parse(value: &str) -> Result<Self, RealtimeError> {
        value
            .parse()
            .map(BookingId)
            .map_err(|_| RealtimeError::invalid("bookingId", "must be a UUID"))
    }
}

type Channels = HashMap<BookingId, broadcast::Sender<Arc<BookingChanged>>>;

pub struct BookingHub {
    channels: Mutex<Channels>,
    client: BookingClient,
}

/// Removes a booking's channel when its last watcher goes.
struct Watching {
    hub: Arc<BookingHub>,
    id: BookingId,
}

impl Drop for Watching {
    fn drop(&mut self) {
        let mut channels = self.hub.channels();
        if channels
            .get(&self.id)
            .is_some_and(|tx| tx.receiver_count() == 0)
        {
            channels.remove(&self.id);
        }
        metrics::gauge!("realtime_booking_watchers").decrement(1.0);
    }
}

impl BookingHub {
    pub fn new(client: BookingClient) -> Arc<Self> {
        Arc::new(Self {
            channels: Mutex::new(HashMap::new()),
            client,
        })
    }

    fn channels(&self) -> MutexGuard<'_, Channels> {
        self.channels
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Passes a `bookings.changed` notification to the watchers of its bookings.
    pub fn on_changes(&self, changes: BookingChanges) {
        let channels = self.channels();
        for change in changes.changes {
            let Ok(id) = change.booking_id.parse().map(BookingId) else {
                continue;
            };
            if let Some(tx) = channels.get(&id) {
                let _ = tx.send(Arc::new(change));
            }
        }
    }

    /// The booking as the caller (whose `authorization` is passed on) may see it, then
    /// each change that moves it forward.
    pub async fn watch(
        self: &Arc<Self>,
        id: BookingId,
        authorization: MetadataValue<tonic::metadata::Ascii>,
    ) -> Result<impl Stream<Item = BookingUpdate> + Send + 'static, RealtimeError> {
        // Declared before the receiver, so it is dropped after it (on an error below
        // too) and sees the channel without receivers.
        let watching = Watching {
            hub: self.clone(),
            id,
        };
        metrics::gauge!("realtime_booking_watchers").increment(1.0);
        let rx = self
            .channels()
            .entry(id)
            .or_insert_with(|| broadcast::channel(WATCHER_BUFFER).0)
            .subscribe();
        let booking = self.read(id, &authorization).await?;
        let watcher = Watcher {
            first: Some(booking.clone()),
            booking,
            rx,
            hub: self.clone(),
            authorization,
            _watching: watching,
        };
        Ok(futures::stream::unfold(watcher, Watcher::next))
    }

    async fn read(
        &self,
        id: BookingId,
        authorization: &MetadataValue<tonic::metadata::Ascii>,
    ) -> Result<Booking, RealtimeError> {
        let mut request = tonic::Request::new(GetBookingRequest {
            booking_id: id.0.to_string(),
        });
        request
            .metadata_mut()
            .insert("authorization", authorization.clone());
        self.client
            .clone()
            .get_booking(request)
            .await
            .map(tonic::Response::into_inner)
            .map_err(RealtimeError::Upstream)
    }
}

struct Watcher {
    first: Option<Booking>,
    booking: Booking,
    rx: broadcast::Receiver<Arc<BookingChanged>>,
    hub: Arc<BookingHub>,
    authorization: MetadataValue<tonic::metadata::Ascii>,
    _watching: Watching,
}

impl Watcher {
    async fn next(mut self) -> Option<(BookingUpdate, Self)> {
        if let Some(booking) = self.first.take() {
            return Some((
                BookingUpdate {
                    booking: Some(booking),
                },
                self,
            ));
        }
        loop {
            match self.rx.recv().await {
                Ok(change) => {
                    // Statuses are numbered in the order a booking moves through them.
                    if change.buyer_id != self.booking.buyer_id
                        || change.status <= self.booking.status
                    {
                        continue;
                    }
                    self.booking.status = change.status;
                    self.booking.cancel_reason = change.cancel_reason.clone();
                    self.booking.updated_at = change.updated_at;
                }
                Err(broadcast::error::RecvError::Lagged(_)) => {
                    let id = BookingId(self.booking.booking_id.parse().ok()?);
                    let Ok(fresh) = self.hub.read(id, &self.authorization).await else {
                        return None;
                    };
                    if fresh.status <= self.booking.status {
                        continue;
                    }
                    self.booking = fresh;
                }
                Err(broadcast::error::RecvError::Closed) => return None,
            }
            let update = BookingUpdate {
                booking: Some(self.booking.clone()),
            };
            return Some((update, self));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_refused_watch_leaves_no_channel_behind() {
        // Nothing listens on port 1: the read of the booking fails at once.
        let channel = marquee_infra::grpc::lazy_channel("http://127.0.0.1:1").expect("channel");
        let hub = BookingHub::new(BookingServiceClient::with_interceptor(
            channel,
            PropagateTrace,
        ));
        let token = MetadataValue::from_static("Bearer x");
        let refused = hub.watch(BookingId(Uuid::new_v4()), token).await;
        assert!(refused.is_err());
        assert!(hub.channels().is_empty());
    }
}

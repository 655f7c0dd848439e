//! The gRPC edge: parses requests into the hubs' terms and maps their errors.

use std::pin::Pin;
use std::sync::Arc;

use futures::{Stream, StreamExt};
use marquee_infra::auth::{TokenError, TokenKeys};
use marquee_proto::realtime::realtime_service_server::RealtimeService;
use marquee_proto::realtime::{
    AuctionUpdate, BookingUpdate, QueueTicketUpdate, SeatUpdate, WatchAuctionRequest,
    WatchBookingRequest, WatchQueueTicketRequest, WatchSeatsRequest,
};
use tokio_util::sync::CancellationToken;
use tonic::metadata::{Ascii, MetadataValue};
use tonic::{Request, Response, Status};

use crate::auctions::{self, AuctionHub, AuctionId};
use crate::bookings::{BookingHub, BookingId};
use crate::error::RealtimeError;
use crate::queue::{QueueHub, TicketId};
use crate::seats::{EventId, SeatHub, Start};

pub type UpdateStream<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send>>;

#[derive(Clone)]
pub struct RealtimeApi {
    pub seats: Arc<SeatHub>,
    pub bookings: Arc<BookingHub>,
    pub queues: Arc<QueueHub>,
    pub auctions: Arc<AuctionHub>,
    pub keys: TokenKeys,
    /// Cancelled when the service starts draining: open watch streams end then (their
    /// clients resume elsewhere with `Last-Event-ID`), so the drain does not wait on
    /// streams that never finish by themselves.
    pub draining: CancellationToken,
}

#[tonic::async_trait]
impl RealtimeService for RealtimeApi {
    type WatchSeatsStream = UpdateStream<SeatUpdate>;
    type WatchBookingStream = UpdateStream<BookingUpdate>;
    type WatchQueueTicketStream = UpdateStream<QueueTicketUpdate>;
    type WatchAuctionStream = UpdateStream<AuctionUpdate>;

    async fn watch_auction(
        &self,
        request: Request<WatchAuctionRequest>,
    ) -> Result<Response<Self::WatchAuctionStream>, Status> {
        let request = request.into_inner();
        let id = AuctionId::parse(&request.auction_id)?;
        let after = auctions::parse_resume(&request.last_event_id)?;
        let updates = self.auctions.watch(id, after).await?;
        let draining = self.draining.clone().cancelled_owned();
        Ok(Response::new(Box::pin(
            updates.map(Ok).take_until(draining),
        )))
    }

    async fn watch_seats(
        &self,
        request: Request<WatchSeatsRequest>,
    ) -> Result<Response<Self::WatchSeatsStream>, Status> {
        let request = request.into_inner();
        let event = EventId::parse(&request.event_id)?;
        let start = Start::parse(&request.last_event_id)?;
        let updates = self.seats.watch(event, start).await?;
        let draining = self.draining.clone().cancelled_owned();
        Ok(Response::new(Box::pin(
            updates.map(Ok).take_until(draining),
        )))
    }

    async fn watch_booking(
        &self,
        request: Request<WatchBookingRequest>,
    ) -> Result<Response<Self::WatchBookingStream>, Status> {
        self.keys
            .verify_metadata(request.metadata())
            .map_err(RealtimeError::from)?;
        let authorization = authorization(&request)?;
        let id = BookingId::parse(&request.get_ref().booking_id)?;
        let updates = self.bookings.watch(id, authorization).await?;
        let draining = self.draining.clone().cancelled_owned();
        Ok(Response::new(Box::pin(
            updates.map(Ok).take_until(draining),
        )))
    }

    async fn watch_queue_ticket(
        &self,
        request: Request<WatchQueueTicketRequest>,
    ) -> Result<Response<Self::WatchQueueTicketStream>, Status> {
        self.keys
            .verify_metadata(request.metadata())
            .map_err(RealtimeError::from)?;
        let authorization = authorization(&request)?;
        let id = TicketId::parse(&request.get_ref().ticket_id)?;
        let updates = self.queues.watch(id, authorization).await?;
        let draining = self.draining.clone().cancelled_owned();
        Ok(Response::new(Box::pin(
            updates
                .map(|update| update.map_err(Status::from))
                .take_until(draining),
        )))
    }
}

/// The caller's `authorization` header, passed on to booking-svc's reads (verified
/// before, so present).
fn authorization<T>(request: &Request<T>) -> Result<MetadataValue<Ascii>, RealtimeError> {
    request
        .metadata()
        .get("authorization")
        .cloned()
        .ok_or(RealtimeError::Unauthenticated(TokenError::Missing))
}

//! `WaitingRoomService`: parses through [`crate::wire`], calls [`crate::queue`], renders.

use marquee_proto::booking::{self as pb, waiting_room_service_server::WaitingRoomService};
use tonic::{Request, Response, Status};

use crate::domain::{EventId, Role};
use crate::error::BookingError;
use crate::grpc::{Api, Caller, Selling};
use crate::queue::TicketId;
use crate::wire;

/// What a caller who may not manage waiting rooms is told.
const NOT_THE_SELLER: &str = "only the event's seller can manage its waiting room";

impl Api {
    /// The event, if `caller` is its seller (or an admin). The caller comes from
    /// [`Api::seller`], so its session has the second factor.
    async fn own_event(
        &self,
        caller: Caller,
        event: EventId,
    ) -> Result<std::sync::Arc<crate::catalog::EventInfo>, BookingError> {
        let info = self.bookings.event(event).await?;
        if info.seller != caller.id && caller.role != Role::Admin {
            return Err(BookingError::PermissionDenied(NOT_THE_SELLER));
        }
        Ok(info)
    }
}

#[tonic::async_trait]
impl WaitingRoomService for Api {
    async fn configure_waiting_room(
        &self,
        request: Request<pb::ConfigureWaitingRoomRequest>,
    ) -> Result<Response<pb::Event>, Status> {
        let caller = self
            .seller(&request, Selling::SellersAndAdmins, NOT_THE_SELLER)
            .await?;
        let req = request.into_inner();
        let event = EventId::parse("eventId", &req.event_id)?;
        let settings = wire::queue::parse_settings(req.waiting_room.as_ref())?;
        let info = self.own_event(caller, event).await?;
        self.queue.configure(event, settings).await?;
        Ok(Response::new(self.event_pb(&info).await?))
    }

    async fn join_queue(
        &self,
        request: Request<pb::JoinQueueRequest>,
    ) -> Result<Response<pb::QueueTicket>, Status> {
        let caller = self.caller(&request).await?;
        let event = EventId::parse("eventId", &request.get_ref().event_id)?;
        // An unknown event is NOT_FOUND as an event, not as a waiting room.
        self.bookings.event(event).await?;
        let ticket = self.queue.join(caller.id, event).await?;
        Ok(Response::new(wire::queue::ticket_pb(&ticket)))
    }

    async fn get_queue(
        &self,
        request: Request<pb::GetQueueRequest>,
    ) -> Result<Response<pb::QueueStatus>, Status> {
        let caller = self
            .seller(&request, Selling::SellersAndAdmins, NOT_THE_SELLER)
            .await?;
        let event = EventId::parse("eventId", &request.get_ref().event_id)?;
        self.own_event(caller, event).await?;
        let status = self.queue.status(event).await?;
        Ok(Response::new(wire::queue::status_pb(&status)))
    }

    async fn get_queue_ticket(
        &self,
        request: Request<pb::GetQueueTicketRequest>,
    ) -> Result<Response<pb::QueueTicket>, Status> {
        let caller = self.caller(&request).await?;
        let id = TicketId::parse("ticketId", &request.get_ref().ticket_id)?;
        let ticket = self.queue.ticket(caller.id, id).await?;
        Ok(Response::new(wire::queue::ticket_pb(&ticket)))
    }
}

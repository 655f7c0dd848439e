//! `TransferService`: parses through [`crate::wire`], calls the transfers of
//! [`crate::bookings`], renders.

use marquee_proto::booking::{self as pb, transfer_service_server::TransferService};
use tonic::{Request, Response, Status};

use crate::domain::{self, BookingId, EventId, Role, TransferOfferId};
use crate::grpc::{Api, Selling, idempotency_key};
use crate::wire;

#[tonic::async_trait]
impl TransferService for Api {
    async fn create_transfer_offer(
        &self,
        request: Request<pb::CreateTransferOfferRequest>,
    ) -> Result<Response<pb::CreateTransferOfferResponse>, Status> {
        let caller = self.caller(&request).await?;
        let req = request.get_ref();
        let booking = BookingId::parse("bookingId", &req.booking_id)?;
        let new = wire::transfer::new_offer(req)?;
        let offer = self.bookings.create_offer(caller.id, booking, new).await?;
        Ok(Response::new(pb::CreateTransferOfferResponse {
            offer: Some(wire::transfer::offer_pb(&offer)),
        }))
    }

    async fn get_transfer_offer(
        &self,
        request: Request<pb::GetTransferOfferRequest>,
    ) -> Result<Response<pb::GetTransferOfferResponse>, Status> {
        let caller = self.caller(&request).await?;
        let id = TransferOfferId::parse("offerId", &request.get_ref().offer_id)?;
        let offer = self.bookings.visible_offer(caller.id, id).await?;
        Ok(Response::new(pb::GetTransferOfferResponse {
            offer: Some(wire::transfer::offer_pb(&offer)),
        }))
    }

    async fn withdraw_transfer_offer(
        &self,
        request: Request<pb::WithdrawTransferOfferRequest>,
    ) -> Result<Response<pb::WithdrawTransferOfferResponse>, Status> {
        let caller = self.caller(&request).await?;
        let id = TransferOfferId::parse("offerId", &request.get_ref().offer_id)?;
        let offer = self.bookings.withdraw_offer(caller.id, id).await?;
        Ok(Response::new(pb::WithdrawTransferOfferResponse {
            offer: Some(wire::transfer::offer_pb(&offer)),
        }))
    }

    async fn accept_transfer_offer(
        &self,
        request: Request<pb::AcceptTransferOfferRequest>,
    ) -> Result<Response<pb::AcceptTransferOfferResponse>, Status> {
        let caller = self.caller(&request).await?;
        let key = idempotency_key(&request, &request.get_ref().idempotency_key)?;
        let req = request.get_ref();
        let id = TransferOfferId::parse("offerId", &req.offer_id)?;
        let payment = wire::api::payment(req.payment_method, &req.card_token)?;
        let booking = self
            .bookings
            .accept_offer(caller.id, id, payment, key)
            .await?;
        Ok(Response::new(pb::AcceptTransferOfferResponse {
            booking: Some(wire::api::booking_pb(&booking)),
        }))
    }

    async fn list_transfer_listings(
        &self,
        request: Request<pb::ListTransferListingsRequest>,
    ) -> Result<Response<pb::ListTransferListingsResponse>, Status> {
        let req = request.get_ref();
        let event = EventId::parse("eventId", &req.event_id)?;
        let limit = domain::page_size(req.page_size, 20, 100)?;
        let offset = domain::page_offset(&req.page_token)?;
        let mut offers = self.bookings.listings(event, offset, limit + 1).await?;
        let more = offers.len() as i64 > limit;
        offers.truncate(usize::try_from(limit).unwrap_or(0));
        Ok(Response::new(pb::ListTransferListingsResponse {
            offers: offers.iter().map(wire::transfer::offer_pb).collect(),
            next_page_token: wire::api::next_page_token(more, offset, limit),
        }))
    }

    async fn set_transfer_policy(
        &self,
        request: Request<pb::SetTransferPolicyRequest>,
    ) -> Result<Response<pb::SetTransferPolicyResponse>, Status> {
        let caller = self
            .seller(
                &request,
                Selling::SellersAndAdmins,
                "only the event's seller can set its transfer rule",
            )
            .await?;
        let req = request.get_ref();
        let event = EventId::parse("eventId", &req.event_id)?;
        // Absent: back to the default rule, as at CreateEvent.
        let policy =
            wire::api::transfer_policy("transfers.maxPricePercent", req.transfers.as_ref())?;
        let info = self
            .bookings
            .set_transfer_policy(caller.id, caller.role == Role::Admin, event, policy)
            .await?;
        Ok(Response::new(pb::SetTransferPolicyResponse {
            event: Some(self.event_pb(&info).await?),
        }))
    }

    async fn list_booking_transfers(
        &self,
        request: Request<pb::ListBookingTransfersRequest>,
    ) -> Result<Response<pb::ListBookingTransfersResponse>, Status> {
        let caller = self.caller(&request).await?;
        let booking = BookingId::parse("bookingId", &request.get_ref().booking_id)?;
        let links = self.bookings.transfer_chain(caller.id, booking).await?;
        Ok(Response::new(pb::ListBookingTransfersResponse {
            links: links.iter().map(wire::transfer::link_pb).collect(),
        }))
    }
}

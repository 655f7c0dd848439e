//! `AuctionService`: parses through [`crate::wire`], calls [`crate::auction`], renders.

use marquee_proto::booking::{self as pb, auction_service_server::AuctionService};
use tonic::{Request, Response, Status};

use crate::auction::AuctionId;
use crate::domain::{AccountId, EventId};
use crate::error::BookingError;
use crate::grpc::{Api, Selling, idempotency_key};
use crate::wire;

impl Api {
    /// The caller when the request carries a session (a bad token is still refused).
    async fn optional_caller<T>(
        &self,
        request: &Request<T>,
    ) -> Result<Option<AccountId>, BookingError> {
        if request.metadata().get("authorization").is_none() {
            return Ok(None);
        }
        Ok(Some(self.caller(request).await?.id))
    }
}

#[tonic::async_trait]
impl AuctionService for Api {
    async fn create_auction(
        &self,
        request: Request<pb::CreateAuctionRequest>,
    ) -> Result<Response<pb::CreateAuctionResponse>, Status> {
        let caller = self
            .seller(
                &request,
                Selling::SellersOnly,
                "only sellers can create auctions",
            )
            .await?;
        let new = wire::auction::parse_create(request.get_ref())?;
        let view = self.auctions.create(caller.id, new).await?;
        Ok(Response::new(pb::CreateAuctionResponse {
            auction: Some(wire::auction::auction_pb(&view)),
        }))
    }

    async fn list_auctions(
        &self,
        request: Request<pb::ListAuctionsRequest>,
    ) -> Result<Response<pb::ListAuctionsResponse>, Status> {
        let event = EventId::parse("eventId", &request.get_ref().event_id)?;
        let views = self.auctions.list(event).await?;
        Ok(Response::new(pb::ListAuctionsResponse {
            auctions: views.iter().map(wire::auction::auction_pb).collect(),
        }))
    }

    async fn get_auction(
        &self,
        request: Request<pb::GetAuctionRequest>,
    ) -> Result<Response<pb::GetAuctionResponse>, Status> {
        let caller = self.optional_caller(&request).await?;
        let id = AuctionId::parse("auctionId", &request.get_ref().auction_id)?;
        let view = self.auctions.view(id, caller).await?;
        Ok(Response::new(pb::GetAuctionResponse {
            auction: Some(wire::auction::auction_pb(&view)),
        }))
    }

    async fn place_bid(
        &self,
        request: Request<pb::PlaceBidRequest>,
    ) -> Result<Response<pb::PlaceBidResponse>, Status> {
        let caller = self.caller(&request).await?;
        let (id, amount) = wire::auction::parse_bid(request.get_ref())?;
        let placed = self.auctions.bid(id, caller.id, amount).await?;
        Ok(Response::new(wire::auction::bid_pb(&placed)?))
    }

    async fn pay_award(
        &self,
        request: Request<pb::PayAwardRequest>,
    ) -> Result<Response<pb::PayAwardResponse>, Status> {
        let caller = self.caller(&request).await?;
        let key = idempotency_key(&request, &request.get_ref().idempotency_key)?;
        let req = request.into_inner();
        let id = AuctionId::parse("auctionId", &req.auction_id)?;
        let payment = wire::api::payment(req.payment_method, &req.card_token)?;
        let booking = self.auctions.pay(id, caller.id, payment, key).await?;
        Ok(Response::new(pb::PayAwardResponse {
            booking: Some(wire::api::booking_pb(&booking)),
        }))
    }

    async fn decline_award(
        &self,
        request: Request<pb::DeclineAwardRequest>,
    ) -> Result<Response<pb::DeclineAwardResponse>, Status> {
        let caller = self.caller(&request).await?;
        let id = AuctionId::parse("auctionId", &request.get_ref().auction_id)?;
        self.auctions.decline(id, caller.id).await?;
        let view = self.auctions.view(id, Some(caller.id)).await?;
        Ok(Response::new(pb::DeclineAwardResponse {
            auction: Some(wire::auction::auction_pb(&view)),
        }))
    }
}

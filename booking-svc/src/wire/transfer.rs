//! Ticket transfers' requests and replies (`TransferService`).

use marquee_proto::booking as pb;

use super::{money, timestamp};
use crate::domain::{NewOffer, OfferStatus, Recipient, TransferLink, TransferOffer, TransferPrice};
use crate::error::BookingError;

/// A new offer: `price` (more than 0, an ISO currency) and `recipientEmail` (empty:
/// anyone).
pub fn new_offer(req: &pb::CreateTransferOfferRequest) -> Result<NewOffer, BookingError> {
    let price = TransferPrice::parse(
        req.price
            .as_ref()
            .map(|p| (p.amount_minor, p.currency.as_str())),
    )?;
    let recipient = Recipient::parse(&req.recipient_email)?;
    Ok(NewOffer { price, recipient })
}

fn offer_status_pb(status: OfferStatus) -> pb::TransferOfferStatus {
    match status {
        OfferStatus::Offered => pb::TransferOfferStatus::Offered,
        OfferStatus::Accepted => pb::TransferOfferStatus::Accepted,
        OfferStatus::Completed => pb::TransferOfferStatus::Completed,
        OfferStatus::Withdrawn => pb::TransferOfferStatus::Withdrawn,
    }
}

pub fn offer_pb(offer: &TransferOffer) -> pb::TransferOffer {
    pb::TransferOffer {
        offer_id: offer.id.to_string(),
        booking_id: offer.booking.to_string(),
        event_id: offer.event.to_string(),
        owner_id: offer.owner.to_string(),
        recipient_email: offer.recipient.clone().unwrap_or_default(),
        price: money(&offer.price),
        status: offer_status_pb(offer.status) as i32,
        seats: offer
            .seats
            .iter()
            .map(|s| pb::TransferSeat {
                seat_id: s.seat.to_string(),
                section: s.section.clone(),
                row: s.row.clone(),
                number: s.number.clone(),
            })
            .collect(),
        transfer_booking_id: offer
            .transfer_booking
            .map(|b| b.to_string())
            .unwrap_or_default(),
        created_at: timestamp(offer.created_at),
        updated_at: timestamp(offer.updated_at),
    }
}

pub fn link_pb(link: &TransferLink) -> pb::TransferLink {
    pb::TransferLink {
        booking_id: link.booking.to_string(),
        owner_id: link.owner.to_string(),
        price: money(&link.price),
        transferred_at: timestamp(link.transferred_at),
    }
}

//! sea-orm entities for every table booking-svc owns: one module per table, with the
//! relations its foreign keys make. The outbox and inbox tables are
//! `marquee_infra::outbox::entity`'s, `saga_steps` is `marquee_infra::saga_steps::entity`. The constraint names errors are classified by
//! are constants next to their table.

pub mod account_two_factor;
pub mod accounts;
pub mod auction_awards;
pub mod auction_bids;
pub mod auction_seats;
pub mod auctions;
pub mod booking_seats;
pub mod bookings;
pub mod events;
pub mod recovery_codes;
pub mod seats;
pub mod sections;
pub mod transfer_offers;
pub mod waiting_rooms;

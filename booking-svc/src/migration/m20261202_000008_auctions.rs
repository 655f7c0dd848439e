//! Live seat auctions (issue 14): the auction, its seats, one standing bid per bidder,
//! and the awards that pass each seat down the ranking. A winner's booking is an
//! ordinary booking that names its auction (`bookings.auction_id`).

use sea_orm_migration::prelude::*;

pub struct Migration;

impl MigrationName for Migration {
    fn name(&self) -> &str {
        "m20261202_000008_auctions"
    }
}

/// The schema change, every name explicit.
const UP: &str = r#"
CREATE SEQUENCE auction_bid_seq AS bigint;

CREATE TABLE auctions (
    id uuid NOT NULL,
    event_id uuid NOT NULL,
    seller_id uuid NOT NULL,
    opening_minor bigint NOT NULL,
    increment_minor bigint NOT NULL,
    currency text NOT NULL,
    closes_at timestamptz NOT NULL,
    payment_window_secs integer NOT NULL,
    state text NOT NULL DEFAULT 'OPEN',
    version bigint NOT NULL DEFAULT 0,
    bidders bigint NOT NULL DEFAULT 0,
    created_at timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT auctions_pkey PRIMARY KEY (id),
    CONSTRAINT auctions_event_id_fkey FOREIGN KEY (event_id) REFERENCES events (id),
    CONSTRAINT auctions_seller_id_fkey FOREIGN KEY (seller_id) REFERENCES accounts (id),
    CONSTRAINT auctions_state_check CHECK (state IN ('OPEN', 'CLOSED')),
    CONSTRAINT auctions_prices_check CHECK (opening_minor > 0 AND increment_minor > 0),
    CONSTRAINT auctions_payment_window_check CHECK (payment_window_secs > 0)
);
CREATE INDEX auctions_event_id_created_at_idx ON auctions (event_id, created_at DESC);
CREATE INDEX auctions_open_closes_at_idx ON auctions (closes_at) WHERE state = 'OPEN';

CREATE TABLE auction_seats (
    auction_id uuid NOT NULL,
    seat_id uuid NOT NULL,
    position integer NOT NULL,
    state text NOT NULL DEFAULT 'RESERVED',
    CONSTRAINT auction_seats_pkey PRIMARY KEY (auction_id, seat_id),
    CONSTRAINT auction_seats_auction_id_fkey FOREIGN KEY (auction_id) REFERENCES auctions (id),
    CONSTRAINT auction_seats_seat_id_fkey FOREIGN KEY (seat_id) REFERENCES seats (id),
    CONSTRAINT auction_seats_state_check CHECK (state IN ('RESERVED', 'SOLD', 'RELEASED'))
);
CREATE UNIQUE INDEX auction_seats_seat_id_live_key ON auction_seats (seat_id)
    WHERE state <> 'RELEASED';

CREATE TABLE auction_bids (
    auction_id uuid NOT NULL,
    bidder_id uuid NOT NULL,
    amount_minor bigint NOT NULL,
    seq bigint NOT NULL,
    submissions smallint NOT NULL,
    bid_at timestamptz NOT NULL DEFAULT clock_timestamp(),
    CONSTRAINT auction_bids_pkey PRIMARY KEY (auction_id, bidder_id),
    CONSTRAINT auction_bids_auction_id_fkey FOREIGN KEY (auction_id) REFERENCES auctions (id),
    CONSTRAINT auction_bids_bidder_id_fkey FOREIGN KEY (bidder_id) REFERENCES accounts (id),
    CONSTRAINT auction_bids_submissions_check CHECK (submissions BETWEEN 1 AND 3),
    CONSTRAINT auction_bids_amount_check CHECK (amount_minor > 0)
);
CREATE INDEX auction_bids_ranking_idx ON auction_bids (auction_id, amount_minor DESC, seq);

CREATE TABLE auction_awards (
    auction_id uuid NOT NULL,
    bidder_id uuid NOT NULL,
    seat_id uuid NOT NULL,
    rank bigint NOT NULL,
    amount_minor bigint NOT NULL,
    state text NOT NULL DEFAULT 'AWAITING_PAYMENT',
    pay_by timestamptz NOT NULL,
    booking_id uuid NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT auction_awards_pkey PRIMARY KEY (auction_id, bidder_id),
    CONSTRAINT auction_awards_auction_seat_fkey FOREIGN KEY (auction_id, seat_id)
        REFERENCES auction_seats (auction_id, seat_id),
    CONSTRAINT auction_awards_bidder_id_fkey FOREIGN KEY (bidder_id) REFERENCES accounts (id),
    CONSTRAINT auction_awards_state_check CHECK (
        state IN ('AWAITING_PAYMENT', 'PAID', 'LAPSED', 'DECLINED', 'CANCELLED'))
);
CREATE UNIQUE INDEX auction_awards_seat_live_key ON auction_awards (auction_id, seat_id)
    WHERE state IN ('AWAITING_PAYMENT', 'PAID');
CREATE INDEX auction_awards_live_idx ON auction_awards (pay_by)
    WHERE state IN ('AWAITING_PAYMENT', 'PAID');

ALTER TABLE bookings ADD COLUMN auction_id uuid NULL,
    ADD CONSTRAINT bookings_auction_id_fkey FOREIGN KEY (auction_id) REFERENCES auctions (id);
"#;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        // DDL is kept as SQL: the constraint names are explicit and reviewable here.
        manager.get_connection().execute_unprepared(UP).await?;
        Ok(())
    }
}

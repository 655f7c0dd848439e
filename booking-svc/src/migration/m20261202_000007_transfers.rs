//! Ticket transfers (issue 14): two booking statuses (TRANSFERRING, TRANSFERRED), the
//! link from a recipient's booking to the booking it takes over (`transfer_of`), each
//! event's transfer rule, and the offers.

use sea_orm_migration::prelude::*;

pub struct Migration;

impl MigrationName for Migration {
    fn name(&self) -> &str {
        "m20261202_000007_transfers"
    }
}

/// The schema change, every name explicit.
const UP: &str = r#"
ALTER TABLE bookings DROP CONSTRAINT bookings_status_check;
ALTER TABLE bookings ADD CONSTRAINT bookings_status_check
    CHECK (status IN ('PENDING_PAYMENT', 'CONFIRMED', 'CANCELLING', 'CANCELLED',
                      'TRANSFERRING', 'TRANSFERRED'));
ALTER TABLE bookings ADD COLUMN transfer_of uuid
    CONSTRAINT bookings_transfer_of_fkey REFERENCES bookings (id);
-- At most one transfer of a booking awaits its payment (the original's status row
-- already guarantees it; this is the database's word on it).
CREATE UNIQUE INDEX bookings_transfer_of_pending_key ON bookings (transfer_of)
    WHERE status = 'PENDING_PAYMENT';
CREATE INDEX bookings_transfer_of_idx ON bookings (transfer_of) WHERE transfer_of IS NOT NULL;

ALTER TABLE events ADD COLUMN transfers_allowed boolean NOT NULL DEFAULT true;
ALTER TABLE events ADD COLUMN transfer_max_price_percent integer NOT NULL DEFAULT 100
    CONSTRAINT events_transfer_max_price_percent_check
        CHECK (transfer_max_price_percent BETWEEN 1 AND 100);

CREATE TABLE transfer_offers (
    id uuid NOT NULL,
    booking_id uuid NOT NULL,
    event_id uuid NOT NULL,
    owner_id uuid NOT NULL,
    recipient_email text,
    price_minor bigint NOT NULL,
    currency text NOT NULL,
    status text NOT NULL,
    transfer_booking_id uuid,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT transfer_offers_pkey PRIMARY KEY (id),
    CONSTRAINT transfer_offers_booking_id_fkey FOREIGN KEY (booking_id) REFERENCES bookings (id),
    CONSTRAINT transfer_offers_event_id_fkey FOREIGN KEY (event_id) REFERENCES events (id),
    CONSTRAINT transfer_offers_owner_id_fkey FOREIGN KEY (owner_id) REFERENCES accounts (id),
    CONSTRAINT transfer_offers_transfer_booking_id_fkey
        FOREIGN KEY (transfer_booking_id) REFERENCES bookings (id),
    CONSTRAINT transfer_offers_price_minor_check CHECK (price_minor > 0),
    CONSTRAINT transfer_offers_status_check
        CHECK (status IN ('OFFERED', 'ACCEPTED', 'COMPLETED', 'WITHDRAWN'))
);
-- One live offer (on offer or accepted) per booking.
CREATE UNIQUE INDEX transfer_offers_booking_id_live_key ON transfer_offers (booking_id)
    WHERE status IN ('OFFERED', 'ACCEPTED');
-- The event's open listings, oldest first.
CREATE INDEX transfer_offers_event_id_open_idx ON transfer_offers (event_id, created_at, id)
    WHERE status = 'OFFERED' AND recipient_email IS NULL;
CREATE INDEX transfer_offers_transfer_booking_id_idx ON transfer_offers (transfer_booking_id)
    WHERE transfer_booking_id IS NOT NULL;
"#;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        // DDL is kept as SQL: the constraint and index names are explicit and
        // reviewable here.
        manager.get_connection().execute_unprepared(UP).await?;
        Ok(())
    }
}

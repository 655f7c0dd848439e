//! The invariants every sale must keep, checked the same way by the tests and the
//! benchmarks: a seat is in at most one active booking and the seat map shows SOLD
//! exactly the seats of confirmed bookings ([`Oversell`]); the sum of the balances plus
//! the captured payments equals the credits issued ([`Money`]).

use std::collections::HashSet;

use sqlx::PgPool;
use uuid::Uuid;

/// What pay-svc credits every new wallet in a [`crate::System`].
pub const WELCOME_CREDIT_MINOR: i64 = 100_000;

/// One seat of a confirmed booking.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfirmedSeat {
    pub buyer_id: Uuid,
    pub seat_id: Uuid,
    pub price_minor: i64,
}

/// The oversell check: booking-svc's database against what buyers see.
#[derive(Debug, Clone)]
pub struct Oversell {
    /// Seats in more than one booking that owns or holds them (neither cancelled nor
    /// transferred away: a TRANSFERRED booking's seats are its recipient's). Must be
    /// empty.
    pub sold_twice: Vec<Uuid>,
    /// Every seat of every confirmed booking (and of one being transferred, whose seats
    /// stay sold to it until the transfer completes).
    pub confirmed: Vec<ConfirmedSeat>,
    /// Seats the seat map shows SOLD that no confirmed booking holds. Must be empty.
    pub sold_without_booking: Vec<String>,
    /// Seats of confirmed bookings the seat map does not show SOLD. Must be empty.
    pub booked_not_sold: Vec<String>,
}

impl Oversell {
    /// Reads the bookings from booking-svc's database and compares their seats with
    /// `sold_on_map`, the seat ids the seat map shows SOLD (of every event of the sale).
    pub async fn check(booking_db: &PgPool, sold_on_map: &HashSet<String>) -> Self {
        let sold_twice: Vec<Uuid> = sqlx::query_scalar(
            "SELECT bs.seat_id FROM booking_seats bs JOIN bookings b ON b.id = bs.booking_id
             WHERE b.status NOT IN ('CANCELLED', 'TRANSFERRED')
             GROUP BY bs.seat_id HAVING count(*) > 1 ORDER BY bs.seat_id",
        )
        .fetch_all(booking_db)
        .await
        .expect("seats in two active bookings");
        let confirmed: Vec<ConfirmedSeat> = sqlx::query_as::<_, (Uuid, Uuid, i64)>(
            "SELECT b.buyer_id, bs.seat_id, bs.price_minor FROM bookings b
             JOIN booking_seats bs ON bs.booking_id = b.id
             WHERE b.status IN ('CONFIRMED', 'TRANSFERRING')",
        )
        .fetch_all(booking_db)
        .await
        .expect("seats of confirmed bookings")
        .into_iter()
        .map(|(buyer_id, seat_id, price_minor)| ConfirmedSeat {
            buyer_id,
            seat_id,
            price_minor,
        })
        .collect();
        let booked: HashSet<String> = confirmed.iter().map(|s| s.seat_id.to_string()).collect();
        let mut sold_without_booking: Vec<String> =
            sold_on_map.difference(&booked).cloned().collect();
        sold_without_booking.sort();
        let mut booked_not_sold: Vec<String> = booked.difference(sold_on_map).cloned().collect();
        booked_not_sold.sort();
        Self {
            sold_twice,
            confirmed,
            sold_without_booking,
            booked_not_sold,
        }
    }

    /// No seat is in two active bookings.
    pub fn never_sold_twice(&self) -> bool {
        self.sold_twice.is_empty()
    }

    /// The seat map shows SOLD exactly the seats of confirmed bookings.
    pub fn seat_map_agrees(&self) -> bool {
        self.sold_without_booking.is_empty() && self.booked_not_sold.is_empty()
    }

    pub fn ok(&self) -> bool {
        self.never_sold_twice() && self.seat_map_agrees()
    }

    /// The seats of confirmed bookings.
    pub fn confirmed_seats(&self) -> usize {
        self.confirmed.len()
    }

    /// What the confirmed bookings' seats cost, in minor units.
    pub fn revenue(&self) -> i64 {
        self.confirmed.iter().map(|s| s.price_minor).sum()
    }

    /// What `buyer` paid for confirmed seats, in minor units.
    pub fn spent_by(&self, buyer: Uuid) -> i64 {
        self.confirmed
            .iter()
            .filter(|s| s.buyer_id == buyer)
            .map(|s| s.price_minor)
            .sum()
    }

    /// Fails with what went wrong unless [`Oversell::ok`].
    pub fn assert_ok(&self) {
        assert!(
            self.never_sold_twice(),
            "seats in more than one active booking: {:?}",
            self.sold_twice
        );
        assert!(
            self.seat_map_agrees(),
            "the seat map disagrees with the confirmed bookings: SOLD without a booking {:?}, booked but not SOLD {:?}",
            self.sold_without_booking,
            self.booked_not_sold
        );
    }
}

/// The money-conservation check over pay-svc's database.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Money {
    pub wallets: i64,
    /// Sum of every wallet's balance.
    pub balances: i64,
    /// Captured wallet payments (card payments move no wallet money: [`CardMoney`]).
    pub captured_count: i64,
    /// Sum of the captured wallet payments.
    pub captured: i64,
    /// Sum of the transfer payouts credited to previous owners (money that left the
    /// captured payments of transfers' recipients for a wallet).
    pub payouts: i64,
}

impl Money {
    pub async fn check(pay_db: &PgPool) -> Self {
        let (wallets, balances): (i64, i64) =
            sqlx::query_as("SELECT count(*), coalesce(sum(balance_minor), 0)::int8 FROM wallets")
                .fetch_one(pay_db)
                .await
                .expect("wallets");
        let (captured_count, captured): (i64, i64) = sqlx::query_as(
            "SELECT count(*), coalesce(sum(amount_minor), 0)::int8 FROM payments
             WHERE status = 'CAPTURED' AND method = 'WALLET'",
        )
        .fetch_one(pay_db)
        .await
        .expect("captured payments");
        let payouts: i64 = sqlx::query_scalar(
            "SELECT coalesce(sum(amount_minor), 0)::int8 FROM ledger_entries
             WHERE kind = 'TRANSFER_PAYOUT'",
        )
        .fetch_one(pay_db)
        .await
        .expect("transfer payouts");
        Self {
            wallets,
            balances,
            captured_count,
            captured,
            payouts,
        }
    }

    /// The credits issued: one welcome credit per wallet.
    pub fn issued(&self) -> i64 {
        self.wallets * WELCOME_CREDIT_MINOR
    }

    /// Balances plus captured payments, less what transfers paid out of them, equal
    /// the credits issued.
    pub fn conserved(&self) -> bool {
        self.balances + self.captured - self.payouts == self.issued()
    }

    /// Fails with the sums unless [`Money::conserved`].
    pub fn assert_conserved(&self) {
        assert!(
            self.conserved(),
            "money was created or lost: balances {} + captured {} - payouts {} = {}, credits issued {} ({} wallets)",
            self.balances,
            self.captured,
            self.payouts,
            self.balances + self.captured - self.payouts,
            self.issued(),
            self.wallets
        );
    }
}

/// The card side of the money check: pay-svc's card ledger, the card payments it reports
/// captured, and the sandbox PSP's own ledger must agree, with no order charged twice.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CardMoney {
    /// pay-svc's card ledger: captures and refunds.
    pub ledger_captured: i64,
    pub ledger_refunded: i64,
    /// Card payments pay-svc reports CAPTURED (not refunded).
    pub reported: i64,
    /// The PSP's ledger.
    pub psp: marquee_testkit::psp::Ledger,
}

impl CardMoney {
    pub async fn check(pay_db: &PgPool, psp: &marquee_testkit::psp::Sandbox) -> Self {
        let (ledger_captured, ledger_refunded): (i64, i64) = sqlx::query_as(
            "SELECT coalesce(sum(amount_minor) FILTER (WHERE kind = 'CAPTURE'), 0)::int8,
                    coalesce(sum(amount_minor) FILTER (WHERE kind = 'REFUND'), 0)::int8
             FROM card_ledger_entries",
        )
        .fetch_one(pay_db)
        .await
        .expect("card ledger");
        let reported: i64 = sqlx::query_scalar(
            "SELECT coalesce(sum(amount_minor), 0)::int8 FROM payments
             WHERE method = 'CARD' AND status = 'CAPTURED'",
        )
        .fetch_one(pay_db)
        .await
        .expect("captured card payments");
        Self {
            ledger_captured,
            ledger_refunded,
            reported,
            psp: psp.ledger().await,
        }
    }

    /// Both ledgers agree, what pay-svc reports captured is the PSP's net, and no order
    /// was charged twice.
    pub fn conserved(&self) -> bool {
        self.psp.double_charges == 0
            && (self.ledger_captured, self.ledger_refunded)
                == (self.psp.captured, self.psp.refunded)
            && self.reported == self.psp.net
    }

    pub fn assert_conserved(&self) {
        assert!(self.conserved(), "card money differs: {self:?}");
    }
}

//! `payments`: one payment per booking. The idempotency key (the booking id) is
//! written before the charge. A wallet payment settles in its transaction; a card
//! payment stays PENDING until the payment provider's answer is known, with the PSP
//! idempotency keys stored before the first call (`m20260301_000001_card_payments`).

use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "payments")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub payment_id: Uuid,
    #[sea_orm(unique)]
    pub booking_id: Uuid,
    pub account_id: Uuid,
    /// PENDING, CAPTURED, FAILED, REFUNDING, REFUNDED or VOIDING
    /// ([`crate::domain::PaymentStatus`]).
    #[sea_orm(column_type = "Text")]
    pub status: String,
    pub amount_minor: i64,
    #[sea_orm(column_type = "Text")]
    pub currency: String,
    #[sea_orm(column_type = "Text")]
    pub method: String,
    /// Set exactly when the status is FAILED or VOIDING ([`crate::domain::FailureReason`]).
    #[sea_orm(column_type = "Text", nullable)]
    pub failure_reason: Option<String>,
    #[sea_orm(column_type = "Text", unique)]
    pub idempotency_key: String,
    pub created_at: DateTimeUtc,
    pub updated_at: DateTimeUtc,
    pub refunded_at: Option<DateTimeUtc>,
    /// CARD: the PSP's order id (the booking id).
    #[sea_orm(column_type = "Text", nullable)]
    pub psp_order_id: Option<String>,
    /// CARD: the PSP's card token.
    #[sea_orm(column_type = "Text", nullable)]
    pub card_token: Option<String>,
    /// CARD: the `Idempotency-Key` of every confirm, stored before the first.
    #[sea_orm(column_type = "Text", nullable, unique)]
    pub psp_confirm_key: Option<String>,
    /// CARD: the `Idempotency-Key` of every cancel, stored before the first.
    #[sea_orm(column_type = "Text", nullable, unique)]
    pub psp_cancel_key: Option<String>,
    #[sea_orm(column_type = "Text", nullable)]
    pub psp_payment_key: Option<String>,
    pub approved_at: Option<DateTimeUtc>,
    /// Confirm calls sent.
    pub psp_confirms: i32,
    /// Whether the last confirm got no answer (it may still be in flight).
    pub psp_confirm_unanswered: bool,
    /// Resolver steps that left the payment unresolved: its backoff.
    pub psp_tries: i32,
    /// When the resolver works on it next; `None` when nothing is left to do.
    pub next_attempt_at: Option<DateTimeUtc>,
    #[sea_orm(column_type = "Text", nullable)]
    pub last_error: Option<String>,
    /// A refund arrived while the charge was undecided.
    pub refund_wanted: bool,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {
    /// The ledger entries of this payment: its debit and its refund
    /// (`ledger_entries_payment_id_fkey`).
    #[sea_orm(has_many = "super::ledger_entries::Entity")]
    LedgerEntries,
    /// What the PSP captured and gave back for it (`card_ledger_entries_payment_id_fkey`).
    #[sea_orm(has_many = "super::card_ledger_entries::Entity")]
    CardLedgerEntries,
}

impl Related<super::ledger_entries::Entity> for Entity {
    fn to() -> RelationDef {
        Relation::LedgerEntries.def()
    }
}

impl Related<super::card_ledger_entries::Entity> for Entity {
    fn to() -> RelationDef {
        Relation::CardLedgerEntries.def()
    }
}

impl ActiveModelBehavior for ActiveModel {}

//! `payments`: one payment per booking. The idempotency key (the booking id) is
//! written before the charge; a PENDING row is only ever visible while its charge is
//! in flight.

use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "payments")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub payment_id: Uuid,
    #[sea_orm(unique)]
    pub booking_id: Uuid,
    pub account_id: Uuid,
    /// PENDING, CAPTURED, FAILED or REFUNDED ([`crate::domain::PaymentStatus`]).
    #[sea_orm(column_type = "Text")]
    pub status: String,
    pub amount_minor: i64,
    #[sea_orm(column_type = "Text")]
    pub currency: String,
    #[sea_orm(column_type = "Text")]
    pub method: String,
    /// Set exactly when the status is FAILED ([`crate::domain::FailureReason`]).
    #[sea_orm(column_type = "Text", nullable)]
    pub failure_reason: Option<String>,
    #[sea_orm(column_type = "Text", unique)]
    pub idempotency_key: String,
    pub created_at: DateTimeUtc,
    pub updated_at: DateTimeUtc,
    pub refunded_at: Option<DateTimeUtc>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {
    /// The ledger entries of this payment: its debit and its refund
    /// (`ledger_entries_payment_id_fkey`).
    #[sea_orm(has_many = "super::ledger_entries::Entity")]
    LedgerEntries,
}

impl Related<super::ledger_entries::Entity> for Entity {
    fn to() -> RelationDef {
        Relation::LedgerEntries.def()
    }
}

impl ActiveModelBehavior for ActiveModel {}

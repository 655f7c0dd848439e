//! `card_ledger_entries`: card money the payment provider captured (CAPTURE) and gave
//! back (REFUND), append-only, at most one of each per payment
//! (`card_ledger_entries_one_kind_per_payment_key`). Amounts are positive.

use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "card_ledger_entries")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub seq: i64,
    pub payment_id: Uuid,
    pub booking_id: Uuid,
    /// CAPTURE or REFUND ([`crate::domain::CardEntryKind`]).
    #[sea_orm(column_type = "Text")]
    pub kind: String,
    pub amount_minor: i64,
    #[sea_orm(column_type = "Text")]
    pub currency: String,
    #[sea_orm(column_type = "Text")]
    pub psp_payment_key: String,
    pub created_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {
    /// `card_ledger_entries_payment_id_fkey`.
    #[sea_orm(
        belongs_to = "super::payments::Entity",
        from = "Column::PaymentId",
        to = "super::payments::Column::PaymentId"
    )]
    Payment,
}

impl Related<super::payments::Entity> for Entity {
    fn to() -> RelationDef {
        Relation::Payment.def()
    }
}

impl ActiveModelBehavior for ActiveModel {}

//! `psp_payments`: every charge attempt, one per order (`psp_payments_order_id_key`).

use sea_orm::entity::prelude::*;

/// The name of the constraint that keeps one payment per order.
pub const ORDER_ID_KEY: &str = "psp_payments_order_id_key";

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "psp_payments")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false, column_type = "Text")]
    pub payment_key: String,
    #[sea_orm(column_type = "Text", unique)]
    pub order_id: String,
    #[sea_orm(column_type = "Text")]
    pub confirm_key: String,
    /// IN_PROGRESS, DONE, ABORTED or CANCELED.
    #[sea_orm(column_type = "Text")]
    pub status: String,
    pub total_amount: i64,
    #[sea_orm(column_type = "Text")]
    pub currency: String,
    #[sea_orm(column_type = "Text")]
    pub card_token: String,
    /// Set exactly when the status is ABORTED.
    #[sea_orm(column_type = "Text", nullable)]
    pub failure_code: Option<String>,
    #[sea_orm(column_type = "Text", nullable)]
    pub failure_message: Option<String>,
    /// Set exactly when the payment was charged (DONE or CANCELED).
    pub approved_at: Option<DateTimeUtc>,
    pub canceled_at: Option<DateTimeUtc>,
    #[sea_orm(column_type = "Text", nullable)]
    pub cancel_reason: Option<String>,
    pub created_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}

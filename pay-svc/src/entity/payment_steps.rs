//! `payment_steps`: the steps of each booking's payment as pay-svc saw it, one row
//! per step, written in the same transaction as the step's effect
//! (`crate::steps::Steps`); read oldest first per booking
//! (`payment_steps_booking_id_at_idx`).

use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "payment_steps")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub id: i64,
    pub booking_id: Uuid,
    pub at: DateTimeUtc,
    /// `status`, `message_sent`, `message_received`, `wallet`, `psp_call`, `refund`.
    #[sea_orm(column_type = "Text")]
    pub kind: String,
    #[sea_orm(column_type = "Text", nullable)]
    pub from_status: Option<String>,
    #[sea_orm(column_type = "Text", nullable)]
    pub to_status: Option<String>,
    #[sea_orm(column_type = "Text")]
    pub reason: String,
    #[sea_orm(column_type = "Text", nullable)]
    pub message_type: Option<String>,
    pub message_id: Option<Uuid>,
    #[sea_orm(column_type = "Text", nullable)]
    pub operation: Option<String>,
    pub attempt: i32,
    #[sea_orm(column_type = "Text")]
    pub outcome: String,
    pub http_status: Option<i32>,
    #[sea_orm(column_type = "Text")]
    pub trace_id: String,
    #[sea_orm(column_type = "Text")]
    pub detail: String,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}

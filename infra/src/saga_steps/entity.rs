//! The `saga_steps` table as a sea-orm entity: the timeline of each booking's saga as
//! one service saw it, one row per step, written in the same transaction as the step's
//! effect ([`super::Steps`]); read oldest first per booking
//! (`saga_steps_booking_id_at_idx`).

use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "saga_steps")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub id: i64,
    pub booking_id: Uuid,
    pub at: DateTimeUtc,
    /// `status`, `message_sent`, `message_received`, `refund`, and the service's own
    /// (booking-svc: `deadline`; pay-svc: `wallet`, `psp_call`).
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

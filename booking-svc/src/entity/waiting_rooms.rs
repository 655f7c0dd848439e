//! `waiting_rooms`: the waiting room of an event that has one (`waiting_rooms_pkey` on
//! the event id, `waiting_rooms_event_id_fkey`), with a pace or a cap or both
//! (`waiting_rooms_pace_check`).

use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "waiting_rooms")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub event_id: Uuid,
    pub opens_at: DateTimeUtc,
    pub admit_per_second: i32,
    pub max_shoppers: i32,
    pub admission_seconds: i32,
    pub updated_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}

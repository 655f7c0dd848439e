//! `sections`: an event's priced areas, in display order; names are unique within an
//! event (`sections_event_id_name_key`) and prices not negative
//! (`sections_price_minor_check`).

use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "sections")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    pub event_id: Uuid,
    #[sea_orm(column_type = "Text")]
    pub name: String,
    pub price_minor: i64,
    pub position: i32,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {
    /// The event (`sections_event_id_fkey`).
    #[sea_orm(
        belongs_to = "super::events::Entity",
        from = "Column::EventId",
        to = "super::events::Column::Id"
    )]
    Event,
    /// The section's seats (`seats_section_id_fkey`).
    #[sea_orm(has_many = "super::seats::Entity")]
    Seats,
}

impl Related<super::events::Entity> for Entity {
    fn to() -> RelationDef {
        Relation::Event.def()
    }
}

impl Related<super::seats::Entity> for Entity {
    fn to() -> RelationDef {
        Relation::Seats.def()
    }
}

impl ActiveModelBehavior for ActiveModel {}

//! `seats`: every seat of an event, in layout order (`seats_event_id_position_idx`);
//! a row label and number are unique within a section
//! (`seats_section_id_row_label_number_key`).

use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
#[sea_orm(table_name = "seats")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    pub event_id: Uuid,
    pub section_id: Uuid,
    #[sea_orm(column_type = "Text")]
    pub row_label: String,
    #[sea_orm(column_type = "Text")]
    pub number: String,
    pub x: f64,
    pub y: f64,
    pub position: i32,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {
    /// The event (`seats_event_id_fkey`).
    #[sea_orm(
        belongs_to = "super::events::Entity",
        from = "Column::EventId",
        to = "super::events::Column::Id"
    )]
    Event,
    /// The section (`seats_section_id_fkey`).
    #[sea_orm(
        belongs_to = "super::sections::Entity",
        from = "Column::SectionId",
        to = "super::sections::Column::Id"
    )]
    Section,
    /// The bookings of this seat, past and present (`booking_seats_seat_id_fkey`).
    #[sea_orm(has_many = "super::booking_seats::Entity")]
    BookingSeats,
}

impl Related<super::events::Entity> for Entity {
    fn to() -> RelationDef {
        Relation::Event.def()
    }
}

impl Related<super::sections::Entity> for Entity {
    fn to() -> RelationDef {
        Relation::Section.def()
    }
}

impl Related<super::booking_seats::Entity> for Entity {
    fn to() -> RelationDef {
        Relation::BookingSeats.def()
    }
}

impl ActiveModelBehavior for ActiveModel {}

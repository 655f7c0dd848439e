//! `accounts`: buyers, sellers and admins. Emails are unique case-insensitively
//! ([`EMAIL_KEY`]); the role is one of BUYER, SELLER, ADMIN (`accounts_role_check`).

use sea_orm::entity::prelude::*;

/// The unique index on `lower(email)`: one account per email, whatever its case.
pub const EMAIL_KEY: &str = "accounts_lower_email_key";

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "accounts")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    #[sea_orm(column_type = "Text")]
    pub email: String,
    #[sea_orm(column_type = "Text")]
    pub password_hash: String,
    #[sea_orm(column_type = "Text")]
    pub display_name: String,
    /// BUYER, SELLER or ADMIN ([`crate::domain::Role`]).
    #[sea_orm(column_type = "Text")]
    pub role: String,
    pub created_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {
    /// The events this account sells (`events_seller_id_fkey`).
    #[sea_orm(has_many = "super::events::Entity")]
    Events,
    /// The bookings this account made (`bookings_buyer_id_fkey`).
    #[sea_orm(has_many = "super::bookings::Entity")]
    Bookings,
}

impl Related<super::events::Entity> for Entity {
    fn to() -> RelationDef {
        Relation::Events.def()
    }
}

impl Related<super::bookings::Entity> for Entity {
    fn to() -> RelationDef {
        Relation::Bookings.def()
    }
}

impl ActiveModelBehavior for ActiveModel {}

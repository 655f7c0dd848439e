//! `recovery_codes`: the SHA-256 hashes of an account's two-factor recovery codes
//! (`recovery_codes_pkey`, `recovery_codes_account_id_fkey`, one hash once per account:
//! `recovery_codes_account_id_code_hash_key`). A code is used once: `used_at` is set by
//! an update guarded by `used_at IS NULL`.

use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "recovery_codes")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    pub account_id: Uuid,
    /// Lowercase hex SHA-256 of the code's canonical form.
    #[sea_orm(column_type = "Text")]
    pub code_hash: String,
    pub created_at: DateTimeUtc,
    pub used_at: Option<DateTimeUtc>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {
    #[sea_orm(
        belongs_to = "super::accounts::Entity",
        from = "Column::AccountId",
        to = "super::accounts::Column::Id"
    )]
    Account,
}

impl Related<super::accounts::Entity> for Entity {
    fn to() -> RelationDef {
        Relation::Account.def()
    }
}

impl ActiveModelBehavior for ActiveModel {}

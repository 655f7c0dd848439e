//! `account_two_factor`: an account's TOTP authenticator (`account_two_factor_pkey` on
//! the account id, `account_two_factor_account_id_fkey`): pending until `confirmed_at`
//! is set, then the second factor of every log-in. `last_step` is the last TOTP time
//! step accepted (a code is single-use), `failed_attempts` the consecutive wrong codes
//! (`account_two_factor_failed_attempts_check`), `locked_until` the end of a lockout.

use sea_orm::entity::prelude::*;

#[derive(Clone, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "account_two_factor")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub account_id: Uuid,
    /// The shared TOTP secret, base32 (RFC 4648, no padding).
    #[sea_orm(column_type = "Text")]
    pub secret: String,
    pub enrolled_at: DateTimeUtc,
    pub confirmed_at: Option<DateTimeUtc>,
    pub last_step: Option<i64>,
    pub failed_attempts: i32,
    pub locked_until: Option<DateTimeUtc>,
}

/// Never shows the secret.
impl std::fmt::Debug for Model {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Model")
            .field("account_id", &self.account_id)
            .field("secret", &"<redacted>")
            .field("enrolled_at", &self.enrolled_at)
            .field("confirmed_at", &self.confirmed_at)
            .field("last_step", &self.last_step)
            .field("failed_attempts", &self.failed_attempts)
            .field("locked_until", &self.locked_until)
            .finish()
    }
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

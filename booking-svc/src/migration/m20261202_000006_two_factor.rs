//! Two-factor sign-in (issue 14): an account's TOTP authenticator and its recovery
//! codes. `account_two_factor` has at most one row per account: pending (enrolled, not
//! confirmed yet: `confirmed_at` NULL) or confirmed, with the last accepted time step
//! (a code is single-use) and the count of consecutive failures that locks the
//! account (`locked_until`). `recovery_codes` keeps SHA-256 hashes of the ten codes
//! shown once at confirmation; each is used once (`used_at`).

use sea_orm_migration::prelude::*;

pub struct Migration;

impl MigrationName for Migration {
    fn name(&self) -> &str {
        "m20261202_000006_two_factor"
    }
}

/// The schema change, every name explicit.
const UP: &str = r#"
CREATE TABLE account_two_factor (
    account_id uuid NOT NULL,
    secret text NOT NULL,
    enrolled_at timestamptz NOT NULL DEFAULT now(),
    confirmed_at timestamptz,
    last_step bigint,
    failed_attempts integer NOT NULL DEFAULT 0,
    locked_until timestamptz,
    CONSTRAINT account_two_factor_pkey PRIMARY KEY (account_id),
    CONSTRAINT account_two_factor_account_id_fkey FOREIGN KEY (account_id) REFERENCES accounts (id),
    CONSTRAINT account_two_factor_failed_attempts_check CHECK (failed_attempts >= 0),
    CONSTRAINT account_two_factor_last_step_check CHECK (last_step IS NULL OR last_step >= 0)
);

CREATE TABLE recovery_codes (
    id uuid NOT NULL,
    account_id uuid NOT NULL,
    code_hash text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    used_at timestamptz,
    CONSTRAINT recovery_codes_pkey PRIMARY KEY (id),
    CONSTRAINT recovery_codes_account_id_fkey FOREIGN KEY (account_id) REFERENCES accounts (id),
    CONSTRAINT recovery_codes_account_id_code_hash_key UNIQUE (account_id, code_hash)
);
"#;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        // DDL is kept as SQL: the constraint names are explicit and reviewable here.
        manager.get_connection().execute_unprepared(UP).await?;
        Ok(())
    }
}

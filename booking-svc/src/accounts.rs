//! Accounts: sign-up with an argon2id password hash, log-in issuing a bearer token.

use argon2::{Algorithm, Argon2, Params, PasswordHasher, PasswordVerifier, Version};
use chrono::{DateTime, Utc};
use sqlx::PgPool;

use crate::domain::{AccountId, Email, Password, Role};
use crate::error::BookingError;

#[derive(Debug, Clone)]
pub struct Account {
    pub id: AccountId,
    pub email: String,
    pub display_name: String,
    pub role: Role,
    pub created_at: DateTime<Utc>,
}

#[derive(Debug)]
pub struct NewAccount {
    pub email: Email,
    pub password: Password,
    pub display_name: String,
    pub role: Role,
}

/// Password hashing with argon2id; the memory cost is configurable because it
/// dominates sign-up and log-in latency.
#[derive(Clone)]
pub struct Hasher {
    params: Params,
}

impl std::fmt::Debug for Hasher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Hasher").finish_non_exhaustive()
    }
}

impl Hasher {
    pub fn new(memory_kib: u32) -> anyhow::Result<Self> {
        let params = Params::new(memory_kib.max(Params::MIN_M_COST), 2, 1, None)
            .map_err(|e| anyhow::anyhow!("argon2 params: {e}"))?;
        Ok(Self { params })
    }

    fn argon2(&self) -> Argon2<'static> {
        Argon2::new(Algorithm::Argon2id, Version::V0x13, self.params.clone())
    }

    async fn hash(&self, password: &Password) -> Result<String, BookingError> {
        let argon2 = self.argon2();
        let password = password.expose().to_owned();
        tokio::task::spawn_blocking(move || {
            argon2
                .hash_password(password.as_bytes())
                .map(|h| h.to_string())
                .map_err(|e| BookingError::Internal(format!("hashing: {e}")))
        })
        .await
        .map_err(|e| BookingError::Internal(format!("hashing task: {e}")))?
    }

    async fn verify(&self, password: &str, hash: &str) -> bool {
        let argon2 = self.argon2();
        let password = password.to_owned();
        let hash = hash.to_owned();
        tokio::task::spawn_blocking(move || {
            argon2
                .verify_password(password.as_bytes(), hash.as_str())
                .is_ok()
        })
        .await
        .unwrap_or(false)
    }
}

type AccountRow = (uuid::Uuid, String, String, String, DateTime<Utc>);

fn account(row: AccountRow) -> Result<Account, BookingError> {
    Ok(Account {
        id: AccountId(row.0),
        email: row.1,
        display_name: row.2,
        role: row.3.parse()?,
        created_at: row.4,
    })
}

pub async fn sign_up(
    pool: &PgPool,
    hasher: &Hasher,
    new: NewAccount,
) -> Result<Account, BookingError> {
    let hash = hasher.hash(&new.password).await?;
    let id = AccountId::new();
    let row: Result<AccountRow, sqlx::Error> = sqlx::query_as(
        "INSERT INTO accounts (id, email, password_hash, display_name, role)
         VALUES ($1, $2, $3, $4, $5)
         RETURNING id, email, display_name, role, created_at",
    )
    .bind(id.0)
    .bind(new.email.as_str())
    .bind(hash)
    .bind(&new.display_name)
    .bind(new.role.as_str())
    .fetch_one(pool)
    .await;
    match row {
        Ok(row) => {
            metrics::counter!("accounts_created_total", "role" => new.role.as_str()).increment(1);
            tracing::info!(account_id = %id, role = new.role.as_str(), "account created");
            account(row)
        }
        Err(e) if marquee_infra::db::is_unique_violation(&e) => Err(BookingError::AlreadyExists(
            "an account with this email already exists",
        )),
        Err(e) => Err(e.into()),
    }
}

/// The account whose email and password match; one error for both kinds of mismatch.
pub async fn log_in(
    pool: &PgPool,
    hasher: &Hasher,
    email: &str,
    password: &str,
) -> Result<Account, BookingError> {
    let denied = || BookingError::Unauthenticated("wrong email or password".into());
    let email = Email::parse(email).map_err(|_| denied())?;
    let row: Option<(uuid::Uuid, String, String, String, DateTime<Utc>, String)> = sqlx::query_as(
        "SELECT id, email, display_name, role, created_at, password_hash
         FROM accounts WHERE lower(email) = $1",
    )
    .bind(email.as_str())
    .fetch_optional(pool)
    .await?;
    let Some((id, email, name, role, created, hash)) = row else {
        return Err(denied());
    };
    if !hasher.verify(password, &hash).await {
        return Err(denied());
    }
    account((id, email, name, role, created))
}

pub async fn get(pool: &PgPool, id: AccountId) -> Result<Account, BookingError> {
    let row: Option<AccountRow> = sqlx::query_as(
        "SELECT id, email, display_name, role, created_at FROM accounts WHERE id = $1",
    )
    .bind(id.0)
    .fetch_optional(pool)
    .await?;
    row.map(account)
        .transpose()?
        .ok_or(BookingError::NotFound("account"))
}

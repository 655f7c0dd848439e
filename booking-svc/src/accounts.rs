//! Accounts: sign-up with an argon2id password hash (announcing `account.opened` to
//! pay-svc through the outbox), log-in issuing a bearer token, and the cache of
//! accounts known to exist that every authenticated RPC checks its caller against.

use std::collections::HashSet;
use std::sync::{Arc, RwLock};

use argon2::{Algorithm, Argon2, Params, PasswordHasher, PasswordVerifier, Version};
use marquee_infra::outbox::{self, NewMessage, Relay};
use marquee_proto::kinds::ACCOUNT_OPENED;
use sea_orm::sea_query::{Expr, Func, PgFunc};
use sea_orm::{
    ActiveValue::{NotSet, Set},
    ColumnTrait, DatabaseConnection, EntityTrait, QueryFilter, QuerySelect, TransactionTrait,
};
use tokio::sync::{Semaphore, mpsc, oneshot};

use crate::domain::{Account, AccountId, Email, Password, Role};
use crate::entity::accounts;
use crate::error::BookingError;
use crate::wire;

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

fn account(row: accounts::Model) -> Result<Account, BookingError> {
    Ok(Account {
        id: AccountId(row.id),
        email: row.email,
        display_name: row.display_name,
        role: row.role.parse()?,
        created_at: row.created_at,
    })
}

/// Creates the account and, in the same transaction, the `account.opened` message
/// that makes pay-svc open its wallet: money is only ever created for an account
/// that exists.
pub async fn sign_up(
    pool: &DatabaseConnection,
    hasher: &Hasher,
    relay: &Relay,
    new: NewAccount,
) -> Result<Account, BookingError> {
    let hash = hasher.hash(&new.password).await?;
    let id = AccountId::new();
    let tx = pool.begin().await?;
    let inserted = accounts::Entity::insert(accounts::ActiveModel {
        id: Set(id.0),
        email: Set(new.email.as_str().to_owned()),
        password_hash: Set(hash),
        display_name: Set(new.display_name.clone()),
        role: Set(new.role.as_str().to_owned()),
        created_at: NotSet,
    })
    .exec_with_returning(&tx)
    .await;
    let row = match inserted {
        Ok(row) => row,
        Err(e)
            if marquee_infra::db::violated_constraint(&e).as_deref()
                == Some(accounts::EMAIL_KEY) =>
        {
            return Err(BookingError::AlreadyExists(
                "an account with this email already exists",
            ));
        }
        Err(e) => return Err(e.into()),
    };
    outbox::enqueue(
        &tx,
        NewMessage {
            kind: ACCOUNT_OPENED,
            saga_id: id.0,
            version: 1,
            payload: wire::bus::account_opened(id, row.created_at),
        },
    )
    .await?;
    tx.commit().await?;
    relay.notify();
    metrics::counter!("accounts_created_total", "role" => new.role.as_str()).increment(1);
    tracing::info!(account_id = %id, role = new.role.as_str(), "account created");
    account(row)
}

/// The account whose email and password match; one error for both kinds of mismatch.
pub async fn log_in(
    pool: &DatabaseConnection,
    hasher: &Hasher,
    email: &str,
    password: &str,
) -> Result<Account, BookingError> {
    let denied = || BookingError::Unauthenticated("wrong email or password".into());
    let email = Email::parse(email).map_err(|_| denied())?;
    // `lower(email)`, as the unique index `accounts_lower_email_key` is built, so the
    // index serves the lookup.
    let row = accounts::Entity::find()
        .filter(sea_orm::ExprTrait::eq(
            Func::lower(accounts::Column::Email.into_expr()),
            email.as_str(),
        ))
        .one(pool)
        .await?;
    let Some(row) = row else {
        return Err(denied());
    };
    if !hasher.verify(password, &row.password_hash).await {
        return Err(denied());
    }
    account(row)
}

/// Makes the account with `email` an ADMIN (`booking-svc grant-admin`); granting it
/// again changes nothing. The role is in the token, so the admin logs in again to use
/// it. An unknown email is NOT_FOUND; sign-up never makes admins.
pub async fn grant_admin(
    pool: &DatabaseConnection,
    email: &str,
) -> Result<AccountId, BookingError> {
    let email = Email::parse(email)?;
    let updated = accounts::Entity::update_many()
        .col_expr(accounts::Column::Role, Expr::value(Role::Admin.as_str()))
        .filter(sea_orm::ExprTrait::eq(
            Func::lower(accounts::Column::Email.into_expr()),
            email.as_str(),
        ))
        .exec_with_returning(pool)
        .await?;
    let row = updated
        .into_iter()
        .next()
        .ok_or(BookingError::NotFound("account"))?;
    tracing::info!(account_id = %row.id, "account granted the admin role");
    Ok(AccountId(row.id))
}

pub async fn get(pool: &DatabaseConnection, id: AccountId) -> Result<Account, BookingError> {
    let row = accounts::Entity::find_by_id(id.0).one(pool).await?;
    row.map(account)
        .transpose()?
        .ok_or(BookingError::NotFound("account"))
}

/// How many account ids [`KnownAccounts`] remembers before it starts over.
const KNOWN_ACCOUNTS_MAX: usize = 100_000;
/// Most ids one lookup query asks for.
const LOOKUP_BATCH: usize = 512;
/// Lookup queries in flight at once; misses arriving meanwhile wait for the next batch.
const LOOKUPS_IN_FLIGHT: usize = 4;
/// Misses that may wait for a lookup before callers wait to queue.
const LOOKUP_QUEUE: usize = 8192;

/// A cache miss waiting for the database's answer.
type Lookup = (AccountId, oneshot::Sender<Result<bool, BookingError>>);

/// Accounts known to exist. Accounts are never deleted, so a positive answer is
/// cached for good; a negative one is not (the account may be created meanwhile on
/// another replica, and caching it would let anyone fill memory). The set is cleared
/// when it grows past [`KNOWN_ACCOUNTS_MAX`] entries. Misses are looked up in batches:
/// when many new buyers arrive at once (an on-sale minute, a restarted replica), the
/// misses that queue while a query runs are answered by the next query, one
/// `id = ANY($1)` for up to [`LOOKUP_BATCH`] ids. Cheap to clone.
#[derive(Debug, Clone)]
pub struct KnownAccounts {
    ids: Arc<RwLock<HashSet<AccountId>>>,
    lookups: mpsc::Sender<Lookup>,
}

impl KnownAccounts {
    /// The cache, with its lookup task on `pool`; the task ends with the last clone.
    pub fn spawn(pool: DatabaseConnection) -> Self {
        let (lookups, queue) = mpsc::channel(LOOKUP_QUEUE);
        let ids: Arc<RwLock<HashSet<AccountId>>> = Arc::default();
        tokio::spawn(look_up(ids.clone(), pool, queue));
        Self { ids, lookups }
    }

    /// Whether `id` names an account, from the cache or else the database.
    pub async fn exists(&self, id: AccountId) -> Result<bool, BookingError> {
        if self.ids.read().is_ok_and(|ids| ids.contains(&id)) {
            return Ok(true);
        }
        let stopped = || BookingError::Unavailable("account lookups stopped".into());
        let (answer, answered) = oneshot::channel();
        self.lookups
            .send((id, answer))
            .await
            .map_err(|_| stopped())?;
        answered.await.map_err(|_| stopped())?
    }

    /// Records that `id` exists (just created).
    pub fn remember(&self, id: AccountId) {
        remember_all(&self.ids, [id]);
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.ids.read().map(|ids| ids.len()).unwrap_or(0)
    }
}

fn remember_all(ids: &RwLock<HashSet<AccountId>>, found: impl IntoIterator<Item = AccountId>) {
    // A poisoned lock only means another thread panicked mid-insert; the set is still
    // a valid cache.
    let mut ids = ids.write().unwrap_or_else(|e| e.into_inner());
    for id in found {
        if ids.len() >= KNOWN_ACCOUNTS_MAX {
            ids.clear();
        }
        ids.insert(id);
    }
}

/// Answers the queued misses: takes what has queued (up to [`LOOKUP_BATCH`]) once a
/// query slot is free, so batches grow while the database is busy.
async fn look_up(
    ids: Arc<RwLock<HashSet<AccountId>>>,
    pool: DatabaseConnection,
    mut queue: mpsc::Receiver<Lookup>,
) {
    let slots = Arc::new(Semaphore::new(LOOKUPS_IN_FLIGHT));
    while let Some(first) = queue.recv().await {
        let Ok(slot) = slots.clone().acquire_owned().await else {
            return;
        };
        let mut batch = vec![first];
        while batch.len() < LOOKUP_BATCH {
            match queue.try_recv() {
                Ok(lookup) => batch.push(lookup),
                Err(_) => break,
            }
        }
        let (ids, pool) = (ids.clone(), pool.clone());
        tokio::spawn(async move {
            let _slot = slot;
            let wanted: Vec<uuid::Uuid> = batch
                .iter()
                .map(|(id, _)| id.0)
                .collect::<HashSet<_>>()
                .into_iter()
                .collect();
            let found = accounts::Entity::find()
                .select_only()
                .column(accounts::Column::Id)
                .filter(sea_orm::ExprTrait::eq(
                    Expr::col(accounts::Column::Id),
                    PgFunc::any(wanted),
                ))
                .into_tuple::<uuid::Uuid>()
                .all(&pool)
                .await;
            match found {
                Ok(found) => {
                    let found: HashSet<AccountId> = found.into_iter().map(AccountId).collect();
                    remember_all(&ids, found.iter().copied());
                    for (id, answer) in batch {
                        let _ = answer.send(Ok(found.contains(&id)));
                    }
                }
                Err(error) => {
                    for (_, answer) in batch {
                        let _ = answer.send(Err(BookingError::from(error.clone())));
                    }
                }
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cache_starts_over_when_full() {
        let known = KnownAccounts {
            ids: Arc::default(),
            lookups: mpsc::channel(1).0,
        };
        for _ in 0..KNOWN_ACCOUNTS_MAX {
            known.remember(AccountId::new());
        }
        assert_eq!(known.len(), KNOWN_ACCOUNTS_MAX);
        let latest = AccountId::new();
        known.remember(latest);
        assert_eq!(known.len(), 1);
        assert!(known.ids.read().expect("lock").contains(&latest));
    }
}

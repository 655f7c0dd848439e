//! The payment database: wallets, payments and the ledger. Every function takes the
//! caller's connection (usually a transaction), so an effect, its inbox claim and its
//! outbox reply commit together.

use chrono::{DateTime, Utc};
use sqlx::postgres::PgRow;
use sqlx::{PgConnection, Row};
use uuid::Uuid;

use crate::domain::{
    AccountId, Amount, BookingId, ChargeRequest, Currency, EntryKind, FailureReason, LedgerEntry,
    Money, PageSize, Payment, PaymentId, PaymentStatus, WALLET_CURRENCY, WalletView,
};
use crate::error::PayError;

/// Creates `account`'s wallet if it has none, with a WELCOME_CREDIT entry of
/// `welcome_credit` KRW. Idempotent and safe under concurrency. Returns whether it
/// was created now; the caller logs that once its transaction committed.
pub async fn ensure_wallet(
    conn: &mut PgConnection,
    account: AccountId,
    welcome_credit: i64,
) -> Result<bool, PayError> {
    let created = sqlx::query(
        "INSERT INTO wallets (account_id, currency, balance_minor) VALUES ($1, $2, $3)
         ON CONFLICT (account_id) DO NOTHING",
    )
    .bind(account.0)
    .bind(WALLET_CURRENCY)
    .bind(welcome_credit)
    .execute(&mut *conn)
    .await?
    .rows_affected()
        == 1;
    if created && welcome_credit > 0 {
        let credit = Money {
            amount_minor: welcome_credit,
            currency: Currency::krw(),
        };
        insert_entry(
            conn,
            account,
            EntryKind::WelcomeCredit,
            &credit,
            welcome_credit,
            None,
            None,
        )
        .await?;
    }
    Ok(created)
}

/// Records a new payment in PENDING under its idempotency key (the booking id),
/// before any charge. `false` when the booking already has a payment; the caller's
/// transaction then waits for a concurrent one to finish first.
pub async fn insert_pending_payment(
    conn: &mut PgConnection,
    payment_id: PaymentId,
    request: &ChargeRequest,
) -> Result<bool, PayError> {
    let inserted = sqlx::query(
        "INSERT INTO payments
             (payment_id, booking_id, account_id, status, amount_minor, currency, method, idempotency_key)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
         ON CONFLICT DO NOTHING",
    )
    .bind(payment_id.0)
    .bind(request.booking_id.0)
    .bind(request.account_id.0)
    .bind(PaymentStatus::Pending.as_str())
    .bind(request.amount_minor)
    .bind(&request.currency)
    .bind(&request.method)
    .bind(request.booking_id.to_string())
    .execute(conn)
    .await?;
    Ok(inserted.rows_affected() == 1)
}

/// Settles a pending payment as CAPTURED or FAILED.
pub async fn settle_payment(
    conn: &mut PgConnection,
    payment_id: PaymentId,
    status: PaymentStatus,
    failure_reason: Option<FailureReason>,
) -> Result<(), PayError> {
    let updated = sqlx::query(
        "UPDATE payments SET status = $2, failure_reason = $3, updated_at = now()
         WHERE payment_id = $1 AND status = 'PENDING'",
    )
    .bind(payment_id.0)
    .bind(status.as_str())
    .bind(failure_reason.map(FailureReason::as_str))
    .execute(conn)
    .await?;
    if updated.rows_affected() != 1 {
        return Err(PayError::Corrupt(format!(
            "payment {payment_id} is not pending"
        )));
    }
    Ok(())
}

/// Marks a captured payment REFUNDED.
pub async fn mark_refunded(conn: &mut PgConnection, payment_id: PaymentId) -> Result<(), PayError> {
    let updated = sqlx::query(
        "UPDATE payments SET status = 'REFUNDED', refunded_at = now(), updated_at = now()
         WHERE payment_id = $1 AND status = 'CAPTURED'",
    )
    .bind(payment_id.0)
    .execute(conn)
    .await?;
    if updated.rows_affected() != 1 {
        return Err(PayError::Corrupt(format!(
            "payment {payment_id} is not captured"
        )));
    }
    Ok(())
}

/// The payment of `booking`, locked until the transaction ends.
pub async fn payment_for_update(
    conn: &mut PgConnection,
    booking: BookingId,
) -> Result<Option<Payment>, PayError> {
    let row = sqlx::query(
        "SELECT payment_id, booking_id, account_id, status, amount_minor, currency, failure_reason
         FROM payments WHERE booking_id = $1 FOR UPDATE",
    )
    .bind(booking.0)
    .fetch_optional(conn)
    .await?;
    row.as_ref().map(payment_from_row).transpose()
}

fn payment_from_row(row: &PgRow) -> Result<Payment, PayError> {
    let status: String = row.try_get("status")?;
    let reason: Option<String> = row.try_get("failure_reason")?;
    Ok(Payment {
        payment_id: PaymentId(row.try_get("payment_id")?),
        booking_id: BookingId(row.try_get("booking_id")?),
        account_id: AccountId(row.try_get("account_id")?),
        status: status
            .parse()
            .map_err(|e| PayError::Corrupt(format!("{e}")))?,
        amount_minor: row.try_get("amount_minor")?,
        currency: row.try_get("currency")?,
        failure_reason: reason
            .map(|r| r.parse().map_err(|e| PayError::Corrupt(format!("{e}"))))
            .transpose()?,
    })
}

/// Takes `amount` from `account`'s wallet if it holds that much in `currency`.
/// Returns the balance after, or `None` when funds are insufficient.
pub async fn debit(
    conn: &mut PgConnection,
    account: AccountId,
    amount: Amount,
    currency: &Currency,
) -> Result<Option<i64>, PayError> {
    let balance = sqlx::query_scalar(
        "UPDATE wallets SET balance_minor = balance_minor - $2, updated_at = now()
         WHERE account_id = $1 AND balance_minor >= $2 AND currency = $3
         RETURNING balance_minor",
    )
    .bind(account.0)
    .bind(amount.minor())
    .bind(currency.as_str())
    .fetch_optional(conn)
    .await?;
    Ok(balance)
}

/// Gives `amount` back to `account`'s wallet. Returns the balance after.
pub async fn credit(
    conn: &mut PgConnection,
    account: AccountId,
    amount: Amount,
    currency: &Currency,
) -> Result<i64, PayError> {
    let balance: Option<i64> = sqlx::query_scalar(
        "UPDATE wallets SET balance_minor = balance_minor + $2, updated_at = now()
         WHERE account_id = $1 AND currency = $3
         RETURNING balance_minor",
    )
    .bind(account.0)
    .bind(amount.minor())
    .bind(currency.as_str())
    .fetch_optional(conn)
    .await?;
    balance.ok_or_else(|| PayError::Corrupt(format!("no {currency} wallet for account {account}")))
}

/// Appends a ledger entry.
pub async fn insert_entry(
    conn: &mut PgConnection,
    account: AccountId,
    kind: EntryKind,
    amount: &Money,
    balance_after_minor: i64,
    booking: Option<BookingId>,
    payment: Option<PaymentId>,
) -> Result<Uuid, PayError> {
    let entry_id = Uuid::now_v7();
    sqlx::query(
        "INSERT INTO ledger_entries
             (entry_id, account_id, kind, amount_minor, currency, balance_after_minor, booking_id, payment_id)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
    )
    .bind(entry_id)
    .bind(account.0)
    .bind(kind.as_str())
    .bind(amount.amount_minor)
    .bind(amount.currency.as_str())
    .bind(balance_after_minor)
    .bind(booking.map(|b| b.0))
    .bind(payment.map(|p| p.0))
    .execute(conn)
    .await?;
    Ok(entry_id)
}

/// `account`'s wallet with its `page` newest entries; [`PayError::NoWallet`] if it
/// has none. Never creates one.
pub async fn wallet_view(
    conn: &mut PgConnection,
    account: AccountId,
    page: PageSize,
) -> Result<WalletView, PayError> {
    let row = sqlx::query("SELECT currency, balance_minor FROM wallets WHERE account_id = $1")
        .bind(account.0)
        .fetch_optional(&mut *conn)
        .await?
        .ok_or(PayError::NoWallet)?;
    let currency = currency_of(&row)?;
    let balance = Money {
        amount_minor: row.try_get("balance_minor")?,
        currency,
    };
    let rows = sqlx::query(
        "SELECT entry_id, kind, amount_minor, currency, balance_after_minor, booking_id, created_at
         FROM ledger_entries WHERE account_id = $1 ORDER BY seq DESC LIMIT $2",
    )
    .bind(account.0)
    .bind(i64::from(page.get()))
    .fetch_all(conn)
    .await?;
    let entries = rows.iter().map(entry_from_row).collect::<Result<_, _>>()?;
    Ok(WalletView {
        account_id: account,
        balance,
        entries,
    })
}

fn currency_of(row: &PgRow) -> Result<Currency, PayError> {
    let text: String = row.try_get("currency")?;
    text.parse().map_err(|e| PayError::Corrupt(format!("{e}")))
}

fn entry_from_row(row: &PgRow) -> Result<LedgerEntry, PayError> {
    let kind: String = row.try_get("kind")?;
    let currency = currency_of(row)?;
    Ok(LedgerEntry {
        entry_id: row.try_get("entry_id")?,
        kind: kind
            .parse()
            .map_err(|e| PayError::Corrupt(format!("{e}")))?,
        amount: Money {
            amount_minor: row.try_get("amount_minor")?,
            currency: currency.clone(),
        },
        balance_after: Money {
            amount_minor: row.try_get("balance_after_minor")?,
            currency,
        },
        booking_id: row.try_get::<Option<Uuid>, _>("booking_id")?.map(BookingId),
        created_at: row.try_get::<DateTime<Utc>, _>("created_at")?,
    })
}

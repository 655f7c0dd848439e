//! The payment database: wallets, payments and the ledger, through the sea-orm
//! entities of [`crate::entity`]. Every function takes the caller's connection
//! (usually a transaction), so an effect, its inbox claim and its outbox reply commit
//! together.

use chrono::{DateTime, Utc};
use sea_orm::ActiveValue::{NotSet, Set};
use sea_orm::sea_query::{
    Asterisk, Expr, ExprTrait as _, Func, InsertStatement, LockBehavior, LockType, OnConflict,
    UpdateStatement,
};
use sea_orm::{
    ColumnTrait, ConnectionTrait, DerivePartialModel, EntityTrait, FromQueryResult, QueryFilter,
    QueryOrder, QuerySelect, QueryTrait as _, TryInsertResult,
};
use uuid::Uuid;

use crate::domain::{
    AccountId, Amount, BookingId, CardEntryKind, ChargeRequest, Currency, EntryKind, FailureReason,
    LedgerEntry, Money, PageSize, Payment, PaymentId, PaymentMethod, PaymentStatus,
    WALLET_CURRENCY, WalletView,
};
use crate::entity::{card_ledger_entries, ledger_entries, payments, wallets};
use crate::error::PayError;

/// Creates `account`'s wallet if it has none, with a WELCOME_CREDIT entry of
/// `welcome_credit` KRW. Idempotent and safe under concurrency. Returns whether it
/// was created now; the caller logs that once its transaction committed.
pub async fn ensure_wallet(
    db: &impl ConnectionTrait,
    account: AccountId,
    welcome_credit: i64,
) -> Result<bool, PayError> {
    let inserted = wallets::Entity::insert(wallets::ActiveModel {
        account_id: Set(account.0),
        currency: Set(WALLET_CURRENCY.to_owned()),
        balance_minor: Set(welcome_credit),
        created_at: NotSet,
        updated_at: NotSet,
    })
    .on_conflict_do_nothing()
    .exec_without_returning(db)
    .await?;
    let created = matches!(inserted, TryInsertResult::Inserted(1));
    if created && welcome_credit > 0 {
        let credit = Money {
            amount_minor: welcome_credit,
            currency: Currency::krw(),
        };
        insert_entry(
            db,
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
/// before any charge. A CARD payment also gets its PSP order id (the booking id) and
/// the idempotency key of its confirms (the payment id), stored before the first
/// call. `false` when the booking already has a payment; the caller's transaction
/// then waits for a concurrent one to finish first.
pub async fn insert_pending_payment(
    db: &impl ConnectionTrait,
    payment_id: PaymentId,
    request: &ChargeRequest,
) -> Result<bool, PayError> {
    let card = request.method == PaymentMethod::Card.as_str();
    let when_card = |value: String| if card { Set(Some(value)) } else { Set(None) };
    let inserted = payments::Entity::insert(payments::ActiveModel {
        psp_order_id: when_card(request.booking_id.to_string()),
        card_token: when_card(request.card_token.clone()),
        psp_confirm_key: when_card(payment_id.to_string()),
        payment_id: Set(payment_id.0),
        booking_id: Set(request.booking_id.0),
        account_id: Set(request.account_id.0),
        status: Set(PaymentStatus::Pending.as_str().to_owned()),
        amount_minor: Set(request.amount_minor),
        currency: Set(request.currency.clone()),
        method: Set(request.method.clone()),
        failure_reason: Set(None),
        idempotency_key: Set(request.booking_id.to_string()),
        created_at: NotSet,
        updated_at: NotSet,
        refunded_at: NotSet,
        ..Default::default()
    })
    // No conflict target: a second payment for the booking collides on
    // `payments_booking_id_key` and `payments_idempotency_key_key` alike.
    .on_conflict(OnConflict::new().do_nothing().to_owned())
    .exec_without_returning(db)
    .await?;
    Ok(inserted == 1)
}

/// Settles a pending payment as CAPTURED or FAILED: the UPDATE, guarded by the payment
/// still being PENDING, to run as part of a larger statement (the charge's last one);
/// it changes no row when the payment is not pending.
pub fn settle_statement(
    payment_id: PaymentId,
    status: PaymentStatus,
    failure_reason: Option<&FailureReason>,
) -> UpdateStatement {
    payments::Entity::update_many()
        .col_expr(payments::Column::Status, Expr::value(status.as_str()))
        .col_expr(
            payments::Column::FailureReason,
            Expr::value(failure_reason.map(|r| r.as_str().to_owned())),
        )
        .col_expr(payments::Column::UpdatedAt, Expr::current_timestamp())
        .filter(payments::Column::PaymentId.eq(payment_id.0))
        .filter(payments::Column::Status.eq(PaymentStatus::Pending.as_str()))
        .into_query()
}

/// A payment that should have been PENDING was not: the store is not what the saga
/// step expects.
pub fn not_pending(payment_id: PaymentId) -> PayError {
    PayError::Corrupt(format!("payment {payment_id} is not pending"))
}

/// Marks a captured payment REFUNDED.
pub async fn mark_refunded(
    db: &impl ConnectionTrait,
    payment_id: PaymentId,
) -> Result<(), PayError> {
    let updated = payments::Entity::update_many()
        .col_expr(
            payments::Column::Status,
            Expr::value(PaymentStatus::Refunded.as_str()),
        )
        .col_expr(payments::Column::RefundedAt, Expr::current_timestamp())
        .col_expr(payments::Column::UpdatedAt, Expr::current_timestamp())
        .filter(payments::Column::PaymentId.eq(payment_id.0))
        .filter(payments::Column::Status.eq(PaymentStatus::Captured.as_str()))
        .exec(db)
        .await?;
    if updated.rows_affected != 1 {
        return Err(PayError::Corrupt(format!(
            "payment {payment_id} is not captured"
        )));
    }
    Ok(())
}

/// The stored columns of a payment the saga reads.
#[derive(Debug, DerivePartialModel)]
#[sea_orm(entity = "payments::Entity")]
struct PaymentRow {
    payment_id: Uuid,
    booking_id: Uuid,
    account_id: Uuid,
    status: String,
    amount_minor: i64,
    currency: String,
    failure_reason: Option<String>,
    method: String,
    refund_wanted: bool,
}

impl TryFrom<PaymentRow> for Payment {
    type Error = PayError;

    fn try_from(row: PaymentRow) -> Result<Self, PayError> {
        Ok(Payment {
            payment_id: PaymentId(row.payment_id),
            booking_id: BookingId(row.booking_id),
            account_id: AccountId(row.account_id),
            status: row
                .status
                .parse()
                .map_err(|e| PayError::Corrupt(format!("payment {}: {e}", row.payment_id)))?,
            amount_minor: row.amount_minor,
            currency: row.currency,
            failure_reason: row
                .failure_reason
                .map(|r| {
                    r.parse()
                        .map_err(|e| PayError::Corrupt(format!("payment {}: {e}", row.payment_id)))
                })
                .transpose()?,
            method: row.method,
            refund_wanted: row.refund_wanted,
        })
    }
}

/// The payment of `booking`, locked until the transaction ends.
pub async fn payment_for_update(
    db: &impl ConnectionTrait,
    booking: BookingId,
) -> Result<Option<Payment>, PayError> {
    payments::Entity::find()
        .filter(payments::Column::BookingId.eq(booking.0))
        .lock_exclusive()
        .into_partial_model::<PaymentRow>()
        .one(db)
        .await?
        .map(Payment::try_from)
        .transpose()
}

/// Has the resolver work on a card payment now.
pub async fn schedule_now(
    db: &impl ConnectionTrait,
    payment_id: PaymentId,
) -> Result<(), PayError> {
    payments::Entity::update_many()
        .col_expr(payments::Column::NextAttemptAt, Expr::current_timestamp())
        .col_expr(payments::Column::UpdatedAt, Expr::current_timestamp())
        .filter(payments::Column::PaymentId.eq(payment_id.0))
        .exec(db)
        .await?;
    Ok(())
}

/// The card payment whose PSP work is due soonest, locked until the transaction ends;
/// one another transaction holds is skipped, so two resolvers never work one payment.
pub async fn next_due_payment(
    db: &impl ConnectionTrait,
) -> Result<Option<payments::Model>, PayError> {
    Ok(payments::Entity::find()
        .filter(Expr::col(payments::Column::NextAttemptAt).lte(Expr::current_timestamp()))
        .order_by_asc(payments::Column::NextAttemptAt)
        .limit(1)
        .lock_with_behavior(LockType::Update, LockBehavior::SkipLocked)
        .one(db)
        .await?)
}

/// Applies the columns set in `change` to payment `payment_id` if it is still in
/// `expected` (the caller holds its lock); `updated_at` is set too.
pub async fn update_payment(
    db: &impl ConnectionTrait,
    payment_id: PaymentId,
    expected: PaymentStatus,
    mut change: payments::ActiveModel,
) -> Result<(), PayError> {
    change.updated_at = Set(Utc::now());
    let updated = payments::Entity::update_many()
        .set(change)
        .filter(payments::Column::PaymentId.eq(payment_id.0))
        .filter(payments::Column::Status.eq(expected.as_str()))
        .exec(db)
        .await?;
    if updated.rows_affected != 1 {
        return Err(PayError::Corrupt(format!(
            "payment {payment_id} is not {expected}"
        )));
    }
    Ok(())
}

/// Appends a card ledger entry: money the PSP captured or gave back. A second entry
/// of a kind for one payment is refused (`card_ledger_entries_one_kind_per_payment_key`).
pub async fn insert_card_entry(
    db: &impl ConnectionTrait,
    payment_id: PaymentId,
    booking: BookingId,
    kind: CardEntryKind,
    amount: Amount,
    currency: &str,
    psp_payment_key: &str,
) -> Result<(), PayError> {
    card_ledger_entries::Entity::insert(card_ledger_entries::ActiveModel {
        seq: NotSet,
        payment_id: Set(payment_id.0),
        booking_id: Set(booking.0),
        kind: Set(kind.as_str().to_owned()),
        amount_minor: Set(amount.minor()),
        currency: Set(currency.to_owned()),
        psp_payment_key: Set(psp_payment_key.to_owned()),
        created_at: NotSet,
    })
    .exec_without_returning(db)
    .await?;
    Ok(())
}

/// Card payments awaiting the PSP's answer to their charge: how many, and since when
/// the oldest waits.
pub async fn pending_card_payments(
    db: &impl ConnectionTrait,
) -> Result<(i64, Option<DateTime<Utc>>), PayError> {
    let row: Option<(i64, Option<DateTime<Utc>>)> = payments::Entity::find()
        .select_only()
        .column_as(Expr::from(Func::count(Expr::col(Asterisk))), "pending")
        .column_as(
            Expr::from(Func::min(Expr::col(payments::Column::CreatedAt))),
            "oldest",
        )
        // The resolver's partial index: only payments with PSP work.
        .filter(payments::Column::NextAttemptAt.is_not_null())
        .filter(payments::Column::Status.eq(PaymentStatus::Pending.as_str()))
        .into_tuple()
        .one(db)
        .await?;
    Ok(row.unwrap_or((0, None)))
}

/// A wallet's balance, as an UPDATE ... RETURNING gives it back.
#[derive(Debug, FromQueryResult)]
struct Balance {
    balance_minor: i64,
}

/// Takes `amount` from `account`'s wallet if it holds that much in `currency`.
/// Returns the balance after, or `None` when funds are insufficient.
pub async fn debit(
    db: &impl ConnectionTrait,
    account: AccountId,
    amount: Amount,
    currency: &Currency,
) -> Result<Option<i64>, PayError> {
    let mut update = wallets::Entity::update_many()
        .col_expr(
            wallets::Column::BalanceMinor,
            Expr::col(wallets::Column::BalanceMinor).sub(amount.minor()),
        )
        .col_expr(wallets::Column::UpdatedAt, Expr::current_timestamp())
        .filter(wallets::Column::AccountId.eq(account.0))
        .filter(wallets::Column::BalanceMinor.gte(amount.minor()))
        .filter(wallets::Column::Currency.eq(currency.as_str()))
        .into_query();
    // One guarded statement that also returns the new balance: no second round trip.
    update.returning_col(wallets::Column::BalanceMinor);
    let balance = match db.query_one(&update).await? {
        Some(row) => Some(Balance::from_query_result(&row, "")?.balance_minor),
        None => None,
    };
    Ok(balance)
}

/// Gives `amount` back to `account`'s wallet. Returns the balance after.
pub async fn credit(
    db: &impl ConnectionTrait,
    account: AccountId,
    amount: Amount,
    currency: &Currency,
) -> Result<i64, PayError> {
    let mut update = wallets::Entity::update_many()
        .col_expr(
            wallets::Column::BalanceMinor,
            Expr::col(wallets::Column::BalanceMinor).add(amount.minor()),
        )
        .col_expr(wallets::Column::UpdatedAt, Expr::current_timestamp())
        .filter(wallets::Column::AccountId.eq(account.0))
        .filter(wallets::Column::Currency.eq(currency.as_str()))
        .into_query();
    // One statement that also returns the new balance: no second round trip.
    update.returning_col(wallets::Column::BalanceMinor);
    match db.query_one(&update).await? {
        Some(row) => Ok(Balance::from_query_result(&row, "")?.balance_minor),
        None => Err(PayError::Corrupt(format!(
            "no {currency} wallet for account {account}"
        ))),
    }
}

/// Whether the transfer payout `payout` (the recipient's booking) was credited.
pub async fn payout_credited(
    db: &impl ConnectionTrait,
    payout: BookingId,
) -> Result<bool, PayError> {
    let found = ledger_entries::Entity::find()
        .filter(ledger_entries::Column::BookingId.eq(payout.0))
        .filter(ledger_entries::Column::Kind.eq(EntryKind::TransferPayout.as_str()))
        .one(db)
        .await?;
    Ok(found.is_some())
}

/// Appends a ledger entry.
pub async fn insert_entry(
    db: &impl ConnectionTrait,
    account: AccountId,
    kind: EntryKind,
    amount: &Money,
    balance_after_minor: i64,
    booking: Option<BookingId>,
    payment: Option<PaymentId>,
) -> Result<Uuid, PayError> {
    let (entry_id, insert) =
        entry_statement(account, kind, amount, balance_after_minor, booking, payment);
    db.execute(&insert).await?;
    Ok(entry_id)
}

/// [`insert_entry`]'s INSERT and the entry's id, to run as part of a larger statement.
pub fn entry_statement(
    account: AccountId,
    kind: EntryKind,
    amount: &Money,
    balance_after_minor: i64,
    booking: Option<BookingId>,
    payment: Option<PaymentId>,
) -> (Uuid, InsertStatement) {
    let entry_id = Uuid::now_v7();
    let insert = ledger_entries::Entity::insert(ledger_entries::ActiveModel {
        seq: NotSet,
        entry_id: Set(entry_id),
        account_id: Set(account.0),
        kind: Set(kind.as_str().to_owned()),
        amount_minor: Set(amount.amount_minor),
        currency: Set(amount.currency.as_str().to_owned()),
        balance_after_minor: Set(balance_after_minor),
        booking_id: Set(booking.map(|b| b.0)),
        payment_id: Set(payment.map(|p| p.0)),
        created_at: NotSet,
    })
    .into_query();
    (entry_id, insert)
}

/// A wallet's currency and balance.
#[derive(Debug, DerivePartialModel)]
#[sea_orm(entity = "wallets::Entity")]
struct WalletRow {
    currency: String,
    balance_minor: i64,
}

/// The columns of a ledger entry GetWallet shows.
#[derive(Debug, DerivePartialModel)]
#[sea_orm(entity = "ledger_entries::Entity")]
struct EntryRow {
    entry_id: Uuid,
    kind: String,
    amount_minor: i64,
    currency: String,
    balance_after_minor: i64,
    booking_id: Option<Uuid>,
    created_at: DateTime<Utc>,
}

impl TryFrom<EntryRow> for LedgerEntry {
    type Error = PayError;

    fn try_from(row: EntryRow) -> Result<Self, PayError> {
        let corrupt = |e: &dyn std::fmt::Display| {
            PayError::Corrupt(format!("ledger entry {}: {e}", row.entry_id))
        };
        let currency: Currency = row.currency.parse().map_err(|e| corrupt(&e))?;
        Ok(LedgerEntry {
            entry_id: row.entry_id,
            kind: row.kind.parse().map_err(|e| corrupt(&e))?,
            amount: Money {
                amount_minor: row.amount_minor,
                currency: currency.clone(),
            },
            balance_after: Money {
                amount_minor: row.balance_after_minor,
                currency,
            },
            booking_id: row.booking_id.map(BookingId),
            created_at: row.created_at,
        })
    }
}

/// `account`'s wallet with its `page` newest entries; [`PayError::NoWallet`] if it
/// has none. Never creates one.
pub async fn wallet_view(
    db: &impl ConnectionTrait,
    account: AccountId,
    page: PageSize,
) -> Result<WalletView, PayError> {
    let wallet = wallets::Entity::find_by_id(account.0)
        .into_partial_model::<WalletRow>()
        .one(db)
        .await?
        .ok_or(PayError::NoWallet)?;
    let currency: Currency = wallet
        .currency
        .parse()
        .map_err(|e| PayError::Corrupt(format!("wallet of account {account}: {e}")))?;
    let entries = ledger_entries::Entity::find()
        .filter(ledger_entries::Column::AccountId.eq(account.0))
        .order_by_desc(ledger_entries::Column::Seq)
        .limit(u64::from(page.get()))
        .into_partial_model::<EntryRow>()
        .all(db)
        .await?
        .into_iter()
        .map(LedgerEntry::try_from)
        .collect::<Result<_, _>>()?;
    Ok(WalletView {
        account_id: account,
        balance: Money {
            amount_minor: wallet.balance_minor,
            currency,
        },
        entries,
    })
}

//! The ledger: every decision is committed to PostgreSQL before it is answered (or
//! before the connection is dropped), so a `kill -9` at any moment loses no charge and
//! leaves no half-made one.
//!
//! Concurrency: each request runs in one transaction. An idempotency key is claimed
//! with a transaction-scoped advisory try-lock (a second request with the key while the
//! first runs gets 409 ALREADY_PROCESSING_REQUEST; a crash releases it with the
//! transaction, leaving nothing behind). Confirms of one order queue on an advisory
//! lock of the order, and `psp_payments_order_id_key` (UNIQUE order_id) stands behind
//! it: one payment per order, whatever the keys.

use chrono::{DurationRound as _, TimeDelta, Utc};
use sea_orm::sea_query::OnConflict;
use sea_orm::{
    ActiveModelTrait as _, ColumnTrait as _, ConnectionTrait, DatabaseConnection,
    DatabaseTransaction, DbBackend, DbErr, EntityTrait as _, IntoActiveModel as _,
    QueryFilter as _, QuerySelect as _, Set, Statement, TransactionTrait as _,
};
use serde_json::{Value, json};
use sha2::{Digest as _, Sha256};

use crate::domain::{
    self, ABORTED, CANCELED, CancelRequest, Card, ConfirmRequest, DONE, Failure, IN_PROGRESS,
};
use crate::entity::{psp_faults, psp_idempotency, psp_payments};

const CONFIRM: &str = "confirm";
const CANCEL: &str = "cancel";

/// What to send back: a status and a JSON body, or nothing at all (the connection is
/// dropped once the outcome is committed).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    pub status: u16,
    /// The JSON text, exactly as stored for a replay.
    pub body: String,
    /// Close the connection without answering.
    pub drop_connection: bool,
    /// Answer only after `PSP_SLOW_MS` (`tok_slow`).
    pub slow: bool,
}

impl Answer {
    fn json(status: u16, body: &Value) -> Self {
        Self {
            status,
            body: body.to_string(),
            drop_connection: false,
            slow: false,
        }
    }

    fn ok(payment: &psp_payments::Model) -> Self {
        Self::json(200, &domain::payment_json(payment))
    }
}

impl From<Failure> for Answer {
    fn from(failure: Failure) -> Self {
        Self::json(failure.status, &failure.body())
    }
}

/// `GET /v1/ledger`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ledger {
    pub captured: i128,
    pub refunded: i128,
    pub payments: i64,
    pub double_charges: i64,
}

impl Ledger {
    pub fn json(&self) -> Value {
        json!({
            "captured": self.captured,
            "refunded": self.refunded,
            "net": self.captured - self.refunded,
            "payments": self.payments,
            "doubleCharges": self.double_charges,
        })
    }
}

/// The sandbox's state, in PostgreSQL.
#[derive(Clone)]
pub struct Store {
    db: DatabaseConnection,
}

/// Now, at the precision PostgreSQL keeps, so an answer rendered before the write
/// equals one rendered from the row later.
fn now() -> chrono::DateTime<Utc> {
    let now = Utc::now();
    now.duration_trunc(TimeDelta::microseconds(1))
        .unwrap_or(now)
}

fn fingerprint(parts: &[&[u8]]) -> String {
    let mut hasher = Sha256::new();
    for part in parts {
        hasher.update((part.len() as u64).to_be_bytes());
        hasher.update(part);
    }
    hasher
        .finalize()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Takes the transaction-scoped advisory lock named `name`: waiting for it, or (with
/// `try_only`) giving up at once. Advisory locks have no query-builder form.
async fn advisory_lock(
    tx: &DatabaseTransaction,
    name: &str,
    try_only: bool,
) -> Result<bool, DbErr> {
    let sql = if try_only {
        "SELECT pg_try_advisory_xact_lock(hashtextextended($1, 0)) AS locked"
    } else {
        "SELECT pg_advisory_xact_lock(hashtextextended($1, 0)) IS NOT NULL AS locked"
    };
    let row = tx
        .query_one_raw(Statement::from_sql_and_values(
            DbBackend::Postgres,
            sql,
            [name.into()],
        ))
        .await?;
    match row {
        Some(row) => row.try_get::<bool>("", "locked"),
        None => Ok(false),
    }
}

/// What a claimed idempotency key already holds.
enum Claim {
    /// Nothing: this request is the key's first.
    Fresh,
    /// An answer to replay, or a refusal (the first attempt is still running).
    Answered(Answer),
}

async fn claim(
    tx: &DatabaseTransaction,
    scope: &str,
    key: &str,
    fingerprint: &str,
) -> Result<Claim, DbErr> {
    // A key already answered replays without its lock, so retries of a decided request
    // never see each other as "in progress".
    if let Some(stored) = stored_answer(tx, scope, key, fingerprint).await? {
        return Ok(Claim::Answered(stored));
    }
    if !advisory_lock(tx, &format!("{scope}:{key}"), true).await? {
        return Ok(Claim::Answered(Failure::processing().into()));
    }
    // Under the lock, again: the key's first request may have committed in between.
    Ok(match stored_answer(tx, scope, key, fingerprint).await? {
        Some(stored) => Claim::Answered(stored),
        None => Claim::Fresh,
    })
}

/// What key `key` answers already: its stored answer, "in progress" while the first
/// request is undecided, or nothing if the key is new.
async fn stored_answer(
    tx: &DatabaseTransaction,
    scope: &str,
    key: &str,
    fingerprint: &str,
) -> Result<Option<Answer>, DbErr> {
    let Some(stored) = psp_idempotency::Entity::find_by_id((scope.to_owned(), key.to_owned()))
        .one(tx)
        .await?
    else {
        return Ok(None);
    };
    if stored.fingerprint != fingerprint {
        tracing::info!(
            scope,
            idempotency_key = key,
            "idempotency key reused for another request, replaying the first answer"
        );
    }
    Ok(Some(match (stored.response_status, stored.response_body) {
        (Some(status), Some(body)) => Answer {
            status: u16::try_from(status).unwrap_or(500),
            body,
            drop_connection: false,
            slow: false,
        },
        // Undecided: the first attempt has no answer until an inquiry decides it.
        _ => Failure::processing().into(),
    }))
}

/// Ends a transaction whose writes are not kept, before its answer leaves. A dropped
/// transaction is rolled back only when its connection is released in the background,
/// and until then it holds its locks: a client's immediate retry would find its own
/// key "in progress".
async fn discard(tx: DatabaseTransaction, answer: impl Into<Answer>) -> Result<Answer, DbErr> {
    tx.rollback().await?;
    Ok(answer.into())
}

async fn remember(
    tx: &DatabaseTransaction,
    scope: &str,
    key: &str,
    fingerprint: String,
    answer: Option<&Answer>,
) -> Result<(), DbErr> {
    psp_idempotency::ActiveModel {
        scope: Set(scope.to_owned()),
        idempotency_key: Set(key.to_owned()),
        fingerprint: Set(fingerprint),
        response_status: Set(answer.map(|a| i32::from(a.status))),
        response_body: Set(answer.map(|a| a.body.clone())),
        created_at: Set(now()),
    }
    .insert(tx)
    .await?;
    Ok(())
}

/// The answer a payment gives once decided: 200 with it, or its decline.
fn decided_answer(payment: &psp_payments::Model) -> Answer {
    match (payment.status.as_str(), payment.failure_code.as_deref()) {
        (ABORTED, Some("INVALID_CARD_EXPIRATION")) => Failure::expired().into(),
        (ABORTED, _) => Failure::rejected().into(),
        _ => Answer::ok(payment),
    }
}

fn new_payment_key() -> String {
    format!("tpk_{}", uuid::Uuid::now_v7().simple())
}

impl Store {
    pub fn new(db: DatabaseConnection) -> Self {
        Self { db }
    }

    pub fn db(&self) -> &DatabaseConnection {
        &self.db
    }

    /// `POST /v1/payments/confirm` under `key` with the raw `body`.
    pub async fn confirm(&self, key: &str, body: &[u8]) -> Result<Answer, DbErr> {
        let tx = self.db.begin().await?;
        let fingerprint = fingerprint(&[b"confirm", body]);
        if let Claim::Answered(answer) = claim(&tx, CONFIRM, key, &fingerprint).await? {
            return discard(tx, answer).await;
        }
        let request = match ConfirmRequest::parse(body) {
            Ok(request) => request,
            Err(failure) => return discard(tx, failure).await,
        };
        let Some(card) = Card::parse(&request.card_token) else {
            return discard(
                tx,
                Failure::new(
                    400,
                    "INVALID_CARD_NUMBER",
                    "카드 번호 오류 (unknown card token)",
                ),
            )
            .await;
        };
        // Confirms of one order queue here; the second sees what the first committed.
        advisory_lock(&tx, &format!("order:{}", request.order_id), false).await?;
        let existing = psp_payments::Entity::find()
            .filter(psp_payments::Column::OrderId.eq(&request.order_id))
            .one(&tx)
            .await?;
        match existing.as_ref().map(|p| p.status.as_str()) {
            Some(DONE | CANCELED) => return discard(tx, Failure::processed()).await,
            Some(IN_PROGRESS) => return discard(tx, Failure::processing()).await,
            // An aborted attempt is replaced below by this one (a declined card, then
            // another card); the first key still replays its decline.
            Some(_) | None => {}
        }
        match card {
            Card::ProviderError => return discard(tx, Failure::provider_error()).await,
            Card::ProviderErrorOnce => {
                let inserted = psp_faults::Entity::insert(psp_faults::ActiveModel {
                    order_id: Set(request.order_id.clone()),
                    card_token: Set(request.card_token.clone()),
                    failed_at: Set(now()),
                })
                .on_conflict(
                    OnConflict::columns([
                        psp_faults::Column::OrderId,
                        psp_faults::Column::CardToken,
                    ])
                    .do_nothing()
                    .to_owned(),
                )
                .exec_without_returning(&tx)
                .await?;
                if inserted > 0 {
                    tx.commit().await?;
                    tracing::info!(order_id = %request.order_id, "injected a provider error once");
                    return Ok(Failure::provider_error().into());
                }
            }
            _ => {}
        }
        let at = now();
        let (status, total_amount, failure) = match card {
            Card::Decline | Card::FailDrop => (ABORTED, request.amount, Some(Failure::rejected())),
            Card::Expired => (ABORTED, request.amount, Some(Failure::expired())),
            Card::Undecided | Card::UndecidedFail => (IN_PROGRESS, request.amount, None),
            Card::WrongAmount => match request.amount.checked_add(1) {
                Some(wrong) => (DONE, wrong, None),
                None => return discard(tx, Failure::invalid("amount is too large")).await,
            },
            Card::Approve
            | Card::ChargeDrop
            | Card::Slow
            | Card::ProviderError
            | Card::ProviderErrorOnce => (DONE, request.amount, None),
        };
        let payment = psp_payments::Model {
            payment_key: new_payment_key(),
            order_id: request.order_id.clone(),
            confirm_key: key.to_owned(),
            status: status.to_owned(),
            total_amount,
            currency: request.currency.clone(),
            card_token: request.card_token.clone(),
            failure_code: failure.as_ref().map(|f| f.code.to_owned()),
            failure_message: failure.as_ref().map(|f| f.message.clone()),
            approved_at: (status == DONE).then_some(at),
            canceled_at: None,
            cancel_reason: None,
            created_at: at,
        };
        if let Some(aborted) = existing {
            psp_payments::Entity::delete_by_id(aborted.payment_key)
                .exec(&tx)
                .await?;
        }
        // An undecided payment has no answer yet (and its connection is dropped).
        let decided = (status != IN_PROGRESS).then(|| decided_answer(&payment));
        if let Err(error) = payment.clone().into_active_model().insert(&tx).await {
            // Behind the order lock this cannot happen; the constraint still decides.
            if marquee_infra::db::violated_constraint(&error).as_deref()
                == Some(psp_payments::ORDER_ID_KEY)
            {
                return discard(tx, Failure::processed()).await;
            }
            return Err(error);
        }
        remember(&tx, CONFIRM, key, fingerprint, decided.as_ref()).await?;
        tx.commit().await?;
        tracing::info!(
            order_id = %payment.order_id,
            payment_key = %payment.payment_key,
            status,
            total_amount,
            card = %payment.card_token,
            "payment recorded"
        );
        let mut answer = decided.unwrap_or_else(|| Failure::processing().into());
        answer.drop_connection = card.drops_connection();
        answer.slow = card == Card::Slow;
        Ok(answer)
    }

    /// `GET /v1/payments/orders/{orderId}`: an undecided payment is decided here.
    pub async fn inquire(&self, order_id: &str) -> Result<Answer, DbErr> {
        let tx = self.db.begin().await?;
        let Some(payment) = psp_payments::Entity::find()
            .filter(psp_payments::Column::OrderId.eq(order_id))
            .lock_exclusive()
            .one(&tx)
            .await?
        else {
            return discard(tx, Failure::not_found_payment()).await;
        };
        if payment.status != IN_PROGRESS {
            return discard(tx, Answer::ok(&payment)).await;
        }
        let approve = payment.card_token == "tok_undecided";
        let mut decided = payment.clone().into_active_model();
        if approve {
            decided.status = Set(DONE.to_owned());
            decided.approved_at = Set(Some(now()));
        } else {
            let failure = Failure::rejected();
            decided.status = Set(ABORTED.to_owned());
            decided.failure_code = Set(Some(failure.code.to_owned()));
            decided.failure_message = Set(Some(failure.message));
        }
        let decided = decided.update(&tx).await?;
        // The confirm's key now replays the decision.
        let answer = decided_answer(&decided);
        psp_idempotency::Entity::update_many()
            .col_expr(
                psp_idempotency::Column::ResponseStatus,
                i32::from(answer.status).into(),
            )
            .col_expr(
                psp_idempotency::Column::ResponseBody,
                answer.body.clone().into(),
            )
            .filter(psp_idempotency::Column::Scope.eq(CONFIRM))
            .filter(psp_idempotency::Column::IdempotencyKey.eq(&decided.confirm_key))
            .filter(psp_idempotency::Column::ResponseStatus.is_null())
            .exec(&tx)
            .await?;
        tx.commit().await?;
        tracing::info!(
            order_id,
            payment_key = %decided.payment_key,
            status = %decided.status,
            "undecided payment decided at inquiry"
        );
        Ok(Answer::ok(&decided))
    }

    /// `POST /v1/payments/{paymentKey}/cancel` under `key` with the raw `body`.
    pub async fn cancel(&self, payment_key: &str, key: &str, body: &[u8]) -> Result<Answer, DbErr> {
        let tx = self.db.begin().await?;
        let fingerprint = fingerprint(&[b"cancel", payment_key.as_bytes(), body]);
        if let Claim::Answered(answer) = claim(&tx, CANCEL, key, &fingerprint).await? {
            return discard(tx, answer).await;
        }
        let request = match CancelRequest::parse(body) {
            Ok(request) => request,
            Err(failure) => return discard(tx, failure).await,
        };
        let Some(payment) = psp_payments::Entity::find_by_id(payment_key.to_owned())
            .lock_exclusive()
            .one(&tx)
            .await?
        else {
            return discard(tx, Failure::not_found_payment()).await;
        };
        let not_cancelable = || {
            Answer::from(Failure::new(
                403,
                "NOT_CANCELABLE_PAYMENT",
                format!("a payment {} cannot be canceled", payment.status),
            ))
        };
        let answer = match payment.status.as_str() {
            DONE => {
                let mut canceled = payment.clone().into_active_model();
                canceled.status = Set(CANCELED.to_owned());
                canceled.canceled_at = Set(Some(now()));
                canceled.cancel_reason = Set(Some(request.cancel_reason));
                let canceled = canceled.update(&tx).await?;
                tracing::info!(
                    order_id = %canceled.order_id,
                    payment_key,
                    refunded = canceled.total_amount,
                    "payment canceled"
                );
                Answer::ok(&canceled)
            }
            // Already refunded: the same object, no second refund.
            CANCELED => Answer::ok(&payment),
            // Undecided: not cancelable yet, and not remembered (it may become so).
            IN_PROGRESS => return discard(tx, not_cancelable()).await,
            _ => not_cancelable(),
        };
        remember(&tx, CANCEL, key, fingerprint, Some(&answer)).await?;
        tx.commit().await?;
        Ok(answer)
    }

    /// `GET /v1/ledger`.
    pub async fn ledger(&self) -> Result<Ledger, DbErr> {
        // Aggregates with FILTER and a grouped subquery: kept as SQL. Sums as text, so
        // they cannot overflow a BIGINT.
        let row = self
            .db
            .query_one_raw(Statement::from_string(
                DbBackend::Postgres,
                "SELECT COALESCE(SUM(total_amount) FILTER (WHERE status IN ('DONE', 'CANCELED')), 0)::TEXT AS captured,
                        COALESCE(SUM(total_amount) FILTER (WHERE status = 'CANCELED'), 0)::TEXT AS refunded,
                        COUNT(*) FILTER (WHERE status IN ('DONE', 'CANCELED')) AS payments,
                        (SELECT COUNT(*) FROM (SELECT order_id FROM psp_payments
                                               WHERE status IN ('DONE', 'CANCELED')
                                               GROUP BY order_id HAVING COUNT(*) > 1) AS d) AS double_charges
                 FROM psp_payments",
            ))
            .await?
            .ok_or_else(|| DbErr::RecordNotFound("ledger".to_owned()))?;
        Ok(Ledger {
            captured: parse_sum(&row.try_get::<String>("", "captured")?)?,
            refunded: parse_sum(&row.try_get::<String>("", "refunded")?)?,
            payments: row.try_get("", "payments")?,
            double_charges: row.try_get("", "double_charges")?,
        })
    }

    /// `GET /v1/ledger/orders/{orderId}`.
    pub async fn order_ledger(&self, order_id: &str) -> Result<Value, DbErr> {
        // As `ledger`, for one order.
        let row = self
            .db
            .query_one_raw(Statement::from_sql_and_values(
                DbBackend::Postgres,
                "SELECT COUNT(*) FILTER (WHERE status IN ('DONE', 'CANCELED')) AS charges,
                        COALESCE(SUM(total_amount) FILTER (WHERE status IN ('DONE', 'CANCELED')), 0)::TEXT AS captured,
                        COALESCE(SUM(total_amount) FILTER (WHERE status = 'CANCELED'), 0)::TEXT AS refunded
                 FROM psp_payments WHERE order_id = $1",
                [order_id.into()],
            ))
            .await?
            .ok_or_else(|| DbErr::RecordNotFound("ledger".to_owned()))?;
        Ok(json!({
            "orderId": order_id,
            "charges": row.try_get::<i64>("", "charges")?,
            "captured": parse_sum(&row.try_get::<String>("", "captured")?)?,
            "refunded": parse_sum(&row.try_get::<String>("", "refunded")?)?,
        }))
    }

    /// `SELECT 1`, for `/healthz`.
    pub async fn ping(&self) -> Result<(), DbErr> {
        self.db.ping().await
    }
}

fn parse_sum(text: &str) -> Result<i128, DbErr> {
    text.parse()
        .map_err(|_| DbErr::Type(format!("a sum that is not an integer: {text}")))
}

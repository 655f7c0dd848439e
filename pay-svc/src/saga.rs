//! The saga consumer: AccountOpened (which opens the wallet with its welcome credit),
//! PaymentRequested, RefundRequested and PayoutRequested in, PaymentSucceeded,
//! PaymentFailed, RefundCompleted and PayoutCompleted out through the outbox. Each message is one
//! transaction: inbox claim, effect and reply commit together, and the bus acks only
//! after that commit. Messages that arrive together share one transaction (one commit
//! for the batch); a batch that fails is handled again one message at a time.
//! Protobuf stops here.

use std::sync::Arc;

use marquee_infra::bus::{self, BatchHandler, Envelope, HandleError};
use marquee_infra::outbox::{self, NewMessage, Relay};
use marquee_proto::saga;
use prost::Message as _;
use sea_orm::sea_query::{
    Alias, Asterisk, Expr, ExprTrait as _, Query, SubQueryStatement, UpdateStatement,
};
use sea_orm::{ConnectionTrait, DatabaseConnection, DatabaseTransaction, TransactionTrait};
use uuid::Uuid;

use crate::domain::{
    AccountId, Amount, BookingId, ChargeRequest, Currency, EntryKind, FailureReason, Money,
    Payment, PaymentId, PaymentMethod, PaymentStatus, PayoutRequest, RefundRequest,
};
use crate::entity::payments;
use crate::error::PayError;
use crate::resolver::Wake;
use crate::steps::{self, Steps};
use crate::store;
pub use marquee_proto::kinds::{
    ACCOUNT_OPENED, PAYMENT_FAILED, PAYMENT_REQUESTED, PAYMENT_SUCCEEDED, PAYOUT_COMPLETED,
    PAYOUT_REQUESTED, REFUND_COMPLETED, REFUND_REQUESTED,
};

/// The inbox consumer name of this service.
pub const CONSUMER: &str = "pay-svc";
/// The queue pay-svc consumes (before the bus prefix): every message booking-svc
/// sends it, account openings included.
pub const QUEUE: &str = "pay.payment-requests";
/// The most messages handled in one transaction: those already waiting when a
/// handler frees, so batches grow only under load.
pub const MAX_BATCH: usize = 32;
/// The routing keys bound to [`QUEUE`].
pub const ROUTING_KEYS: &[&str] = &[
    PAYMENT_REQUESTED,
    REFUND_REQUESTED,
    ACCOUNT_OPENED,
    PAYOUT_REQUESTED,
];

/// A saga message this service handles, parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// booking-svc created this account: open its wallet.
    Open(AccountId),
    Charge(ChargeRequest),
    Refund(RefundRequest),
    /// A ticket transfer completed: credit the previous owner.
    Payout(PayoutRequest),
}

impl Command {
    /// Parses an envelope by its kind.
    pub fn decode(envelope: &Envelope) -> Result<Self, PayError> {
        let malformed = |reason: String| PayError::MalformedMessage {
            kind: envelope.kind.clone(),
            reason,
        };
        let uuid = |field: &str, value: &str| {
            Uuid::parse_str(value).map_err(|e| malformed(format!("{field} {value:?}: {e}")))
        };
        match envelope.kind.as_str() {
            PAYMENT_REQUESTED => {
                let m = saga::PaymentRequested::decode(envelope.payload.as_slice())
                    .map_err(|e| malformed(e.to_string()))?;
                let amount = m.amount.unwrap_or_default();
                Ok(Self::Charge(ChargeRequest {
                    booking_id: BookingId(uuid("booking_id", &m.booking_id)?),
                    account_id: AccountId(uuid("buyer_id", &m.buyer_id)?),
                    amount_minor: amount.amount_minor,
                    currency: amount.currency,
                    method: m.method,
                    card_token: m.card_token,
                }))
            }
            ACCOUNT_OPENED => {
                let m = saga::AccountOpened::decode(envelope.payload.as_slice())
                    .map_err(|e| malformed(e.to_string()))?;
                Ok(Self::Open(AccountId(uuid("account_id", &m.account_id)?)))
            }
            REFUND_REQUESTED => {
                let m = saga::RefundRequested::decode(envelope.payload.as_slice())
                    .map_err(|e| malformed(e.to_string()))?;
                Ok(Self::Refund(RefundRequest {
                    booking_id: BookingId(uuid("booking_id", &m.booking_id)?),
                    account_id: AccountId(uuid("buyer_id", &m.buyer_id)?),
                    reason: m.reason,
                }))
            }
            PAYOUT_REQUESTED => {
                let m = saga::PayoutRequested::decode(envelope.payload.as_slice())
                    .map_err(|e| malformed(e.to_string()))?;
                let amount = m.amount.unwrap_or_default();
                Ok(Self::Payout(PayoutRequest {
                    payout_id: BookingId(uuid("payout_id", &m.payout_id)?),
                    account_id: AccountId(uuid("account_id", &m.account_id)?),
                    amount: Amount::positive(amount.amount_minor).ok_or_else(|| {
                        malformed(format!("amount {} is not positive", amount.amount_minor))
                    })?,
                    currency: amount
                        .currency
                        .parse()
                        .map_err(|e| malformed(format!("currency: {e}")))?,
                    reason: m.reason,
                }))
            }
            other => Err(PayError::UnknownKind(other.to_owned())),
        }
    }
}

/// What handling one message did, for metrics once it committed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Duplicate,
    /// The account's wallet exists now (opened by this message or before).
    WalletOpened,
    Captured,
    Failed(FailureReason),
    /// A card payment was recorded PENDING; the resolver charges it.
    CardPending,
    /// The booking already had a payment; its outcome was sent again.
    PaymentReplayed,
    /// The booking's card payment is still undecided; its outcome follows.
    PaymentInFlight,
    Refunded,
    /// A card refund was recorded (REFUNDING); the resolver cancels at the PSP.
    RefundStarted,
    /// The card payment is undecided: refunded once captured.
    RefundDeferred,
    /// A card refund is already under way; its completion follows.
    RefundInFlight,
    RefundReplayed,
    NothingToRefund,
    /// A transfer's payout was credited.
    PaidOut,
    /// The payout was credited before (another message for it); its completion was
    /// sent again.
    PayoutReplayed,
}

impl Outcome {
    fn record(&self) {
        match self {
            Self::Captured => {
                metrics::counter!("payments_total", "outcome" => "captured").increment(1)
            }
            Self::Failed(reason) => metrics::counter!(
                "payments_total", "outcome" => "failed", "reason" => reason.label()
            )
            .increment(1),
            Self::Refunded => metrics::counter!("refunds_total").increment(1),
            Self::PaidOut => metrics::counter!("payouts_total").increment(1),
            Self::Duplicate
            | Self::WalletOpened
            | Self::CardPending
            | Self::PaymentReplayed
            | Self::PaymentInFlight
            | Self::RefundStarted
            | Self::RefundDeferred
            | Self::RefundInFlight
            | Self::RefundReplayed
            | Self::NothingToRefund
            | Self::PayoutReplayed => {}
        }
    }

    /// What the timeline says the message did.
    fn label(&self) -> String {
        match self {
            Self::Duplicate => "duplicate".to_owned(),
            Self::WalletOpened => "wallet opened".to_owned(),
            Self::Captured => "captured".to_owned(),
            Self::Failed(reason) => format!("failed: {}", reason.as_str()),
            Self::CardPending => "card payment recorded".to_owned(),
            Self::PaymentReplayed => "outcome sent again".to_owned(),
            Self::PaymentInFlight => "payment still undecided".to_owned(),
            Self::Refunded => "refunded".to_owned(),
            Self::RefundStarted => "card refund recorded".to_owned(),
            Self::RefundDeferred => "refund deferred until captured".to_owned(),
            Self::RefundInFlight => "refund under way".to_owned(),
            Self::RefundReplayed => "completion sent again".to_owned(),
            Self::NothingToRefund => "nothing to refund".to_owned(),
            Self::PaidOut => "paid out".to_owned(),
            Self::PayoutReplayed => "payout completion sent again".to_owned(),
        }
    }

    /// Whether the resolver has new work.
    fn wakes_resolver(&self) -> bool {
        matches!(self, Self::CardPending | Self::RefundStarted)
    }
}

/// A message handled inside a transaction not yet committed.
struct Handled {
    outcome: Outcome,
    /// The wallet the message opened.
    opened: Option<AccountId>,
}

/// Handles saga messages against the payment database.
#[derive(Clone)]
pub struct SagaConsumer {
    db: DatabaseConnection,
    relay: Relay,
    welcome_credit: i64,
    resolver: Wake,
}

impl SagaConsumer {
    /// `resolver` is woken when a card payment or refund was recorded.
    pub fn new(db: DatabaseConnection, relay: Relay, welcome_credit: i64, resolver: Wake) -> Self {
        Self {
            db,
            relay,
            welcome_credit,
            resolver,
        }
    }

    /// This consumer as a bus handler of batches: see [`SagaConsumer::handle_batch`].
    pub fn into_handler(self) -> BatchHandler {
        let this = Arc::new(self);
        Arc::new(move |envelopes| {
            let this = this.clone();
            Box::pin(async move {
                this.handle_batch(envelopes)
                    .await
                    .into_iter()
                    .map(|result| result.map(|_| ()).map_err(HandleError::from))
                    .collect()
            })
        })
    }

    /// Handles one message in one transaction; a duplicate message id has no effect.
    pub async fn handle(&self, envelope: Envelope) -> Result<Outcome, PayError> {
        let tx = self.db.begin().await?;
        let handled = self.handle_in(&tx, &envelope).await?;
        tx.commit().await?;
        Ok(self.committed(handled))
    }

    /// Handles messages that arrived together in one transaction (one commit for all
    /// of them); if any of them fails, that transaction is rolled back and each is
    /// handled alone, so a bad message neither holds back nor fails the others.
    pub async fn handle_batch(&self, envelopes: Vec<Envelope>) -> Vec<Result<Outcome, PayError>> {
        bus::together_or_alone(
            &envelopes,
            |batch| async move {
                let outcomes = self.handle_together(batch).await?;
                Ok::<_, PayError>(outcomes.into_iter().map(Ok).collect())
            },
            |envelope| self.handle(envelope.clone()),
        )
        .await
    }

    async fn handle_together(&self, envelopes: &[Envelope]) -> Result<Vec<Outcome>, PayError> {
        let tx = self.db.begin().await?;
        let mut handled = Vec::with_capacity(envelopes.len());
        for envelope in envelopes {
            handled.push(self.handle_in(&tx, envelope).await?);
        }
        tx.commit().await?;
        Ok(handled
            .into_iter()
            .map(|handled| self.committed(handled))
            .collect())
    }

    /// One message's work inside `tx`, which the caller commits.
    async fn handle_in(
        &self,
        tx: &DatabaseTransaction,
        envelope: &Envelope,
    ) -> Result<Handled, PayError> {
        let command = Command::decode(envelope)?;
        if !outbox::claim(tx, CONSUMER, envelope.message_id).await? {
            tracing::info!(message_id = %envelope.message_id, kind = %envelope.kind, "duplicate message skipped");
            return Ok(Handled {
                outcome: Outcome::Duplicate,
                opened: None,
            });
        }
        // The wallet this message opened, if any: logged only once that committed.
        let mut opened = None;
        // The booking's timeline (an account opening belongs to none).
        let mut steps = Steps::new(envelope.saga_id);
        // What a charge writes last, written with the steps in one statement.
        let mut tail = Tail::default();
        let outcome = match command {
            Command::Open(account) => {
                if store::ensure_wallet(tx, account, self.welcome_credit).await? {
                    opened = Some(account);
                }
                Outcome::WalletOpened
            }
            Command::Charge(request) => {
                steps.received(&envelope.kind, envelope.message_id, "");
                // booking-svc vouches for the buyer, so a payment may open the wallet
                // if its `account.opened` has not been handled yet.
                if store::ensure_wallet(tx, request.account_id, self.welcome_credit).await? {
                    opened = Some(request.account_id);
                }
                self.charge(tx, envelope.saga_id, request, &mut steps, &mut tail)
                    .await?
            }
            Command::Refund(request) => {
                steps.received(&envelope.kind, envelope.message_id, "");
                refund(tx, envelope.saga_id, request, &mut steps).await?
            }
            Command::Payout(request) => {
                steps.received(&envelope.kind, envelope.message_id, "");
                if store::ensure_wallet(tx, request.account_id, self.welcome_credit).await? {
                    opened = Some(request.account_id);
                }
                payout(tx, envelope.saga_id, request, &mut steps).await?
            }
        };
        steps.outcome(&outcome.label());
        tail.write(tx, steps).await?;
        Ok(Handled { outcome, opened })
    }

    /// What follows a handled message once its transaction committed.
    fn committed(&self, handled: Handled) -> Outcome {
        let Handled { outcome, opened } = handled;
        if let Some(account) = opened {
            tracing::info!(account_id = %account, welcome_credit = self.welcome_credit, "wallet created");
        }
        self.relay.notify();
        if outcome.wakes_resolver() {
            self.resolver.wake();
        }
        outcome.record();
        outcome
    }

    /// Charges the buyer's wallet, which exists (the caller ensured it).
    async fn charge(
        &self,
        tx: &DatabaseTransaction,
        saga_id: Uuid,
        request: ChargeRequest,
        steps: &mut Steps,
        tail: &mut Tail,
    ) -> Result<Outcome, PayError> {
        let payment_id = PaymentId::new();
        if !store::insert_pending_payment(tx, payment_id, &request).await? {
            let existing = store::payment_for_update(tx, request.booking_id)
                .await?
                .ok_or_else(|| {
                    PayError::Corrupt(format!(
                        "payment of booking {} vanished",
                        request.booking_id
                    ))
                })?;
            if existing.status == PaymentStatus::Pending {
                tracing::info!(
                    booking_id = %request.booking_id,
                    payment_id = %existing.payment_id,
                    "payment still undecided; its outcome follows when it resolves"
                );
                return Ok(Outcome::PaymentInFlight);
            }
            tracing::info!(
                booking_id = %request.booking_id,
                payment_id = %existing.payment_id,
                status = %existing.status,
                "payment already exists; resending its outcome"
            );
            enqueue_payment_outcome(tx, saga_id, &existing, steps).await?;
            return Ok(Outcome::PaymentReplayed);
        }
        let settled = match request.validate() {
            Err(reason) => Err(reason),
            Ok(charge) if charge.method == PaymentMethod::Card => {
                // Charged by the resolver once this commits, never here: the PSP call
                // must not be inside the transaction that records the payment.
                store::schedule_now(tx, payment_id).await?;
                steps.status(None, PaymentStatus::Pending, "charging the card");
                tracing::info!(
                    booking_id = %request.booking_id,
                    payment_id = %payment_id,
                    account_id = %request.account_id,
                    amount_minor = request.amount_minor,
                    "card payment recorded; charging through the payment provider"
                );
                return Ok(Outcome::CardPending);
            }
            Ok(charge) => {
                match store::debit(tx, request.account_id, charge.amount, &charge.currency).await? {
                    None => {
                        steps.note(
                            steps::WALLET,
                            "insufficient funds",
                            &format!("{} {}", charge.amount.minor(), charge.currency.as_str()),
                        );
                        Err(FailureReason::InsufficientFunds)
                    }
                    Some(balance_after) => {
                        steps.note(
                            steps::WALLET,
                            "debited",
                            &format!(
                                "{} {}, balance after {balance_after}",
                                charge.amount.minor(),
                                charge.currency.as_str()
                            ),
                        );
                        let debit = Money {
                            amount_minor: -charge.amount.minor(),
                            currency: charge.currency.clone(),
                        };
                        let (_, entry) = store::entry_statement(
                            request.account_id,
                            EntryKind::Payment,
                            &debit,
                            balance_after,
                            Some(request.booking_id),
                            Some(payment_id),
                        );
                        tail.parts.push(entry.into());
                        Ok(charge)
                    }
                }
            }
        };
        let payment = Payment {
            payment_id,
            booking_id: request.booking_id,
            account_id: request.account_id,
            status: if settled.is_ok() {
                PaymentStatus::Captured
            } else {
                PaymentStatus::Failed
            },
            amount_minor: request.amount_minor,
            currency: request.currency.clone(),
            failure_reason: settled.as_ref().err().cloned(),
            method: request.method.clone(),
            refund_wanted: false,
        };
        tail.settle(
            payment_id,
            store::settle_statement(payment_id, payment.status, payment.failure_reason.as_ref()),
        );
        steps.status(
            None,
            payment.status,
            payment.failure_reason.as_ref().map_or("", |r| r.as_str()),
        );
        let outcome = payment_outcome(saga_id, &payment)?;
        let kind = outcome.kind;
        let (message, insert) = outbox::enqueue_statement(outcome);
        steps.sent(kind, message);
        tail.parts.push(insert.into());
        match payment.failure_reason {
            None => {
                tracing::info!(
                    booking_id = %request.booking_id,
                    payment_id = %payment_id,
                    account_id = %request.account_id,
                    amount_minor = request.amount_minor,
                    "payment captured"
                );
                Ok(Outcome::Captured)
            }
            Some(reason) => {
                tracing::info!(
                    booking_id = %request.booking_id,
                    payment_id = %payment_id,
                    account_id = %request.account_id,
                    amount_minor = request.amount_minor,
                    method = %request.method,
                    reason = %reason,
                    "payment failed"
                );
                Ok(Outcome::Failed(reason))
            }
        }
    }
}

/// Credits a transfer's payout to the previous owner's wallet (which exists: the caller
/// ensured it) with a TRANSFER_PAYOUT ledger entry, and answers `payout.completed`. A
/// payout already credited (the same payout asked again, e.g. a redriven message under
/// a new id) is not credited twice: its completion is sent again.
async fn payout(
    tx: &DatabaseTransaction,
    saga_id: Uuid,
    request: PayoutRequest,
    steps: &mut Steps,
) -> Result<Outcome, PayError> {
    let amount = Money {
        amount_minor: request.amount.minor(),
        currency: request.currency.clone(),
    };
    let outcome = if store::payout_credited(tx, request.payout_id).await? {
        tracing::info!(payout_id = %request.payout_id, "payout already credited; resending completion");
        Outcome::PayoutReplayed
    } else {
        let balance_after =
            store::credit(tx, request.account_id, request.amount, &request.currency).await?;
        store::insert_entry(
            tx,
            request.account_id,
            EntryKind::TransferPayout,
            &amount,
            balance_after,
            Some(request.payout_id),
            None,
        )
        .await?;
        steps.note(
            steps::WALLET,
            "credited",
            &format!(
                "{} {}, balance after {balance_after} ({})",
                amount.amount_minor,
                amount.currency.as_str(),
                request.reason
            ),
        );
        tracing::info!(
            payout_id = %request.payout_id,
            account_id = %request.account_id,
            amount_minor = amount.amount_minor,
            "transfer payout credited"
        );
        Outcome::PaidOut
    };
    let payload = saga::PayoutCompleted {
        payout_id: request.payout_id.to_string(),
        account_id: request.account_id.to_string(),
        amount: Some(money(amount.amount_minor, amount.currency.as_str())),
    }
    .encode_to_vec();
    let id = enqueue(tx, PAYOUT_COMPLETED, saga_id, payload).await?;
    steps.sent(PAYOUT_COMPLETED, id);
    Ok(outcome)
}

async fn refund(
    tx: &DatabaseTransaction,
    saga_id: Uuid,
    request: RefundRequest,
    steps: &mut Steps,
) -> Result<Outcome, PayError> {
    let Some(payment) = store::payment_for_update(tx, request.booking_id).await? else {
        tracing::warn!(booking_id = %request.booking_id, "refund requested without a payment; completing with nothing refunded");
        let none = Money {
            amount_minor: 0,
            currency: Currency::krw(),
        };
        steps.note(
            steps::REFUND,
            "nothing to refund",
            "no payment for this booking",
        );
        enqueue_refund_completed(tx, saga_id, request.booking_id, None, &none, steps).await?;
        return Ok(Outcome::NothingToRefund);
    };
    if payment.account_id != request.account_id {
        tracing::warn!(
            booking_id = %request.booking_id,
            payment_account_id = %payment.account_id,
            requested_account_id = %request.account_id,
            "refund buyer differs from the payer; refunding the payer"
        );
    }
    let currency: Result<Currency, PayError> = payment
        .currency
        .parse()
        .map_err(|e| PayError::Corrupt(format!("payment {}: {e}", payment.payment_id)));
    if payment.method == PaymentMethod::Card.as_str()
        && let Some(outcome) = card_refund(tx, &payment, steps).await?
    {
        return Ok(outcome);
    }
    match payment.status {
        PaymentStatus::Captured => {
            let currency = currency?;
            let amount = Amount::positive(payment.amount_minor).ok_or_else(|| {
                PayError::Corrupt(format!(
                    "captured payment {} has no amount",
                    payment.payment_id
                ))
            })?;
            let balance_after = store::credit(tx, payment.account_id, amount, &currency).await?;
            store::mark_refunded(tx, payment.payment_id).await?;
            steps.note(
                steps::WALLET,
                "credited",
                &format!(
                    "{} {}, balance after {balance_after}",
                    amount.minor(),
                    currency.as_str()
                ),
            );
            steps.status(
                Some(PaymentStatus::Captured),
                PaymentStatus::Refunded,
                &request.reason,
            );
            let refunded = Money {
                amount_minor: amount.minor(),
                currency,
            };
            store::insert_entry(
                tx,
                payment.account_id,
                EntryKind::Refund,
                &refunded,
                balance_after,
                Some(payment.booking_id),
                Some(payment.payment_id),
            )
            .await?;
            enqueue_refund_completed(
                tx,
                saga_id,
                payment.booking_id,
                Some(payment.payment_id),
                &refunded,
                steps,
            )
            .await?;
            tracing::info!(
                booking_id = %payment.booking_id,
                payment_id = %payment.payment_id,
                amount_minor = amount.minor(),
                reason = %request.reason,
                "payment refunded"
            );
            Ok(Outcome::Refunded)
        }
        PaymentStatus::Refunded => {
            let refunded = Money {
                amount_minor: payment.amount_minor,
                currency: currency?,
            };
            tracing::info!(booking_id = %payment.booking_id, payment_id = %payment.payment_id, "payment already refunded; resending completion");
            enqueue_refund_completed(
                tx,
                saga_id,
                payment.booking_id,
                Some(payment.payment_id),
                &refunded,
                steps,
            )
            .await?;
            Ok(Outcome::RefundReplayed)
        }
        PaymentStatus::Failed | PaymentStatus::Voiding => {
            tracing::warn!(booking_id = %payment.booking_id, payment_id = %payment.payment_id, "refund requested for a failed payment; completing with nothing refunded");
            let none = Money {
                amount_minor: 0,
                currency: currency.unwrap_or_else(|_| Currency::krw()),
            };
            steps.note(
                steps::REFUND,
                "nothing to refund",
                &format!("payment is {}", payment.status),
            );
            enqueue_refund_completed(
                tx,
                saga_id,
                payment.booking_id,
                Some(payment.payment_id),
                &none,
                steps,
            )
            .await?;
            Ok(Outcome::NothingToRefund)
        }
        PaymentStatus::Pending | PaymentStatus::Refunding => Err(PayError::Corrupt(format!(
            "wallet payment {} is {}",
            payment.payment_id, payment.status
        ))),
    }
}

/// A refund of a card payment, where it differs from a wallet's: CAPTURED → REFUNDING
/// with the cancel's idempotency key stored before the resolver's first call; PENDING
/// → remembered, refunded once captured (or completed with nothing if it fails);
/// REFUNDING → already under way. `None`: as a wallet payment (REFUNDED replays the
/// completion, FAILED and VOIDING complete with nothing refunded).
async fn card_refund(
    tx: &DatabaseTransaction,
    payment: &Payment,
    steps: &mut Steps,
) -> Result<Option<Outcome>, PayError> {
    let outcome = match payment.status {
        PaymentStatus::Captured => {
            let change = payments::ActiveModel {
                status: sea_orm::ActiveValue::Set(PaymentStatus::Refunding.as_str().to_owned()),
                psp_cancel_key: sea_orm::ActiveValue::Set(Some(Uuid::now_v7().to_string())),
                psp_tries: sea_orm::ActiveValue::Set(0),
                next_attempt_at: sea_orm::ActiveValue::Set(Some(chrono::Utc::now())),
                ..Default::default()
            };
            store::update_payment(tx, payment.payment_id, PaymentStatus::Captured, change).await?;
            steps.status(
                Some(PaymentStatus::Captured),
                PaymentStatus::Refunding,
                "refund requested",
            );
            tracing::info!(booking_id = %payment.booking_id, payment_id = %payment.payment_id, "card refund recorded; cancelling at the payment provider");
            Outcome::RefundStarted
        }
        PaymentStatus::Pending => {
            if !payment.refund_wanted {
                let change = payments::ActiveModel {
                    refund_wanted: sea_orm::ActiveValue::Set(true),
                    ..Default::default()
                };
                store::update_payment(tx, payment.payment_id, PaymentStatus::Pending, change)
                    .await?;
            }
            steps.note(
                steps::REFUND,
                "deferred",
                "refunded once the charge is captured",
            );
            tracing::info!(booking_id = %payment.booking_id, payment_id = %payment.payment_id, "refund requested while the card payment is undecided; refunding once captured");
            Outcome::RefundDeferred
        }
        PaymentStatus::Refunding => {
            tracing::info!(booking_id = %payment.booking_id, payment_id = %payment.payment_id, "card refund already under way");
            Outcome::RefundInFlight
        }
        PaymentStatus::Refunded | PaymentStatus::Failed | PaymentStatus::Voiding => {
            return Ok(None);
        }
    };
    Ok(Some(outcome))
}

fn money(amount_minor: i64, currency: &str) -> marquee_proto::Money {
    marquee_proto::Money {
        amount_minor,
        currency: currency.to_owned(),
    }
}

/// Enqueues the outcome of a settled payment ([`payment_outcome`]), recorded in `steps`.
pub(crate) async fn enqueue_payment_outcome(
    tx: &DatabaseTransaction,
    saga_id: Uuid,
    payment: &Payment,
    steps: &mut Steps,
) -> Result<(), PayError> {
    let message = payment_outcome(saga_id, payment)?;
    let kind = message.kind;
    let id = outbox::enqueue(tx, message).await?;
    steps.sent(kind, id);
    Ok(())
}

/// The outcome message of a settled payment: PaymentSucceeded when it was captured
/// (even if since refunded), PaymentFailed with its reason otherwise.
fn payment_outcome(saga_id: Uuid, payment: &Payment) -> Result<NewMessage, PayError> {
    let (kind, payload) = match (payment.status, payment.failure_reason.as_ref()) {
        (PaymentStatus::Captured | PaymentStatus::Refunding | PaymentStatus::Refunded, _) => (
            PAYMENT_SUCCEEDED,
            saga::PaymentSucceeded {
                booking_id: payment.booking_id.to_string(),
                payment_id: payment.payment_id.to_string(),
                amount: Some(money(payment.amount_minor, &payment.currency)),
            }
            .encode_to_vec(),
        ),
        (PaymentStatus::Failed | PaymentStatus::Voiding, Some(reason)) => (
            PAYMENT_FAILED,
            saga::PaymentFailed {
                booking_id: payment.booking_id.to_string(),
                reason: reason.as_str().to_owned(),
            }
            .encode_to_vec(),
        ),
        (status, _) => {
            return Err(PayError::Corrupt(format!(
                "payment {} has no outcome to send (status {status})",
                payment.payment_id
            )));
        }
    };
    Ok(NewMessage {
        kind,
        saga_id,
        version: 1,
        payload,
    })
}

/// What a charge writes last, deferred to the end of its handler's transaction and
/// written there with the steps in one statement ([`marquee_infra::db::in_one_statement`]):
/// its ledger entry, the payment's settlement and its outcome message.
#[derive(Default)]
pub(crate) struct Tail {
    parts: Vec<SubQueryStatement>,
    /// The settlement's part and its payment: it must change that payment's row.
    settles: Option<(usize, PaymentId)>,
}

impl Tail {
    fn settle(&mut self, payment: PaymentId, mut update: UpdateStatement) {
        update.returning_col(payments::Column::PaymentId);
        self.settles = Some((self.parts.len(), payment));
        self.parts.push(update.into());
    }

    /// Writes the deferred parts and `steps` inside `tx`: one statement when there are
    /// parts, else just the steps.
    async fn write(mut self, tx: &DatabaseTransaction, steps: Steps) -> Result<(), PayError> {
        if self.parts.is_empty() {
            steps.write(tx).await?;
            return Ok(());
        }
        self.parts.extend(steps.into_statement().map(Into::into));
        let mut answer = Query::select();
        match self.settles {
            Some((part, _)) => answer
                .expr_as(Expr::col(Asterisk).count(), Alias::new("settled"))
                .from(Alias::new(format!("w{part}"))),
            None => answer.expr_as(Expr::val(1i64), Alias::new("settled")),
        };
        let row = tx
            .query_one_raw(marquee_infra::db::in_one_statement(self.parts, answer))
            .await?;
        let settled: i64 = match row {
            Some(row) => row.try_get("", "settled")?,
            None => 0,
        };
        match self.settles {
            Some((_, payment)) if settled != 1 => Err(store::not_pending(payment)),
            _ => Ok(()),
        }
    }
}

/// Enqueues a RefundCompleted, recorded in `steps`.
pub(crate) async fn enqueue_refund_completed(
    tx: &DatabaseTransaction,
    saga_id: Uuid,
    booking: BookingId,
    payment: Option<PaymentId>,
    amount: &Money,
    steps: &mut Steps,
) -> Result<(), PayError> {
    let payload = saga::RefundCompleted {
        booking_id: booking.to_string(),
        payment_id: payment.map(|p| p.to_string()).unwrap_or_default(),
        amount: Some(money(amount.amount_minor, amount.currency.as_str())),
    }
    .encode_to_vec();
    let id = enqueue(tx, REFUND_COMPLETED, saga_id, payload).await?;
    steps.sent(REFUND_COMPLETED, id);
    Ok(())
}

/// Adds a message to the outbox; returns its message id.
async fn enqueue(
    tx: &DatabaseTransaction,
    kind: &'static str,
    saga_id: Uuid,
    payload: Vec<u8>,
) -> Result<Uuid, PayError> {
    let id = outbox::enqueue(
        tx,
        NewMessage {
            kind,
            saga_id,
            version: 1,
            payload,
        },
    )
    .await?;
    Ok(id)
}

//! The resolver: the one place pay-svc calls the payment provider (PSP). A card
//! payment's charge and a card refund are recorded first (PENDING with its confirm
//! key, REFUNDING or VOIDING with its cancel key, each with `next_attempt_at`), then
//! the resolver drives them: it takes a payment whose work is due with
//! `SELECT … FOR UPDATE SKIP LOCKED` (so two replicas never work one payment at once),
//! calls the PSP while holding that lock, and commits what the answer decided with
//! the reply in the outbox. An unknown outcome (timeout, dropped connection, 5xx,
//! still processing) leaves the payment as it was with a later `next_attempt_at`
//! (backoff) and is resolved by inquiry, never by a new charge: a confirm is only
//! ever repeated with the payment's one stored idempotency key. A crash or shutdown
//! mid-call rolls the step back; the next step asks again.
//!
//! Charge (PENDING): no confirm yet → confirm. Else inquire: DONE → CAPTURED (or
//! VOIDING if the PSP took another amount), ABORTED → FAILED, IN_PROGRESS → later,
//! NOT_FOUND_PAYMENT → confirm again with the same key while fewer than
//! `max_confirms` were sent (or the last one may still be in flight), else FAILED
//! (`PSP_UNAVAILABLE`). Refund (REFUNDING) and void (VOIDING): cancel with the stored
//! key until the PSP answers CANCELED → REFUNDED (RefundCompleted) or FAILED.

use std::sync::Arc;
use std::time::Duration;

use backon::{BackoffBuilder as _, ExponentialBuilder};
use chrono::Utc;
use marquee_infra::outbox::Relay;
use sea_orm::ActiveValue::Set;
use sea_orm::{DatabaseConnection, DatabaseTransaction, TransactionTrait};
use tokio::sync::Notify;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::domain::{
    Amount, BookingId, CardEntryKind, Currency, DeclineCode, FailureReason, Money, Payment,
    PaymentId, PaymentStatus,
};
use crate::entity::payments;
use crate::error::PayError;
use crate::psp::{Answer, CallError, PspClient, PspPayment, PspStatus};
use crate::saga::{enqueue_payment_outcome, enqueue_refund_completed};
use crate::steps::{self, PaymentSteps as _, Steps};
use crate::store;

/// Payments one replica works on at once (each holds a database connection during
/// its PSP call).
pub const WORKERS: usize = 4;
/// The first delay after an unresolved step, doubling up to [`MAX_BACKOFF`].
const MIN_BACKOFF: Duration = Duration::from_millis(250);
const MAX_BACKOFF: Duration = Duration::from_secs(30);
/// How long a payment whose stored data the resolver cannot work with waits before
/// it is tried again (it is logged as an error each time).
const CORRUPT_RETRY: Duration = Duration::from_secs(300);

/// Wakes the resolver's idle workers: a card payment or refund was just recorded.
#[derive(Clone, Debug, Default)]
pub struct Wake(Arc<Notify>);

impl Wake {
    pub fn wake(&self) {
        self.0.notify_waiters();
    }
}

/// Drives card payments and refunds through the PSP.
#[derive(Clone)]
pub struct Resolver {
    db: DatabaseConnection,
    psp: PspClient,
    relay: Relay,
    max_confirms: u32,
    wake: Wake,
}

/// What one step did.
enum Step {
    /// No payment had work due.
    Idle,
    Worked,
}

/// What the PSP said about a charge, as this module decides on it.
enum ChargeNews {
    Psp(PspPayment),
    Declined(FailureReason),
    /// No decision: try again later. `unanswered`: a confirm may still be in flight.
    Unresolved {
        error: String,
        unanswered: bool,
    },
    /// The PSP never recorded this order.
    NotFound,
}

impl Resolver {
    pub fn new(
        db: DatabaseConnection,
        psp: PspClient,
        relay: Relay,
        max_confirms: u32,
        wake: Wake,
    ) -> Self {
        Self {
            db,
            psp,
            relay,
            max_confirms,
            wake,
        }
    }

    /// Starts [`WORKERS`] workers; each looks for due work when woken and every
    /// `interval`, until `stop` is cancelled (a step in progress is abandoned and
    /// rolled back: it is redone from the stored state).
    pub fn spawn(self, interval: Duration, stop: CancellationToken) -> Vec<JoinHandle<()>> {
        (0..WORKERS)
            .map(|worker| {
                let this = self.clone();
                let stop = stop.clone();
                tokio::spawn(async move { this.run(worker, interval, stop).await })
            })
            .collect()
    }

    async fn run(self, worker: usize, interval: Duration, stop: CancellationToken) {
        loop {
            let notified = self.wake.0.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            loop {
                let step = tokio::select! {
                    biased;
                    () = stop.cancelled() => return,
                    step = self.step() => step,
                };
                match step {
                    Ok(Step::Worked) => {}
                    Ok(Step::Idle) => break,
                    Err(error) => {
                        tracing::warn!(%error, "payment resolver step failed");
                        break;
                    }
                }
            }
            if worker == 0 {
                self.record_stats().await;
            }
            tokio::select! {
                () = stop.cancelled() => return,
                () = &mut notified => {}
                () = tokio::time::sleep(interval) => {}
            }
        }
    }

    /// Works on the payment whose PSP work is due soonest, if any.
    async fn step(&self) -> Result<Step, PayError> {
        let tx = self.db.begin().await?;
        let Some(row) = store::next_due_payment(&tx).await? else {
            tx.commit().await?;
            return Ok(Step::Idle);
        };
        let payment_id = PaymentId(row.payment_id);
        // Each PSP call and what it decided, committed with what it decided (a step
        // rolled back leaves no trace: it is redone).
        let mut steps = Steps::new(row.booking_id);
        match self.work(&tx, &row, &mut steps).await {
            Ok(()) => {
                steps.write(&tx).await?;
                tx.commit().await?;
                self.relay.notify();
                Ok(Step::Worked)
            }
            Err(error @ PayError::Corrupt(_)) => {
                tx.rollback().await?;
                tracing::error!(payment_id = %payment_id, %error, "payment cannot be resolved; retrying later");
                let retry = payments::ActiveModel {
                    next_attempt_at: Set(Some(Utc::now() + CORRUPT_RETRY)),
                    last_error: Set(Some(error.to_string())),
                    ..Default::default()
                };
                let status = row.status.parse().unwrap_or(PaymentStatus::Pending);
                store::update_payment(&self.db, payment_id, status, retry).await?;
                Ok(Step::Worked)
            }
            Err(error) => Err(error),
        }
    }

    async fn work(
        &self,
        tx: &DatabaseTransaction,
        row: &payments::Model,
        steps: &mut Steps,
    ) -> Result<(), PayError> {
        let status: PaymentStatus = row
            .status
            .parse()
            .map_err(|e| PayError::Corrupt(format!("payment {}: {e}", row.payment_id)))?;
        match status {
            PaymentStatus::Pending => self.charge_step(tx, row, steps).await,
            PaymentStatus::Refunding | PaymentStatus::Voiding => {
                self.cancel_step(tx, row, status, steps).await
            }
            PaymentStatus::Captured | PaymentStatus::Failed | PaymentStatus::Refunded => {
                let done = payments::ActiveModel {
                    next_attempt_at: Set(None),
                    ..Default::default()
                };
                store::update_payment(tx, PaymentId(row.payment_id), status, done).await
            }
        }
    }

    async fn charge_step(
        &self,
        tx: &DatabaseTransaction,
        row: &payments::Model,
        steps: &mut Steps,
    ) -> Result<(), PayError> {
        let order_id = required(row, "psp_order_id", row.psp_order_id.as_deref())?;
        let mut confirms = row.psp_confirms;
        // Whether this step sent a confirm: only then is `unanswered` news.
        let mut confirmed = confirms == 0;
        let mut news = if confirms == 0 {
            confirms += 1;
            self.confirm(row, order_id, confirms, steps).await?
        } else {
            self.inquire(row, order_id, steps).await
        };
        if matches!(news, ChargeNews::NotFound) {
            let in_flight = row.psp_confirm_unanswered;
            if confirms < i32::try_from(self.max_confirms).unwrap_or(i32::MAX) || in_flight {
                tracing::info!(
                    booking_id = %row.booking_id,
                    payment_id = %row.payment_id,
                    confirms,
                    "psp never recorded the charge; confirming again with the same key"
                );
                confirms += 1;
                confirmed = true;
                news = self.confirm(row, order_id, confirms, steps).await?;
            }
        }
        match news {
            ChargeNews::Psp(payment) => self.settle(tx, row, confirms, payment, steps).await,
            ChargeNews::Declined(reason) => self.fail(tx, row, confirms, reason, steps).await,
            ChargeNews::NotFound => {
                tracing::warn!(
                    booking_id = %row.booking_id,
                    payment_id = %row.payment_id,
                    confirms,
                    "payment provider never recorded the charge after every confirm; failing it"
                );
                self.fail(tx, row, confirms, FailureReason::ProviderUnavailable, steps)
                    .await
            }
            ChargeNews::Unresolved { error, unanswered } => {
                let unanswered = confirmed.then_some(unanswered);
                self.unresolved(tx, row, confirms, unanswered, error).await
            }
        }
    }

    /// One confirm under the payment's stored key, the `attempt`-th.
    async fn confirm(
        &self,
        row: &payments::Model,
        order_id: &str,
        attempt: i32,
        steps: &mut Steps,
    ) -> Result<ChargeNews, PayError> {
        let key = required(row, "psp_confirm_key", row.psp_confirm_key.as_deref())?;
        let token = required(row, "card_token", row.card_token.as_deref())?;
        let answer = self
            .psp
            .confirm(order_id, row.amount_minor, &row.currency, token, key)
            .await;
        steps.psp(steps::CONFIRM, attempt, &answer);
        Ok(match answer {
            Ok(Answer::Refused {
                status: 409, code, ..
            }) if code == "ALREADY_PROCESSED_PAYMENT" => {
                // Paid or cancelled already (under this key or another): ask.
                match self.inquire(row, order_id, steps).await {
                    ChargeNews::NotFound => ChargeNews::Unresolved {
                        error: "psp: already processed, yet not found".to_owned(),
                        unanswered: false,
                    },
                    news => news,
                }
            }
            other => charge_news(other, true),
        })
    }

    /// One inquiry; its attempt is the resolver's step count for this payment.
    async fn inquire(
        &self,
        row: &payments::Model,
        order_id: &str,
        steps: &mut Steps,
    ) -> ChargeNews {
        let answer = self.psp.inquire(order_id).await;
        steps.psp(steps::INQUIRY, row.psp_tries.saturating_add(1), &answer);
        charge_news(answer, false)
    }

    /// Acts on the PSP's payment object for this charge.
    async fn settle(
        &self,
        tx: &DatabaseTransaction,
        row: &payments::Model,
        confirms: i32,
        psp: PspPayment,
        steps: &mut Steps,
    ) -> Result<(), PayError> {
        if Some(psp.order_id.as_str()) != row.psp_order_id.as_deref() {
            tracing::error!(
                payment_id = %row.payment_id,
                psp_order_id = %psp.order_id,
                "payment provider answered for another order"
            );
            return self
                .unresolved(
                    tx,
                    row,
                    confirms,
                    Some(false),
                    "psp: answered for another order".to_owned(),
                )
                .await;
        }
        match psp.status {
            PspStatus::Done
                if psp.total_amount == row.amount_minor && psp.currency == row.currency =>
            {
                self.capture(tx, row, confirms, psp, steps).await
            }
            PspStatus::Done => self.void(tx, row, confirms, psp, steps).await,
            PspStatus::Aborted => {
                let code = psp.failure.as_ref().map_or("", |f| f.code.as_str());
                let reason = FailureReason::Declined(DeclineCode::from_psp(code));
                self.fail(tx, row, confirms, reason, steps).await
            }
            PspStatus::Canceled => {
                // Captured and cancelled, not by this service: record both, fail it.
                tracing::error!(
                    booking_id = %row.booking_id,
                    payment_id = %row.payment_id,
                    psp_payment_key = %psp.payment_key,
                    "payment provider reports the charge cancelled by someone else"
                );
                let amount = psp_amount(row, &psp)?;
                let (payment_id, booking) = ids(row);
                for kind in [CardEntryKind::Capture, CardEntryKind::Refund] {
                    store::insert_card_entry(
                        tx,
                        payment_id,
                        booking,
                        kind,
                        amount,
                        &psp.currency,
                        &psp.payment_key,
                    )
                    .await?;
                }
                self.fail(tx, row, confirms, FailureReason::ProviderCanceled, steps)
                    .await
            }
            PspStatus::InProgress | PspStatus::Unknown => {
                self.unresolved(
                    tx,
                    row,
                    confirms,
                    Some(false),
                    format!("psp: payment {:?}", psp.status),
                )
                .await
            }
        }
    }

    async fn capture(
        &self,
        tx: &DatabaseTransaction,
        row: &payments::Model,
        confirms: i32,
        psp: PspPayment,
        steps: &mut Steps,
    ) -> Result<(), PayError> {
        let (payment_id, booking) = ids(row);
        let amount = psp_amount(row, &psp)?;
        store::insert_card_entry(
            tx,
            payment_id,
            booking,
            CardEntryKind::Capture,
            amount,
            &psp.currency,
            &psp.payment_key,
        )
        .await?;
        let mut change = payments::ActiveModel {
            status: Set(PaymentStatus::Captured.as_str().to_owned()),
            psp_payment_key: Set(Some(psp.payment_key.clone())),
            approved_at: Set(Some(psp.approved_at.unwrap_or_else(Utc::now))),
            psp_confirms: Set(confirms),
            psp_confirm_unanswered: Set(false),
            next_attempt_at: Set(None),
            last_error: Set(None),
            ..Default::default()
        };
        if row.refund_wanted {
            // The booking gave up while the charge was undecided: give it back now.
            change.status = Set(PaymentStatus::Refunding.as_str().to_owned());
            change.psp_cancel_key = Set(Some(Uuid::now_v7().to_string()));
            change.psp_tries = Set(0);
            change.next_attempt_at = Set(Some(Utc::now()));
        }
        store::update_payment(tx, payment_id, PaymentStatus::Pending, change).await?;
        steps.status(
            Some(PaymentStatus::Pending),
            PaymentStatus::Captured,
            "captured by the payment provider",
        );
        if row.refund_wanted {
            steps.status(
                Some(PaymentStatus::Captured),
                PaymentStatus::Refunding,
                "refund requested while undecided",
            );
        }
        let mut payment = payment_of(row)?;
        payment.status = PaymentStatus::Captured;
        enqueue_payment_outcome(tx, booking.0, &payment, steps).await?;
        metrics::counter!("payments_total", "outcome" => "captured").increment(1);
        tracing::info!(
            booking_id = %booking,
            payment_id = %payment_id,
            psp_payment_key = %psp.payment_key,
            amount_minor = row.amount_minor,
            confirms,
            refund_wanted = row.refund_wanted,
            "card payment captured"
        );
        if row.refund_wanted {
            self.wake.wake();
        }
        Ok(())
    }

    /// The PSP took another amount than asked: the payment fails and the charge is
    /// cancelled (VOIDING, then FAILED).
    async fn void(
        &self,
        tx: &DatabaseTransaction,
        row: &payments::Model,
        confirms: i32,
        psp: PspPayment,
        steps: &mut Steps,
    ) -> Result<(), PayError> {
        let (payment_id, booking) = ids(row);
        let taken = psp_amount(row, &psp)?;
        tracing::error!(
            booking_id = %booking,
            payment_id = %payment_id,
            psp_payment_key = %psp.payment_key,
            requested_minor = row.amount_minor,
            psp_amount_minor = psp.total_amount,
            psp_currency = %psp.currency,
            "payment provider answered a different amount; cancelling the charge"
        );
        store::insert_card_entry(
            tx,
            payment_id,
            booking,
            CardEntryKind::Capture,
            taken,
            &psp.currency,
            &psp.payment_key,
        )
        .await?;
        let reason = FailureReason::ProviderAmountMismatch;
        let change = payments::ActiveModel {
            status: Set(PaymentStatus::Voiding.as_str().to_owned()),
            failure_reason: Set(Some(reason.as_str().to_owned())),
            psp_payment_key: Set(Some(psp.payment_key.clone())),
            approved_at: Set(psp.approved_at),
            psp_cancel_key: Set(Some(Uuid::now_v7().to_string())),
            psp_confirms: Set(confirms),
            psp_confirm_unanswered: Set(false),
            psp_tries: Set(0),
            next_attempt_at: Set(Some(Utc::now())),
            last_error: Set(Some("psp answered a different amount".to_owned())),
            ..Default::default()
        };
        store::update_payment(tx, payment_id, PaymentStatus::Pending, change).await?;
        steps.status(
            Some(PaymentStatus::Pending),
            PaymentStatus::Voiding,
            reason.as_str(),
        );
        self.reply_failed(tx, row, &reason, steps).await?;
        self.wake.wake();
        Ok(())
    }

    async fn fail(
        &self,
        tx: &DatabaseTransaction,
        row: &payments::Model,
        confirms: i32,
        reason: FailureReason,
        steps: &mut Steps,
    ) -> Result<(), PayError> {
        let change = payments::ActiveModel {
            status: Set(PaymentStatus::Failed.as_str().to_owned()),
            failure_reason: Set(Some(reason.as_str().to_owned())),
            psp_confirms: Set(confirms),
            next_attempt_at: Set(None),
            ..Default::default()
        };
        store::update_payment(
            tx,
            PaymentId(row.payment_id),
            PaymentStatus::Pending,
            change,
        )
        .await?;
        tracing::info!(
            booking_id = %row.booking_id,
            payment_id = %row.payment_id,
            reason = %reason,
            confirms,
            "card payment failed"
        );
        steps.status(
            Some(PaymentStatus::Pending),
            PaymentStatus::Failed,
            reason.as_str(),
        );
        self.reply_failed(tx, row, &reason, steps).await
    }

    /// PaymentFailed, and RefundCompleted with nothing refunded if a refund was asked
    /// for meanwhile.
    async fn reply_failed(
        &self,
        tx: &DatabaseTransaction,
        row: &payments::Model,
        reason: &FailureReason,
        steps: &mut Steps,
    ) -> Result<(), PayError> {
        let mut payment = payment_of(row)?;
        payment.status = PaymentStatus::Failed;
        payment.failure_reason = Some(reason.clone());
        enqueue_payment_outcome(tx, row.booking_id, &payment, steps).await?;
        metrics::counter!("payments_total", "outcome" => "failed", "reason" => reason.label())
            .increment(1);
        if row.refund_wanted {
            let nothing = Money {
                amount_minor: 0,
                currency: currency(row)?,
            };
            enqueue_refund_completed(
                tx,
                row.booking_id,
                BookingId(row.booking_id),
                Some(PaymentId(row.payment_id)),
                &nothing,
                steps,
            )
            .await?;
        }
        Ok(())
    }

    /// Leaves the payment as it is, to be worked on again after a backoff.
    async fn unresolved(
        &self,
        tx: &DatabaseTransaction,
        row: &payments::Model,
        confirms: i32,
        unanswered: Option<bool>,
        error: String,
    ) -> Result<(), PayError> {
        let tries = row.psp_tries.saturating_add(1);
        let delay = backoff(tries);
        tracing::warn!(
            booking_id = %row.booking_id,
            payment_id = %row.payment_id,
            status = %row.status,
            confirms,
            tries,
            retry_in_ms = delay.as_millis() as u64,
            %error,
            "payment provider outcome not known yet"
        );
        let mut change = payments::ActiveModel {
            psp_confirms: Set(confirms),
            psp_tries: Set(tries),
            next_attempt_at: Set(Some(Utc::now() + delay)),
            last_error: Set(Some(error)),
            ..Default::default()
        };
        if let Some(unanswered) = unanswered {
            change.psp_confirm_unanswered = Set(unanswered);
        }
        let status = row
            .status
            .parse()
            .map_err(|e| PayError::Corrupt(format!("payment {}: {e}", row.payment_id)))?;
        store::update_payment(tx, PaymentId(row.payment_id), status, change).await
    }

    /// Cancels a captured charge at the PSP with the stored key: a refund
    /// (REFUNDING → REFUNDED + RefundCompleted) or a void (VOIDING → FAILED).
    async fn cancel_step(
        &self,
        tx: &DatabaseTransaction,
        row: &payments::Model,
        status: PaymentStatus,
        steps: &mut Steps,
    ) -> Result<(), PayError> {
        let key = required(row, "psp_cancel_key", row.psp_cancel_key.as_deref())?;
        let payment_key = required(row, "psp_payment_key", row.psp_payment_key.as_deref())?;
        let reason = match status {
            PaymentStatus::Voiding => "amount differs from the order",
            _ => "booking cancelled",
        };
        let answer = self.psp.cancel(payment_key, reason, key).await;
        steps.psp(steps::CANCEL, row.psp_tries.saturating_add(1), &answer);
        let canceled = match answer {
            Ok(Answer::Payment(psp)) if psp.status == PspStatus::Canceled => psp,
            Ok(Answer::Payment(psp)) => {
                let error = format!("psp: cancel answered {:?}", psp.status);
                return self
                    .unresolved(tx, row, row.psp_confirms, None, error)
                    .await;
            }
            Ok(Answer::Refused {
                status: code_status,
                code,
                message,
            }) => {
                tracing::error!(
                    booking_id = %row.booking_id,
                    payment_id = %row.payment_id,
                    status = code_status,
                    code = %code,
                    message = %message,
                    "payment provider refused a cancel; retrying later"
                );
                let error = format!("psp: cancel refused {code_status} {code}");
                return self
                    .unresolved(tx, row, row.psp_confirms, None, error)
                    .await;
            }
            Ok(Answer::ServerError {
                status: code_status,
                code,
            }) => {
                let error = format!("psp: {code_status} {code}");
                return self
                    .unresolved(tx, row, row.psp_confirms, None, error)
                    .await;
            }
            Err(error) => {
                return self
                    .unresolved(tx, row, row.psp_confirms, None, error.to_string())
                    .await;
            }
        };
        let (payment_id, booking) = ids(row);
        let amount = psp_amount(row, &canceled)?;
        store::insert_card_entry(
            tx,
            payment_id,
            booking,
            CardEntryKind::Refund,
            amount,
            &canceled.currency,
            &canceled.payment_key,
        )
        .await?;
        let now = Utc::now();
        let mut change = payments::ActiveModel {
            refunded_at: Set(Some(now)),
            next_attempt_at: Set(None),
            last_error: Set(None),
            ..Default::default()
        };
        if status == PaymentStatus::Refunding {
            change.status = Set(PaymentStatus::Refunded.as_str().to_owned());
            store::update_payment(tx, payment_id, status, change).await?;
            steps.status(Some(status), PaymentStatus::Refunded, reason);
            let refunded = Money {
                amount_minor: amount.minor(),
                currency: currency(row)?,
            };
            enqueue_refund_completed(tx, booking.0, booking, Some(payment_id), &refunded, steps)
                .await?;
            metrics::counter!("refunds_total").increment(1);
            tracing::info!(
                booking_id = %booking,
                payment_id = %payment_id,
                amount_minor = amount.minor(),
                "card payment refunded"
            );
        } else {
            change.status = Set(PaymentStatus::Failed.as_str().to_owned());
            store::update_payment(tx, payment_id, status, change).await?;
            steps.status(Some(status), PaymentStatus::Failed, reason);
            tracing::info!(
                booking_id = %booking,
                payment_id = %payment_id,
                amount_minor = amount.minor(),
                "charge of a different amount cancelled at the payment provider"
            );
        }
        Ok(())
    }

    /// `payments_pending{method="CARD"}` and `payments_oldest_pending_age_seconds`.
    async fn record_stats(&self) {
        match store::pending_card_payments(&self.db).await {
            Ok((pending, oldest)) => {
                // Card payments whose charge awaits the PSP's answer (the database's count).
                metrics::gauge!("payments_pending", "method" => "CARD").set(pending as f64);
                let age = oldest.map_or(0.0, |at| {
                    (Utc::now() - at).num_milliseconds().max(0) as f64 / 1000.0
                });
                // How long the oldest card payment has awaited the PSP; 0 when none.
                metrics::gauge!("payments_oldest_pending_age_seconds").set(age);
            }
            Err(error) => tracing::warn!(%error, "counting pending card payments failed"),
        }
    }
}

/// What a confirm or inquiry answer says about the charge. `confirming`: the call was
/// a confirm (an unanswered one may still be in flight at the PSP).
fn charge_news(answer: Result<Answer, CallError>, confirming: bool) -> ChargeNews {
    match answer {
        Ok(Answer::Payment(payment)) => ChargeNews::Psp(payment),
        Ok(Answer::Refused {
            status: 404, code, ..
        }) if code == "NOT_FOUND_PAYMENT" && !confirming => ChargeNews::NotFound,
        Ok(Answer::Refused {
            status: 409, code, ..
        }) if code == "ALREADY_PROCESSING_REQUEST" => ChargeNews::Unresolved {
            error: "psp: already processing".to_owned(),
            unanswered: true,
        },
        // Our credentials or a code-less 4xx (not the PSP's API answering): nothing
        // about the card; the PSP charged nothing.
        Ok(Answer::Refused { status, code, .. })
            if code.is_empty() || code == "UNAUTHORIZED_KEY" =>
        {
            tracing::error!(status, code = %code, "payment provider refused the request itself");
            ChargeNews::Unresolved {
                error: format!("psp: refused {status} {code}"),
                unanswered: false,
            }
        }
        Ok(Answer::Refused { code, .. }) if confirming => {
            ChargeNews::Declined(FailureReason::Declined(DeclineCode::from_psp(&code)))
        }
        Ok(Answer::Refused { status, code, .. }) => ChargeNews::Unresolved {
            error: format!("psp: inquiry refused {status} {code}"),
            unanswered: false,
        },
        Ok(Answer::ServerError { status, code }) => ChargeNews::Unresolved {
            error: format!("psp: {status} {code}"),
            unanswered: false,
        },
        Err(error @ CallError::NotSent(_)) => ChargeNews::Unresolved {
            error: error.to_string(),
            unanswered: false,
        },
        Err(error @ CallError::Unknown(_)) => ChargeNews::Unresolved {
            error: error.to_string(),
            unanswered: confirming,
        },
    }
}

/// The delay after `tries` unresolved steps: exponential with jitter, capped.
fn backoff(tries: i32) -> Duration {
    let n = usize::try_from(tries.max(1) - 1).unwrap_or(0);
    ExponentialBuilder::new()
        .with_min_delay(MIN_BACKOFF)
        .with_max_delay(MAX_BACKOFF)
        .with_jitter()
        .without_max_times()
        .build()
        .nth(n)
        .unwrap_or(MAX_BACKOFF)
}

fn ids(row: &payments::Model) -> (PaymentId, BookingId) {
    (PaymentId(row.payment_id), BookingId(row.booking_id))
}

fn required<'a>(
    row: &payments::Model,
    column: &str,
    value: Option<&'a str>,
) -> Result<&'a str, PayError> {
    value.ok_or_else(|| {
        PayError::Corrupt(format!("card payment {} has no {column}", row.payment_id))
    })
}

/// What the PSP reports it took, which must be positive.
fn psp_amount(row: &payments::Model, psp: &PspPayment) -> Result<Amount, PayError> {
    Amount::positive(psp.total_amount).ok_or_else(|| {
        PayError::Corrupt(format!(
            "psp reports amount {} for payment {}",
            psp.total_amount, row.payment_id
        ))
    })
}

fn currency(row: &payments::Model) -> Result<Currency, PayError> {
    row.currency
        .parse()
        .map_err(|e| PayError::Corrupt(format!("payment {}: {e}", row.payment_id)))
}

fn payment_of(row: &payments::Model) -> Result<Payment, PayError> {
    Ok(Payment {
        payment_id: PaymentId(row.payment_id),
        booking_id: BookingId(row.booking_id),
        account_id: crate::domain::AccountId(row.account_id),
        status: row
            .status
            .parse()
            .map_err(|e| PayError::Corrupt(format!("payment {}: {e}", row.payment_id)))?,
        amount_minor: row.amount_minor,
        currency: row.currency.clone(),
        failure_reason: None,
        method: row.method.clone(),
        refund_wanted: row.refund_wanted,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_and_is_capped() {
        assert!(backoff(1) <= MIN_BACKOFF * 2);
        assert!(backoff(40) <= MAX_BACKOFF * 2);
        assert!(backoff(6) >= MIN_BACKOFF * 16);
    }
}

//! The saga timeline, pay-svc's half: every step of a booking's payment (the request
//! received, the wallet debited or credited, each PSP call and what came of it, a
//! status change, the reply sent) recorded in `saga_steps` in the same transaction as
//! the step's effect, through infra's [`Steps`] (`marquee_infra::saga_steps`), which
//! writes a transaction's steps with one multi-row INSERT before it commits (on the
//! wallet's hot path, one statement more). Here: pay-svc's own kinds. Read back
//! ([`read`]) by `PaymentAdminService.ListPaymentSteps` for booking-svc's admin
//! timeline.

pub use marquee_infra::saga_steps::{REFUND, Steps, read};
use sea_orm::ActiveValue::Set;

use crate::psp::{Answer, CallError, PspStatus};

/// The wallet was debited or credited, or could not be.
pub const WALLET: &str = "wallet";
/// A call to the payment provider (`operation` confirm, inquiry or cancel).
pub const PSP_CALL: &str = "psp_call";

/// The PSP operations as the timeline names them.
pub const CONFIRM: &str = "confirm";
pub const INQUIRY: &str = "inquiry";
pub const CANCEL: &str = "cancel";

/// The steps only pay-svc records.
pub trait PaymentSteps {
    /// A PSP call, the `attempt`-th of its kind for this payment, and its answer.
    fn psp(&mut self, operation: &str, attempt: i32, answer: &Result<Answer, CallError>);
}

impl PaymentSteps for Steps {
    fn psp(&mut self, operation: &str, attempt: i32, answer: &Result<Answer, CallError>) {
        let (outcome, http_status, detail) = psp_outcome(answer);
        let row = self.push(PSP_CALL);
        row.operation = Set(Some(operation.to_owned()));
        row.attempt = Set(attempt);
        row.outcome = Set(outcome.to_owned());
        row.http_status = Set(http_status);
        row.detail = Set(detail);
    }
}

/// What a PSP answer says, for the timeline: (outcome, HTTP status, detail).
/// "captured", "aborted", "canceled", "in_progress": the payment object's status;
/// "refused": a 4xx; "unknown": no decision (5xx, timeout, dropped connection);
/// "not_sent": the PSP was never reached.
fn psp_outcome(answer: &Result<Answer, CallError>) -> (&'static str, Option<i32>, String) {
    match answer {
        Ok(Answer::Payment(payment)) => {
            let outcome = match payment.status {
                PspStatus::Done => "captured",
                PspStatus::Aborted => "aborted",
                PspStatus::Canceled => "canceled",
                PspStatus::InProgress => "in_progress",
                PspStatus::Unknown => "unknown",
            };
            let detail = payment
                .failure
                .as_ref()
                .map_or_else(String::new, |failure| failure.code.clone());
            (outcome, Some(200), detail)
        }
        Ok(Answer::Refused { status, code, .. }) => {
            ("refused", Some(i32::from(*status)), code.clone())
        }
        Ok(Answer::ServerError { status, code }) => {
            ("unknown", Some(i32::from(*status)), code.clone())
        }
        Err(error @ CallError::Unknown(_)) => ("unknown", None, error.to_string()),
        Err(error @ CallError::NotSent(_)) => ("not_sent", None, error.to_string()),
    }
}

//! booking-svc's one error enum and its one mapping to `tonic::Status`.

use std::collections::HashMap;

use sea_orm::DbErr;
use tonic::{Code, Status};
use tonic_types::{ErrorDetails, StatusExt};

use uuid::Uuid;

/// The `ErrorInfo` domain of booking-svc's reasons.
const DOMAIN: &str = "booking.marquee";
/// The `ErrorInfo` reason of a log-in that needs a two-factor code, and of a selling
/// RPC whose session was created without one.
pub const TWO_FACTOR_REQUIRED: &str = "TWO_FACTOR_REQUIRED";

#[derive(Debug, thiserror::Error)]
pub enum BookingError {
    #[error("{field}: {reason}")]
    InvalidArgument { field: &'static str, reason: String },
    #[error("authentication required: {0}")]
    Unauthenticated(String),
    #[error("{0}")]
    PermissionDenied(&'static str),
    #[error("{0} not found")]
    NotFound(&'static str),
    #[error("{0}")]
    AlreadyExists(&'static str),
    #[error("{0}")]
    FailedPrecondition(String),
    /// Someone else changed what the request acted on first, or it used up what it may
    /// do (409 ABORTED): a transfer offer accepted or withdrawn meanwhile, an auction bid
    /// beyond the three a buyer may submit.
    #[error("{0}")]
    Conflict(String),
    #[error("seats are no longer available: {}", join(.0))]
    /// The seats (ids) someone else has.
    SeatsTaken(Vec<Uuid>),
    /// Best available found no block of `quantity` adjacent available seats in one row
    /// (within the section and price asked for).
    #[error("no {quantity} adjacent seats available in one row{within}")]
    NoAdjacentSeats {
        quantity: u32,
        /// What the request narrowed the search to, e.g. " of the section asked for".
        within: &'static str,
    },
    #[error("at most {limit} seats per buyer for this event; you hold or own {current}")]
    SeatLimit { limit: u32, current: u32 },
    #[error("a checkout with this idempotency key is in progress; retry shortly")]
    CheckoutInProgress,
    #[error("the seat store lost its data and is being restored from the bookings; retry shortly")]
    RedisLost,
    #[error("the hold could not be confirmed in time, and nothing was held; retry")]
    HoldUnconfirmed,
    #[error("the outcome of this hold is not known yet; retry with the same Idempotency-Key")]
    HoldOutcomeUnknown,
    /// LogIn of an account with two-factor sign-in, without a code (UNAUTHENTICATED,
    /// reason TWO_FACTOR_REQUIRED: the client asks for the code and tries again).
    #[error(
        "authentication required: this account signs in with a two-factor code; send code (or recoveryCode)"
    )]
    TwoFactorCodeMissing,
    /// A selling RPC called with a session created without the second factor
    /// (PERMISSION_DENIED, reason TWO_FACTOR_REQUIRED).
    #[error("{0}")]
    TwoFactorSessionRequired(&'static str),
    /// LogIn with a wrong, replayed or out-of-window code or recovery code; it counted
    /// as a failure (UNAUTHENTICATED, reason TWO_FACTOR_CODE_INVALID).
    #[error(
        "authentication required: wrong or already used two-factor code ({attempts_left} attempts left before the account is locked)"
    )]
    TwoFactorCodeInvalid { attempts_left: u32 },
    /// The account is locked after too many wrong codes (PERMISSION_DENIED, reason
    /// ACCOUNT_LOCKED, metadata `lockedUntil`).
    #[error("this account is locked after too many wrong two-factor codes until {}; log in with a recovery code to unlock it", .until.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))]
    AccountLocked {
        until: chrono::DateTime<chrono::Utc>,
    },
    #[error("dependency unavailable: {0}")]
    Unavailable(String),
    #[error("internal error: {0}")]
    Internal(String),
}

fn join(seats: &[Uuid]) -> String {
    seats
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

impl BookingError {
    pub fn invalid(field: &'static str, reason: impl Into<String>) -> Self {
        BookingError::InvalidArgument {
            field,
            reason: reason.into(),
        }
    }
}

/// A database error the caller may retry (no connection, a connection that broke, a
/// serialization failure: see `marquee_infra::db::is_transient`) is `Unavailable`;
/// anything else is `Internal`. Constraint violations that mean something are
/// classified by the code that expects them, by constraint name.
impl From<DbErr> for BookingError {
    fn from(error: DbErr) -> Self {
        if marquee_infra::db::is_transient(&error) {
            BookingError::Unavailable(format!("database: {error}"))
        } else {
            BookingError::Internal(format!("database: {error}"))
        }
    }
}

impl From<redis::RedisError> for BookingError {
    fn from(error: redis::RedisError) -> Self {
        BookingError::Unavailable(format!("redis: {error}"))
    }
}

impl From<BookingError> for Status {
    fn from(error: BookingError) -> Self {
        let message = error.to_string();
        match error {
            BookingError::InvalidArgument { field, reason } => Status::with_error_details(
                Code::InvalidArgument,
                message,
                ErrorDetails::with_bad_request_violation(field, reason),
            ),
            BookingError::Unauthenticated(_) => Status::unauthenticated(message),
            BookingError::PermissionDenied(_) => Status::permission_denied(message),
            BookingError::NotFound(_) => Status::not_found(message),
            BookingError::AlreadyExists(_) => Status::already_exists(message),
            BookingError::FailedPrecondition(_) => Status::failed_precondition(message),
            BookingError::Conflict(_) => Status::aborted(message),
            BookingError::SeatsTaken(seats) => Status::with_error_details(
                Code::Aborted,
                message,
                ErrorDetails::with_error_info(
                    "SEATS_UNAVAILABLE",
                    "booking.marquee",
                    HashMap::from([("seatIds".to_owned(), join(&seats))]),
                ),
            ),
            BookingError::NoAdjacentSeats { quantity, .. } => Status::with_error_details(
                Code::Aborted,
                message,
                ErrorDetails::with_error_info(
                    "NO_ADJACENT_SEATS",
                    "booking.marquee",
                    HashMap::from([("quantity".to_owned(), quantity.to_string())]),
                ),
            ),
            BookingError::SeatLimit { limit, current } => Status::with_error_details(
                Code::FailedPrecondition,
                message,
                ErrorDetails::with_error_info(
                    "SEAT_LIMIT",
                    "booking.marquee",
                    HashMap::from([
                        ("limit".to_owned(), limit.to_string()),
                        ("current".to_owned(), current.to_string()),
                    ]),
                ),
            ),
            BookingError::TwoFactorCodeMissing => Status::with_error_details(
                Code::Unauthenticated,
                message,
                ErrorDetails::with_error_info(TWO_FACTOR_REQUIRED, DOMAIN, HashMap::new()),
            ),
            BookingError::TwoFactorSessionRequired(_) => Status::with_error_details(
                Code::PermissionDenied,
                message,
                ErrorDetails::with_error_info(TWO_FACTOR_REQUIRED, DOMAIN, HashMap::new()),
            ),
            BookingError::TwoFactorCodeInvalid { attempts_left } => Status::with_error_details(
                Code::Unauthenticated,
                message,
                ErrorDetails::with_error_info(
                    "TWO_FACTOR_CODE_INVALID",
                    DOMAIN,
                    HashMap::from([("attemptsLeft".to_owned(), attempts_left.to_string())]),
                ),
            ),
            BookingError::AccountLocked { until } => Status::with_error_details(
                Code::PermissionDenied,
                message,
                ErrorDetails::with_error_info(
                    "ACCOUNT_LOCKED",
                    DOMAIN,
                    HashMap::from([(
                        "lockedUntil".to_owned(),
                        until.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
                    )]),
                ),
            ),
            BookingError::CheckoutInProgress => Status::aborted(message),
            BookingError::RedisLost
            | BookingError::HoldUnconfirmed
            | BookingError::HoldOutcomeUnknown => {
                tracing::warn!(%message, "seat store unavailable");
                Status::unavailable(message)
            }
            BookingError::Unavailable(detail) => {
                tracing::warn!(%detail, "dependency unavailable");
                Status::unavailable("a dependency is unavailable; retry shortly")
            }
            BookingError::Internal(detail) => {
                tracing::error!(%detail, "internal error");
                Status::internal("internal error")
            }
        }
    }
}

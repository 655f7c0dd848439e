//! The one error type of pay-svc, and its single mapping to a gRPC status.

use marquee_infra::auth::TokenError;
use marquee_infra::bus::HandleError;

#[derive(Debug, thiserror::Error)]
pub enum PayError {
    /// The caller has no valid token.
    #[error("unauthenticated: {0}")]
    Unauthenticated(#[from] TokenError),
    /// The token is valid but does not name an account.
    #[error("token subject is not an account id")]
    InvalidSubject,
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    /// A bus message of a type this service does not handle.
    #[error("unknown message kind {0:?}")]
    UnknownKind(String),
    /// A bus message whose body cannot be understood.
    #[error("malformed {kind} message: {reason}")]
    MalformedMessage { kind: String, reason: String },
    /// The caller's account has no wallet (yet): wallets are opened by `account.opened`.
    #[error("no wallet for this account yet")]
    NoWallet,
    /// A stored value that does not parse: a bug or a manual edit.
    #[error("corrupt stored data: {0}")]
    Corrupt(String),
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
}

impl From<PayError> for tonic::Status {
    fn from(error: PayError) -> Self {
        match &error {
            PayError::Unauthenticated(_) | PayError::InvalidSubject => {
                tonic::Status::unauthenticated(error.to_string())
            }
            PayError::InvalidArgument(_) => tonic::Status::invalid_argument(error.to_string()),
            PayError::NoWallet => tonic::Status::not_found(error.to_string()),
            PayError::Database(db) if is_permanent(db) => {
                tracing::error!(%error, "database refused a statement");
                tonic::Status::internal("internal error")
            }
            PayError::Database(_) => {
                tracing::error!(%error, "database failure");
                tonic::Status::unavailable("payment database unavailable")
            }
            PayError::UnknownKind(_) | PayError::MalformedMessage { .. } | PayError::Corrupt(_) => {
                tracing::error!(%error, "internal error");
                tonic::Status::internal("internal error")
            }
        }
    }
}

impl From<PayError> for HandleError {
    /// Database trouble that may pass (connection, pool, serialization, shutdown) is
    /// retried, up to the delivery limit; anything else, including a statement
    /// PostgreSQL refuses for what it contains, will never work and is dead-lettered
    /// at once.
    fn from(error: PayError) -> Self {
        match &error {
            PayError::Database(db) if !is_permanent(db) => HandleError::Transient(error.into()),
            _ => HandleError::Permanent(error.into()),
        }
    }
}

/// Whether retrying the statement can never succeed. PostgreSQL says so by SQLSTATE
/// class: 22 (data exception: a NUL byte or untranslatable character in text, a value
/// out of range), 23 (integrity constraint violation that the code did not turn into
/// a business outcome) and 42 (syntax error or undefined object: a bug or a missing
/// migration). Everything else it reports (40001 serialization failure, 40P01
/// deadlock, 57P01 admin shutdown, 08 connection exceptions, 53 insufficient
/// resources, ...) may pass. On our side, failing to encode or decode a value is a
/// bug; I/O, TLS, pool and protocol trouble may pass.
pub fn is_permanent(error: &sqlx::Error) -> bool {
    match error {
        sqlx::Error::Database(db) => db
            .code()
            .is_some_and(|code| matches!(code.get(..2), Some("22" | "23" | "42"))),
        sqlx::Error::Configuration(_)
        | sqlx::Error::ColumnNotFound(_)
        | sqlx::Error::ColumnIndexOutOfBounds { .. }
        | sqlx::Error::ColumnDecode { .. }
        | sqlx::Error::Decode(_)
        | sqlx::Error::Encode(_)
        | sqlx::Error::TypeNotFound { .. }
        | sqlx::Error::RowNotFound => true,
        _ => false,
    }
}

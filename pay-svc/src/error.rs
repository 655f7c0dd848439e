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
    /// Database trouble may pass, so the message is retried (up to the delivery
    /// limit); anything else will never work and is dead-lettered at once.
    fn from(error: PayError) -> Self {
        match error {
            PayError::Database(_) => HandleError::Transient(error.into()),
            other => HandleError::Permanent(other.into()),
        }
    }
}

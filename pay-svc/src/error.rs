//! The one error type of pay-svc, and its single mapping to a gRPC status.

use marquee_infra::auth::TokenError;
use marquee_infra::bus::HandleError;
use marquee_infra::db;
use sea_orm::DbErr;

#[derive(Debug, thiserror::Error)]
pub enum PayError {
    /// The caller has no valid token.
    #[error("unauthenticated: {0}")]
    Unauthenticated(#[from] TokenError),
    /// The token is valid but does not name an account.
    #[error("token subject is not an account id")]
    InvalidSubject,
    /// The caller is who it says, but its role may not do this.
    #[error("permission denied: {0}")]
    PermissionDenied(&'static str),
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
    Database(#[from] DbErr),
}

impl From<PayError> for tonic::Status {
    fn from(error: PayError) -> Self {
        match &error {
            PayError::Unauthenticated(_) | PayError::InvalidSubject => {
                tonic::Status::unauthenticated(error.to_string())
            }
            PayError::PermissionDenied(_) => tonic::Status::permission_denied(error.to_string()),
            PayError::InvalidArgument(_) => tonic::Status::invalid_argument(error.to_string()),
            PayError::NoWallet => tonic::Status::not_found(error.to_string()),
            PayError::Database(db) if is_permanent(db) => {
                tracing::error!(
                    %error,
                    sqlstate = db::sqlstate(db).as_deref(),
                    constraint = db::violated_constraint(db).as_deref(),
                    "database refused a statement"
                );
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
            PayError::Database(db) => {
                tracing::warn!(
                    sqlstate = db::sqlstate(db).as_deref(),
                    constraint = db::violated_constraint(db).as_deref(),
                    "database refused a statement for good"
                );
                HandleError::Permanent(error.into())
            }
            _ => HandleError::Permanent(error.into()),
        }
    }
}

/// Whether retrying the statement can never succeed. PostgreSQL says so by SQLSTATE
/// class: 22 (data exception: a NUL byte or untranslatable character in text, a value
/// out of range), 23 (integrity constraint violation that the code did not turn into
/// a business outcome; [`db::violated_constraint`] names it) and 42 (syntax error or
/// undefined object: a bug or a missing migration). Everything else it reports
/// (40001 serialization failure, 40P01 deadlock, 57P01 admin shutdown, 08 connection
/// exceptions, 53 insufficient resources, ...) may pass. Without a SQLSTATE, trouble
/// reaching the database (connection, pool, I/O, protocol) may pass; a value sea-orm
/// cannot convert or a missing column is a bug.
pub fn is_permanent(error: &DbErr) -> bool {
    if let Some(code) = db::sqlstate(error) {
        return matches!(code.get(..2), Some("22" | "23" | "42"));
    }
    !matches!(
        error,
        DbErr::ConnectionAcquire(_) | DbErr::Conn(_) | DbErr::Exec(_) | DbErr::Query(_)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conversion_bugs_are_permanent_and_connection_trouble_is_not() {
        assert!(is_permanent(&DbErr::Type("not a uuid".to_owned())));
        assert!(is_permanent(&DbErr::RecordNotFound("payment".to_owned())));
        assert!(!is_permanent(&DbErr::ConnectionAcquire(
            sea_orm::error::ConnAcquireErr::Timeout
        )));
        assert!(!is_permanent(&DbErr::Conn(sea_orm::RuntimeErr::Internal(
            "connection reset".to_owned()
        ))));
    }
}

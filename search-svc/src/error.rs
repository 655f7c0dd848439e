//! The one error type of search-svc, and its single mapping to a gRPC status.

use marquee_infra::auth::TokenError;

#[derive(Debug, thiserror::Error)]
pub enum SearchError {
    /// The caller has no valid token where one is needed.
    #[error("unauthenticated: {0}")]
    Unauthenticated(#[from] TokenError),
    /// The caller is signed in but may not do this.
    #[error("permission denied: {0}")]
    PermissionDenied(String),
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    #[error("not found: {0}")]
    NotFound(String),
    /// A rebuild is already running; this one was not started.
    #[error("a rebuild of the index is already running")]
    RebuildRunning,
    /// A bus message whose body cannot be understood.
    #[error("malformed {kind} message: {reason}")]
    MalformedMessage { kind: String, reason: String },
    /// booking-svc could not be read (a rebuild).
    #[error("catalog unavailable: {0}")]
    Catalog(#[from] tonic::Status),
    #[error("rankings store error: {0}")]
    Redis(#[from] redis::RedisError),
    #[error("index error: {0}")]
    Index(#[from] tantivy::TantivyError),
    /// A blocking task of the index panicked or was cancelled.
    #[error("index task failed: {0}")]
    Task(#[from] tokio::task::JoinError),
}

impl From<SearchError> for tonic::Status {
    fn from(error: SearchError) -> Self {
        match &error {
            SearchError::Unauthenticated(_) => tonic::Status::unauthenticated(error.to_string()),
            SearchError::PermissionDenied(_) => tonic::Status::permission_denied(error.to_string()),
            SearchError::InvalidArgument(_) => tonic::Status::invalid_argument(error.to_string()),
            SearchError::NotFound(_) => tonic::Status::not_found(error.to_string()),
            SearchError::RebuildRunning => tonic::Status::aborted(error.to_string()),
            SearchError::Catalog(status) => {
                tracing::warn!(%error, "catalog read failed");
                tonic::Status::unavailable(format!("catalog unavailable: {}", status.message()))
            }
            SearchError::Redis(_) => {
                tracing::error!(%error, "rankings store failure");
                tonic::Status::unavailable("rankings store unavailable")
            }
            SearchError::MalformedMessage { .. } | SearchError::Index(_) | SearchError::Task(_) => {
                tracing::error!(%error, "internal error");
                tonic::Status::internal("internal error")
            }
        }
    }
}

//! The one error type of realtime-svc, and its single mapping to a gRPC status.

use marquee_infra::auth::TokenError;

#[derive(Debug, thiserror::Error)]
pub enum RealtimeError {
    #[error("unauthenticated: {0}")]
    Unauthenticated(#[from] TokenError),
    #[error("{field}: {reason}")]
    InvalidArgument { field: &'static str, reason: String },
    /// booking-svc answered the read this stream starts from (or a queue ticket's
    /// re-read) with an error (NOT_FOUND for an unknown event, another buyer's booking
    /// or another account's queue ticket): passed on as it came.
    #[error("booking-svc: {}", .0.message())]
    Upstream(tonic::Status),
}

impl RealtimeError {
    pub fn invalid(field: &'static str, reason: impl Into<String>) -> Self {
        Self::InvalidArgument {
            field,
            reason: reason.into(),
        }
    }
}

impl From<RealtimeError> for tonic::Status {
    fn from(error: RealtimeError) -> Self {
        match error {
            RealtimeError::Unauthenticated(e) => tonic::Status::unauthenticated(e.to_string()),
            e @ RealtimeError::InvalidArgument { .. } => {
                tonic::Status::invalid_argument(e.to_string())
            }
            RealtimeError::Upstream(status) => match status.code() {
                tonic::Code::NotFound
                | tonic::Code::InvalidArgument
                | tonic::Code::PermissionDenied
                | tonic::Code::Unauthenticated => status,
                code => {
                    tracing::warn!(?code, error = %status.message(), "booking-svc read failed");
                    tonic::Status::unavailable("booking-svc is unavailable")
                }
            },
        }
    }
}

//! Calls to the upstream services, shared by unary routes ([`crate::proxy`]) and
//! streams ([`crate::sse`]): the bearer-token check at the edge, forwarded headers and
//! trace context, the gateway's deadline, and a failure turned into the API error.

use std::time::Instant;

use http::header::AUTHORIZATION;
use http::uri::PathAndQuery;
use http::{HeaderMap, StatusCode};
use marquee_infra::auth::Claims;
use prost_reflect::DynamicMessage;
use tonic::Code;
use tonic::metadata::{AsciiMetadataValue, MetadataKey};

use crate::error::ApiError;
use crate::routes::{Route, UPSTREAMS};
use crate::state::AppState;

/// Request headers forwarded to upstreams as gRPC metadata (after the token check).
pub const FORWARDED_HEADERS: &[&str] = &[
    "authorization",
    "idempotency-key",
    "x-request-id",
    crate::admission::HEADER,
];

pub type GrpcClient = tonic::client::Grpc<tonic::transport::Channel>;

/// Sends `message` to the route's upstream with the request's forwarded headers and
/// trace context: `call` makes the call (unary, or the start of a stream) and its
/// answer is awaited under the gateway's deadline; a failure becomes the API error the
/// client sees (logged when it is the server side's fault).
pub async fn call_upstream<T, Answer>(
    state: &AppState,
    route: &Route,
    headers: &HeaderMap,
    message: DynamicMessage,
    call: impl FnOnce(GrpcClient, tonic::Request<DynamicMessage>, PathAndQuery) -> Answer,
) -> Result<T, ApiError>
where
    Answer: std::future::Future<Output = Result<T, tonic::Status>>,
{
    let mut request = tonic::Request::new(message);
    forward_metadata(headers, request.metadata_mut());
    // Runs inside the request span (TraceLayer), so upstream spans join this trace.
    marquee_infra::telemetry::inject_metadata(request.metadata_mut());
    let name = UPSTREAMS.get(route.upstream).map_or("unknown", |u| u.name);
    let channel = state
        .channels
        .get(route.upstream)
        .map(|channels| channels.pick())
        .ok_or_else(|| {
            ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "no channel for upstream")
        })?;
    let path = PathAndQuery::try_from(route.grpc_path.as_str())
        .map_err(|_| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "bad grpc path"))?;
    let mut grpc = tonic::client::Grpc::new(channel);
    let started = Instant::now();
    let answer = async {
        grpc.ready().await.map_err(|e| {
            tonic::Status::unavailable(format!("upstream {name} is not ready: {e}"))
        })?;
        call(grpc, request, path).await
    };
    let result = match tokio::time::timeout(state.upstream_timeout, answer).await {
        Ok(result) => result,
        Err(_) => Err(tonic::Status::deadline_exceeded(
            "upstream did not answer in time",
        )),
    };
    result.map_err(|status| {
        let status = normalize_status(status, name, started.elapsed() >= state.upstream_timeout);
        let error = ApiError::from_status(&status);
        if error.status.is_server_error() {
            tracing::warn!(
                upstream = name,
                rpc = %route.grpc_path,
                grpc.code = ?status.code(),
                error = %status.message(),
                "upstream call failed"
            );
        }
        error
    })
}

/// Refuses a bad bearer token at the edge; a missing one is the services' call. The
/// verified caller's claims, if a token came.
pub fn authenticate(state: &AppState, headers: &HeaderMap) -> Result<Option<Claims>, ApiError> {
    let Some(value) = headers.get(AUTHORIZATION) else {
        return Ok(None);
    };
    let value = value
        .to_str()
        .map_err(|_| ApiError::new(StatusCode::UNAUTHORIZED, "malformed authorization header"))?;
    state
        .keys
        .verify_header(Some(value))
        .map(Some)
        .map_err(|e| ApiError::new(StatusCode::UNAUTHORIZED, e.to_string()))
}

fn forward_metadata(headers: &HeaderMap, metadata: &mut tonic::metadata::MetadataMap) {
    for name in FORWARDED_HEADERS {
        let Some(value) = headers.get(*name) else {
            continue;
        };
        let (Ok(key), Ok(value)) = (
            MetadataKey::from_bytes(name.as_bytes()),
            AsciiMetadataValue::try_from(value.as_bytes()),
        ) else {
            continue;
        };
        metadata.insert(key, value);
    }
}

/// A transport failure is "upstream down" (503); a deadline the upstream enforced on
/// our behalf reads as 504, not as a client cancellation.
fn normalize_status(status: tonic::Status, upstream: &str, timed_out: bool) -> tonic::Status {
    match status.code() {
        Code::Cancelled | Code::Unknown if timed_out => {
            tonic::Status::deadline_exceeded("upstream did not answer in time")
        }
        Code::Unknown | Code::Unavailable if is_transport_error(&status) => {
            tonic::Status::unavailable(format!(
                "upstream {upstream} is unavailable: {}",
                status.message()
            ))
        }
        _ => status,
    }
}

fn is_transport_error(status: &tonic::Status) -> bool {
    let mut source = std::error::Error::source(status);
    while let Some(e) = source {
        if e.is::<tonic::transport::Error>() || e.is::<std::io::Error>() {
            return true;
        }
        source = e.source();
    }
    false
}

#[cfg(test)]
mod tests {
    use http::HeaderValue;

    use super::*;

    #[test]
    fn forwards_only_listed_headers() {
        let mut headers = HeaderMap::new();
        headers.insert("authorization", HeaderValue::from_static("Bearer t"));
        headers.insert("idempotency-key", HeaderValue::from_static("k-1"));
        headers.insert("x-request-id", HeaderValue::from_static("r-1"));
        headers.insert("user-agent", HeaderValue::from_static("curl"));
        headers.insert("cookie", HeaderValue::from_static("a=b"));
        let mut metadata = tonic::metadata::MetadataMap::new();
        forward_metadata(&headers, &mut metadata);
        assert_eq!(metadata.len(), 3);
        assert_eq!(
            metadata
                .get("idempotency-key")
                .and_then(|v| v.to_str().ok()),
            Some("k-1")
        );
        assert!(metadata.get("user-agent").is_none());
    }

    #[test]
    fn deadlines_read_as_504() {
        let status = normalize_status(tonic::Status::cancelled("Timeout expired"), "pay", true);
        assert_eq!(status.code(), Code::DeadlineExceeded);
        let status = normalize_status(tonic::Status::cancelled("client went away"), "pay", false);
        assert_eq!(status.code(), Code::Cancelled);
    }
}

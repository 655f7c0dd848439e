//! The one handler behind every annotated route: look the route up, check the bearer
//! token, build the request message, call the upstream, render the answer.

use std::sync::Arc;
use std::time::Instant;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::response::{IntoResponse, Response};
use http::header::{AUTHORIZATION, CONTENT_TYPE};
use http::uri::PathAndQuery;
use http::{HeaderMap, HeaderValue, StatusCode};
use http_body_util::BodyExt as _;
use prost_reflect::DynamicMessage;
use tonic::Code;
use tonic::metadata::{AsciiMetadataValue, MetadataKey};

use crate::app::AppState;
use crate::codec::DynamicCodec;
use crate::error::ApiError;
use crate::routes::{BodyRule, Route, RouteMatch, UPSTREAMS};
use crate::transcode::{build_request, response_json};

/// Request headers forwarded to upstreams as gRPC metadata (after the token check).
pub const FORWARDED_HEADERS: &[&str] = &["authorization", "idempotency-key", "x-request-id"];

/// The fallback handler: serves every route of the table.
pub async fn handle(State(state): State<Arc<AppState>>, mut request: Request) -> Response {
    // The match made by the outermost layer; looked up here only if that layer is absent.
    let matched = match request.extensions_mut().remove::<RouteMatch>() {
        Some(matched) => matched,
        None => state.routes.lookup(request.method(), request.uri().path()),
    };
    match matched {
        RouteMatch::Found { route, bindings } => {
            match forward(&state, &route, &bindings, request).await {
                Ok(response) => response,
                Err(error) => error.into_response(),
            }
        }
        RouteMatch::BadPath { error, .. } => {
            ApiError::bad_request(error.to_string()).into_response()
        }
        RouteMatch::MethodNotAllowed(allowed) => {
            ApiError::method_not_allowed(&allowed).into_response()
        }
        RouteMatch::NotFound => ApiError::not_found().into_response(),
    }
}

async fn forward(
    state: &AppState,
    route: &Route,
    bindings: &[(String, String)],
    request: Request,
) -> Result<Response, ApiError> {
    if route.server_streaming {
        return crate::sse::forward(state, route, bindings, request).await;
    }
    let (parts, body) = request.into_parts();
    authenticate(state, &parts.headers)?;

    let body = match route.body {
        BodyRule::None => bytes::Bytes::new(),
        BodyRule::Whole | BodyRule::Field(_) => read_body(state, &parts.headers, body).await?,
    };
    let message = build_request(route, bindings, parts.uri.query(), &body)
        .map_err(|e| ApiError::bad_request(e.0))?;

    let timeout = state.upstream_timeout;
    let codec = DynamicCodec::new(route.output.clone());
    let response = call_upstream(
        state,
        route,
        &parts.headers,
        message,
        |mut grpc, mut request, path| async move {
            request.set_timeout(timeout);
            grpc.unary(request, path, codec).await
        },
    )
    .await?;
    let json = response_json(response.get_ref(), route.response_body.as_deref()).map_err(|e| {
        tracing::error!(rpc = %route.grpc_path, error = %e, "response serialization failed");
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "could not render the response",
        )
    })?;
    let mut http_response = (route.success, json).into_response();
    http_response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    Ok(http_response)
}

type GrpcClient = tonic::client::Grpc<tonic::transport::Channel>;

/// Sends `message` to the route's upstream with the request's forwarded headers and
/// trace context: `call` makes the call (unary, or the start of a stream) and its
/// answer is awaited under the gateway's deadline; a failure becomes the API error the
/// client sees (logged when it is the server side's fault).
pub(crate) async fn call_upstream<T, Answer>(
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

/// Refuses a bad bearer token at the edge; a missing one is the services' call.
pub(crate) fn authenticate(state: &AppState, headers: &HeaderMap) -> Result<(), ApiError> {
    let Some(value) = headers.get(AUTHORIZATION) else {
        return Ok(());
    };
    let value = value
        .to_str()
        .map_err(|_| ApiError::new(StatusCode::UNAUTHORIZED, "malformed authorization header"))?;
    state
        .keys
        .verify_header(Some(value))
        .map(|_| ())
        .map_err(|e| ApiError::new(StatusCode::UNAUTHORIZED, e.to_string()))
}

async fn read_body(
    state: &AppState,
    headers: &HeaderMap,
    body: Body,
) -> Result<bytes::Bytes, ApiError> {
    let bytes = body
        .collect()
        .await
        .map_err(|e| body_error(state, &e))?
        .to_bytes();
    if !bytes.iter().all(u8::is_ascii_whitespace)
        && let Some(content_type) = headers.get(CONTENT_TYPE)
        && !is_json(content_type)
    {
        return Err(ApiError::bad_request(
            "content-type must be application/json",
        ));
    }
    Ok(bytes)
}

fn is_json(content_type: &HeaderValue) -> bool {
    let Ok(value) = content_type.to_str() else {
        return false;
    };
    let essence = value
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase();
    essence == "application/json"
        || (essence.starts_with("application/") && essence.ends_with("+json"))
}

fn body_error(state: &AppState, error: &axum::Error) -> ApiError {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(error);
    while let Some(e) = source {
        if e.is::<http_body_util::LengthLimitError>() {
            return ApiError::payload_too_large(state.body_limit);
        }
        source = e.source();
    }
    ApiError::bad_request(format!("could not read the request body: {error}"))
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
    use super::*;

    #[test]
    fn json_content_types() {
        assert!(is_json(&HeaderValue::from_static("application/json")));
        assert!(is_json(&HeaderValue::from_static(
            "Application/JSON; charset=utf-8"
        )));
        assert!(is_json(&HeaderValue::from_static(
            "application/merge-patch+json"
        )));
        assert!(!is_json(&HeaderValue::from_static("text/plain")));
        assert!(!is_json(&HeaderValue::from_static(
            "application/x-www-form-urlencoded"
        )));
    }

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

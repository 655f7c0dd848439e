//! The one handler behind every annotated route: look the route up, check the bearer
//! token, build the request message, call the upstream, render the answer.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::response::{IntoResponse, Response};
use http::header::CONTENT_TYPE;
use http::{HeaderMap, HeaderValue, StatusCode};
use http_body_util::BodyExt as _;

use crate::codec::DynamicCodec;
use crate::error::ApiError;
use crate::routes::{BodyRule, Route, RouteMatch};
use crate::state::AppState;
use crate::transcode::{build_request, response_json};
use crate::upstream::{authenticate, call_upstream};

/// The fallback handler: serves every route of the table.
pub async fn handle(State(state): State<Arc<AppState>>, mut request: Request) -> Response {
    // The match made by the outermost layer; looked up here only if that layer is absent.
    let matched = match request.extensions_mut().remove::<RouteMatch>() {
        Some(matched) => matched,
        None => state.routes.lookup(request.method(), request.uri().path()),
    };
    match matched {
        RouteMatch::Found { route, bindings } if route.server_streaming => {
            match crate::sse::forward(&state, &route, &bindings, request).await {
                Ok(response) => response,
                Err(error) => error.into_response(),
            }
        }
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
    let (parts, body) = request.into_parts();
    let caller = authenticate(state, &parts.headers)?;
    crate::admission::check(state, route, bindings, &parts.headers, caller.as_ref()).await?;

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
}

//! The HTTP routes: auth, reading and checking what the store needs, rendering its
//! answers. Every error is the contract's `{"code", "message"}` JSON.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::rejection::PathRejection;
use axum::extract::{Path, Request, State};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use base64::Engine as _;
use http::header::{AUTHORIZATION, CONTENT_TYPE};
use http::{HeaderMap, HeaderValue, StatusCode};
use secrecy::{ExposeSecret as _, SecretString};
use serde_json::json;

use crate::domain::{self, Failure};
use crate::store::{Answer, Store};

/// The largest request body read: 64 KiB.
pub const BODY_LIMIT: usize = 64 * 1024;

/// What the handlers share.
pub struct ApiState {
    pub store: Store,
    pub secret_key: SecretString,
    pub slow: Duration,
}

/// Marks a response that must not be sent: the connection is closed instead
/// (`crate::app` turns it into a service error, on which hyper closes the connection
/// without writing a byte).
#[derive(Debug, Clone, Copy)]
pub struct DropConnection;

/// The routes, without the tower layers `crate::app` adds.
pub fn routes(state: Arc<ApiState>) -> Router {
    let v1 = Router::new()
        .route("/v1/payments/confirm", post(confirm))
        .route("/v1/payments/orders/{order_id}", get(inquire))
        .route("/v1/payments/{payment_key}/cancel", post(cancel))
        .route("/v1/ledger", get(ledger))
        .route("/v1/ledger/orders/{order_id}", get(order_ledger))
        // Checks `Authorization: Basic base64("<secret key>:")` on every /v1 route.
        .route_layer(middleware::from_fn_with_state(state.clone(), authorize));
    Router::new()
        .route("/healthz", get(healthz))
        .merge(v1)
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .with_state(state)
}

fn json_response(status: u16, body: String) -> Response {
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    (
        status,
        [(CONTENT_TYPE, HeaderValue::from_static("application/json"))],
        body,
    )
        .into_response()
}

fn failure(failure: Failure) -> Response {
    json_response(failure.status, failure.body().to_string())
}

fn database_failed(error: &sea_orm::DbErr) -> Response {
    tracing::error!(error = %error, "database request failed");
    failure(Failure::new(
        500,
        "PROVIDER_ERROR",
        "the sandbox could not reach its database",
    ))
}

async fn respond(state: &ApiState, answer: Result<Answer, sea_orm::DbErr>) -> Response {
    let answer = match answer {
        Ok(answer) => answer,
        Err(error) => return database_failed(&error),
    };
    if answer.slow {
        tokio::time::sleep(state.slow).await;
    }
    let drop_connection = answer.drop_connection;
    let mut response = json_response(answer.status, answer.body);
    if drop_connection {
        response.extensions_mut().insert(DropConnection);
    }
    response
}

async fn authorize(State(state): State<Arc<ApiState>>, request: Request, next: Next) -> Response {
    let expected = format!("{}:", state.secret_key.expose_secret());
    let given = request
        .headers()
        .get(AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Basic "))
        .and_then(|encoded| {
            base64::engine::general_purpose::STANDARD
                .decode(encoded.trim())
                .ok()
        });
    if given.as_deref() != Some(expected.as_bytes()) {
        return failure(Failure::new(
            401,
            "UNAUTHORIZED_KEY",
            "the secret key is missing or wrong (Authorization: Basic base64(\"<secret key>:\"))",
        ));
    }
    next.run(request).await
}

/// The body, at most [`BODY_LIMIT`] bytes.
async fn read_body(body: Body) -> Result<axum::body::Bytes, Failure> {
    axum::body::to_bytes(body, BODY_LIMIT).await.map_err(|_| {
        Failure::new(
            413,
            "INVALID_REQUEST",
            format!("the body must be at most {BODY_LIMIT} bytes"),
        )
    })
}

fn path_param(path: Result<Path<String>, PathRejection>) -> Result<String, Failure> {
    path.map(|Path(value)| value)
        .map_err(|rejection| Failure::invalid(rejection.body_text()))
}

async fn confirm(State(state): State<Arc<ApiState>>, headers: HeaderMap, body: Body) -> Response {
    let key = match domain::idempotency_key(headers.get("idempotency-key")) {
        Ok(key) => key,
        Err(error) => return failure(error),
    };
    let body = match read_body(body).await {
        Ok(body) => body,
        Err(error) => return failure(error),
    };
    let answer = state.store.confirm(&key, &body).await;
    respond(&state, answer).await
}

async fn inquire(
    State(state): State<Arc<ApiState>>,
    order_id: Result<Path<String>, PathRejection>,
) -> Response {
    let order_id = match path_param(order_id) {
        Ok(order_id) => order_id,
        Err(error) => return failure(error),
    };
    let answer = state.store.inquire(&order_id).await;
    respond(&state, answer).await
}

async fn cancel(
    State(state): State<Arc<ApiState>>,
    payment_key: Result<Path<String>, PathRejection>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let payment_key = match path_param(payment_key) {
        Ok(payment_key) => payment_key,
        Err(error) => return failure(error),
    };
    let key = match domain::idempotency_key(headers.get("idempotency-key")) {
        Ok(key) => key,
        Err(error) => return failure(error),
    };
    let body = match read_body(body).await {
        Ok(body) => body,
        Err(error) => return failure(error),
    };
    let answer = state.store.cancel(&payment_key, &key, &body).await;
    respond(&state, answer).await
}

async fn ledger(State(state): State<Arc<ApiState>>) -> Response {
    match state.store.ledger().await {
        Ok(ledger) => json_response(200, ledger.json().to_string()),
        Err(error) => database_failed(&error),
    }
}

async fn order_ledger(
    State(state): State<Arc<ApiState>>,
    order_id: Result<Path<String>, PathRejection>,
) -> Response {
    let order_id = match path_param(order_id) {
        Ok(order_id) => order_id,
        Err(error) => return failure(error),
    };
    match state.store.order_ledger(&order_id).await {
        Ok(body) => json_response(200, body.to_string()),
        Err(error) => database_failed(&error),
    }
}

/// 200 while the database answers, 503 when it does not.
async fn healthz(State(state): State<Arc<ApiState>>) -> Response {
    match state.store.ping().await {
        Ok(()) => json_response(200, json!({"status": "ok"}).to_string()),
        Err(error) => {
            tracing::warn!(error = %error, "health check failed");
            json_response(503, json!({"status": "unavailable"}).to_string())
        }
    }
}

async fn not_found() -> Response {
    failure(Failure::new(404, "NOT_FOUND", "no such route"))
}

async fn method_not_allowed() -> Response {
    failure(Failure::new(
        405,
        "METHOD_NOT_ALLOWED",
        "the route does not take this method",
    ))
}

//! Server-streaming RPCs as Server-Sent Events.
//!
//! Each streamed message becomes one SSE event: `data:` is its canonical JSON, `id:`
//! the value of the field marked `(marquee.api.v1.sse_event_id)`, and `event:` the name
//! of the field set in its oneof (`snapshot`, `change`), if it has one. A reconnecting
//! client's `Last-Event-ID` header fills the request's `last_event_id` field. Browsers'
//! EventSource cannot send headers, so a bearer token may come as `?access_token=`.
//!
//! The upstream stream is read as fast as it produces, into a bounded buffer per
//! client: a client that lets the buffer fill is disconnected (its EventSource
//! reconnects and resumes with `Last-Event-ID`), so it never holds back the shared
//! HTTP/2 connection to the upstream, nor any other client.

use std::convert::Infallible;
use std::time::Instant;

use axum::extract::Request;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures::StreamExt;
use http::header::AUTHORIZATION;
use http::{HeaderValue, StatusCode};
use prost_reflect::{DynamicMessage, FieldDescriptor, ReflectMessage, Value};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;

use crate::app::AppState;
use crate::codec::DynamicCodec;
use crate::error::ApiError;
use crate::proxy::{Upstream, authenticate, forward_metadata, ready, upstream, within_deadline};
use crate::routes::Route;
use crate::transcode::{build_request, response_json};

/// The request field a reconnecting client's `Last-Event-ID` goes to.
pub const LAST_EVENT_ID_FIELD: &str = "last_event_id";
/// The query parameter that may carry the bearer token of an SSE request.
pub const ACCESS_TOKEN_PARAM: &str = "access_token";

pub async fn forward(
    state: &AppState,
    route: &Route,
    bindings: &[(String, String)],
    request: Request,
) -> Result<Response, ApiError> {
    let (mut parts, _body) = request.into_parts();
    if !parts.headers.contains_key(AUTHORIZATION)
        && let Some(token) = query_param(parts.uri.query(), ACCESS_TOKEN_PARAM)
    {
        let value = HeaderValue::from_str(&format!("Bearer {token}"))
            .map_err(|_| ApiError::new(StatusCode::UNAUTHORIZED, "malformed access_token"))?;
        parts.headers.insert(AUTHORIZATION, value);
    }
    authenticate(state, &parts.headers)?;
    let mut message = build_request(route, bindings, parts.uri.query(), &[])
        .map_err(|e| ApiError::bad_request(e.0))?;
    if let Some(last) = parts.headers.get("last-event-id") {
        let last = last
            .to_str()
            .map_err(|_| ApiError::bad_request("Last-Event-ID must be ASCII"))?;
        set_last_event_id(&mut message, last);
    }

    let mut grpc_request = tonic::Request::new(message);
    forward_metadata(&parts.headers, grpc_request.metadata_mut());
    marquee_infra::telemetry::inject_metadata(grpc_request.metadata_mut());
    let Upstream {
        mut grpc,
        path,
        name,
    } = upstream(state, route)?;
    let started = Instant::now();
    // Only the start of the stream is under the deadline; the stream itself is open-ended.
    let call = async {
        ready(&mut grpc, name).await?;
        grpc.server_streaming(grpc_request, path, DynamicCodec::new(route.output.clone()))
            .await
    };
    let mut upstream_stream = within_deadline(state, route, name, started, call)
        .await?
        .into_inner();

    let (tx, rx) = mpsc::channel::<Event>(state.sse_client_buffer);
    let id_field = route.sse_event_id.clone();
    let rpc = route.grpc_path.clone();
    tokio::spawn(async move {
        metrics::gauge!("sse_clients").increment(1.0);
        loop {
            let message = tokio::select! {
                () = tx.closed() => break,
                message = upstream_stream.message() => message,
            };
            let message = match message {
                Ok(Some(message)) => message,
                Ok(None) => break,
                Err(status) => {
                    tracing::debug!(rpc = %rpc, code = ?status.code(), error = %status.message(), "upstream stream ended");
                    break;
                }
            };
            let event = match to_event(&message, id_field.as_ref()) {
                Ok(event) => event,
                Err(error) => {
                    tracing::error!(rpc = %rpc, %error, "stream message serialization failed");
                    break;
                }
            };
            match tx.try_send(event) {
                Ok(()) => {}
                Err(mpsc::error::TrySendError::Full(_)) => {
                    metrics::counter!("sse_clients_dropped_total").increment(1);
                    tracing::info!(rpc = %rpc, "sse client too slow; disconnecting it");
                    break;
                }
                Err(mpsc::error::TrySendError::Closed(_)) => break,
            }
        }
        metrics::gauge!("sse_clients").decrement(1.0);
    });

    let events = ReceiverStream::new(rx).map(Ok::<_, Infallible>);
    let mut response = Sse::new(events)
        .keep_alive(KeepAlive::new().interval(state.sse_keep_alive))
        .into_response();
    // Tells buffering reverse proxies (nginx) to pass events through at once.
    response
        .headers_mut()
        .insert("x-accel-buffering", HeaderValue::from_static("no"));
    Ok(response)
}

fn query_param(query: Option<&str>, name: &str) -> Option<String> {
    url::form_urlencoded::parse(query?.as_bytes())
        .find(|(key, _)| key == name)
        .map(|(_, value)| value.into_owned())
}

/// Fills the request's `last_event_id` unless the query string already set it.
fn set_last_event_id(message: &mut DynamicMessage, last: &str) {
    let Some(field) = message.descriptor().get_field_by_name(LAST_EVENT_ID_FIELD) else {
        return;
    };
    if !message.has_field(&field) {
        message.set_field(&field, Value::String(last.trim().to_owned()));
    }
}

fn to_event(message: &DynamicMessage, id_field: Option<&FieldDescriptor>) -> Result<Event, String> {
    let json = response_json(message, None)?;
    let data = String::from_utf8(json).map_err(|e| e.to_string())?;
    let mut event = Event::default().data(data);
    if let Some(field) = id_field {
        let id = match message.get_field(field).as_ref() {
            Value::I64(v) => v.to_string(),
            Value::U64(v) => v.to_string(),
            Value::I32(v) => v.to_string(),
            Value::U32(v) => v.to_string(),
            Value::String(v) => v.clone(),
            _ => String::new(),
        };
        if !id.is_empty() {
            event = event.id(id);
        }
    }
    let descriptor = message.descriptor();
    let kind = descriptor
        .oneofs()
        .filter(|oneof| !oneof.is_synthetic())
        .flat_map(|oneof| oneof.fields().collect::<Vec<_>>())
        .find(|field| message.has_field(field));
    if let Some(field) = kind {
        event = event.event(field.json_name());
    }
    Ok(event)
}

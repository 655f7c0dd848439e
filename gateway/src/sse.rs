//! Server-streaming RPCs as Server-Sent Events.
//!
//! Each streamed message becomes one SSE event: `data:` is its canonical JSON, `id:`
//! the value of the field marked `(marquee.api.v1.sse_event_id)`, and `event:` the name
//! of the field set in its oneof (`snapshot`, `change`), if it has one. A reconnecting
//! client's `Last-Event-ID` header fills the request's `last_event_id` field. Browsers'
//! EventSource cannot send headers, so a bearer token may come as `?access_token=`.
//!
//! Streams of many clients often carry the same messages (every watcher of an event
//! gets the same change): each distinct encoded message is rendered to JSON once and
//! the rendering shared ([`Renderings`]).
//!
//! The upstream stream is read as fast as it produces, into a bounded buffer per
//! client: a client that lets the buffer fill is disconnected (its EventSource
//! reconnects and resumes with `Last-Event-ID`), so it never holds back the shared
//! HTTP/2 connection to the upstream, nor any other client.

use std::convert::Infallible;

use axum::extract::Request;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures::StreamExt;
use http::header::AUTHORIZATION;
use http::{HeaderValue, StatusCode};
use prost_reflect::{DynamicMessage, ReflectMessage, Value};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;

use crate::codec::RawResponseCodec;
use crate::error::ApiError;
use crate::rendering::render;
use crate::routes::Route;
use crate::state::AppState;
use crate::transcode::build_request;
use crate::upstream::{authenticate, call_upstream};

/// The request field a reconnecting client's `Last-Event-ID` goes to.
const LAST_EVENT_ID_FIELD: &str = "last_event_id";
/// The query parameter that may carry the bearer token of an SSE request.
const ACCESS_TOKEN_PARAM: &str = "access_token";

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

    // Only the start of the stream is under the deadline; the stream itself is open-ended.
    let mut upstream_stream = call_upstream(
        state,
        route,
        &parts.headers,
        message,
        |mut grpc, request, path| async move {
            grpc.server_streaming(request, path, RawResponseCodec).await
        },
    )
    .await?
    .into_inner();

    let (tx, rx) = mpsc::channel::<Event>(state.sse_client_buffer);
    let id_field = route.sse_event_id.clone();
    let output = route.output.clone();
    let renderings = state.sse_renderings.clone();
    let rpc = route.grpc_path.clone();
    let draining = state.draining.clone();
    tokio::spawn(async move {
        metrics::gauge!("sse_clients").increment(1.0);
        loop {
            let message = tokio::select! {
                () = tx.closed() => break,
                // The gateway is shutting down: end the stream, so the drain does not
                // wait on it; the client resumes elsewhere with Last-Event-ID.
                () = draining.cancelled() => break,
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
            let rendered = renderings.get_or_render(message, |bytes| {
                let message = DynamicMessage::decode(output.clone(), bytes)
                    .map_err(|e| format!("decoding stream message: {e}"))?;
                render(&message, id_field.as_ref())
            });
            let event = match rendered {
                Ok(rendered) => rendered.event(),
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

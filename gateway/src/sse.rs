//! Server-streaming RPCs as Server-Sent Events.
//!
//! Each streamed message becomes one SSE event: `data:` is its canonical JSON, `id:`
//! the value of the field marked `(marquee.api.v1.sse_event_id)`, and `event:` the name
//! of the field set in its oneof (`snapshot`, `change`), if it has one. A reconnecting
//! client's `Last-Event-ID` header fills the request's `last_event_id` field. Browsers'
//! EventSource cannot send headers, so a bearer token may come as `?access_token=`.
//!
//! Each distinct encoded message is rendered into its SSE frame once and the frame's
//! bytes shared by every stream that carries it ([`Renderings`]). Routes marked
//! `(marquee.api.v1.shared_stream)` go further: one upstream stream per distinct
//! request, fanned out to its clients in process ([`crate::fanout`]).
//!
//! A client's own upstream stream is read as fast as it produces, into a bounded buffer
//! per client, and a hub's frames wait in a bounded ring: a client that falls that far
//! behind is disconnected (its EventSource reconnects and resumes with `Last-Event-ID`),
//! so it never holds back the shared HTTP/2 connection to the upstream, a hub, nor any
//! other client.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::Request;
use axum::response::Response;
use bytes::Bytes;
use http::header::{AUTHORIZATION, CACHE_CONTROL, CONTENT_TYPE};
use http::{HeaderValue, StatusCode};
use prost_reflect::{DynamicMessage, ReflectMessage, Value};
use tokio::sync::{broadcast, mpsc};
use tokio_util::sync::CancellationToken;

use crate::codec::RawResponseCodec;
use crate::error::ApiError;
use crate::fanout::Subscription;
use crate::rendering::{Rendered, render};
use crate::routes::Route;
use crate::state::AppState;
use crate::transcode::build_request;
use crate::upstream::{authenticate, call_upstream};

/// The request field a reconnecting client's `Last-Event-ID` goes to.
const LAST_EVENT_ID_FIELD: &str = "last_event_id";
/// The query parameter that may carry the bearer token of an SSE request.
const ACCESS_TOKEN_PARAM: &str = "access_token";
/// An SSE comment, sent on an idle stream so that proxies keep it open.
const KEEP_ALIVE: Bytes = Bytes::from_static(b":\n\n");

pub async fn forward(
    state: &Arc<AppState>,
    route: &Arc<Route>,
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
    // The hub is joined before the client's own stream starts, so that the two meet
    // as soon as the own stream is where the hub was then.
    let subscription = if route.shared_stream {
        let mut shared = message.clone();
        shared.clear_field_by_name(LAST_EVENT_ID_FIELD);
        state.sse_hubs.subscribe(state, route, shared)
    } else {
        None
    };
    if let Some(last) = parts.headers.get("last-event-id") {
        let last = last
            .to_str()
            .map_err(|_| ApiError::bad_request("Last-Event-ID must be ASCII"))?;
        set_last_event_id(&mut message, last);
    }

    // Only the start of the stream is under the deadline; the stream itself is open-ended.
    let upstream_stream = call_upstream(
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
    let own = read_own(state.clone(), route.clone(), upstream_stream);

    let body = Body::from_stream(frames(
        own,
        subscription,
        state.sse_client_buffer,
        state.sse_keep_alive,
        state.draining.clone(),
    ));
    let mut response = Response::new(body);
    let headers = response.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("text/event-stream"));
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    // Tells buffering reverse proxies (nginx) to pass events through at once.
    headers.insert("x-accel-buffering", HeaderValue::from_static("no"));
    Ok(response)
}

/// A streamed message's frame, rendered once per distinct message.
pub fn render_frame(
    state: &AppState,
    route: &Route,
    encoded: Bytes,
) -> Result<Arc<Rendered>, String> {
    state.sse_renderings.get_or_render(encoded, |bytes| {
        let message = DynamicMessage::decode(route.output.clone(), bytes)
            .map_err(|e| format!("decoding stream message: {e}"))?;
        render(&message, route.sse_event_id.as_ref())
    })
}

/// The next message of an upstream stream as its frame; `None` once the stream ended or
/// failed, `stop` completed, the gateway began draining, or a message could not be
/// rendered (logged).
pub async fn next_frame(
    state: &AppState,
    route: &Route,
    upstream: &mut tonic::Streaming<Bytes>,
    stop: impl std::future::Future<Output = ()>,
) -> Option<Arc<Rendered>> {
    let message = tokio::select! {
        () = stop => return None,
        // The gateway is shutting down: end the stream, so the drain does not wait on
        // it; the client resumes elsewhere with Last-Event-ID.
        () = state.draining.cancelled() => return None,
        message = upstream.message() => message,
    };
    let message = match message {
        Ok(message) => message?,
        Err(status) => {
            tracing::debug!(rpc = %route.grpc_path, code = ?status.code(), error = %status.message(), "upstream stream ended");
            return None;
        }
    };
    render_frame(state, route, message)
        .map_err(|error| {
            tracing::error!(rpc = %route.grpc_path, %error, "stream message serialization failed");
        })
        .ok()
}

/// Reads the client's own upstream stream as fast as it produces, into a buffer of
/// `sse_client_buffer` frames; the receiver ends when the stream does, or when the
/// client let the buffer fill. Dropping the receiver closes the upstream stream.
fn read_own(
    state: Arc<AppState>,
    route: Arc<Route>,
    mut upstream: tonic::Streaming<Bytes>,
) -> mpsc::Receiver<Arc<Rendered>> {
    let (tx, rx) = mpsc::channel(state.sse_client_buffer);
    tokio::spawn(async move {
        while let Some(frame) = next_frame(&state, &route, &mut upstream, tx.closed()).await {
            match tx.try_send(frame) {
                Ok(()) => {}
                Err(mpsc::error::TrySendError::Full(_)) => {
                    metrics::counter!("sse_clients_dropped_total").increment(1);
                    tracing::info!(rpc = %route.grpc_path, "sse client too slow; disconnecting it");
                    break;
                }
                Err(mpsc::error::TrySendError::Closed(_)) => break,
            }
        }
    });
    rx
}

/// What the client's stream waits for next.
enum Next {
    Own(Option<Arc<Rendered>>),
    Hub(Result<Arc<Rendered>, broadcast::error::RecvError>),
    KeepAlive,
    Drain,
}

/// Counts the open SSE streams while it lives.
struct OpenStream;

impl OpenStream {
    fn new() -> Self {
        metrics::gauge!("sse_clients").increment(1.0);
        Self
    }
}

impl Drop for OpenStream {
    fn drop(&mut self) {
        metrics::gauge!("sse_clients").decrement(1.0);
    }
}

/// The client's byte stream: its own upstream stream's frames until it meets the hub
/// (if its route has one), then the hub's.
fn frames(
    own: mpsc::Receiver<Arc<Rendered>>,
    subscription: Option<Subscription>,
    most_behind: usize,
    keep_alive: std::time::Duration,
    draining: CancellationToken,
) -> impl futures::Stream<Item = Result<Bytes, Infallible>> {
    async_stream::stream! {
        let _open = OpenStream::new();
        let mut own = Some(own);
        let mut hub = subscription;
        // Hub frames received while still on the own stream, oldest first.
        let mut pending: VecDeque<Arc<Rendered>> = VecDeque::new();
        let mut last: Option<i64> = None;
        let idle = tokio::time::sleep(keep_alive);
        tokio::pin!(idle);
        loop {
            let next = tokio::select! {
                biased;
                () = draining.cancelled() => Next::Drain,
                frame = async { own.as_mut()?.recv().await }, if own.is_some() => Next::Own(frame),
                frame = async {
                    match hub.as_mut() {
                        Some(hub) => hub.frames.recv().await,
                        None => std::future::pending().await,
                    }
                }, if hub.is_some() => Next::Hub(frame),
                () = &mut idle => Next::KeepAlive,
            };
            let out = match next {
                Next::Drain => break,
                Next::KeepAlive => Some(KEEP_ALIVE),
                // The own stream ended, or the client fell behind it.
                Next::Own(None) => break,
                Next::Own(Some(frame)) => {
                    last = frame.order.or(last);
                    Some(frame.frame.clone())
                }
                Next::Hub(Ok(frame)) if own.is_some() => {
                    if pending.len() >= most_behind {
                        // The hub ran too far ahead to meet: stay on the own stream.
                        hub = None;
                        pending.clear();
                    } else {
                        pending.push_back(frame);
                    }
                    None
                }
                // Past the meeting point every hub frame is new to the client.
                Next::Hub(Ok(frame)) => Some(frame.frame.clone()),
                Next::Hub(Err(broadcast::error::RecvError::Lagged(_))) if own.is_none() => {
                    metrics::counter!("sse_clients_dropped_total").increment(1);
                    tracing::info!("sse client too slow; disconnecting it");
                    break;
                }
                // The hub ended (or lagged before the client met it): the own stream
                // goes on if the client is still on it, else the client resumes with
                // Last-Event-ID.
                Next::Hub(Err(_)) => {
                    if own.is_none() {
                        break;
                    }
                    hub = None;
                    pending.clear();
                    None
                }
            };
            if let Some(bytes) = out {
                idle.as_mut().reset(tokio::time::Instant::now() + keep_alive);
                yield Ok(bytes);
            }
            // On the own stream with a hub: move over at a boundary both share, the
            // hub's position when the client joined or a hub frame's id, and send the
            // hub frames that followed it.
            if own.is_some()
                && let Some(subscription) = &hub
                && let Some(at) = last
            {
                let after = if subscription.joined_at == Some(at) {
                    Some(0)
                } else {
                    pending
                        .iter()
                        .rposition(|frame| frame.order == Some(at))
                        .map(|boundary| boundary + 1)
                };
                if let Some(after) = after {
                    own = None;
                    metrics::counter!("sse_shared_joins_total").increment(1);
                    for frame in pending.drain(..).skip(after) {
                        yield Ok(frame.frame.clone());
                    }
                }
            }
        }
    }
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

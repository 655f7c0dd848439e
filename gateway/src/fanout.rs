//! One upstream stream per distinct request of a shared route, fanned out in process to
//! every SSE client of that request as pre-framed bytes.
//!
//! A route marked `(marquee.api.v1.shared_stream)` sends every caller of the same
//! request (`last_event_id` aside) the same messages, each with a numeric SSE id larger
//! than the one before, and each continuing exactly where the one before ended. The
//! first client of a request starts a [`Hub`]: a task that reads that request's
//! upstream stream, renders each message once and broadcasts its frame. Ten thousand
//! watchers of one event's seat map cost one upstream stream and one rendering per
//! change; each client is a broadcast receiver and its HTTP connection.
//!
//! A client still needs its own start (a snapshot, or the resume after its
//! `Last-Event-ID`), which only its own upstream stream gives. It reads that stream,
//! and moves over to the hub at a frame boundary the two share: its own last id is the
//! hub's position when it subscribed, or the id of a hub frame it received since. Every
//! hub frame after that boundary continues from it, so nothing is lost and nothing
//! repeated. If the streams never meet (the hub ended, or it ran too far ahead), the
//! client simply stays on its own stream, as a client of an unshared route does.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, Weak};

use bytes::Bytes;
use http::HeaderMap;
use prost::Message as _;
use prost_reflect::DynamicMessage;
use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;

use crate::codec::RawResponseCodec;
use crate::rendering::Rendered;
use crate::routes::Route;
use crate::state::AppState;
use crate::upstream::call_upstream;

/// The hubs of the gateway by route and request, while any client follows them.
#[derive(Debug, Default)]
pub struct Hubs {
    hubs: Mutex<HashMap<HubKey, Weak<Hub>>>,
}

/// The RPC and its request encoded without `last_event_id`.
type HubKey = (String, Bytes);

/// One shared upstream stream. Dropped (and its stream closed) when the last client
/// following it has gone.
#[derive(Debug)]
pub struct Hub {
    state: Mutex<HubState>,
    stop: CancellationToken,
}

#[derive(Debug)]
struct HubState {
    /// `None` once the upstream stream ended: a client that comes later starts a new hub.
    tx: Option<broadcast::Sender<Arc<Rendered>>>,
    /// The id of the last frame broadcast.
    last: Option<i64>,
}

impl Drop for Hub {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

/// A client's place on a hub: the frames broadcast after it subscribed, and the hub's
/// position at that moment.
#[derive(Debug)]
pub struct Subscription {
    pub frames: broadcast::Receiver<Arc<Rendered>>,
    pub joined_at: Option<i64>,
    _hub: Arc<Hub>,
}

impl Hub {
    fn subscribe(self: &Arc<Self>) -> Option<Subscription> {
        let state = self.lock();
        let tx = state.tx.as_ref()?;
        Some(Subscription {
            frames: tx.subscribe(),
            joined_at: state.last,
            _hub: self.clone(),
        })
    }

    fn publish(&self, frame: Arc<Rendered>) {
        let mut state = self.lock();
        if let Some(order) = frame.order {
            state.last = Some(order);
        }
        if let Some(tx) = &state.tx {
            // No receiver right now is fine: the hub ends when its last client drops it.
            let _ = tx.send(frame);
        }
    }

    fn close(&self) {
        self.lock().tx = None;
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HubState> {
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl Hubs {
    /// Follows the hub of `request` on `route`, starting it if no client follows it yet.
    /// `request` must not carry the client's `last_event_id`: the hub starts afresh.
    pub fn subscribe(
        &self,
        state: &Arc<AppState>,
        route: &Arc<Route>,
        request: DynamicMessage,
    ) -> Option<Subscription> {
        let key: HubKey = (route.grpc_path.clone(), request.encode_to_vec().into());
        let mut hubs = self.lock();
        if let Some(subscription) = hubs
            .get(&key)
            .and_then(Weak::upgrade)
            .and_then(|hub| hub.subscribe())
        {
            return Some(subscription);
        }
        let (tx, _) = broadcast::channel(state.sse_client_buffer);
        let hub = Arc::new(Hub {
            state: Mutex::new(HubState {
                tx: Some(tx),
                last: None,
            }),
            stop: CancellationToken::new(),
        });
        hubs.insert(key.clone(), Arc::downgrade(&hub));
        drop(hubs);
        tokio::spawn(run(
            state.clone(),
            route.clone(),
            request,
            key,
            Arc::downgrade(&hub),
            hub.stop.clone(),
        ));
        hub.subscribe()
    }

    fn forget(&self, key: &HubKey, hub: &Weak<Hub>) {
        let mut hubs = self.lock();
        if hubs.get(key).is_some_and(|known| known.ptr_eq(hub)) {
            hubs.remove(key);
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<HubKey, Weak<Hub>>> {
        self.hubs
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Hubs with at least one client.
    #[cfg(test)]
    pub fn live(&self) -> usize {
        self.lock()
            .values()
            .filter(|hub| hub.strong_count() > 0)
            .count()
    }
}

/// The hub's task: reads the upstream stream until it ends, the gateway drains, or the
/// last client has gone.
async fn run(
    state: Arc<AppState>,
    route: Arc<Route>,
    request: DynamicMessage,
    key: HubKey,
    hub: Weak<Hub>,
    stop: CancellationToken,
) {
    metrics::gauge!("sse_shared_streams").increment(1.0);
    // The hub streams for everyone, so it sends no caller's headers.
    let headers = HeaderMap::new();
    let start = call_upstream(
        &state,
        &route,
        &headers,
        request,
        |mut grpc, request, path| async move {
            grpc.server_streaming(request, path, RawResponseCodec).await
        },
    );
    let started = tokio::select! {
        () = stop.cancelled() => None,
        started = start => Some(started),
    };
    match started {
        Some(Ok(response)) => {
            let mut upstream = response.into_inner();
            while let Some(frame) =
                crate::sse::next_frame(&state, &route, &mut upstream, stop.cancelled()).await
            {
                let Some(hub) = hub.upgrade() else { break };
                hub.publish(frame);
            }
        }
        Some(Err(error)) => {
            tracing::debug!(rpc = %route.grpc_path, status = %error.status, error = %error.message, "shared upstream stream refused");
        }
        None => {}
    }
    if let Some(hub) = hub.upgrade() {
        hub.close();
    }
    state.sse_hubs.forget(&key, &hub);
    metrics::gauge!("sse_shared_streams").decrement(1.0);
}

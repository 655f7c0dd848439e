//! What every request handler shares: the route table, the upstream connections, the
//! token keys and the gateway's limits.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tonic::transport::Channel;

use marquee_infra::auth::TokenKeys;

use crate::rendering::Renderings;
use crate::routes::RouteTable;

/// Everything a request handler needs.
pub struct AppState {
    pub routes: Arc<RouteTable>,
    /// One set of lazily connected channels per entry of [`crate::routes::UPSTREAMS`].
    pub channels: Vec<UpstreamChannels>,
    pub keys: TokenKeys,
    pub openapi: bytes::Bytes,
    pub upstream_timeout: Duration,
    pub body_limit: usize,
    /// Events an SSE client may be behind before it is disconnected (its own buffer, and
    /// the ring of a shared stream).
    pub sse_client_buffer: usize,
    /// How often an idle SSE stream gets a keep-alive comment.
    pub sse_keep_alive: Duration,
    /// JSON renderings of streamed messages, shared by every SSE stream.
    pub sse_renderings: Arc<Renderings>,
    /// The shared upstream streams of `shared_stream` routes, by request.
    pub sse_hubs: crate::fanout::Hubs,
    /// Cancelled when the gateway starts shutting down: open SSE streams end then.
    pub draining: CancellationToken,
    /// Which events have a waiting room, for the admission check at the edge.
    pub rooms: crate::admission::RoomCache,
}

/// An upstream's HTTP/2 connections. Calls take turns, so the framing work of many
/// concurrent calls and streams is spread over several connection tasks (one
/// connection is driven by one task, on one core, at each end).
#[derive(Debug)]
pub struct UpstreamChannels {
    connections: Vec<Channel>,
    next: AtomicUsize,
}

impl UpstreamChannels {
    /// Calls take `connections` in turn.
    pub fn new(connections: Vec<Channel>) -> Self {
        Self {
            connections,
            next: AtomicUsize::new(0),
        }
    }

    /// The connection for the next call.
    pub fn pick(&self) -> Channel {
        let turn = self.next.fetch_add(1, Ordering::Relaxed);
        self.connections[turn % self.connections.len()].clone()
    }

    /// One connection, for health checks.
    pub fn first(&self) -> Channel {
        self.connections[0].clone()
    }
}

//! gRPC plumbing shared by servers and clients.

use std::time::Duration;

use tonic::service::Interceptor;
use tonic::transport::{Channel, Endpoint};

/// How long a call through [`lazy_channel`] may take to be answered (a streaming
/// call: until its response headers arrive; the stream itself may stay open).
pub const CALL_TIMEOUT: Duration = Duration::from_secs(10);

/// The one way a Marquee client reaches a gRPC server: connects on first use (so
/// services can start in any order), TCP_NODELAY, HTTP/2 keep-alive pings (so a dead
/// peer is noticed on an idle connection), [`CALL_TIMEOUT`] per call (a call's own
/// shorter deadline wins).
pub fn lazy_channel(url: &str) -> anyhow::Result<Channel> {
    lazy_channel_with_timeout(url, CALL_TIMEOUT)
}

/// [`lazy_channel`] with another per-call timeout (the gateway's `UPSTREAM_TIMEOUT_MS`).
pub fn lazy_channel_with_timeout(url: &str, call_timeout: Duration) -> anyhow::Result<Channel> {
    Ok(Endpoint::from_shared(url.to_owned())?
        .connect_timeout(Duration::from_secs(3))
        .timeout(call_timeout)
        .tcp_nodelay(true)
        .http2_keep_alive_interval(Duration::from_secs(30))
        .keep_alive_timeout(Duration::from_secs(10))
        .keep_alive_while_idle(true)
        .connect_lazy())
}

/// Client interceptor that sends the current span's trace context with every call.
#[derive(Debug, Clone, Copy, Default)]
pub struct PropagateTrace;

impl Interceptor for PropagateTrace {
    fn call(
        &mut self,
        mut request: tonic::Request<()>,
    ) -> Result<tonic::Request<()>, tonic::Status> {
        crate::telemetry::inject_metadata(request.metadata_mut());
        Ok(request)
    }
}

/// Tower layer for gRPC servers: counts requests by method and status code and records
/// their latency (`grpc_server_requests_total`, `grpc_server_request_duration_seconds`).
/// The code is read from the response head, which is where a tonic server puts an
/// error status; a response whose status travels in trailers is counted as OK.
#[derive(Debug, Clone, Copy, Default)]
pub struct GrpcMetricsLayer;

impl<S> tower::Layer<S> for GrpcMetricsLayer {
    type Service = GrpcMetrics<S>;

    fn layer(&self, inner: S) -> Self::Service {
        GrpcMetrics { inner }
    }
}

/// The service made by [`GrpcMetricsLayer`].
#[derive(Debug, Clone)]
pub struct GrpcMetrics<S> {
    inner: S,
}

type BoxFuture<T> = std::pin::Pin<Box<dyn std::future::Future<Output = T> + Send>>;

impl<S, B, RB> tower::Service<http::Request<B>> for GrpcMetrics<S>
where
    S: tower::Service<http::Request<B>, Response = http::Response<RB>>,
    S::Future: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = BoxFuture<Result<S::Response, S::Error>>;

    fn poll_ready(
        &mut self,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        let path = request.uri().path();
        // Only our own RPC names become labels, so a stray path cannot grow them.
        let method = if path.starts_with("/marquee.") || path.starts_with("/grpc.") {
            path.to_owned()
        } else {
            "other".to_owned()
        };
        let started = std::time::Instant::now();
        let future = self.inner.call(request);
        Box::pin(async move {
            let result = future.await;
            let code = result.as_ref().ok().map(|response| {
                response
                    .headers()
                    .get("grpc-status")
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.parse::<i32>().ok())
                    .map_or(tonic::Code::Ok, tonic::Code::from_i32)
            });
            // A name no service serves is "other" too: made-up paths add no labels.
            let method = if code == Some(tonic::Code::Unimplemented) {
                "other".to_owned()
            } else {
                method
            };
            let code = code.map_or_else(|| "TransportError".to_owned(), |c| format!("{c:?}"));
            metrics::counter!("grpc_server_requests_total", "method" => method.clone(), "code" => code)
                .increment(1);
            metrics::histogram!("grpc_server_request_duration_seconds", "method" => method)
                .record(started.elapsed().as_secs_f64());
            result
        })
    }
}

/// The connections a gRPC server accepts on `listener`, with TCP_NODELAY set: without
/// it, small responses and streamed messages wait out Nagle's algorithm plus the
/// peer's delayed ACK (about 40 ms each).
pub fn incoming(
    listener: tokio::net::TcpListener,
) -> impl futures::Stream<Item = std::io::Result<tokio::net::TcpStream>> {
    use futures::StreamExt as _;
    tokio_stream::wrappers::TcpListenerStream::new(listener).map(|stream| {
        if let Ok(stream) = &stream
            && let Err(error) = stream.set_nodelay(true)
        {
            tracing::warn!(%error, "tcp_nodelay not set");
        }
        stream
    })
}

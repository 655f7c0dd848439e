//! The HTTP server: state, tower layers, the extra routes, and start/stop.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use axum::Router;
use axum::extract::{Request, State};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use http::header::CONTENT_TYPE;
use http::{HeaderValue, Method, StatusCode};
use serde_json::json;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;
use tower::ServiceBuilder;
use tower_http::cors::{AllowOrigin, CorsLayer};
use tower_http::limit::RequestBodyLimitLayer;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::trace::TraceLayer;
use tracing::Span;

use marquee_infra::auth::TokenKeys;
use marquee_infra::grpc::lazy_channel_with_timeout;

use crate::config::GatewayConfig;
use crate::error::ApiError;
use crate::ratelimit::RateLimiter;
use crate::routes::{RouteMatch, RouteTable, UPSTREAMS};
use crate::state::{AppState, UpstreamChannels};
use crate::{openapi, proxy, ratelimit, ui};

/// Routes the gateway serves itself, next to the transcoded ones.
const OWN_ROUTES: &[&str] = &[
    "/healthz",
    "/readyz",
    "/openapi.json",
    ui::INDEX,
    ui::SCRIPT,
    ui::STYLE,
];
const READY_TIMEOUT: Duration = Duration::from_secs(2);

/// The full router with every layer, for serving or for in-process tests. With rate
/// limits on, its limiter connects to Redis on the first limited request.
pub fn router(config: &GatewayConfig) -> anyhow::Result<Router> {
    router_draining_on(config, CancellationToken::new(), limiter(config))
}

fn limiter(config: &GatewayConfig) -> Arc<RateLimiter> {
    Arc::new(RateLimiter::new(
        &config.rate_limits,
        TokenKeys::verifier(&config.jwt),
        config.body_limit_bytes,
    ))
}

/// [`router`], whose SSE streams end when `draining` is cancelled.
fn router_draining_on(
    config: &GatewayConfig,
    draining: CancellationToken,
    limiter: Arc<RateLimiter>,
) -> anyhow::Result<Router> {
    let routes = Arc::new(RouteTable::marquee()?);
    let mut channels = Vec::with_capacity(UPSTREAMS.len());
    for upstream in UPSTREAMS {
        let url = config
            .upstream_url(upstream.name)
            .with_context(|| format!("no url configured for upstream {}", upstream.name))?;
        let connections = (0..config.upstream_connections.max(1))
            .map(|_| lazy_channel_with_timeout(url, config.upstream_timeout))
            .collect::<anyhow::Result<Vec<_>>>()
            .with_context(|| format!("bad url for upstream {}", upstream.name))?;
        channels.push(UpstreamChannels::new(connections));
    }
    let openapi = serde_json::to_vec_pretty(&openapi::document(&routes))?;
    // Installs the process's Prometheus recorder, so the layers below record from the
    // first request; the internal metrics listener renders it.
    let _ = marquee_infra::metrics::prometheus();
    limiter.publish_limits();
    let state = Arc::new(AppState {
        routes: routes.clone(),
        channels,
        keys: TokenKeys::verifier(&config.jwt),
        openapi: openapi.into(),
        upstream_timeout: config.upstream_timeout,
        body_limit: config.body_limit_bytes,
        sse_client_buffer: config.sse_client_buffer.max(1),
        sse_keep_alive: config.sse_keep_alive,
        sse_renderings: Arc::default(),
        sse_hubs: Default::default(),
        draining,
        rooms: Default::default(),
    });

    let layers = ServiceBuilder::new()
        // Matches the request against the route table once; the result rides along in
        // the request's extensions for the span, the metrics and the handler.
        .layer(middleware::from_fn_with_state(state.clone(), match_route))
        // Gives every request an `x-request-id` (a UUID unless the client sent one).
        .layer(SetRequestIdLayer::x_request_id(MakeRequestUuid))
        // One span per request, named after the route and parented on `traceparent`.
        .layer(
            TraceLayer::new_for_http()
                .make_span_with(request_span)
                .on_request(())
                .on_response(on_response)
                .on_failure(()),
        )
        // Echoes `x-request-id` on the response.
        .layer(PropagateRequestIdLayer::x_request_id())
        // CORS for browser clients: any origin unless CORS_ALLOWED_ORIGINS narrows it.
        .layer(cors(&config.cors_allowed_origins))
        // Request count and latency per route into Prometheus.
        .layer(middleware::from_fn(record_metrics))
        // Turns the body limit's plain-text 413 into the JSON error shape.
        .layer(middleware::from_fn_with_state(
            state.clone(),
            json_payload_too_large,
        ))
        // Per route class, account and client address limits shared through Redis: 429.
        .layer(middleware::from_fn_with_state(limiter, ratelimit::limit))
        // Caps request bodies (default 1 MiB).
        .layer(RequestBodyLimitLayer::new(config.body_limit_bytes));

    Ok(Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/openapi.json", get(openapi_json))
        .route(ui::INDEX, get(ui::index))
        .route(ui::SCRIPT, get(ui::script))
        .route(ui::STYLE, get(ui::style))
        .fallback(proxy::handle)
        .with_state(state)
        .layer(layers))
}

fn cors(origins: &[String]) -> CorsLayer {
    if origins.is_empty() {
        return CorsLayer::permissive();
    }
    let origins: Vec<HeaderValue> = origins
        .iter()
        .filter_map(|o| HeaderValue::from_str(o).ok())
        .collect();
    CorsLayer::permissive().allow_origin(AllowOrigin::list(origins))
}

async fn match_route(
    State(state): State<Arc<AppState>>,
    mut request: Request,
    next: Next,
) -> Response {
    let matched = state.routes.lookup(request.method(), request.uri().path());
    request.extensions_mut().insert(matched);
    next.run(request).await
}

/// `POST /v1/bookings` for a known route, `GET /healthz` for the gateway's own, `None`
/// otherwise (so unknown paths cannot blow up metric cardinality).
fn route_label(request: &Request) -> Option<String> {
    let matched = request
        .extensions()
        .get::<RouteMatch>()
        .and_then(RouteMatch::route);
    if let Some(route) = matched {
        return Some(route.name());
    }
    let path = request.uri().path();
    (request.method() == Method::GET && OWN_ROUTES.contains(&path)).then(|| format!("GET {path}"))
}

fn request_span(request: &Request) -> Span {
    let method = request.method();
    let path = request.uri().path();
    let label = route_label(request);
    let name = label.clone().unwrap_or_else(|| format!("{method}"));
    let route = label
        .as_deref()
        .and_then(|l| l.split_once(' '))
        .map_or("", |(_, template)| template);
    let request_id = request
        .headers()
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    let span = tracing::info_span!(
        "http.request",
        otel.name = %name,
        otel.kind = "server",
        otel.status_code = tracing::field::Empty,
        http.request.method = %method,
        http.route = %route,
        url.path = %path,
        request_id = %request_id,
        http.response.status_code = tracing::field::Empty,
    );
    marquee_infra::telemetry::set_parent(
        &span,
        marquee_infra::telemetry::extract_http(request.headers()),
    );
    span
}

fn on_response<B>(response: &http::Response<B>, latency: Duration, span: &Span) {
    let status = response.status().as_u16();
    span.record("http.response.status_code", status);
    let latency_ms = u64::try_from(latency.as_millis()).unwrap_or(u64::MAX);
    if response.status().is_server_error() {
        span.record("otel.status_code", "ERROR");
        tracing::warn!(status, latency_ms, "request failed");
    } else {
        tracing::debug!(status, latency_ms, "request finished");
    }
}

async fn record_metrics(request: Request, next: Next) -> Response {
    let method = metric_method(request.method());
    let route = route_label(&request).map_or_else(
        || "unmatched".to_owned(),
        |l| l.split_once(' ').map_or(l.clone(), |(_, t)| t.to_owned()),
    );
    let started = Instant::now();
    let response = next.run(request).await;
    let status = response.status().as_u16().to_string();
    metrics::counter!(
        "gateway_requests_total",
        "route" => route.clone(),
        "method" => method,
        "status" => status
    )
    .increment(1);
    metrics::histogram!("gateway_request_duration_seconds", "route" => route, "method" => method)
        .record(started.elapsed().as_secs_f64());
    response
}

fn metric_method(method: &Method) -> &'static str {
    match *method {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::DELETE => "DELETE",
        Method::PATCH => "PATCH",
        Method::HEAD => "HEAD",
        Method::OPTIONS => "OPTIONS",
        _ => "OTHER",
    }
}

async fn json_payload_too_large(
    State(state): State<Arc<AppState>>,
    request: Request,
    next: Next,
) -> Response {
    let response = next.run(request).await;
    let is_json = response
        .headers()
        .get(CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/json"));
    if response.status() == StatusCode::PAYLOAD_TOO_LARGE && !is_json {
        return ApiError::payload_too_large(state.body_limit).into_response();
    }
    response
}

async fn healthz() -> Response {
    axum::Json(json!({"status": "ok"})).into_response()
}

async fn readyz(State(state): State<Arc<AppState>>) -> Response {
    let checks = UPSTREAMS.iter().zip(&state.channels).map(|(upstream, channel)| async move {
        let mut client = HealthClient::new(channel.first());
        let request = HealthCheckRequest { service: String::new() };
        let answer = tokio::time::timeout(READY_TIMEOUT, client.check(request)).await;
        let state = match answer {
            Ok(Ok(response)) => match ServingStatus::try_from(response.get_ref().status) {
                Ok(status) => status.as_str_name().to_owned(),
                Err(_) => "UNKNOWN".to_owned(),
            },
            Ok(Err(status)) => {
                tracing::warn!(upstream = upstream.name, grpc.code = ?status.code(), error = %status.message(), "readiness check failed");
                "UNREACHABLE".to_owned()
            }
            Err(_) => {
                tracing::warn!(upstream = upstream.name, "readiness check timed out");
                "TIMEOUT".to_owned()
            }
        };
        (upstream.name, state)
    });
    let results = futures::future::join_all(checks).await;
    let ready = results.iter().all(|(_, state)| state == "SERVING");
    let upstreams: serde_json::Map<String, serde_json::Value> = results
        .into_iter()
        .map(|(name, state)| (name.to_owned(), json!(state)))
        .collect();
    let (status, word) = if ready {
        (StatusCode::OK, "ok")
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "unavailable")
    };
    (
        status,
        axum::Json(json!({"status": word, "upstreams": upstreams})),
    )
        .into_response()
}

async fn openapi_json(State(state): State<Arc<AppState>>) -> Response {
    (
        [(CONTENT_TYPE, HeaderValue::from_static("application/json"))],
        state.openapi.clone(),
    )
        .into_response()
}

/// A bound, not yet running gateway.
pub struct Application {
    listener: TcpListener,
    draining: CancellationToken,
    metrics_listener: Option<TcpListener>,
    router: Router,
    port: u16,
}

impl Application {
    /// Builds the route table and upstream channels (connected lazily, so upstreams
    /// need not be up yet) and binds the listener (port 0 picks a free port).
    pub async fn build(config: GatewayConfig) -> anyhow::Result<Self> {
        let draining = CancellationToken::new();
        let limiter = limiter(&config);
        // Before the first request, so every request is limited from the start (if
        // Redis is away, requests go through and the limiter keeps trying).
        limiter.connect().await;
        let router = router_draining_on(&config, draining.clone(), limiter)?;
        marquee_infra::metrics::build_info("gateway", env!("CARGO_PKG_VERSION"));
        let listener = TcpListener::bind(config.listen_addr)
            .await
            .with_context(|| format!("binding {}", config.listen_addr))?;
        let port = listener.local_addr()?.port();
        let metrics_listener = match config.metrics_addr {
            Some(addr) => Some(
                TcpListener::bind(addr)
                    .await
                    .with_context(|| format!("binding the metrics listener {addr}"))?,
            ),
            None => None,
        };
        tracing::info!(
            addr = %config.listen_addr,
            port,
            booking_url = %config.booking_url,
            pay_url = %config.pay_url,
            body_limit_bytes = config.body_limit_bytes,
            upstream_timeout_ms = u64::try_from(config.upstream_timeout.as_millis()).unwrap_or(u64::MAX),
            rate_limits = config.rate_limits.enabled,
            "gateway listening"
        );
        Ok(Self {
            listener,
            draining,
            metrics_listener,
            router,
            port,
        })
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// The internal `/metrics` listener's port, if it has one.
    pub fn metrics_port(&self) -> Option<u16> {
        self.metrics_listener
            .as_ref()
            .and_then(|l| l.local_addr().ok())
            .map(|a| a.port())
    }

    /// Serves until SIGTERM or Ctrl-C, then drains in-flight requests.
    pub async fn run_until_stopped(self) -> anyhow::Result<()> {
        self.run_with_shutdown(marquee_infra::shutdown_signal())
            .await
    }

    /// Serves until `shutdown` resolves, then drains in-flight requests.
    pub async fn run_with_shutdown(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        let stop = CancellationToken::new();
        let metrics = self.metrics_listener.map(|listener| {
            if let Ok(addr) = listener.local_addr() {
                tracing::info!(%addr, "serving metrics");
            }
            tokio::spawn(marquee_infra::metrics::serve(
                listener,
                stop.clone().cancelled_owned(),
            ))
        });
        // Open SSE streams end with the signal, so the drain has none left to wait for.
        let draining = self.draining;
        let signal = async move {
            shutdown.await;
            draining.cancel();
        };
        // With the peer's address in each request, for the per-address rate limits.
        let service = self
            .router
            .into_make_service_with_connect_info::<SocketAddr>();
        let served = axum::serve(self.listener, service)
            .with_graceful_shutdown(signal)
            .await
            .context("serving http");
        stop.cancel();
        if let Some(metrics) = metrics {
            match metrics.await {
                Ok(Err(error)) => tracing::warn!(%error, "metrics server failed"),
                Err(error) => tracing::warn!(%error, "metrics server panicked"),
                Ok(Ok(())) => {}
            }
        }
        served?;
        tracing::info!("gateway stopped");
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use axum::body::Body;
    use http_body_util::BodyExt as _;
    use serde_json::Value as Json;
    use tower::ServiceExt as _;

    use super::*;

    const SECRET: &str = "test-secret";

    /// Upstreams on a closed loopback port: nothing listens, nothing is contacted
    /// unless a request gets past the gateway's own checks.
    fn app() -> Router {
        let mut config = GatewayConfig::local("http://127.0.0.1:1", "http://127.0.0.1:1", SECRET);
        config.body_limit_bytes = 64;
        config.upstream_timeout = Duration::from_secs(5);
        router(&config).expect("router builds")
    }

    async fn send(request: http::Request<Body>) -> (StatusCode, http::HeaderMap, Json) {
        let response = app().oneshot(request).await.expect("infallible");
        let status = response.status();
        let headers = response.headers().clone();
        let bytes = response
            .into_body()
            .collect()
            .await
            .expect("body")
            .to_bytes();
        let json = serde_json::from_slice(&bytes)
            .unwrap_or(Json::String(String::from_utf8_lossy(&bytes).into()));
        (status, headers, json)
    }

    fn request(method: Method, uri: &str) -> http::request::Builder {
        http::Request::builder().method(method).uri(uri)
    }

    fn assert_error_shape(body: &Json, code: i32) {
        assert_eq!(body["code"], code, "{body}");
        assert!(body["message"].is_string(), "{body}");
        assert_eq!(body["details"], Json::Array(vec![]), "{body}");
    }

    #[tokio::test]
    async fn unknown_path_is_404_and_wrong_method_405() {
        let (status, headers, body) = send(
            request(Method::GET, "/v1/nope")
                .body(Body::empty())
                .expect("request"),
        )
        .await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        assert_error_shape(&body, 5);
        assert!(headers.contains_key("x-request-id"));

        let (status, headers, body) = send(
            request(Method::PATCH, "/v1/bookings")
                .body(Body::empty())
                .expect("request"),
        )
        .await;
        assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED);
        assert_error_shape(&body, 5);
        assert!(headers["allow"].to_str().expect("ascii").contains("POST"));
    }

    #[tokio::test]
    async fn bad_tokens_are_refused_at_the_edge() {
        for value in ["Bearer not-a-jwt", "Basic abc"] {
            let (status, headers, body) = send(
                request(Method::GET, "/v1/me")
                    .header("authorization", value)
                    .body(Body::empty())
                    .expect("request"),
            )
            .await;
            assert_eq!(status, StatusCode::UNAUTHORIZED, "{value}");
            assert_error_shape(&body, 16);
            assert_eq!(headers["www-authenticate"], "Bearer");
        }
    }

    #[tokio::test]
    async fn malformed_bodies_are_400() {
        let cases: [(&str, Option<&str>); 4] = [
            ("{", Some("application/json")),
            ("[]", Some("application/json")),
            (r#"{"unknownField": 1}"#, None),
            (r#"{"holdId": "h"}"#, Some("text/plain")),
        ];
        for (body, content_type) in cases {
            let mut builder = request(Method::POST, "/v1/bookings");
            if let Some(content_type) = content_type {
                builder = builder.header("content-type", content_type);
            }
            let (status, _, json) = send(builder.body(Body::from(body)).expect("request")).await;
            assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
            assert_error_shape(&json, 3);
        }
        let (status, _, json) = send(
            request(Method::GET, "/v1/events?pageSize=lots")
                .body(Body::empty())
                .expect("request"),
        )
        .await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert_error_shape(&json, 3);
        let (status, _, _) = send(
            request(Method::GET, "/v1/events/%FF")
                .body(Body::empty())
                .expect("request"),
        )
        .await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
    }

    #[tokio::test]
    async fn oversized_bodies_are_413_json() {
        let big = format!(r#"{{"holdId": "{}"}}"#, "x".repeat(200));
        // With a content-length, the limit layer answers before the handler runs.
        let (status, _, json) = send(
            request(Method::POST, "/v1/bookings")
                .header("content-type", "application/json")
                .header("content-length", big.len())
                .body(Body::from(big.clone()))
                .expect("request"),
        )
        .await;
        assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
        assert_error_shape(&json, 3);
        // Streamed without a length, reading the body trips the limit.
        let stream = futures::stream::iter(vec![Ok::<_, std::io::Error>(bytes::Bytes::from(big))]);
        let (status, _, json) = send(
            request(Method::POST, "/v1/bookings")
                .header("content-type", "application/json")
                .body(Body::from_stream(stream))
                .expect("request"),
        )
        .await;
        assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
        assert_error_shape(&json, 3);
    }

    #[tokio::test]
    async fn unreachable_upstream_is_503() {
        let (status, _, json) = send(
            request(Method::GET, "/v1/events/e-1")
                .body(Body::empty())
                .expect("request"),
        )
        .await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{json}");
        assert_eq!(json["code"], 14);
        assert!(
            json["message"]
                .as_str()
                .is_some_and(|m| m.starts_with("upstream booking is unavailable")),
            "{json}"
        );
    }

    #[tokio::test]
    async fn own_routes() {
        let (status, headers, json) = send(
            request(Method::GET, "/healthz")
                .body(Body::empty())
                .expect("request"),
        )
        .await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(json, json!({"status": "ok"}));
        assert!(headers.contains_key("x-request-id"));

        let (status, _, json) = send(
            request(Method::GET, "/readyz")
                .body(Body::empty())
                .expect("request"),
        )
        .await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(json["status"], "unavailable");
        assert_eq!(json["upstreams"]["booking"], "UNREACHABLE");

        let (status, _, json) = send(
            request(Method::GET, "/openapi.json")
                .body(Body::empty())
                .expect("request"),
        )
        .await;
        assert_eq!(status, StatusCode::OK);
        assert!(json["paths"]["/v1/bookings"]["post"].is_object());

        let _ = send(
            request(Method::GET, "/v1/nope")
                .body(Body::empty())
                .expect("request"),
        )
        .await;
        // The public port serves no metrics; the recorder has the requests.
        let (status, _, _) = send(
            request(Method::GET, "/metrics")
                .body(Body::empty())
                .expect("request"),
        )
        .await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        assert!(
            marquee_infra::metrics::prometheus()
                .render()
                .contains("gateway_requests_total")
        );
    }

    #[tokio::test]
    async fn metrics_are_served_only_on_the_internal_listener() {
        let mut config = GatewayConfig::local("http://127.0.0.1:1", "http://127.0.0.1:1", SECRET);
        config.metrics_addr = Some(std::net::SocketAddr::from(([127, 0, 0, 1], 0)));
        let app = Application::build(config).await.expect("gateway builds");
        let (public, internal) = (app.port(), app.metrics_port().expect("a metrics port"));
        let stop = tokio_util::sync::CancellationToken::new();
        let served = tokio::spawn(app.run_with_shutdown(stop.clone().cancelled_owned()));
        let client = reqwest::Client::new();
        let get = |port: u16| {
            let client = client.clone();
            async move {
                client
                    .get(format!("http://127.0.0.1:{port}/metrics"))
                    .send()
                    .await
                    .expect("the gateway answers")
            }
        };
        assert_eq!(get(public).await.status(), reqwest::StatusCode::NOT_FOUND);
        let answer = get(internal).await;
        assert_eq!(answer.status(), reqwest::StatusCode::OK);
        let text = answer.text().await.expect("metrics text");
        assert!(text.contains("gateway_requests_total"), "{text}");
        stop.cancel();
        served.await.expect("joined").expect("stopped cleanly");
    }

    #[tokio::test]
    async fn request_id_is_kept_and_cors_answers_preflight() {
        let (_, headers, _) = send(
            request(Method::GET, "/healthz")
                .header("x-request-id", "abc-123")
                .body(Body::empty())
                .expect("request"),
        )
        .await;
        assert_eq!(headers["x-request-id"], "abc-123");

        let (status, headers, _) = send(
            request(Method::OPTIONS, "/v1/bookings")
                .header("origin", "https://app.example")
                .header("access-control-request-method", "POST")
                .body(Body::empty())
                .expect("request"),
        )
        .await;
        assert!(status.is_success());
        assert!(headers.contains_key("access-control-allow-origin"));
    }

    #[tokio::test]
    async fn application_binds_an_ephemeral_port() {
        let config = GatewayConfig::local("http://127.0.0.1:1", "http://127.0.0.1:1", SECRET);
        let app = Application::build(config)
            .await
            .expect("builds without upstreams");
        assert_ne!(app.port(), 0);
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(app.run_with_shutdown(async {
            let _ = rx.await;
        }));
        let _ = tx.send(());
        server.await.expect("joins").expect("stops cleanly");
    }
}

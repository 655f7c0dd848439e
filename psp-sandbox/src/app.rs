//! The server: database, tower layers, and the HTTP/1 connections, served by hyper
//! directly so that a drop-the-connection card can close its connection unanswered.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use axum::Router;
use axum::extract::Request;
use axum::response::{IntoResponse as _, Response};
use hyper::server::conn::http1;
use hyper_util::rt::TokioIo;
use hyper_util::server::graceful::GracefulShutdown;
use sea_orm::DatabaseConnection;
use tokio::net::TcpListener;
use tower::{ServiceBuilder, ServiceExt as _};
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::trace::TraceLayer;
use tracing::Span;

use crate::api::{self, ApiState, DropConnection};
use crate::config::PspConfig;
use crate::domain::Failure;
use crate::migration::Migrator;
use crate::store::Store;

/// How long a stop waits for in-flight requests (a `tok_slow` answer among them).
const DRAIN: Duration = Duration::from_secs(30);

/// The error a request's service returns instead of its response when the connection
/// must be dropped: hyper then closes the connection without writing anything.
#[derive(Debug, thiserror::Error)]
#[error("connection dropped without an answer (a test card asked for it)")]
pub struct ConnectionDropped;

/// A bound, migrated, not yet running sandbox.
pub struct Application {
    listener: TcpListener,
    router: Router,
    addr: SocketAddr,
    db: DatabaseConnection,
}

impl Application {
    /// Creates the database if missing, migrates it, and binds the listener (port 0
    /// picks a free port).
    pub async fn build(config: PspConfig) -> anyhow::Result<Self> {
        let db = marquee_infra::db::connect(&config.database_url, config.db_max_connections)
            .await
            .context("connecting to the sandbox's database")?;
        marquee_infra::db::migrate::<Migrator>(&db).await?;
        let state = Arc::new(ApiState {
            store: Store::new(db.clone()),
            secret_key: config.secret_key.clone(),
            slow: config.slow,
        });
        let layers = ServiceBuilder::new()
            // Gives every request an `x-request-id` (a UUID unless the client sent one).
            .layer(SetRequestIdLayer::x_request_id(MakeRequestUuid))
            // One span per request, with method, path and request id; logs each answer.
            .layer(
                TraceLayer::new_for_http()
                    .make_span_with(request_span)
                    .on_request(())
                    .on_response(on_response)
                    .on_failure(()),
            )
            // Echoes `x-request-id` on the response.
            .layer(PropagateRequestIdLayer::x_request_id())
            // A panicking handler answers 500 PROVIDER_ERROR JSON instead of a dead connection.
            .layer(CatchPanicLayer::custom(panicked));
        let router = api::routes(state).layer(layers);
        let listener = TcpListener::bind(config.listen_addr)
            .await
            .with_context(|| format!("binding {}", config.listen_addr))?;
        let addr = listener.local_addr()?;
        tracing::info!(
            %addr,
            slow_ms = u64::try_from(config.slow.as_millis()).unwrap_or(u64::MAX),
            default_key = config.uses_default_key(),
            "psp sandbox listening"
        );
        Ok(Self {
            listener,
            router,
            addr,
            db,
        })
    }

    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The database pool (tests read rows through it).
    pub fn db(&self) -> &DatabaseConnection {
        &self.db
    }

    /// Serves until SIGTERM or Ctrl-C, then drains in-flight requests.
    pub async fn run_until_stopped(self) -> anyhow::Result<()> {
        self.run_with_shutdown(marquee_infra::shutdown_signal())
            .await
    }

    /// Serves until `shutdown` resolves, then stops accepting and drains in-flight
    /// requests (for at most 30 s).
    pub async fn run_with_shutdown(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        let graceful = GracefulShutdown::new();
        let mut shutdown = std::pin::pin!(shutdown);
        loop {
            let (stream, peer) = tokio::select! {
                accepted = self.listener.accept() => match accepted {
                    Ok(accepted) => accepted,
                    Err(error) => {
                        // Out of file descriptors and the like: wait, then go on.
                        tracing::warn!(error = %error, "accepting a connection failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                },
                () = &mut shutdown => break,
            };
            let _ = stream.set_nodelay(true);
            let router = self.router.clone();
            let service = hyper::service::service_fn(move |request: Request<_>| {
                let router = router.clone();
                async move {
                    let response = router
                        .oneshot(request)
                        .await
                        .unwrap_or_else(|never| match never {});
                    if response.extensions().get::<DropConnection>().is_some() {
                        return Err(ConnectionDropped);
                    }
                    Ok(response)
                }
            });
            let connection = graceful
                .watch(http1::Builder::new().serve_connection(TokioIo::new(stream), service));
            tokio::spawn(async move {
                if let Err(error) = connection.await {
                    let dropped = std::error::Error::source(&error)
                        .is_some_and(|source| source.is::<ConnectionDropped>());
                    if dropped {
                        tracing::info!(%peer, "connection dropped without an answer");
                    } else {
                        tracing::debug!(%peer, error = %error, "connection failed");
                    }
                }
            });
        }
        drop(self.listener);
        tracing::info!("psp sandbox stopping, draining requests");
        if tokio::time::timeout(DRAIN, graceful.shutdown())
            .await
            .is_err()
        {
            tracing::warn!("requests still running after the drain, stopping anyway");
        }
        tracing::info!("psp sandbox stopped");
        Ok(())
    }
}

fn request_span(request: &Request) -> Span {
    let request_id = request
        .headers()
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    tracing::info_span!(
        "http.request",
        http.request.method = %request.method(),
        url.path = %request.uri().path(),
        request_id = %request_id,
    )
}

fn on_response<B>(response: &http::Response<B>, latency: Duration, _span: &Span) {
    let status = response.status().as_u16();
    let latency_ms = u64::try_from(latency.as_millis()).unwrap_or(u64::MAX);
    if response.extensions().get::<DropConnection>().is_some() {
        tracing::info!(latency_ms, "answer withheld, dropping the connection");
    } else if response.status().is_server_error() {
        tracing::warn!(status, latency_ms, "request failed");
    } else {
        tracing::info!(status, latency_ms, "request finished");
    }
}

fn panicked(_: Box<dyn std::any::Any + Send + 'static>) -> Response {
    tracing::error!("a request handler panicked");
    let failure = Failure::new(500, "PROVIDER_ERROR", "the sandbox failed");
    (
        http::StatusCode::INTERNAL_SERVER_ERROR,
        axum::Json(failure.body()),
    )
        .into_response()
}

//! Wiring: the bus subscription, the hubs, gRPC and metrics servers.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use marquee_infra::auth::TokenKeys;
use marquee_infra::bus::{Bus, Envelope};
use marquee_infra::grpc::{PropagateTrace, lazy_channel};
use marquee_infra::{grpc, metrics, telemetry};
use marquee_proto::booking::booking_service_client::BookingServiceClient;
use marquee_proto::booking::catalog_service_client::CatalogServiceClient;
use marquee_proto::booking::{BookingChanges, SeatChanges};
use marquee_proto::realtime::realtime_service_server::RealtimeServiceServer;
use prost::Message;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::bookings::BookingHub;
use crate::config::RealtimeConfig;
use crate::grpc::RealtimeApi;
use crate::seats::SeatHub;
pub use marquee_proto::kinds::{BOOKINGS_CHANGED, SEATS_CHANGED};

/// How long start-up waits for RabbitMQ.
const BUS_CONNECT_WAIT: Duration = Duration::from_secs(10);

/// A started realtime-svc: subscribed and bound (not yet serving gRPC).
pub struct Application {
    listener: TcpListener,
    port: u16,
    metrics_listener: Option<TcpListener>,
    bus: Bus,
    api: RealtimeApi,
    stop: CancellationToken,
}

impl Application {
    pub async fn build(config: RealtimeConfig) -> anyhow::Result<Self> {
        let metrics_listener = match config.metrics_addr {
            Some(addr) => {
                metrics::prometheus();
                Some(TcpListener::bind(addr).await?)
            }
            None => None,
        };
        let channel = lazy_channel(&config.booking_url)?;
        let seats = SeatHub::new(
            CatalogServiceClient::with_interceptor(channel.clone(), PropagateTrace),
            config.resume_buffer,
            config.gap_timeout,
            config.idle_evict,
        );
        let bookings = BookingHub::new(BookingServiceClient::with_interceptor(
            channel,
            PropagateTrace,
        ));
        let stop = CancellationToken::new();
        seats.spawn_janitor(stop.clone());
        seats.spawn_version_check(config.version_check, stop.clone());

        let bus = Bus::connect(config.bus.clone(), BUS_CONNECT_WAIT).await?;
        let on_subscribed = {
            let seats = seats.clone();
            Arc::new(move || seats.on_resubscribed())
        };
        let handler = {
            let seats = seats.clone();
            let bookings = bookings.clone();
            Arc::new(move |envelope: Envelope| dispatch(&seats, &bookings, &envelope))
        };
        bus.subscribe(&[SEATS_CHANGED, BOOKINGS_CHANGED], on_subscribed, handler)
            .await?;

        let listener = TcpListener::bind(config.grpc_addr).await?;
        let port = listener.local_addr()?.port();
        tracing::info!(port, prefix = %config.bus.prefix, "realtime-svc started");
        Ok(Self {
            listener,
            port,
            metrics_listener,
            bus,
            api: RealtimeApi {
                seats,
                bookings,
                keys: TokenKeys::verifier(&config.jwt),
            },
            stop,
        })
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// Serves until SIGTERM or Ctrl-C.
    pub async fn run_until_stopped(self) -> anyhow::Result<()> {
        self.run_with_shutdown(marquee_infra::shutdown_signal())
            .await
    }

    /// Serves until `shutdown` resolves; open streams end with the server.
    pub async fn run_with_shutdown(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        let stop = self.stop.clone();
        tokio::spawn({
            let stop = stop.clone();
            async move {
                shutdown.await;
                stop.cancel();
            }
        });
        let metrics_server = self
            .metrics_listener
            .map(|listener| tokio::spawn(metrics::serve(listener, stop.clone().cancelled_owned())));
        let health = grpc::health_service(&["marquee.realtime.v1.RealtimeService"]).await;
        let served = tonic::transport::Server::builder()
            // Watchers are long-lived streams: no cap on how many share a connection.
            .max_concurrent_streams(None)
            // One span per request, named after the RPC and parented on the caller's trace.
            .layer(telemetry::grpc_trace_layer())
            // Request counts by method and code, and latency histograms.
            .layer(marquee_infra::grpc::GrpcMetricsLayer)
            .add_service(health)
            .add_service(RealtimeServiceServer::new(self.api))
            .serve_with_incoming_shutdown(
                marquee_infra::grpc::incoming(self.listener),
                stop.clone().cancelled_owned(),
            )
            .await;
        stop.cancel();
        self.bus.shutdown();
        if let Some(server) = metrics_server {
            match server.await {
                Ok(Err(error)) => tracing::warn!(%error, "metrics server failed"),
                Err(error) => tracing::warn!(%error, "metrics server panicked"),
                Ok(Ok(())) => {}
            }
        }
        tracing::info!("realtime-svc stopped");
        served.map_err(Into::into)
    }
}

fn dispatch(seats: &SeatHub, bookings: &BookingHub, envelope: &Envelope) {
    match envelope.kind.as_str() {
        SEATS_CHANGED => match SeatChanges::decode(envelope.payload.as_slice()) {
            Ok(changes) => seats.on_changes(changes),
            Err(error) => tracing::warn!(%error, "malformed seats.changed; dropped"),
        },
        BOOKINGS_CHANGED => match BookingChanges::decode(envelope.payload.as_slice()) {
            Ok(changes) => bookings.on_changes(changes),
            Err(error) => tracing::warn!(%error, "malformed bookings.changed; dropped"),
        },
        other => tracing::debug!(kind = other, "notification ignored"),
    }
}

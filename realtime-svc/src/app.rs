//! Wiring: the bus subscription, the hubs, gRPC and metrics servers.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use marquee_infra::auth::TokenKeys;
use marquee_infra::bus::{Bus, Envelope};
use marquee_infra::grpc::{PropagateTrace, lazy_channel};
use marquee_infra::service::{Dependency, Shell};
use marquee_proto::booking::booking_service_client::BookingServiceClient;
use marquee_proto::booking::catalog_service_client::CatalogServiceClient;
use marquee_proto::booking::{BookingChanges, SeatChanges};
use marquee_proto::realtime::realtime_service_server::RealtimeServiceServer;
use prost::Message;
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
    shell: Shell,
    port: u16,
    bus: Bus,
    api: RealtimeApi,
    stop: CancellationToken,
}

impl Application {
    pub async fn build(config: RealtimeConfig) -> anyhow::Result<Self> {
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

        let shell = Shell::bind("realtime-svc", config.grpc_addr, config.metrics_addr).await?;
        let port = shell.local_addr()?.port();
        tracing::info!(port, prefix = %config.bus.prefix, "realtime-svc started");
        Ok(Self {
            shell,
            port,
            bus,
            api: RealtimeApi {
                seats,
                bookings,
                keys: TokenKeys::verifier(&config.jwt),
                draining: stop.clone(),
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

    /// Serves until `shutdown` resolves; open streams end with the server. Health is
    /// SERVING while RabbitMQ (where the changes come from) answers.
    pub async fn run_with_shutdown(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        let Self {
            mut shell,
            bus,
            api,
            stop,
            ..
        } = self;
        // Open watch streams end when `stop` is cancelled (`RealtimeApi::draining`), so
        // cancel it with the signal: the drain then has no stream left to wait for.
        let signal = {
            let stop = stop.clone();
            async move {
                shutdown.await;
                stop.cancel();
            }
        };
        shell
            .add_service(RealtimeServiceServer::new(api))
            .reflect(marquee_proto::DESCRIPTOR_SET)
            .depends_on(Dependency::bus(bus.clone()))
            .on_stop(move || {
                stop.cancel();
                bus.shutdown();
            });
        shell.serve(signal).await
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

//! Wiring: the bus subscription, the hubs, gRPC and metrics servers.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use marquee_infra::auth::TokenKeys;
use marquee_infra::bus::{Bus, BusError, Envelope};
use marquee_infra::grpc::{PropagateTrace, lazy_channel};
use marquee_infra::service::{Dependency, Shell};
use marquee_proto::booking::auction_service_client::AuctionServiceClient;
use marquee_proto::booking::booking_service_client::BookingServiceClient;
use marquee_proto::booking::catalog_service_client::CatalogServiceClient;
use marquee_proto::booking::waiting_room_service_client::WaitingRoomServiceClient;
use marquee_proto::booking::{AuctionChanged, BookingChanges, QueueAdvanced, SeatChanges};
use marquee_proto::realtime::realtime_service_server::RealtimeServiceServer;
use prost::Message;
use tokio_util::sync::CancellationToken;

use crate::auctions::AuctionHub;
use crate::bookings::BookingHub;
use crate::config::RealtimeConfig;
use crate::grpc::RealtimeApi;
use crate::queue::QueueHub;
use crate::seats::SeatHub;
pub use marquee_proto::kinds::{AUCTION_CHANGED, BOOKINGS_CHANGED, QUEUE_ADVANCED, SEATS_CHANGED};

/// How long start-up waits for RabbitMQ.
const BUS_CONNECT_WAIT: Duration = Duration::from_secs(10);

/// The longest a queue or auction watcher goes without re-reading its ticket or
/// auction from booking-svc (`queue.advanced` and `auction.changed` may be lost).
const QUEUE_REFRESH: Duration = Duration::from_secs(5);

/// The hubs the bus's notifications are dispatched to.
#[derive(Clone)]
struct Hubs {
    seats: Arc<SeatHub>,
    bookings: Arc<BookingHub>,
    queues: Arc<QueueHub>,
    auctions: Arc<AuctionHub>,
}

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
            channel.clone(),
            PropagateTrace,
        ));
        let queues = QueueHub::new(
            WaitingRoomServiceClient::with_interceptor(channel.clone(), PropagateTrace),
            QUEUE_REFRESH,
        );
        let auctions = AuctionHub::new(
            AuctionServiceClient::with_interceptor(channel, PropagateTrace),
            QUEUE_REFRESH,
        );
        let stop = CancellationToken::new();
        seats.spawn_janitor(stop.clone());
        seats.spawn_version_check(config.version_check, stop.clone());

        let bus = Bus::connect(config.bus.clone(), BUS_CONNECT_WAIT).await?;
        let hubs = Hubs {
            seats,
            bookings,
            queues,
            auctions,
        };
        subscribe(&bus, &hubs).await?;

        let shell = Shell::bind("realtime-svc", config.grpc_addr, config.metrics_addr).await?;
        let port = shell.local_addr()?.port();
        tracing::info!(port, prefix = %config.bus.prefix, "realtime-svc started");
        Ok(Self {
            shell,
            port,
            bus,
            api: RealtimeApi {
                seats: hubs.seats,
                bookings: hubs.bookings,
                queues: hubs.queues,
                auctions: hubs.auctions,
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

/// Subscribes this replica to the notifications the hubs follow.
async fn subscribe(bus: &Bus, hubs: &Hubs) -> Result<(), BusError> {
    let on_subscribed = {
        let seats = hubs.seats.clone();
        Arc::new(move || seats.on_resubscribed())
    };
    let handler = {
        let hubs = hubs.clone();
        Arc::new(move |envelope: Envelope| dispatch(&hubs, &envelope))
    };
    bus.subscribe(
        &[
            SEATS_CHANGED,
            BOOKINGS_CHANGED,
            QUEUE_ADVANCED,
            AUCTION_CHANGED,
        ],
        on_subscribed,
        handler,
    )
    .await
}

fn dispatch(hubs: &Hubs, envelope: &Envelope) {
    match envelope.kind.as_str() {
        SEATS_CHANGED => match SeatChanges::decode(envelope.payload.as_slice()) {
            Ok(changes) => hubs.seats.on_changes(changes),
            Err(error) => tracing::warn!(%error, "malformed seats.changed; dropped"),
        },
        BOOKINGS_CHANGED => match BookingChanges::decode(envelope.payload.as_slice()) {
            Ok(changes) => hubs.bookings.on_changes(changes),
            Err(error) => tracing::warn!(%error, "malformed bookings.changed; dropped"),
        },
        QUEUE_ADVANCED => match QueueAdvanced::decode(envelope.payload.as_slice()) {
            Ok(advance) => hubs.queues.on_advance(&advance),
            Err(error) => tracing::warn!(%error, "malformed queue.advanced; dropped"),
        },
        AUCTION_CHANGED => match AuctionChanged::decode(envelope.payload.as_slice()) {
            Ok(changed) => hubs.auctions.on_changed(changed),
            Err(error) => tracing::warn!(%error, "malformed auction.changed; dropped"),
        },
        other => tracing::debug!(kind = other, "notification ignored"),
    }
}

#[cfg(test)]
mod tests {
    use marquee_infra::bus::BusConfig;
    use uuid::Uuid;

    use super::*;

    fn hubs() -> Hubs {
        // Nothing listens on port 1: these hubs read nothing from booking-svc here.
        let channel = lazy_channel("http://127.0.0.1:1").expect("channel");
        Hubs {
            seats: SeatHub::new(
                CatalogServiceClient::with_interceptor(channel.clone(), PropagateTrace),
                16,
                Duration::from_millis(500),
                Duration::from_secs(60),
            ),
            bookings: BookingHub::new(BookingServiceClient::with_interceptor(
                channel.clone(),
                PropagateTrace,
            )),
            auctions: AuctionHub::new(
                AuctionServiceClient::with_interceptor(channel.clone(), PropagateTrace),
                Duration::from_secs(5),
            ),
            queues: QueueHub::new(
                WaitingRoomServiceClient::with_interceptor(channel, PropagateTrace),
                QUEUE_REFRESH,
            ),
        }
    }

    fn notification(kind: &str, payload: Vec<u8>) -> Envelope {
        Envelope {
            message_id: Uuid::new_v4(),
            kind: kind.to_owned(),
            saga_id: Uuid::nil(),
            version: 1,
            occurred_at: Default::default(),
            trace_context: Default::default(),
            payload,
        }
    }

    fn advance(event: &str, admitted: i64, joined: i64, rate: f64, at: i64) -> Vec<u8> {
        QueueAdvanced {
            event_id: event.to_owned(),
            opened: admitted > 0,
            admitted,
            joined,
            admit_rate: rate,
            at: Some(prost_types::Timestamp {
                seconds: at,
                nanos: 0,
            }),
        }
        .encode_to_vec()
    }

    /// booking-svc's `queue.advanced` broadcasts, through the real RabbitMQ and this
    /// replica's subscription, end up merged in the watched event's room.
    #[tokio::test]
    async fn queue_advances_on_the_bus_reach_the_watched_room_merged() {
        let amqp =
            marquee_infra::config::env_string("AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/%2f");
        let prefix = format!("test.{}.", Uuid::new_v4().simple());
        let bus = Bus::connect(
            BusConfig::new(amqp, prefix.clone()).named(format!("{prefix}realtime-svc")),
            BUS_CONNECT_WAIT,
        )
        .await
        .expect("rabbitmq is up");
        let hubs = hubs();
        subscribe(&bus, &hubs).await.expect("subscribed");
        let event = Uuid::new_v4().to_string();
        let (mut room, _) = hubs.queues.join(&event, 0);

        let other = Uuid::new_v4().to_string();
        for envelope in [
            notification(QUEUE_ADVANCED, advance(&other, 500, 900, 50.0, 30)),
            notification(QUEUE_ADVANCED, vec![0xff, 0xff, 0xff]),
            notification(QUEUE_ADVANCED, advance(&event, 40, 100, 2.0, 20)),
            // Late: smaller counts and an older pace, but more joined.
            notification(QUEUE_ADVANCED, advance(&event, 30, 120, 9.0, 10)),
        ] {
            bus.broadcast(&envelope).await.expect("published");
        }

        let merged = tokio::time::timeout(
            Duration::from_secs(10),
            room.rx.wait_for(|p| p.joined == 120),
        )
        .await
        .expect("the advances arrived within 10 s")
        .map(|progress| *progress)
        .expect("room open");
        assert!(merged.opened);
        assert_eq!((merged.admitted, merged.joined), (40, 120));
        assert_eq!(merged.admit_rate, 2.0, "the pace of the latest `at`");

        let _ = bus.delete_topology(&[]).await;
        bus.shutdown();
    }
}

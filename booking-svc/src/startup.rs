//! Configuration and `Application::build`: everything booking-svc runs, wired up.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use marquee_infra::auth::{JwtConfig, TokenKeys};
use marquee_infra::bus::{BatchHandler, Bus, BusConfig};
use marquee_infra::config::{InfraConfig, Settings};
use marquee_infra::db::MigrateConfig;
use marquee_infra::dead_letters::{DeadLetters, grpc::DeadLetterAdmin};
use marquee_infra::grpc::{PropagateTrace, lazy_channel};
use marquee_infra::outbox::Relay;
use marquee_infra::redis_conn::RedisTarget;
use marquee_infra::service::{Dependency, Shell};
use marquee_proto::booking::account_service_server::AccountServiceServer;
use marquee_proto::booking::auction_service_server::AuctionServiceServer;
use marquee_proto::booking::booking_service_server::BookingServiceServer;
use marquee_proto::booking::catalog_service_server::CatalogServiceServer;
use marquee_proto::booking::saga_admin_service_server::SagaAdminServiceServer;
use marquee_proto::booking::transfer_service_server::TransferServiceServer;
use marquee_proto::booking::waiting_room_service_server::WaitingRoomServiceServer;
use marquee_proto::pay::payment_admin_service_client::PaymentAdminServiceClient;
use marquee_proto::pay::wallet_service_client::WalletServiceClient;
use sea_orm::DatabaseConnection;
use tokio_util::sync::CancellationToken;

use crate::accounts::{Hasher, KnownAccounts};
use crate::auction::Auctions;
use crate::bookings::{
    Bookings, HoldTiming, PAYMENT_FAILED, PAYMENT_SUCCEEDED, PAYOUT_COMPLETED, REFUND_COMPLETED,
};
use crate::catalog::Catalog;
use crate::changes::ChangeFeed;
use crate::grpc::{Api, token_ttl};
use crate::holds::{HoldStore, RedisTimeouts};
use crate::queue::WaitingRooms;
use crate::seat_relay;
use crate::two_factor::TwoFactorPolicy;

#[derive(Clone)]
pub struct BookingConfig {
    pub grpc_addr: SocketAddr,
    /// Where `/metrics` is served; `None` serves none.
    pub metrics_addr: Option<SocketAddr>,
    pub database_url: String,
    pub db_max_connections: u32,
    /// `MIGRATE_ON_START` (default true): create and migrate the database on start;
    /// when false, only check that the schema is current (`booking-svc migrate` ran).
    pub migrate_on_start: bool,
    /// `REDIS_URL` (and `REDIS_CLUSTER`): one Redis, or a Redis Cluster's seed nodes.
    pub redis: RedisTarget,
    /// Prefix of every Redis key (tests use a fresh one each).
    pub redis_prefix: String,
    /// How long a Redis command or connection attempt may take (see [`RedisTimeouts`]).
    pub redis_timeouts: RedisTimeouts,
    pub bus: BusConfig,
    pub pay_url: String,
    /// `JWT_*`: token keys, issuer and audience (see `marquee_infra::auth`).
    pub jwt: JwtConfig,
    pub token_ttl_minutes: i64,
    pub hold_ttl: Duration,
    /// How long a claimed hold may go without its booking before it is put back.
    pub checkout_grace: Duration,
    /// `PAYMENT_DEADLINE_MS` (default 5 minutes): a booking still awaiting its payment
    /// this long after its creation is cancelled by the sweeper.
    pub payment_deadline: Duration,
    pub sweep_interval: Duration,
    pub default_max_seats: u32,
    /// argon2id memory cost in KiB (OWASP's 19 MiB by default).
    pub argon2_memory_kib: u32,
    /// `QUEUE_TICK_MS` (default 100 ms): how often each replica admits the next buyers
    /// of every open waiting room.
    pub queue_tick: Duration,
    /// `TWO_FACTOR_LOCKOUT_SECS` (default 900): how long an account is locked after
    /// `two_factor::MAX_FAILURES` (5) consecutive wrong two-factor codes.
    pub two_factor_lockout: Duration,
}

impl std::fmt::Debug for BookingConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BookingConfig")
            .field("grpc_addr", &self.grpc_addr)
            .field("migrate_on_start", &self.migrate_on_start)
            .field("redis_prefix", &self.redis_prefix)
            .field("bus_prefix", &self.bus.prefix)
            .field("hold_ttl", &self.hold_ttl)
            .field("payment_deadline", &self.payment_deadline)
            .field("jwt", &self.jwt)
            .finish_non_exhaustive()
    }
}

impl BookingConfig {
    /// The settings from the environment (and `MARQUEE_CONFIG_FILE`), every bad one
    /// reported at once.
    pub fn from_env() -> anyhow::Result<Self> {
        let mut env = Settings::load();
        let config = Self::from_settings(&mut env);
        env.finish()?;
        Ok(config)
    }

    /// The settings read from `env`; a bad one is recorded there, for
    /// [`Settings::finish`] to report.
    pub fn from_settings(env: &mut Settings) -> Self {
        let infra = InfraConfig::from_settings(env);
        Self {
            grpc_addr: env.or(
                "BOOKING_GRPC_ADDR",
                SocketAddr::from(([127, 0, 0, 1], 50051)),
            ),
            metrics_addr: env.listen_addr(
                "BOOKING_METRICS_ADDR",
                SocketAddr::from(([127, 0, 0, 1], 9101)),
            ),
            database_url: migrate_config(env).database_url,
            db_max_connections: env.or("BOOKING_DB_MAX_CONNECTIONS", 16),
            migrate_on_start: env.or("MIGRATE_ON_START", true),
            redis: infra.redis,
            redis_prefix: env.string("REDIS_PREFIX", "marquee:"),
            redis_timeouts: RedisTimeouts {
                response: env.millis(
                    "REDIS_RESPONSE_TIMEOUT_MS",
                    RedisTimeouts::default().response,
                ),
                connect: env.millis("REDIS_CONNECT_TIMEOUT_MS", RedisTimeouts::default().connect),
            },
            bus: BusConfig::new(infra.amqp_url, infra.bus_prefix)
                .named("booking-svc")
                .with_outbox_publish_copies(marquee_infra::outbox::publish_copies(env)),
            pay_url: env.string("PAY_URL", "http://127.0.0.1:50052"),
            jwt: JwtConfig::from_settings(env),
            token_ttl_minutes: env.or("TOKEN_TTL_MINUTES", 60),
            hold_ttl: env.millis("HOLD_TTL_MS", Duration::from_secs(300)),
            checkout_grace: env.millis("CHECKOUT_GRACE_MS", Duration::from_secs(15)),
            payment_deadline: env.millis("PAYMENT_DEADLINE_MS", Duration::from_secs(300)),
            sweep_interval: env.millis("HOLD_SWEEP_INTERVAL_MS", Duration::from_millis(250)),
            default_max_seats: env.or("DEFAULT_MAX_SEATS_PER_BUYER", 4),
            argon2_memory_kib: env.or("ARGON2_MEMORY_KIB", 19_456),
            queue_tick: env.millis("QUEUE_TICK_MS", Duration::from_millis(100)),
            two_factor_lockout: Duration::from_secs(env.or("TWO_FACTOR_LOCKOUT_SECS", 900u64)),
        }
    }
}

/// Batches of payment-saga replies handled at once (each in one transaction).
const SAGA_BATCHES_AT_ONCE: usize = 8;
/// The most replies in one batch: those already waiting when a handler frees, so
/// batches grow only under load.
const SAGA_MAX_BATCH: usize = 32;

/// `BOOKING_DATABASE_URL`'s default: PostgreSQL on this machine.
pub const DEFAULT_DATABASE_URL: &str = "postgres://postgres@127.0.0.1:5432/marquee_booking";

/// What `migrate` mode reads (serving reads the same URL through it): `BOOKING_DATABASE_URL` alone.
pub fn migrate_config(env: &mut Settings) -> MigrateConfig {
    MigrateConfig::from_settings(env, "BOOKING_DATABASE_URL", DEFAULT_DATABASE_URL)
}

/// booking-svc, built and listening, not yet serving.
pub struct Application {
    shell: Shell,
    redis: Dependency,
    api: Api,
    bus: Bus,
    shutdown: CancellationToken,
    dead_letters: DeadLetterAdmin,
}

impl Application {
    pub async fn build(config: BookingConfig) -> anyhow::Result<Self> {
        let pool = marquee_infra::db::prepare::<crate::migration::Migrator>(
            "booking-svc",
            &config.database_url,
            config.db_max_connections,
            config.migrate_on_start,
        )
        .await?;
        let bus = Bus::connect(config.bus.clone(), Duration::from_secs(10)).await?;
        let shutdown = CancellationToken::new();
        let changes = ChangeFeed::spawn(bus.clone(), shutdown.clone());
        let holds =
            HoldStore::connect(&config.redis, &config.redis_prefix, config.redis_timeouts).await?;
        seat_relay::spawn(&holds, bus.clone(), shutdown.clone()).await?;
        let keys = TokenKeys::from_config(&config.jwt, token_ttl(config.token_ttl_minutes));
        let queue = Arc::new(WaitingRooms::new(pool.clone(), holds.clone(), keys.clone()).await?);
        queue.clone().spawn_ticker(
            bus.clone(),
            config.queue_tick.max(Duration::from_millis(10)),
            shutdown.clone(),
        );
        let relay = Relay::spawn(
            "booking-svc",
            pool.clone(),
            bus.clone(),
            Duration::from_millis(200),
            shutdown.clone(),
        );
        let bookings = Arc::new(Bookings::new(
            pool.clone(),
            holds,
            Catalog::default(),
            relay.clone(),
            changes,
            HoldTiming {
                hold_ttl: config.hold_ttl,
                checkout_grace: config.checkout_grace,
                payment_deadline: config.payment_deadline,
            },
        ));
        bookings.restore_redis().await?;
        bookings
            .clone()
            .spawn_sweeper(config.sweep_interval, shutdown.clone());
        let auctions = Arc::new(Auctions::new(
            bookings.clone(),
            bus.clone(),
            crate::wire::auction::changed,
            shutdown.clone(),
        ));
        Auctions::clone(&auctions).spawn_ticker(shutdown.clone());
        let handler_bookings = bookings.clone();
        let handler: BatchHandler = Arc::new(move |envelopes| {
            let bookings = handler_bookings.clone();
            Box::pin(async move { bookings.handle_batch(envelopes).await })
        });
        bus.consume_batches(
            "booking.payment-results",
            &[
                PAYMENT_SUCCEEDED,
                PAYMENT_FAILED,
                REFUND_COMPLETED,
                PAYOUT_COMPLETED,
            ],
            SAGA_BATCHES_AT_ONCE,
            SAGA_MAX_BATCH,
            handler,
        )
        .await?;
        // One channel to pay-svc for both of its clients.
        let pay_channel = lazy_channel(&config.pay_url)?;
        let wallet = WalletServiceClient::with_interceptor(pay_channel.clone(), PropagateTrace);
        // The dead letters' admin service merges in pay-svc's over the same channel.
        let dead_letter_peer = pay_channel.clone();
        let pay_admin = PaymentAdminServiceClient::with_interceptor(pay_channel, PropagateTrace);
        let api = Api {
            bookings,
            pool: pool.clone(),
            relay,
            keys,
            hasher: Hasher::new(config.argon2_memory_kib)?,
            wallet,
            pay_admin,
            default_max_seats: config.default_max_seats,
            known_accounts: KnownAccounts::spawn(pool.clone()),
            queue,
            auctions,
            two_factor: TwoFactorPolicy {
                lockout: chrono::Duration::from_std(config.two_factor_lockout)
                    .unwrap_or(chrono::Duration::seconds(900)),
            },
        };
        // Keeps what the queues above dead-letter (`dead_letters`), after their declaration.
        let kept = DeadLetters::new("booking-svc", pool.clone(), api.relay.clone());
        kept.keep(&bus, shutdown.clone()).await?;
        let dead_letters = DeadLetterAdmin::new(kept, api.keys.clone()).with_peer(dead_letter_peer);
        let shell = Shell::bind("booking-svc", config.grpc_addr, config.metrics_addr).await?;
        tracing::info!(addr = %shell.local_addr()?, "booking-svc listening");
        Ok(Self {
            shell,
            redis: Dependency::redis(&config.redis)?,
            api,
            bus,
            shutdown,
            dead_letters,
        })
    }

    pub fn port(&self) -> u16 {
        self.shell.port()
    }

    /// The booking database's connection pool.
    pub fn pool(&self) -> DatabaseConnection {
        self.api.pool.clone()
    }

    pub async fn run_until_stopped(self) -> anyhow::Result<()> {
        self.run_with_shutdown(marquee_infra::shutdown_signal())
            .await
    }

    /// Serves until `signal` resolves: reports NOT_SERVING, stops accepting, drains
    /// in-flight RPCs, then stops the consumers, relays and sweeper. Health is SERVING
    /// while PostgreSQL, Redis and RabbitMQ answer.
    pub async fn run_with_shutdown(
        self,
        signal: impl std::future::Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        let Self {
            mut shell,
            redis,
            api,
            bus,
            shutdown,
            dead_letters,
        } = self;
        shell
            .add_service(AccountServiceServer::new(api.clone()))
            .add_service(CatalogServiceServer::new(api.clone()))
            .add_service(BookingServiceServer::new(api.clone()))
            .add_service(dead_letters.into_server())
            .add_service(SagaAdminServiceServer::new(api.clone()))
            .add_service(WaitingRoomServiceServer::new(api.clone()))
            .add_service(AuctionServiceServer::new(api.clone()))
            .add_service(TransferServiceServer::new(api.clone()))
            .reflect(marquee_proto::DESCRIPTOR_SET)
            .depends_on(Dependency::postgres("booking", api.pool.clone()))
            .depends_on(redis)
            .depends_on(Dependency::bus(bus.clone()))
            .on_stop(move || {
                shutdown.cancel();
                bus.shutdown();
            });
        shell.serve(signal).await
    }
}

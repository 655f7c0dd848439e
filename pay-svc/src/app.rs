//! Wiring: database, bus, outbox relay, saga consumer, the PSP resolver, gRPC and
//! metrics servers.

use std::future::Future;
use std::time::Duration;

use anyhow::Context as _;
use marquee_infra::auth::TokenKeys;
use marquee_infra::bus::Bus;
use marquee_infra::db;
use marquee_infra::dead_letters::{DeadLetters, grpc::DeadLetterAdmin};
use marquee_infra::outbox::Relay;
use marquee_infra::service::{Dependency, Shell};
use marquee_proto::pay::payment_admin_service_server::PaymentAdminServiceServer;
use marquee_proto::pay::wallet_service_server::WalletServiceServer;
use sea_orm::DatabaseConnection;
use tokio_util::sync::CancellationToken;

use crate::config::PayConfig;
use crate::grpc::WalletApi;
use crate::migration::Migrator;
use crate::psp::PspClient;
use crate::resolver::{Resolver, Wake};
use crate::saga::{self, SagaConsumer};
use marquee_infra::db::MigrateConfig;

/// How long start-up waits for RabbitMQ.
const BUS_CONNECT_WAIT: Duration = Duration::from_secs(10);
/// How often the relay looks for outbox rows it was not told about.
const RELAY_POLL: Duration = Duration::from_millis(200);

/// `pay-svc migrate`: creates the database if it is missing and applies every pending
/// migration, including the outbox/inbox tables; logs what ran. What the Kubernetes
/// Job runs once per deploy, before replicas with `MIGRATE_ON_START=false`. It reads
/// [`MigrateConfig`] alone, not the whole [`PayConfig`].
pub async fn migrate(config: &MigrateConfig) -> anyhow::Result<db::Migrated> {
    let db = db::connect(&config.database_url, 2)
        .await
        .context("pay-svc migrate: cannot create or connect to the payment database")?;
    let migrated = db::migrate::<Migrator>(&db).await;
    if let Err(error) = db.close().await {
        tracing::warn!(%error, "closing the migration connection failed");
    }
    migrated
}

/// A started pay-svc: migrated, connected, consuming, and bound (not yet serving gRPC).
pub struct Application {
    shell: Shell,
    port: u16,
    pool: DatabaseConnection,
    bus: Bus,
    relay_stop: CancellationToken,
    resolver_stop: CancellationToken,
    wallet: WalletApi,
    dead_letters: DeadLetterAdmin,
}

impl std::fmt::Debug for Application {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Application")
            .field("port", &self.port)
            .finish_non_exhaustive()
    }
}

impl Application {
    /// Connects and (with `migrate_on_start`) migrates the database, or checks that its
    /// schema is current, connects the bus, starts the outbox relay, the PSP resolver
    /// and the saga consumer, and binds the gRPC (and metrics) listeners.
    pub async fn build(config: PayConfig) -> anyhow::Result<Self> {
        let pool = db::prepare::<Migrator>(
            "pay-svc",
            &config.database_url,
            config.db_max_connections,
            config.migrate_on_start,
        )
        .await?;

        let bus = Bus::connect(config.bus.clone(), BUS_CONNECT_WAIT).await?;
        let relay_stop = CancellationToken::new();
        let relay = Relay::spawn(
            "pay-svc",
            pool.clone(),
            bus.clone(),
            RELAY_POLL,
            relay_stop.clone(),
        );
        let psp = PspClient::new(&config.psp).context("pay-svc: cannot build the psp client")?;
        let wake = Wake::default();
        let resolver_stop = CancellationToken::new();
        Resolver::new(
            pool.clone(),
            psp,
            relay.clone(),
            config.psp.max_confirms,
            wake.clone(),
        )
        .spawn(config.psp.resolve_interval, resolver_stop.clone());
        let kept = DeadLetters::new("pay-svc", pool.clone(), relay.clone());
        let consumer = SagaConsumer::new(pool.clone(), relay, config.welcome_credit_minor, wake);
        bus.consume_batches(
            saga::QUEUE,
            saga::ROUTING_KEYS,
            config.consumer_concurrency,
            saga::MAX_BATCH,
            consumer.into_handler(),
        )
        .await?;
        // Keeps what the saga queue dead-letters (`dead_letters`), after its declaration.
        kept.keep(&bus, relay_stop.clone()).await?;

        let shell = Shell::bind("pay-svc", config.grpc_addr, config.metrics_addr).await?;
        let port = shell.local_addr()?.port();
        let keys = TokenKeys::verifier(&config.jwt);
        // Reached by booking-svc only, which merges these letters into its own (the
        // gateway routes `marquee.admin.v1` to booking-svc).
        let dead_letters = DeadLetterAdmin::new(kept, keys.clone());
        let wallet = WalletApi::new(pool.clone(), keys);
        tracing::info!(port, prefix = %config.bus.prefix, "pay-svc started");
        Ok(Self {
            shell,
            port,
            pool,
            bus,
            relay_stop,
            resolver_stop,
            wallet,
            dead_letters,
        })
    }

    /// The bound gRPC port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The payment database pool. Tests that read rows directly use its driver pool
    /// (`get_postgres_connection_pool()`).
    pub fn pool(&self) -> &DatabaseConnection {
        &self.pool
    }

    /// Serves until SIGTERM or Ctrl-C.
    pub async fn run_until_stopped(self) -> anyhow::Result<()> {
        self.run_with_shutdown(marquee_infra::shutdown_signal())
            .await
    }

    /// Serves until `shutdown` resolves, then reports NOT_SERVING, stops accepting,
    /// drains, and stops the consumer, the resolver and the relay. Messages in flight
    /// finish; a PSP step in flight is rolled back and redone (by inquiry) later; unsent
    /// outbox rows go out on the next start. Health is SERVING while PostgreSQL and
    /// RabbitMQ answer.
    pub async fn run_with_shutdown(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        let Self {
            mut shell,
            pool,
            bus,
            relay_stop,
            resolver_stop,
            wallet,
            dead_letters,
            ..
        } = self;
        shell
            .add_service(PaymentAdminServiceServer::new(wallet.clone()))
            .add_service(WalletServiceServer::new(wallet))
            .add_service(dead_letters.into_server())
            .reflect(marquee_proto::DESCRIPTOR_SET)
            .depends_on(Dependency::postgres("pay", pool))
            .depends_on(Dependency::bus(bus.clone()))
            .on_stop(move || {
                bus.shutdown();
                resolver_stop.cancel();
                relay_stop.cancel();
            });
        shell.serve(shutdown).await
    }
}

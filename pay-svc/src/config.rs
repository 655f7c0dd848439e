//! Settings from the environment, with local defaults.

use std::net::SocketAddr;

use marquee_infra::auth::JwtConfig;
use marquee_infra::bus::BusConfig;
use marquee_infra::config::{BusSettings, ConfigError, Settings};

/// Everything pay-svc needs to start.
#[derive(Clone)]
pub struct PayConfig {
    /// `PAY_GRPC_ADDR`; port 0 picks a free port.
    pub grpc_addr: SocketAddr,
    /// `PAY_METRICS_ADDR`; `None` (empty or `off`) serves no `/metrics`.
    pub metrics_addr: Option<SocketAddr>,
    /// `PAY_DATABASE_URL`; the database is created if missing.
    pub database_url: String,
    /// `PAY_DB_MAX_CONNECTIONS`.
    pub db_max_connections: u32,
    /// `MIGRATE_ON_START` (default true): create and migrate the database on start;
    /// when false, only check that the schema is current (`pay-svc migrate` ran).
    pub migrate_on_start: bool,
    /// `AMQP_URL`, `BUS_PREFIX`.
    pub bus: BusConfig,
    /// `PAY_CONSUMER_CONCURRENCY`: saga messages handled at once.
    pub consumer_concurrency: usize,
    /// `JWT_*`: token keys, issuer and audience. `Debug` shows no secret.
    pub jwt: JwtConfig,
    /// `PAY_WELCOME_CREDIT_MINOR`: what a new wallet starts with, in KRW.
    pub welcome_credit_minor: i64,
}

impl std::fmt::Debug for PayConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PayConfig")
            .field("grpc_addr", &self.grpc_addr)
            .field("metrics_addr", &self.metrics_addr)
            .field("db_max_connections", &self.db_max_connections)
            .field("migrate_on_start", &self.migrate_on_start)
            .field("bus_prefix", &self.bus.prefix)
            .field("consumer_concurrency", &self.consumer_concurrency)
            .field("welcome_credit_minor", &self.welcome_credit_minor)
            .field("jwt", &self.jwt)
            .finish_non_exhaustive()
    }
}

pub const DEFAULT_DATABASE_URL: &str = "postgres://postgres@127.0.0.1:5432/marquee_pay";

impl PayConfig {
    /// The settings from the environment (and `MARQUEE_CONFIG_FILE`), every bad one
    /// reported at once.
    pub fn from_env() -> Result<Self, ConfigError> {
        let mut env = Settings::load();
        let config = Self::from_settings(&mut env);
        env.finish()?;
        Ok(config)
    }

    /// The settings read from `env`; a bad one is recorded there, for
    /// [`Settings::finish`] to report. pay-svc has no Redis: of the shared settings
    /// it reads the bus's alone.
    pub fn from_settings(env: &mut Settings) -> Self {
        let bus = BusSettings::from_settings(env);
        Self {
            grpc_addr: env.or("PAY_GRPC_ADDR", SocketAddr::from(([127, 0, 0, 1], 50052))),
            metrics_addr: env
                .listen_addr("PAY_METRICS_ADDR", SocketAddr::from(([127, 0, 0, 1], 9102))),
            database_url: database_url(env),
            db_max_connections: env.or("PAY_DB_MAX_CONNECTIONS", 10),
            migrate_on_start: env.or("MIGRATE_ON_START", true),
            bus: BusConfig::new(bus.amqp_url, bus.bus_prefix).named("pay-svc"),
            consumer_concurrency: env.or("PAY_CONSUMER_CONCURRENCY", 16),
            jwt: JwtConfig::from_settings(env),
            welcome_credit_minor: env.or("PAY_WELCOME_CREDIT_MINOR", 100_000),
        }
    }
}

/// `PAY_DATABASE_URL`, read alike by both modes.
fn database_url(env: &mut Settings) -> String {
    env.string("PAY_DATABASE_URL", DEFAULT_DATABASE_URL)
}

/// What `pay-svc migrate` reads: the database alone. It needs no token key or bus, so
/// the migration Job is given neither.
#[derive(Clone)]
pub struct MigrateConfig {
    /// `PAY_DATABASE_URL`; the database is created if missing.
    pub database_url: String,
}

impl std::fmt::Debug for MigrateConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The URL may hold the database password.
        f.debug_struct("MigrateConfig").finish_non_exhaustive()
    }
}

impl MigrateConfig {
    /// The settings from the environment (and `MARQUEE_CONFIG_FILE`), every bad one
    /// reported at once.
    pub fn from_env() -> Result<Self, ConfigError> {
        let mut env = Settings::load();
        let config = Self::from_settings(&mut env);
        env.finish()?;
        Ok(config)
    }

    /// The settings read from `env`; a bad one is recorded there, for
    /// [`Settings::finish`] to report.
    pub fn from_settings(env: &mut Settings) -> Self {
        Self {
            database_url: database_url(env),
        }
    }
}

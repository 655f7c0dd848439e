//! Settings from the environment, with local defaults.

use std::net::SocketAddr;
use std::time::Duration;

use marquee_infra::auth::JwtConfig;
use marquee_infra::bus::BusConfig;
use marquee_infra::config::{BusSettings, ConfigError, DEV_MODE_VAR, Settings, parse_dev_mode};
use marquee_infra::db::MigrateConfig;
use secrecy::SecretString;

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
    /// `PAY_CONSUMER_CONCURRENCY`: batches of saga messages handled at once (each batch
    /// is what was waiting, up to [`crate::saga::MAX_BATCH`], in one transaction).
    pub consumer_concurrency: usize,
    /// `JWT_*`: token keys, issuer and audience. `Debug` shows no secret.
    pub jwt: JwtConfig,
    /// `PAY_WELCOME_CREDIT_MINOR`: what a new wallet starts with, in KRW.
    pub welcome_credit_minor: i64,
    /// `PSP_*`: the payment provider card payments go through.
    pub psp: PspConfig,
}

/// The payment provider (PSP) card payments are charged through. `Debug` shows no
/// secret.
#[derive(Clone)]
pub struct PspConfig {
    /// `PSP_URL`: the PSP's base URL.
    pub url: String,
    /// `PSP_SECRET_KEY`: the PSP's secret API key (HTTP Basic user). Required outside
    /// development mode (`MARQUEE_DEV`), which uses [`DEV_PSP_SECRET_KEY`].
    pub secret_key: SecretString,
    /// `PSP_TIMEOUT_MS`: the whole of one PSP call (connecting takes at most 1 s of it).
    pub timeout: Duration,
    /// `PSP_MAX_CONFIRMS`: confirm calls for one payment (all with its one idempotency
    /// key) before a charge the PSP never recorded fails.
    pub max_confirms: u32,
    /// `PSP_RESOLVE_INTERVAL_MS`: how often the resolver looks for PSP work that is due
    /// (it is also woken at once when a card payment or refund is recorded).
    pub resolve_interval: Duration,
}

/// The PSP secret key of development mode (the sandbox's): public.
pub const DEV_PSP_SECRET_KEY: &str = "test_sk_marquee";
/// `PSP_URL`'s default: the sandbox on this machine.
pub const DEFAULT_PSP_URL: &str = "http://127.0.0.1:50060";

impl Default for PspConfig {
    /// The sandbox on this machine, with the development key.
    fn default() -> Self {
        Self {
            url: DEFAULT_PSP_URL.to_owned(),
            secret_key: SecretString::from(DEV_PSP_SECRET_KEY),
            timeout: Duration::from_millis(3000),
            max_confirms: 3,
            resolve_interval: Duration::from_millis(1000),
        }
    }
}

impl std::fmt::Debug for PspConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PspConfig")
            .field("url", &self.url)
            .field("timeout", &self.timeout)
            .field("max_confirms", &self.max_confirms)
            .field("resolve_interval", &self.resolve_interval)
            .finish_non_exhaustive()
    }
}

impl PspConfig {
    /// The settings read from `env`; a bad or missing one is recorded there.
    pub fn from_settings(env: &mut Settings) -> Self {
        let defaults = Self::default();
        let url = env.string("PSP_URL", DEFAULT_PSP_URL);
        if !(url.starts_with("http://") || url.starts_with("https://")) {
            env.record(ConfigError::Invalid {
                name: "PSP_URL".to_owned(),
                value: url.clone(),
                reason: "expected an http:// or https:// URL".to_owned(),
            });
        }
        // Described by infra (secret, required outside development mode).
        let secret = env.lookup("PSP_SECRET_KEY").unwrap_or_default();
        let secret_key = if secret.trim().is_empty() {
            match parse_dev_mode(env.lookup(DEV_MODE_VAR).as_deref()) {
                Ok(true) => {
                    tracing::warn!(
                        "psp_secret_key is unset: development mode uses the public sandbox key"
                    );
                    defaults.secret_key.clone()
                }
                Ok(false) => {
                    env.record(ConfigError::Missing {
                        name: "PSP_SECRET_KEY".to_owned(),
                        reason: format!(
                            "set it to the payment provider's secret key (or {DEV_MODE_VAR}=1 \
                             to run in development mode with the sandbox key)"
                        ),
                    });
                    SecretString::from(String::new())
                }
                Err(error) => {
                    env.record(error);
                    SecretString::from(String::new())
                }
            }
        } else {
            SecretString::from(secret.trim().to_owned())
        };
        let max_confirms = env.or("PSP_MAX_CONFIRMS", defaults.max_confirms);
        if max_confirms == 0 {
            env.record(ConfigError::Invalid {
                name: "PSP_MAX_CONFIRMS".to_owned(),
                value: max_confirms.to_string(),
                reason: "at least 1".to_owned(),
            });
        }
        Self {
            url: url.trim_end_matches('/').to_owned(),
            secret_key,
            timeout: env.millis("PSP_TIMEOUT_MS", defaults.timeout),
            max_confirms: max_confirms.max(1),
            resolve_interval: env.millis("PSP_RESOLVE_INTERVAL_MS", defaults.resolve_interval),
        }
    }
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
            .field("psp", &self.psp)
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
            database_url: migrate_config(env).database_url,
            db_max_connections: env.or("PAY_DB_MAX_CONNECTIONS", 10),
            migrate_on_start: env.or("MIGRATE_ON_START", true),
            bus: BusConfig::new(bus.amqp_url, bus.bus_prefix)
                .named("pay-svc")
                .with_outbox_publish_copies(marquee_infra::outbox::publish_copies(env)),
            consumer_concurrency: env.or("PAY_CONSUMER_CONCURRENCY", 16),
            jwt: JwtConfig::from_settings(env),
            welcome_credit_minor: env.or("PAY_WELCOME_CREDIT_MINOR", 100_000),
            psp: PspConfig::from_settings(env),
        }
    }
}

/// What `migrate` mode reads (serving reads the same URL through it): `PAY_DATABASE_URL` alone.
pub fn migrate_config(env: &mut Settings) -> MigrateConfig {
    MigrateConfig::from_settings(env, "PAY_DATABASE_URL", DEFAULT_DATABASE_URL)
}

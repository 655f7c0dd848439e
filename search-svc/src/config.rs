//! Settings from the environment, with local defaults.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use marquee_infra::auth::JwtConfig;
use marquee_infra::bus::BusConfig;
use marquee_infra::config::{ConfigError, InfraConfig, Settings};

/// The synonyms file kept with the index (`search-svc/synonyms.txt`).
pub const DEFAULT_SYNONYMS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/synonyms.txt");

/// Everything search-svc needs to start.
#[derive(Clone)]
pub struct SearchConfig {
    /// `SEARCH_GRPC_ADDR`; port 0 picks a free port.
    pub grpc_addr: SocketAddr,
    /// `SEARCH_METRICS_ADDR`; `None` (empty or `off`) serves no `/metrics`.
    pub metrics_addr: Option<SocketAddr>,
    /// `BOOKING_URL`: where the catalog is read from for a rebuild.
    pub booking_url: String,
    /// `REDIS_URL` (and `REDIS_CLUSTER`), `REDIS_PREFIX`: the rankings store.
    pub redis: marquee_infra::redis_conn::RedisTarget,
    pub redis_prefix: String,
    /// `AMQP_URL`, `BUS_PREFIX`: catalog change events.
    pub bus: BusConfig,
    /// `JWT_*`: token keys, issuer and audience. `Debug` shows no secret.
    pub jwt: JwtConfig,
    /// `SEARCH_SYNONYMS`: the synonyms file.
    pub synonyms_path: PathBuf,
    /// `SEARCH_REBUILD_ON_START` (default true): rebuild from booking-svc at start-up,
    /// retrying until it answers.
    pub rebuild_on_start: bool,
    /// `SEARCH_REBUILD_INTERVAL_SECS` (default 600, 0 = never): periodic full rebuilds,
    /// which repair anything a lost change event left stale.
    pub rebuild_interval: Option<Duration>,
}

impl std::fmt::Debug for SearchConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SearchConfig")
            .field("grpc_addr", &self.grpc_addr)
            .field("metrics_addr", &self.metrics_addr)
            .field("booking_url", &self.booking_url)
            .field("redis_prefix", &self.redis_prefix)
            .field("bus_prefix", &self.bus.prefix)
            .field("synonyms_path", &self.synonyms_path)
            .field("rebuild_on_start", &self.rebuild_on_start)
            .field("rebuild_interval", &self.rebuild_interval)
            .field("jwt", &self.jwt)
            .finish_non_exhaustive()
    }
}

impl SearchConfig {
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
        let infra = InfraConfig::from_settings(env);
        let interval: u64 = env.or("SEARCH_REBUILD_INTERVAL_SECS", 600);
        Self {
            grpc_addr: env.or(
                "SEARCH_GRPC_ADDR",
                SocketAddr::from(([127, 0, 0, 1], 50054)),
            ),
            metrics_addr: env.listen_addr(
                "SEARCH_METRICS_ADDR",
                SocketAddr::from(([127, 0, 0, 1], 9104)),
            ),
            booking_url: env.string("BOOKING_URL", "http://127.0.0.1:50051"),
            redis: infra.redis,
            redis_prefix: env.string("REDIS_PREFIX", "marquee:"),
            bus: BusConfig::new(infra.amqp_url, infra.bus_prefix).named("search-svc"),
            jwt: JwtConfig::from_settings(env),
            synonyms_path: PathBuf::from(env.string("SEARCH_SYNONYMS", DEFAULT_SYNONYMS)),
            rebuild_on_start: env.or("SEARCH_REBUILD_ON_START", true),
            rebuild_interval: (interval > 0).then(|| Duration::from_secs(interval)),
        }
    }
}

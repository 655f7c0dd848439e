//! Settings from the environment, with local defaults.

use std::net::SocketAddr;
use std::time::Duration;

use marquee_infra::auth::JwtConfig;
use marquee_infra::bus::BusConfig;
use marquee_infra::config::{BusSettings, ConfigError, Settings};

#[derive(Clone)]
pub struct RealtimeConfig {
    /// `REALTIME_GRPC_ADDR`, default `127.0.0.1:50053`; port 0 picks a free port.
    pub grpc_addr: SocketAddr,
    /// `REALTIME_METRICS_ADDR`, default `127.0.0.1:9103`; empty or `off` serves none.
    pub metrics_addr: Option<SocketAddr>,
    /// `BOOKING_URL`: where snapshots and bookings are read.
    pub booking_url: String,
    /// `AMQP_URL`, `BUS_PREFIX`.
    pub bus: BusConfig,
    /// `JWT_*`: token keys, issuer and audience. `Debug` shows no secret.
    pub jwt: JwtConfig,
    /// `REALTIME_RESUME_BUFFER`: changes kept per event for `Last-Event-ID` resumes.
    pub resume_buffer: usize,
    /// `REALTIME_GAP_TIMEOUT_MS`: how long a missing version may stay missing before
    /// the event's seats are re-read from booking-svc.
    pub gap_timeout: Duration,
    /// `REALTIME_IDLE_EVICT_MS`: how long an event nobody watches stays in memory.
    pub idle_evict: Duration,
    /// `REALTIME_VERSION_CHECK_MS`: how often booking-svc is asked for the seat version
    /// of every loaded event, to notice a change whose notification was lost on an
    /// event that has no later change to reveal the gap; `0` turns the check off.
    pub version_check: Duration,
}

impl std::fmt::Debug for RealtimeConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RealtimeConfig")
            .field("grpc_addr", &self.grpc_addr)
            .field("metrics_addr", &self.metrics_addr)
            .field("booking_url", &self.booking_url)
            .field("bus_prefix", &self.bus.prefix)
            .field("resume_buffer", &self.resume_buffer)
            .field("gap_timeout", &self.gap_timeout)
            .field("version_check", &self.version_check)
            .field("jwt", &self.jwt)
            .finish_non_exhaustive()
    }
}

impl RealtimeConfig {
    /// The settings from the environment (and `MARQUEE_CONFIG_FILE`), every bad one
    /// reported at once.
    pub fn from_env() -> Result<Self, ConfigError> {
        let mut env = Settings::load();
        let config = Self::from_settings(&mut env);
        env.finish()?;
        Ok(config)
    }

    /// The settings read from `env`; a bad one is recorded there, for
    /// [`Settings::finish`] to report. realtime-svc has no Redis: of the shared settings
    /// it reads the bus's alone.
    pub fn from_settings(env: &mut Settings) -> Self {
        let bus = BusSettings::from_settings(env);
        Self {
            grpc_addr: env.or(
                "REALTIME_GRPC_ADDR",
                SocketAddr::from(([127, 0, 0, 1], 50053)),
            ),
            metrics_addr: env.listen_addr(
                "REALTIME_METRICS_ADDR",
                SocketAddr::from(([127, 0, 0, 1], 9103)),
            ),
            booking_url: env.string("BOOKING_URL", "http://127.0.0.1:50051"),
            bus: BusConfig::new(bus.amqp_url, bus.bus_prefix).named("realtime-svc"),
            jwt: JwtConfig::from_settings(env),
            resume_buffer: env.or("REALTIME_RESUME_BUFFER", 4096),
            gap_timeout: env.millis("REALTIME_GAP_TIMEOUT_MS", Duration::from_millis(500)),
            idle_evict: env.millis("REALTIME_IDLE_EVICT_MS", Duration::from_secs(60)),
            version_check: env.millis("REALTIME_VERSION_CHECK_MS", Duration::from_secs(1)),
        }
    }

    /// Local defaults with ephemeral ports, for tests.
    pub fn local(
        booking_url: impl Into<String>,
        bus: BusConfig,
        jwt: impl Into<JwtConfig>,
    ) -> Self {
        Self {
            grpc_addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            metrics_addr: None,
            booking_url: booking_url.into(),
            bus,
            jwt: jwt.into(),
            resume_buffer: 4096,
            gap_timeout: Duration::from_millis(500),
            idle_evict: Duration::from_secs(60),
            version_check: Duration::from_secs(1),
        }
    }
}

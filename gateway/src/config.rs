//! Gateway settings, from environment variables with local defaults.

use std::net::SocketAddr;
use std::time::Duration;

use marquee_infra::auth::JwtConfig;
use marquee_infra::config::{ConfigError, Settings};

use crate::ratelimit::RateLimitConfig;

/// Default request body limit: 1 MiB.
pub const DEFAULT_BODY_LIMIT: usize = 1024 * 1024;

#[derive(Clone)]
pub struct GatewayConfig {
    /// `GATEWAY_ADDR`, default `127.0.0.1:8080`.
    pub listen_addr: SocketAddr,
    /// `GATEWAY_METRICS_ADDR`, default `127.0.0.1:9100`: `/metrics` on an internal
    /// listener of its own, never on the public port; empty or `off` serves none.
    pub metrics_addr: Option<SocketAddr>,
    /// `BOOKING_URL`, default `http://127.0.0.1:50051`.
    pub booking_url: String,
    /// `PAY_URL`, default `http://127.0.0.1:50052`.
    pub pay_url: String,
    /// `REALTIME_URL`, default `http://127.0.0.1:50053`.
    pub realtime_url: String,
    /// `SEARCH_URL`, default `http://127.0.0.1:50054`.
    pub search_url: String,
    /// `JWT_*`: token keys, issuer and audience. `Debug` shows no secret.
    pub jwt: JwtConfig,
    /// `GATEWAY_BODY_LIMIT_BYTES`, default 1 MiB.
    pub body_limit_bytes: usize,
    /// `UPSTREAM_TIMEOUT_MS`, default 10 s: the deadline of each upstream call.
    pub upstream_timeout: Duration,
    /// `CORS_ALLOWED_ORIGINS`, comma-separated; empty (the default) allows any origin.
    pub cors_allowed_origins: Vec<String>,
    /// `SSE_CLIENT_BUFFER`, default 256: events an SSE client may be behind before the
    /// gateway disconnects it (it reconnects and resumes with `Last-Event-ID`).
    pub sse_client_buffer: usize,
    /// `SSE_KEEP_ALIVE_MS`, default 15 s: keep-alive comment interval on idle streams.
    pub sse_keep_alive: Duration,
    /// `UPSTREAM_CONNECTIONS`, default 4: HTTP/2 connections to each upstream, which
    /// calls and streams take turns on.
    pub upstream_connections: usize,
    /// `RATE_LIMITS` (default on), `RATE_LIMIT_<CLASS>_PER_<SCOPE>`, `RATE_LIMIT_PREFIX`,
    /// `RATE_LIMIT_TIMEOUT_MS`, `TRUSTED_PROXY_HOPS`, and the `REDIS_URL` and
    /// `REDIS_CLUSTER` the replicas share their counts in: see [`RateLimitConfig`].
    pub rate_limits: RateLimitConfig,
}

impl GatewayConfig {
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
        let default_addr = SocketAddr::from(([127, 0, 0, 1], 8080));
        Self {
            listen_addr: env.or("GATEWAY_ADDR", default_addr),
            metrics_addr: env.listen_addr(
                "GATEWAY_METRICS_ADDR",
                SocketAddr::from(([127, 0, 0, 1], 9100)),
            ),
            booking_url: env.string("BOOKING_URL", "http://127.0.0.1:50051"),
            pay_url: env.string("PAY_URL", "http://127.0.0.1:50052"),
            realtime_url: env.string("REALTIME_URL", "http://127.0.0.1:50053"),
            search_url: env.string("SEARCH_URL", "http://127.0.0.1:50054"),
            jwt: JwtConfig::from_settings(env),
            body_limit_bytes: env.or("GATEWAY_BODY_LIMIT_BYTES", DEFAULT_BODY_LIMIT),
            upstream_timeout: env.millis("UPSTREAM_TIMEOUT_MS", Duration::from_secs(10)),
            cors_allowed_origins: env
                .string("CORS_ALLOWED_ORIGINS", "")
                .split(',')
                .map(str::trim)
                .filter(|o| !o.is_empty())
                .map(str::to_owned)
                .collect(),
            sse_client_buffer: env.or("SSE_CLIENT_BUFFER", 256),
            sse_keep_alive: env.millis("SSE_KEEP_ALIVE_MS", Duration::from_secs(15)),
            upstream_connections: env.or("UPSTREAM_CONNECTIONS", 4),
            rate_limits: RateLimitConfig::from_settings(env),
        }
    }

    /// Local defaults with an ephemeral port, for tests: rate limits off (tests and
    /// benchmarks send everything from 127.0.0.1), for a test to turn on.
    pub fn local(
        booking_url: impl Into<String>,
        pay_url: impl Into<String>,
        jwt: impl Into<JwtConfig>,
    ) -> Self {
        Self {
            listen_addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            metrics_addr: None,
            booking_url: booking_url.into(),
            pay_url: pay_url.into(),
            realtime_url: "http://127.0.0.1:50053".into(),
            search_url: "http://127.0.0.1:50054".into(),
            jwt: jwt.into(),
            body_limit_bytes: DEFAULT_BODY_LIMIT,
            upstream_timeout: Duration::from_secs(10),
            cors_allowed_origins: Vec::new(),
            sse_client_buffer: 256,
            sse_keep_alive: Duration::from_secs(15),
            upstream_connections: 4,
            rate_limits: RateLimitConfig::off(),
        }
    }

    /// The upstream URL for an entry of [`crate::routes::UPSTREAMS`], by name.
    pub fn upstream_url(&self, name: &str) -> Option<&str> {
        match name {
            "booking" => Some(&self.booking_url),
            "pay" => Some(&self.pay_url),
            "realtime" => Some(&self.realtime_url),
            "search" => Some(&self.search_url),
            _ => None,
        }
    }
}

impl std::fmt::Debug for GatewayConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GatewayConfig")
            .field("listen_addr", &self.listen_addr)
            .field("metrics_addr", &self.metrics_addr)
            .field("booking_url", &self.booking_url)
            .field("pay_url", &self.pay_url)
            .field("realtime_url", &self.realtime_url)
            .field("search_url", &self.search_url)
            .field("jwt", &self.jwt)
            .field("body_limit_bytes", &self.body_limit_bytes)
            .field("upstream_timeout", &self.upstream_timeout)
            .field("cors_allowed_origins", &self.cors_allowed_origins)
            .field("sse_client_buffer", &self.sse_client_buffer)
            .field("sse_keep_alive", &self.sse_keep_alive)
            .field("upstream_connections", &self.upstream_connections)
            .field("rate_limits", &self.rate_limits)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_redacts_the_secret() {
        let config = GatewayConfig::local(
            "http://b",
            "http://p",
            JwtConfig::new("top-secret").with_previous("k0", "older-secret"),
        );
        let shown = format!("{config:?}");
        assert!(!shown.contains("top-secret") && !shown.contains("older-secret"));
        assert!(shown.contains("<redacted>"));
        assert_eq!(config.upstream_url("pay"), Some("http://p"));
    }
}

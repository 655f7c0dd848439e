//! Gateway settings, from environment variables with local defaults.

use std::net::SocketAddr;
use std::time::Duration;

use marquee_infra::config::{ConfigError, env_millis, env_or, env_string};

/// Default request body limit: 1 MiB.
pub const DEFAULT_BODY_LIMIT: usize = 1024 * 1024;

#[derive(Clone)]
pub struct GatewayConfig {
    /// `GATEWAY_ADDR`, default `127.0.0.1:8080`.
    pub listen_addr: SocketAddr,
    /// `BOOKING_URL`, default `http://127.0.0.1:50051`.
    pub booking_url: String,
    /// `PAY_URL`, default `http://127.0.0.1:50052`.
    pub pay_url: String,
    /// `JWT_SECRET`. Never logged (the `Debug` impl redacts it).
    pub jwt_secret: String,
    /// `GATEWAY_BODY_LIMIT_BYTES`, default 1 MiB.
    pub body_limit_bytes: usize,
    /// `UPSTREAM_TIMEOUT_MS`, default 10 s: the deadline of each upstream call.
    pub upstream_timeout: Duration,
    /// `CORS_ALLOWED_ORIGINS`, comma-separated; empty (the default) allows any origin.
    pub cors_allowed_origins: Vec<String>,
}

impl GatewayConfig {
    pub fn from_env() -> Result<Self, ConfigError> {
        let default_addr = SocketAddr::from(([127, 0, 0, 1], 8080));
        Ok(Self {
            listen_addr: env_or("GATEWAY_ADDR", default_addr)?,
            booking_url: env_string("BOOKING_URL", "http://127.0.0.1:50051"),
            pay_url: env_string("PAY_URL", "http://127.0.0.1:50052"),
            jwt_secret: env_string("JWT_SECRET", "marquee-dev-secret-change-me"),
            body_limit_bytes: env_or("GATEWAY_BODY_LIMIT_BYTES", DEFAULT_BODY_LIMIT)?,
            upstream_timeout: env_millis("UPSTREAM_TIMEOUT_MS", Duration::from_secs(10))?,
            cors_allowed_origins: env_string("CORS_ALLOWED_ORIGINS", "")
                .split(',')
                .map(str::trim)
                .filter(|o| !o.is_empty())
                .map(str::to_owned)
                .collect(),
        })
    }

    /// Local defaults with an ephemeral port, for tests.
    pub fn local(
        booking_url: impl Into<String>,
        pay_url: impl Into<String>,
        jwt_secret: impl Into<String>,
    ) -> Self {
        Self {
            listen_addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            booking_url: booking_url.into(),
            pay_url: pay_url.into(),
            jwt_secret: jwt_secret.into(),
            body_limit_bytes: DEFAULT_BODY_LIMIT,
            upstream_timeout: Duration::from_secs(10),
            cors_allowed_origins: Vec::new(),
        }
    }

    /// The upstream URL for an entry of [`crate::routes::UPSTREAMS`], by name.
    pub fn upstream_url(&self, name: &str) -> Option<&str> {
        match name {
            "booking" => Some(&self.booking_url),
            "pay" => Some(&self.pay_url),
            _ => None,
        }
    }
}

impl std::fmt::Debug for GatewayConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GatewayConfig")
            .field("listen_addr", &self.listen_addr)
            .field("booking_url", &self.booking_url)
            .field("pay_url", &self.pay_url)
            .field("jwt_secret", &"<redacted>")
            .field("body_limit_bytes", &self.body_limit_bytes)
            .field("upstream_timeout", &self.upstream_timeout)
            .field("cors_allowed_origins", &self.cors_allowed_origins)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_redacts_the_secret() {
        let config = GatewayConfig::local("http://b", "http://p", "top-secret");
        let shown = format!("{config:?}");
        assert!(!shown.contains("top-secret"));
        assert!(shown.contains("<redacted>"));
        assert_eq!(config.upstream_url("pay"), Some("http://p"));
    }
}

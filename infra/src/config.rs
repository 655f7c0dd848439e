//! Typed configuration from environment variables with local defaults.

use std::net::SocketAddr;
use std::str::FromStr;
use std::time::Duration;

#[derive(Debug, thiserror::Error)]
#[error("environment variable {name}={value:?} is invalid: {reason}")]
pub struct ConfigError {
    pub name: String,
    pub value: String,
    pub reason: String,
}

/// `name` parsed as `T`, or `default` when unset or empty.
pub fn env_or<T>(name: &str, default: T) -> Result<T, ConfigError>
where
    T: FromStr,
    T::Err: std::fmt::Display,
{
    match std::env::var(name) {
        Ok(value) if !value.trim().is_empty() => {
            value.trim().parse().map_err(|e: T::Err| ConfigError {
                name: name.to_owned(),
                value,
                reason: e.to_string(),
            })
        }
        _ => Ok(default),
    }
}

/// `name` as a string, or `default`.
pub fn env_string(name: &str, default: &str) -> String {
    std::env::var(name)
        .ok()
        .filter(|v| !v.trim().is_empty())
        .unwrap_or_else(|| default.to_owned())
}

/// `name` as whole milliseconds, or `default`.
pub fn env_millis(name: &str, default: Duration) -> Result<Duration, ConfigError> {
    let default_ms = u64::try_from(default.as_millis()).unwrap_or(u64::MAX);
    env_or(name, default_ms).map(Duration::from_millis)
}

/// An optional listen address: `off` serves nothing, unset or empty gives `default`.
pub fn env_listen_addr(name: &str, default: SocketAddr) -> Result<Option<SocketAddr>, ConfigError> {
    match std::env::var(name) {
        Ok(value) if value.trim().eq_ignore_ascii_case("off") => Ok(None),
        _ => env_or(name, default).map(Some),
    }
}

/// Settings every service shares: where the infrastructure is.
#[derive(Debug, Clone)]
pub struct InfraConfig {
    pub redis_url: String,
    pub amqp_url: String,
    /// Prefix of every exchange and queue name (tests use a fresh one each).
    pub bus_prefix: String,
    /// HS256 secret of bearer tokens. Never logged.
    pub jwt_secret: String,
}

impl InfraConfig {
    pub fn from_env() -> Self {
        Self {
            redis_url: env_string("REDIS_URL", "redis://127.0.0.1:6379"),
            amqp_url: env_string("AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/%2f"),
            bus_prefix: env_string("BUS_PREFIX", "marquee."),
            jwt_secret: env_string("JWT_SECRET", "marquee-dev-secret-change-me"),
        }
    }
}

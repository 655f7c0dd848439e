//! Typed configuration from environment variables with local defaults.

use std::net::SocketAddr;
use std::str::FromStr;
use std::time::Duration;

use crate::auth::JwtConfig;

/// `MARQUEE_DEV`: development mode, which `make run`, the tests and the benchmarks
/// set. Only in it may a service start without `JWT_SECRET` (with a built-in,
/// publicly known secret).
pub const DEV_MODE_VAR: &str = "MARQUEE_DEV";

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("environment variable {name}={value:?} is invalid: {reason}")]
    Invalid {
        name: String,
        value: String,
        reason: String,
    },
    /// A secret's value is never repeated, not even in an error.
    #[error("environment variable {name} is invalid: {reason}")]
    InvalidSecret { name: String, reason: String },
    #[error("environment variable {name} is required: {reason}")]
    Missing { name: String, reason: String },
}

/// `name` parsed as `T`, or `default` when unset or empty.
pub fn env_or<T>(name: &str, default: T) -> Result<T, ConfigError>
where
    T: FromStr,
    T::Err: std::fmt::Display,
{
    match std::env::var(name) {
        Ok(value) if !value.trim().is_empty() => {
            value
                .trim()
                .parse()
                .map_err(|e: T::Err| ConfigError::Invalid {
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

/// Whether `MARQUEE_DEV` turns development mode on: `1`, `true`, `yes` or `on` do;
/// unset, empty, `0`, `false`, `no` or `off` do not; anything else is an error, so a
/// typo never silently decides.
pub fn parse_dev_mode(value: Option<&str>) -> Result<bool, ConfigError> {
    let Some(raw) = value else {
        return Ok(false);
    };
    match raw.trim().to_ascii_lowercase().as_str() {
        "1" | "true" | "yes" | "on" => Ok(true),
        "" | "0" | "false" | "no" | "off" => Ok(false),
        _ => Err(ConfigError::Invalid {
            name: DEV_MODE_VAR.to_owned(),
            value: raw.to_owned(),
            reason: "expected 1 or 0".to_owned(),
        }),
    }
}

/// Whether the process runs in development mode (`MARQUEE_DEV`).
pub fn dev_mode() -> Result<bool, ConfigError> {
    parse_dev_mode(std::env::var(DEV_MODE_VAR).ok().as_deref())
}

/// Settings every service shares: where the infrastructure is, and the token keys.
#[derive(Debug, Clone)]
pub struct InfraConfig {
    pub redis_url: String,
    pub amqp_url: String,
    /// Prefix of every exchange and queue name (tests use a fresh one each).
    pub bus_prefix: String,
    /// `JWT_*`: the token keys, issuer and audience. Its `Debug` shows no secret.
    pub jwt: JwtConfig,
}

impl InfraConfig {
    /// Fails without `JWT_SECRET` unless in development mode (see [`JwtConfig::from_env`]).
    pub fn from_env() -> Result<Self, ConfigError> {
        Ok(Self {
            redis_url: env_string("REDIS_URL", "redis://127.0.0.1:6379"),
            amqp_url: env_string("AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/%2f"),
            bus_prefix: env_string("BUS_PREFIX", "marquee."),
            jwt: JwtConfig::from_env()?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dev_mode_is_on_only_when_asked_for_and_a_typo_is_an_error() {
        for on in ["1", "true", "YES", " on "] {
            assert!(parse_dev_mode(Some(on)).unwrap(), "{on}");
        }
        for off in [None, Some(""), Some("0"), Some("false"), Some("off")] {
            assert!(!parse_dev_mode(off).unwrap(), "{off:?}");
        }
        let error = parse_dev_mode(Some("ture")).unwrap_err().to_string();
        assert!(error.contains("MARQUEE_DEV"), "{error}");
    }

    #[test]
    fn debug_of_the_shared_config_shows_no_secret() {
        let config = InfraConfig {
            redis_url: "redis://r".into(),
            amqp_url: "amqp://a".into(),
            bus_prefix: "p.".into(),
            jwt: JwtConfig::new("current-secret-value").with_previous("k0", "older-secret-value"),
        };
        let shown = format!("{config:?}");
        assert!(!shown.contains("current-secret-value"), "{shown}");
        assert!(!shown.contains("older-secret-value"), "{shown}");
        assert!(shown.contains("k0"), "key ids are shown: {shown}");
    }
}

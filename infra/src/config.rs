//! Typed configuration with local defaults: every service reads its settings through
//! [`Settings`], from the environment over an optional JSON file (`MARQUEE_CONFIG_FILE`,
//! e.g. a mounted Kubernetes ConfigMap), and reports every bad setting at once, each
//! with its variable's name.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::str::FromStr;
use std::time::Duration;

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
    #[error("config file {path}: {reason}")]
    File { path: String, reason: String },
    /// Several settings at once, one per line.
    #[error("{} settings are invalid:\n{}", .0.len(), .0.iter().map(ToString::to_string).collect::<Vec<_>>().join("\n"))]
    Many(Vec<ConfigError>),
}

/// `MARQUEE_CONFIG_FILE`: a JSON object of settings by variable name (strings, numbers
/// or booleans); a variable set in the environment wins over the file.
pub const CONFIG_FILE_VAR: &str = "MARQUEE_CONFIG_FILE";

/// Where a service's settings come from, and what was wrong with them so far. Read
/// every setting, then call [`Settings::finish`]: it reports every bad one at once.
#[derive(Debug, Default)]
pub struct Settings {
    file: HashMap<String, String>,
    errors: Vec<ConfigError>,
}

impl Settings {
    /// The environment over the optional `MARQUEE_CONFIG_FILE`.
    pub fn load() -> Self {
        let mut settings = Self::default();
        if let Some(path) = std::env::var(CONFIG_FILE_VAR)
            .ok()
            .filter(|p| !p.trim().is_empty())
        {
            match read_file(&path) {
                Ok(file) => settings.file = file,
                Err(reason) => settings.errors.push(ConfigError::File { path, reason }),
            }
        }
        settings
    }

    /// Settings from a JSON object alone (the environment still wins): for tests.
    pub fn from_json(json: &str) -> Result<Self, ConfigError> {
        let file = parse_file(json).map_err(|reason| ConfigError::File {
            path: "<json>".to_owned(),
            reason,
        })?;
        Ok(Self {
            file,
            errors: Vec::new(),
        })
    }

    /// The raw value of `name`: the environment's, else the file's; `None` if unset or
    /// empty.
    pub fn lookup(&self, name: &str) -> Option<String> {
        std::env::var(name)
            .ok()
            .or_else(|| self.file.get(name).cloned())
            .filter(|v| !v.trim().is_empty())
    }

    /// Records a bad setting found by the caller.
    pub fn record(&mut self, error: ConfigError) {
        self.errors.push(error);
    }

    /// `name` parsed as `T`, or `default` when unset (a bad value is recorded).
    pub fn or<T>(&mut self, name: &str, default: T) -> T
    where
        T: FromStr,
        T::Err: std::fmt::Display,
    {
        match self.lookup(name) {
            None => default,
            Some(value) => match value.trim().parse() {
                Ok(parsed) => parsed,
                Err(e) => {
                    self.errors.push(ConfigError::Invalid {
                        name: name.to_owned(),
                        value,
                        reason: e.to_string(),
                    });
                    default
                }
            },
        }
    }

    /// `name` as a string, or `default`.
    pub fn string(&mut self, name: &str, default: &str) -> String {
        self.lookup(name).unwrap_or_else(|| default.to_owned())
    }

    /// `name` as whole milliseconds, or `default`.
    pub fn millis(&mut self, name: &str, default: Duration) -> Duration {
        let default_ms = u64::try_from(default.as_millis()).unwrap_or(u64::MAX);
        Duration::from_millis(self.or(name, default_ms))
    }

    /// An optional listen address: `off` serves nothing, unset gives `default`.
    pub fn listen_addr(&mut self, name: &str, default: SocketAddr) -> Option<SocketAddr> {
        match self.lookup(name) {
            Some(value) if value.trim().eq_ignore_ascii_case("off") => None,
            _ => Some(self.or(name, default)),
        }
    }

    /// Every bad setting read so far, at once; `Ok` if there was none.
    pub fn finish(mut self) -> Result<(), ConfigError> {
        match self.errors.len() {
            0 => Ok(()),
            1 => Err(self.errors.remove(0)),
            _ => Err(ConfigError::Many(self.errors)),
        }
    }
}

fn read_file(path: &str) -> Result<HashMap<String, String>, String> {
    let text = std::fs::read_to_string(path).map_err(|e| e.to_string())?;
    parse_file(&text)
}

/// A flat JSON object: each value a string, number or boolean.
fn parse_file(text: &str) -> Result<HashMap<String, String>, String> {
    let object: serde_json::Map<String, serde_json::Value> =
        serde_json::from_str(text).map_err(|e| format!("not a JSON object: {e}"))?;
    object
        .into_iter()
        .map(|(name, value)| match value {
            serde_json::Value::String(s) => Ok((name, s)),
            serde_json::Value::Number(n) => Ok((name, n.to_string())),
            serde_json::Value::Bool(b) => Ok((name, b.to_string())),
            _ => Err(format!("{name} must be a string, a number or a boolean")),
        })
        .collect()
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

/// Settings every service shares: where the infrastructure is. (The token keys are
/// `auth::JwtConfig::from_settings`.)
#[derive(Debug, Clone)]
pub struct InfraConfig {
    pub redis_url: String,
    pub amqp_url: String,
    /// Prefix of every exchange and queue name (tests use a fresh one each).
    pub bus_prefix: String,
}

impl InfraConfig {
    pub fn from_settings(env: &mut Settings) -> Self {
        Self {
            redis_url: env.string("REDIS_URL", "redis://127.0.0.1:6379"),
            amqp_url: env.string("AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/%2f"),
            bus_prefix: env.string("BUS_PREFIX", "marquee."),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_bad_setting_is_reported_at_once_with_its_name() {
        let mut env = Settings::from_json(
            r#"{"TEST_CFG_PORT": "eighty", "TEST_CFG_MS": "-5", "TEST_CFG_NAME": "ok", "TEST_CFG_N": 7}"#,
        )
        .unwrap();
        let port: u16 = env.or("TEST_CFG_PORT", 80);
        let wait = env.millis("TEST_CFG_MS", Duration::from_secs(1));
        assert_eq!(env.string("TEST_CFG_NAME", "x"), "ok");
        assert_eq!(
            env.or::<u32>("TEST_CFG_N", 0),
            7,
            "numbers in the file are read"
        );
        assert_eq!(env.or::<u32>("TEST_CFG_UNSET", 3), 3);
        assert_eq!(
            (port, wait),
            (80, Duration::from_secs(1)),
            "defaults stand in"
        );
        let error = env.finish().unwrap_err().to_string();
        assert!(error.contains("TEST_CFG_PORT"), "{error}");
        assert!(error.contains("TEST_CFG_MS"), "{error}");
        assert!(error.starts_with("2 settings are invalid"), "{error}");
    }

    #[test]
    fn a_config_file_that_is_not_a_flat_object_is_an_error() {
        assert!(Settings::from_json("[1, 2]").is_err());
        assert!(Settings::from_json(r#"{"A": {"nested": 1}}"#).is_err());
    }

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
}

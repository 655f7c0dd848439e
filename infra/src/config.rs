//! Typed configuration with local defaults: every service reads its settings through
//! [`Settings`], from the environment over an optional JSON file (`MARQUEE_CONFIG_FILE`,
//! e.g. a mounted Kubernetes ConfigMap), and reports every bad setting at once, each
//! with its variable's name. [`Settings`] also records every setting read through it
//! ([`Settings::specs`]), from which `e2e/tests/settings_snapshot.rs` generates
//! `k8s/ci/settings.json`, the list of what each service reads that the manifests'
//! check (`k8s/ci/validate.py`) holds the Kubernetes manifests to.

use std::cell::RefCell;
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

/// The variables a service reads outside [`Settings`], each with where it is read and
/// what unset means. Every service reads all of them (each calls `telemetry::init` and
/// `Settings::load`); none is required and none has a default value.
/// `e2e/tests/settings_snapshot.rs` adds them to each service's list, and fails on a
/// `std::env::var("...")` in a service's or infra's source that is not listed here.
pub const READ_OUTSIDE_SETTINGS: &[(&str, &str)] = &[
    (
        CONFIG_FILE_VAR,
        "Settings::load: a JSON file of settings; unset, none",
    ),
    (
        "LOG_FORMAT",
        "telemetry::init: `json` logs JSON lines; anything else, or unset, plain text",
    ),
    (
        "OTEL_EXPORTER_OTLP_ENDPOINT",
        "telemetry::init: where traces are exported (OTLP/gRPC); unset, nowhere",
    ),
    (
        "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
        "telemetry::init: as OTEL_EXPORTER_OTLP_ENDPOINT, for traces alone (wins over it)",
    ),
    (
        "RUST_LOG",
        "telemetry::init (tracing-subscriber's EnvFilter): the log filter; unset, info",
    ),
];

/// One setting read through [`Settings`], as [`Settings::specs`] lists it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SettingSpec {
    /// The environment variable (also the key in `MARQUEE_CONFIG_FILE`).
    pub name: String,
    /// The value used when it is unset, spelt as the variable would be; `None` when
    /// there is none: it is required, unset means "none", or it is a secret (whose
    /// default is never recorded).
    pub default: Option<String>,
    /// Whether the service refuses to start without it (outside development mode).
    pub required: bool,
    /// Whether its value is a secret.
    pub secret: bool,
}

impl SettingSpec {
    fn optional(name: &str, default: Option<String>) -> Self {
        Self {
            name: name.to_owned(),
            default,
            required: false,
            secret: false,
        }
    }
}

/// What a bare [`Settings::lookup`] cannot know, for the variables read through it
/// rather than through a typed accessor (`auth::JwtConfig::from_lookup` reads the token
/// settings so): their default, whether they are required, whether secret. A lookup of
/// a name not described here is listed by [`Settings::undescribed`], on which the
/// settings snapshot test fails.
fn described_lookup(name: &str) -> Option<SettingSpec> {
    use crate::auth::{DEFAULT_AUDIENCE, DEFAULT_ISSUER, DEFAULT_KEY_ID};
    let (default, required, secret) = match name {
        // Required outside development mode (MARQUEE_DEV), which signs with a public one.
        "JWT_SECRET" => (None, true, true),
        // `kid:secret,...`; unset, no previous key.
        "JWT_PREVIOUS_SECRETS" => (None, false, true),
        "JWT_KEY_ID" => (Some(DEFAULT_KEY_ID), false, false),
        "JWT_ISSUER" => (Some(DEFAULT_ISSUER), false, false),
        "JWT_AUDIENCE" => (Some(DEFAULT_AUDIENCE), false, false),
        DEV_MODE_VAR => (Some("false"), false, false),
        // pay-svc's key at the payment provider; required outside development mode,
        // which uses the sandbox's public key.
        "PSP_SECRET_KEY" => (None, true, true),
        _ => return None,
    };
    Some(SettingSpec {
        name: name.to_owned(),
        default: default.map(str::to_owned),
        required,
        secret,
    })
}

/// Where a service's settings come from, and what was wrong with them so far. Read
/// every setting, then call [`Settings::finish`]: it reports every bad one at once.
/// Every setting read is recorded with its default ([`Settings::specs`]).
#[derive(Debug, Default)]
pub struct Settings {
    file: HashMap<String, String>,
    errors: Vec<ConfigError>,
    /// Read the file alone, never the process environment ([`Settings::from_json_only`]).
    ignore_environment: bool,
    /// Every setting read so far (in a `RefCell`: [`Settings::lookup`] records too, and
    /// takes `&self`).
    read: RefCell<Vec<SettingSpec>>,
    /// The names [`Settings::lookup`] read that `described_lookup` does not know.
    undescribed: RefCell<Vec<String>>,
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
            ..Self::default()
        })
    }

    /// Settings from a JSON object alone, never the process environment: what a
    /// service reads and its defaults, whatever the environment of the test that asks
    /// ([`Settings::specs`]).
    pub fn from_json_only(json: &str) -> Result<Self, ConfigError> {
        let mut settings = Self::from_json(json)?;
        settings.ignore_environment = true;
        Ok(settings)
    }

    /// The raw value of `name`: the environment's, else the file's; `None` if unset or
    /// empty. Recorded as read; its default and whether it is required or secret are
    /// known only for the names `described_lookup` describes.
    pub fn lookup(&self, name: &str) -> Option<String> {
        match described_lookup(name) {
            Some(spec) => self.note(spec),
            None => {
                self.note(SettingSpec::optional(name, None));
                let mut undescribed = self.undescribed.borrow_mut();
                if !undescribed.iter().any(|n| n == name) {
                    undescribed.push(name.to_owned());
                }
            }
        }
        self.value(name)
    }

    /// Every setting read so far, sorted by name. One name read with two different
    /// defaults is listed twice.
    pub fn specs(&self) -> Vec<SettingSpec> {
        let mut specs = self.read.borrow().clone();
        specs.sort();
        specs.dedup();
        specs
    }

    /// The names read with a bare [`Settings::lookup`] whose default (and whether they
    /// are required or secret) nothing describes, sorted.
    pub fn undescribed(&self) -> Vec<String> {
        let mut names = self.undescribed.borrow().clone();
        names.sort();
        names
    }

    /// The value of `name`, unrecorded.
    fn value(&self, name: &str) -> Option<String> {
        let from_environment = if self.ignore_environment {
            None
        } else {
            std::env::var(name).ok()
        };
        from_environment
            .or_else(|| self.file.get(name).cloned())
            .filter(|v| !v.trim().is_empty())
    }

    fn note(&self, spec: SettingSpec) {
        let mut read = self.read.borrow_mut();
        if !read.contains(&spec) {
            read.push(spec);
        }
    }

    /// Records a bad setting found by the caller.
    pub fn record(&mut self, error: ConfigError) {
        self.errors.push(error);
    }

    /// `name` parsed as `T`, or `default` when unset (a bad value is recorded).
    pub fn or<T>(&mut self, name: &str, default: T) -> T
    where
        T: FromStr + std::fmt::Display,
        T::Err: std::fmt::Display,
    {
        self.note(SettingSpec::optional(name, Some(default.to_string())));
        self.parse_or(name, default)
    }

    /// `name` parsed as `T`, or `default`, unrecorded.
    fn parse_or<T>(&mut self, name: &str, default: T) -> T
    where
        T: FromStr,
        T::Err: std::fmt::Display,
    {
        match self.value(name) {
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
        self.note(SettingSpec::optional(name, Some(default.to_owned())));
        self.value(name).unwrap_or_else(|| default.to_owned())
    }

    /// `name` as whole milliseconds, or `default`.
    pub fn millis(&mut self, name: &str, default: Duration) -> Duration {
        let default_ms = u64::try_from(default.as_millis()).unwrap_or(u64::MAX);
        Duration::from_millis(self.or(name, default_ms))
    }

    /// An optional listen address: `off` serves nothing, unset gives `default`.
    pub fn listen_addr(&mut self, name: &str, default: SocketAddr) -> Option<SocketAddr> {
        self.note(SettingSpec::optional(name, Some(default.to_string())));
        match self.value(name) {
            Some(value) if value.trim().eq_ignore_ascii_case("off") => None,
            _ => Some(self.parse_or(name, default)),
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
    /// `REDIS_URL`, and `REDIS_CLUSTER=true` when it lists a Redis Cluster's seed nodes.
    pub redis: crate::redis_conn::RedisTarget,
    pub amqp_url: String,
    /// Prefix of every exchange and queue name (tests use a fresh one each).
    pub bus_prefix: String,
}

impl InfraConfig {
    pub fn from_settings(env: &mut Settings) -> Self {
        Self {
            redis: {
                let url = env.string("REDIS_URL", "redis://127.0.0.1:6379");
                let cluster = env.or("REDIS_CLUSTER", false);
                crate::redis_conn::RedisTarget::parse(&url, cluster).unwrap_or_else(|reason| {
                    env.record(ConfigError::Invalid {
                        name: "REDIS_URL".to_owned(),
                        value: url.clone(),
                        reason,
                    });
                    crate::redis_conn::RedisTarget::Single(url)
                })
            },
            amqp_url: env.string("AMQP_URL", DEFAULT_AMQP_URL),
            bus_prefix: env.string("BUS_PREFIX", DEFAULT_BUS_PREFIX),
        }
    }
}

/// `AMQP_URL`'s default: RabbitMQ on this machine.
pub const DEFAULT_AMQP_URL: &str = "amqp://guest:guest@127.0.0.1:5672/%2f";
/// `BUS_PREFIX`'s default.
pub const DEFAULT_BUS_PREFIX: &str = "marquee.";

/// Where the message bus is (`AMQP_URL`, `BUS_PREFIX`), alone: the shared settings of a
/// service on the bus that has no Redis, which therefore neither reads `REDIS_URL` nor
/// must be given it.
#[derive(Debug, Clone)]
pub struct BusSettings {
    pub amqp_url: String,
    /// Prefix of every exchange and queue name (tests use a fresh one each).
    pub bus_prefix: String,
}

impl BusSettings {
    pub fn from_settings(env: &mut Settings) -> Self {
        Self {
            amqp_url: env.string("AMQP_URL", DEFAULT_AMQP_URL),
            bus_prefix: env.string("BUS_PREFIX", DEFAULT_BUS_PREFIX),
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
    fn every_setting_read_is_recorded_with_its_default() {
        let mut env = Settings::from_json_only(r#"{"TEST_REC_ADDR": "off"}"#).unwrap();
        let _: u16 = env.or("TEST_REC_PORT", 80);
        let _ = env.millis("TEST_REC_MS", Duration::from_secs(2));
        let _ = env.string("TEST_REC_NAME", "");
        let default_addr = SocketAddr::from(([127, 0, 0, 1], 9100));
        assert_eq!(env.listen_addr("TEST_REC_ADDR", default_addr), None);
        let _ = env.listen_addr("TEST_REC_ADDR", default_addr);
        let _ = env.lookup("JWT_SECRET");
        let _ = env.lookup("JWT_ISSUER");
        let _ = env.lookup("TEST_REC_RAW");
        let spec = |name: &str, default: Option<&str>| SettingSpec {
            name: name.to_owned(),
            default: default.map(str::to_owned),
            required: false,
            secret: false,
        };
        assert_eq!(
            env.specs(),
            vec![
                spec("JWT_ISSUER", Some(crate::auth::DEFAULT_ISSUER)),
                SettingSpec {
                    required: true,
                    secret: true,
                    ..spec("JWT_SECRET", None)
                },
                spec("TEST_REC_ADDR", Some("127.0.0.1:9100")),
                spec("TEST_REC_MS", Some("2000")),
                spec("TEST_REC_NAME", Some("")),
                spec("TEST_REC_PORT", Some("80")),
                spec("TEST_REC_RAW", None),
            ],
            "sorted, each once, the defaults spelt as a variable would be"
        );
        assert_eq!(env.undescribed(), ["TEST_REC_RAW"]);
    }

    #[test]
    fn a_secret_is_recorded_without_its_value() {
        let env = Settings::from_json_only(r#"{"JWT_PREVIOUS_SECRETS": "k0:hunter2"}"#).unwrap();
        assert_eq!(
            env.lookup("JWT_PREVIOUS_SECRETS").as_deref(),
            Some("k0:hunter2")
        );
        let specs = format!("{:?}", env.specs());
        assert!(!specs.contains("hunter2"), "{specs}");
        assert!(env.specs()[0].secret);
    }

    #[test]
    fn from_json_only_ignores_the_environment() {
        // PATH is set wherever tests run.
        let with_environment = Settings::from_json("{}").unwrap();
        assert!(with_environment.lookup("PATH").is_some());
        let file_only = Settings::from_json_only(r#"{"TEST_REC_FILE": "1"}"#).unwrap();
        assert_eq!(file_only.lookup("PATH"), None);
        assert_eq!(file_only.lookup("TEST_REC_FILE").as_deref(), Some("1"));
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

//! Settings from the environment, with local defaults.

use std::net::SocketAddr;
use std::time::Duration;

use marquee_infra::config::{ConfigError, Settings};
use secrecy::{ExposeSecret as _, SecretString};

/// `PSP_DATABASE_URL`'s default: the local PostgreSQL.
pub const DEFAULT_DATABASE_URL: &str = "postgres://postgres@127.0.0.1:5432/marquee_psp";
/// `PSP_SECRET_KEY`'s default. A sandbox key, public on purpose: the sandbox moves no
/// real money, and `make run` and the tests rely on it.
pub const DEFAULT_SECRET_KEY: &str = "test_sk_marquee";

/// Everything the sandbox needs to start.
#[derive(Clone)]
pub struct PspConfig {
    /// `PSP_ADDR`, default `127.0.0.1:50060`; port 0 picks a free port.
    pub listen_addr: SocketAddr,
    /// `PSP_DATABASE_URL`; the database is created if missing and migrated on start.
    pub database_url: String,
    /// `PSP_SECRET_KEY`: callers send `Authorization: Basic base64("<key>:")`.
    pub secret_key: SecretString,
    /// `PSP_SLOW_MS`, default 5000: how long `tok_slow` waits before answering.
    pub slow: Duration,
    /// Connections of the database pool.
    pub db_max_connections: u32,
}

impl PspConfig {
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
            listen_addr: env.or("PSP_ADDR", SocketAddr::from(([127, 0, 0, 1], 50060))),
            database_url: env.string("PSP_DATABASE_URL", DEFAULT_DATABASE_URL),
            secret_key: env.string("PSP_SECRET_KEY", DEFAULT_SECRET_KEY).into(),
            slow: env.millis("PSP_SLOW_MS", Duration::from_secs(5)),
            db_max_connections: 10,
        }
    }

    /// Local defaults on `database_url` with an ephemeral port, for tests.
    pub fn local(database_url: impl Into<String>) -> Self {
        Self {
            listen_addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            database_url: database_url.into(),
            secret_key: DEFAULT_SECRET_KEY.into(),
            slow: Duration::from_secs(5),
            db_max_connections: 10,
        }
    }

    /// Whether the secret key is the public default.
    pub fn uses_default_key(&self) -> bool {
        self.secret_key.expose_secret() == DEFAULT_SECRET_KEY
    }
}

impl std::fmt::Debug for PspConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PspConfig")
            .field("listen_addr", &self.listen_addr)
            .field("secret_key", &"<redacted>")
            .field("slow", &self.slow)
            .field("db_max_connections", &self.db_max_connections)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_and_overrides() {
        let mut env = Settings::from_json_only("{}").expect("json");
        let config = PspConfig::from_settings(&mut env);
        env.finish().expect("no bad setting");
        assert_eq!(config.listen_addr.to_string(), "127.0.0.1:50060");
        assert_eq!(config.database_url, DEFAULT_DATABASE_URL);
        assert!(config.uses_default_key());
        assert_eq!(config.slow, Duration::from_secs(5));

        let mut env = Settings::from_json_only(
            r#"{"PSP_ADDR": "0.0.0.0:1", "PSP_SECRET_KEY": "sk_other", "PSP_SLOW_MS": 10}"#,
        )
        .expect("json");
        let config = PspConfig::from_settings(&mut env);
        env.finish().expect("no bad setting");
        assert_eq!(config.listen_addr.port(), 1);
        assert!(!config.uses_default_key());
        assert!(!format!("{config:?}").contains("sk_other"));
        assert_eq!(config.slow, Duration::from_millis(10));

        let mut env = Settings::from_json_only(r#"{"PSP_SLOW_MS": "soon"}"#).expect("json");
        let _ = PspConfig::from_settings(&mut env);
        assert!(
            env.finish()
                .unwrap_err()
                .to_string()
                .contains("PSP_SLOW_MS")
        );
    }
}

//! One system under test: psp-sandbox, pay-svc and booking-svc as processes, with fresh
//! databases, bus prefix, Redis key prefix and ports; the pools the checks read the
//! databases with; the gRPC clients the load drives booking-svc with.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::db::{self, Db};
use anyhow::{Context, Result};
use tonic::transport::{Channel, Endpoint};
use uuid::Uuid;

use crate::procs::{Service, free_port};

pub const JWT_SECRET: &str = "chaos-secret-for-marquee";
pub const PSP_SECRET_KEY: &str = "test_sk_chaos";

/// Where the shared infrastructure is and where the binaries are.
#[derive(Debug, Clone)]
pub struct Env {
    pub pg_base: String,
    pub amqp_url: String,
    pub redis_url: String,
    pub bin_dir: PathBuf,
    /// `target/chaos-logs/<run>/`.
    pub log_dir: PathBuf,
}

/// How a scenario wants the services configured.
#[derive(Debug, Clone)]
pub struct Knobs {
    /// `OUTBOX_PUBLISH_COPIES` of booking-svc and pay-svc.
    pub publish_copies: u32,
    /// booking-svc's `PAYMENT_DEADLINE_MS`.
    pub payment_deadline: Duration,
    /// The sandbox's `PSP_SLOW_MS`.
    pub psp_slow: Duration,
    /// pay-svc's `PSP_TIMEOUT_MS`.
    pub psp_timeout: Duration,
    /// booking-svc's Redis, when not the shared one.
    pub redis_url: Option<String>,
}

impl Default for Knobs {
    fn default() -> Self {
        Self {
            publish_copies: 1,
            payment_deadline: Duration::from_secs(300),
            psp_slow: Duration::from_millis(1500),
            psp_timeout: Duration::from_millis(1000),
            redis_url: None,
        }
    }
}

pub struct System {
    pub bus_prefix: String,
    pub redis_prefix: String,
    pub booking_db: String,
    pub pay_db: String,
    pub psp_db: String,
    pub psp: Service,
    pub pay: Service,
    pub booking: Service,
    pub booking_pool: Db,
    pub pay_pool: Db,
    pub psp_pool: Db,
    pub channel: Channel,
    pub log_dir: PathBuf,
    env: Env,
}

fn ms(d: Duration) -> String {
    d.as_millis().to_string()
}

impl System {
    pub async fn start(env: &Env, scenario: &str, knobs: &Knobs) -> Result<Self> {
        let id = Uuid::new_v4().simple().to_string();
        let short = &id[..12];
        let log_dir = env.log_dir.join(scenario);
        std::fs::create_dir_all(&log_dir)
            .with_context(|| format!("create {}", log_dir.display()))?;
        let booking_db = format!("{}/chaos_booking_{short}", env.pg_base);
        let pay_db = format!("{}/chaos_pay_{short}", env.pg_base);
        let psp_db = format!("{}/chaos_psp_{short}", env.pg_base);
        let bus_prefix = format!("chaos.{short}.");
        let redis_prefix = format!("chaos:{short}:");
        let (psp_port, pay_port, booking_port) = (free_port()?, free_port()?, free_port()?);

        let common = |extra: &[(&str, String)]| -> BTreeMap<String, String> {
            let mut vars: BTreeMap<String, String> = [
                ("RUST_LOG", "info".to_owned()),
                ("JWT_SECRET", JWT_SECRET.to_owned()),
                ("AMQP_URL", env.amqp_url.clone()),
                ("BUS_PREFIX", bus_prefix.clone()),
                ("OUTBOX_PUBLISH_COPIES", knobs.publish_copies.to_string()),
                ("MARQUEE_CONFIG_FILE", String::new()),
            ]
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v))
            .collect();
            for (k, v) in extra {
                vars.insert((*k).to_owned(), v.clone());
            }
            vars
        };
        let psp_env: BTreeMap<String, String> = [
            ("RUST_LOG", "info".to_owned()),
            ("PSP_ADDR", format!("127.0.0.1:{psp_port}")),
            ("PSP_DATABASE_URL", psp_db.clone()),
            ("PSP_SECRET_KEY", PSP_SECRET_KEY.to_owned()),
            ("PSP_SLOW_MS", ms(knobs.psp_slow)),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect();
        let pay_env = common(&[
            ("PAY_GRPC_ADDR", format!("127.0.0.1:{pay_port}")),
            ("PAY_METRICS_ADDR", "off".to_owned()),
            ("PAY_DATABASE_URL", pay_db.clone()),
            ("PAY_DB_MAX_CONNECTIONS", "8".to_owned()),
            ("PSP_URL", format!("http://127.0.0.1:{psp_port}")),
            ("PSP_SECRET_KEY", PSP_SECRET_KEY.to_owned()),
            ("PSP_TIMEOUT_MS", ms(knobs.psp_timeout)),
            ("PSP_RESOLVE_INTERVAL_MS", "200".to_owned()),
        ]);
        let booking_env = common(&[
            ("BOOKING_GRPC_ADDR", format!("127.0.0.1:{booking_port}")),
            ("BOOKING_METRICS_ADDR", "off".to_owned()),
            ("BOOKING_DATABASE_URL", booking_db.clone()),
            ("BOOKING_DB_MAX_CONNECTIONS", "10".to_owned()),
            (
                "REDIS_URL",
                knobs
                    .redis_url
                    .clone()
                    .unwrap_or_else(|| env.redis_url.clone()),
            ),
            ("REDIS_PREFIX", redis_prefix.clone()),
            ("PAY_URL", format!("http://127.0.0.1:{pay_port}")),
            ("ARGON2_MEMORY_KIB", "1024".to_owned()),
            ("PAYMENT_DEADLINE_MS", ms(knobs.payment_deadline)),
            ("HOLD_SWEEP_INTERVAL_MS", "100".to_owned()),
            ("DEFAULT_MAX_SEATS_PER_BUYER", "20".to_owned()),
        ]);
        let bin = |name: &str| env.bin_dir.join(name);
        let mut psp = Service::new(
            "psp-sandbox",
            bin("psp-sandbox"),
            psp_env,
            psp_port,
            &log_dir,
        );
        let mut pay = Service::new("pay-svc", bin("pay-svc"), pay_env, pay_port, &log_dir);
        let mut booking = Service::new(
            "booking-svc",
            bin("booking-svc"),
            booking_env,
            booking_port,
            &log_dir,
        );
        remember(Names {
            databases: vec![booking_db.clone(), pay_db.clone(), psp_db.clone()],
            bus_prefix: bus_prefix.clone(),
            redis_prefix: redis_prefix.clone(),
            amqp_url: env.amqp_url.clone(),
            redis_url: env.redis_url.clone(),
        });
        let start = Duration::from_secs(60);
        psp.start(start).await?;
        pay.start(start).await?;
        booking.start(start).await?;
        let booking_pool = db::open(&booking_db).await?;
        let pay_pool = db::open(&pay_db).await?;
        let psp_pool = db::open(&psp_db).await?;
        let channel = Endpoint::from_shared(format!("http://127.0.0.1:{booking_port}"))
            .context("booking-svc endpoint")?
            .connect_timeout(Duration::from_secs(2))
            .timeout(Duration::from_secs(15))
            .tcp_nodelay(true)
            .connect_lazy();
        Ok(Self {
            bus_prefix,
            redis_prefix,
            booking_db,
            pay_db,
            psp_db,
            psp,
            pay,
            booking,
            booking_pool,
            pay_pool,
            psp_pool,
            channel,
            log_dir,
            env: env.clone(),
        })
    }

    pub fn log_dir(&self) -> &Path {
        &self.log_dir
    }

    /// Stops the services and removes the databases, the Redis keys and the bus names.
    /// `booking-svc grant-admin <email>`: the one way to make an admin.
    pub fn grant_admin(&self, email: &str) -> Result<()> {
        let output = std::process::Command::new(self.env.bin_dir.join("booking-svc"))
            .args(["grant-admin", email])
            .env("BOOKING_DATABASE_URL", &self.booking_db)
            .env("MARQUEE_CONFIG_FILE", "")
            .output()
            .context("run booking-svc grant-admin")?;
        if !output.status.success() {
            anyhow::bail!(
                "booking-svc grant-admin failed: {}",
                String::from_utf8_lossy(&output.stderr).trim()
            );
        }
        Ok(())
    }

    pub async fn teardown(mut self) {
        self.booking.stop();
        self.pay.stop();
        self.psp.stop();
        let names = self.names();
        for pool in [self.booking_pool, self.pay_pool, self.psp_pool] {
            let _ = pool.close().await;
        }
        names.remove().await;
        forget(&names);
    }

    fn names(&self) -> Names {
        Names {
            databases: vec![
                self.booking_db.clone(),
                self.pay_db.clone(),
                self.psp_db.clone(),
            ],
            bus_prefix: self.bus_prefix.clone(),
            redis_prefix: self.redis_prefix.clone(),
            amqp_url: self.env.amqp_url.clone(),
            redis_url: self.env.redis_url.clone(),
        }
    }
}

/// What one system created outside its processes: databases, bus names, Redis keys.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Names {
    databases: Vec<String>,
    bus_prefix: String,
    redis_prefix: String,
    amqp_url: String,
    redis_url: String,
}

/// The names of every system started and not torn down yet (a scenario that failed
/// half-way): [`remove_leftovers`] removes them at the end of the run.
static STARTED: std::sync::Mutex<Vec<Names>> = std::sync::Mutex::new(Vec::new());

fn remember(names: Names) {
    STARTED
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .push(names);
}

fn forget(names: &Names) {
    STARTED
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .retain(|n| n != names);
}

/// Removes what the systems a failed scenario left behind created (their processes
/// are gone already: each [`Service`] stops its process when dropped).
pub async fn remove_leftovers() {
    let left: Vec<Names> = std::mem::take(
        &mut *STARTED
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner),
    );
    for names in left {
        names.remove().await;
    }
}

impl Names {
    async fn remove(&self) {
        for db in &self.databases {
            if let Err(error) = marquee_infra::db::drop_database(db).await {
                crate::procs::tracing_free_note(&format!("drop {db}: {error:#}"));
            }
        }
        if let Err(error) = crate::bus::delete_names(&self.amqp_url, &self.bus_prefix).await {
            crate::procs::tracing_free_note(&format!("delete bus names: {error:#}"));
        }
        if let Err(error) = delete_redis_keys(&self.redis_url, &self.redis_prefix) {
            crate::procs::tracing_free_note(&format!("delete redis keys: {error:#}"));
        }
    }
}

/// Deletes the keys under `prefix` with redis-cli (`--scan` then `UNLINK`).
fn delete_redis_keys(redis_url: &str, prefix: &str) -> Result<()> {
    let output = std::process::Command::new("redis-cli")
        .args([
            "-u",
            redis_url,
            "--scan",
            "--pattern",
            &format!("{prefix}*"),
        ])
        .output()
        .context("run redis-cli")?;
    let keys: Vec<String> = String::from_utf8_lossy(&output.stdout)
        .lines()
        .map(str::to_owned)
        .filter(|k| !k.is_empty())
        .collect();
    for chunk in keys.chunks(500) {
        std::process::Command::new("redis-cli")
            .args(["-u", redis_url, "UNLINK"])
            .args(chunk)
            .output()
            .context("run redis-cli unlink")?;
    }
    Ok(())
}

//! The pay-svc binary fails closed: without `JWT_SECRET`, and outside development mode
//! (`MARQUEE_DEV`), it refuses to start and says which variable is missing.

use std::io::Read;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use lapin::options::{ExchangeDeleteOptions, QueueDeleteOptions};
use lapin::types::ShortString;
use marquee_infra::bus::BusConfig;
use uuid::Uuid;

const PG: &str = "postgres://postgres@127.0.0.1:5432";
const AMQP: &str = "amqp://guest:guest@127.0.0.1:5672/%2f";
/// Longer than a refusal takes; shorter than anyone would wait for a service that
/// started instead.
const BOUND: Duration = Duration::from_secs(20);

#[tokio::test]
async fn without_jwt_secret_outside_development_mode_it_exits_naming_the_variable() {
    let id = Uuid::new_v4().simple().to_string();
    let database_url = format!("{PG}/pay_startup_{id}");
    let prefix = format!("test.{id}.");

    let child = Command::new(env!("CARGO_BIN_EXE_pay-svc"))
        .env_remove("JWT_SECRET")
        .env_remove("JWT_PREVIOUS_SECRETS")
        .env_remove("MARQUEE_DEV")
        .env("PAY_GRPC_ADDR", "127.0.0.1:0")
        .env("PAY_METRICS_ADDR", "off")
        .env("PAY_DATABASE_URL", &database_url)
        .env("AMQP_URL", AMQP)
        .env("BUS_PREFIX", &prefix)
        .env("RUST_LOG", "info")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("pay-svc binary runs");

    let (status, stderr) = wait_bounded(child).await;

    // Had it started, it made a database and queues of its own: remove them.
    cleanup(&database_url, &BusConfig::new(AMQP, prefix)).await;

    let status = status.unwrap_or_else(|| {
        panic!("pay-svc was still running after {BOUND:?} without JWT_SECRET; stderr: {stderr}")
    });
    assert!(
        !status.success(),
        "pay-svc exited successfully without JWT_SECRET; stderr: {stderr}"
    );
    assert!(
        stderr.contains("JWT_SECRET"),
        "the refusal does not name JWT_SECRET: {stderr}"
    );
    assert!(
        stderr.contains("MARQUEE_DEV"),
        "the refusal does not say how to run in development mode: {stderr}"
    );
}

/// Waits up to [`BOUND`] for `child` to exit (killing it after that): its exit status
/// (`None` if it was still running) and what it wrote to stderr.
async fn wait_bounded(
    mut child: std::process::Child,
) -> (Option<std::process::ExitStatus>, String) {
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait for pay-svc") {
            break Some(status);
        }
        if started.elapsed() > BOUND {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let mut stderr = String::new();
    if let Some(mut pipe) = child.stderr.take() {
        let _ = pipe.read_to_string(&mut stderr);
    }

    (status, stderr)
}

#[tokio::test]
async fn every_bad_setting_from_the_environment_and_the_config_file_is_named_at_once() {
    let id = Uuid::new_v4().simple().to_string();
    let database_url = format!("{PG}/pay_startup_{id}");
    let prefix = format!("test.{id}.");
    let file = std::env::temp_dir().join(format!("marquee-config-{id}.json"));
    std::fs::write(
        &file,
        format!(r#"{{"PAY_DB_MAX_CONNECTIONS": "many", "PAY_DATABASE_URL": "{database_url}"}}"#),
    )
    .expect("config file written");

    let child = Command::new(env!("CARGO_BIN_EXE_pay-svc"))
        .env_remove("JWT_SECRET")
        .env_remove("JWT_PREVIOUS_SECRETS")
        .env_remove("MARQUEE_DEV")
        .env_remove("PAY_DATABASE_URL")
        .env_remove("PSP_SECRET_KEY")
        .env("MARQUEE_CONFIG_FILE", &file)
        .env("PAY_CONSUMER_CONCURRENCY", "-3")
        .env("PAY_GRPC_ADDR", "127.0.0.1:0")
        .env("PAY_METRICS_ADDR", "off")
        .env("AMQP_URL", AMQP)
        .env("BUS_PREFIX", &prefix)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("pay-svc binary runs");
    let (status, stderr) = wait_bounded(child).await;
    let _ = std::fs::remove_file(&file);
    cleanup(&database_url, &BusConfig::new(AMQP, prefix)).await;

    let status = status.unwrap_or_else(|| panic!("pay-svc started with bad settings: {stderr}"));
    assert!(!status.success(), "{stderr}");
    // One refusal names all four: the file's bad value, the environment's, the missing
    // secrets (the token key and the payment provider's key).
    for name in [
        "PAY_DB_MAX_CONNECTIONS",
        "PAY_CONSUMER_CONCURRENCY",
        "JWT_SECRET",
        "PSP_SECRET_KEY",
    ] {
        assert!(stderr.contains(name), "{name} is not named: {stderr}");
    }
    assert!(stderr.contains("4 settings are invalid"), "{stderr}");
}

async fn cleanup(database_url: &str, bus: &BusConfig) {
    marquee_infra::db::drop_database(database_url)
        .await
        .expect("drop test database");
    if let Ok(connection) =
        lapin::Connection::connect(AMQP, lapin::ConnectionProperties::default()).await
        && let Ok(channel) = connection.create_channel().await
    {
        for name in [pay_svc::saga::QUEUE] {
            for queue in [bus.queue(name), format!("{}.dlq", bus.queue(name))] {
                let _ = channel
                    .queue_delete(ShortString::from(queue), QueueDeleteOptions::default())
                    .await;
            }
        }
        for exchange in [bus.exchange(), format!("{}dlx", bus.prefix)] {
            let _ = channel
                .exchange_delete(
                    ShortString::from(exchange),
                    ExchangeDeleteOptions::default(),
                )
                .await;
        }
        let _ = connection.close(200, ShortString::from("bye")).await;
    }
}

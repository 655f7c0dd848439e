//! RabbitMQ through `rabbitmqctl` (the machine's broker has no management API): this
//! run's queues and their depths, closing connections, deleting this run's names.

use std::collections::HashSet;
use std::process::Command;

use std::time::Duration;

use anyhow::{Context, Result, bail};
use marquee_infra::bus::{Bus, BusConfig};

/// `rabbitmqctl`: `RABBITMQCTL`, else `/usr/sbin/rabbitmqctl`, else on `PATH`.
fn rabbitmqctl() -> String {
    if let Ok(path) = std::env::var("RABBITMQCTL")
        && !path.trim().is_empty()
    {
        return path;
    }
    if std::path::Path::new("/usr/sbin/rabbitmqctl").exists() {
        return "/usr/sbin/rabbitmqctl".to_owned();
    }
    "rabbitmqctl".to_owned()
}

fn ctl(args: &[&str]) -> Result<String> {
    let output = Command::new(rabbitmqctl())
        .args(["-q"])
        .args(args)
        .output()
        .context("run rabbitmqctl")?;
    if !output.status.success() {
        bail!(
            "rabbitmqctl {} failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}

/// One queue of this run: name, ready and unacknowledged messages.
#[derive(Debug, Clone)]
pub struct Queue {
    pub name: String,
    pub ready: u64,
    pub unacked: u64,
}

/// The queues whose name starts with `prefix`.
pub fn queues(prefix: &str) -> Result<Vec<Queue>> {
    let text = ctl(&[
        "list_queues",
        "--no-table-headers",
        "name",
        "messages_ready",
        "messages_unacknowledged",
    ])?;
    Ok(text
        .lines()
        .filter_map(|line| {
            let mut fields = line.split('\t');
            let name = fields.next()?.trim();
            if !name.starts_with(prefix) {
                return None;
            }
            let ready = fields.next()?.trim().parse().ok()?;
            let unacked = fields.next()?.trim().parse().ok()?;
            Some(Queue {
                name: name.to_owned(),
                ready,
                unacked,
            })
        })
        .collect())
}

/// Messages waiting or in flight in this run's queues other than the dead-letter
/// queues; and the dead-lettered ones.
pub fn depths(prefix: &str) -> Result<(u64, u64)> {
    let mut live = 0;
    let mut dead = 0;
    for queue in queues(prefix)? {
        if queue.name.ends_with(".dlq") {
            dead += queue.ready + queue.unacked;
        } else {
            live += queue.ready + queue.unacked;
        }
    }
    Ok((live, dead))
}

/// Closes every connection of the broker (every other client's too).
pub fn close_all_connections() -> Result<()> {
    ctl(&["close_all_connections", "chaos: forced close"])?;
    Ok(())
}

/// Closes the broker's connections coming from `pids` (found by their local ports with
/// `ss`: the services name their connections without the bus prefix). Returns how many.
pub fn close_connections_of(pids: &[u32]) -> Result<usize> {
    let ports = amqp_ports_of(pids)?;
    if ports.is_empty() {
        return Ok(0);
    }
    // close_connection takes the connection's Erlang pid.
    let text = ctl(&["list_connections", "--no-table-headers", "pid", "peer_port"])?;
    let targets: Vec<&str> = text
        .lines()
        .filter_map(|line| {
            let (pid, port) = line.rsplit_once('\t')?;
            let port = port.trim().parse::<u16>().ok()?;
            ports.contains(&port).then_some(pid.trim())
        })
        .collect();
    // All at once (each rabbitmqctl call takes a second or two).
    std::thread::scope(|scope| {
        let closing: Vec<_> = targets
            .iter()
            .map(|pid| scope.spawn(move || ctl(&["close_connection", pid, "chaos: forced close"])))
            .collect();
        for handle in closing {
            handle
                .join()
                .map_err(|_| anyhow::anyhow!("a close_connection thread panicked"))??;
        }
        anyhow::Ok(())
    })?;
    Ok(targets.len())
}

/// The local ports of `pids`' TCP connections to port 5672.
fn amqp_ports_of(pids: &[u32]) -> Result<HashSet<u16>> {
    let output = Command::new("ss")
        .args(["-tnpH", "state", "established", "dport", "= :5672"])
        .output()
        .context("run ss")?;
    let text = String::from_utf8_lossy(&output.stdout);
    let mut ports = HashSet::new();
    for line in text.lines() {
        let owned = pids.iter().any(|pid| line.contains(&format!("pid={pid},")));
        if !owned {
            continue;
        }
        // Recv-Q Send-Q Local:Port Peer:Port Process
        let local = line.split_whitespace().nth(2).unwrap_or_default();
        if let Some((_, port)) = local.rsplit_once(':')
            && let Ok(port) = port.parse()
        {
            ports.insert(port);
        }
    }
    Ok(ports)
}

/// The queues booking-svc and pay-svc consume (each with its `.dlq`).
pub const QUEUES: [&str; 2] = ["booking.payment-results", "pay.payment-requests"];

/// Deletes this run's queues and exchanges.
pub async fn delete_names(amqp_url: &str, prefix: &str) -> Result<()> {
    let bus = Bus::connect(
        BusConfig::new(amqp_url, prefix).named(format!("{prefix}chaos")),
        Duration::from_secs(10),
    )
    .await
    .context("connect to rabbitmq")?;
    let deleted = bus.delete_topology(&QUEUES).await;
    bus.shutdown();
    deleted.context("delete the run's queues and exchanges")
}

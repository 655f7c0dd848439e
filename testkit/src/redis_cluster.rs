//! A real Redis Cluster for tests: three masters (no replicas) started on free loopback
//! ports from the machine's `redis-server`, joined with `redis-cli --cluster create`,
//! once per test process and shared by its tests (they keep apart by key prefix). The
//! servers keep nothing on disk and stop when the test process ends, however it ends:
//! each runs under a shell that kills it when the process's pipe to it closes.
//!
//! Missing `redis-server` or `redis-cli` is a failure, not a skip (`.ci/run` installs
//! Debian's `redis-server`, which brings both).

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use marquee_infra::redis_conn::RedisTarget;

/// How many masters the test cluster has.
pub const MASTERS: usize = 3;

struct Cluster {
    ports: Vec<u16>,
    /// Kept open until the process exits: closing a server's stdin stops it.
    _servers: Vec<Child>,
}

static CLUSTER: OnceLock<Cluster> = OnceLock::new();

/// The test cluster's seed nodes, starting it on first use. Panics (failing the test)
/// if it cannot be started.
pub fn redis_cluster() -> RedisTarget {
    let cluster = CLUSTER.get_or_init(|| start().unwrap_or_else(|e| panic!("redis cluster: {e}")));
    RedisTarget::Cluster(cluster.urls())
}

/// The URL of each master of the test cluster (starting it on first use).
pub fn redis_cluster_nodes() -> Vec<String> {
    match redis_cluster() {
        RedisTarget::Cluster(urls) => urls,
        RedisTarget::Single(url) => vec![url],
    }
}

impl Cluster {
    fn urls(&self) -> Vec<String> {
        self.ports
            .iter()
            .map(|p| format!("redis://127.0.0.1:{p}"))
            .collect()
    }
}

/// A free port whose cluster bus port (+10000) is free too.
fn free_port(taken: &[u16]) -> Result<u16, String> {
    for _ in 0..200 {
        let listener = TcpListener::bind("127.0.0.1:0").map_err(|e| e.to_string())?;
        let port = listener.local_addr().map_err(|e| e.to_string())?.port();
        let Some(bus) = port.checked_add(10_000) else {
            continue;
        };
        if taken.contains(&port) || taken.iter().any(|t| t + 10_000 == port) {
            continue;
        }
        if TcpListener::bind(("127.0.0.1", bus)).is_ok() {
            return Ok(port);
        }
    }
    Err("no free port pair".into())
}

fn start() -> Result<Cluster, String> {
    let mut ports = Vec::new();
    let mut servers = Vec::new();
    for _ in 0..MASTERS {
        let port = free_port(&ports)?;
        ports.push(port);
        let node_dir = std::env::temp_dir().join(format!(
            "marquee-redis-cluster-{}-{port}-{}",
            std::process::id(),
            uuid::Uuid::new_v4().simple()
        ));
        std::fs::create_dir_all(&node_dir).map_err(|e| format!("{}: {e}", node_dir.display()))?;
        // The shell starts the server, waits for its stdin (our pipe) to close, which
        // happens when this process ends, and stops the server.
        let child = Command::new("sh")
            .arg("-c")
            .arg(r#"redis-server "$@" & pid=$!; read -r _; kill "$pid"; wait "$pid"; rm -rf "$NODE_DIR""#)
            .arg("sh")
            .args(["--port", &port.to_string()])
            .args(["--bind", "127.0.0.1"])
            .args(["--cluster-enabled", "yes"])
            .args(["--cluster-config-file", "nodes.conf"])
            .args(["--cluster-node-timeout", "2000"])
            .args(["--save", ""])
            .args(["--appendonly", "no"])
            .args(["--protected-mode", "no"])
            .args(["--dir", &node_dir.display().to_string()])
            .args(["--logfile", "redis.log"])
            .env("NODE_DIR", &node_dir)
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .map_err(|e| format!("cannot run redis-server (install Debian's redis-server): {e}"))?;
        servers.push(child);
    }
    for port in &ports {
        wait_until(Duration::from_secs(10), || {
            cli(*port, &["ping"]).is_ok_and(|out| out.trim() == "PONG")
        })
        .map_err(|()| format!("redis-server on port {port} did not start"))?;
    }
    let nodes: Vec<String> = ports.iter().map(|p| format!("127.0.0.1:{p}")).collect();
    let mut create = Command::new("redis-cli");
    create.arg("--cluster").arg("create").args(&nodes).args([
        "--cluster-replicas",
        "0",
        "--cluster-yes",
    ]);
    let output = create
        .output()
        .map_err(|e| format!("cannot run redis-cli: {e}"))?;
    if !output.status.success() {
        return Err(format!(
            "redis-cli --cluster create failed: {}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        ));
    }
    for port in &ports {
        wait_until(Duration::from_secs(20), || {
            cli(*port, &["cluster", "info"]).is_ok_and(|info| {
                info.lines().any(|l| l.trim() == "cluster_state:ok")
                    && info
                        .lines()
                        .any(|l| l.trim() == format!("cluster_known_nodes:{MASTERS}"))
            })
        })
        .map_err(|()| format!("the cluster did not become ready on port {port}"))?;
    }
    Ok(Cluster {
        ports,
        _servers: servers,
    })
}

fn cli(port: u16, args: &[&str]) -> Result<String, String> {
    let output = Command::new("redis-cli")
        .args(["-p", &port.to_string()])
        .args(args)
        .output()
        .map_err(|e| e.to_string())?;
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}

fn wait_until(limit: Duration, mut ready: impl FnMut() -> bool) -> Result<(), ()> {
    let started = Instant::now();
    while started.elapsed() < limit {
        if ready() {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Err(())
}

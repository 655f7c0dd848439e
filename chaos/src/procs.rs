//! The services as OS processes the suite can `kill -9` and start again.
//!
//! Each service runs under a small `sh` wrapper whose stdin is a pipe from this
//! process: the wrapper starts the binary in the background, writes its pid to a file,
//! and blocks reading the pipe. When this process ends, however it ends (normal exit,
//! panic, SIGKILL), the pipe closes, the wrapper's read returns and it kills the
//! service. [`Service`]'s `Drop` closes the pipe too. Nothing outlives the run.

use std::collections::BTreeMap;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

/// The wrapper: `$1…` is the command line; `CHAOS_LOG` and `CHAOS_PIDFILE` say where
/// its output and pid go.
const WRAPPER: &str = r#""$@" </dev/null >>"$CHAOS_LOG" 2>&1 & pid=$!
echo "$pid" >"$CHAOS_PIDFILE"
read -r _
kill -9 "$pid" 2>/dev/null
wait "$pid" 2>/dev/null
exit 0"#;

/// A free TCP port on 127.0.0.1 (bound, then released).
pub fn free_port() -> Result<u16> {
    let listener = TcpListener::bind("127.0.0.1:0").context("bind a free port")?;
    Ok(listener.local_addr().context("local address")?.port())
}

/// One service process: its binary, environment, log file, and the running instance.
pub struct Service {
    pub name: String,
    binary: PathBuf,
    args: Vec<String>,
    env: BTreeMap<String, String>,
    /// The port it serves on, for the readiness check.
    pub port: u16,
    log: PathBuf,
    pidfile: PathBuf,
    wrapper: Option<Child>,
    pid: Option<u32>,
    /// How many times it was started.
    pub starts: u32,
}

impl Service {
    pub fn new(
        name: &str,
        binary: PathBuf,
        env: BTreeMap<String, String>,
        port: u16,
        log_dir: &Path,
    ) -> Self {
        Self {
            name: name.to_owned(),
            binary,
            args: Vec::new(),
            env,
            port,
            log: log_dir.join(format!("{name}.log")),
            pidfile: log_dir.join(format!("{name}.pid")),
            wrapper: None,
            pid: None,
            starts: 0,
        }
    }

    /// The pid of the running binary, if it runs.
    pub fn pid(&self) -> Option<u32> {
        self.pid
    }

    /// Starts the binary and waits until its port accepts connections (up to `within`).
    pub async fn start(&mut self, within: Duration) -> Result<()> {
        self.stop_wrapper();
        let _ = std::fs::remove_file(&self.pidfile);
        if !self.binary.exists() {
            bail!(
                "{} not found: build it first (cargo build --bins -p {}), or set CHAOS_BIN_DIR",
                self.binary.display(),
                self.name
            );
        }
        let mut command = Command::new("sh");
        command
            .arg("-c")
            .arg(WRAPPER)
            .arg("sh")
            .arg(&self.binary)
            .args(&self.args)
            .env("CHAOS_LOG", &self.log)
            .env("CHAOS_PIDFILE", &self.pidfile)
            .envs(&self.env)
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        let wrapper = command
            .spawn()
            .with_context(|| format!("start {}", self.name))?;
        self.wrapper = Some(wrapper);
        self.starts += 1;
        let started = Instant::now();
        let pid = loop {
            if let Ok(text) = std::fs::read_to_string(&self.pidfile)
                && let Ok(pid) = text.trim().parse::<u32>()
            {
                break pid;
            }
            if started.elapsed() > Duration::from_secs(5) {
                bail!("{} wrote no pid", self.name);
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        };
        self.pid = Some(pid);
        let addr = SocketAddr::from(([127, 0, 0, 1], self.port));
        loop {
            if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
                return Ok(());
            }
            if !self.alive() {
                bail!(
                    "{} exited during start (log: {})",
                    self.name,
                    self.log.display()
                );
            }
            if started.elapsed() > within {
                bail!(
                    "{} did not listen on {addr} within {within:?} (log: {})",
                    self.name,
                    self.log.display()
                );
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    /// Whether the binary still runs.
    pub fn alive(&self) -> bool {
        self.pid
            .is_some_and(|pid| Path::new(&format!("/proc/{pid}")).exists() && !zombie(pid))
    }

    /// `kill -9` of the binary (not of the wrapper), then waits until it is gone.
    pub async fn kill9(&mut self) -> Result<()> {
        let Some(pid) = self.pid else {
            return Ok(());
        };
        let status = Command::new("kill")
            .args(["-9", &pid.to_string()])
            .status()
            .context("run kill")?;
        if !status.success() {
            tracing_free_note(&format!("kill -9 {pid} of {} failed", self.name));
        }
        let started = Instant::now();
        while self.alive() && started.elapsed() < Duration::from_secs(5) {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        self.stop_wrapper();
        self.pid = None;
        Ok(())
    }

    /// Closes the wrapper's pipe (which kills the binary if it still runs) and reaps it.
    fn stop_wrapper(&mut self) {
        if let Some(mut wrapper) = self.wrapper.take() {
            drop(wrapper.stdin.take());
            let started = Instant::now();
            loop {
                match wrapper.try_wait() {
                    Ok(Some(_)) | Err(_) => break,
                    Ok(None) if started.elapsed() > Duration::from_secs(5) => {
                        let _ = wrapper.kill();
                        let _ = wrapper.wait();
                        break;
                    }
                    Ok(None) => std::thread::sleep(Duration::from_millis(5)),
                }
            }
        }
    }

    /// Stops the service for good.
    pub fn stop(&mut self) {
        self.stop_wrapper();
        self.pid = None;
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        self.stop();
    }
}

fn zombie(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|stat| {
            stat.rsplit_once(')')
                .is_some_and(|(_, rest)| rest.trim_start().starts_with('Z'))
        })
        .unwrap_or(true)
}

/// Notes to stderr (the suite prints its table to stdout).
pub fn tracing_free_note(message: &str) {
    eprintln!("chaos: {message}");
}

/// A redis-server of the suite's own on a free port, stopped with the run (the same
/// stdin-pipe wrapper as the services).
pub struct OwnRedis {
    pub port: u16,
    service: Service,
}

impl OwnRedis {
    pub async fn start(log_dir: &Path) -> Result<Self> {
        let port = free_port()?;
        let dir = log_dir.join(format!("redis-{port}"));
        std::fs::create_dir_all(&dir).with_context(|| format!("create {}", dir.display()))?;
        let binary = which("redis-server").context("redis-server is not installed")?;
        let mut service = Service::new("redis-server", binary, BTreeMap::new(), port, log_dir);
        service.args = [
            "--port",
            &port.to_string(),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--protected-mode",
            "no",
            "--dir",
            &dir.display().to_string(),
        ]
        .iter()
        .map(|s| (*s).to_owned())
        .collect();
        service.start(Duration::from_secs(10)).await?;
        Ok(Self { port, service })
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// `FLUSHALL` on this server (never on the machine's shared one).
    pub fn flushall(&self) -> Result<()> {
        let output = Command::new("redis-cli")
            .args(["-p", &self.port.to_string(), "FLUSHALL"])
            .output()
            .context("run redis-cli")?;
        let reply = String::from_utf8_lossy(&output.stdout);
        if reply.trim() != "OK" {
            bail!("flushall on port {} answered {reply:?}", self.port);
        }
        Ok(())
    }

    pub fn stop(&mut self) {
        self.service.stop();
    }
}

/// The full path of `program` on `PATH`.
pub fn which(program: &str) -> Option<PathBuf> {
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|dir| dir.join(program))
            .find(|path| path.is_file())
    })
}

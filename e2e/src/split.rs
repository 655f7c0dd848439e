//! The benchmarks' two-process mode (`BENCH_SPLIT`): the system under test in a child
//! process pinned to its own cores, the load generator in the benchmark's process pinned
//! to the others, so that each side's CPU, memory and open files are its own and the
//! server-side figures can be told from the client-side ones.
//!
//! `BENCH_SPLIT=1` pins the system to every core but the last and the generator to the
//! last (on one core the split is refused: there is nothing to pin apart);
//! `BENCH_SPLIT=0-2:3` names the cores (`taskset` lists, system first). Unset or `0`:
//! both in one process, as the tests always run (only an executable cargo started
//! with `--bench` splits).
//!
//! How: [`crate::System::start_with`] in the generator spawns the benchmark's own
//! executable again under `taskset`, with [`SYSTEM_ID_ENV`] set. The child runs the
//! same `main` up to its own `start_with`, which starts the services for real (same
//! options, since both read the same environment), prints one [`Ready`] line and serves
//! until its stdin closes, then stops the system (dropping its databases, queues and
//! keys) and exits. The generator attaches to the child's system by the names the id
//! implies and the ports the `Ready` line gives.

use std::process::Stdio;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, BufReader};
use tokio::process::{Child, Command};

/// Set in the child: the system id (databases, prefixes) it must start under.
pub const SYSTEM_ID_ENV: &str = "MARQUEE_SPLIT_SYSTEM_ID";
/// What the benchmark user sets.
pub const SPLIT_ENV: &str = "BENCH_SPLIT";
const READY_PREFIX: &str = "marquee-split-system-ready ";
/// How long the child may take to start the system (migrations included).
const START_TIMEOUT: Duration = Duration::from_secs(180);

/// Which cores each side gets, as `taskset -c` lists.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cores {
    pub system: String,
    pub generator: String,
}

impl Cores {
    /// What `BENCH_SPLIT` asks for on a machine with `cpus` cores; `Err` explains a
    /// setting that cannot be honoured.
    pub fn parse(setting: &str, cpus: usize) -> Result<Option<Self>, String> {
        match setting.trim() {
            "" | "0" => Ok(None),
            "1" if cpus < 2 => Err(format!(
                "{SPLIT_ENV}=1 needs at least 2 cores to pin apart, this machine has {cpus}"
            )),
            "1" => Ok(Some(Self {
                system: if cpus == 2 {
                    "0".to_owned()
                } else {
                    format!("0-{}", cpus - 2)
                },
                generator: (cpus - 1).to_string(),
            })),
            lists => match lists.split_once(':') {
                Some((system, generator)) if is_cpu_list(system) && is_cpu_list(generator) => {
                    Ok(Some(Self {
                        system: system.to_owned(),
                        generator: generator.to_owned(),
                    }))
                }
                _ => Err(format!(
                    "{SPLIT_ENV}={lists}: expected 0, 1 or SYSTEM_CPUS:GENERATOR_CPUS (e.g. 0:1)"
                )),
            },
        }
    }

    /// The split this run asks for (`None`: one process). Only a benchmark splits (cargo
    /// runs one with `--bench`): a test run with `BENCH_SPLIT` still exported keeps its
    /// system in process. A bad setting panics: a benchmark must not silently measure
    /// something else than it was asked to.
    pub fn requested() -> Option<Self> {
        if !std::env::args().skip(1).any(|arg| arg == "--bench") {
            return None;
        }
        let setting = std::env::var(SPLIT_ENV).unwrap_or_default();
        // The cores present, not the affinity this process may already have.
        let cpus = std::fs::read_to_string("/proc/cpuinfo")
            .map(|info| info.lines().filter(|l| l.starts_with("processor")).count())
            .unwrap_or(1);
        Self::parse(&setting, cpus).unwrap_or_else(|e| panic!("{e}"))
    }
}

fn is_cpu_list(list: &str) -> bool {
    !list.is_empty()
        && list.split(',').all(|part| {
            let mut bounds = part.splitn(2, '-');
            bounds.all(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
        })
}

/// In the child: the id of the system it is to start.
pub fn child_system_id() -> Option<String> {
    std::env::var(SYSTEM_ID_ENV)
        .ok()
        .filter(|id| !id.is_empty())
}

/// What the child tells the generator once its system serves.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Ready {
    pub base: String,
    pub booking_port: u16,
    pub pay_port: u16,
    pub realtime_ports: Vec<u16>,
    pub psp_url: String,
    /// The child's Prometheus endpoint (every service's metrics: one process, one
    /// recorder).
    pub metrics_url: String,
}

/// The child's side: announce the system, serve until the generator closes our stdin
/// (it exited, or stopped the system), stop the system, exit.
pub async fn serve_as_child(sys: crate::System, ready: Ready) -> ! {
    let line = serde_json::to_string(&ready).expect("ready line");
    println!("{READY_PREFIX}{line}");
    let mut stdin = tokio::io::stdin();
    let mut sink = [0u8; 64];
    while matches!(stdin.read(&mut sink).await, Ok(n) if n > 0) {}
    sys.stop().await;
    std::process::exit(0)
}

/// The generator's side: starts the child under `taskset`, pins this process, waits for
/// the child's [`Ready`].
pub async fn spawn_system(id: &str, cores: &Cores) -> (Child, Ready) {
    let exe = std::env::current_exe().expect("the benchmark's executable");
    let mut child = Command::new("taskset")
        .arg("-c")
        .arg(&cores.system)
        .arg(exe)
        .args(std::env::args_os().skip(1))
        .env(SYSTEM_ID_ENV, id)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .expect("spawning the system process (is taskset installed?)");
    pin_self(&cores.generator);
    let stdout = child.stdout.take().expect("child stdout");
    let mut lines = BufReader::new(stdout).lines();
    let ready = tokio::time::timeout(START_TIMEOUT, async {
        while let Ok(Some(line)) = lines.next_line().await {
            if let Some(json) = line.strip_prefix(READY_PREFIX) {
                return serde_json::from_str::<Ready>(json).ok();
            }
        }
        None
    })
    .await
    .ok()
    .flatten()
    .expect("the system process announced itself");
    // Whatever the child prints later is kept apart from the generator's report.
    tokio::spawn(async move {
        while let Ok(Some(line)) = lines.next_line().await {
            eprintln!("system process: {line}");
        }
    });
    println!(
        "split: system process {} on cpus {}, load generator {} on cpus {}",
        child.id().unwrap_or(0),
        cores.system,
        std::process::id(),
        cores.generator
    );
    (child, ready)
}

/// Pins every thread of this process (the runtime's workers exist already) to `cpus`.
fn pin_self(cpus: &str) {
    let status = std::process::Command::new("taskset")
        .args(["-a", "-c", "-p", cpus, &std::process::id().to_string()])
        .stdout(Stdio::null())
        .status();
    assert!(
        status.as_ref().is_ok_and(|s| s.success()),
        "pinning the load generator to cpus {cpus}: {status:?}"
    );
}

/// Closes the child's stdin (its signal to stop) and waits, bounded, for it to clean up
/// and exit; kills it past the bound.
pub async fn stop_child(mut child: Child) {
    drop(child.stdin.take());
    if tokio::time::timeout(Duration::from_secs(60), child.wait())
        .await
        .is_err()
    {
        let _ = child.kill().await;
    }
}

/// CPU time (user + system) process `pid` used so far, in seconds (0 if unreadable).
pub fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the command name (which is in parentheses and may hold spaces).
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    // utime and stime are fields 14 and 15 of the line, 12 and 13 after the name.
    (ticks(11) + ticks(12)) / 100.0
}

/// Resident set of process `pid`, in KiB (0 if unreadable).
pub fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// The `q` quantile of the observations a Prometheus histogram gained between two
/// renders (`before`, `after`) of the series `name` whose labels include `labels`: the
/// upper bound of the first bucket holding it, in the histogram's unit. `None` when
/// nothing was observed, or past the last finite bucket.
pub fn histogram_quantile(
    before: &str,
    after: &str,
    name: &str,
    labels: &[(&str, &str)],
    q: f64,
) -> Option<f64> {
    let bucket = format!("{name}_bucket");
    let buckets = |text: &str| -> Vec<(f64, f64)> {
        let mut out: Vec<(f64, f64)> = crate::metric_samples(text, &bucket, labels)
            .filter_map(|(rest, count)| {
                let le = rest.split("le=\"").nth(1)?.split('"').next()?;
                let le = if le == "+Inf" {
                    f64::INFINITY
                } else {
                    le.parse().ok()?
                };
                Some((le, count))
            })
            .collect();
        out.sort_by(|a, b| a.0.total_cmp(&b.0));
        out
    };
    let (old, new) = (buckets(before), buckets(after));
    let delta: Vec<(f64, f64)> = new
        .iter()
        .map(|&(le, count)| {
            let was = old.iter().find(|o| o.0 == le).map_or(0.0, |o| o.1);
            (le, count - was)
        })
        .collect();
    let total = delta.last()?.1;
    if total <= 0.0 {
        return None;
    }
    delta
        .iter()
        .find(|(_, cumulative)| *cumulative >= q * total)
        .map(|&(le, _)| le)
        .filter(|le| le.is_finite())
}

/// The mean of the observations a Prometheus histogram gained between two renders, in
/// the histogram's unit (its `_sum` over its `_count`); `None` when nothing was observed.
pub fn histogram_mean(
    before: &str,
    after: &str,
    name: &str,
    labels: &[(&str, &str)],
) -> Option<f64> {
    let gained = |suffix: &str| {
        let series = format!("{name}{suffix}");
        let at = |text: &str| crate::metric_sample(text, &series, labels).unwrap_or(0.0);
        at(after) - at(before)
    };
    let count = gained("_count");
    (count > 0.0).then(|| gained("_sum") / count)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_settings() {
        assert_eq!(Cores::parse("", 2), Ok(None));
        assert_eq!(Cores::parse("0", 8), Ok(None));
        let two = Cores::parse("1", 2).expect("ok").expect("split");
        assert_eq!((two.system.as_str(), two.generator.as_str()), ("0", "1"));
        let eight = Cores::parse("1", 8).expect("ok").expect("split");
        assert_eq!(
            (eight.system.as_str(), eight.generator.as_str()),
            ("0-6", "7")
        );
        assert!(Cores::parse("1", 1).is_err());
        let named = Cores::parse("0-2,4:3", 8).expect("ok").expect("split");
        assert_eq!(
            (named.system.as_str(), named.generator.as_str()),
            ("0-2,4", "3")
        );
        assert!(Cores::parse("yes", 2).is_err());
        assert!(Cores::parse("0:", 2).is_err());
        assert!(Cores::parse("a:1", 2).is_err());
    }

    #[test]
    fn quantile_of_the_observations_between_two_renders() {
        let render = |a: u64, b: u64, c: u64| {
            format!(
                "# TYPE d histogram\n\
                 d_bucket{{route=\"/h\",le=\"0.01\"}} {a}\n\
                 d_bucket{{route=\"/h\",le=\"0.025\"}} {b}\n\
                 d_bucket{{route=\"/h\",le=\"+Inf\"}} {c}\n\
                 d_bucket{{route=\"/other\",le=\"0.01\"}} 1000\n"
            )
        };
        // Before: 10 fast ones. Between: 90 under 10 ms, 9 more under 25 ms, 1 slower.
        let (before, after) = (render(10, 10, 10), render(100, 109, 110));
        let at = |q| histogram_quantile(&before, &after, "d", &[("route", "/h")], q);
        assert_eq!(at(0.5), Some(0.01));
        assert_eq!(at(0.99), Some(0.025));
        assert_eq!(at(1.0), None, "past the last finite bucket");
        assert_eq!(
            histogram_quantile(&after, &after, "d", &[("route", "/h")], 0.5),
            None,
            "nothing observed in between"
        );
    }

    #[test]
    fn mean_of_the_observations_between_two_renders() {
        let render = |sum: f64, count: u64| {
            format!(
                "d_sum{{phase=\"commit\"}} {sum}\nd_count{{phase=\"commit\"}} {count}\n\
                 d_sum{{phase=\"begin\"}} 99\nd_count{{phase=\"begin\"}} 1\n"
            )
        };
        let (before, after) = (render(1.0, 10), render(3.0, 20));
        let mean = histogram_mean(&before, &after, "d", &[("phase", "commit")]);
        assert_eq!(mean, Some(0.2), "2 s over 10 new observations");
        assert_eq!(
            histogram_mean(&after, &after, "d", &[("phase", "commit")]),
            None
        );
    }
}

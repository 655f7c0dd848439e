//! `marquee-chaos`: the payment saga against real PostgreSQL, Redis, RabbitMQ and the
//! sandbox PSP, with booking-svc, pay-svc and psp-sandbox as OS processes it kills,
//! under the faults of issue 10; prints one table and exits non-zero if any row
//! breaks an invariant.
//!
//! ```text
//! marquee-chaos [--reduced] [--only 1,6,9] [--<count> N ...]
//! ```
//!
//! The binaries are taken from `CHAOS_BIN_DIR` (default: the directory of this
//! executable, e.g. `target/release`); the services' logs go to
//! `target/chaos-logs/<run>/` (`CHAOS_LOG_DIR` to override the root).

mod bus;
mod db;
mod load;
mod procs;
mod scenarios;
mod system;
mod verify;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use anyhow::{Context, Result, bail};

use crate::scenarios::{Counts, guarded, guarded_rows};
use crate::system::Env;
use crate::verify::Row;

const USAGE: &str = "usage: marquee-chaos [--reduced] [--only 1,2,...,9] [--settle-secs N] \
[--concurrency N] [--baseline N] [--pay-kills N] [--pay-kill-sagas N] [--booking-kills N] \
[--psp-kills N] [--kill-sagas N] [--bus-closes N] [--bus-sagas N] \
[--close-all-connections 0|1] [--triple-sagas N] \
[--seed-each N] [--deadline-sagas N] [--redis-sagas N] [--redis-flushes N] \
[--poison-sagas N] [--crowd-buyers N] [--crowd-seats N] [--crowd-pay-kills N]";

struct Cli {
    counts: Counts,
    only: Option<Vec<u32>>,
    reduced: bool,
}

fn parse(args: &[String]) -> Result<Cli> {
    let reduced = args.iter().any(|a| a == "--reduced");
    let mut counts = if reduced {
        Counts::reduced()
    } else {
        Counts::full()
    };
    let mut only = None;
    let mut rest = args.iter();
    while let Some(arg) = rest.next() {
        match arg.as_str() {
            "--reduced" => {}
            "-h" | "--help" => bail!("{USAGE}"),
            "--only" => {
                let list = rest.next().context("--only takes a list, e.g. 1,6")?;
                only = Some(
                    list.split(',')
                        .map(|n| n.trim().parse::<u32>())
                        .collect::<Result<Vec<_>, _>>()
                        .with_context(|| format!("--only {list:?}"))?,
                );
            }
            flag if flag.starts_with("--") => {
                let value = rest
                    .next()
                    .with_context(|| format!("{flag} takes a value"))?;
                counts.set(&flag[2..], value)?;
            }
            other => bail!("unexpected argument {other:?}\n{USAGE}"),
        }
    }
    Ok(Cli {
        counts,
        only,
        reduced,
    })
}

fn env(run: &str) -> Result<Env> {
    let exe = std::env::current_exe().context("this executable's path")?;
    let exe_dir = exe
        .parent()
        .context("this executable's directory")?
        .to_path_buf();
    let bin_dir = std::env::var_os("CHAOS_BIN_DIR")
        .filter(|d| !d.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| exe_dir.clone());
    let log_root = std::env::var_os("CHAOS_LOG_DIR")
        .filter(|d| !d.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            exe_dir
                .parent()
                .map_or_else(|| exe_dir.join("chaos-logs"), |t| t.join("chaos-logs"))
        });
    let var = |name: &str, default: &str| {
        std::env::var(name)
            .ok()
            .filter(|v| !v.trim().is_empty())
            .unwrap_or_else(|| default.to_owned())
    };
    Ok(Env {
        pg_base: var("TEST_PG_URL", "postgres://postgres@127.0.0.1:5432"),
        amqp_url: var("AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/%2f"),
        redis_url: var("REDIS_URL", "redis://127.0.0.1:6379"),
        bin_dir,
        log_dir: log_root.join(run),
    })
}

/// What a row broke, in words.
fn broken(row: &Row) -> Vec<String> {
    let mut broken = Vec::new();
    for (count, what) in [
        (row.lost, "lost"),
        (row.duplicated, "duplicated"),
        (row.double_charges, "double charges"),
        (row.oversold, "oversold"),
    ] {
        if count > 0 {
            broken.push(format!("{count} {what}"));
        }
    }
    if row.ledger_difference != 0 {
        broken.push(format!("ledger off by {}", row.ledger_difference));
    }
    if row.settle.is_none() {
        broken.push("not settled".to_owned());
    }
    broken.extend(row.failures.iter().cloned());
    broken
}

fn print_table(rows: &[Row]) {
    let header = [
        "scenario",
        "sagas started",
        "terminal",
        "lost",
        "duplicated effects",
        "double charges",
        "oversold seats",
        "ledger difference",
        "time to settle",
        "verdict",
    ];
    let cells: Vec<Vec<String>> = rows
        .iter()
        .map(|r| {
            vec![
                r.scenario.clone(),
                r.started.to_string(),
                r.terminal.to_string(),
                r.lost.to_string(),
                r.duplicated.to_string(),
                r.double_charges.to_string(),
                r.oversold.to_string(),
                r.ledger_difference.to_string(),
                r.settle.map_or_else(
                    || "not settled".to_owned(),
                    |d| format!("{:.1}s", d.as_secs_f64()),
                ),
                if r.ok() {
                    "ok".to_owned()
                } else {
                    format!("FAIL {}", broken(r).join("; "))
                },
            ]
        })
        .collect();
    let widths: Vec<usize> = (0..header.len())
        .map(|c| {
            cells
                .iter()
                .map(|row| row[c].chars().count())
                .chain([header[c].len()])
                .max()
                .unwrap_or(0)
        })
        .collect();
    let line = |values: Vec<String>| {
        let padded: Vec<String> = values
            .iter()
            .zip(&widths)
            .map(|(v, w)| format!("{v:<w$}"))
            .collect();
        format!("| {} |", padded.join(" | "))
    };
    println!("{}", line(header.iter().map(|h| (*h).to_owned()).collect()));
    println!(
        "|{}|",
        widths
            .iter()
            .map(|w| "-".repeat(w + 2))
            .collect::<Vec<_>>()
            .join("|")
    );
    for row in cells {
        println!("{}", line(row));
    }
    println!();
    for r in rows {
        println!("{}: {}", r.scenario, r.notes.join(", "));
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let cli = match parse(&args) {
        Ok(cli) => cli,
        Err(error) => {
            eprintln!("{error:#}");
            return ExitCode::from(2);
        }
    };
    let run = format!(
        "{}-{}",
        chrono::Utc::now().format("%Y%m%dT%H%M%S"),
        &uuid::Uuid::new_v4().simple().to_string()[..6]
    );
    let env = match env(&run) {
        Ok(env) => env,
        Err(error) => {
            eprintln!("{error:#}");
            return ExitCode::from(2);
        }
    };
    // Ctrl-C: exit at once; closing this process's pipes stops every service.
    tokio::spawn(async {
        if tokio::signal::ctrl_c().await.is_ok() {
            eprintln!("chaos: interrupted");
            std::process::exit(130);
        }
    });
    let wanted = |n: u32| cli.only.as_ref().is_none_or(|only| only.contains(&n));
    let counts = &cli.counts;
    eprintln!(
        "chaos: {} profile, binaries from {}, logs in {}",
        if cli.reduced { "reduced" } else { "full" },
        env.bin_dir.display(),
        env.log_dir.display()
    );
    let started = Instant::now();
    let mut rows = Vec::new();
    macro_rules! scenario {
        ($n:expr, $name:expr, $run:expr) => {
            if wanted($n) {
                let at = Instant::now();
                eprintln!("chaos: scenario {} starting", $name);
                let row = guarded($name, $run).await;
                eprintln!(
                    "chaos: scenario {} done in {:.0}s ({})",
                    $name,
                    at.elapsed().as_secs_f64(),
                    if row.ok() { "ok" } else { "failed" }
                );
                rows.push(row);
            }
        };
    }
    scenario!(1, "1 baseline", scenarios::baseline(&env, counts));
    scenario!(2, "2 pay-svc kills", scenarios::pay_kills(&env, counts));
    scenario!(
        3,
        "3 booking-svc and psp kills",
        scenarios::booking_psp_kills(&env, counts)
    );
    scenario!(
        4,
        "4 rabbitmq connections closed",
        scenarios::bus_closes(&env, counts)
    );
    scenario!(
        5,
        "5 triple delivery",
        scenarios::triple_delivery(&env, counts)
    );
    if wanted(6) {
        let at = Instant::now();
        eprintln!("chaos: scenario 6 seed outcomes starting");
        let six = guarded_rows("6 seed outcomes", scenarios::seed_outcomes(&env, counts)).await;
        eprintln!(
            "chaos: scenario 6 done in {:.0}s",
            at.elapsed().as_secs_f64()
        );
        rows.extend(six);
    }
    scenario!(7, "7 redis loss", scenarios::redis_loss(&env, counts));
    scenario!(9, "9 contention", scenarios::contention(&env, counts));
    scenario!(8, "8 poison message", scenarios::poison(&env, counts));
    // A scenario that failed half-way left its databases, bus names and keys.
    system::remove_leftovers().await;
    println!();
    println!(
        "marquee-chaos ({} profile), {:.0}s; a saga is lost when not terminal within {}s of the load's end",
        if cli.reduced { "reduced" } else { "full" },
        started.elapsed().as_secs_f64(),
        counts.settle_bound.as_secs()
    );
    print_table(&rows);
    let failed: Vec<&Row> = rows.iter().filter(|r| !r.ok()).collect();
    if failed.is_empty() {
        ExitCode::SUCCESS
    } else {
        for row in failed {
            eprintln!(
                "chaos: {} broke an invariant; logs: {}",
                row.scenario,
                if row.logs.is_empty() {
                    env.log_dir.display().to_string()
                } else {
                    row.logs.clone()
                }
            );
        }
        ExitCode::FAILURE
    }
}

//! Waiting-room benchmark (issue 11): a crowd arrives at a flash sale's queue through
//! the gateway. The whole system runs in this one process (pay-svc, booking-svc,
//! realtime-svc and the gateway, on the local PostgreSQL, Redis and RabbitMQ), and so
//! does the crowd: both ends of every connection share the machine's cores (with
//! `BENCH_SPLIT`, which `make bench` sets, the system runs in a pinned process of its
//! own: `marquee_e2e::split`).
//!
//! `cargo bench -p marquee-e2e --bench waiting_room`, tuned by environment variables:
//! `BENCH_WR_ARRIVALS` (100000), `BENCH_WR_SECONDS` (10, the arrivals are spread evenly
//! over this window: an open-loop schedule, a late arrival is sent late but not
//! skipped), `BENCH_WR_IN_FLIGHT` (2048, the most joins in flight; an arrival beyond it
//! waits, and its wait counts in its latency), `BENCH_WR_ADMIT_PER_SEC` (2000, the
//! room's pace), `BENCH_WR_WATCHERS` (500, tickets whose position stream is followed
//! until admission) and `BENCH_WR_TIMEOUT_SECONDS` (300, a hard bound on the run).
//!
//! Setup (not measured): a seller creates an event and opens its waiting room now; the
//! buyers are inserted straight into the booking database with minted tokens. Measured:
//! every arrival joins (`POST /v1/events/{id}/queue`); the latency of a join runs from
//! its scheduled arrival to its answer. Then: every ticket number appears once, and a
//! join answered before another was sent has the smaller number (an order violation
//! otherwise). Then a sample of tickets is watched (`GET /v1/queue/{id}:watch`) until
//! admitted: a position that goes up is an order violation, and the admission's
//! delivery latency runs from the moment Redis admitted the ticket (its `adm` stamp) to
//! the moment the watcher read the token. A violation or an error makes the command
//! exit non-zero; the aims (100,000 arrivals in 10 s, join p99 < 50 ms) are reported.

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt as _;
use hdrhistogram::Histogram;
use marquee_e2e::bench_report::{Report, Target};
use marquee_e2e::{Options, System};
use marquee_testkit::env_num;
use serde_json::{Value, json};
use tokio::sync::Semaphore;

// The same allocator as the service binaries, since this process hosts all of them.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Retries of a join answered 503 (or not at all) before it counts as an error.
const MAX_RETRIES: u32 = 3;

#[derive(Debug, Clone, Copy)]
struct Params {
    arrivals: usize,
    seconds: u64,
    in_flight: usize,
    admit_per_sec: u64,
    watchers: usize,
    timeout_seconds: u64,
}

impl Params {
    fn from_env() -> Self {
        Self {
            arrivals: env_num("BENCH_WR_ARRIVALS", 100_000) as usize,
            seconds: env_num("BENCH_WR_SECONDS", 10).max(1),
            in_flight: env_num("BENCH_WR_IN_FLIGHT", 2048).max(1) as usize,
            admit_per_sec: env_num("BENCH_WR_ADMIT_PER_SEC", 2000).max(1),
            watchers: env_num("BENCH_WR_WATCHERS", 500) as usize,
            timeout_seconds: env_num("BENCH_WR_TIMEOUT_SECONDS", 300),
        }
    }
}

/// One arrival's join, as the client saw it.
#[derive(Debug, Clone)]
struct Joined {
    /// When it was sent and answered, from the start of the arrivals.
    sent: Duration,
    answered: Duration,
    /// From its scheduled arrival to its answer, in microseconds.
    latency_us: u64,
    /// Retries after a 503 or a transport error.
    retries: u32,
    ticket: Option<(String, u64)>,
    error: Option<String>,
}

fn number(value: &Value) -> u64 {
    value
        .as_str()
        .and_then(|s| s.parse().ok())
        .or_else(|| value.as_u64())
        .unwrap_or(0)
}

fn ms(h: &Histogram<u64>, q: f64) -> f64 {
    h.value_at_quantile(q) as f64 / 1000.0
}

#[tokio::main]
async fn main() {
    let params = Params::from_env();
    let marquee_testkit::Machine {
        cpus,
        model,
        memory,
    } = marquee_testkit::Machine::read();
    println!("== Marquee waiting-room benchmark ==");
    println!("machine: cpus (nproc)         {cpus}");
    println!("machine: cpu model            {model}");
    println!("machine: memory               {memory}");
    println!(
        "param: arrivals               {} over {} s",
        params.arrivals, params.seconds
    );
    println!("param: joins in flight (max)  {}", params.in_flight);
    println!("param: admitted per second    {}", params.admit_per_sec);
    println!("param: watched tickets        {}", params.watchers);
    let run = tokio::time::timeout(Duration::from_secs(params.timeout_seconds), bench(params));
    match run.await {
        Ok(true) => println!("result: PASS"),
        Ok(false) => {
            println!("result: FAIL");
            std::process::exit(1);
        }
        Err(_) => {
            println!("result: FAIL (over BENCH_WR_TIMEOUT_SECONDS)");
            std::process::exit(1);
        }
    }
}

async fn bench(params: Params) -> bool {
    // ---------------------------------------------------------------- setup
    let setup_started = Instant::now();
    let sys = System::start_with(Options {
        booking_connections: 16,
        ..Options::default()
    })
    .await;
    let (seller, event_id) = sys.seller_event(&[("R", 10_000, 10, 20)], 4).await;
    let configured = sys
        .call(
            reqwest::Method::PUT,
            &format!("/v1/events/{event_id}/waiting-room"),
            Some(&seller),
            Some(json!({"waitingRoom": {"admitPerSecond": params.admit_per_sec, "admissionSeconds": 600}})),
            &[],
        )
        .await;
    assert_eq!(configured.status, 200, "{:?}", configured.body);
    let tokens = sys.bulk_buyers(params.arrivals, "wr").await;
    println!(
        "setup: {} buyers inserted in bulk with minted tokens; event {event_id}; took {:.1} s (not measured)",
        tokens.len(),
        setup_started.elapsed().as_secs_f64()
    );

    // ---------------------------------------------------------------- arrivals
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(params.in_flight)
        .timeout(Duration::from_secs(60))
        .build()
        .expect("http client");
    let url = format!("{}/v1/events/{event_id}/queue", sys.base);
    let gate = Arc::new(Semaphore::new(params.in_flight));
    let spacing = Duration::from_secs(params.seconds).as_secs_f64() / params.arrivals as f64;
    let start = Instant::now();
    let mut tasks = Vec::with_capacity(params.arrivals);
    for (i, token) in tokens.iter().enumerate() {
        let scheduled = Duration::from_secs_f64(spacing * i as f64);
        tokio::time::sleep_until((start + scheduled).into()).await;
        let permit = gate.clone().acquire_owned().await.expect("semaphore");
        let (client, url, token) = (client.clone(), url.clone(), token.clone());
        tasks.push(tokio::spawn(async move {
            let sent = start.elapsed();
            // A 503 or a lost answer may hide a join that happened: retry, as a client
            // would; joining again returns the same ticket.
            let mut retries = 0u32;
            let reply = loop {
                let reply = client
                    .post(&url)
                    .bearer_auth(&token)
                    .json(&json!({}))
                    .send()
                    .await;
                let again = match &reply {
                    Ok(r) => r.status().as_u16() == 503,
                    Err(_) => true,
                };
                if !again || retries == MAX_RETRIES {
                    break reply;
                }
                retries += 1;
                tokio::time::sleep(Duration::from_millis(100)).await;
            };
            let result = match reply {
                Ok(response) if response.status().as_u16() == 201 => {
                    match response.json::<Value>().await {
                        Ok(t) => Ok((
                            t["ticketId"].as_str().unwrap_or_default().to_owned(),
                            number(&t["number"]),
                        )),
                        Err(e) => Err(format!("body: {e}")),
                    }
                }
                Ok(response) => Err(format!(
                    "{} {}",
                    response.status(),
                    response.text().await.unwrap_or_default()
                )),
                Err(e) => Err(format!("transport: {e}")),
            };
            drop(permit);
            let answered = start.elapsed();
            let latency_us = answered.saturating_sub(scheduled).as_micros() as u64;
            match result {
                Ok(ticket) => Joined {
                    sent,
                    answered,
                    latency_us,
                    retries,
                    ticket: Some(ticket),
                    error: None,
                },
                Err(error) => Joined {
                    sent,
                    answered,
                    latency_us,
                    retries,
                    ticket: None,
                    error: Some(error),
                },
            }
        }));
    }
    let scheduled_done = start.elapsed();
    let mut joins = Vec::with_capacity(tasks.len());
    for task in tasks {
        joins.push(task.await.expect("join task"));
    }
    let absorbed = joins.iter().map(|j| j.answered).max().unwrap_or_default();

    let mut latency = Histogram::<u64>::new(3).expect("histogram");
    let mut errors = 0usize;
    let mut first_error = None;
    let retried = joins.iter().filter(|j| j.retries > 0).count();
    for j in &joins {
        latency.record(j.latency_us.max(1)).ok();
        if let Some(e) = &j.error {
            errors += 1;
            first_error.get_or_insert_with(|| e.clone());
        }
    }
    // Numbers: each of 1..=arrivals once.
    let mut numbers: Vec<u64> = joins
        .iter()
        .filter_map(|j| j.ticket.as_ref().map(|t| t.1))
        .collect();
    numbers.sort_unstable();
    let duplicates_or_gaps = numbers
        .iter()
        .enumerate()
        .filter(|(i, n)| **n != *i as u64 + 1)
        .count();
    // Arrival order: a join answered before another was sent has the smaller number
    // (a retried join arrived when its last attempt did, so it is left out).
    let mut by_answer: Vec<(Duration, u64)> = joins
        .iter()
        .filter(|j| j.retries == 0)
        .filter_map(|j| j.ticket.as_ref().map(|t| (j.answered, t.1)))
        .collect();
    by_answer.sort_unstable();
    let mut prefix_max = Vec::with_capacity(by_answer.len());
    let mut max = 0;
    for (_, n) in &by_answer {
        max = max.max(*n);
        prefix_max.push(max);
    }
    let mut order_violations = 0usize;
    for j in joins.iter().filter(|j| j.retries == 0) {
        let Some((_, n)) = &j.ticket else { continue };
        let before = by_answer.partition_point(|(answered, _)| *answered < j.sent);
        if before > 0 && prefix_max[before - 1] >= *n {
            order_violations += 1;
        }
    }

    // ---------------------------------------------------------------- position streams
    let status = sys
        .get(&format!("/v1/events/{event_id}/queue"), Some(&seller))
        .await;
    let admitted_now = number(&status.body["admitted"]);
    // Tickets the pace admits within about 20 s from now, spread evenly.
    let horizon = (admitted_now + params.admit_per_sec * 20).min(params.arrivals as u64);
    let mut sample: Vec<(String, String, u64)> = Vec::new();
    if params.watchers > 0 && horizon > admitted_now + 1 {
        let step = ((horizon - admitted_now) / params.watchers as u64).max(1);
        let wanted: std::collections::BTreeSet<u64> = (0..params.watchers as u64)
            .map(|k| admitted_now + 1 + k * step)
            .filter(|n| *n <= horizon)
            .collect();
        for (j, token) in joins.iter().zip(&tokens) {
            if let Some((id, n)) = &j.ticket
                && wanted.contains(n)
            {
                sample.push((id.clone(), token.clone(), *n));
            }
        }
    }
    let watch_started = Instant::now();
    let redis = redis::Client::open(marquee_testkit::redis_url())
        .expect("redis url")
        .get_multiplexed_async_connection()
        .await
        .expect("redis");
    let adm_key = format!("{}{{wr:{event_id}}}:adm", sys.redis_prefix);
    let watched = futures::stream::iter(sample.iter().cloned())
        .map(|(ticket, token, n)| {
            let client = client.clone();
            let base = sys.base.clone();
            let mut redis = redis.clone();
            let adm_key = adm_key.clone();
            async move {
                let watch = watch_ticket(&client, &base, &ticket, &token).await;
                let nonce = &ticket[ticket.len().saturating_sub(16)..];
                let admitted_ms: Option<i64> = redis::cmd("HGET")
                    .arg(&adm_key)
                    .arg(nonce)
                    .query_async(&mut redis)
                    .await
                    .ok()
                    .flatten();
                (n, watch, admitted_ms)
            }
        })
        .buffer_unordered(sample.len().max(1))
        .collect::<Vec<_>>()
        .await;
    let mut delivery = Histogram::<u64>::new(3).expect("histogram");
    let mut intervals = Histogram::<u64>::new(3).expect("histogram");
    let (mut completed, mut watch_errors, mut went_up) = (0usize, 0usize, 0usize);
    let mut first_watch_error = None;
    for (n, watch, admitted_ms) in &watched {
        match watch {
            Ok(w) => {
                completed += 1;
                went_up += w.went_up;
                for gap in &w.intervals_us {
                    intervals.record((*gap).max(1)).ok();
                }
                if let Some(at) = admitted_ms {
                    delivery
                        .record(((w.admitted_read_ms - at).max(0) as u64 * 1000).max(1))
                        .ok();
                }
            }
            Err(e) => {
                watch_errors += 1;
                first_watch_error.get_or_insert_with(|| format!("ticket {n}: {e}"));
            }
        }
    }

    // ---------------------------------------------------------------- report
    let joined = joins.len() - errors;
    println!(
        "run: arrivals scheduled in    {:.2} s",
        scheduled_done.as_secs_f64()
    );
    println!(
        "run: arrivals absorbed in     {:.2} s (last join answered)",
        absorbed.as_secs_f64()
    );
    println!(
        "run: joins                    {joined} ok ({retried} after a retry), {errors} errors ({:.0} joins/s)",
        joined as f64 / absorbed.as_secs_f64().max(1e-9)
    );
    println!(
        "run: join latency            p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms (from the scheduled arrival)",
        ms(&latency, 0.5),
        ms(&latency, 0.99),
        latency.max() as f64 / 1000.0
    );
    if let Some(e) = &first_error {
        println!("run: first error             {e}");
    }
    println!("check: numbers not 1..=n      {duplicates_or_gaps}");
    println!(
        "check: order violations       {order_violations} (a later arrival got an earlier place)"
    );
    println!(
        "watch: tickets                {} watched, {completed} admitted through the stream, {watch_errors} errors, {:.1} s",
        sample.len(),
        watch_started.elapsed().as_secs_f64()
    );
    if let Some(e) = &first_watch_error {
        println!("watch: first error            {e}");
    }
    println!("check: positions that went up {went_up}");
    if !delivery.is_empty() {
        println!(
            "watch: admission → client     p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
            ms(&delivery, 0.5),
            ms(&delivery, 0.99),
            delivery.max() as f64 / 1000.0
        );
    }
    if !intervals.is_empty() {
        println!(
            "watch: between updates        p50 {:.1} ms, p99 {:.1} ms",
            ms(&intervals, 0.5),
            ms(&intervals, 0.99)
        );
    }
    let in_window = absorbed <= Duration::from_secs(params.seconds) + Duration::from_millis(500);
    println!(
        "aim: {} arrivals absorbed in {} s: {}; join p99 < 50 ms: {} ({:.1} ms); 0 errors: {}; 0 order violations: {}",
        params.arrivals,
        params.seconds,
        if in_window { "met" } else { "missed" },
        if ms(&latency, 0.99) < 50.0 {
            "met"
        } else {
            "missed"
        },
        ms(&latency, 0.99),
        if errors == 0 { "met" } else { "missed" },
        if order_violations + duplicates_or_gaps + went_up == 0 {
            "met"
        } else {
            "missed"
        },
    );
    let mut report = Report::new(
        "waiting room",
        format!(
            "{} arrivals over {} s, ≤ {} joins in flight, admitting {}/s",
            params.arrivals, params.seconds, params.in_flight, params.admit_per_sec
        ),
    )
    .below_target_size(
        params.arrivals < 100_000 || params.seconds > 10,
        "100,000 arrivals in 10 s",
    );
    report
        .figure_against(
            "arrivals absorbed in",
            absorbed.as_secs_f64(),
            "s",
            &format!("≤ {} s (+0.5 s)", params.seconds),
            Some(in_window),
        )
        .figure("join p99", ms(&latency, 0.99), "ms", Target::Below(50.0))
        .figure("join errors", errors as f64, "", Target::Exactly(0.0))
        .figure(
            "order violations (numbers, order, positions)",
            (order_violations + duplicates_or_gaps + went_up) as f64,
            "",
            Target::Exactly(0.0),
        )
        .check(
            "watched tickets admitted through the stream",
            watch_errors == 0 && completed == sample.len(),
        )
        .figure(
            "joins",
            joined as f64 / absorbed.as_secs_f64().max(1e-9),
            "/s",
            Target::None,
        );
    if !delivery.is_empty() {
        report.figure(
            "admission → client p99",
            ms(&delivery, 0.99),
            "ms",
            Target::None,
        );
    }
    report.write();
    sys.stop().await;
    errors == 0
        && watch_errors == 0
        && order_violations == 0
        && duplicates_or_gaps == 0
        && went_up == 0
        && completed == sample.len()
}

/// What one watcher saw.
struct Watch {
    /// Microseconds between consecutive updates.
    intervals_us: Vec<u64>,
    /// Updates whose position was higher than the one before.
    went_up: usize,
    /// Unix milliseconds when the ADMITTED update was read.
    admitted_read_ms: i64,
}

/// Follows a ticket's SSE stream until ADMITTED (with a token), for at most 120 s.
async fn watch_ticket(
    client: &reqwest::Client,
    base: &str,
    ticket: &str,
    token: &str,
) -> Result<Watch, String> {
    let mut response = client
        .get(format!("{base}/v1/queue/{ticket}:watch"))
        .bearer_auth(token)
        .header("accept", "text/event-stream")
        .timeout(Duration::from_secs(120))
        .send()
        .await
        .map_err(|e| format!("connect: {e}"))?;
    if response.status().as_u16() != 200 {
        return Err(format!("status {}", response.status()));
    }
    let mut buffer = String::new();
    let mut last: Option<(Instant, i64)> = None;
    let mut watch = Watch {
        intervals_us: Vec::new(),
        went_up: 0,
        admitted_read_ms: 0,
    };
    loop {
        while let Some(end) = buffer.find("\n\n") {
            let block: String = buffer.drain(..end + 2).collect();
            let data: String = block
                .lines()
                .filter_map(|l| l.strip_prefix("data:"))
                .map(str::trim_start)
                .collect();
            if data.is_empty() {
                continue;
            }
            let update: Value = serde_json::from_str(&data).map_err(|e| format!("data: {e}"))?;
            let t = &update["ticket"];
            let now = Instant::now();
            let position = number(&t["position"]) as i64;
            if let Some((at, before)) = last {
                watch
                    .intervals_us
                    .push(now.duration_since(at).as_micros() as u64);
                if t["state"] == "WAITING" && position > before {
                    watch.went_up += 1;
                }
            }
            last = Some((now, position));
            match t["state"].as_str() {
                Some("ADMITTED") => {
                    if t["admissionToken"].as_str().is_none_or(str::is_empty) {
                        return Err("admitted without a token".into());
                    }
                    watch.admitted_read_ms = chrono::Utc::now().timestamp_millis();
                    return Ok(watch);
                }
                Some("WAITING") | Some("BEFORE_OPENING") => {}
                other => return Err(format!("state {other:?}")),
            }
        }
        match response.chunk().await {
            Ok(Some(bytes)) => buffer.push_str(&String::from_utf8_lossy(&bytes)),
            Ok(None) => return Err("stream ended before admission".into()),
            Err(e) => return Err(format!("read: {e}")),
        }
    }
}

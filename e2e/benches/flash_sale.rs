//! Flash-sale benchmark: the whole system (pay-svc, booking-svc, realtime-svc and the
//! gateway, on the local PostgreSQL, Redis and RabbitMQ), in this process or in a pinned
//! one of its own (`BENCH_SPLIT`), driven over REST on 127.0.0.1.
//!
//! `cargo bench -p marquee-e2e --bench flash_sale`, tuned by environment variables:
//! `BENCH_SEATS` (5000), `BENCH_BUYERS` (20000), `BENCH_CONCURRENCY` (256),
//! `BENCH_MAX_SECONDS` (120, a hard bound on the measured phase),
//! `BENCH_SETTLE_SECONDS` (60, how long to wait for payments to settle afterwards),
//! `BENCH_BOOKING_CONNECTIONS` (16) and `BENCH_PAY_CONNECTIONS` (10), the services'
//! PostgreSQL pools.
//!
//! `BENCH_HOLDS_ONLY=1` makes it the hold storm, a rolling sale: buyers only hold, holds
//! expire after `BENCH_STORM_HOLD_TTL_MS` (3000) so seats keep coming back, buyers are
//! reused in turn, and the figures cover a steady-state window of `BENCH_STORM_SECONDS`
//! (30) after `BENCH_STORM_WARMUP_SECONDS` (3) of ramp-up.
//!
//! With `BENCH_SPLIT` the system runs in its own process on its own cores
//! (`marquee_e2e::split`); the figures then include the server side apart: the gateway's
//! own latency histogram and each process's CPU time.
//!
//! Setup (not measured): a seller creates the event(s) over REST, a few buyers sign up
//! and log in over REST, the rest are inserted straight into the booking database with
//! minted tokens. Measured: `BENCH_CONCURRENCY` workers drain the queue of buyers; each
//! holds 1–4 random seats it believes available (retrying other seats up to 3 times on
//! 409) and checks out with its wallet. Then the databases are checked: nothing
//! oversold, the seat map agrees with the confirmed bookings, and no money was created
//! or lost. A failed check panics, so the command exits non-zero.

use marquee_testkit::env_num;
use std::collections::{BTreeMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use marquee_e2e::bench_report::{Report, Target};
use marquee_e2e::split;
use marquee_e2e::{Money, Options, Oversell, System, WELCOME_CREDIT_MINOR};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{Value, json};
use uuid::Uuid;

// The same allocator as the service binaries, since this process hosts all of them.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Seats per event, so that an event's creation request stays well under the
/// gateway's 1 MiB body limit (checked again on the serialized body).
const SEATS_PER_EVENT: usize = 20_000;
const SEATS_PER_ROW: usize = 100;
const BODY_LIMIT: usize = 1024 * 1024;
/// How often the buyers' shared picture of available seats is refreshed from the API.
const SNAPSHOT_REFRESH: Duration = Duration::from_millis(1000);
const HOLD_RETRIES: usize = 3;
const STATUS_TRANSPORT_ERROR: u16 = 0;

/// `BENCH_HOLDS_ONLY=1`, a diagnostic: buyers hold but never check out.
fn holds_only() -> bool {
    static HOLDS_ONLY: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *HOLDS_ONLY.get_or_init(|| std::env::var("BENCH_HOLDS_ONLY").is_ok_and(|v| v == "1"))
}

/// The gateway's route label of hold requests (its request-duration histogram).
const HOLD_ROUTE: &str = "/v1/events/{event_id}/holds";

#[derive(Debug, Clone, Copy)]
struct Params {
    seats: usize,
    buyers: usize,
    concurrency: usize,
    max_seconds: u64,
    settle_seconds: u64,
    /// The hold storm's measured window, its unmeasured ramp-up, and its holds' TTL.
    storm_seconds: u64,
    storm_warmup_seconds: u64,
    storm_hold_ttl: Duration,
}

impl Params {
    fn from_env() -> Self {
        let p = Self {
            seats: env_num("BENCH_SEATS", 5000) as usize,
            buyers: env_num("BENCH_BUYERS", 20_000) as usize,
            concurrency: env_num("BENCH_CONCURRENCY", 256) as usize,
            max_seconds: env_num("BENCH_MAX_SECONDS", 120),
            settle_seconds: env_num("BENCH_SETTLE_SECONDS", 60),
            storm_seconds: env_num("BENCH_STORM_SECONDS", 30),
            storm_warmup_seconds: env_num("BENCH_STORM_WARMUP_SECONDS", 3),
            storm_hold_ttl: Duration::from_millis(env_num("BENCH_STORM_HOLD_TTL_MS", 3000)),
        };
        assert!(p.storm_seconds > 0, "BENCH_STORM_SECONDS must be positive");
        assert!(
            p.storm_hold_ttl >= Duration::from_millis(500),
            "BENCH_STORM_HOLD_TTL_MS must be at least 500"
        );
        assert!(p.seats > 0, "BENCH_SEATS must be positive");
        assert!(p.buyers > 0, "BENCH_BUYERS must be positive");
        assert!(
            (1..=4096).contains(&p.concurrency),
            "BENCH_CONCURRENCY must be within 1..=4096"
        );
        assert!(p.max_seconds > 0, "BENCH_MAX_SECONDS must be positive");
        p
    }
}

/// A set of seat indexes with O(1) insert, remove and random pick.
#[derive(Debug, Default)]
struct SeatSet {
    items: Vec<usize>,
    /// Position of each seat index in `items`, or `usize::MAX` when absent.
    pos: Vec<usize>,
}

impl SeatSet {
    fn new(capacity: usize) -> Self {
        Self {
            items: Vec::with_capacity(capacity),
            pos: vec![usize::MAX; capacity],
        }
    }

    fn insert(&mut self, seat: usize) {
        if self.pos[seat] == usize::MAX {
            self.pos[seat] = self.items.len();
            self.items.push(seat);
        }
    }

    fn remove(&mut self, seat: usize) {
        let at = self.pos[seat];
        if at != usize::MAX {
            let last = self.items.pop().expect("non-empty");
            if last != seat {
                self.items[at] = last;
                self.pos[last] = at;
            }
            self.pos[seat] = usize::MAX;
        }
    }

    fn clear(&mut self) {
        for seat in self.items.drain(..) {
            self.pos[seat] = usize::MAX;
        }
    }

    fn pick(&self, rng: &mut StdRng, count: usize) -> Vec<usize> {
        if self.items.len() <= count {
            return self.items.clone();
        }
        rand::seq::index::sample(rng, self.items.len(), count)
            .into_iter()
            .map(|i| self.items[i])
            .collect()
    }
}

/// One event on sale and what the buyers believe of its seats.
struct Sale {
    id: String,
    seats: Vec<String>,
    index: std::collections::HashMap<String, usize>,
    available: Mutex<SeatSet>,
}

impl Sale {
    fn new(id: String, seats: Vec<String>) -> Self {
        let index = seats
            .iter()
            .enumerate()
            .map(|(i, s)| (s.clone(), i))
            .collect();
        let available = Mutex::new(SeatSet::new(seats.len()));
        Self {
            id,
            seats,
            index,
            available,
        }
    }

    fn set_available(&self, statuses: &[(String, String)]) {
        let mut available = self.available.lock().expect("lock");
        available.clear();
        for (seat, status) in statuses {
            if status == "AVAILABLE"
                && let Some(&i) = self.index.get(seat)
            {
                available.insert(i);
            }
        }
    }
}

struct Buyer {
    token: String,
}

/// What one worker saw.
struct Tally {
    hold_latency: Histogram<u64>,
    checkout_latency: Histogram<u64>,
    hold_status: BTreeMap<u16, u64>,
    checkout_status: BTreeMap<u16, u64>,
    buyers_served: u64,
    buyers_sold_out: u64,
    buyers_gave_up: u64,
    first_error: Option<String>,
}

fn histogram() -> Histogram<u64> {
    // Microseconds, up to 5 minutes, 3 significant digits.
    Histogram::new_with_bounds(1, 300_000_000, 3).expect("histogram")
}

impl Tally {
    fn new() -> Self {
        Self {
            hold_latency: histogram(),
            checkout_latency: histogram(),
            hold_status: BTreeMap::new(),
            checkout_status: BTreeMap::new(),
            buyers_served: 0,
            buyers_sold_out: 0,
            buyers_gave_up: 0,
            first_error: None,
        }
    }

    fn merge(&mut self, other: Tally) {
        self.hold_latency
            .add(&other.hold_latency)
            .expect("merge histograms");
        self.checkout_latency
            .add(&other.checkout_latency)
            .expect("merge histograms");
        for (k, v) in other.hold_status {
            *self.hold_status.entry(k).or_default() += v;
        }
        for (k, v) in other.checkout_status {
            *self.checkout_status.entry(k).or_default() += v;
        }
        self.buyers_served += other.buyers_served;
        self.buyers_sold_out += other.buyers_sold_out;
        self.buyers_gave_up += other.buyers_gave_up;
        if self.first_error.is_none() {
            self.first_error = other.first_error;
        }
    }

    fn note_error(&mut self, what: &str, status: u16, body: &str) {
        if self.first_error.is_none() {
            let body: String = body.chars().take(300).collect();
            self.first_error = Some(format!("{what} answered {status}: {body}"));
        }
    }
}

/// A POST with a bearer token; returns the status (0 on a transport error), the raw
/// body and the latency in microseconds.
async fn post(
    sys: &System,
    path: &str,
    token: &str,
    body: &Value,
    idempotency_key: Option<&str>,
) -> (u16, String, u64) {
    let started = Instant::now();
    let mut request = sys
        .http
        .post(format!("{}{path}", sys.base))
        .bearer_auth(token)
        .json(body);
    if let Some(key) = idempotency_key {
        request = request.header("Idempotency-Key", key);
    }
    let (status, text) = match request.send().await {
        Ok(response) => {
            let status = response.status().as_u16();
            match response.text().await {
                Ok(text) => (status, text),
                Err(e) => (STATUS_TRANSPORT_ERROR, e.to_string()),
            }
        }
        Err(e) => (STATUS_TRANSPORT_ERROR, e.to_string()),
    };
    let micros = u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX);
    (status, text, micros.max(1))
}

/// Every seat of an event as (seat id, status).
async fn seat_statuses(sys: &System, event_id: &str) -> Option<Vec<(String, String)>> {
    let response = sys
        .http
        .get(format!("{}/v1/events/{event_id}/seats", sys.base))
        .send()
        .await
        .ok()?;
    if !response.status().is_success() {
        return None;
    }
    let body: Value = response.json().await.ok()?;
    Some(
        body["seats"]
            .as_array()?
            .iter()
            .map(|s| {
                (
                    s["seatId"].as_str().unwrap_or_default().to_owned(),
                    s["status"].as_str().unwrap_or_default().to_owned(),
                )
            })
            .collect(),
    )
}

fn rate(count: u64, over: Duration) -> f64 {
    let secs = over.as_secs_f64();
    if secs > 0.0 { count as f64 / secs } else { 0.0 }
}

fn ms(micros: u64) -> String {
    format!("{:.1} ms", micros as f64 / 1000.0)
}

fn statuses(map: &BTreeMap<u16, u64>) -> String {
    if map.is_empty() {
        return "none".to_owned();
    }
    map.iter()
        .map(|(k, v)| {
            if *k == STATUS_TRANSPORT_ERROR {
                format!("transport-error={v}")
            } else {
                format!("{k}={v}")
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

async fn scalar(pool: &sqlx::PgPool, sql: &'static str) -> i64 {
    sqlx::query_scalar::<_, i64>(sql)
        .fetch_one(pool)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
}

async fn buyer_turn(
    sys: &System,
    sales: &[Arc<Sale>],
    buyer: &Buyer,
    deadline: Instant,
    measure_from: Instant,
    rng: &mut StdRng,
    tally: &mut Tally,
) {
    for _attempt in 0..=HOLD_RETRIES {
        if Instant::now() >= deadline {
            return;
        }
        // An event with seats believed available, then 1–4 of them.
        let candidates: Vec<&Arc<Sale>> = sales
            .iter()
            .filter(|s| !s.available.lock().expect("lock").items.is_empty())
            .collect();
        if candidates.is_empty() {
            tally.buyers_sold_out += 1;
            return;
        }
        let sale = candidates[rng.random_range(0..candidates.len())];
        let want = rng.random_range(1..=4usize);
        let picked = sale.available.lock().expect("lock").pick(rng, want);
        if picked.is_empty() {
            continue;
        }
        let seat_ids: Vec<&str> = picked.iter().map(|&i| sale.seats[i].as_str()).collect();
        // The storm's ramp-up is not measured.
        let measured = Instant::now() >= measure_from;
        let (status, text, micros) = post(
            sys,
            &format!("/v1/events/{}/holds", sale.id),
            &buyer.token,
            &json!({"seatIds": seat_ids}),
            None,
        )
        .await;
        if measured {
            tally.hold_latency.saturating_record(micros);
            *tally.hold_status.entry(status).or_default() += 1;
        }
        match status {
            201 => {
                {
                    let mut available = sale.available.lock().expect("lock");
                    for &i in &picked {
                        available.remove(i);
                    }
                }
                let hold: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
                let hold_id = hold["holdId"].as_str().unwrap_or_default();
                if holds_only() || Instant::now() >= deadline {
                    return;
                }
                let key = Uuid::new_v4().to_string();
                let (status, text, micros) = post(
                    sys,
                    "/v1/bookings",
                    &buyer.token,
                    &json!({"holdId": hold_id, "paymentMethod": "WALLET"}),
                    Some(&key),
                )
                .await;
                tally.checkout_latency.saturating_record(micros);
                *tally.checkout_status.entry(status).or_default() += 1;
                if status != 202 {
                    tally.note_error("checkout", status, &text);
                }
                tally.buyers_served += 1;
                return;
            }
            409 => {
                // The answer names the taken seats; forget those (all picked if none named).
                let mut available = sale.available.lock().expect("lock");
                let named: Vec<usize> = picked
                    .iter()
                    .copied()
                    .filter(|&i| text.contains(sale.seats[i].as_str()))
                    .collect();
                let forget = if named.is_empty() { &picked } else { &named };
                for &i in forget {
                    available.remove(i);
                }
            }
            _ => {
                tally.note_error("hold", status, &text);
                tally.buyers_gave_up += 1;
                return;
            }
        }
    }
    tally.buyers_gave_up += 1;
}

#[tokio::main]
async fn main() {
    let params = Params::from_env();
    let marquee_testkit::Machine {
        cpus,
        model,
        memory,
    } = marquee_testkit::Machine::read();
    println!("== Marquee flash-sale benchmark ==");
    println!("machine: cpus (nproc)         {cpus}");
    println!("machine: cpu model            {model}");
    println!("machine: memory               {memory}");
    println!("param: seats                  {}", params.seats);
    println!("param: buyers                 {}", params.buyers);
    println!("param: concurrency            {}", params.concurrency);
    println!("param: max seconds            {}", params.max_seconds);
    println!("param: settle seconds         {}", params.settle_seconds);
    if holds_only() {
        println!("param: BENCH_HOLDS_ONLY=1     buyers hold but never check out (diagnostic)");
    }
    // Postgres on two cores does best with few connections (16/10 beat 40/20 and 10/6).
    let options = Options {
        booking_connections: env_num("BENCH_BOOKING_CONNECTIONS", 16) as u32,
        pay_connections: env_num("BENCH_PAY_CONNECTIONS", 10) as u32,
        argon2_memory_kib: 1024,
        // The storm is a rolling sale: abandoned holds give their seats back.
        hold_ttl: if holds_only() {
            params.storm_hold_ttl
        } else {
            Options::default().hold_ttl
        },
        ..Options::default()
    };
    if holds_only() {
        println!(
            "param: storm                  {} s measured after {} s ramp-up; holds expire after {} ms; buyers reused in turn",
            params.storm_seconds,
            params.storm_warmup_seconds,
            params.storm_hold_ttl.as_millis()
        );
    }
    println!(
        "param: db connections         booking {}, pay {}; argon2 {} KiB; wallets start at 100000 KRW",
        options.booking_connections, options.pay_connections, options.argon2_memory_kib
    );

    // ---------------------------------------------------------------- setup
    let setup_started = Instant::now();
    let sys = System::start_with(options).await;
    let (_, seller) = sys.account("SELLER").await;

    let mut sales = Vec::new();
    let mut left = params.seats;
    while left > 0 {
        let n = left.min(SEATS_PER_EVENT);
        left -= n;
        let body =
            marquee_e2e::event_body(&format!("Flash Sale {}", sales.len() + 1), n, SEATS_PER_ROW);
        let size = serde_json::to_vec(&body).expect("json").len();
        assert!(
            size < BODY_LIMIT,
            "event creation body of {size} bytes exceeds the gateway's 1 MiB limit"
        );
        let created = sys.post("/v1/events", Some(&seller), body).await;
        assert_eq!(created.status, 201, "create event: {:?}", created.body);
        let event_id = created.str("/eventId");
        let statuses = seat_statuses(&sys, &event_id).await.expect("seat map");
        assert_eq!(statuses.len(), n, "event {event_id} has every seat");
        let sale = Sale::new(event_id, statuses.iter().map(|s| s.0.clone()).collect());
        sale.set_available(&statuses);
        println!(
            "setup: event {} with {n} seats created over REST (request {size} bytes)",
            sale.id
        );
        sales.push(Arc::new(sale));
    }

    // A few buyers through the real sign-up and log-in path, the rest in bulk.
    let rest_buyers = params.buyers.min(20);
    let signed: Vec<(String, String)> =
        futures::future::join_all((0..rest_buyers).map(|_| sys.account("BUYER"))).await;
    let mut buyers: Vec<Buyer> = signed
        .into_iter()
        .map(|(_, token)| Buyer { token })
        .collect();
    let bulk = params.buyers - rest_buyers;
    for token in sys.bulk_buyers(bulk, "bench").await {
        buyers.push(Buyer { token });
    }
    println!(
        "setup: buyers                 {rest_buyers} signed up + logged in over REST, {bulk} inserted in bulk with minted tokens"
    );
    println!(
        "setup: took                   {:.1} s (not measured)",
        setup_started.elapsed().as_secs_f64()
    );

    // ---------------------------------------------------------------- measured phase
    let sys = Arc::new(sys);
    let buyers = Arc::new(buyers);
    let sales = Arc::new(sales);
    let next = Arc::new(AtomicUsize::new(0));
    let done = Arc::new(AtomicBool::new(false));
    let started = Instant::now();
    let started_utc = chrono::Utc::now();
    let (measure_from, deadline) = if holds_only() {
        let from = started + Duration::from_secs(params.storm_warmup_seconds);
        (from, from + Duration::from_secs(params.storm_seconds))
    } else {
        (started, started + Duration::from_secs(params.max_seconds))
    };
    // The server side, from the measured window's start (taken at it for the storm).
    let server_pid = sys.server_pid();
    let generator_pid = std::process::id();
    let window_start = {
        let sys = sys.clone();
        tokio::spawn(async move {
            tokio::time::sleep_until(measure_from.into()).await;
            (
                sys.server_metrics().await,
                split::cpu_seconds(server_pid),
                split::cpu_seconds(generator_pid),
                Instant::now(),
            )
        })
    };

    let refresher = {
        let (sys, sales, done) = (sys.clone(), sales.clone(), done.clone());
        tokio::spawn(async move {
            let mut refreshes = 0u64;
            while !done.load(Ordering::Relaxed) && Instant::now() < deadline {
                tokio::time::sleep(SNAPSHOT_REFRESH).await;
                for sale in sales.iter() {
                    if let Some(statuses) = seat_statuses(&sys, &sale.id).await {
                        sale.set_available(&statuses);
                        refreshes += 1;
                    }
                }
            }
            refreshes
        })
    };

    let workers: Vec<_> = (0..params.concurrency)
        .map(|w| {
            let (sys, sales, buyers, next) =
                (sys.clone(), sales.clone(), buyers.clone(), next.clone());
            tokio::spawn(async move {
                let mut rng = StdRng::seed_from_u64(0x5eed_0000 + w as u64);
                let mut tally = Tally::new();
                let mut last = started;
                loop {
                    if Instant::now() >= deadline {
                        break;
                    }
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let buyer = if holds_only() {
                        // A rolling sale: buyers come back in turn, their holds expired.
                        if sales
                            .iter()
                            .all(|s| s.available.lock().expect("lock").items.is_empty())
                        {
                            // Everything is held: wait for expiries to show on the map.
                            tokio::time::sleep(Duration::from_millis(20)).await;
                            continue;
                        }
                        &buyers[i % buyers.len()]
                    } else {
                        let Some(buyer) = buyers.get(i) else { break };
                        buyer
                    };
                    buyer_turn(
                        &sys,
                        &sales,
                        buyer,
                        deadline,
                        measure_from,
                        &mut rng,
                        &mut tally,
                    )
                    .await;
                    last = Instant::now();
                }
                (tally, last)
            })
        })
        .collect();
    let mut tally = Tally::new();
    let mut last_request_done = started;
    for worker in workers {
        let (t, last) = worker.await.expect("worker");
        tally.merge(t);
        last_request_done = last_request_done.max(last);
    }
    done.store(true, Ordering::Relaxed);
    let window_end_metrics = sys.server_metrics().await;
    let (server_cpu_end, generator_cpu_end) = (
        split::cpu_seconds(server_pid),
        split::cpu_seconds(generator_pid),
    );
    let (window_start_metrics, server_cpu_start, generator_cpu_start, window_started) =
        window_start.await.expect("window start");
    let window = last_request_done.max(window_started) - window_started;
    let server_cpu = (server_cpu_end - server_cpu_start) / window.as_secs_f64().max(1e-9);
    let generator_cpu = (generator_cpu_end - generator_cpu_start) / window.as_secs_f64().max(1e-9);
    let server_p99 = |route: &str| {
        split::histogram_quantile(
            &window_start_metrics,
            &window_end_metrics,
            "gateway_request_duration_seconds",
            &[("route", route), ("method", "POST")],
            0.99,
        )
        .map(|seconds| seconds * 1000.0)
    };
    let (server_hold_p99, server_checkout_p99) =
        (server_p99(HOLD_ROUTE), server_p99("/v1/bookings"));
    let request_phase = if holds_only() {
        window
    } else {
        last_request_done - started
    };
    let timed_out = Instant::now() >= deadline;
    let buyers_started = next.load(Ordering::Relaxed).min(buyers.len());
    let refreshes = refresher.await.unwrap_or(0);

    // Wait (bounded) for every booking to leave PENDING_PAYMENT.
    let settle_deadline = Instant::now() + Duration::from_secs(params.settle_seconds);
    let mut pending;
    loop {
        pending = scalar(
            &sys.booking_pool,
            "SELECT count(*) FROM bookings WHERE status = 'PENDING_PAYMENT'",
        )
        .await;
        if pending == 0 || Instant::now() >= settle_deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let settled_seen = started.elapsed();
    let last_settled: Option<chrono::DateTime<chrono::Utc>> = sqlx::query_scalar(
        "SELECT max(updated_at) FROM bookings WHERE status IN ('CONFIRMED', 'CANCELLED')",
    )
    .fetch_one(&sys.booking_pool)
    .await
    .expect("last settled");
    let settle_span = last_settled
        .and_then(|t| (t - started_utc).to_std().ok())
        .unwrap_or(settled_seen);

    // ---------------------------------------------------------------- results
    let pool = &sys.booking_pool;
    let confirmed = scalar(
        pool,
        "SELECT count(*) FROM bookings WHERE status = 'CONFIRMED'",
    )
    .await;
    let cancelled = scalar(
        pool,
        "SELECT count(*) FROM bookings WHERE status = 'CANCELLED'",
    )
    .await;
    let insufficient = scalar(
        pool,
        "SELECT count(*) FROM bookings WHERE status = 'CANCELLED'
         AND cancel_reason LIKE '%INSUFFICIENT_FUNDS%'",
    )
    .await;
    let confirmed_seats = scalar(
        pool,
        "SELECT count(*) FROM booking_seats bs JOIN bookings b ON b.id = bs.booking_id
         WHERE b.status = 'CONFIRMED'",
    )
    .await;
    let confirmed_total = scalar(
        pool,
        "SELECT coalesce(sum(total_minor), 0)::int8 FROM bookings WHERE status = 'CONFIRMED'",
    )
    .await;
    let mut sold_seat_ids = HashSet::new();
    for sale in sales.iter() {
        let statuses = seat_statuses(&sys, &sale.id).await.expect("final seat map");
        sold_seat_ids.extend(
            statuses
                .into_iter()
                .filter(|s| s.1 == "SOLD")
                .map(|(seat, _)| seat),
        );
    }
    let oversell = Oversell::check(pool, &sold_seat_ids).await;
    let money = Money::check(&sys.pay_pool).await;

    let holds = tally.hold_latency.len();
    let granted = tally.hold_status.get(&201).copied().unwrap_or(0);
    let taken = tally.hold_status.get(&409).copied().unwrap_or(0);
    let checkouts = tally.checkout_latency.len();
    let accepted = tally.checkout_status.get(&202).copied().unwrap_or(0);
    let holds_per_s = rate(holds, request_phase);
    let hold_p99_ms = tally.hold_latency.value_at_quantile(0.99) as f64 / 1000.0;
    let checkout_p99_ms = tally.checkout_latency.value_at_quantile(0.99) as f64 / 1000.0;
    let purchases_per_s = rate(u64::try_from(confirmed).unwrap_or(0), settle_span);
    println!(
        "run: buyers started           {buyers_started} of {} ({} bought, {} found it sold out, {} gave up){}",
        buyers.len(),
        tally.buyers_served,
        tally.buyers_sold_out,
        tally.buyers_gave_up,
        if holds_only() {
            " — a rolling sale, until the window ended"
        } else if timed_out {
            " — stopped at BENCH_MAX_SECONDS"
        } else {
            ""
        }
    );
    println!(
        "run: request phase            {:.2} s (first request to last answer)",
        request_phase.as_secs_f64()
    );
    println!("run: seat-map refreshes       {refreshes} (GET /seats, not counted below)");
    if sys.is_split() {
        println!(
            "server: cpu                   {server_cpu:.2} cores (system process, over the window); load generator {generator_cpu:.2} cores"
        );
    } else {
        println!(
            "server: cpu                   {server_cpu:.2} cores (system and load generator in one process)"
        );
    }
    let bound = |p99: Option<f64>| p99.map_or_else(|| "n/a".to_owned(), |ms| format!("<= {ms} ms"));
    println!(
        "server: gateway p99           holds {}, checkouts {} (its histogram's bucket bound)",
        bound(server_hold_p99),
        bound(server_checkout_p99)
    );
    if !holds_only() {
        // Where a checkout's transaction waits, from booking-svc's own histogram.
        let phases: Vec<String> = ["begin", "statements", "commit"]
            .iter()
            .map(|phase| {
                let labels = [("phase", *phase)];
                let name = "checkout_transaction_seconds";
                let mean = split::histogram_mean(
                    &window_start_metrics,
                    &window_end_metrics,
                    name,
                    &labels,
                );
                let p99 = split::histogram_quantile(
                    &window_start_metrics,
                    &window_end_metrics,
                    name,
                    &labels,
                    0.99,
                );
                format!(
                    "{phase} mean {} p99 {}",
                    mean.map_or_else(|| "n/a".to_owned(), |s| format!("{:.1} ms", s * 1000.0)),
                    bound(p99.map(|s| s * 1000.0))
                )
            })
            .collect();
        println!("server: checkout transaction  {}", phases.join(", "));
    }
    println!("holds: requests/s             {holds_per_s:.0} ({holds} requests)");
    println!(
        "holds: granted/taken/other    {granted} / {taken} / {}",
        holds - granted - taken
    );
    println!(
        "holds: by status              {}",
        statuses(&tally.hold_status)
    );
    for (label, q) in [("p50", 0.5), ("p90", 0.9), ("p99", 0.99)] {
        println!(
            "holds: latency {label}            {}",
            ms(tally.hold_latency.value_at_quantile(q))
        );
    }
    println!(
        "holds: latency max            {}",
        ms(tally.hold_latency.max())
    );
    println!(
        "checkouts: requests/s         {:.0} ({checkouts} requests, {accepted} accepted)",
        rate(checkouts, request_phase)
    );
    println!(
        "checkouts: by status          {}",
        statuses(&tally.checkout_status)
    );
    for (label, q) in [("p50", 0.5), ("p90", 0.9), ("p99", 0.99)] {
        println!(
            "checkouts: latency {label}        {}",
            ms(tally.checkout_latency.value_at_quantile(q))
        );
    }
    println!(
        "checkouts: latency max        {}",
        ms(tally.checkout_latency.max())
    );
    if let Some(error) = &tally.first_error {
        println!("run: first unexpected answer  {error}");
    }
    println!(
        "settle: last booking settled  {:.2} s after the first request ({} still PENDING_PAYMENT)",
        settle_span.as_secs_f64(),
        pending
    );
    println!(
        "purchases: confirmed/s        {purchases_per_s:.0} (confirmed bookings / first request to last settled)"
    );
    println!("bookings: CONFIRMED           {confirmed} ({confirmed_seats} seats)");
    println!("bookings: CANCELLED           {cancelled} ({insufficient} for insufficient funds)");
    println!(
        "seats: sold                   {} of {}",
        sold_seat_ids.len(),
        params.seats
    );

    // ---------------------------------------------------------------- checks
    let payments_match =
        pending > 0 || (money.captured_count == confirmed && money.captured == confirmed_total);
    println!(
        "check: oversold seats         {} (must be 0)",
        oversell.sold_twice.len()
    );
    println!(
        "check: SOLD on seat map == seats of CONFIRMED bookings   {} ({} vs {})",
        if oversell.seat_map_agrees() {
            "ok"
        } else {
            "MISMATCH"
        },
        sold_seat_ids.len(),
        oversell.confirmed_seats()
    );
    println!(
        "check: money conservation     {} (balances {} + captured {} = {} vs {WELCOME_CREDIT_MINOR} x {} wallets = {})",
        if money.conserved() { "ok" } else { "VIOLATED" },
        money.balances,
        money.captured,
        money.balances + money.captured,
        money.wallets,
        money.issued()
    );
    println!(
        "check: captured payments == confirmed bookings   {} ({} payments, {} KRW vs {confirmed} bookings, {confirmed_total} KRW)",
        if payments_match { "ok" } else { "MISMATCH" },
        money.captured_count,
        money.captured
    );

    // ---------------------------------------------------------------- report
    // Written before the checks below can panic, so a failed run still shows its figures.
    let mut report = Report::new(
        if holds_only() {
            "hold storm"
        } else {
            "purchase"
        },
        format!(
            "{} seats, {} buyers, {} in flight{}{}",
            params.seats,
            params.buyers,
            params.concurrency,
            if holds_only() {
                format!(
                    ", {} s window, holds expire after {} ms",
                    params.storm_seconds,
                    params.storm_hold_ttl.as_millis()
                )
            } else {
                String::new()
            },
            if sys.is_split() {
                ", system and load generator in two pinned processes"
            } else {
                ", one process"
            }
        ),
    );
    if holds_only() {
        report
            .figure(
                "hold requests",
                holds_per_s,
                "/s",
                Target::AtLeast(20_000.0),
            )
            .figure("hold p99", hold_p99_ms, "ms", Target::Below(25.0))
            .figure(
                "holds granted",
                rate(granted, request_phase),
                "/s",
                Target::None,
            );
    } else {
        report
            .figure(
                "confirmed purchases",
                purchases_per_s,
                "/s",
                Target::AtLeast(1_000.0),
            )
            .figure("checkout p99", checkout_p99_ms, "ms", Target::Below(250.0))
            .check("money conserved", money.conserved())
            .check("captured payments = confirmed bookings", payments_match)
            .figure(
                "still PENDING_PAYMENT",
                pending as f64,
                "",
                Target::Exactly(0.0),
            )
            .figure("hold requests", holds_per_s, "/s", Target::None)
            .figure("hold p99", hold_p99_ms, "ms", Target::None);
    }
    let server_route_p99 = if holds_only() {
        server_hold_p99
    } else {
        server_checkout_p99
    };
    if let Some(p99) = server_route_p99 {
        report.figure(
            if holds_only() {
                "server-side hold p99 (bucket bound)"
            } else {
                "server-side checkout p99 (bucket bound)"
            },
            p99,
            "ms",
            Target::None,
        );
    }
    report.figure(
        if sys.is_split() {
            "system cpu"
        } else {
            "process cpu (system and load generator)"
        },
        server_cpu,
        "cores",
        Target::None,
    );
    if sys.is_split() {
        report.figure("load generator cpu", generator_cpu, "cores", Target::None);
    }
    report
        .figure(
            "oversold seats",
            oversell.sold_twice.len() as f64,
            "",
            Target::Exactly(0.0),
        )
        .check("seat map = confirmed bookings", oversell.seat_map_agrees())
        .write();

    let sys = Arc::try_unwrap(sys).unwrap_or_else(|_| panic!("system still shared"));
    sys.stop().await;

    oversell.assert_ok();
    money.assert_conserved();
    assert!(payments_match, "payments disagree with bookings");
    assert_eq!(pending, 0, "bookings still PENDING_PAYMENT after settling");
}

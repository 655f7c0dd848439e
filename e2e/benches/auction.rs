//! Auction benchmark (issue 14): a crowd bids on one live seat auction through the
//! gateway while watchers follow its ranking over SSE. The whole system runs in this
//! one process (pay-svc, booking-svc, realtime-svc and the gateway, on the local
//! PostgreSQL, Redis and RabbitMQ), and so does the crowd; with `BENCH_SPLIT`, which
//! `make bench` sets, the system runs in a pinned process of its own
//! (`marquee_e2e::split`).
//!
//! `cargo bench -p marquee-e2e --bench auction`, tuned by environment variables:
//! `BENCH_AUC_BIDDERS` (5000), `BENCH_AUC_SEATS` (20), `BENCH_AUC_IN_FLIGHT` (64, bids
//! in flight at once), `BENCH_AUC_WATCHERS` (50, SSE clients on the auction's
//! `:watch`) and `BENCH_AUC_TIMEOUT_SECONDS` (300).
//!
//! Setup (not measured): a seller auctions `SEATS` seats of an event; the bidders are
//! inserted straight into the booking database with minted tokens; the watchers
//! connect. Measured: every bidder submits three bids, in three rounds, each round in
//! bursts of identical amounts (seven amounts per round), then one bidder in ten tries a
//! fourth, which must be refused. Reported: accepted bids per second, bid latency, and
//! the ranking stream's latency: for each accepted bid and each watcher, from the bid's
//! answer to the first update the watcher got at or past the bid's version (0 when the
//! update came first). Then the invariants: no bidder over three submissions, every
//! bidder once, the ranking GET shows equal to the stored bids' order (amount, then
//! earlier bid), every watcher's last update equal to that ranking, and at the close
//! exactly `SEATS` awards, to the top bids in seat order. A failed check makes the
//! command exit non-zero.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::StreamExt as _;
use hdrhistogram::Histogram;
use marquee_e2e::{Options, System, auction_pseudonym, int};
use marquee_testkit::env_num;
use serde_json::{Value, json};
use uuid::Uuid;

// The same allocator as the service binaries, since this process hosts all of them.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Debug, Clone, Copy)]
struct Params {
    bidders: usize,
    seats: usize,
    in_flight: usize,
    watchers: usize,
    timeout_seconds: u64,
}

impl Params {
    fn from_env() -> Self {
        Self {
            bidders: env_num("BENCH_AUC_BIDDERS", 5000).max(1) as usize,
            seats: env_num("BENCH_AUC_SEATS", 20).clamp(1, 100) as usize,
            in_flight: env_num("BENCH_AUC_IN_FLIGHT", 64).max(1) as usize,
            watchers: env_num("BENCH_AUC_WATCHERS", 50) as usize,
            timeout_seconds: env_num("BENCH_AUC_TIMEOUT_SECONDS", 300),
        }
    }
}

fn ms(h: &Histogram<u64>, q: f64) -> f64 {
    h.value_at_quantile(q) as f64 / 1000.0
}

/// What one watcher received: (when, version, the auction's ranking).
type Seen = Vec<(Instant, i64, Value)>;

#[tokio::main]
async fn main() {
    let params = Params::from_env();
    let marquee_testkit::Machine {
        cpus,
        model,
        memory,
    } = marquee_testkit::Machine::read();
    println!("== Marquee auction benchmark ==");
    println!("machine: cpus (nproc)         {cpus}");
    println!("machine: cpu model            {model}");
    println!("machine: memory               {memory}");
    println!("param: bidders                {}", params.bidders);
    println!("param: seats                  {}", params.seats);
    println!("param: bids in flight (max)   {}", params.in_flight);
    println!("param: ranking watchers       {}", params.watchers);
    let run = tokio::time::timeout(Duration::from_secs(params.timeout_seconds), bench(params));
    match run.await {
        Ok(true) => println!("result: PASS"),
        Ok(false) => {
            println!("result: FAIL");
            std::process::exit(1);
        }
        Err(_) => {
            println!("result: FAIL (over BENCH_AUC_TIMEOUT_SECONDS)");
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
    let rows = params.seats.div_ceil(10).max(1);
    let (seller, event_id) = sys.seller_event(&[("VIP", 10_000, rows, 10)], 4).await;
    let seats: Vec<String> = sys.seat_ids(&event_id).await[..params.seats].to_vec();
    let created = sys
        .post(
            &format!("/v1/events/{event_id}/auctions"),
            Some(&seller),
            json!({
                "seatIds": seats,
                "openingPrice": {"amountMinor": "10000", "currency": "KRW"},
                "minIncrement": {"amountMinor": "1000", "currency": "KRW"},
                "closesAt": (chrono::Utc::now() + chrono::Duration::hours(1)).to_rfc3339(),
                "paymentWindowSeconds": 600,
            }),
        )
        .await;
    assert_eq!(created.status, 201, "{:?}", created.body);
    let auction_id = created.str("/auction/auctionId");
    let auction_uuid = Uuid::parse_str(&auction_id).expect("auction id");
    let tokens = sys.bulk_buyers(params.bidders, "auc").await;
    let seen: Vec<Arc<Mutex<Seen>>> = (0..params.watchers)
        .map(|_| Arc::new(Mutex::new(Vec::new())))
        .collect();
    let mut watchers = Vec::new();
    for log in &seen {
        let mut stream = sys
            .sse(&format!("/v1/auctions/{auction_id}:watch"), None, None)
            .await
            .expect("watch the auction");
        let log = log.clone();
        watchers.push(tokio::spawn(async move {
            while let Some(event) = stream.next_within(Duration::from_secs(3600)).await {
                let at = Instant::now();
                let version = int(&event.data["version"]);
                let ranking = event.data["auction"]["ranking"].clone();
                log.lock().expect("log").push((at, version, ranking));
            }
        }));
    }
    println!(
        "setup: {} bidders inserted in bulk with minted tokens, {} watchers; took {:.1} s (not measured)",
        tokens.len(),
        params.watchers,
        setup_started.elapsed().as_secs_f64()
    );

    // ---------------------------------------------------------------- bids
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(params.in_flight)
        .timeout(Duration::from_secs(60))
        .build()
        .expect("http client");
    let url = format!("{}/v1/auctions/{auction_id}/bids", sys.base);
    let mut latency = Histogram::<u64>::new(3).expect("histogram");
    // (version, answered at) of every accepted bid.
    let mut accepted: Vec<(i64, Instant)> = Vec::with_capacity(params.bidders * 3);
    let mut refused = Vec::new();
    let start = Instant::now();
    for round in 0..3i64 {
        let replies: Vec<(u16, Value, Instant, Duration)> =
            futures::stream::iter(tokens.iter().enumerate())
                .map(|(i, token)| {
                    let amount = 10_000 + round * 2_000 + (i as i64 % 7) * 100;
                    let (client, url) = (&client, &url);
                    async move {
                        let sent = Instant::now();
                        let reply = client
                    .post(url)
                    .bearer_auth(token)
                    .json(
                        &json!({"amount": {"amountMinor": amount.to_string(), "currency": "KRW"}}),
                    )
                    .send()
                    .await;
                        let answered = Instant::now();
                        match reply {
                            Ok(r) => {
                                let status = r.status().as_u16();
                                let body = r.json::<Value>().await.unwrap_or(Value::Null);
                                (status, body, answered, answered - sent)
                            }
                            Err(e) => (
                                0,
                                json!({"message": e.to_string()}),
                                answered,
                                answered - sent,
                            ),
                        }
                    }
                })
                .buffer_unordered(params.in_flight)
                .collect()
                .await;
        for (status, body, answered, took) in replies {
            latency
                .record(took.as_micros().max(1) as u64)
                .expect("record");
            if status == 201 {
                accepted.push((int(&body["version"]), answered));
            } else {
                refused.push(format!("{status} {body}"));
            }
        }
    }
    let elapsed = start.elapsed();
    // One bidder in ten tries a fourth bid: every one must be refused.
    let fourth: Vec<u16> = futures::stream::iter(tokens.iter().step_by(10))
        .map(|token| {
            let (client, url) = (&client, &url);
            async move {
                client
                    .post(url)
                    .bearer_auth(token)
                    .json(&json!({"amount": {"amountMinor": "99000", "currency": "KRW"}}))
                    .send()
                    .await
                    .map(|r| r.status().as_u16())
                    .unwrap_or(0)
            }
        })
        .buffer_unordered(params.in_flight)
        .collect()
        .await;
    let fourth_accepted = fourth.iter().filter(|s| **s != 409).count();

    // ---------------------------------------------------------------- checks
    let shown = sys.get(&format!("/v1/auctions/{auction_id}"), None).await;
    let final_version = int(&shown.body["auction"]["version"]);
    let final_ranking = shown.body["auction"]["ranking"].clone();
    // Every watcher reaches the final version (or the check fails).
    let deadline = Instant::now() + Duration::from_secs(15);
    while Instant::now() < deadline
        && !seen.iter().all(|log| {
            log.lock()
                .expect("log")
                .last()
                .is_some_and(|(_, v, _)| *v >= final_version)
        })
    {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    for task in &watchers {
        task.abort();
    }
    accepted.sort_unstable_by_key(|(version, _)| *version);
    let mut stream_latency = Histogram::<u64>::new(3).expect("histogram");
    let mut behind = 0usize;
    let mut ranking_mismatch = 0usize;
    for log in &seen {
        let log = log.lock().expect("log");
        let mut next = 0;
        for (at, version, _) in log.iter() {
            while next < accepted.len() && accepted[next].0 <= *version {
                let waited = at.saturating_duration_since(accepted[next].1);
                stream_latency
                    .record(waited.as_micros().max(1) as u64)
                    .expect("record");
                next += 1;
            }
        }
        if next < accepted.len() {
            behind += 1;
        }
        if log.last().map(|(_, _, r)| r) != Some(&final_ranking) {
            ranking_mismatch += 1;
        }
    }
    let rows: Vec<(Uuid, i64, i16)> = sqlx::query_as(
        "SELECT bidder_id, amount_minor, submissions FROM auction_bids
         WHERE auction_id = $1 ORDER BY amount_minor DESC, seq",
    )
    .bind(auction_uuid)
    .fetch_all(&sys.booking_pool)
    .await
    .expect("bids");
    let over_three = rows.iter().filter(|r| r.2 > 3).count();
    let distinct: HashSet<Uuid> = rows.iter().map(|r| r.0).collect();
    let ranking_ok = final_ranking.as_array().is_some_and(|ranked| {
        ranked.len() == (2 * params.seats).min(rows.len())
            && ranked.iter().zip(&rows).all(|(entry, row)| {
                entry["bidder"] == auction_pseudonym(auction_uuid, row.0)
                    && int(&entry["amount"]["amountMinor"]) == row.1
            })
    });
    sqlx::query("UPDATE auctions SET closes_at = now() WHERE id = $1")
        .bind(auction_uuid)
        .execute(&sys.booking_pool)
        .await
        .expect("close now");
    let close_deadline = Instant::now() + Duration::from_secs(15);
    let mut awards = Value::Null;
    while Instant::now() < close_deadline {
        let a = sys.get(&format!("/v1/auctions/{auction_id}"), None).await;
        if a.body["auction"]["state"] == "AUCTION_STATE_CLOSED" {
            awards = a.body["auction"]["awards"].clone();
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let awards_ok = awards.as_array().is_some_and(|awards| {
        awards.len() == params.seats.min(rows.len())
            && awards.iter().enumerate().all(|(i, award)| {
                award["seatId"] == seats[i].as_str()
                    && award["bidder"] == auction_pseudonym(auction_uuid, rows[i].0)
            })
    });

    // ---------------------------------------------------------------- report
    let bids_per_s = accepted.len() as f64 / elapsed.as_secs_f64();
    println!(
        "run: accepted bids            {} in {:.2} s = {bids_per_s:.0} bids/s",
        accepted.len(),
        elapsed.as_secs_f64()
    );
    println!(
        "run: bid latency              p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
        ms(&latency, 0.5),
        ms(&latency, 0.99),
        latency.max() as f64 / 1000.0
    );
    println!(
        "run: ranking stream latency   p50 {:.1} ms, p99 {:.1} ms ({} bid × watcher pairs)",
        ms(&stream_latency, 0.5),
        ms(&stream_latency, 0.99),
        stream_latency.len()
    );
    if let Some(first) = refused.first() {
        println!("run: first refused bid        {first}");
    }
    println!("check: refused bids (of 3 each) {}", refused.len());
    println!(
        "check: 4th bids accepted      {fourth_accepted} of {}",
        fourth.len()
    );
    println!("check: bidders over 3 bids    {over_three}");
    println!(
        "check: bidders stored         {} (expected {})",
        distinct.len(),
        params.bidders
    );
    println!("check: ranking = stored order {ranking_ok}");
    println!(
        "check: watchers behind final  {behind} of {}",
        params.watchers
    );
    println!("check: last update ≠ ranking  {ranking_mismatch}");
    println!("check: awards to the top bids {awards_ok}");
    // Issue 14 gave the auction no numeric targets: the figures, then its checks.
    {
        use marquee_e2e::bench_report::{Report, Target};
        Report::new(
            "auction",
            format!(
                "{} bidders × 3 bids on {} seats, {} in flight, {} watchers",
                params.bidders, params.seats, params.in_flight, params.watchers
            ),
        )
        .figure("accepted bids", bids_per_s, "/s", Target::None)
        .figure("bid p99", ms(&latency, 0.99), "ms", Target::None)
        .figure(
            "ranking stream p99",
            ms(&stream_latency, 0.99),
            "ms",
            Target::None,
        )
        .check(
            "bids: all taken, ≤ 3 each, 4th refused, all stored",
            refused.is_empty()
                && fourth_accepted == 0
                && over_three == 0
                && distinct.len() == params.bidders,
        )
        .check(
            "ranking = stored order = watchers' last",
            ranking_ok && behind == 0 && ranking_mismatch == 0,
        )
        .check("awards to the top bids", awards_ok)
        .write();
    }
    sys.stop().await;
    refused.is_empty()
        && fourth_accepted == 0
        && over_three == 0
        && distinct.len() == params.bidders
        && ranking_ok
        && behind == 0
        && ranking_mismatch == 0
        && awards_ok
}

//! The scenarios, one function each. Every scenario starts a fresh system, drives its
//! load while its faults fire (by the load's progress, so they land mid-load), waits
//! for the system to settle and returns its row of the table.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use marquee_proto::booking::{Role, SeatStatus};
use uuid::Uuid;

use crate::db;
use crate::load::{Account, Client, Outcome, Progress, SagaSpec};
use crate::procs::{OwnRedis, Service, tracing_free_note};
use crate::system::{Env, Knobs, System};
use crate::verify::{Row, settle};

/// Every count, from the CLI; [`Counts::full`] and [`Counts::reduced`] are the profiles.
#[derive(Debug, Clone)]
pub struct Counts {
    pub baseline: usize,
    pub pay_kills: usize,
    pub pay_kill_sagas: usize,
    pub booking_kills: usize,
    pub psp_kills: usize,
    pub kill_sagas: usize,
    pub bus_closes: usize,
    pub bus_sagas: usize,
    /// Close every broker connection (full) or only this run's (reduced).
    pub close_all_connections: bool,
    pub triple_sagas: usize,
    pub seed_each: usize,
    pub deadline_sagas: usize,
    pub redis_sagas: usize,
    pub redis_flushes: usize,
    pub poison_sagas: usize,
    pub crowd_buyers: usize,
    pub crowd_seats: usize,
    pub crowd_pay_kills: usize,
    /// Sagas in flight at once.
    pub concurrency: usize,
    /// How long after the load a saga may take to become terminal before it is lost.
    pub settle_bound: Duration,
}

impl Counts {
    pub fn full() -> Self {
        Self {
            baseline: 10_000,
            pay_kills: 20,
            pay_kill_sagas: 2_000,
            booking_kills: 10,
            psp_kills: 10,
            kill_sagas: 2_000,
            bus_closes: 5,
            bus_sagas: 5_000,
            close_all_connections: true,
            triple_sagas: 1_000,
            seed_each: 1_000,
            deadline_sagas: 200,
            redis_sagas: 2_000,
            redis_flushes: 2,
            poison_sagas: 200,
            crowd_buyers: 1_000,
            crowd_seats: 100,
            crowd_pay_kills: 5,
            concurrency: 64,
            settle_bound: Duration::from_secs(300),
        }
    }

    pub fn reduced() -> Self {
        Self {
            baseline: 300,
            pay_kills: 3,
            pay_kill_sagas: 150,
            booking_kills: 2,
            psp_kills: 2,
            kill_sagas: 150,
            bus_closes: 5,
            bus_sagas: 200,
            close_all_connections: false,
            triple_sagas: 100,
            seed_each: 25,
            deadline_sagas: 20,
            redis_sagas: 150,
            redis_flushes: 1,
            poison_sagas: 40,
            crowd_buyers: 200,
            crowd_seats: 20,
            crowd_pay_kills: 2,
            concurrency: 32,
            settle_bound: Duration::from_secs(120),
        }
    }

    /// Sets one count by its flag name (`--pay-kills 5` → `pay_kills`).
    pub fn set(&mut self, name: &str, value: &str) -> Result<()> {
        let number = || -> Result<usize> {
            value
                .parse()
                .with_context(|| format!("--{name} takes a number, not {value:?}"))
        };
        match name {
            "baseline" => self.baseline = number()?,
            "pay-kills" => self.pay_kills = number()?,
            "pay-kill-sagas" => self.pay_kill_sagas = number()?,
            "booking-kills" => self.booking_kills = number()?,
            "psp-kills" => self.psp_kills = number()?,
            "kill-sagas" => self.kill_sagas = number()?,
            "bus-closes" => self.bus_closes = number()?,
            "close-all-connections" => self.close_all_connections = number()? != 0,
            "bus-sagas" => self.bus_sagas = number()?,
            "triple-sagas" => self.triple_sagas = number()?,
            "seed-each" => self.seed_each = number()?,
            "deadline-sagas" => self.deadline_sagas = number()?,
            "redis-sagas" => self.redis_sagas = number()?,
            "redis-flushes" => self.redis_flushes = number()?,
            "poison-sagas" => self.poison_sagas = number()?,
            "crowd-buyers" => self.crowd_buyers = number()?,
            "crowd-seats" => self.crowd_seats = number()?,
            "crowd-pay-kills" => self.crowd_pay_kills = number()?,
            "concurrency" => self.concurrency = number()?,
            "settle-secs" => self.settle_bound = Duration::from_secs(number()? as u64),
            _ => bail!("unknown flag --{name}"),
        }
        Ok(())
    }
}

/// The seat price (KRW): a wallet's welcome credit (100,000) pays for 100.
const PRICE: i64 = 1_000;
/// The most sagas one buyer runs on one event (its `max_seats_per_buyer`).
const PER_BUYER: usize = 20;

/// A started system with a seller's event and its buyers.
struct Stage {
    sys: System,
    client: Client,
    buyers: Vec<Account>,
    event_id: String,
    seats: Vec<String>,
}

impl Stage {
    /// A fresh system, an event of `seats` seats and enough buyers for `sagas`.
    async fn start(
        env: &Env,
        name: &str,
        knobs: &Knobs,
        seats: usize,
        buyers: usize,
    ) -> Result<Self> {
        let sys = System::start(env, name, knobs).await?;
        let client = Client::new(sys.channel.clone());
        let seller = client.account(Role::Seller).await?;
        let (event_id, seat_ids) = client
            .event(&seller, seats, PRICE, PER_BUYER as i32)
            .await?;
        if seat_ids.len() != seats {
            bail!(
                "the event has {} seats, {seats} were asked for",
                seat_ids.len()
            );
        }
        let buyers = client.buyers(buyers, 16).await?;
        if buyers.is_empty() {
            bail!("no buyers");
        }
        Ok(Self {
            sys,
            client,
            buyers,
            event_id,
            seats: seat_ids,
        })
    }

    /// One saga per seat, spread over the buyers, paid as `pay(i)` says.
    fn specs(&self, sagas: usize, pay: impl Fn(usize) -> Option<&'static str>) -> Vec<SagaSpec> {
        (0..sagas)
            .map(|i| SagaSpec {
                buyer: i % self.buyers.len().max(1),
                event_id: self.event_id.clone(),
                seats: vec![self.seats[i % self.seats.len()].clone()],
                card_token: pay(i),
                cancel_after_confirm: i % 10 == 3,
            })
            .collect()
    }

    /// Waits for the system to settle, checks it and tears it down.
    async fn finish(
        self,
        name: &str,
        outcomes: &[Outcome],
        since: Instant,
        bound: Duration,
    ) -> Result<Row> {
        let accepted: HashSet<Uuid> = outcomes
            .iter()
            .filter_map(|o| o.booking_id.as_deref())
            .filter_map(|id| Uuid::parse_str(id).ok())
            .collect();
        let (mut row, _) = settle(&self.sys, name, &accepted, since, bound).await?;
        annotate(&mut row, outcomes);
        self.sys.teardown().await;
        Ok(row)
    }
}

fn buyers_for(sagas: usize) -> usize {
    sagas.div_ceil(PER_BUYER).max(1)
}

/// The baseline mix: half wallet, half card, mostly approving.
fn mixed(i: usize) -> Option<&'static str> {
    const CARDS: [&str; 10] = [
        "tok_approve",
        "tok_approve",
        "tok_decline",
        "tok_approve",
        "tok_5xx_once",
        "tok_approve",
        "tok_expired",
        "tok_approve",
        "tok_approve",
        "tok_approve",
    ];
    (i % 2 == 1).then(|| CARDS[(i / 2) % CARDS.len()])
}

fn annotate(row: &mut Row, outcomes: &[Outcome]) {
    let refused = outcomes.iter().filter(|o| o.refused).count();
    let errors: Vec<&str> = outcomes.iter().filter_map(|o| o.error.as_deref()).collect();
    let conflicts = outcomes.iter().filter(|o| o.checkout_conflict).count();
    if refused > 0 {
        row.notes.push(format!(
            "{refused} refused (seat taken; {conflicts} of them at checkout, by postgres)"
        ));
    }
    if !errors.is_empty() {
        row.notes
            .push(format!("{} not started (e.g. {})", errors.len(), errors[0]));
    }
}

/// `kill -9`, a short pause, start again.
async fn bounce(service: &mut Service) -> Result<()> {
    service.kill9().await?;
    tokio::time::sleep(Duration::from_millis(300)).await;
    service.start(Duration::from_secs(60)).await
}

/// `count` bounces of `service`, at evenly spread points of the load (offset by
/// `phase` of a step, so two fault kinds interleave).
async fn bounce_during(
    service: &mut Service,
    count: usize,
    phase: f64,
    progress: &Progress,
) -> Result<()> {
    for k in 0..count {
        progress
            .reached((k as f64 + phase) / (count as f64 + 1.0))
            .await;
        bounce(service).await?;
    }
    Ok(())
}

/// Scenario 1: Baseline: mixed wallet and card sagas, no fault.
pub async fn baseline(env: &Env, counts: &Counts) -> Result<Row> {
    let name = "1 baseline";
    let n = counts.baseline;
    let stage = Stage::start(env, "1-baseline", &Knobs::default(), n, buyers_for(n)).await?;
    let specs = stage.specs(n, mixed);
    let outcomes = stage
        .client
        .drive(&stage.buyers, specs, counts.concurrency, Progress::new(n))
        .await;
    let since = Instant::now();
    stage
        .finish(name, &outcomes, since, counts.settle_bound)
        .await
}

/// Scenario 2: `kill -9` of pay-svc during card and wallet payments, restarted each time.
pub async fn pay_kills(env: &Env, counts: &Counts) -> Result<Row> {
    let name = format!("2 kill -9 pay-svc ×{}", counts.pay_kills);
    let n = counts.pay_kill_sagas;
    let mut stage = Stage::start(env, "2-pay-kills", &Knobs::default(), n, buyers_for(n)).await?;
    let specs = stage.specs(n, mixed);
    let progress = Progress::new(n);
    let client = stage.client.clone();
    let (outcomes, faults) = tokio::join!(
        client.drive(&stage.buyers, specs, counts.concurrency, progress.clone()),
        bounce_during(&mut stage.sys.pay, counts.pay_kills, 1.0, &progress)
    );
    faults.context("pay-svc bounces")?;
    let since = Instant::now();
    let starts = stage.sys.pay.starts;
    let mut row = stage
        .finish(&name, &outcomes, since, counts.settle_bound)
        .await?;
    row.notes.push(format!("pay-svc started {starts}×"));
    Ok(row)
}

/// Scenario 3: `kill -9` of booking-svc during checkouts and confirmations, and of psp-sandbox
/// during card payments.
pub async fn booking_psp_kills(env: &Env, counts: &Counts) -> Result<Row> {
    let name = format!(
        "3 kill -9 booking-svc ×{} + psp ×{}",
        counts.booking_kills, counts.psp_kills
    );
    let n = counts.kill_sagas;
    let mut stage = Stage::start(
        env,
        "3-booking-psp-kills",
        &Knobs::default(),
        n,
        buyers_for(n),
    )
    .await?;
    let specs = stage.specs(n, mixed);
    let progress = Progress::new(n);
    let client = stage.client.clone();
    let sys = &mut stage.sys;
    let (outcomes, booking, psp) = tokio::join!(
        client.drive(&stage.buyers, specs, counts.concurrency, progress.clone()),
        bounce_during(&mut sys.booking, counts.booking_kills, 1.0, &progress),
        bounce_during(&mut sys.psp, counts.psp_kills, 0.5, &progress)
    );
    booking.context("booking-svc bounces")?;
    psp.context("psp-sandbox bounces")?;
    let since = Instant::now();
    let starts = (stage.sys.booking.starts, stage.sys.psp.starts);
    let mut row = stage
        .finish(&name, &outcomes, since, counts.settle_bound)
        .await?;
    row.notes.push(format!(
        "booking-svc started {}×, psp-sandbox {}×",
        starts.0, starts.1
    ));
    Ok(row)
}

/// Scenario 4: RabbitMQ drops the services' connections mid-load; the outboxes drain within
/// 60 s after.
pub async fn bus_closes(env: &Env, counts: &Counts) -> Result<Row> {
    let scope = if counts.close_all_connections {
        "all"
    } else {
        "own"
    };
    let name = format!("4 rabbitmq close {scope} conns ×{}", counts.bus_closes);
    let n = counts.bus_sagas;
    let stage = Stage::start(env, "4-bus-closes", &Knobs::default(), n, buyers_for(n)).await?;
    let specs = stage.specs(n, mixed);
    let progress = Progress::new(n);
    let pids: Vec<u32> = [stage.sys.booking.pid(), stage.sys.pay.pid()]
        .into_iter()
        .flatten()
        .collect();
    let all = counts.close_all_connections;
    let closes = counts.bus_closes;
    let faults = async {
        let mut closed = 0;
        for k in 0..closes {
            progress
                .reached((k as f64 + 1.0) / (closes as f64 + 1.0))
                .await;
            if all {
                crate::bus::close_all_connections()?;
                closed += 1;
            } else {
                closed += crate::bus::close_connections_of(&pids)?;
            }
        }
        anyhow::Ok(closed)
    };
    let (outcomes, closed) = tokio::join!(
        stage
            .client
            .drive(&stage.buyers, specs, counts.concurrency, progress.clone()),
        faults
    );
    let closed = closed.context("closing connections")?;
    let since = Instant::now();
    // The outboxes must be empty within 60 s of the load's end.
    let drained = loop {
        let booking = crate::verify::backlog(&stage.sys.booking_pool).await?;
        let pay = crate::verify::backlog(&stage.sys.pay_pool).await?;
        if booking == 0 && pay == 0 {
            break Some(since.elapsed());
        }
        if since.elapsed() > Duration::from_secs(60) {
            break None;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let mut row = stage
        .finish(&name, &outcomes, since, counts.settle_bound)
        .await?;
    row.notes.push(format!("{closed} connections closed"));
    match drained {
        Some(after) => row.notes.push(format!(
            "outboxes drained {:.1}s after",
            after.as_secs_f64()
        )),
        None => row
            .failures
            .push("outbox backlog not 0 within 60 s".to_owned()),
    }
    if !all && closed < closes {
        row.failures
            .push(format!("only {closed} connections found to close"));
    }
    Ok(row)
}

/// Scenario 5: Every message delivered three times (`OUTBOX_PUBLISH_COPIES=3`).
pub async fn triple_delivery(env: &Env, counts: &Counts) -> Result<Row> {
    let name = "5 every message ×3";
    let n = counts.triple_sagas;
    let knobs = Knobs {
        publish_copies: 3,
        ..Knobs::default()
    };
    let stage = Stage::start(env, "5-triple", &knobs, n, buyers_for(n)).await?;
    let specs = stage.specs(n, mixed);
    let outcomes = stage
        .client
        .drive(&stage.buyers, specs, counts.concurrency, Progress::new(n))
        .await;
    let since = Instant::now();
    stage
        .finish(name, &outcomes, since, counts.settle_bound)
        .await
}

/// Scenario 6: The PSP's seed outcomes: one row per outcome, `seed_each` card payments each.
pub async fn seed_outcomes(env: &Env, counts: &Counts) -> Result<Vec<Row>> {
    let cases: [(&str, &str, [&'static str; 2]); 4] = [
        (
            "6a",
            "tok_charge_drop",
            ["tok_charge_drop", "tok_charge_drop"],
        ),
        ("6b", "tok_fail_drop", ["tok_fail_drop", "tok_fail_drop"]),
        (
            "6c",
            "tok_undecided(_fail)",
            ["tok_undecided", "tok_undecided_fail"],
        ),
        ("6d", "tok_slow", ["tok_slow", "tok_slow"]),
    ];
    // The five rows are independent systems: two at a time (PostgreSQL's 100
    // connections are shared with whatever else runs on the machine).
    let [a, b, c, d] = cases;
    let seed = |(tag, label, tokens): (&'static str, &'static str, [&'static str; 2])| async move {
        guard_row(
            &format!("{tag} {label}"),
            seed_outcome(env, counts, tag, label, tokens).await,
        )
    };
    let lane_one = async { vec![seed(a).await, seed(c).await, seed(d).await] };
    let lane_two = async {
        vec![
            seed(b).await,
            guard_row("6e deadline", deadline_then_paid(env, counts).await),
        ]
    };
    let (one, two) = tokio::join!(lane_one, lane_two);
    let mut rows: Vec<Row> = one.into_iter().chain(two).collect();
    rows.sort_by(|x, y| x.scenario.cmp(&y.scenario));
    Ok(rows)
}

/// A harness error as a failed row.
fn guard_row(name: &str, row: Result<Row>) -> Row {
    row.unwrap_or_else(|error| {
        tracing_free_note(&format!("{name}: {error:#}"));
        Row {
            scenario: name.to_owned(),
            failures: vec![format!("harness error: {error:#}")],
            ..Row::default()
        }
    })
}

/// One seed outcome: `seed_each` card payments with `tokens` (alternating).
async fn seed_outcome(
    env: &Env,
    counts: &Counts,
    tag: &str,
    label: &str,
    tokens: [&'static str; 2],
) -> Result<Row> {
    let name = format!("{tag} {label} ×{}", counts.seed_each);
    let n = counts.seed_each;
    // tok_slow answers after PSP_SLOW_MS, past pay-svc's PSP_TIMEOUT_MS.
    let knobs = Knobs {
        psp_slow: Duration::from_millis(1200),
        psp_timeout: Duration::from_millis(800),
        ..Knobs::default()
    };
    let stage = Stage::start(env, &format!("6-{tag}"), &knobs, n, buyers_for(n)).await?;
    let mut specs = stage.specs(n, |i| Some(tokens[i % 2]));
    for spec in &mut specs {
        spec.cancel_after_confirm = false;
    }
    let outcomes = stage
        .client
        .drive(&stage.buyers, specs, counts.concurrency, Progress::new(n))
        .await;
    let since = Instant::now();
    stage
        .finish(&name, &outcomes, since, counts.settle_bound)
        .await
}

/// Scenario 6e: The payment deadline passes while the PSP is still answering: the booking is
/// cancelled, the late capture refunded.
async fn deadline_then_paid(env: &Env, counts: &Counts) -> Result<Row> {
    let name = format!("6e deadline 1.5s, tok_slow 3s ×{}", counts.deadline_sagas);
    let n = counts.deadline_sagas;
    let knobs = Knobs {
        payment_deadline: Duration::from_millis(1500),
        psp_slow: Duration::from_secs(3),
        psp_timeout: Duration::from_secs(5),
        ..Knobs::default()
    };
    let stage = Stage::start(env, "6-deadline", &knobs, n, buyers_for(n)).await?;
    let mut specs = stage.specs(n, |_| Some("tok_slow"));
    for spec in &mut specs {
        spec.cancel_after_confirm = false;
    }
    let outcomes = stage
        .client
        .drive(&stage.buyers, specs, counts.concurrency, Progress::new(n))
        .await;
    let since = Instant::now();
    let accepted: HashSet<Uuid> = outcomes
        .iter()
        .filter_map(|o| o.booking_id.as_deref())
        .filter_map(|id| Uuid::parse_str(id).ok())
        .collect();
    let (mut row, snapshot) =
        settle(&stage.sys, &name, &accepted, since, counts.settle_bound).await?;
    annotate(&mut row, &outcomes);
    let confirmed = snapshot.count_status("CONFIRMED");
    let refunded = snapshot
        .psp
        .values()
        .flatten()
        .filter(|(status, _)| status == "CANCELED")
        .count();
    row.notes
        .push(format!("{refunded} late captures refunded at the psp"));
    if confirmed > 0 {
        row.failures.push(format!(
            "{confirmed} bookings confirmed after their deadline"
        ));
    }
    if refunded != row.started {
        row.failures.push(format!(
            "{refunded} of {} late captures refunded",
            row.started
        ));
    }
    stage.sys.teardown().await;
    Ok(row)
}

/// Scenario 7: Redis loses everything mid-sale (booking-svc on a redis-server of our own):
/// no seat sold twice, and the seat map agrees with PostgreSQL after.
pub async fn redis_loss(env: &Env, counts: &Counts) -> Result<Row> {
    let name = format!("7 redis FLUSHALL ×{}", counts.redis_flushes);
    let n = counts.redis_sagas;
    let mut redis = OwnRedis::start(&env.log_dir.join("7-redis")).await?;
    let knobs = Knobs {
        redis_url: Some(redis.url()),
        ..Knobs::default()
    };
    // Two buyers want each seat: after the loss a seat can be held twice, and only
    // PostgreSQL stands between the two checkouts.
    let seats = n.div_ceil(2).max(1);
    let stage = Stage::start(env, "7-redis-loss", &knobs, seats, buyers_for(n)).await?;
    let mut specs = stage.specs(n, mixed);
    for (i, spec) in specs.iter_mut().enumerate() {
        spec.seats = vec![stage.seats[(i / 2) % stage.seats.len()].clone()];
        spec.cancel_after_confirm = false;
    }
    let progress = Progress::new(n);
    let flushes = counts.redis_flushes;
    let faults = async {
        for k in 0..flushes {
            progress
                .reached((k as f64 + 1.0) / (flushes as f64 + 1.0))
                .await;
            redis.flushall()?;
        }
        anyhow::Ok(())
    };
    let (outcomes, flushed) = tokio::join!(
        stage
            .client
            .drive(&stage.buyers, specs, counts.concurrency, progress.clone()),
        faults
    );
    flushed.context("flushall")?;
    let since = Instant::now();
    let accepted: HashSet<Uuid> = outcomes
        .iter()
        .filter_map(|o| o.booking_id.as_deref())
        .filter_map(|id| Uuid::parse_str(id).ok())
        .collect();
    let (mut row, _) = settle(&stage.sys, &name, &accepted, since, counts.settle_bound).await?;
    annotate(&mut row, &outcomes);
    // The seat map against PostgreSQL: SOLD exactly the confirmed bookings' seats,
    // nothing left HELD.
    let confirmed: Vec<Uuid> = db::rows(
        &stage.sys.booking_pool,
        "SELECT bs.seat_id FROM booking_seats bs JOIN bookings b ON b.id = bs.booking_id
         WHERE b.status = 'CONFIRMED'",
        vec![],
    )
    .await?;
    let confirmed: HashSet<String> = confirmed.iter().map(Uuid::to_string).collect();
    for (view, seats) in [
        (
            "ListSeats",
            stage.client.seat_statuses(&stage.event_id).await?,
        ),
        (
            "GetSeatSnapshot",
            stage.client.snapshot(&stage.event_id).await?,
        ),
    ] {
        let sold: HashSet<String> = seats
            .iter()
            .filter(|(_, s)| *s == SeatStatus::Sold as i32)
            .map(|(id, _)| id.clone())
            .collect();
        let held = seats
            .iter()
            .filter(|(_, s)| *s == SeatStatus::Held as i32)
            .count();
        if sold != confirmed {
            row.failures.push(format!(
                "{view}: {} SOLD, {} confirmed in postgres ({} differ)",
                sold.len(),
                confirmed.len(),
                sold.symmetric_difference(&confirmed).count()
            ));
        }
        if held > 0 {
            row.failures
                .push(format!("{view}: {held} seats still HELD"));
        }
    }
    row.notes
        .push(format!("{} seats sold, map agrees", confirmed.len()));
    stage.sys.teardown().await;
    redis.stop();
    Ok(row)
}

/// Scenario 9: Contention: more buyers than seats, with pay-svc kills and every message
/// delivered three times: exactly every seat sold, once.
pub async fn contention(env: &Env, counts: &Counts) -> Result<Row> {
    let name = format!(
        "9 {} buyers/{} seats, pay kills ×{}, ×3",
        counts.crowd_buyers, counts.crowd_seats, counts.crowd_pay_kills
    );
    let knobs = Knobs {
        publish_copies: 3,
        ..Knobs::default()
    };
    let mut stage = Stage::start(
        env,
        "9-contention",
        &knobs,
        counts.crowd_seats,
        counts.crowd_buyers,
    )
    .await?;
    let progress = Progress::new(counts.crowd_buyers);
    let client = stage.client.clone();
    let seats = stage.seats.clone();
    let (outcomes, faults) = tokio::join!(
        client.crowd(
            &stage.buyers,
            &stage.event_id,
            &seats,
            2,
            counts.concurrency,
            progress.clone()
        ),
        bounce_during(&mut stage.sys.pay, counts.crowd_pay_kills, 1.0, &progress)
    );
    faults.context("pay-svc bounces")?;
    let since = Instant::now();
    let accepted: HashSet<Uuid> = outcomes
        .iter()
        .filter_map(|o| o.booking_id.as_deref())
        .filter_map(|id| Uuid::parse_str(id).ok())
        .collect();
    let (mut row, _) = settle(&stage.sys, &name, &accepted, since, counts.settle_bound).await?;
    annotate(&mut row, &outcomes);
    let sold: i64 = db::one(
        &stage.sys.booking_pool,
        "SELECT count(*) FROM booking_seats bs JOIN bookings b ON b.id = bs.booking_id
         WHERE b.status = 'CONFIRMED'",
        vec![],
    )
    .await?;
    let without = outcomes.iter().filter(|o| o.booking_id.is_none()).count();
    row.notes.push(format!(
        "{sold} seats sold, {without} buyers without a seat"
    ));
    if usize::try_from(sold).unwrap_or(0) != counts.crowd_seats {
        row.failures.push(format!(
            "{sold} seats sold, expected exactly {}",
            counts.crowd_seats
        ));
    }
    stage.sys.teardown().await;
    Ok(row)
}

/// Runs `scenario`, turning a harness error into a failed row (so the table is
/// printed either way).
pub async fn guarded(name: &str, scenario: impl std::future::Future<Output = Result<Row>>) -> Row {
    match scenario.await {
        Ok(row) => row,
        Err(error) => {
            tracing_free_note(&format!("{name}: {error:#}"));
            Row {
                scenario: name.to_owned(),
                failures: vec![format!("harness error: {error:#}")],
                ..Row::default()
            }
        }
    }
}

/// Like [`guarded`] for a scenario of several rows.
pub async fn guarded_rows(
    name: &str,
    scenario: impl std::future::Future<Output = Result<Vec<Row>>>,
) -> Vec<Row> {
    match scenario.await {
        Ok(rows) => rows,
        Err(error) => {
            tracing_free_note(&format!("{name}: {error:#}"));
            vec![Row {
                scenario: name.to_owned(),
                failures: vec![format!("harness error: {error:#}")],
                ..Row::default()
            }]
        }
    }
}

/// Scenario 8: A poison message: pay-svc's database refuses one buyer's payment with a
/// transient error (a trigger raising SQLSTATE 40001, which pay-svc retries), so its
/// `payment.requested` is redelivered up to the delivery limit and dead-lettered; the
/// other sagas settle unaffected. Then the cause is fixed (the trigger dropped) and the
/// letter redriven through booking-svc's `DeadLetterAdminService` (twice: the second
/// must publish nothing): the booking is confirmed with one debit.
pub async fn poison(env: &Env, counts: &Counts) -> Result<Row> {
    let name = "8 poison message";
    let n = counts.poison_sagas;
    let mut stage = Stage::start(env, "8-poison", &Knobs::default(), n + 1, buyers_for(n)).await?;
    let specs = stage.specs(n, mixed);
    let victim = stage.client.account(Role::Buyer).await?;
    let victim_id = Uuid::parse_str(&victim.id).context("the buyer's account id")?;
    stage.buyers.push(victim);
    let trigger = format!(
        "CREATE FUNCTION chaos_poison() RETURNS trigger LANGUAGE plpgsql AS $$
         BEGIN
           IF NEW.account_id = '{victim_id}' THEN
             RAISE EXCEPTION 'chaos: poison payment' USING ERRCODE = '40001';
           END IF;
           RETURN NEW;
         END $$;
         CREATE TRIGGER chaos_poison BEFORE INSERT ON payments
           FOR EACH ROW EXECUTE FUNCTION chaos_poison();"
    );
    db::execute(&stage.sys.pay_pool, &trigger)
        .await
        .context("install the poison trigger")?;
    let poison_spec = SagaSpec {
        buyer: stage.buyers.len() - 1,
        event_id: stage.event_id.clone(),
        seats: vec![stage.seats[n % stage.seats.len()].clone()],
        card_token: None,
        cancel_after_confirm: false,
    };
    let (mut outcomes, poisoned) = tokio::join!(
        stage
            .client
            .drive(&stage.buyers, specs, counts.concurrency, Progress::new(n)),
        stage
            .client
            .saga(&stage.buyers[stage.buyers.len() - 1], &poison_spec)
    );
    let since = Instant::now();
    let poison_booking = poisoned
        .booking_id
        .as_deref()
        .and_then(|id| Uuid::parse_str(id).ok())
        .with_context(|| format!("the poison checkout failed: {:?}", poisoned.error))?;
    outcomes.push(poisoned);
    // Dead-lettered: in `<queue>.dlq`, or already taken from it into pay-svc's
    // `dead_letters` table by its keeper.
    let dead_lettered = loop {
        let (_, dlq) = crate::bus::depths(&stage.sys.bus_prefix)?;
        let kept: i64 = db::one(
            &stage.sys.pay_pool,
            "SELECT count(*) FROM dead_letters WHERE booking_id = $1",
            vec![poison_booking.to_string().into()],
        )
        .await
        .unwrap_or(0);
        if dlq > 0 || kept > 0 {
            break Some(since.elapsed());
        }
        if since.elapsed() > Duration::from_secs(90) {
            break None;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    let accepted: HashSet<Uuid> = outcomes
        .iter()
        .filter_map(|o| o.booking_id.as_deref())
        .filter_map(|id| Uuid::parse_str(id).ok())
        .collect();
    let except = HashSet::from([poison_booking]);
    let (mut row, snapshot) = crate::verify::settle_except(
        &stage.sys,
        name,
        &accepted,
        &except,
        since,
        counts.settle_bound,
    )
    .await?;
    annotate(&mut row, &outcomes);
    let Some(after) = dead_lettered else {
        row.failures
            .push("the poison message was not dead-lettered within 90 s".to_owned());
        stage.sys.teardown().await;
        return Ok(row);
    };
    row.notes.push(format!(
        "poison dead-lettered after {:.1}s, the others settled",
        after.as_secs_f64()
    ));
    if snapshot
        .bookings
        .get(&poison_booking)
        .is_none_or(|(status, _)| status != "PENDING_PAYMENT")
        || snapshot.payments.contains_key(&poison_booking)
    {
        row.failures
            .push("the poison booking moved before its redrive".to_owned());
    }
    // The fix, then the redrive.
    db::execute(
        &stage.sys.pay_pool,
        "DROP TRIGGER chaos_poison ON payments; DROP FUNCTION chaos_poison();",
    )
    .await
    .context("drop the poison trigger")?;
    match redrive(&stage, &poison_booking).await {
        Ok(()) => {
            let since = Instant::now();
            let (after, snapshot) =
                settle(&stage.sys, name, &accepted, since, counts.settle_bound).await?;
            let confirmed = snapshot
                .bookings
                .get(&poison_booking)
                .is_some_and(|(status, _)| status == "CONFIRMED");
            let debits = snapshot.wallet.get(&poison_booking).map_or(0, |entries| {
                entries.iter().filter(|(kind, _)| kind == "PAYMENT").count()
            });
            if !confirmed || debits != 1 {
                row.failures.push(format!(
                    "after the redrive: confirmed {confirmed}, {debits} debits"
                ));
            }
            row.started = after.started;
            row.terminal = after.terminal;
            row.lost = after.lost;
            row.duplicated = after.duplicated;
            row.double_charges = after.double_charges;
            row.ledger_difference = after.ledger_difference;
            row.notes
                .push("redriven twice: confirmed once, one debit".to_owned());
        }
        Err(error) => {
            row.notes.push(format!("redrive pending: {error:#}"));
        }
    }
    stage.sys.teardown().await;
    Ok(row)
}

/// Redrives the dead letter of `booking` through booking-svc's
/// `marquee.admin.v1.DeadLetterAdminService`, as an admin, twice; the second call must
/// find it already redriven.
async fn redrive(stage: &Stage, booking: &Uuid) -> Result<()> {
    use marquee_proto::admin::dead_letter_admin_service_client::DeadLetterAdminServiceClient;
    use marquee_proto::admin::{ListDeadLettersRequest, RedriveDeadLettersRequest};
    // An admin: an account made one with `booking-svc grant-admin`, logged in again.
    let admin = stage.client.account(Role::Buyer).await?;
    stage.sys.grant_admin(&admin.email)?;
    let token = stage.client.relog(&admin).await?;
    let mut client = DeadLetterAdminServiceClient::new(stage.sys.channel.clone());
    let started = Instant::now();
    let letter = loop {
        let request = crate::load::authed(
            ListDeadLettersRequest {
                page_size: 500,
                ..ListDeadLettersRequest::default()
            },
            &token,
        )?;
        let letters = client
            .list_dead_letters(request)
            .await
            .map_err(|status| anyhow::anyhow!("ListDeadLetters: {status}"))?
            .into_inner();
        if let Some(letter) = letters
            .dead_letters
            .into_iter()
            .find(|l| l.booking_id == booking.to_string())
        {
            break letter;
        }
        if started.elapsed() > Duration::from_secs(30) {
            bail!("the dead letter of booking {booking} is not listed");
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    for round in 0..2 {
        let request = crate::load::authed(
            RedriveDeadLettersRequest {
                ids: vec![letter.id.clone()],
            },
            &token,
        )?;
        let answer = client
            .redrive_dead_letters(request)
            .await
            .map_err(|status| anyhow::anyhow!("RedriveDeadLetters: {status}"))?
            .into_inner();
        let expected = if round == 0 {
            &answer.redriven
        } else {
            &answer.already_redriven
        };
        if !expected.contains(&letter.id) {
            bail!("redrive {round}: unexpected answer {answer:?}");
        }
    }
    Ok(())
}

//! Search benchmark, all on this machine: a generated catalog (deterministic, seeded)
//! indexed by search-svc, the same rows in a throwaway PostgreSQL database with pg_trgm
//! GIN indexes, and the same mixed query load three ways: direct to search-svc's gRPC,
//! through the gateway's REST route, and as `ILIKE '%q%'` queries in PostgreSQL.
//!
//! `cargo bench -p marquee-e2e --bench search`, tuned by environment variables:
//! `BENCH_EVENTS` (100000), `BENCH_CONCURRENCY` (8 requests in flight),
//! `BENCH_SECONDS` (30, the bound of each measured phase), `BENCH_MAX_QUERIES`
//! (200000, the other bound of each phase) and `BENCH_SEED` (42).

use marquee_testkit::env_num;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use marquee_e2e::bench_report::{Report, Target};
use marquee_infra::bus::{Bus, BusConfig};
use marquee_proto::search as pb;
use marquee_proto::search::search_service_client::SearchServiceClient;
use search_svc::domain::EventDoc;
use tokio_util::sync::CancellationToken;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// One measured phase.
struct Phase {
    name: &'static str,
    count: usize,
    errors: usize,
    empty: usize,
    elapsed: Duration,
    latency: Histogram<u64>,
}

impl Phase {
    fn qps(&self) -> f64 {
        self.count as f64 / self.elapsed.as_secs_f64()
    }

    fn print(&self) {
        println!(
            "{:<22} {:>8} queries {:>10.0} q/s   p50 {:>8.3} ms   p99 {:>8.3} ms   max {:>8.3} ms   errors {}   no hits {}",
            self.name,
            self.count,
            self.qps(),
            self.latency.value_at_quantile(0.5) as f64 / 1000.0,
            self.latency.value_at_quantile(0.99) as f64 / 1000.0,
            self.latency.max() as f64 / 1000.0,
            self.errors,
            self.empty,
        );
    }
}

/// Runs `call` over `queries` with `concurrency` workers until `max` queries or
/// `seconds` have passed. `call` answers whether the query found something.
async fn run<F, Fut>(
    name: &'static str,
    queries: Arc<Vec<String>>,
    concurrency: usize,
    max: usize,
    seconds: u64,
    call: F,
) -> Phase
where
    F: Fn(String) -> Fut + Clone + Send + Sync + 'static,
    Fut: std::future::Future<Output = Result<bool, String>> + Send,
{
    let next = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let deadline = started + Duration::from_secs(seconds);
    let mut workers = Vec::new();
    for _ in 0..concurrency {
        let (next, queries, call) = (next.clone(), queries.clone(), call.clone());
        workers.push(tokio::spawn(async move {
            let mut h = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).expect("histogram");
            let (mut errors, mut empty) = (0usize, 0usize);
            let mut first_error = None;
            loop {
                let n = next.fetch_add(1, Ordering::Relaxed);
                if n >= max || Instant::now() >= deadline {
                    break;
                }
                let q = queries[n % queries.len()].clone();
                let t = Instant::now();
                match call(q).await {
                    Ok(found) => empty += usize::from(!found),
                    Err(e) => {
                        errors += 1;
                        first_error.get_or_insert(e);
                    }
                }
                let micros = u64::try_from(t.elapsed().as_micros()).unwrap_or(u64::MAX);
                h.saturating_record(micros.max(1));
            }
            (h, errors, empty, first_error)
        }));
    }
    let mut latency = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).expect("histogram");
    let (mut errors, mut empty) = (0, 0);
    for w in workers {
        let (h, e, m, first) = w.await.expect("worker");
        latency.add(h).expect("merge");
        errors += e;
        empty += m;
        if let Some(first) = first {
            eprintln!("{name}: first error: {first}");
        }
    }
    Phase {
        name,
        count: usize::try_from(latency.len()).unwrap_or(usize::MAX),
        errors,
        empty,
        elapsed: started.elapsed(),
        latency,
    }
}

async fn load_postgres(url: &str, events: &[EventDoc]) -> sqlx::PgPool {
    let pool = marquee_infra::db::connect(url, 16)
        .await
        .expect("postgres")
        .get_postgres_connection_pool()
        .clone();
    for statement in [
        "CREATE EXTENSION IF NOT EXISTS pg_trgm",
        "CREATE TABLE events (id text PRIMARY KEY, title text NOT NULL, category text NOT NULL,
            description text NOT NULL, venue text NOT NULL, starts_at timestamptz NOT NULL)",
    ] {
        sqlx::query(statement)
            .execute(&pool)
            .await
            .expect(statement);
    }
    for chunk in events.chunks(2000) {
        let col = |f: fn(&EventDoc) -> String| chunk.iter().map(f).collect::<Vec<String>>();
        let starts: Vec<chrono::DateTime<chrono::Utc>> =
            chunk.iter().map(|e| e.starts_at).collect();
        sqlx::query(
            "INSERT INTO events SELECT * FROM UNNEST($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::timestamptz[])",
        )
        .bind(col(|e| e.id.clone()))
        .bind(col(|e| e.title.clone()))
        .bind(col(|e| e.category.clone()))
        .bind(col(|e| e.description.clone()))
        .bind(col(|e| e.venue.clone()))
        .bind(starts)
        .execute(&pool)
        .await
        .expect("insert");
    }
    for statement in [
        "CREATE INDEX events_title_trgm ON events USING gin (title gin_trgm_ops)",
        "CREATE INDEX events_description_trgm ON events USING gin (description gin_trgm_ops)",
        "CREATE INDEX events_venue_trgm ON events USING gin (venue gin_trgm_ops)",
        "ANALYZE events",
    ] {
        sqlx::query(statement)
            .execute(&pool)
            .await
            .expect(statement);
    }
    pool
}

fn like_pattern(q: &str) -> String {
    let escaped = q
        .replace('\\', "\\\\")
        .replace('%', "\\%")
        .replace('_', "\\_");
    format!("%{escaped}%")
}

/// `BENCH_PROFILE=1`, a diagnostic: each distinct query once, in process, slowest first.
fn profile(index: &search_svc::index::SearchIndex, queries: &[String]) {
    let mut seen = std::collections::HashSet::new();
    let mut timings = Vec::new();
    for q in queries {
        if !seen.insert(q.clone()) {
            continue;
        }
        let Ok(query) = search_svc::domain::Query::parse("q", q) else {
            continue;
        };
        let request = search_svc::domain::SearchRequest {
            query,
            category: None,
            from: None,
            to: None,
            bookable_at: None,
            page_size: 20,
            offset: 0,
        };
        let t = Instant::now();
        let total = index.search(&request).map_or(0, |p| p.total);
        timings.push((t.elapsed(), total, q.clone()));
    }
    timings.sort_by_key(|t| std::cmp::Reverse(t.0));
    let sum: Duration = timings.iter().map(|t| t.0).sum();
    println!(
        "profile: {} distinct queries, mean {:.3} ms",
        timings.len(),
        sum.as_secs_f64() * 1000.0 / timings.len().max(1) as f64
    );
    for (elapsed, total, q) in timings.iter().take(15) {
        println!(
            "  {:>8.3} ms  {total:>6} hits  {q}",
            elapsed.as_secs_f64() * 1000.0
        );
    }
}

#[tokio::main]
async fn main() {
    let events_n = env_num("BENCH_EVENTS", 100_000) as usize;
    let concurrency = env_num("BENCH_CONCURRENCY", 8) as usize;
    let seconds = env_num("BENCH_SECONDS", 30);
    let max = env_num("BENCH_MAX_QUERIES", 200_000) as usize;
    let seed = env_num("BENCH_SEED", 42);
    let pg_base = marquee_testkit::pg_base();
    let redis_url = marquee_testkit::redis_url();
    let amqp_url = marquee_testkit::amqp_url();
    let id = uuid::Uuid::new_v4().simple().to_string();
    let prefix = format!("bench.{id}.");
    let redis_prefix = format!("bench:{id}:");
    let machine = marquee_testkit::Machine::read();
    println!(
        "search benchmark on {} vCPU, {}",
        machine.cpus, machine.model
    );
    println!(
        "catalog {events_n} events (seed {seed}), {concurrency} in flight, each phase ≤ {seconds} s and ≤ {max} queries"
    );

    let t = Instant::now();
    let catalog = search_svc::generator::catalog(seed, events_n);
    let queries = Arc::new(search_svc::generator::queries(seed, 2000));
    println!("generated in {:.1} s", t.elapsed().as_secs_f64());

    let stop = CancellationToken::new();
    let search = search_svc::Application::build(search_svc::SearchConfig {
        grpc_addr: "127.0.0.1:0".parse().expect("addr"),
        metrics_addr: None,
        booking_url: "http://127.0.0.1:9".into(),
        redis: marquee_infra::redis_conn::RedisTarget::Single(redis_url.clone()),
        redis_prefix: redis_prefix.clone(),
        bus: BusConfig::new(amqp_url.clone(), prefix.clone()).named(format!("{prefix}search-svc")),
        jwt: "bench-secret".into(),
        synonyms_path: search_svc::config::DEFAULT_SYNONYMS.into(),
        rebuild_on_start: false,
        rebuild_interval: None,
    })
    .await
    .expect("search-svc starts");
    let search_url = format!("http://127.0.0.1:{}", search.port());
    let index = search.index();
    let search_index = index.clone();
    let server = tokio::spawn(search.run_with_shutdown(stop.clone().cancelled_owned()));
    let t = Instant::now();
    let docs = catalog.clone();
    let (version, n) = tokio::task::spawn_blocking(move || index.rebuild_from(docs))
        .await
        .expect("join")
        .expect("index built");
    println!(
        "index {version}: {n} events in {:.1} s",
        t.elapsed().as_secs_f64()
    );

    if std::env::var("BENCH_PROFILE").is_ok_and(|v| v == "1") {
        profile(&search_index, &queries);
    }

    let mut gateway_config = marquee_gateway::GatewayConfig::local(
        "http://127.0.0.1:9",
        "http://127.0.0.1:9",
        "bench-secret",
    );
    gateway_config.search_url = search_url.clone();
    let gateway = marquee_gateway::Application::build(gateway_config)
        .await
        .expect("gateway starts");
    let gateway_base = format!("http://127.0.0.1:{}", gateway.port());
    let gateway_task = tokio::spawn(gateway.run_with_shutdown(stop.clone().cancelled_owned()));

    let pg_url = format!("{pg_base}/bench_search_{id}");
    let t = Instant::now();
    let pool = load_postgres(&pg_url, &catalog).await;
    println!(
        "postgres loaded with pg_trgm GIN indexes in {:.1} s",
        t.elapsed().as_secs_f64()
    );
    drop(catalog);

    let channel = tonic::transport::Endpoint::from_shared(search_url)
        .expect("url")
        .tcp_nodelay(true)
        .connect()
        .await
        .expect("grpc connects");
    let direct = SearchServiceClient::new(channel);
    let grpc = run(
        "direct gRPC",
        queries.clone(),
        concurrency,
        max,
        seconds,
        move |q| {
            let mut client = direct.clone();
            async move {
                let reply = client
                    .search_events(pb::SearchEventsRequest {
                        q,
                        page_size: 20,
                        ..Default::default()
                    })
                    .await
                    .map_err(|s| s.to_string())?;
                Ok(!reply.into_inner().hits.is_empty())
            }
        },
    )
    .await;

    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(64)
        .build()
        .expect("http client");
    let rest = run(
        "gateway REST",
        queries.clone(),
        concurrency,
        max,
        seconds,
        move |q| {
            let http = http.clone();
            let url = format!(
                "{gateway_base}/v1/search/events?q={}&pageSize=20",
                marquee_testkit::encode_query(&q)
            );
            async move {
                let response = http.get(&url).send().await.map_err(|e| e.to_string())?;
                if response.status() != 200 {
                    return Err(format!("status {}", response.status()));
                }
                let body = response.text().await.map_err(|e| e.to_string())?;
                Ok(body.contains("\"eventId\""))
            }
        },
    )
    .await;

    let pg_pool = pool.clone();
    let pg = run(
        "postgres ILIKE+pg_trgm",
        queries.clone(),
        concurrency,
        max,
        seconds,
        move |q| {
            let pool = pg_pool.clone();
            async move {
                let rows: Vec<(String, String)> = sqlx::query_as(
                    "SELECT id, title FROM events
                 WHERE title ILIKE $1 OR description ILIKE $1 OR venue ILIKE $1
                 ORDER BY (title ILIKE $1) DESC, starts_at LIMIT 20",
                )
                .bind(like_pattern(&q))
                .fetch_all(&pool)
                .await
                .map_err(|e| e.to_string())?;
                Ok(!rows.is_empty())
            }
        },
    )
    .await;

    println!();
    for phase in [&grpc, &rest, &pg] {
        phase.print();
    }
    let direct_vs_pg = grpc.qps() / pg.qps();
    println!(
        "throughput vs postgres: direct {direct_vs_pg:.1}x, gateway {:.1}x (aim: ≥ 50x; p99 direct < 10 ms)",
        rest.qps() / pg.qps()
    );
    let p99 = |phase: &Phase| phase.latency.value_at_quantile(0.99) as f64 / 1000.0;
    Report::new(
        "search",
        format!(
            "{events_n} events, {concurrency} in flight, ≤ {seconds} s or {max} queries a phase"
        ),
    )
    .below_target_size(
        events_n < 100_000 || concurrency != 8,
        "100,000 events at 8 in flight",
    )
    .figure("direct gRPC p99", p99(&grpc), "ms", Target::Below(10.0))
    .figure(
        "direct ÷ PostgreSQL pg_trgm (queries/s)",
        direct_vs_pg,
        "×",
        Target::AtLeast(50.0),
    )
    .figure(
        "failed queries",
        (grpc.errors + rest.errors + pg.errors) as f64,
        "",
        Target::Exactly(0.0),
    )
    .figure("direct gRPC queries", grpc.qps(), "/s", Target::None)
    .figure("gateway REST queries", rest.qps(), "/s", Target::None)
    .figure("gateway REST p99", p99(&rest), "ms", Target::None)
    .figure("PostgreSQL pg_trgm queries", pg.qps(), "/s", Target::None)
    .figure("PostgreSQL pg_trgm p99", p99(&pg), "ms", Target::None)
    .write();

    stop.cancel();
    let _ = tokio::time::timeout(Duration::from_secs(10), server).await;
    let _ = tokio::time::timeout(Duration::from_secs(10), gateway_task).await;
    pool.close().await;
    let _ = marquee_infra::db::drop_database(&pg_url).await;
    if let Ok(bus) = Bus::connect(
        BusConfig::new(amqp_url, prefix.clone()).named(format!("{prefix}bench")),
        Duration::from_secs(5),
    )
    .await
    {
        let _ = bus.delete_topology(&[]).await;
        bus.shutdown();
    }
    if grpc.errors + rest.errors + pg.errors > 0 {
        panic!("some queries failed");
    }
}

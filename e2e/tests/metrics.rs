//! The operational metrics dashboards and alerts read: after a purchase every service
//! of the system exports them, with sensible values. All services share the process's
//! one Prometheus recorder, so one render holds them all.

use std::time::{Duration, Instant};

use marquee_e2e::{Options, System};

/// The value of the first sample of `name` whose labels include every `labels` pair.
fn sample(text: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .find_map(|line| {
            let (series, value) = line.rsplit_once(' ')?;
            let (metric, rest) = match series.split_once('{') {
                Some((metric, rest)) => (metric, rest),
                None => (series, ""),
            };
            if metric != name {
                return None;
            }
            labels
                .iter()
                .all(|(k, v)| rest.contains(&format!("{k}=\"{v}\"")))
                .then(|| value.parse().ok())
                .flatten()
        })
}

fn render() -> String {
    marquee_infra::metrics::prometheus().render()
}

/// Renders until `name{labels}` satisfies `ok` (the gauges are refreshed on timers),
/// failing after `within` with what was last seen.
async fn eventually(
    name: &str,
    labels: &[(&str, &str)],
    within: Duration,
    ok: impl Fn(f64) -> bool,
) -> f64 {
    let started = Instant::now();
    loop {
        let seen = sample(&render(), name, labels);
        if let Some(value) = seen.filter(|v| ok(*v)) {
            return value;
        }
        assert!(
            started.elapsed() < within,
            "{name}{labels:?} never as expected within {within:?}; last seen {seen:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test]
async fn a_purchase_shows_up_in_the_operational_metrics() {
    // The recorder first: gauges set once at start (build info) are kept.
    let _ = marquee_infra::metrics::prometheus();
    let sys = System::start_with(Options::default()).await;
    let (_, seller) = sys.account("SELLER").await;
    let event = sys.event(&seller, &[("R", 10_000, 1, 4)], 0).await;
    let event_id = event["eventId"].as_str().unwrap().to_owned();
    let (_, buyer) = sys.account("BUYER").await;
    let seats = sys.seat_ids(&event_id).await;
    let hold = sys.hold(&buyer, &event_id, &seats[..2]).await;
    assert_eq!(hold.status, 201, "{:?}", hold.body);
    let booking = sys.checkout(&buyer, &hold.str("/holdId"), "key-1").await;
    assert_eq!(booking.status, 202, "{:?}", booking.body);
    sys.await_booking(&buyer, &booking.str("/bookingId"), "CONFIRMED")
        .await;

    // The outbox relays measure their backlog every 5 s: both drain to 0.
    let wait = Duration::from_secs(15);
    for service in ["booking-svc", "pay-svc"] {
        eventually("outbox_backlog", &[("service", service)], wait, |v| {
            v == 0.0
        })
        .await;
        eventually(
            "outbox_oldest_unsent_age_seconds",
            &[("service", service)],
            wait,
            |v| v == 0.0,
        )
        .await;
    }

    // Every connection of the system is up.
    let prefix = sys.bus_prefix.clone();
    for service in ["booking-svc", "pay-svc", "realtime-svc-0"] {
        let connection = format!("{prefix}{service}");
        eventually("bus_connected", &[("connection", &connection)], wait, |v| {
            v == 1.0
        })
        .await;
    }

    // The dead-letter queues the consumers declared are empty.
    for queue in ["booking.payment-results", "pay.payment-requests"] {
        let dlq = format!("{prefix}{queue}.dlq");
        eventually("bus_dead_letter_messages", &[("queue", &dlq)], wait, |v| {
            v == 0.0
        })
        .await;
    }

    // The pools, from the health checks (each second).
    for pool in ["booking", "pay"] {
        eventually("db_pool_max_connections", &[("pool", pool)], wait, |v| {
            v > 0.0
        })
        .await;
        eventually(
            "db_pool_connections",
            &[("pool", pool), ("state", "idle")],
            wait,
            |v| v >= 0.0,
        )
        .await;
        eventually(
            "db_pool_connections",
            &[("pool", pool), ("state", "in_use")],
            wait,
            |v| v >= 0.0,
        )
        .await;
    }
    let max = sample(&render(), "db_pool_max_connections", &[("pool", "booking")]);
    assert_eq!(max, Some(f64::from(Options::default().booking_connections)));

    // Bookings by status: counted by the sweeper (every 6 s at the tests' 100 ms sweep).
    eventually("bookings", &[("status", "CONFIRMED")], wait, |v| v >= 1.0).await;
    eventually("bookings", &[("status", "PENDING_PAYMENT")], wait, |v| {
        v >= 0.0
    })
    .await;
    eventually(
        "bookings_oldest_pending_payment_age_seconds",
        &[],
        wait,
        |v| v >= 0.0,
    )
    .await;

    // The hold went through the Lua script, timed.
    let holds = sample(
        &render(),
        "redis_script_duration_seconds_count",
        &[("script", "hold")],
    );
    assert!(
        holds.is_some_and(|n| n >= 1.0),
        "hold script count {holds:?}"
    );
    let sold = sample(
        &render(),
        "redis_script_duration_seconds_count",
        &[("script", "mark_sold")],
    );
    assert!(sold.is_some_and(|n| n >= 1.0), "mark_sold count {sold:?}");

    // Which build runs, for the shell's services and the gateway.
    let version = env!("CARGO_PKG_VERSION");
    for service in ["booking-svc", "pay-svc", "realtime-svc", "gateway"] {
        let info = sample(
            &render(),
            "marquee_build_info",
            &[("service", service), ("version", version)],
        );
        assert_eq!(info, Some(1.0), "marquee_build_info for {service}");
    }

    // No drift: every metric an alert uses is one the services export.
    let text = render();
    for name in alert_metrics() {
        assert!(
            text.lines().any(|line| {
                line.strip_prefix(name.as_str())
                    .is_some_and(|rest| rest.starts_with(['{', ' ']))
            }),
            "k8s/observability/alerts.yaml uses {name}, which no service exports"
        );
    }

    sys.stop().await;
}

/// The metric names the alert rules' expressions use: every identifier outside label
/// matchers, grouping clauses and strings that is not a PromQL function or keyword.
fn alert_metrics() -> Vec<String> {
    const PROMQL: &[&str] = &[
        "sum",
        "min",
        "max",
        "avg",
        "count",
        "rate",
        "irate",
        "increase",
        "by",
        "without",
        "on",
        "ignoring",
        "group_left",
        "group_right",
        "and",
        "or",
        "unless",
        "bool",
        "histogram_quantile",
        "abs",
        "clamp_min",
        "clamp_max",
        "time",
        "offset",
    ];
    let rules = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../k8s/observability/alerts.yaml"
    ))
    .expect("k8s/observability/alerts.yaml");
    // Label matchers, `by (...)`/`without (...)` lists, strings and range selectors.
    let matchers =
        regex::Regex::new(r#"\{[^}]*\}|\b(?:by|without)\s*\([^)]*\)|"[^"]*"|\[[^\]]*\]"#)
            .expect("regex");
    let identifier = regex::Regex::new(r"[a-zA-Z_:][a-zA-Z0-9_:]*").expect("regex");
    let mut names = Vec::new();
    let mut lines = rules.lines().peekable();
    while let Some(line) = lines.next() {
        let Some(first) = line.trim_start().strip_prefix("expr:") else {
            continue;
        };
        // A folded expression (`expr: >`) continues on the more-indented lines below.
        let mut expr = first.trim().trim_start_matches('>').to_owned();
        let indent = line.len() - line.trim_start().len();
        while let Some(next) = lines.peek() {
            if next.trim().is_empty() || next.len() - next.trim_start().len() <= indent {
                break;
            }
            expr.push(' ');
            expr.push_str(next.trim());
            lines.next();
        }
        let bare = matchers.replace_all(&expr, " ");
        for name in identifier.find_iter(&bare).map(|m| m.as_str()) {
            if !PROMQL.contains(&name) && !names.iter().any(|n| n == name) {
                names.push(name.to_owned());
            }
        }
    }
    assert!(
        names.len() >= 7,
        "too few metrics found in the alerts: {names:?}"
    );
    names
}

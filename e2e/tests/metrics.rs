//! The operational metrics dashboards and alerts read: after a purchase every service
//! of the system exports them, with sensible values. All services share the process's
//! one Prometheus recorder, so one render holds them all.
//!
//! And no drift: every metric that an alert (k8s/observability/alerts.yaml) or a
//! Grafana dashboard panel (k8s/observability/dashboards/*.json) names is one the
//! services export, checked against that render (plus, for the metrics only a rare
//! path records, such as a slow SSE client dropped, the names the services' source
//! declares with `metrics::counter!`/`gauge!`/`histogram!`).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use marquee_e2e::metric_sample as sample;
use marquee_e2e::{Options, System};
use serde_json::{Value, json};

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

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_purchase_shows_up_in_the_operational_metrics() {
    // The recorder first: gauges set once at start (build info) are kept.
    let _ = marquee_infra::metrics::prometheus();
    let sys = System::start_with(Options::default()).await;
    let (_, seller) = sys.account("SELLER").await;
    let event = sys.event(&seller, &[("R", 10_000, 1, 4)], 0).await;
    let event_id = event["eventId"].as_str().unwrap().to_owned();
    let (_, buyer) = sys.account("BUYER").await;
    let seats = sys.seat_ids(&event_id).await;
    // A live seat map: the gateway's SSE client and realtime-svc's feed and watcher.
    let mut watcher = sys
        .sse(&format!("/v1/events/{event_id}/seats:watch"), None, None)
        .await
        .unwrap_or_else(|r| panic!("watch refused: {} {:?}", r.status, r.body));
    watcher.next().await;
    let hold = sys.hold(&buyer, &event_id, &seats[..2]).await;
    assert_eq!(hold.status, 201, "{:?}", hold.body);
    let booking = sys.checkout(&buyer, &hold.str("/holdId"), "key-1").await;
    assert_eq!(booking.status, 202, "{:?}", booking.body);
    let booking_id = booking.str("/bookingId");
    sys.await_booking(&buyer, &booking_id, "CONFIRMED").await;

    // The checkout's transaction, phase by phase.
    for phase in ["begin", "statements", "commit"] {
        eventually(
            "checkout_transaction_seconds_count",
            &[("phase", phase)],
            Duration::from_secs(1),
            |v| v >= 1.0,
        )
        .await;
    }

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

    // Each service's dead-letter keeper counts the letters it stored: none.
    for service in ["booking-svc", "pay-svc"] {
        for state in ["PENDING", "REDRIVEN"] {
            eventually(
                "dead_letters_stored",
                &[("service", service), ("state", state)],
                wait,
                |v| v == 0.0,
            )
            .await;
        }
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
    // The sagas still running, by the status they wait in (none left by now).
    for status in ["PENDING_PAYMENT", "CANCELLING"] {
        eventually("saga_bookings", &[("status", status)], wait, |v| v >= 0.0).await;
        eventually(
            "saga_oldest_age_seconds",
            &[("status", status)],
            wait,
            |v| v >= 0.0,
        )
        .await;
    }

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

    eventually("sse_clients", &[], wait, |v| v >= 1.0).await;
    eventually("realtime_seat_watchers", &[], wait, |v| v >= 1.0).await;
    // The watched feed applied the hold's and the sale's seat changes, timed from their
    // commit in Redis.
    eventually("realtime_seat_changes_applied_total", &[], wait, |v| {
        v >= 2.0
    })
    .await;
    eventually("realtime_seat_apply_lag_seconds_count", &[], wait, |v| {
        v >= 2.0
    })
    .await;
    drop(watcher);

    // Cancelled after payment: the refund leg of the saga.
    let cancel = sys
        .post(
            &format!("/v1/bookings/{booking_id}:cancel"),
            Some(&buyer),
            json!({}),
        )
        .await;
    assert_eq!(cancel.status, 202, "{:?}", cancel.body);
    sys.await_booking(&buyer, &booking_id, "CANCELLED").await;
    eventually("refunds_total", &[], wait, |v| v >= 1.0).await;
    sys.stop().await;

    // search-svc (with a booking-svc and a gateway of its own): a new event reaches
    // the index through the bus and is found.
    let search = marquee_e2e::search::System::start().await;
    let seller = search.seller().await;
    let id = search
        .create_event(&seller, "Metrics Zebrafinch", "CONCERT", "", "Hall")
        .await;
    let started = Instant::now();
    while !search.search_ids("zebrafinch").await.contains(&id) {
        assert!(started.elapsed() < wait, "event never searchable");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    eventually("search_catalog_updates_total", &[], wait, |v| v >= 1.0).await;
    // The change was timed to searchable, and the index's last update is recent.
    eventually("search_index_update_lag_seconds_count", &[], wait, |v| {
        v >= 1.0
    })
    .await;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("after 1970")
        .as_secs_f64();
    eventually(
        "search_index_last_update_timestamp_seconds",
        &[],
        wait,
        |t| (now - 60.0..=now + 60.0).contains(&t),
    )
    .await;
    search.stop().await;

    // No drift: every metric an alert or a dashboard uses is one the services export.
    let exported = Exported::from_render(&render()).with_declared(declared_metrics());
    let only_declared = exported.only_declared();
    if !only_declared.is_empty() {
        eprintln!("not recorded in this run, declared in the source: {only_declared:?}");
    }
    let (alerts, dashboards) = alerts_and_dashboards();
    let problems = drift(&exported, &alerts, &dashboards);
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

/// Every reason an alert's or a dashboard's expression names a metric `exported` does
/// not have, naming the alert, or the dashboard and the panel or variable.
fn drift(
    exported: &Exported,
    alerts: &[(String, String)],
    dashboards: &[Dashboard],
) -> Vec<String> {
    let mut problems = Vec::new();
    let mut check = |place: &str, expr: &str| match metric_names(expr) {
        Ok(names) => problems.extend(
            names
                .iter()
                .filter_map(|name| exported.check(name).err())
                .map(|why| format!("{place}: {why}")),
        ),
        Err(error) => problems.push(format!("{place}: {error} in `{expr}`")),
    };
    for (alert, expr) in alerts {
        check(
            &format!("k8s/observability/alerts.yaml, alert {alert}"),
            expr,
        );
    }
    for (file, exprs) in dashboards {
        for (place, expr) in exprs {
            check(&format!("dashboard {file}, {place}"), expr);
        }
    }
    problems
}

/// Every alert and every dashboard of k8s/observability, with a floor on how many, so
/// that a parser gone blind fails instead of checking nothing.
fn alerts_and_dashboards() -> (Vec<(String, String)>, Vec<Dashboard>) {
    let alerts = alert_exprs();
    assert!(alerts.len() >= 7, "too few alerts found: {alerts:?}");
    let dashboards = dashboard_exprs();
    assert!(dashboards.len() >= 6, "too few dashboards found");
    for (file, exprs) in &dashboards {
        assert!(exprs.len() >= 5, "{file}: too few expressions: {exprs:?}");
    }
    (alerts, dashboards)
}

fn observability() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../k8s/observability")
}

/// (alert name, expression) of every rule in alerts.yaml. The file is YAML in one
/// shape (k8s/observability/alerts.yaml): `- alert: Name` then `expr:`, on one line or
/// folded (`expr: >`) over the more-indented lines below.
fn alert_exprs() -> Vec<(String, String)> {
    let rules = std::fs::read_to_string(observability().join("alerts.yaml")).expect("alerts.yaml");
    let mut found = Vec::new();
    let mut alert = String::new();
    let mut lines = rules.lines().peekable();
    while let Some(line) = lines.next() {
        let trimmed = line.trim_start().trim_start_matches("- ");
        if let Some(name) = trimmed.strip_prefix("alert:") {
            alert = name.trim().to_owned();
            continue;
        }
        let Some(first) = trimmed.strip_prefix("expr:") else {
            continue;
        };
        // A block scalar's indicator (`>`, `|-`, ...) is not part of the expression.
        let first = first.trim();
        let block = first.len() <= 2 && first.starts_with(['>', '|']);
        let mut expr = if block {
            String::new()
        } else {
            first.to_owned()
        };
        let indent = line.len() - line.trim_start().len();
        while let Some(next) = lines.peek() {
            if next.trim().is_empty() || next.len() - next.trim_start().len() <= indent {
                break;
            }
            expr.push(' ');
            expr.push_str(next.trim());
            lines.next();
        }
        found.push((alert.clone(), expr));
    }
    found
}

/// A dashboard's file name and (where, expression) of every PromQL expression in it.
type Dashboard = (String, Vec<(String, String)>);

/// Every dashboard under k8s/observability/dashboards.
fn dashboard_exprs() -> Vec<Dashboard> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(observability().join("dashboards"))
        .expect("k8s/observability/dashboards")
        .map(|entry| entry.expect("dir entry").path())
        .filter(|path| path.extension().is_some_and(|e| e == "json"))
        .collect();
    files.sort();
    files
        .iter()
        .map(|path| {
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            let text = std::fs::read_to_string(path).expect("dashboard");
            let board: Value =
                serde_json::from_str(&text).unwrap_or_else(|e| panic!("{name}: {e}"));
            let exprs = board_exprs(&board);
            (name, exprs)
        })
        .collect()
}

/// (where, expression) of every PromQL expression a dashboard runs: each panel's
/// targets[].expr (rows' nested panels too) and each query variable's query;
/// Grafana's `label_values(expr, label)` and `query_result(expr)` give their `expr`.
fn board_exprs(board: &Value) -> Vec<(String, String)> {
    let label_values =
        regex::Regex::new(r"(?s)^\s*label_values\((.*),\s*[a-zA-Z_]\w*\s*\)\s*$").expect("regex");
    let query_result = regex::Regex::new(r"(?s)^\s*query_result\((.*)\)\s*$").expect("regex");
    let grafana_only =
        regex::Regex::new(r"^\s*(label_values|label_names|metrics)\(").expect("regex");
    let mut exprs = Vec::new();
    let mut panels: Vec<&Value> = board["panels"].as_array().into_iter().flatten().collect();
    panels.reverse();
    while let Some(panel) = panels.pop() {
        panels.extend(panel["panels"].as_array().into_iter().flatten().rev());
        let title = panel["title"].as_str().unwrap_or("(untitled)");
        for target in panel["targets"].as_array().into_iter().flatten() {
            if let Some(expr) = target["expr"].as_str().filter(|e| !e.trim().is_empty()) {
                exprs.push((format!("panel \"{title}\""), expr.to_owned()));
            }
        }
    }
    for variable in board["templating"]["list"].as_array().into_iter().flatten() {
        if variable["type"] != "query" {
            continue;
        }
        let query = variable["query"]
            .as_str()
            .or_else(|| variable["query"]["query"].as_str())
            .unwrap_or_default();
        let expr = if let Some(c) = label_values
            .captures(query)
            .or_else(|| query_result.captures(query))
        {
            c[1].to_owned()
        } else if query.trim().is_empty() || grafana_only.is_match(query) {
            continue; // label_values(label), label_names(), metrics(re): no metric
        } else {
            query.to_owned()
        };
        let name = variable["name"].as_str().unwrap_or("?");
        exprs.push((format!("variable ${name}"), expr));
    }
    exprs
}

/// PromQL's aggregations and functions (Prometheus 3); an identifier called like a
/// function that is not one of these is reported rather than taken for one.
const FUNCTIONS: &str = "sum min max avg group stddev stdvar count count_values bottomk \
    topk quantile limitk limit_ratio abs absent absent_over_time acos acosh asin asinh atan atanh \
    avg_over_time ceil changes clamp clamp_max clamp_min cos cosh count_over_time \
    day_of_month day_of_week day_of_year days_in_month deg delta deriv \
    double_exponential_smoothing exp floor histogram_avg histogram_count \
    histogram_fraction histogram_quantile histogram_stddev histogram_stdvar \
    histogram_sum holt_winters hour idelta increase info irate label_join \
    label_replace last_over_time ln log10 log2 mad_over_time max_over_time \
    min_over_time minute month pi predict_linear present_over_time quantile_over_time \
    rad rate resets round scalar sgn sin sinh sort sort_by_label sort_by_label_desc \
    sort_desc sqrt stddev_over_time stdvar_over_time sum_over_time tan tanh time \
    timestamp vector year start end";

/// PromQL's keywords and the literals that look like identifiers.
const KEYWORDS: &str =
    "by without on ignoring group_left group_right and or unless bool offset atan2 inf nan";

fn is_word(words: &str, word: &str) -> bool {
    words.split_whitespace().any(|w| w == word)
}

/// The metric names an expression selects: every identifier that is not inside a
/// string, a label matcher `{...}`, a range or subquery `[...]` or a label list
/// (`by`, `without`, `on`, `ignoring`, `group_left`, `group_right`), not a number or
/// duration, not a keyword and not called as a function. Grafana's variables
/// (`$__rate_interval`, `${x}`, `$x`, `[[x]]`) are removed first. An unknown function
/// is an error.
fn metric_names(expr: &str) -> Result<Vec<String>, String> {
    let strings =
        regex::Regex::new(r#""(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*'|`[^`]*`"#).expect("regex");
    let variables = regex::Regex::new(r"\$\{[^}]*\}|\$\w+|\[\[\w+\]\]").expect("regex");
    let matchers = regex::Regex::new(r"\{[^}]*\}|\[[^\]]*\]").expect("regex");
    let groupings =
        regex::Regex::new(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)")
            .expect("regex");
    let tokens = regex::Regex::new(
        r"(?x)
        (?P<number>0[xX][0-9a-fA-F]+
          | (?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?(?:ms|[smhdwy])?(?:\d+(?:ms|[smhdwy]))*)
        | (?P<ident>[a-zA-Z_:][a-zA-Z0-9_:]*)(?P<call>\s*\()?",
    )
    .expect("regex");
    let bare = strings.replace_all(expr, " ");
    let bare = variables.replace_all(&bare, " ");
    let bare = matchers.replace_all(&bare, " ");
    let bare = groupings.replace_all(&bare, " ");
    let mut names = Vec::new();
    for token in tokens.captures_iter(&bare) {
        let Some(ident) = token.name("ident").map(|m| m.as_str()) else {
            continue;
        };
        let lower = ident.to_ascii_lowercase();
        if token.name("call").is_some() {
            if !is_word(FUNCTIONS, ident) && !is_word(KEYWORDS, &lower) {
                return Err(format!("unknown function {ident}()"));
            }
        } else if !is_word(KEYWORDS, &lower) && !names.iter().any(|n| n == ident) {
            names.push(ident.to_owned());
        }
    }
    Ok(names)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Counter,
    Gauge,
    Histogram,
    Summary,
    Untyped,
}

/// The metrics the services export: name → kind, from a render's `# TYPE` lines and
/// samples, plus the names the source declares that the render lacks.
#[derive(Debug, Default)]
struct Exported {
    kinds: BTreeMap<String, Kind>,
    only_declared: BTreeSet<String>,
}

impl Exported {
    fn from_render(text: &str) -> Self {
        let mut kinds = BTreeMap::new();
        for line in text.lines() {
            if let Some(typed) = line.strip_prefix("# TYPE ") {
                let mut parts = typed.split_whitespace();
                if let (Some(name), Some(kind)) = (parts.next(), parts.next()) {
                    let kind = match kind {
                        "counter" => Kind::Counter,
                        "gauge" => Kind::Gauge,
                        "histogram" => Kind::Histogram,
                        "summary" => Kind::Summary,
                        _ => Kind::Untyped,
                    };
                    kinds.insert(name.to_owned(), kind);
                }
            }
        }
        let mut exported = Self {
            kinds,
            only_declared: BTreeSet::new(),
        };
        // Samples without a `# TYPE` line are untyped series of their own.
        for line in text
            .lines()
            .filter(|l| !l.starts_with('#') && !l.is_empty())
        {
            let series = line.split(['{', ' ']).next().unwrap_or_default();
            if exported.check(series).is_err() {
                exported.kinds.insert(series.to_owned(), Kind::Untyped);
            }
        }
        exported
    }

    /// Adds the declared metrics the render does not have (recorded only on a rare
    /// path, so absent until it runs).
    fn with_declared(mut self, declared: BTreeMap<String, Kind>) -> Self {
        for (name, kind) in declared {
            if !self.kinds.contains_key(&name) {
                self.kinds.insert(name.clone(), kind);
                self.only_declared.insert(name);
            }
        }
        self
    }

    fn only_declared(&self) -> &BTreeSet<String> {
        &self.only_declared
    }

    /// Ok if `name` is a series the services export: a counter, gauge or untyped
    /// metric by its name, a summary by its name or `_sum`/`_count`, a histogram only
    /// by `_bucket`, `_sum` or `_count` (its bare name selects nothing).
    fn check(&self, name: &str) -> Result<(), String> {
        match self.kinds.get(name) {
            Some(Kind::Histogram) => {
                return Err(format!(
                    "{name} is a histogram: select {name}_bucket, {name}_sum or {name}_count"
                ));
            }
            Some(_) => return Ok(()),
            None => {}
        }
        for (suffix, allowed) in [
            ("_bucket", &[Kind::Histogram][..]),
            ("_sum", &[Kind::Histogram, Kind::Summary][..]),
            ("_count", &[Kind::Histogram, Kind::Summary][..]),
        ] {
            if let Some(base) = name.strip_suffix(suffix)
                && let Some(kind) = self.kinds.get(base)
            {
                return if allowed.contains(kind) {
                    Ok(())
                } else {
                    Err(format!(
                        "{name}: {base} is a {kind:?}, it has no {suffix} series"
                    ))
                };
            }
        }
        Err(format!("{name} is exported by no service"))
    }
}

/// The metrics the services' source declares: the first argument of every
/// `metrics::counter!`, `gauge!` and `histogram!` in the product crates and infra.
fn declared_metrics() -> BTreeMap<String, Kind> {
    let call = regex::Regex::new(
        r#"metrics::(counter|gauge|histogram)!\(\s*"([a-zA-Z_:][a-zA-Z0-9_:]*)""#,
    )
    .expect("regex");
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let mut dirs: Vec<PathBuf> = [
        "gateway",
        "booking-svc",
        "pay-svc",
        "realtime-svc",
        "search-svc",
        "infra",
    ]
    .iter()
    .map(|crate_dir| root.join(crate_dir).join("src"))
    .collect();
    let mut declared = BTreeMap::new();
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
            let path = entry.expect("dir entry").path();
            if path.is_dir() {
                dirs.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") {
                let text = std::fs::read_to_string(&path).expect("source");
                for c in call.captures_iter(&text) {
                    let kind = match &c[1] {
                        "counter" => Kind::Counter,
                        "gauge" => Kind::Gauge,
                        _ => Kind::Histogram,
                    };
                    declared.insert(c[2].to_owned(), kind);
                }
            }
        }
    }
    assert!(
        declared.len() >= 20,
        "too few declared metrics: {declared:?}"
    );
    declared
}

/// The drift check itself, without the services: what it accepts and what it names.
#[test]
fn the_drift_check_names_a_missing_metric_and_ignores_the_rest_of_promql() {
    let names = |expr: &str| metric_names(expr).expect("parses");
    assert_eq!(
        names(concat!(
            r#"histogram_quantile(0.95, sum by (le, route) "#,
            r#"(rate(http_seconds_bucket{route=~"$route", job="a{b}"}[$__rate_interval])))"#,
        )),
        ["http_seconds_bucket"]
    );
    assert_eq!(
        names(
            "max by (pool) (db{state=\"in_use\"} / ignoring (state) group_left db_max) > bool 0.9 \
             and on (pool) up offset 1h30m unless absent(x{a='b'}[5m:1m]) * 1e3 + 0x1F - Inf"
        ),
        ["db", "db_max", "up", "x"]
    );
    assert_eq!(
        names(r#"sum without (instance) (increase(a_total[1d])) / scalar(time() - b @ start())"#),
        ["a_total", "b"]
    );
    assert!(
        metric_names("sum(rat(a_total[5m]))").is_err(),
        "unknown function"
    );

    let exported = Exported::from_render(
        "# TYPE requests_total counter\nrequests_total{route=\"/\"} 3\n\
         # TYPE up gauge\nup 1\n\
         # TYPE latency_seconds histogram\nlatency_seconds_bucket{le=\"+Inf\"} 1\n\
         latency_seconds_sum 0.1\nlatency_seconds_count 1\n\
         # TYPE rpc summary\nrpc{quantile=\"0.5\"} 1\nrpc_sum 1\nrpc_count 1\n\
         untyped_thing 1\n",
    )
    .with_declared(BTreeMap::from([("rare_total".to_owned(), Kind::Counter)]));
    for ok in [
        "requests_total",
        "up",
        "latency_seconds_bucket",
        "latency_seconds_sum",
        "latency_seconds_count",
        "rpc",
        "rpc_sum",
        "rpc_count",
        "untyped_thing",
        "rare_total",
    ] {
        assert_eq!(exported.check(ok), Ok(()), "{ok}");
    }
    for missing in [
        "latency_seconds",
        "up_count",
        "rpc_bucket",
        "requests",
        "bogus_total",
    ] {
        assert!(exported.check(missing).is_err(), "{missing} passed");
    }
    assert_eq!(
        exported.only_declared().iter().collect::<Vec<_>>(),
        ["rare_total"]
    );

    // A dashboard naming a metric nobody exports fails, naming the dashboard and the
    // panel (or variable); the real alerts and dashboards name only metrics the
    // services' source declares (the e2e test above checks them against a render).
    let bogus = json!({
        "panels": [{"type": "row", "title": "Row", "panels": [{
            "title": "Bogus panel",
            "targets": [{
                "refId": "A",
                "expr": "sum(rate(no_such_metric_total{a=\"b\"}[$__rate_interval]))",
            }],
        }]}],
        "templating": {"list": [
            {"name": "v", "type": "query",
             "query": {"query": "label_values(no_such_gauge, label)"}},
            {"name": "w", "type": "query", "query": "label_values(label)"},
        ]},
    });
    let declared = Exported::from_render("").with_declared(declared_metrics());
    let problems = drift(
        &declared,
        &[],
        &[("bogus.json".to_owned(), board_exprs(&bogus))],
    );
    assert_eq!(
        problems,
        [
            "dashboard bogus.json, panel \"Bogus panel\": no_such_metric_total is exported by no service",
            "dashboard bogus.json, variable $v: no_such_gauge is exported by no service",
        ]
    );
    let (alerts, dashboards) = alerts_and_dashboards();
    let problems = drift(&declared, &alerts, &dashboards);
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

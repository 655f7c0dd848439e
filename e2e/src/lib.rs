//! The whole system in one process, for the end-to-end tests and the benchmarks.
//!
//! - [`system`]: pay-svc, booking-svc, realtime-svc replicas and the gateway
//!   ([`System`], [`Options`], the SSE client [`SseStream`]).
//! - [`search`]: booking-svc, search-svc and the gateway, for discovery.
//! - [`checks`]: the invariants every sale must keep, written once: no seat is sold
//!   twice and the seat map agrees with the bookings ([`checks::Oversell`]); no money
//!   is created or lost ([`checks::Money`]).
//! - [`bench_report`]: the figures each benchmark appends for `make bench`'s table.
//! - [`split`]: the benchmarks' two-process mode (`BENCH_SPLIT`): the system in a child
//!   process pinned to its own cores, the load generator in the benchmark's.
//!
//! Everything runs against the real local PostgreSQL, Redis and RabbitMQ; each system
//! has its own databases, Redis key prefix and bus names and removes them when stopped.

pub mod bench_report;
pub mod checks;
pub mod search;
pub mod split;
pub mod system;

pub use checks::{CardMoney, Money, Oversell, WELCOME_CREDIT_MINOR};
pub use marquee_testkit::Reply;
pub use system::{JWT_SECRET, Options, PASSWORD, Seller, SseEvent, SseStream, System, event_body};

/// A proto3 JSON integer: an int64 comes as a string, an int32 as a number (0 if
/// neither).
pub fn int(value: &serde_json::Value) -> i64 {
    value
        .as_str()
        .and_then(|n| n.parse().ok())
        .or_else(|| value.as_i64())
        .unwrap_or(0)
}

/// The pseudonym the API shows for `bidder` in auction `auction` (booking-svc's
/// `auction::pseudonym`): what a test compares the ranking with.
pub fn auction_pseudonym(auction: uuid::Uuid, bidder: uuid::Uuid) -> String {
    uuid::Uuid::new_v5(&auction, bidder.as_bytes())
        .simple()
        .to_string()[..10]
        .to_owned()
}

/// The value of the first sample of `name` in a Prometheus text render whose labels
/// include every `labels` pair.
pub fn metric_sample(text: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    metric_samples(text, name, labels)
        .next()
        .map(|(_, value)| value)
}

/// Every sample of `name` in a Prometheus text render whose labels include every
/// `labels` pair: its label text (between the braces, empty without) and its value.
pub fn metric_samples<'a>(
    text: &'a str,
    name: &'a str,
    labels: &'a [(&'a str, &'a str)],
) -> impl Iterator<Item = (&'a str, f64)> + 'a {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(move |line| {
            let (series, value) = line.rsplit_once(' ')?;
            let (metric, rest) = match series.split_once('{') {
                Some((metric, rest)) => (metric, rest),
                None => (series, ""),
            };
            if metric != name
                || !labels
                    .iter()
                    .all(|(k, v)| rest.contains(&format!("{k}=\"{v}\"")))
            {
                return None;
            }
            Some((rest, value.parse().ok()?))
        })
}

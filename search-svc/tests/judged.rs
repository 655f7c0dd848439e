//! The judged query set (`tests/judged.json`) over the fixture catalog
//! (`tests/fixtures/catalog.json`): each query names the event that must rank first,
//! or must be in the top 5, or must be absent. Queries go to search-svc over gRPC; a
//! `"mode": "suggest"` entry asks the suggestion RPC (as-you-type input) instead.

mod common;

use chrono::{DateTime, Utc};
use common::System;
use marquee_proto::search as pb;
use search_svc::domain::EventDoc;
use serde_json::Value;

fn time(value: &Value, key: &str, default: &str) -> DateTime<Utc> {
    value[key]
        .as_str()
        .unwrap_or(default)
        .parse()
        .unwrap_or_else(|e| panic!("{key} of {value}: {e}"))
}

pub fn fixture_catalog() -> Vec<EventDoc> {
    let text = include_str!("fixtures/catalog.json");
    let events: Vec<Value> = serde_json::from_str(text).expect("catalog.json");
    events
        .iter()
        .map(|e| EventDoc {
            id: e["id"].as_str().expect("id").to_owned(),
            title: e["title"].as_str().expect("title").to_owned(),
            category: e["category"].as_str().expect("category").to_owned(),
            description: e["description"].as_str().expect("description").to_owned(),
            venue: e["venue"].as_str().expect("venue").to_owned(),
            starts_at: time(e, "startsAt", ""),
            sale_starts_at: time(e, "saleStartsAt", "2020-01-01T00:00:00Z"),
            sale_ends_at: time(e, "saleEndsAt", "2099-01-01T00:00:00Z"),
        })
        .collect()
}

fn timestamp(value: &Value, key: &str) -> Option<prost_types::Timestamp> {
    let t: DateTime<Utc> = value[key].as_str()?.parse().expect("judged timestamp");
    Some(prost_types::Timestamp {
        seconds: t.timestamp(),
        nanos: 0,
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn judged_queries_rank_the_expected_events() {
    let system = System::start().await;
    let index = system.index.clone();
    tokio::task::spawn_blocking(move || index.rebuild_from(fixture_catalog()))
        .await
        .expect("join")
        .expect("fixture indexed");
    let mut client = system.grpc().await;

    let judged: Vec<Value> =
        serde_json::from_str(include_str!("judged.json")).expect("judged.json");
    assert!(
        judged.len() >= 40,
        "the judged set has {} queries",
        judged.len()
    );
    let mut failures = Vec::new();
    for case in &judged {
        let q = case["q"].as_str().expect("q").to_owned();
        let ids: Vec<String> = if case["mode"] == "suggest" {
            client
                .suggest(pb::SuggestRequest {
                    q: q.clone(),
                    limit: 5,
                })
                .await
                .unwrap_or_else(|s| panic!("suggest {q}: {s}"))
                .into_inner()
                .suggestions
                .into_iter()
                .map(|s| s.event_id)
                .collect()
        } else {
            client
                .search_events(pb::SearchEventsRequest {
                    q: q.clone(),
                    category: case["category"].as_str().unwrap_or_default().to_owned(),
                    from: timestamp(case, "from"),
                    to: timestamp(case, "to"),
                    bookable: case["bookable"].as_bool().unwrap_or(false),
                    page_size: 5,
                    page_token: String::new(),
                })
                .await
                .unwrap_or_else(|s| panic!("search {q}: {s}"))
                .into_inner()
                .hits
                .into_iter()
                .map(|h| h.event_id)
                .collect()
        };
        let axis = case["axis"].as_str().unwrap_or("?");
        if let Some(first) = case["first"].as_str()
            && ids.first().map(String::as_str) != Some(first)
        {
            failures.push(format!(
                "[{axis}] {q:?}: {first} should be first, got {ids:?}"
            ));
        }
        if let Some(top) = case["top5"].as_str()
            && !ids.iter().take(5).any(|id| id == top)
        {
            failures.push(format!(
                "[{axis}] {q:?}: {top} should be in the top 5, got {ids:?}"
            ));
        }
        if let Some(absent) = case["absent"].as_str()
            && ids.iter().any(|id| id == absent)
        {
            failures.push(format!(
                "[{axis}] {q:?}: {absent} should be filtered out, got {ids:?}"
            ));
        }
    }
    system.stop().await;
    assert!(
        failures.is_empty(),
        "{} of {} judged queries failed:\n{}",
        failures.len(),
        judged.len(),
        failures.join("\n")
    );
}

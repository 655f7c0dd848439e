//! search-svc's catalog follower over the real bus: a burst of `catalog.event_changed`
//! notifications is applied in batches without losing any, and the last change of the
//! burst is searchable within a second.

mod common;

use std::time::{Duration, Instant};

use common::System;

/// An event as booking-svc announces it, findable by the made-up word `burstmark{n}`.
fn burst_event(n: usize) -> marquee_proto::booking::Event {
    let starts = chrono::Utc::now() + chrono::Duration::days(30);
    marquee_proto::booking::Event {
        event_id: format!("burst-{n}"),
        seller_id: "seller-burst".into(),
        title: format!("버스트 공연 burstmark{n}"),
        category: "CONCERT".into(),
        description: "한꺼번에 등록된 공연".into(),
        venue: "잠실실내체육관".into(),
        starts_at: Some(prost_types::Timestamp {
            seconds: starts.timestamp(),
            nanos: 0,
        }),
        ..Default::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_last_change_of_a_burst_is_searchable_within_a_second() {
    const BURST: usize = 300;
    let system = System::start().await;
    let mut client = system.grpc().await;
    let mut events: Vec<_> = (0..BURST).map(burst_event).collect();
    let last = events.pop().expect("a burst");
    let last_id = last.event_id.clone();
    // A burst queues up (e.g. a seller importing a season), then one more change.
    system.publish_event_changes(events).await;
    let published = Instant::now();
    system.publish_event_changes(vec![last]).await;
    let query = format!("burstmark{}", BURST - 1);
    let mut found = false;
    while published.elapsed() < Duration::from_secs(1) {
        let hits = client
            .search_events(marquee_proto::search::SearchEventsRequest {
                q: query.clone(),
                page_size: 5,
                ..Default::default()
            })
            .await
            .expect("search answers")
            .into_inner()
            .hits;
        if hits.first().is_some_and(|h| h.event_id == last_id) {
            found = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let waited = published.elapsed();
    assert!(
        found,
        "the last of {BURST} changes was not searchable after {waited:?}"
    );
    // None of the burst was lost on the way.
    let deadline = Instant::now() + Duration::from_secs(5);
    while system.index.current().len() < BURST {
        assert!(
            Instant::now() < deadline,
            "only {} of {BURST} events indexed",
            system.index.current().len()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    system.stop().await;
}

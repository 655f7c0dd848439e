//! search-svc's gRPC health says SERVING only once it has an index to search, and its
//! reflection lists the search service with every method.

mod common;

use std::time::Duration;

use common::System;
use marquee_testkit::grpc::{await_health, described_methods, health, reflected_methods};

const SEARCH: &str = "marquee.search.v1.SearchService";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn not_serving_until_the_first_index_is_built() {
    let sys = System::start().await;
    // Every dependency is up, but no index has been built: not ready for queries.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    for service in ["", SEARCH] {
        assert_eq!(
            health(&sys.search_url, service).await,
            "NOT_SERVING",
            "{service:?} with an empty index"
        );
    }
    let index = sys.index.clone();
    tokio::task::spawn_blocking(move || index.rebuild_from(Vec::new()))
        .await
        .expect("joins")
        .expect("first index built");
    for service in ["", SEARCH] {
        await_health(&sys.search_url, service, "SERVING", Duration::from_secs(5))
            .await
            .unwrap_or_else(|now| panic!("{service:?} still {now} with its index built"));
    }
    sys.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reflection_lists_the_search_service_and_its_methods() {
    let sys = System::start().await;
    let listed = reflected_methods(&sys.search_url)
        .await
        .expect("reflection answers");
    let expected = described_methods(marquee_proto::DESCRIPTOR_SET, "marquee.search.v1")
        .expect("descriptor set");
    assert!(expected.contains_key(SEARCH));
    for (service, methods) in &expected {
        assert_eq!(listed.get(service), Some(methods), "listed {listed:?}");
    }
    assert!(listed.contains_key("grpc.health.v1.Health"), "{listed:?}");
    sys.stop().await;
}

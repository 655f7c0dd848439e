//! search-svc alone in process for its own tests (the index is loaded by the test or
//! fed through the bus), each run with its own Redis key prefix and bus names, against
//! the real local Redis and RabbitMQ. Tests that need booking-svc or the gateway live in
//! the `e2e` crate.
#![allow(dead_code)]

use std::time::Duration;

use marquee_infra::bus::{Bus, BusConfig, Envelope};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

pub const JWT_SECRET: &str = "test-secret-for-marquee-search";

use marquee_testkit::{amqp_url, delete_redis_keys, redis_url, serve};

pub struct System {
    pub search_url: String,
    pub index: std::sync::Arc<search_svc::index::SearchIndex>,
    pub rankings: search_svc::rankings::Rankings,
    pub redis_prefix: String,
    bus: Bus,
    shutdown: CancellationToken,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl System {
    pub async fn start() -> Self {
        let id = Uuid::new_v4().simple().to_string();
        let prefix = format!("test.{id}.");
        let redis_prefix = format!("test:{id}:");
        let stop = CancellationToken::new();
        let mut tasks = Vec::new();
        let search = search_svc::Application::build(search_svc::SearchConfig {
            grpc_addr: "127.0.0.1:0".parse().expect("addr"),
            metrics_addr: None,
            booking_url: "http://127.0.0.1:9".into(),
            redis: marquee_infra::redis_conn::RedisTarget::Single(redis_url()),
            redis_prefix: redis_prefix.clone(),
            bus: BusConfig::new(amqp_url(), prefix.clone()).named(format!("{prefix}search-svc")),
            jwt: JWT_SECRET.into(),
            synonyms_path: search_svc::config::DEFAULT_SYNONYMS.into(),
            rebuild_on_start: false,
            rebuild_interval: None,
        })
        .await
        .expect("search-svc starts");
        let search_url = format!("http://127.0.0.1:{}", search.port());
        let index = search.index();
        let rankings = search.rankings();
        serve(
            &mut tasks,
            "search-svc",
            search.run_with_shutdown(stop.clone().cancelled_owned()),
        );

        let bus = Bus::connect(
            BusConfig::new(amqp_url(), prefix.clone()).named(format!("{prefix}test")),
            Duration::from_secs(10),
        )
        .await
        .expect("test bus");
        Self {
            search_url,
            index,
            rankings,
            redis_prefix,
            bus,
            shutdown: stop,
            tasks,
        }
    }

    /// A gRPC client of the in-process search-svc.
    pub async fn grpc(
        &self,
    ) -> marquee_proto::search::search_service_client::SearchServiceClient<tonic::transport::Channel>
    {
        marquee_proto::search::search_service_client::SearchServiceClient::connect(
            self.search_url.clone(),
        )
        .await
        .expect("grpc connects")
    }

    /// Publishes one `catalog.event_changed` notification per event, as booking-svc's
    /// change feed does (not mandatory, confirmed), all at once; returns when the broker
    /// confirmed every one.
    pub async fn publish_event_changes(&self, events: Vec<marquee_proto::booking::Event>) {
        use prost::Message;
        let mut publishes = tokio::task::JoinSet::new();
        for event in events {
            let bus = self.bus.clone();
            publishes.spawn(async move {
                let envelope = Envelope {
                    message_id: Uuid::new_v4(),
                    kind: search_svc::catalog::EVENT_CHANGED.to_owned(),
                    saga_id: Uuid::nil(),
                    version: 1,
                    occurred_at: chrono::Utc::now(),
                    trace_context: Default::default(),
                    payload: marquee_proto::booking::EventChanged { event: Some(event) }
                        .encode_to_vec(),
                };
                bus.broadcast(&envelope).await
            });
        }
        while let Some(published) = publishes.join_next().await {
            published
                .expect("publish task")
                .expect("catalog change published");
        }
    }

    /// Stops everything and removes the test's queues, exchanges and keys.
    pub async fn stop(mut self) {
        self.shutdown.cancel();
        for task in self.tasks.drain(..) {
            let _ = tokio::time::timeout(Duration::from_secs(10), task).await;
        }
        let _ = self.bus.delete_topology(&[]).await;
        self.bus.shutdown();
        let _ = delete_redis_keys(&self.redis_prefix).await;
    }
}

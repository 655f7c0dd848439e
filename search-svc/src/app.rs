//! Wiring: synonyms, the index, the rankings store, the catalog follower, the rebuild
//! loop, gRPC and metrics servers.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use marquee_infra::auth::TokenKeys;
use marquee_infra::bus::Bus;
use marquee_infra::service::{Dependency, Shell};
use marquee_proto::search::search_service_server::SearchServiceServer;
use tokio_util::sync::CancellationToken;

use crate::catalog::{self, Catalog};
use crate::config::SearchConfig;
use crate::grpc::SearchApi;
use crate::index::SearchIndex;
use crate::rankings::Rankings;
use crate::synonyms::Synonyms;

/// How long start-up waits for RabbitMQ.
const BUS_CONNECT_WAIT: Duration = Duration::from_secs(10);

/// A started search-svc: consuming catalog changes, rebuilding in the background, and
/// bound (not yet serving gRPC).
pub struct Application {
    shell: Shell,
    port: u16,
    bus: Bus,
    index: Arc<SearchIndex>,
    catalog: Catalog,
    rankings: Rankings,
    api: SearchApi,
    config: SearchConfig,
    /// Stops the catalog follower (with the servers).
    stop: CancellationToken,
}

impl std::fmt::Debug for Application {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Application")
            .field("port", &self.port)
            .finish_non_exhaustive()
    }
}

impl Application {
    /// Loads the synonyms, connects Redis and the bus, subscribes to catalog changes
    /// (before the first rebuild reads the catalog, so no change falls in between) and
    /// binds the gRPC (and metrics) listeners. The first rebuild runs when serving
    /// starts.
    pub async fn build(config: SearchConfig) -> anyhow::Result<Self> {
        let synonyms = Synonyms::load(&config.synonyms_path)?;
        tracing::info!(path = %config.synonyms_path.display(), terms = synonyms.len(), "synonyms loaded");
        let index = Arc::new(SearchIndex::new(synonyms)?);
        let rankings = Rankings::connect(&config.redis, &config.redis_prefix).await?;
        let catalog = Catalog::new(&config.booking_url)?;

        let bus = Bus::connect(config.bus.clone(), BUS_CONNECT_WAIT).await?;
        let stop = CancellationToken::new();
        // Changes published while this replica had no subscription are lost to it: after
        // a resubscription (not the first, which the start-up rebuild covers) rebuild.
        let subscribed_before = Arc::new(AtomicBool::new(false));
        let on_subscribed = {
            let (catalog, index) = (catalog.clone(), index.clone());
            Arc::new(move || {
                if subscribed_before.swap(true, Ordering::AcqRel) {
                    let (catalog, index) = (catalog.clone(), index.clone());
                    tokio::spawn(async move {
                        tracing::info!("resubscribed to catalog changes; rebuilding");
                        if let Err(error) = catalog.rebuild(&index).await {
                            tracing::warn!(%error, "rebuild after resubscribing failed");
                        }
                    });
                }
            })
        };
        bus.subscribe(
            catalog::ROUTING_KEYS,
            on_subscribed,
            catalog::follow(index.clone(), stop.clone()),
        )
        .await?;

        let shell = Shell::bind("search-svc", config.grpc_addr, config.metrics_addr).await?;
        let port = shell.local_addr()?.port();
        let api = SearchApi::new(
            index.clone(),
            rankings.clone(),
            catalog.clone(),
            TokenKeys::verifier(&config.jwt),
        );
        tracing::info!(port, prefix = %config.bus.prefix, "search-svc started");
        Ok(Self {
            shell,
            port,
            bus,
            index,
            catalog,
            rankings,
            api,
            config,
            stop,
        })
    }

    /// The bound gRPC port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The index being served (tests and the benchmark load it directly).
    pub fn index(&self) -> Arc<SearchIndex> {
        self.index.clone()
    }

    pub fn rankings(&self) -> Rankings {
        self.rankings.clone()
    }

    /// Serves until SIGTERM or Ctrl-C.
    pub async fn run_until_stopped(self) -> anyhow::Result<()> {
        self.run_with_shutdown(marquee_infra::shutdown_signal())
            .await
    }

    /// Serves until `shutdown` resolves, then stops the servers, the consumer and the
    /// rebuild loop. Health is NOT_SERVING until the first index is built, and while
    /// RabbitMQ (the catalog changes) or Redis (the rankings) is down.
    pub async fn run_with_shutdown(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        let Self {
            mut shell,
            bus,
            index,
            catalog,
            api,
            config,
            stop,
            ..
        } = self;
        let rebuilds = tokio::spawn(catalog::rebuild_loop(
            catalog,
            index.clone(),
            config.rebuild_on_start,
            config.rebuild_interval,
            stop.clone(),
        ));
        let built = Dependency::new("index", move || {
            let built = index.is_built();
            async move { built }
        });
        shell
            .add_service(SearchServiceServer::new(api))
            .reflect(marquee_proto::DESCRIPTOR_SET)
            .depends_on(built)
            .depends_on(Dependency::bus(bus.clone()))
            .depends_on(Dependency::redis(&config.redis)?)
            .on_stop(move || {
                stop.cancel();
                bus.shutdown();
            });
        let served = shell.serve(shutdown).await;
        let _ = rebuilds.await;
        served
    }
}

//! Wiring: synonyms, the index, the rankings store, the catalog follower, the rebuild
//! loop, gRPC and metrics servers.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use marquee_infra::auth::TokenKeys;
use marquee_infra::bus::Bus;
use marquee_infra::{grpc, metrics, telemetry};
use marquee_proto::search::search_service_server::SearchServiceServer;
use tokio::net::TcpListener;
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
    listener: TcpListener,
    port: u16,
    metrics_listener: Option<TcpListener>,
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
        let rankings = Rankings::connect(&config.redis_url, &config.redis_prefix).await?;
        let catalog = Catalog::new(&config.booking_url)?;

        let metrics_listener = match config.metrics_addr {
            Some(addr) => {
                metrics::prometheus();
                Some(TcpListener::bind(addr).await?)
            }
            None => None,
        };

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

        let listener = TcpListener::bind(config.grpc_addr).await?;
        let port = listener.local_addr()?.port();
        let api = SearchApi::new(
            index.clone(),
            rankings.clone(),
            catalog.clone(),
            TokenKeys::verifier(&config.jwt),
        );
        tracing::info!(port, prefix = %config.bus.prefix, "search-svc started");
        Ok(Self {
            listener,
            port,
            metrics_listener,
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
    /// rebuild loop.
    pub async fn run_with_shutdown(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        let stop = self.stop.clone();
        tokio::spawn({
            let stop = stop.clone();
            async move {
                shutdown.await;
                stop.cancel();
            }
        });
        let metrics_server = self
            .metrics_listener
            .map(|listener| tokio::spawn(metrics::serve(listener, stop.clone().cancelled_owned())));
        let rebuilds = tokio::spawn(catalog::rebuild_loop(
            self.catalog,
            self.index,
            self.config.rebuild_on_start,
            self.config.rebuild_interval,
            stop.clone(),
        ));
        let health = grpc::health_service(&["marquee.search.v1.SearchService"]).await;
        let served = tonic::transport::Server::builder()
            // One span per request, named after the RPC and parented on the caller's trace.
            .layer(telemetry::grpc_trace_layer())
            // Request counts by method and code, and latency histograms.
            .layer(marquee_infra::grpc::GrpcMetricsLayer)
            .add_service(health)
            .add_service(SearchServiceServer::new(self.api))
            .serve_with_incoming_shutdown(
                marquee_infra::grpc::incoming(self.listener),
                stop.clone().cancelled_owned(),
            )
            .await;
        stop.cancel();
        self.bus.shutdown();
        let _ = rebuilds.await;
        if let Some(server) = metrics_server {
            match server.await {
                Ok(Err(error)) => tracing::warn!(%error, "metrics server failed"),
                Err(error) => tracing::warn!(%error, "metrics server panicked"),
                Ok(Ok(())) => {}
            }
        }
        tracing::info!("search-svc stopped");
        served.map_err(Into::into)
    }
}

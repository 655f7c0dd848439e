//! The service shell every gRPC binary runs in: the listeners, the same HTTP/2 settings
//! for every server, the trace and metrics layers, gRPC health driven by real
//! dependency checks, gRPC reflection (v1) from the descriptor set, `/metrics`, and the
//! graceful shutdown (not serving → stop accepting → drain → stop consumers).
//!
//! A service binds its [`Shell`] in `Application::build` (so tests learn the port) and
//! hands it its gRPC services, the [`Dependency`] checks it needs and what to stop at
//! the end in `run_with_shutdown`. Telemetry is flushed by the binary's
//! [`crate::telemetry::TelemetryGuard`] once `run_with_shutdown` returns.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tonic::body::Body;
use tonic::server::NamedService;
use tonic::service::RoutesBuilder;
use tonic_health::ServingStatus;
use tonic_health::server::HealthReporter;

use crate::bus::Bus;

/// How long one dependency check may take before it counts as failed.
pub const CHECK_TIMEOUT: Duration = Duration::from_secs(1);
/// How often the shell runs the dependency checks.
pub const CHECK_INTERVAL: Duration = Duration::from_secs(1);

/// What a dependency check returns.
pub type CheckFuture = Pin<Box<dyn Future<Output = bool> + Send>>;

/// Something a service needs to serve: checked every [`CHECK_INTERVAL`]; while any
/// check fails the service reports NOT_SERVING.
#[derive(Clone)]
pub struct Dependency {
    name: &'static str,
    check: Arc<dyn Fn() -> CheckFuture + Send + Sync>,
}

impl std::fmt::Debug for Dependency {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Dependency")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

impl Dependency {
    /// A dependency named `name` that is up while `check` answers `true`.
    pub fn new<F, Fut>(name: &'static str, check: F) -> Self
    where
        F: Fn() -> Fut + Send + Sync + 'static,
        Fut: Future<Output = bool> + Send + 'static,
    {
        Self {
            name,
            check: Arc::new(move || Box::pin(check())),
        }
    }

    /// PostgreSQL through `db`: a ping (`SELECT 1`) on a pooled connection. Each check
    /// also records the pool's gauges under `pool` (`db_pool_connections{pool, state}`,
    /// `db_pool_max_connections{pool}`), read before the ping takes a connection.
    pub fn postgres(pool: &'static str, db: sea_orm::DatabaseConnection) -> Self {
        Self::new("postgres", move || {
            let db = db.clone();
            async move {
                record_pool(pool, &db);
                db.ping().await.is_ok()
            }
        })
    }

    /// Redis at `target` (one server or a cluster): `PING` on a connection of the
    /// check's own, opened again after a failure.
    pub fn redis(target: &crate::redis_conn::RedisTarget) -> anyhow::Result<Self> {
        let target = target.clone();
        let slot: Arc<tokio::sync::Mutex<Option<crate::redis_conn::RedisConn>>> = Arc::default();
        Ok(Self::new("redis", move || {
            let (target, slot) = (target.clone(), slot.clone());
            async move {
                let mut slot = slot.lock().await;
                let pinged = tokio::time::timeout(CHECK_TIMEOUT / 2, async {
                    if slot.is_none() {
                        let timeouts = crate::redis_conn::RedisTimeouts {
                            response: CHECK_TIMEOUT / 2,
                            connect: CHECK_TIMEOUT / 2,
                        };
                        *slot = crate::redis_conn::connect(&target, timeouts).await.ok();
                    }
                    match slot.as_mut() {
                        Some(connection) => redis::cmd("PING")
                            .query_async::<String>(connection)
                            .await
                            .is_ok(),
                        None => false,
                    }
                })
                .await
                .unwrap_or(false);
                if !pinged {
                    *slot = None;
                }
                pinged
            }
        }))
    }

    /// RabbitMQ: the bus's connection is open.
    pub fn bus(bus: Bus) -> Self {
        Self::new("rabbitmq", move || {
            let up = bus.is_connected();
            async move { up }
        })
    }

    pub fn name(&self) -> &'static str {
        self.name
    }

    /// Runs the check; one that takes longer than [`CHECK_TIMEOUT`] failed.
    pub async fn check(&self) -> bool {
        tokio::time::timeout(CHECK_TIMEOUT, (self.check)())
            .await
            .unwrap_or(false)
    }
}

/// Records the connection pool's gauges: connections in use and idle, and its maximum.
fn record_pool(pool: &'static str, db: &sea_orm::DatabaseConnection) {
    let connections = db.get_postgres_connection_pool();
    let open = connections.size();
    let idle = u32::try_from(connections.num_idle())
        .unwrap_or(u32::MAX)
        .min(open);
    // Pool connections by state: `in_use` (lent out) and `idle` (open, waiting).
    metrics::gauge!("db_pool_connections", "pool" => pool, "state" => "in_use")
        .set(f64::from(open - idle));
    metrics::gauge!("db_pool_connections", "pool" => pool, "state" => "idle").set(f64::from(idle));
    // The most connections the pool may open.
    metrics::gauge!("db_pool_max_connections", "pool" => pool)
        .set(f64::from(connections.options().get_max_connections()));
}

/// A gRPC server, bound and not yet serving, with its `/metrics` listener.
pub struct Shell {
    name: &'static str,
    listener: TcpListener,
    metrics_listener: Option<TcpListener>,
    routes: RoutesBuilder,
    services: Vec<&'static str>,
    descriptor_sets: Vec<&'static [u8]>,
    dependencies: Vec<Dependency>,
    on_stop: Vec<Box<dyn FnOnce() + Send>>,
    check_interval: Duration,
    drain_grace: Duration,
}

impl std::fmt::Debug for Shell {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shell")
            .field("name", &self.name)
            .field("services", &self.services)
            .field("dependencies", &self.dependencies)
            .finish_non_exhaustive()
    }
}

impl Shell {
    /// Binds the gRPC listener on `grpc_addr` (port 0 picks a free one) and, when
    /// given, the `/metrics` listener, and records `marquee_build_info` for `name`
    /// (the workspace's version).
    pub async fn bind(
        name: &'static str,
        grpc_addr: SocketAddr,
        metrics_addr: Option<SocketAddr>,
    ) -> anyhow::Result<Self> {
        let listener = TcpListener::bind(grpc_addr).await?;
        let metrics_listener = match metrics_addr {
            Some(addr) => {
                crate::metrics::prometheus();
                Some(TcpListener::bind(addr).await?)
            }
            None => None,
        };
        // After the recorder is installed: set once, it must not be lost.
        crate::metrics::build_info(name, env!("CARGO_PKG_VERSION"));
        Ok(Self {
            name,
            listener,
            metrics_listener,
            routes: RoutesBuilder::default(),
            services: Vec::new(),
            descriptor_sets: Vec::new(),
            dependencies: Vec::new(),
            on_stop: Vec::new(),
            check_interval: CHECK_INTERVAL,
            drain_grace: Duration::ZERO,
        })
    }

    /// The bound gRPC address.
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// The bound gRPC port (0 if the listener cannot say).
    pub fn port(&self) -> u16 {
        self.local_addr().map(|a| a.port()).unwrap_or(0)
    }

    /// Serves `service`; its health is reported under its fully qualified name and
    /// reflection lists it.
    pub fn add_service<S>(&mut self, service: S) -> &mut Self
    where
        S: tower::Service<http::Request<Body>, Error = Infallible>
            + NamedService
            + Clone
            + Send
            + Sync
            + 'static,
        S::Response: axum::response::IntoResponse,
        S::Future: Send + 'static,
    {
        self.services.push(S::NAME);
        self.routes.add_service(service);
        self
    }

    /// The encoded `FileDescriptorSet` reflection answers from.
    pub fn reflect(&mut self, descriptor_set: &'static [u8]) -> &mut Self {
        self.descriptor_sets.push(descriptor_set);
        self
    }

    /// The service reports NOT_SERVING while `dependency` is down.
    pub fn depends_on(&mut self, dependency: Dependency) -> &mut Self {
        self.dependencies.push(dependency);
        self
    }

    /// Runs `stop` once the server has drained (stopping consumers, relays, loops).
    pub fn on_stop(&mut self, stop: impl FnOnce() + Send + 'static) -> &mut Self {
        self.on_stop.push(Box::new(stop));
        self
    }

    /// How long to keep serving after reporting NOT_SERVING on shutdown, so balancers
    /// watching health stop sending first (none by default).
    pub fn drain_grace(&mut self, grace: Duration) -> &mut Self {
        self.drain_grace = grace;
        self
    }

    /// How often the dependencies are checked ([`CHECK_INTERVAL`] by default).
    pub fn check_interval(&mut self, interval: Duration) -> &mut Self {
        self.check_interval = interval.max(Duration::from_millis(10));
        self
    }

    /// Serves until `signal` resolves. Then: every service reports NOT_SERVING, the
    /// listener stops accepting, in-flight RPCs finish, the `on_stop` hooks run and the
    /// metrics server stops.
    pub async fn serve(
        self,
        signal: impl Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        let Self {
            name,
            listener,
            metrics_listener,
            routes,
            services,
            descriptor_sets,
            dependencies,
            on_stop,
            check_interval,
            drain_grace,
        } = self;
        let stop = CancellationToken::new();
        let metrics_server = metrics_listener.map(|listener| {
            tokio::spawn(crate::metrics::serve(
                listener,
                stop.clone().cancelled_owned(),
            ))
        });

        let (reporter, health) = tonic_health::server::health_reporter();
        let health_names: Vec<&'static str> = std::iter::once("")
            .chain(services.iter().copied())
            .collect();
        // Nothing is SERVING before the first round of checks has passed.
        set_all(&reporter, &health_names, ServingStatus::NotServing).await;
        let draining = CancellationToken::new();
        // Held while health is written, so a check that finished just as draining began
        // cannot report SERVING after the drain reported NOT_SERVING.
        let status_lock = Arc::new(tokio::sync::Mutex::new(()));
        let checks = tokio::spawn(check_loop(
            name,
            reporter.clone(),
            status_lock.clone(),
            health_names.clone(),
            dependencies,
            check_interval,
            draining.clone(),
        ));

        let mut reflection = tonic_reflection::server::Builder::configure()
            .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
            .with_service_name("grpc.health.v1.Health")
            .with_service_name("grpc.reflection.v1.ServerReflection");
        for set in descriptor_sets {
            reflection = reflection.register_encoded_file_descriptor_set(set);
        }
        for service in &services {
            reflection = reflection.with_service_name(*service);
        }
        let reflection = reflection.build_v1()?;

        let mut routes = routes;
        routes.add_service(health).add_service(reflection);

        let shutdown = {
            let (reporter, draining) = (reporter.clone(), draining.clone());
            async move {
                signal.await;
                // Health first, so whoever watches it stops sending before we stop.
                let guard = status_lock.lock().await;
                draining.cancel();
                set_all(&reporter, &health_names, ServingStatus::NotServing).await;
                drop(guard);
                tracing::info!(
                    service = name,
                    grace_ms = drain_grace.as_millis() as u64,
                    "draining"
                );
                tokio::time::sleep(drain_grace).await;
            }
        };
        tracing::info!(service = name, addr = %listener.local_addr()?, "serving grpc");
        let served = tonic::transport::Server::builder()
            .tcp_nodelay(true)
            // Watchers are long-lived streams: no cap on how many share a connection.
            .max_concurrent_streams(None)
            .http2_keepalive_interval(Some(Duration::from_secs(30)))
            .http2_keepalive_timeout(Some(Duration::from_secs(10)))
            // A span per RPC, parented on the caller's W3C trace context.
            .layer(crate::telemetry::grpc_trace_layer())
            // Request counts by method and code, and latency histograms.
            .layer(crate::grpc::GrpcMetricsLayer)
            .add_routes(routes.routes())
            .serve_with_incoming_shutdown(crate::grpc::incoming(listener), shutdown)
            .await;
        draining.cancel();
        let _ = checks.await;
        for stop in on_stop {
            stop();
        }
        stop.cancel();
        if let Some(server) = metrics_server {
            match server.await {
                Ok(Err(error)) => tracing::warn!(%error, "metrics server failed"),
                Err(error) => tracing::warn!(%error, "metrics server panicked"),
                Ok(Ok(())) => {}
            }
        }
        tracing::info!(service = name, "stopped");
        served.map_err(Into::into)
    }
}

async fn set_all(reporter: &HealthReporter, names: &[&'static str], status: ServingStatus) {
    for name in names {
        reporter.set_service_status(*name, status).await;
    }
}

/// Checks every dependency each `interval` (all at once) and reports SERVING when all
/// pass, NOT_SERVING when any fails; stops when draining begins.
async fn check_loop(
    service: &'static str,
    reporter: HealthReporter,
    status_lock: Arc<tokio::sync::Mutex<()>>,
    names: Vec<&'static str>,
    dependencies: Vec<Dependency>,
    interval: Duration,
    draining: CancellationToken,
) {
    let mut down: Vec<&'static str> = Vec::new();
    let mut first = true;
    loop {
        let results = futures::future::join_all(
            dependencies
                .iter()
                .map(|d| async move { (d.name(), d.check().await) }),
        )
        .await;
        let now_down: Vec<&'static str> = results
            .into_iter()
            .filter_map(|(name, up)| (!up).then_some(name))
            .collect();
        let _guard = status_lock.lock().await;
        if draining.is_cancelled() {
            return;
        }
        if first || now_down != down {
            if now_down.is_empty() {
                tracing::info!(service, "dependencies up; serving");
                set_all(&reporter, &names, ServingStatus::Serving).await;
            } else {
                tracing::warn!(service, down = ?now_down, "dependency down; not serving");
                set_all(&reporter, &names, ServingStatus::NotServing).await;
            }
            first = false;
            down = now_down;
        }
        tokio::select! {
            () = draining.cancelled() => return,
            () = tokio::time::sleep(interval) => {}
        }
    }
}

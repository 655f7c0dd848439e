//! Prometheus metrics: one recorder per process, rendered by each service's `/metrics`.

use std::sync::OnceLock;

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();

/// The process-wide Prometheus handle, installing the global recorder on first use.
/// In tests several services share one process, and so one recorder.
pub fn prometheus() -> PrometheusHandle {
    HANDLE
        .get_or_init(|| {
            let recorder = PrometheusBuilder::new()
                .set_buckets(&[
                    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
                ])
                // A batch's size is a count, not seconds.
                .and_then(|b| {
                    b.set_buckets_for_metric(
                        Matcher::Full("bus_consume_batch_size".to_owned()),
                        &[1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0],
                    )
                })
                .map(|b| b.build_recorder())
                .unwrap_or_else(|_| PrometheusBuilder::new().build_recorder());
            let handle = recorder.handle();
            let _ = metrics::set_global_recorder(recorder);
            handle
        })
        .clone()
}

/// Records `marquee_build_info{service, version} 1`: which build of which service runs.
/// Set once at start; `version` is the crate version (`CARGO_PKG_VERSION`).
pub fn build_info(service: &'static str, version: &'static str) {
    // Always 1; its labels say which service runs which version.
    metrics::gauge!("marquee_build_info", "service" => service, "version" => version).set(1.0);
}

/// Serves `GET /metrics` on `listener` until `shutdown` resolves.
pub async fn serve(
    listener: tokio::net::TcpListener,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let handle = prometheus();
    let app = axum::Router::new().route(
        "/metrics",
        axum::routing::get(move || {
            let handle = handle.clone();
            async move { handle.render() }
        }),
    );
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .await
}

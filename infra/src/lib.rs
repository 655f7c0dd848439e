//! Service plumbing shared by every Marquee service. It holds no domain types: each
//! service parses what it receives into its own.

pub mod auth;
pub mod bus;
pub mod config;
pub mod db;
pub mod dead_letters;
pub mod errors;
pub mod grpc;
pub mod metrics;
pub mod outbox;
pub mod redis_conn;
pub mod saga_steps;
pub mod service;
pub mod telemetry;

/// Resolves on SIGTERM or Ctrl-C.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = terminate => {},
    }
    tracing::info!("shutdown signal received");
}

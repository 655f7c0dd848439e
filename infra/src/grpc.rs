//! gRPC plumbing shared by servers and clients.

use std::time::Duration;

use tonic::service::Interceptor;
use tonic::transport::{Channel, Endpoint};

/// A channel to `url` that connects on first use (so services can start in any order).
pub fn lazy_channel(url: &str) -> anyhow::Result<Channel> {
    Ok(Endpoint::from_shared(url.to_owned())?
        .connect_timeout(Duration::from_secs(3))
        .timeout(Duration::from_secs(10))
        .tcp_nodelay(true)
        .connect_lazy())
}

/// Client interceptor that sends the current span's trace context with every call.
#[derive(Debug, Clone, Copy, Default)]
pub struct PropagateTrace;

impl Interceptor for PropagateTrace {
    fn call(
        &mut self,
        mut request: tonic::Request<()>,
    ) -> Result<tonic::Request<()>, tonic::Status> {
        crate::telemetry::inject_metadata(request.metadata_mut());
        Ok(request)
    }
}

/// A gRPC health service reporting SERVING for the server as a whole ("") and for each
/// of `services` (their fully qualified names).
pub async fn health_service(
    services: &[&str],
) -> tonic_health::pb::health_server::HealthServer<impl tonic_health::pb::health_server::Health> {
    let (reporter, service) = tonic_health::server::health_reporter();
    reporter
        .set_service_status("", tonic_health::ServingStatus::Serving)
        .await;
    for name in services {
        reporter
            .set_service_status(*name, tonic_health::ServingStatus::Serving)
            .await;
    }
    service
}

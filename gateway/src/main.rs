use marquee_gateway::{Application, GatewayConfig};

// mimalloc: the services allocate many small, short-lived buffers per request.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let telemetry = marquee_infra::telemetry::init("gateway");
    let config = GatewayConfig::from_env()?;
    let app = Application::build(config).await?;
    let result = app.run_until_stopped().await;
    if let Err(error) = &result {
        tracing::error!(error = %format!("{error:#}"), "gateway failed");
    }
    telemetry.shutdown();
    result
}

use realtime_svc::{Application, RealtimeConfig};

// mimalloc: the services allocate many small, short-lived buffers per request.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let _telemetry = marquee_infra::telemetry::init("realtime-svc");
    let config = RealtimeConfig::from_env()?;
    let app = Application::build(config).await?;
    app.run_until_stopped().await
}

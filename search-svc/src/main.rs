use search_svc::{Application, SearchConfig};

// mimalloc: the services allocate many small, short-lived buffers per request.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let _telemetry = marquee_infra::telemetry::init("search-svc");
    let config = SearchConfig::from_env()?;
    let app = Application::build(config).await?;
    app.run_until_stopped().await
}

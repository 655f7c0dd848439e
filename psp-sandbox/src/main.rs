use psp_sandbox::{Application, PspConfig};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let telemetry = marquee_infra::telemetry::init("psp-sandbox");
    let config = PspConfig::from_env()?;
    let app = Application::build(config).await?;
    let result = app.run_until_stopped().await;
    if let Err(error) = &result {
        tracing::error!(error = %format!("{error:#}"), "psp sandbox failed");
    }
    telemetry.shutdown();
    result
}

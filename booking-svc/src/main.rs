use booking_svc::{Application, BookingConfig};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let telemetry = marquee_infra::telemetry::init("booking-svc");
    let config = BookingConfig::from_env()?;
    Application::build(config)
        .await?
        .run_until_stopped()
        .await?;
    telemetry.shutdown();
    Ok(())
}

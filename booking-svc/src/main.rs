use booking_svc::{Application, BookingConfig};

// mimalloc: the services allocate many small, short-lived buffers per request.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

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

use std::process::ExitCode;

use booking_svc::{Application, BookingConfig};

// mimalloc: the services allocate many small, short-lived buffers per request.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

const USAGE: &str = "usage: booking-svc [migrate]
  (no argument)  serve; with MIGRATE_ON_START=true (the default) the database is
                 created and migrated first
  migrate        create the database if missing, apply every pending migration, exit";

#[tokio::main]
async fn main() -> anyhow::Result<ExitCode> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let migrate = match args.as_slice() {
        [] => false,
        [command] if command == "migrate" => true,
        _ => {
            eprintln!("booking-svc: unknown arguments {args:?}\n{USAGE}");
            return Ok(ExitCode::from(2));
        }
    };
    let telemetry = marquee_infra::telemetry::init("booking-svc");
    let config = BookingConfig::from_env()?;
    if migrate {
        booking_svc::migrate(&config).await?;
    } else {
        Application::build(config)
            .await?
            .run_until_stopped()
            .await?;
    }
    telemetry.shutdown();
    Ok(ExitCode::SUCCESS)
}

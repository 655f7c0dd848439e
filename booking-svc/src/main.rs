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
    // Each mode loads only its own settings: `migrate` needs the database URL alone,
    // not the token key, Redis or the bus that serving requires.
    if migrate {
        let mut env = marquee_infra::config::Settings::load();
        let config = booking_svc::migrate_config(&mut env);
        env.finish()?;
        booking_svc::migrate(&config).await?;
    } else {
        Application::build(BookingConfig::from_env()?)
            .await?
            .run_until_stopped()
            .await?;
    }
    telemetry.shutdown();
    Ok(ExitCode::SUCCESS)
}

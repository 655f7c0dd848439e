use std::process::ExitCode;

use booking_svc::{Application, BookingConfig};

// mimalloc: the services allocate many small, short-lived buffers per request.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

const USAGE: &str = "usage: booking-svc [migrate | grant-admin <email>]
  (no argument)        serve; with MIGRATE_ON_START=true (the default) the database
                       is created and migrated first
  migrate              create the database if missing, apply every pending migration,
                       exit
  grant-admin <email>  make the existing account with this email an ADMIN (it logs in
                       again to use the role), exit";

/// What the arguments ask for.
enum Mode {
    Serve,
    Migrate,
    GrantAdmin(String),
}

#[tokio::main]
async fn main() -> anyhow::Result<ExitCode> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mode = match args.as_slice() {
        [] => Mode::Serve,
        [command] if command == "migrate" => Mode::Migrate,
        [command, email] if command == "grant-admin" => Mode::GrantAdmin(email.clone()),
        _ => {
            eprintln!("booking-svc: unknown arguments {args:?}\n{USAGE}");
            return Ok(ExitCode::from(2));
        }
    };
    let telemetry = marquee_infra::telemetry::init("booking-svc");
    // Each mode loads only its own settings: `migrate` and `grant-admin` need the
    // database URL alone, not the token key, Redis or the bus that serving requires.
    match mode {
        Mode::Migrate => {
            let mut env = marquee_infra::config::Settings::load();
            let config = booking_svc::migrate_config(&mut env);
            env.finish()?;
            booking_svc::migrate(&config).await?;
        }
        Mode::GrantAdmin(email) => {
            let mut env = marquee_infra::config::Settings::load();
            let config = booking_svc::migrate_config(&mut env);
            env.finish()?;
            booking_svc::grant_admin(&config, &email).await?;
        }
        Mode::Serve => {
            Application::build(BookingConfig::from_env()?)
                .await?
                .run_until_stopped()
                .await?;
        }
    }
    telemetry.shutdown();
    Ok(ExitCode::SUCCESS)
}

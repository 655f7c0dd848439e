use std::process::ExitCode;

use pay_svc::{Application, PayConfig};

// mimalloc: the services allocate many small, short-lived buffers per request.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

const USAGE: &str = "usage: pay-svc [migrate]
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
            eprintln!("pay-svc: unknown arguments {args:?}\n{USAGE}");
            return Ok(ExitCode::from(2));
        }
    };
    let _telemetry = marquee_infra::telemetry::init("pay-svc");
    // Each mode loads only its own settings: `migrate` needs the database URL alone,
    // not the token key or the bus that serving requires.
    if migrate {
        let mut env = marquee_infra::config::Settings::load();
        let config = pay_svc::migrate_config(&mut env);
        env.finish()?;
        pay_svc::migrate(&config).await?;
    } else {
        Application::build(PayConfig::from_env()?)
            .await?
            .run_until_stopped()
            .await?;
    }
    Ok(ExitCode::SUCCESS)
}

//! Another language's stubs work (issue 13): a Python client (`tests/grpc_python/client.py`)
//! generates its stubs from `proto/` with grpcio-tools at run time and buys a seat over
//! gRPC straight from booking-svc, pay-svc and realtime-svc, with the tokens the gateway
//! uses; discovery goes through gRPC reflection. `scripts/ensure-contract-tools.sh`
//! provides the Python (its venv, installed when missing: this test never skips). The
//! purchase is then checked over REST with the buyer's token.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use marquee_e2e::System;
use serde_json::Value;

/// The script bounds each wait itself; this bounds the whole run (stub generation
/// included).
const SCRIPT_TIMEOUT: Duration = Duration::from_secs(120);

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// The contract tools' Python, installed if missing.
fn contract_python() -> PathBuf {
    let output = std::process::Command::new(root().join("scripts/ensure-contract-tools.sh"))
        .stdin(Stdio::null())
        .output()
        .expect("scripts/ensure-contract-tools.sh runs");
    assert!(
        output.status.success(),
        "scripts/ensure-contract-tools.sh failed ({}): {}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    let venv = String::from_utf8_lossy(&output.stdout).trim().to_owned();
    let python = Path::new(&venv).join("bin/python");
    assert!(
        python.exists(),
        "{} is missing: run scripts/ensure-contract-tools.sh",
        python.display()
    );
    python
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_python_client_buys_a_seat_over_grpc_with_generated_stubs() {
    let python = contract_python();
    let system = System::start().await;

    let mut child = tokio::process::Command::new(&python)
        .arg(root().join("e2e/tests/grpc_python/client.py"))
        .current_dir(root())
        .env("BOOKING_ADDR", format!("127.0.0.1:{}", system.booking_port))
        .env("PAY_ADDR", format!("127.0.0.1:{}", system.pay_port))
        .env(
            "REALTIME_ADDR",
            format!("127.0.0.1:{}", system.realtime_ports[0]),
        )
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("the contract venv's python runs (missing? run scripts/ensure-contract-tools.sh)");
    let stdout = child.stdout.take().expect("stdout");
    let stderr = child.stderr.take().expect("stderr");
    let read_out = tokio::spawn(read_all(stdout));
    let read_err = tokio::spawn(read_all(stderr));
    let status = match tokio::time::timeout(SCRIPT_TIMEOUT, child.wait()).await {
        Ok(status) => status.expect("python exit status"),
        Err(_) => {
            let _ = child.kill().await;
            let out = read_out.await.unwrap_or_default();
            let err = read_err.await.unwrap_or_default();
            panic!(
                "client.py ran longer than {SCRIPT_TIMEOUT:?}\n--- stdout\n{out}\n--- stderr\n{err}"
            );
        }
    };
    let out = read_out.await.unwrap_or_default();
    let err = read_err.await.unwrap_or_default();
    assert!(
        status.success(),
        "client.py failed ({status})\n--- stdout\n{out}\n--- stderr\n{err}"
    );
    println!("{out}");

    // What the Python client bought is real: the gateway, with the same token, shows
    // the booking CONFIRMED, the seat SOLD and the wallet debited once.
    let result: Value = out
        .lines()
        .find_map(|line| line.strip_prefix("RESULT "))
        .map(|json| serde_json::from_str(json).expect("RESULT is JSON"))
        .unwrap_or_else(|| panic!("client.py printed no RESULT line\n{out}"));
    let field = |key: &str| {
        result[key]
            .as_str()
            .unwrap_or_else(|| panic!("RESULT has no {key}: {result}"))
            .to_owned()
    };
    let (token, booking_id) = (field("buyerToken"), field("bookingId"));
    let booking = system
        .get(&format!("/v1/bookings/{booking_id}"), Some(&token))
        .await;
    assert_eq!(booking.status, 200, "{:?}", booking.body);
    assert_eq!(booking.str("/status"), "CONFIRMED", "{:?}", booking.body);
    assert_eq!(booking.str("/buyerId"), field("buyerId"));
    assert_eq!(booking.str("/eventId"), field("eventId"));
    assert_eq!(booking.str("/seats/0/seatId"), field("seatId"));
    assert_eq!(booking.str("/total/amountMinor"), "30000");
    let me = system.get("/v1/me", Some(&token)).await;
    assert_eq!(me.status, 200, "{:?}", me.body);
    assert_eq!(me.str("/account/accountId"), field("buyerId"));
    assert_eq!(system.balance(&token).await, 70_000);
    let seats = system.seats(&field("eventId")).await;
    let sold: Vec<&str> = seats
        .iter()
        .filter(|s| s.1 == "SOLD")
        .map(|s| s.0.as_str())
        .collect();
    assert_eq!(sold, [field("seatId")], "{seats:?}");
    let money = marquee_e2e::Money::check(&system.pay_pool).await;
    money.assert_conserved();
    assert_eq!(
        (money.captured_count, money.captured),
        (1, 30_000),
        "{money:?}"
    );

    system.stop().await;
}

async fn read_all(mut pipe: impl tokio::io::AsyncRead + Unpin) -> String {
    use tokio::io::AsyncReadExt as _;
    let mut bytes = Vec::new();
    let _ = pipe.read_to_end(&mut bytes).await;
    String::from_utf8_lossy(&bytes).into_owned()
}

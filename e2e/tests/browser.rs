//! The reference seat-map page in a real browser: headless Debian chromium driven by
//! playwright-core (`tests/browser/seatmap.mjs`) against the whole system in process.
//! `scripts/ensure-browser.sh` installs chromium, node and the npm packages; without
//! them this test fails (it never skips).

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use marquee_e2e::System;
use serde_json::json;
use uuid::Uuid;

const CHROMIUM: &str = "/usr/bin/chromium";
/// The script bounds each step itself; this bounds the whole run.
const SCRIPT_TIMEOUT: Duration = Duration::from_secs(150);
const PASSWORD: &str = "correct horse battery";

fn browser_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/browser")
}

/// Fails with the fix when something the browser test needs is missing.
fn require_tools() -> String {
    let chromium = std::env::var("CHROMIUM").unwrap_or_else(|_| CHROMIUM.to_owned());
    assert!(
        Path::new(&chromium).exists(),
        "{chromium} is missing: run scripts/ensure-browser.sh"
    );
    assert!(
        browser_dir()
            .join("node_modules/playwright-core/package.json")
            .exists(),
        "e2e/tests/browser/node_modules is missing: run scripts/ensure-browser.sh"
    );
    chromium
}

/// A buyer whose email and password the browser can type: (email, token).
async fn buyer(system: &System, name: &str) -> (String, String) {
    let email = format!("{name}-{}@example.com", Uuid::new_v4().simple());
    let signed = system
        .post(
            "/v1/accounts",
            None,
            json!({"email": email, "password": PASSWORD, "displayName": name, "role": "BUYER"}),
        )
        .await;
    assert_eq!(signed.status, 201, "sign-up: {:?}", signed.body);
    let session = system
        .post(
            "/v1/sessions",
            None,
            json!({"email": email, "password": PASSWORD}),
        )
        .await;
    assert_eq!(session.status, 201, "log-in: {:?}", session.body);
    (email, session.str("/accessToken"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_pages_see_each_others_seats_live_and_a_buyer_checks_out() {
    let chromium = require_tools();
    let system = System::start().await;
    let (_, event_id) = system
        .seller_event(&[("VIP", 80_000, 2, 6), ("R", 40_000, 3, 8)], 4)
        .await;
    let seats = system.seats(&event_id).await;
    let cheap: Vec<&str> = seats
        .iter()
        .filter(|s| s.2 == 40_000)
        .map(|s| s.0.as_str())
        .collect();
    assert!(cheap.len() >= 2, "{seats:?}");
    let (a_email, a_token) = buyer(&system, "Ana").await;
    let (b_email, _) = buyer(&system, "Ben").await;

    let mut child = tokio::process::Command::new("node")
        .arg("seatmap.mjs")
        .current_dir(browser_dir())
        .env("BASE_URL", &system.base)
        .env("EVENT_ID", &event_id)
        .env("SEAT_COUNT", seats.len().to_string())
        .env("SEAT_ID", cheap[0])
        .env("SEAT_ID_2", cheap[1])
        .env("SEAT_PRICE", "40000")
        .env("WALLET_START", "100000")
        .env("BUYER_A_EMAIL", &a_email)
        .env("BUYER_A_PASSWORD", PASSWORD)
        .env("BUYER_B_EMAIL", &b_email)
        .env("BUYER_B_PASSWORD", PASSWORD)
        .env("CHROMIUM", &chromium)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("node runs (missing? run scripts/ensure-browser.sh)");
    let stdout = child.stdout.take().expect("stdout");
    let stderr = child.stderr.take().expect("stderr");
    let read_out = tokio::spawn(read_all(stdout));
    let read_err = tokio::spawn(read_all(stderr));
    let status = match tokio::time::timeout(SCRIPT_TIMEOUT, child.wait()).await {
        Ok(status) => status.expect("node exit status"),
        Err(_) => {
            let _ = child.kill().await;
            let out = read_out.await.unwrap_or_default();
            let err = read_err.await.unwrap_or_default();
            panic!(
                "seatmap.mjs ran longer than {SCRIPT_TIMEOUT:?}\n--- stdout\n{out}\n--- stderr\n{err}"
            );
        }
    };
    let out = read_out.await.unwrap_or_default();
    let err = read_err.await.unwrap_or_default();
    assert!(
        status.success(),
        "seatmap.mjs failed ({status})\n--- stdout\n{out}\n--- stderr\n{err}"
    );
    println!("{out}");

    // What the pages showed is what the system holds: the seat is sold to Ana, the
    // second seat is sold to Ben by card, Ana paid once from her wallet.
    let after = system.seats(&event_id).await;
    let status_of = |id: &str| {
        after
            .iter()
            .find(|s| s.0 == id)
            .map(|s| s.1.clone())
            .unwrap_or_default()
    };
    assert_eq!(status_of(cheap[0]), "SOLD");
    // Held, released, then bought by Ben with the sandbox's approving test card.
    assert_eq!(status_of(cheap[1]), "SOLD");
    let card = marquee_e2e::CardMoney::check(&system.pay_pool, &system.psp).await;
    card.assert_conserved();
    assert_eq!(card.psp.net, 40_000, "{card:?}");
    let me = system.get("/v1/me", Some(&a_token)).await;
    assert_eq!(
        me.str("/walletBalance/amountMinor"),
        "60000",
        "{:?}",
        me.body
    );

    system.stop().await;
}

async fn read_all(mut pipe: impl tokio::io::AsyncRead + Unpin) -> String {
    use tokio::io::AsyncReadExt as _;
    let mut bytes = Vec::new();
    let _ = pipe.read_to_end(&mut bytes).await;
    String::from_utf8_lossy(&bytes).into_owned()
}

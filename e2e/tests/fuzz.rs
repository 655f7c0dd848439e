//! schemathesis against the running system's own `/openapi.json` (issue 13): every
//! operation with bounded examples (FUZZ_MAX_EXAMPLES, default 10; `make fuzz` runs
//! more), authenticated once as a buyer and once as a seller, with all of its checks:
//! no 5xx, no response that violates the document, no undocumented status code or
//! content type, no schema-valid request refused and no schema-invalid one accepted.
//!
//! search-svc's routes (`SearchService`) run against the discovery system of
//! `marquee_e2e::search`, which has search-svc (the other system has none). Left out:
//! the SSE streams (`RealtimeService`: a stream never ends, so no response to check).
//!
//! The last test proves the harness can fail: the same document with one response
//! field's type deliberately wrong makes schemathesis exit non-zero.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use marquee_e2e::System;
use marquee_testkit::env_num;
use serde_json::{Value, json};

/// The contract tools' venv (schemathesis among them), installed if missing.
fn contract_venv() -> PathBuf {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let output = std::process::Command::new(root.join("scripts/ensure-contract-tools.sh"))
        .output()
        .expect("scripts/ensure-contract-tools.sh runs");
    assert!(
        output.status.success(),
        "ensure-contract-tools failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    PathBuf::from(String::from_utf8_lossy(&output.stdout).trim())
}

struct Run {
    success: bool,
    output: String,
}

/// Runs `schemathesis run` with `args`, killed after `limit`; prints its output under
/// `label` in one piece (tests run in parallel).
async fn schemathesis(label: &str, args: &[String], limit: Duration) -> Run {
    let bin = contract_venv().join("bin/schemathesis");
    let started = Instant::now();
    let mut child = tokio::process::Command::new(&bin)
        .args(args)
        .env("NO_COLOR", "1")
        // Its example database would carry failures over between runs.
        .arg("--generation-database=none")
        .arg("--no-color")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        // Not the crate: schemathesis keeps a `.schemathesis/` directory where it runs.
        .current_dir(std::env::temp_dir())
        .kill_on_drop(true)
        .spawn()
        .expect("schemathesis starts");
    let stdout = child.stdout.take().expect("stdout");
    let stderr = child.stderr.take().expect("stderr");
    let read = |mut pipe: Box<dyn tokio::io::AsyncRead + Unpin + Send>| {
        tokio::spawn(async move {
            let mut text = String::new();
            let _ = tokio::io::AsyncReadExt::read_to_string(&mut pipe, &mut text).await;
            text
        })
    };
    let out = read(Box::new(stdout));
    let err = read(Box::new(stderr));
    let status = match tokio::time::timeout(limit, child.wait()).await {
        Ok(status) => status.expect("schemathesis waited for"),
        Err(_) => {
            let _ = child.kill().await;
            panic!("schemathesis ran over its {limit:?} limit");
        }
    };
    let output = format!(
        "{}{}",
        out.await.unwrap_or_default(),
        err.await.unwrap_or_default()
    );
    let shown: Vec<&str> = args
        .iter()
        .map(|a| {
            if a.starts_with("Authorization:") {
                "'Authorization: Bearer …'"
            } else {
                a.as_str()
            }
        })
        .collect();
    eprintln!(
        "== {label} ({:.1?}): schemathesis {}\n{output}",
        started.elapsed(),
        shown.join(" ")
    );
    Run {
        success: status.success(),
        output,
    }
}

/// Where a schema-valid request may still be refused with 400, because the rule
/// depends on the clock or on stored data, which no schema can state: an event must
/// start in the future (`POST /v1/events`); a hold's seats must be the event's, and
/// its quantity within the event's own per-buyer limit (`POST .../holds`); a search
/// page token belongs to its own search, and a query needs a letter or digit of any
/// script, which an ECMA pattern cannot say (`GET /v1/search/events`,
/// `GET /v1/search/suggestions`); a transfer's price must be more than 0, in the
/// booking's currency and within its face value and the event's cap
/// (`POST /v1/bookings/{bookingId}/transfer-offers`); an auction's seats must be the
/// event's and free, its close in the future, its prices in the event's currency
/// (`POST .../auctions`), a bid at least the opening price and before the close, an
/// award still awaiting payment (`POST /v1/auctions/...`); a two-factor
/// confirmation's code must be the authenticator's current one, and there must be an
/// enrolment to confirm (`POST /v1/me/two-factor:confirm`). Every other check still
/// applies to them.
const CONFIG: &str = r#"
[[operations]]
include-operation-id = ["CatalogService_CreateEvent", "BookingService_CreateHold", "SearchService_SearchEvents", "SearchService_Suggest", "TransferService_CreateTransferOffer", "AuctionService_CreateAuction", "AuctionService_PlaceBid", "AuctionService_PayAward", "AuctionService_DeclineAward", "AccountService_ConfirmTwoFactor"]
checks.positive_data_acceptance.expected-statuses = ["2xx", "400", "401", "403", "404", "409", "429"]
"#;

/// The operations the system of `System::start` serves (see the module comment).
fn excluded() -> Vec<String> {
    vec![
        "--exclude-tag".into(),
        "SearchService".into(),
        "--exclude-tag".into(),
        "RealtimeService".into(),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn schemathesis_finds_nothing_against_the_running_system() {
    let sys = System::start().await;
    let (_, buyer) = sys.account("BUYER").await;
    let (_, seller) = sys.account("SELLER").await;
    // An event on sale, so reads of events and seats have something to list.
    sys.event(&seller, &[("Stalls", 5000, 2, 5)], 4).await;

    let examples = env_num("FUZZ_MAX_EXAMPLES", 10);
    let seed = env_num("FUZZ_SEED", 13);
    let limit = Duration::from_secs(env_num("FUZZ_TIMEOUT_SECS", 600));
    let config =
        std::env::temp_dir().join(format!("marquee-schemathesis-{}.toml", std::process::id()));
    std::fs::write(&config, CONFIG).expect("write the schemathesis config");
    let mut failures = Vec::new();
    for (who, token) in [("buyer", &buyer), ("seller", &seller)] {
        let mut args: Vec<String> = vec![
            "--config-file".into(),
            config.display().to_string(),
            "run".into(),
            format!("{}/openapi.json", sys.base),
            "--checks".into(),
            "all".into(),
            "--phases".into(),
            "examples,coverage,fuzzing".into(),
            "--max-examples".into(),
            examples.to_string(),
            "--seed".into(),
            seed.to_string(),
            // One worker: hypothesis' lambda descriptions are not thread safe.
            "--workers".into(),
            "1".into(),
            "--request-timeout".into(),
            "10".into(),
            "--header".into(),
            format!("Authorization: Bearer {token}"),
        ];
        args.extend(excluded());
        let run = schemathesis(&format!("as the {who}"), &args, limit).await;
        if !run.success {
            failures.push(format!("as the {who}:\n{}", run.output));
        }
    }
    let _ = std::fs::remove_file(&config);
    sys.stop().await;
    assert!(
        failures.is_empty(),
        "schemathesis found failures:\n{}",
        failures.join("\n")
    );
}

/// search-svc's routes, against the discovery system (booking-svc, search-svc and the
/// gateway), as a seller.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn schemathesis_finds_nothing_in_search() {
    let sys = marquee_e2e::search::System::start().await;
    let seller = sys.seller().await;
    let examples = env_num("FUZZ_MAX_EXAMPLES", 10);
    let seed = env_num("FUZZ_SEED", 13);
    let limit = Duration::from_secs(env_num("FUZZ_TIMEOUT_SECS", 600));
    let config = std::env::temp_dir().join(format!(
        "marquee-schemathesis-search-{}.toml",
        std::process::id()
    ));
    std::fs::write(&config, CONFIG).expect("write the schemathesis config");
    let args: Vec<String> = vec![
        "--config-file".into(),
        config.display().to_string(),
        "run".into(),
        format!("{}/openapi.json", sys.base),
        "--checks".into(),
        "all".into(),
        "--phases".into(),
        "examples,coverage,fuzzing".into(),
        "--max-examples".into(),
        examples.to_string(),
        "--seed".into(),
        seed.to_string(),
        "--workers".into(),
        "1".into(),
        "--request-timeout".into(),
        "10".into(),
        "--header".into(),
        format!("Authorization: Bearer {seller}"),
        "--include-tag".into(),
        "SearchService".into(),
    ];
    let run = schemathesis("search, as a seller", &args, limit).await;
    let _ = std::fs::remove_file(&config);
    sys.stop().await;
    assert!(run.success, "schemathesis found failures:\n{}", run.output);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_wrong_response_schema_fails_the_run() {
    let sys = System::start().await;
    let (_, buyer) = sys.account("BUYER").await;
    let mut document: Value = sys
        .http
        .get(format!("{}/openapi.json", sys.base))
        .send()
        .await
        .expect("openapi.json")
        .json()
        .await
        .expect("json");

    // GET /v1/wallet's 200 body: its balance deliberately documented as a boolean.
    let wallet = document["paths"]["/v1/wallet"]["get"]["responses"]["200"]["content"]
        ["application/json"]["schema"]["$ref"]
        .as_str()
        .expect("the wallet's response schema")
        .rsplit('/')
        .next()
        .expect("name")
        .to_owned();
    let schema = &mut document["components"]["schemas"][&wallet];
    let field = schema["properties"]
        .as_object()
        .and_then(|p| p.keys().next().cloned())
        .expect("a property of the wallet");
    schema["properties"][&field] = json!({"type": "boolean"});
    schema["required"] = json!([field]);

    let file =
        std::env::temp_dir().join(format!("marquee-openapi-wrong-{}.json", std::process::id()));
    std::fs::write(&file, serde_json::to_vec(&document).expect("json")).expect("write");
    let args: Vec<String> = vec![
        "run".into(),
        file.display().to_string(),
        "--url".into(),
        sys.base.clone(),
        "--checks".into(),
        "response_schema_conformance".into(),
        "--include-path".into(),
        "/v1/wallet".into(),
        "--max-examples".into(),
        "3".into(),
        "--header".into(),
        format!("Authorization: Bearer {buyer}"),
    ];
    let run = schemathesis(
        "a deliberately wrong document (must fail)",
        &args,
        Duration::from_secs(300),
    )
    .await;
    let _ = std::fs::remove_file(&file);
    sys.stop().await;
    assert!(
        !run.success,
        "schemathesis passed a response that violates the document"
    );
    assert!(
        run.output.contains("Response violates schema"),
        "schemathesis failed for another reason:\n{}",
        run.output
    );
}

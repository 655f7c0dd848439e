//! The OpenAPI document the gateway serves is a valid OpenAPI document (checked by
//! openapi-spec-validator, from `scripts/ensure-contract-tools.sh`'s venv, which this
//! test installs when missing: it never skips) and lists every route of the route
//! table, each SSE route as `text/event-stream`, with the bearer security scheme.

use std::path::Path;
use std::process::Command;

use marquee_gateway::{RouteTable, openapi};

/// The contract tools' venv, installed if missing.
fn contract_venv() -> std::path::PathBuf {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let output = Command::new(root.join("scripts/ensure-contract-tools.sh"))
        .output()
        .expect("scripts/ensure-contract-tools.sh runs");
    assert!(
        output.status.success(),
        "ensure-contract-tools failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let venv = String::from_utf8_lossy(&output.stdout).trim().to_owned();
    Path::new(&venv).to_path_buf()
}

#[test]
fn the_document_is_valid_openapi_and_lists_every_route() {
    let table = RouteTable::marquee().expect("route table");
    let document = openapi::document(&table);

    let file = std::env::temp_dir().join(format!("marquee-openapi-{}.json", std::process::id()));
    std::fs::write(&file, serde_json::to_vec_pretty(&document).expect("json")).expect("write");
    let validator = contract_venv().join("bin/openapi-spec-validator");
    let checked = Command::new(&validator)
        .arg(&file)
        .output()
        .expect("openapi-spec-validator runs");
    let _ = std::fs::remove_file(&file);
    assert!(
        checked.status.success(),
        "the OpenAPI document is not valid:\n{}{}",
        String::from_utf8_lossy(&checked.stdout),
        String::from_utf8_lossy(&checked.stderr)
    );

    let paths = document["paths"].as_object().expect("paths");
    let operations: usize = paths
        .values()
        .map(|p| p.as_object().map_or(0, |o| o.len()))
        .sum();
    assert_eq!(operations, table.routes().len(), "one operation per route");
    for route in table.routes() {
        let method = route.method.as_str().to_ascii_lowercase();
        let operation = paths
            .values()
            .filter_map(|p| p.get(&method))
            .find(|op| {
                op["operationId"]
                    .as_str()
                    .is_some_and(|id| route.grpc_path.ends_with(&id.replacen('_', "/", 1)))
            })
            .unwrap_or_else(|| panic!("no operation for {} {}", route.method, route.grpc_path));
        let media = if route.server_streaming {
            "text/event-stream"
        } else {
            "application/json"
        };
        let success = route.success.as_str();
        assert!(
            operation["responses"][success]["content"][media].is_object(),
            "{}: no {success} {media} response: {operation}",
            route.grpc_path
        );
        assert!(
            operation["responses"]["default"]["content"]["application/json"]["schema"]["$ref"]
                .as_str()
                .is_some_and(|r| r.ends_with("/Status")),
            "{}: no error body",
            route.grpc_path
        );
    }
    assert_eq!(
        document["components"]["securitySchemes"]["bearerAuth"]["scheme"], "bearer",
        "the bearer token scheme"
    );
}

/// Writes the document (pretty JSON) to the file named by `OPENAPI_OUT` when it is set
/// (scripts/check-frontend-types.sh generates gateway/static/api.d.ts from it); does
/// nothing otherwise.
#[test]
fn write_the_document_to_openapi_out() {
    let Some(out) = std::env::var_os("OPENAPI_OUT") else {
        return;
    };
    let document = openapi::document(&RouteTable::marquee().expect("route table"));
    let mut json = serde_json::to_vec_pretty(&document).expect("json");
    json.push(b'\n');
    std::fs::write(&out, json).expect("write OPENAPI_OUT");
}

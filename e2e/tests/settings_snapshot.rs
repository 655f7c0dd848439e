//! What each binary reads from its environment, generated from the services' own
//! config loaders and compared with `k8s/ci/settings.json`, the snapshot that
//! `k8s/ci/validate.py` holds the Kubernetes manifests to (a manifest may set only what
//! its service reads, and must set what it requires or what defaults to loopback or to
//! the build tree).
//!
//! Each loader runs on a recording `Settings` that ignores the process environment
//! (`Settings::from_json_only("{}")`), so the snapshot is the same wherever the test
//! runs. After changing a setting, regenerate the snapshot and commit it:
//!
//! ```sh
//! UPDATE_SETTINGS_SNAPSHOT=1 cargo test -p marquee-e2e --test settings_snapshot
//! ```

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use marquee_infra::config::{READ_OUTSIDE_SETTINGS, SettingSpec, Settings};

const UPDATE_VAR: &str = "UPDATE_SETTINGS_SNAPSHOT";
const SNAPSHOT: &str = "k8s/ci/settings.json";
const REGENERATE: &str =
    "UPDATE_SETTINGS_SNAPSHOT=1 cargo test -p marquee-e2e --test settings_snapshot";
/// Stands for the workspace's directory in a default (search-svc's synonyms file), so
/// the snapshot does not depend on where it was generated.
const WORKSPACE_MARK: &str = "<workspace>";

type Loader = fn(&mut Settings);

/// The settings each loader runs on: none at all, and the one setting without which a
/// loader stops early.
const INPUTS: [&str; 2] = ["{}", r#"{"JWT_SECRET": "snapshot"}"#];

/// What each binary reads, by mode (`serve`: no argument; `migrate`), through the
/// function its `main.rs` calls.
fn binaries() -> Vec<(&'static str, Vec<(&'static str, Loader)>)> {
    vec![
        (
            "gateway",
            vec![("serve", |env| {
                marquee_gateway::GatewayConfig::from_settings(env);
            })],
        ),
        (
            "booking-svc",
            vec![
                ("serve", |env| {
                    booking_svc::BookingConfig::from_settings(env);
                }),
                // booking-svc/src/main.rs loads only the mode's config: `booking-svc
                // migrate` reads its database URL alone.
                ("migrate", |env| {
                    booking_svc::migrate_config(env);
                }),
            ],
        ),
        (
            "pay-svc",
            vec![
                ("serve", |env| {
                    pay_svc::PayConfig::from_settings(env);
                }),
                // As booking-svc: `pay-svc migrate` reads its database URL alone.
                ("migrate", |env| {
                    pay_svc::migrate_config(env);
                }),
            ],
        ),
        (
            "realtime-svc",
            vec![("serve", |env| {
                realtime_svc::RealtimeConfig::from_settings(env);
            })],
        ),
        (
            "search-svc",
            vec![("serve", |env| {
                search_svc::SearchConfig::from_settings(env);
            })],
        ),
        (
            "psp-sandbox",
            vec![("serve", |env| {
                psp_sandbox::PspConfig::from_settings(env);
            })],
        ),
    ]
}

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("e2e sits in the workspace")
        .to_path_buf()
}

/// One line of the snapshot.
struct Entry {
    spec: SettingSpec,
    /// Where a variable read outside `Settings` is read, and what unset means.
    outside: Option<&'static str>,
}

/// What `load` reads, with the variables every binary reads outside `Settings`. A
/// setting may be read on one path only: the token settings once `JWT_SECRET` is set
/// (without it the token loader stops at that error). So `load` runs on each of
/// [`INPUTS`], and what any of them read is listed (values never are: each setting is
/// listed with the default its reader passed).
fn read_by(binary: &str, mode: &str, load: Loader) -> Vec<Entry> {
    let mut specs = Vec::new();
    let mut undescribed = Vec::new();
    for input in INPUTS {
        let mut env = Settings::from_json_only(input).expect("a flat JSON object");
        load(&mut env);
        specs.extend(env.specs());
        undescribed.extend(env.undescribed());
    }
    specs.sort();
    specs.dedup();
    undescribed.sort();
    undescribed.dedup();
    assert!(
        undescribed.is_empty(),
        "{binary} {mode} reads {undescribed:?} with a bare Settings::lookup, so its default \
         and whether it is required or secret are unknown: read it with a typed accessor \
         (or, string, millis, listen_addr) or describe it in described_lookup \
         (infra/src/config.rs)"
    );
    let root = format!("{}/", workspace().display());
    let mut entries: Vec<Entry> = specs
        .into_iter()
        .map(|mut spec| {
            spec.default = spec
                .default
                .map(|d| d.replace(&root, &format!("{WORKSPACE_MARK}/")));
            Entry {
                spec,
                outside: None,
            }
        })
        .collect();
    for (name, note) in READ_OUTSIDE_SETTINGS {
        entries.push(Entry {
            spec: SettingSpec {
                name: (*name).to_owned(),
                default: None,
                required: false,
                secret: false,
            },
            outside: Some(note),
        });
    }
    entries.sort_by(|a, b| a.spec.name.cmp(&b.spec.name));
    for pair in entries.windows(2) {
        assert!(
            pair[0].spec.name != pair[1].spec.name,
            "{binary} {mode} reads {} twice, differently: {:?} and {:?}; one variable \
             must have one default",
            pair[0].spec.name,
            pair[0].spec,
            pair[1].spec
        );
    }
    entries
}

fn json_string(s: &str) -> String {
    serde_json::to_string(s).expect("a string serializes")
}

fn render(entry: &Entry) -> String {
    let spec = &entry.spec;
    assert!(
        !(spec.secret && spec.default.is_some()),
        "{} is a secret: its default is never recorded",
        spec.name
    );
    let default = spec
        .default
        .as_deref()
        .map_or("null".to_owned(), json_string);
    let outside = entry.outside.map_or(String::new(), |note| {
        format!(", \"read_outside_settings\": {}", json_string(note))
    });
    format!(
        "{{\"name\": {}, \"default\": {default}, \"required\": {}, \"secret\": {}{outside}}}",
        json_string(&spec.name),
        spec.required,
        spec.secret
    )
}

/// The snapshot, one setting a line so that a change reads as a small diff.
fn snapshot() -> String {
    let about = [
        "What each Marquee binary reads from its environment, by mode (serve: no argument; \
         migrate: `<binary> migrate`).",
        "default: the value used when the variable is unset, null when there is none \
         (required, unset means none, or a secret, whose default is never recorded); \
         <workspace> is the source tree the binary was built from.",
        "required: the binary refuses to start without it (outside development mode).",
        "read_outside_settings: read directly rather than through \
         marquee_infra::config::Settings, and where.",
        "Generated by e2e/tests/settings_snapshot.rs from the services' config loaders; \
         do not edit. Regenerate with: UPDATE_SETTINGS_SNAPSHOT=1 cargo test -p \
         marquee-e2e --test settings_snapshot",
        "Read by k8s/ci/validate.py (scripts/check-k8s.sh).",
    ];
    let mut out = String::from("{\n  \"about\": [\n");
    let lines: Vec<String> = about
        .iter()
        .map(|line| format!("    {}", json_string(line)))
        .collect();
    out += &lines.join(",\n");
    out += "\n  ],\n  \"binaries\": {\n";
    let binaries: BTreeMap<_, _> = binaries().into_iter().collect();
    let mut blocks = Vec::new();
    for (binary, modes) in &binaries {
        let mut mode_blocks = Vec::new();
        for (mode, load) in modes {
            let entries: Vec<String> = read_by(binary, mode, *load)
                .iter()
                .map(|e| format!("        {}", render(e)))
                .collect();
            mode_blocks.push(format!(
                "      {}: [\n{}\n      ]",
                json_string(mode),
                entries.join(",\n")
            ));
        }
        blocks.push(format!(
            "    {}: {{\n{}\n    }}",
            json_string(binary),
            mode_blocks.join(",\n")
        ));
    }
    out += &blocks.join(",\n");
    out += "\n  }\n}\n";
    out
}

/// The lines of `old` and `new` that differ (longest common subsequence), with their
/// line numbers.
fn diff(old: &str, new: &str) -> String {
    let (a, b): (Vec<&str>, Vec<&str>) = (old.lines().collect(), new.lines().collect());
    let mut lcs = vec![vec![0usize; b.len() + 1]; a.len() + 1];
    for i in (0..a.len()).rev() {
        for j in (0..b.len()).rev() {
            lcs[i][j] = if a[i] == b[j] {
                lcs[i + 1][j + 1] + 1
            } else {
                lcs[i + 1][j].max(lcs[i][j + 1])
            };
        }
    }
    let (mut i, mut j, mut out) = (0, 0, String::new());
    while i < a.len() || j < b.len() {
        if i < a.len() && j < b.len() && a[i] == b[j] {
            i += 1;
            j += 1;
        } else if j < b.len() && (i == a.len() || lcs[i][j + 1] >= lcs[i + 1][j]) {
            out += &format!("+{:>4} {}\n", j + 1, b[j]);
            j += 1;
        } else {
            out += &format!("-{:>4} {}\n", i + 1, a[i]);
            i += 1;
        }
    }
    out
}

#[test]
fn the_settings_snapshot_matches_what_the_services_read() {
    let path = workspace().join(SNAPSHOT);
    let generated = snapshot();
    serde_json::from_str::<serde_json::Value>(&generated).expect("the snapshot is JSON");
    let update = std::env::var(UPDATE_VAR).is_ok_and(|v| !v.is_empty() && v != "0");
    if update {
        std::fs::write(&path, &generated).expect("write the snapshot");
        eprintln!("wrote {}", path.display());
        return;
    }
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        committed == generated,
        "{SNAPSHOT} is not what the services read (- the file, + the code):\n{}\n\
         If the code is right, regenerate the snapshot and commit it:\n    {REGENERATE}\n\
         then run scripts/check-k8s.sh: the manifests may need the change too.",
        diff(&committed, &generated)
    );
}

/// A variable read with `std::env::var` escapes the recording: each must be listed in
/// `READ_OUTSIDE_SETTINGS` (infra/src/config.rs), which the snapshot includes.
#[test]
fn every_variable_read_outside_settings_is_declared() {
    let declared: Vec<&str> = READ_OUTSIDE_SETTINGS.iter().map(|(n, _)| *n).collect();
    let var = regex::Regex::new(r"env::var(?:_os)?\(\s*([^)]*)\)").unwrap();
    let literal = regex::Regex::new(r#"^"([A-Za-z0-9_]+)"$"#).unwrap();
    let bypass = regex::Regex::new(r"\b(env_or|env_string|dev_mode)\(").unwrap();
    let root = workspace();
    let mut problems = Vec::new();
    for crate_dir in [
        "infra",
        "gateway",
        "booking-svc",
        "pay-svc",
        "realtime-svc",
        "search-svc",
        "psp-sandbox",
    ] {
        let mut files = Vec::new();
        collect_rs(&root.join(crate_dir).join("src"), &mut files);
        for file in files {
            let relative = file.strip_prefix(&root).unwrap().display().to_string();
            let text = std::fs::read_to_string(&file).unwrap();
            // Unit tests sit at the end of a module, after #[cfg(test)].
            let text = text.split("#[cfg(test)]").next().unwrap_or_default();
            // Settings itself, and the test helpers beside it, read the environment.
            let is_settings = relative == "infra/src/config.rs";
            for found in var.captures_iter(text) {
                let argument = found[1].trim();
                match literal.captures(argument) {
                    Some(name) if declared.contains(&&name[1]) => {}
                    Some(name) => problems.push(format!(
                        "{relative}: reads {} outside Settings, undeclared",
                        &name[1]
                    )),
                    None if is_settings => {}
                    None => problems.push(format!(
                        "{relative}: reads the variable named by `{argument}` outside Settings"
                    )),
                }
            }
            if text.contains("from_default_env") && !declared.contains(&"RUST_LOG") {
                problems.push(format!(
                    "{relative}: reads RUST_LOG (EnvFilter), undeclared"
                ));
            }
            if !is_settings {
                for found in bypass.captures_iter(text) {
                    problems.push(format!(
                        "{relative}: calls config::{}, which reads the environment unrecorded",
                        &found[1]
                    ));
                }
            }
        }
    }
    assert!(
        problems.is_empty(),
        "read a variable through Settings, or add it to READ_OUTSIDE_SETTINGS \
         (infra/src/config.rs) and regenerate the snapshot ({REGENERATE}):\n{}",
        problems.join("\n")
    );
}

fn collect_rs(dir: &Path, files: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            collect_rs(&path, files);
        } else if path.extension().is_some_and(|e| e == "rs")
            && !matches!(
                path.file_name().and_then(|n| n.to_str()),
                Some("tests.rs" | "proptests.rs")
            )
        {
            files.push(path);
        }
    }
}

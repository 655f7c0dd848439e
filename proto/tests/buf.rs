//! The breaking-change check of scripts/check-proto.sh (issue 13) catches deliberate
//! breakage. Each test copies proto/ (its .proto files and buf.yaml) into a fresh git
//! repository whose `main` has one commit, changes the copy, and runs the script on it:
//! a removed field and a renamed RPC fail naming the field and the RPC, a new optional
//! field passes. The tools come from scripts/ensure-contract-tools.sh (installed when
//! missing): these tests never skip.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

const MANIFEST_DIR: &str = env!("CARGO_MANIFEST_DIR");
const BOOKING_PROTO: &str = "proto/marquee/booking/v1/booking.proto";

#[test]
fn a_removed_field_fails_the_breaking_check() {
    let repo = Repo::new("removed-field");
    repo.edit(BOOKING_PROTO, |s| {
        replace_once(s, "  PaymentMethod payment_method = 7;\n", "")
    });
    let out = repo.check();
    assert_lint_passed(&out);
    assert_failed_with(
        &out,
        "Previously present field \"7\" with name \"payment_method\" on message \"Booking\" was deleted",
    );
}

#[test]
fn a_renamed_rpc_fails_the_breaking_check() {
    let repo = Repo::new("renamed-rpc");
    // The request message is renamed with it, so that lint still passes and the
    // failure is the breaking check's alone.
    repo.edit(BOOKING_PROTO, |s| {
        let s = replace_once(
            s,
            "rpc GetEvent(GetEventRequest)",
            "rpc FetchEvent(FetchEventRequest)",
        );
        replace_once(
            &s,
            "message GetEventRequest {",
            "message FetchEventRequest {",
        )
    });
    let out = repo.check();
    assert_lint_passed(&out);
    assert_failed_with(
        &out,
        "Previously present RPC \"GetEvent\" on service \"CatalogService\" was deleted",
    );
}

#[test]
fn a_new_optional_field_passes() {
    let repo = Repo::new("additive");
    repo.edit(BOOKING_PROTO, |s| {
        replace_once(
            s,
            "message Event {\n",
            "message Event {\n  // Added by proto/tests/buf.rs.\n  optional string test_note = 1000;\n",
        )
    });
    let out = repo.check();
    let text = text(&out);
    assert!(
        out.status.success(),
        "an additive change must pass check-proto.sh:\n{text}"
    );
    assert!(
        text.contains("check-proto: 2 passed, 0 failed"),
        "both steps must have run:\n{text}"
    );
    assert!(
        text.contains("ok   buf breaking proto (WIRE_JSON + no removed RPC/service) against main"),
        "the breaking check must compare with main:\n{text}"
    );
}

/// A git repository in the test's own directory under Cargo's target tmpdir (named
/// after the test and the process: runs sharing a target dir do not collide), holding
/// a copy of proto/ committed on `main`. Removed on drop unless the test failed.
struct Repo {
    root: PathBuf,
}

impl Repo {
    fn new(name: &str) -> Repo {
        ensure_tools();
        let root = Path::new(env!("CARGO_TARGET_TMPDIR"))
            .join(format!("buf-{name}-{}", std::process::id()));
        if root.exists() {
            fs::remove_dir_all(&root).expect("remove a previous run's copy");
        }
        let copied = copy_protos(Path::new(MANIFEST_DIR), &root.join("proto"));
        assert!(
            copied.iter().any(|p| p.ends_with("buf.yaml")),
            "proto/buf.yaml is missing"
        );
        assert!(
            copied.len() > 10,
            "expected the contracts to be copied, got {copied:?}"
        );
        let repo = Repo { root };
        repo.git(&["init", "--quiet", "--initial-branch=main"]);
        repo.git(&["add", "--all"]);
        repo.git(&[
            "commit",
            "--quiet",
            "--message",
            "the contracts as published",
        ]);
        repo
    }

    fn edit(&self, file: &str, change: impl FnOnce(&str) -> String) {
        let path = self.root.join(file);
        let before = fs::read_to_string(&path).expect("read the copy");
        fs::write(&path, change(&before)).expect("write the copy");
    }

    /// scripts/check-proto.sh on this repository: lint, then breaking against `main`.
    fn check(&self) -> Output {
        let script = Path::new(MANIFEST_DIR).join("../scripts/check-proto.sh");
        let out = Command::new(&script)
            .arg(&self.root)
            .env_remove("PROTO_AGAINST")
            .output()
            .unwrap_or_else(|e| panic!("run {}: {e}", script.display()));
        eprintln!("{}", text(&out));
        out
    }

    fn git(&self, args: &[&str]) {
        let out = Command::new("git")
            .current_dir(&self.root)
            .args([
                "-c",
                "user.name=marquee-proto tests",
                "-c",
                "user.email=tests@marquee.invalid",
                "-c",
                "commit.gpgsign=false",
            ])
            .args(args)
            .env_remove("GIT_DIR")
            .env_remove("GIT_WORK_TREE")
            .env_remove("GIT_INDEX_FILE")
            .output()
            .expect("run git");
        assert!(out.status.success(), "git {args:?} failed:\n{}", text(&out));
    }
}

impl Drop for Repo {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            let _ = fs::remove_dir_all(&self.root);
        }
    }
}

/// Installs buf once per test binary (the tests run in parallel; the installer
/// replaces the venv wholesale, so it must not run twice at once).
fn ensure_tools() {
    static TOOLS: OnceLock<()> = OnceLock::new();
    TOOLS.get_or_init(|| {
        let script = Path::new(MANIFEST_DIR).join("../scripts/ensure-contract-tools.sh");
        let out = Command::new(&script)
            .output()
            .unwrap_or_else(|e| panic!("run {}: {e}", script.display()));
        assert!(
            out.status.success(),
            "scripts/ensure-contract-tools.sh failed:\n{}",
            text(&out)
        );
    });
}

/// Copies every .proto file and buf's configuration under `from` into `to`, keeping
/// the layout; returns the copied files' paths relative to `from`.
fn copy_protos(from: &Path, to: &Path) -> Vec<PathBuf> {
    let mut copied = Vec::new();
    let mut dirs = vec![PathBuf::new()];
    while let Some(rel) = dirs.pop() {
        for entry in fs::read_dir(from.join(&rel)).expect("read proto/") {
            let entry = entry.expect("read proto/");
            let name = entry.file_name();
            let name = name.to_string_lossy();
            let rel = rel.join(&*name);
            if entry.file_type().expect("file type").is_dir() {
                if !name.starts_with('.') && name != "target" {
                    dirs.push(rel);
                }
            } else if name.ends_with(".proto") || name == "buf.yaml" || name == "buf.lock" {
                let dest = to.join(&rel);
                fs::create_dir_all(dest.parent().expect("parent")).expect("create the copy");
                fs::copy(from.join(&rel), &dest).expect("copy a proto");
                copied.push(rel);
            }
        }
    }
    copied
}

fn replace_once(s: &str, from: &str, to: &str) -> String {
    assert_eq!(
        s.matches(from).count(),
        1,
        "{from:?} must occur exactly once in {BOOKING_PROTO} (the test's edit is stale)"
    );
    s.replacen(from, to, 1)
}

fn assert_lint_passed(out: &Output) {
    let text = text(out);
    assert!(
        text.contains("ok   buf lint proto"),
        "lint should pass on this change (only the breaking check should fail):\n{text}"
    );
}

fn assert_failed_with(out: &Output, finding: &str) {
    let text = text(out);
    assert!(
        !out.status.success(),
        "check-proto.sh must fail on a breaking change:\n{text}"
    );
    assert!(
        text.contains("FAIL buf breaking proto"),
        "the breaking step must be the one failing:\n{text}"
    );
    assert!(
        text.contains(finding),
        "the finding must name what broke ({finding}):\n{text}"
    );
    assert!(
        text.contains("check-proto: 1 passed, 1 failed"),
        "unexpected summary:\n{text}"
    );
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

#!/usr/bin/env python3
"""Validates built overlays (the output of `kubectl kustomize`), offline.

Run by scripts/check-k8s.sh as
    validate.py --repo . --crds k8s/crds --k8s-versions 1.30,1.37 dev=built/dev.yaml ...

1. Every built-in object against the Kubernetes JSON schemas of each version given
   (kubernetes-validate, strict: an unknown field is an error).
2. Every custom resource against the openAPIV3Schema of its CRD vendored under
   k8s/crds/ (also strict: an object schema that lists its properties and neither
   preserves unknown fields nor sets additionalProperties rejects unknown ones, which
   is what the API server's pruning would silently drop). CEL rules
   (x-kubernetes-validations) are not evaluated here.
3. Marquee's own rules, which a schema cannot express, against k8s/ci/settings.json:
   what each binary reads in each mode (serve, or `<binary> migrate`), with each
   setting's default and whether it is required or secret, generated from the
   services' config loaders by e2e/tests/settings_snapshot.rs (which fails when the
   code and the file differ). For every container of the Marquee image:
   - its command is one of the image's binaries, with no argument (serve) or
     `migrate` for a binary that has a migrate mode;
   - every variable it is given (env, and the data of its envFrom ConfigMaps) is one
     its binary reads in that mode, or an OTEL_* variable (IMPLICIT_PREFIXES), so a
     misspelt or misplaced setting fails here instead of being silently ignored;
   - it is given every setting its binary cannot do without in a pod, in that mode:
     those with no default (required), and those whose default is wrong in a pod
     (wrong_in_a_pod: a loopback address or URL, a path into the build tree). A
     migration Job is held to its binary's `migrate` entry, which lists the database
     URL alone (and the variables read outside Settings);
   - a secret setting (JWT_SECRET, JWT_PREVIOUS_SECRETS) comes from a Secret
     (secretKeyRef), never a literal or a ConfigMap;
   - MARQUEE_DEV is never set (it allows the public development JWT secret);
   - a serving binary that reads MIGRATE_ON_START is given MIGRATE_ON_START=false (the
     migration Job migrates);
   - listen addresses (*_ADDR) are not loopback.
   And the prod overlay contains no Secret (Secrets there are created out of band),
   runs no sandbox payment provider (psp-sandbox) and does not point pay-svc's
   PSP_URL at it.
Any problem is printed, naming the object, the container and the variable, and the
exit status is 1.
"""

from __future__ import annotations

import argparse
import copy
import json
import pathlib
import sys
import urllib.parse

import jsonschema
import kubernetes_validate
import yaml

BINARIES = ("gateway", "booking-svc", "pay-svc", "realtime-svc", "search-svc", "psp-sandbox")
# The sandbox payment provider: never in prod, where pay-svc's PSP_URL names the real
# provider (k8s/overlays/dev/sandbox-psp.yaml).
SANDBOX_BINARY = "psp-sandbox"
# What each binary reads, by mode: generated from the code (see the docstring).
SETTINGS_SNAPSHOT = "k8s/ci/settings.json"
REGENERATE = "UPDATE_SETTINGS_SNAPSHOT=1 cargo test -p marquee-e2e --test settings_snapshot"

# Variables a library reads by itself, which no Marquee code names, so the snapshot
# cannot list them. Every other variable a service reads, RUST_LOG (read through
# tracing-subscriber's EnvFilter) included, is in the snapshot.
IMPLICIT_PREFIXES = (
    # The OpenTelemetry SDK and OTLP exporter read the standard OTEL_* variables
    # (OTEL_SERVICE_NAME, OTEL_RESOURCE_ATTRIBUTES, OTEL_EXPORTER_OTLP_HEADERS and
    # _TIMEOUT, OTEL_BSP_*, OTEL_TRACES_SAMPLER, ...) once telemetry::init turns the
    # export on (infra/src/telemetry.rs).
    "OTEL_",
)
# The source tree a default path points into (e2e/tests/settings_snapshot.rs writes
# it so); the image has none of it.
WORKSPACE_MARK = "<workspace>/"


def load_docs(path: pathlib.Path) -> list[dict]:
    with path.open() as f:
        return [d for d in yaml.safe_load_all(f) if d]


def kn(doc: dict) -> str:
    meta = doc.get("metadata") or {}
    return f"{doc.get('kind')}/{meta.get('name')}"


# --- custom resources -------------------------------------------------------------


def strict_schema(schema: dict) -> dict:
    """The CRD's structural schema as JSON Schema, rejecting unknown fields."""

    def walk(node):
        if isinstance(node, list):
            return [walk(n) for n in node]
        if not isinstance(node, dict):
            return node
        node = {k: walk(v) for k, v in node.items()}
        if node.pop("nullable", False) and "type" in node:
            node["type"] = [node["type"], "null"]
        if node.get("x-kubernetes-int-or-string") and "anyOf" not in node:
            node["anyOf"] = [{"type": "integer"}, {"type": "string"}]
        if (
            node.get("type") == "object"
            and "properties" in node
            and "additionalProperties" not in node
            and not node.get("x-kubernetes-preserve-unknown-fields")
        ):
            node["additionalProperties"] = False
        return node

    root = walk(copy.deepcopy(schema))
    # apiVersion, kind and metadata are the API server's, not the CRD's to restrict.
    root.setdefault("properties", {})
    for key in ("apiVersion", "kind", "metadata"):
        root["properties"].setdefault(key, {})
    return root


def load_crds(crd_dir: pathlib.Path) -> dict[tuple[str, str, str], dict]:
    schemas = {}
    for path in sorted(crd_dir.rglob("*.yaml")):
        for doc in load_docs(path):
            if doc.get("kind") != "CustomResourceDefinition":
                continue
            spec = doc["spec"]
            for version in spec["versions"]:
                if not version.get("served", False):
                    continue
                key = (spec["group"], version["name"], spec["names"]["kind"])
                schemas[key] = strict_schema(version["schema"]["openAPIV3Schema"])
    return schemas


def split_api_version(api_version: str) -> tuple[str, str]:
    if "/" in api_version:
        group, version = api_version.split("/", 1)
        return group, version
    return "", api_version


# --- Marquee's rules --------------------------------------------------------------


def load_settings(path: pathlib.Path) -> tuple[dict[str, dict[str, dict[str, dict]]], list[str]]:
    """binary -> mode -> setting name -> its entry in the snapshot; and any problem."""
    try:
        data = json.loads(path.read_text())
        snapshot = {
            binary: {mode: {e["name"]: e for e in entries} for mode, entries in modes.items()}
            for binary, modes in data["binaries"].items()
        }
    except (OSError, ValueError, KeyError, TypeError) as error:
        return {}, [f"{path}: cannot read the settings snapshot ({error}); regenerate it: {REGENERATE}"]
    problems = [
        f"{path}: has no `serve` settings for {binary}; regenerate it: {REGENERATE}"
        for binary in BINARIES
        if "serve" not in snapshot.get(binary, {})
    ]
    return snapshot, problems


def host_of(value: str) -> str | None:
    """The host of an address (host:port, [v6]:port) or of a URL."""
    value = value.strip()
    if "://" in value:
        try:
            return urllib.parse.urlsplit(value).hostname
        except ValueError:
            return None
    if value.startswith("["):
        return value[1:].split("]", 1)[0]
    if value.count(":") > 1:  # a bare IPv6 address
        return value
    return value.rsplit(":", 1)[0] if ":" in value else value


def is_loopback(value: str) -> bool:
    """Whether an address, a URL or a comma-separated list of them names loopback."""
    for part in value.split(","):
        host = (host_of(part) or "").lower()
        if host in ("localhost", "::1", "0:0:0:0:0:0:0:1") or host.startswith("127."):
            return True
    return False


def is_build_tree_path(value: str) -> bool:
    """Whether a default is a path into the source tree the binary was built from."""
    if value.startswith(WORKSPACE_MARK) or "/work/" in value:
        return True
    # A relative path (search-svc/synonyms.txt) resolves against the working directory.
    return "/" in value and "://" not in value and not value.startswith("/")


def wrong_in_a_pod(entry: dict) -> str | None:
    """Why a binary cannot run in a pod without this setting, or None."""
    default = entry.get("default")
    if entry.get("required"):
        return "the binary refuses to start without it"
    if default is None:
        return None
    if is_loopback(default):
        return f"its default {default} is loopback, only right on a laptop"
    if is_build_tree_path(default):
        return f"its default {default} is a path in the build tree, which the image does not have"
    return None


def marquee_binary(container: dict) -> str | None:
    """The binary a container of the Marquee image runs; None for other images."""
    image = str(container.get("image", "")).split("@", 1)[0]
    name = image.rsplit("/", 1)[-1].split(":", 1)[0]
    if name != "marquee":
        return None
    command = container.get("command") or [""]
    prefix = "/usr/local/bin/"
    return command[0][len(prefix):] if command[0].startswith(prefix) else ""


def describe_source(source: str, value: object) -> str:
    """Where a variable's value comes from: `env`, `env, secretKeyRef`, `ConfigMap x`."""
    if isinstance(value, dict):
        kind = next(iter(value), "valueFrom")
        return f"{source}, {kind}"
    return f"{source}, a literal value" if source == "env" else source


def check_marquee(overlay: str, docs: list[dict], snapshot: dict) -> list[str]:
    problems = []
    configmaps = {
        d["metadata"]["name"]: d.get("data") or {} for d in docs if d.get("kind") == "ConfigMap"
    }
    if overlay == "prod":
        problems += [f"{overlay}: {kn(d)}: the prod overlay must not contain a Secret" for d in docs if d.get("kind") == "Secret"]
    for doc in docs:
        template = (doc.get("spec") or {}).get("template")
        if doc.get("kind") not in ("Deployment", "StatefulSet", "Job", "DaemonSet") or not template:
            continue
        for container in template["spec"].get("containers", []) + template["spec"].get("initContainers", []):
            binary = marquee_binary(container)
            if binary is None:
                continue
            where = f"{overlay}: {kn(doc)} container {container['name']}"
            # name -> (value, or its valueFrom; where it comes from)
            given: dict[str, tuple[object, str]] = {}
            for source in container.get("envFrom", []):
                ref = source.get("configMapRef")
                if ref:
                    if ref["name"] not in configmaps:
                        problems.append(f"{where}: envFrom ConfigMap {ref['name']} is not in the overlay")
                    for name, value in configmaps.get(ref["name"], {}).items():
                        given[name] = (value, f"ConfigMap {ref['name']}")
                else:
                    problems.append(f"{where}: envFrom other than a ConfigMap ({source}): secrets go through secretKeyRef")
            for env in container.get("env", []):
                given[env["name"]] = (env.get("value", env.get("valueFrom")), "env")

            if "MARQUEE_DEV" in given:
                problems.append(f"{where}: sets MARQUEE_DEV (development mode: the public JWT secret)")
            for name, (value, _) in given.items():
                if name.endswith("_ADDR") and isinstance(value, str) and is_loopback(value):
                    problems.append(f"{where}: {name}={value} listens on loopback only")

            if overlay == "prod":
                if binary == SANDBOX_BINARY:
                    problems.append(f"{where}: runs the sandbox payment provider, which prod never runs")
                psp_url = given.get("PSP_URL", (None, ""))[0]
                if isinstance(psp_url, str) and (host_of(psp_url) or "").split(".")[0] == SANDBOX_BINARY:
                    problems.append(f"{where}: PSP_URL={psp_url} names the sandbox payment provider: prod names the real one")

            if binary not in BINARIES:
                problems.append(f"{where}: command {container.get('command')} is not one of /usr/local/bin/{{{','.join(BINARIES)}}}")
                continue
            args = (container.get("command") or [])[1:] + (container.get("args") or [])
            if args == ["migrate"]:
                mode = "migrate"
            elif args:
                problems.append(f"{where}: {binary} takes no arguments but `migrate`, got {args}")
                continue
            else:
                mode = "serve"
            reads = snapshot.get(binary, {}).get(mode)
            if reads is None:
                if mode == "migrate" and binary in snapshot:
                    problems.append(f"{where}: {binary} has no migrate mode")
                continue  # a binary missing from the snapshot is reported once, on loading it
            run = f"`{binary}{' migrate' if mode == 'migrate' else ''}`"

            for name, (value, source) in given.items():
                entry = reads.get(name)
                if entry is None:
                    if not name.startswith(IMPLICIT_PREFIXES):
                        problems.append(
                            f"{where}: sets {name} ({describe_source(source, value)}), which {run} never reads "
                            f"({SETTINGS_SNAPSHOT}): a misspelt setting, or another service's"
                        )
                elif entry.get("secret") and not (isinstance(value, dict) and "secretKeyRef" in value):
                    problems.append(
                        f"{where}: {name} is a secret: it must come from a Secret (secretKeyRef), "
                        f"not {describe_source(source, value)}"
                    )
            for name, entry in sorted(reads.items()):
                reason = wrong_in_a_pod(entry)
                if reason and name not in given:
                    secret = " (from a Secret, secretKeyRef)" if entry.get("secret") else ""
                    problems.append(f"{where}: {name} is not set{secret}: {reason} ({SETTINGS_SNAPSHOT})")
            if mode == "serve" and "MIGRATE_ON_START" in reads:
                value = given.get("MIGRATE_ON_START", (None, ""))[0]
                if value != "false":
                    shown = "unset (default true)" if value is None else repr(value)
                    problems.append(
                        f"{where}: MIGRATE_ON_START must be false (the migration Job migrates), is {shown}"
                    )
    return problems


# --- main -------------------------------------------------------------------------


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repo", type=pathlib.Path, required=True)
    parser.add_argument("--crds", type=pathlib.Path, required=True)
    parser.add_argument("--k8s-versions", required=True, help="comma-separated, e.g. 1.30,1.37")
    parser.add_argument("built", nargs="+", help="overlay=path of its built YAML")
    args = parser.parse_args()

    crds = load_crds(args.crds)
    snapshot, problems = load_settings(args.repo / SETTINGS_SNAPSHOT)
    versions = [v.strip() for v in args.k8s_versions.split(",") if v.strip()]
    counts = {"builtin": 0, "custom": 0}
    for item in args.built:
        overlay, _, path = item.partition("=")
        docs = load_docs(pathlib.Path(path))
        if not docs:
            problems.append(f"{overlay}: built nothing")
        for doc in docs:
            group, version = split_api_version(str(doc.get("apiVersion", "")))
            key = (group, version, doc.get("kind"))
            if key in crds:
                counts["custom"] += 1
                validator = jsonschema.Draft7Validator(crds[key])
                for error in sorted(validator.iter_errors(doc), key=lambda e: list(e.absolute_path)):
                    at = "/".join(str(p) for p in error.absolute_path) or "(root)"
                    problems.append(f"{overlay}: {kn(doc)} at {at}: {error.message}")
                continue
            if "." in group and not group.endswith(".k8s.io"):
                problems.append(f"{overlay}: {kn(doc)}: no vendored CRD for {doc.get('apiVersion')} {doc.get('kind')} under {args.crds}")
                continue
            counts["builtin"] += 1
            for k8s in versions:
                try:
                    kubernetes_validate.validate(doc, k8s, strict=True)
                except kubernetes_validate.ValidationError as error:
                    at = "/".join(str(p) for p in error.path) or "(root)"
                    problems.append(f"{overlay}: {kn(doc)} (Kubernetes {k8s}) at {at}: {error.message}")
                except (kubernetes_validate.SchemaNotFoundError, kubernetes_validate.InvalidSchemaError) as error:
                    problems.append(f"{overlay}: {kn(doc)} (Kubernetes {k8s}): {error}")
        problems += check_marquee(overlay, docs, snapshot)

    for problem in problems:
        print(f"FAIL {problem}")
    print(
        f"validate: {counts['builtin']} built-in objects against Kubernetes {', '.join(versions)}, "
        f"{counts['custom']} custom resources against {len(crds)} vendored CRD versions: "
        f"{len(problems)} problem(s)"
    )
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())

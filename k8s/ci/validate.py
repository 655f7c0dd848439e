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
3. Marquee's own rules, which a schema cannot express:
   - MARQUEE_DEV is never set (it allows the public development JWT secret);
   - every Marquee container gets JWT_SECRET from a Secret, and is given the settings
     whose defaults are wrong in a pod (loopback listeners and dependencies, the
     synonyms path; MIGRATE_ON_START=false in the Deployments);
   - every variable a Marquee container is given (env and envFrom ConfigMaps) is a
     name its service's source (that crate's src/ and infra/src/) mentions, so a
     misspelt setting fails here instead of being silently ignored;
   - listen addresses (*_ADDR) are not loopback;
   - a Marquee container's command is one of the image's binaries;
   - the prod overlay contains no Secret (Secrets there are created out of band).
Any problem is printed and the exit status is 1.
"""

from __future__ import annotations

import argparse
import copy
import pathlib
import re
import sys

import jsonschema
import kubernetes_validate
import yaml

BINARIES = ("gateway", "booking-svc", "pay-svc", "realtime-svc", "search-svc")
# What each workload must be given, because the service's default would be wrong in
# a pod: loopback listeners and loopback dependencies, the build tree's synonyms path,
# migrating on start. JWT_SECRET has no default at all outside development mode.
REQUIRED = {
    "gateway": ["GATEWAY_ADDR", "BOOKING_URL", "PAY_URL", "REALTIME_URL", "SEARCH_URL"],
    "booking-svc": [
        "BOOKING_GRPC_ADDR", "BOOKING_METRICS_ADDR", "BOOKING_DATABASE_URL", "REDIS_URL",
        "AMQP_URL", "PAY_URL", "MIGRATE_ON_START",
    ],
    "pay-svc": ["PAY_GRPC_ADDR", "PAY_METRICS_ADDR", "PAY_DATABASE_URL", "AMQP_URL", "MIGRATE_ON_START"],
    "realtime-svc": ["REALTIME_GRPC_ADDR", "REALTIME_METRICS_ADDR", "BOOKING_URL", "AMQP_URL"],
    "search-svc": [
        "SEARCH_GRPC_ADDR", "SEARCH_METRICS_ADDR", "BOOKING_URL", "REDIS_URL", "AMQP_URL",
        "SEARCH_SYNONYMS",
    ],
}
REQUIRED_FOR_MIGRATE = {"booking-svc": ["BOOKING_DATABASE_URL"], "pay-svc": ["PAY_DATABASE_URL"]}

# Variables read by libraries rather than by a literal in our source.
IMPLICIT_VARS = {"RUST_LOG", "MARQUEE_CONFIG_FILE"}
IMPLICIT_PREFIXES = ("OTEL_",)


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

LITERAL = re.compile(r'"([A-Z][A-Z0-9_]{2,})"')


def names_read(repo: pathlib.Path, crate: str) -> set[str]:
    """Every UPPER_CASE string literal in the crate's and infra's non-test source."""
    names = set(IMPLICIT_VARS)
    for src in (repo / crate / "src", repo / "infra" / "src"):
        for path in src.rglob("*.rs"):
            if path.name in ("tests.rs", "proptests.rs"):
                continue
            text = path.read_text()
            # Unit tests sit at the end of a module, after #[cfg(test)].
            text = text.split("#[cfg(test)]", 1)[0]
            names.update(LITERAL.findall(text))
    return names


def marquee_binary(container: dict) -> str | None:
    """The binary a container of the Marquee image runs; None for other images."""
    image = str(container.get("image", "")).split("@", 1)[0]
    name = image.rsplit("/", 1)[-1].split(":", 1)[0]
    if name != "marquee":
        return None
    command = container.get("command") or [""]
    prefix = "/usr/local/bin/"
    return command[0][len(prefix):] if command[0].startswith(prefix) else ""


def check_marquee(overlay: str, docs: list[dict], repo: pathlib.Path) -> list[str]:
    problems = []
    configmaps = {
        d["metadata"]["name"]: d.get("data") or {} for d in docs if d.get("kind") == "ConfigMap"
    }
    if overlay == "prod":
        problems += [f"{overlay}: {kn(d)}: the prod overlay must not contain a Secret" for d in docs if d.get("kind") == "Secret"]
    read_cache: dict[str, set[str]] = {}
    for doc in docs:
        template = (doc.get("spec") or {}).get("template")
        if doc.get("kind") not in ("Deployment", "StatefulSet", "Job", "DaemonSet") or not template:
            continue
        for container in template["spec"].get("containers", []) + template["spec"].get("initContainers", []):
            binary = marquee_binary(container)
            if binary is None:
                continue
            where = f"{overlay}: {kn(doc)} container {container['name']}"
            if binary not in BINARIES:
                problems.append(f"{where}: command {container.get('command')} is not one of /usr/local/bin/{{{','.join(BINARIES)}}}")
            settings: dict[str, object] = {}
            for source in container.get("envFrom", []):
                ref = source.get("configMapRef")
                if ref:
                    if ref["name"] not in configmaps:
                        problems.append(f"{where}: envFrom ConfigMap {ref['name']} is not in the overlay")
                    settings.update({k: v for k, v in configmaps.get(ref["name"], {}).items()})
                else:
                    problems.append(f"{where}: envFrom other than a ConfigMap ({source}): secrets go through secretKeyRef")
            for env in container.get("env", []):
                settings[env["name"]] = env.get("value", env.get("valueFrom"))
            if "MARQUEE_DEV" in settings:
                problems.append(f"{where}: sets MARQUEE_DEV (development mode: the public JWT secret)")
            jwt = settings.get("JWT_SECRET")
            if not (isinstance(jwt, dict) and "secretKeyRef" in jwt):
                problems.append(f"{where}: JWT_SECRET must come from a Secret (secretKeyRef)")
            args = (container.get("command") or [])[1:] + (container.get("args") or [])
            if args == ["migrate"]:
                required = REQUIRED_FOR_MIGRATE.get(binary)
                if required is None:
                    problems.append(f"{where}: {binary} has no migrate mode")
                    required = []
            elif args:
                problems.append(f"{where}: {binary} takes no arguments but `migrate`, got {args}")
                required = []
            else:
                required = REQUIRED.get(binary, [])
                if settings.get("MIGRATE_ON_START", "false") != "false":
                    problems.append(f"{where}: MIGRATE_ON_START must be false (the migrate Job migrates)")
            for name in required:
                if name not in settings:
                    problems.append(f"{where}: {name} is not set (the default is only right on a laptop)")
            known = read_cache.setdefault(binary, names_read(repo, binary)) if binary in BINARIES else None
            for name, value in settings.items():
                if known is not None and name not in known and not name.startswith(IMPLICIT_PREFIXES):
                    problems.append(f"{where}: sets {name}, which {binary} never reads")
                if name.endswith("_ADDR") and isinstance(value, str):
                    host = value.rsplit(":", 1)[0].strip("[]")
                    if host in ("127.0.0.1", "localhost", "::1"):
                        problems.append(f"{where}: {name}={value} listens on loopback only")
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
    versions = [v.strip() for v in args.k8s_versions.split(",") if v.strip()]
    problems: list[str] = []
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
        problems += check_marquee(overlay, docs, args.repo)

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

#!/usr/bin/env python3
"""Offline checks of the observability stack that no schema expresses; run by
scripts/check-k8s.sh (k8s/README.md, "What is checked"):

    check.py rules       prometheusrule.yaml's groups are alerts.yaml's, exactly;
    check.py promql      every PromQL expression of the dashboards (panel targets and
                         variable queries) parses: promtool check rules on a rule file
                         made of them, Grafana's variables replaced by sample values;
    check.py collector   otel-collector.config.yaml: every component a pipeline or the
                         service names is defined, and every connector is the exporter
                         of one pipeline and the receiver of another.

That the metrics the dashboards name are exported is e2e/tests/metrics.rs's job (it
needs the running services). Prints each problem and exits 1 if there is any.
"""

from __future__ import annotations

import json
import pathlib
import re
import subprocess
import sys
import tempfile

import yaml

HERE = pathlib.Path(__file__).resolve().parent


def check_rules() -> list[str]:
    alerts = yaml.safe_load((HERE / "alerts.yaml").read_text())
    rule = yaml.safe_load((HERE / "prometheusrule.yaml").read_text())
    if rule.get("spec", {}).get("groups") != alerts.get("groups"):
        return ["prometheusrule.yaml: spec.groups differ from alerts.yaml's groups (copy them over)"]
    return []


# Grafana's variables, replaced by values of the right kind so that promtool parses.
GRAFANA_DURATIONS = re.compile(r"\$__(rate_interval|interval|range)(_ms|_s)?\b|\$\{__(rate_interval|interval|range)\}")
GRAFANA_VARIABLES = re.compile(r"\$\{[^}]*\}|\$\w+|\[\[\w+\]\]")
# Grafana's own variable-query functions: label_values(expr, label), query_result(expr).
LABEL_VALUES = re.compile(r"^\s*label_values\((.*),\s*[a-zA-Z_]\w*\s*\)\s*$", re.S)
QUERY_RESULT = re.compile(r"^\s*query_result\((.*)\)\s*$", re.S)


def dashboard_exprs(path: pathlib.Path) -> list[tuple[str, str]]:
    """(where, expr) of every PromQL expression of one dashboard."""
    board = json.loads(path.read_text())
    found = []

    def panels(items):
        for panel in items:
            yield panel
            yield from panels(panel.get("panels", []))

    for panel in panels(board.get("panels", [])):
        for target in panel.get("targets", []):
            if target.get("expr"):
                found.append((f"{path.name}: panel {panel.get('title')!r} {target.get('refId')}", target["expr"]))
    for variable in board.get("templating", {}).get("list", []):
        if variable.get("type") != "query":
            continue
        query = variable.get("query")
        if isinstance(query, dict):
            query = query.get("query")
        if not query:
            continue
        match = LABEL_VALUES.match(query) or QUERY_RESULT.match(query)
        if match:
            query = match.group(1)
        elif re.match(r"^\s*(label_values|label_names|metrics)\(", query):
            continue  # label_values(label), label_names(), metrics(regex): no PromQL
        found.append((f"{path.name}: variable {variable.get('name')!r}", query))
    return found


def check_promql() -> list[str]:
    problems = []
    groups = []
    for path in sorted((HERE / "dashboards").glob("*.json")):
        try:
            exprs = dashboard_exprs(path)
        except (json.JSONDecodeError, AttributeError) as error:
            problems.append(f"{path.name}: not a dashboard: {error}")
            continue
        if not exprs:
            problems.append(f"{path.name}: no PromQL expression")
        for n, (where, expr) in enumerate(exprs):
            expr = GRAFANA_DURATIONS.sub("5m", expr)
            expr = GRAFANA_VARIABLES.sub("x", expr)
            groups.append({"name": where, "rules": [{"record": f"dashboard:check:{n}", "expr": expr}]})
    if not groups:
        return problems + ["no dashboard under dashboards/"]
    # Group names must be unique in a rule file.
    seen: dict[str, int] = {}
    for group in groups:
        seen[group["name"]] = seen.get(group["name"], 0) + 1
        if seen[group["name"]] > 1:
            group["name"] += f" #{seen[group['name']]}"
    with tempfile.NamedTemporaryFile("w", suffix=".rules.yaml", delete=False) as f:
        yaml.safe_dump({"groups": groups}, f, allow_unicode=True, sort_keys=False)
        rules = f.name
    try:
        done = subprocess.run(["promtool", "check", "rules", rules], capture_output=True, text=True)
    finally:
        pathlib.Path(rules).unlink()
    if done.returncode != 0:
        problems.append(f"dashboards: promtool rejects an expression:\n{done.stdout}{done.stderr}")
    else:
        print(f"promql: {len(groups)} dashboard expressions parse")
    return problems


def check_collector() -> list[str]:
    config = yaml.safe_load((HERE / "otel-collector.config.yaml").read_text())
    problems = []
    service = config.get("service") or {}
    defined = {kind: set((config.get(kind) or {}).keys()) for kind in ("receivers", "processors", "exporters", "connectors", "extensions")}
    for name in service.get("extensions", []):
        if name not in defined["extensions"]:
            problems.append(f"service.extensions: {name} is not defined under extensions")
    pipelines = service.get("pipelines") or {}
    if not pipelines:
        problems.append("service.pipelines: none")
    as_exporter, as_receiver = set(), set()
    for pipeline, spec in pipelines.items():
        signal = pipeline.split("/", 1)[0]
        if signal not in ("traces", "metrics", "logs", "profiles"):
            problems.append(f"pipeline {pipeline}: unknown signal {signal}")
        for kind, extra in (("receivers", "connectors"), ("processors", None), ("exporters", "connectors")):
            names = (spec or {}).get(kind, [])
            if kind != "processors" and not names:
                problems.append(f"pipeline {pipeline}: no {kind}")
            for name in names:
                if name in defined[kind]:
                    continue
                if extra and name in defined[extra]:
                    (as_receiver if kind == "receivers" else as_exporter).add(name)
                    continue
                problems.append(f"pipeline {pipeline}: {kind[:-1]} {name} is not defined")
    for connector in defined["connectors"]:
        if connector not in as_exporter or connector not in as_receiver:
            problems.append(f"connector {connector}: must be an exporter of one pipeline and a receiver of another")
    used = set(service.get("extensions", []))
    for spec in pipelines.values():
        for key in ("receivers", "processors", "exporters"):
            used.update((spec or {}).get(key, []))
    for kind, names in defined.items():
        for name in sorted(names - used):
            problems.append(f"{kind}.{name} is defined but not used")
    return problems


def main() -> int:
    checks = {"rules": check_rules, "promql": check_promql, "collector": check_collector}
    wanted = sys.argv[1:] or list(checks)
    problems = []
    for name in wanted:
        if name not in checks:
            print(f"usage: check.py [{'|'.join(checks)}]...", file=sys.stderr)
            return 2
        problems += checks[name]()
    for problem in problems:
        print(f"FAIL {problem}")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())

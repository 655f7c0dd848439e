#!/usr/bin/env python3
"""The benchmark figures of `make bench` and `make bench-peers` (issue 15), as tables.

Each benchmark in e2e/benches appends its figures to the results file, one JSON object
a line (e2e/src/bench_report.rs: scenario, params, below_target_size, metric, value,
unit, target, pass, at). This script reads them back; only the standard library.

  bench-report.py table [--file F] [--expect "hold storm,purchase,..."]
                        [--failed "purchase=101,..."] [--peers]
      One aligned table: scenario | metric | target | figure | ok/MISSED, the machine
      and a summary. --expect names the scenarios that were run (one missing from the
      file is listed as not recorded), --failed those whose command failed (with its
      exit status), --peers adds Marquee beside pretix with the ratios.
  bench-report.py pretix [--file F] < output-of-pretix-bench.sh
      Parses the figures `../shared/peers/pretix/bench.sh` prints (load.py's lines and
      bench_state.py's checks) and appends them as scenario "pretix".

The file is $BENCH_RESULTS, else target/bench-results.jsonl under the workspace root.
When a figure of a scenario appears more than once (`bench.sh` with BENCH_RUNS=3, the
default), the table shows the median run's value, judged against the target, with the
range of all runs; a check passes only when it passed in every run.
Exit status: 0, or 2 on a usage error or an unreadable file (table: a missing file is
reported and is not an error; pretix: 1 when no figure could be parsed).
"""

import argparse
import datetime
import json
import os
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
ORDER = ["hold storm", "purchase", "search", "SSE", "waiting room", "auction", "pretix"]


def results_path(arg):
    if arg:
        return Path(arg)
    env = os.environ.get("BENCH_RESULTS")
    return Path(env) if env else ROOT / "target" / "bench-results.jsonl"


# ------------------------------------------------------------------ reading


def read_records(path):
    """The figures of `path`, one record per (scenario, metric) in first-seen order:
    with several runs of a figure (`bench.sh` with BENCH_RUNS), the median run's
    record, carrying `runs` and the `low`/`high` of the values; a check (true/false)
    passes only when it passed in every run."""
    runs = {}
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    except OSError as e:
        sys.exit(f"bench-report: cannot read {path}: {e}")
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
            key = (str(record["scenario"]), str(record["metric"]))
        except (ValueError, KeyError, TypeError) as e:
            print(f"bench-report: {path}:{number}: skipped, not a figure ({e})", file=sys.stderr)
            continue
        runs.setdefault(key, []).append(record)
    return [median_record(records) for records in runs.values()]


def median_record(records):
    """One record standing for every run of a figure (see read_records)."""
    numbers = [r for r in records
               if isinstance(r.get("value"), (int, float)) and not isinstance(r.get("value"), bool)]
    if len(numbers) == len(records):
        ordered = sorted(records, key=lambda r: float(r["value"]))
        record = dict(ordered[(len(ordered) - 1) // 2])  # the lower median for an even count
        record["low"], record["high"] = float(ordered[0]["value"]), float(ordered[-1]["value"])
    else:
        failing = [r for r in records if r.get("pass") is False or r.get("value") is False]
        record = dict(failing[0] if failing else records[-1])
        record["failing"] = len(failing)
    record["runs"] = len(records)
    return record


def by_scenario(records, expect):
    scenarios = {}
    for record in records:
        scenarios.setdefault(record["scenario"], []).append(record)
    names = list(expect)
    names += [n for n in ORDER if n in scenarios and n not in names]
    names += [n for n in scenarios if n not in names]
    return names, scenarios


# ------------------------------------------------------------------ formatting


def fmt_number(value):
    magnitude = abs(value)
    if magnitude >= 100:
        return f"{value:,.0f}"
    if magnitude >= 10:
        return f"{value:.1f}"
    if value == int(value):
        return f"{int(value)}"
    return f"{value:.2f}"


def with_unit(text, unit):
    if not unit:
        return text
    if unit.startswith("/") or unit == "×":
        return f"{text}{unit}"
    return f"{text} {unit}"


def fmt_value(value, unit):
    if value is None:
        return "—"
    if isinstance(value, bool):
        return "yes" if value else "NO"
    if isinstance(value, (int, float)):
        return with_unit(fmt_number(float(value)), unit)
    return str(value)


def verdict(record):
    if record.get("target") is None:
        return "—"
    passed = record.get("pass")
    if passed is None:
        return "n/a"
    return "ok" if passed else "MISSED"


def render(rows, header):
    """rows: lists of cells, or a str for a line of its own (indented under the table)."""
    cells = [header] + [r for r in rows if not isinstance(r, str)]
    widths = [max(len(c[i]) for c in cells) for i in range(len(header))]
    out = ["  ".join(h.ljust(w) for h, w in zip(header, widths)).rstrip()]
    out.append("  ".join("─" * w for w in widths))
    for row in rows:
        if isinstance(row, str):
            out.append(" " * (widths[0] + 2) + row)
        else:
            out.append("  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip())
    return "\n".join(out)


def machine_line():
    model, cores, memory = "unknown CPU", os.cpu_count() or 0, ""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    try:
        with open("/proc/meminfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("MemTotal:"):
                    memory = f", {int(line.split()[1]) / 1024 / 1024:.1f} GiB RAM"
                    break
    except (OSError, ValueError, IndexError):
        pass
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else cores
    usable = f" ({usable} usable)" if usable != cores else ""
    now = datetime.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z")
    return f"machine: {model}, {cores} cores{usable}{memory}; {now}"


# ------------------------------------------------------------------ table


def parse_list(text):
    return [item.strip() for item in (text or "").split(",") if item.strip()]


def table(args):
    path = results_path(args.file)
    records = read_records(path)
    expect = parse_list(args.expect)
    failed = dict(item.partition("=")[::2] for item in parse_list(args.failed))
    print()
    print("== Marquee benchmarks against issue 15's targets ==")
    print(machine_line())
    print(f"figures: {path}")
    if records is None:
        print(f"no figures recorded: {path} does not exist")
        records = []
    names, scenarios = by_scenario(records, expect)
    rows, missing, reduced = [], [], []
    met = missed = unknown = 0
    for name in names:
        figures = scenarios.get(name, [])
        if not figures:
            missing.append(name)
            why = (f"its command failed (exit {failed[name]})" if name in failed
                   else "not run, or stopped before recording")
            rows.append([name, "(no figures recorded)", "", "", why])
            continue
        for i, record in enumerate(figures):
            ok = verdict(record)
            met += ok == "ok"
            missed += ok == "MISSED"
            unknown += ok == "n/a"
            shown = fmt_value(record.get("value"), record.get("unit", ""))
            if record.get("runs", 1) > 1 and "low" in record and record["low"] != record["high"]:
                shown += (f" (median of {record['runs']}: "
                          f"{fmt_number(record['low'])}–{fmt_number(record['high'])})")
            elif record.get("failing"):
                shown += f" (in {record['failing']} of {record['runs']} runs)"
            elif record.get("runs", 1) > 1:
                shown += f" (all {record['runs']} runs)"
            rows.append([
                name if i == 0 else "",
                str(record.get("metric", "")),
                record.get("target") or "—",
                shown,
                ok,
            ])
        last = figures[-1]
        note = f"({last.get('params', '')}"
        if last.get("below_target_size"):
            note += f"; below the targets' size of {last['below_target_size']}"
            reduced.append(name)
        rows.append(note + ")")
        if name in failed:
            rows.append(f"!! the benchmark's command failed (exit {failed[name]}): see its output above")
    print()
    print(render(rows, ["scenario", "metric", "target", "figure", "ok"]))
    print()
    summary = f"summary: {met} met, {missed} MISSED"
    if unknown:
        summary += f", {unknown} n/a (the figure cannot tell)"
    print(summary)
    if reduced:
        print("smaller runs than the targets are stated for: " + ", ".join(reduced))
    if missing:
        print("no figures from: " + ", ".join(missing))
    if failed:
        print("failed commands: " + ", ".join(f"{k} (exit {v})" for k, v in failed.items()))
    if args.peers:
        peers(scenarios)
    return 0


def figure(scenarios, scenario, metric):
    for record in scenarios.get(scenario, []):
        if record.get("metric") == metric and isinstance(record.get("value"), (int, float)):
            return float(record["value"]), record.get("unit", "")
    return None


def peers(scenarios):
    pairs = [
        ("hold requests/s", ("hold storm", "hold requests"), ("pretix", "cart requests"), True),
        ("holds granted/s", ("hold storm", "holds granted"), ("pretix", "cart positions created"), True),
        ("hold p99", ("hold storm", "hold p99"), ("pretix", "cart p99"), False),
        ("purchases/s", ("purchase", "confirmed purchases"), ("pretix", "orders created"), True),
        ("purchase p99", ("purchase", "checkout p99"), ("pretix", "order p99"), False),
    ]
    rows = []
    for label, ours, theirs, more_is_better in pairs:
        a, b = figure(scenarios, *ours), figure(scenarios, *theirs)
        ratio = "—"
        if a and b and b[0] > 0 and a[0] > 0:
            r = a[0] / b[0]
            ratio = f"{fmt_number(r)}×"
            if not more_is_better and r < 1:
                ratio += f" ({fmt_number(1 / r)}× shorter)"
        rows.append([
            label,
            with_unit(fmt_number(a[0]), a[1]) if a else "—",
            with_unit(fmt_number(b[0]), b[1]) if b else "—",
            ratio,
        ])
    oversold = []
    for scenario, metrics in (
        ("hold storm", ["oversold seats"]),
        ("purchase", ["oversold seats"]),
        ("pretix", ["cart oversold", "order oversold"]),
    ):
        values = [figure(scenarios, scenario, m) for m in metrics]
        oversold.append(" / ".join(fmt_number(v[0]) if v else "—" for v in values))
    rows.append(["oversold (holds / purchases)", f"{oversold[0]} / {oversold[1]}", oversold[2], ""])
    print()
    print("== Marquee beside pretix, same session (Marquee ÷ pretix) ==")
    print(render(rows, ["", "Marquee", "pretix", "ratio"]))
    pretix = scenarios.get("pretix")
    print(f"pretix run: {pretix[-1].get('params', '')}" if pretix else "pretix: no figures recorded")
    print(
        "Holds: Marquee's hold requests (seats, 1–4 a request) count 201 and 409 answers like\n"
        "pretix's cart requests count 201 and 400 (quota sold out). Purchases: Marquee's\n"
        "confirmed bookings over first request → last settled (checkout answers 202, the\n"
        "wallet payment settles through the saga) beside pretix's orders created (free\n"
        "orders, answered when created); purchase p99 is Marquee's checkout request."
    )


# ------------------------------------------------------------------ pretix

LOAD = re.compile(r"^mode=(?P<mode>\w+) .*?elapsed=(?P<elapsed>[\d.]+)s req/s=(?P<rps>[\d.]+) "
                  r"codes=(?P<codes>\{[^}]*\}) p50=(?P<p50>[\d.]+)ms p95=(?P<p95>[\d.]+)ms "
                  r"p99=(?P<p99>[\d.]+)ms ok/s=(?P<oks>[\d.]+)")
CHECK = re.compile(r"^check mode=(?P<mode>\w+) .*?oversold=(?P<oversold>\d+) .*?"
                   r"http201=(?P<http201>\S+) db_created=(?P<db>\d+) -> (?P<verdict>\w+)")
HEADER = re.compile(r"^==== (?P<what>pretix .*?); quota (?P<quota>\d+), (?P<cores>\d+) cores ====")


def pretix(args):
    loads, checks, header = {}, {}, None
    text = sys.stdin.read()
    for line in text.splitlines():
        line = line.strip()
        if m := LOAD.match(line):
            loads[m["mode"]] = (m, line)
        elif m := CHECK.match(line):
            checks[m["mode"]] = m
        elif m := HEADER.match(line):
            header = m
    if not loads:
        print("bench-report: no figures in pretix's output (no `mode=... req/s=...` line)",
              file=sys.stderr)
        return 1
    total = {mode: re.search(r"total=(\d+) conc=(\d+)", line) for mode, (_, line) in loads.items()}
    sizes = ", ".join(f"{mode} {t[1]} requests at {t[2]} in flight"
                      for mode, t in total.items() if t)
    params = (f"{header['what']}; {sizes}; quota {header['quota']}" if header else sizes)
    now = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    lines = []

    def add(metric, value, unit, target=None, passed=None):
        lines.append({"scenario": "pretix", "params": params, "below_target_size": None,
                      "metric": metric, "value": value, "unit": unit, "target": target,
                      "pass": passed, "at": now})

    names = {"cart": ("cart requests", "cart positions created", "cart"),
             "order": ("order requests", "orders created", "order")}
    for mode, (m, _) in loads.items():
        requests, created, short = names.get(mode, (f"{mode} requests", f"{mode} created", mode))
        add(requests, float(m["rps"]), "/s")
        add(created, float(m["oks"]), "/s")
        add(f"{short} p50", float(m["p50"]), "ms")
        add(f"{short} p99", float(m["p99"]), "ms")
        if c := checks.get(mode):
            add(f"{short} oversold", int(c["oversold"]), "", "0", int(c["oversold"]) == 0)
            consistent = c["http201"] == c["db"]
            add(f"{short}: database = HTTP 201s", consistent, "", "yes", consistent)
    path = results_path(args.file)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("a", encoding="utf-8") as f:
            for line in lines:
                f.write(json.dumps(line, ensure_ascii=False) + "\n")
    except OSError as e:
        print(f"bench-report: cannot append to {path}: {e}", file=sys.stderr)
        return 2
    print(f"report: {len(lines)} figures of \"pretix\" appended to {path}")
    return 0


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    t = sub.add_parser("table", help="print the table of the recorded figures")
    t.add_argument("--file")
    t.add_argument("--expect", help="comma-separated scenarios that were run")
    t.add_argument("--failed", help="comma-separated scenario=exit-status of failed commands")
    t.add_argument("--peers", action="store_true", help="also Marquee beside pretix")
    p = sub.add_parser("pretix", help="record pretix's figures read from stdin")
    p.add_argument("--file")
    args = parser.parse_args()
    return table(args) if args.command == "table" else pretix(args)


if __name__ == "__main__":
    sys.exit(main())

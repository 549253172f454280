#!/usr/bin/env python3
"""Checks deploy/prometheus and deploy/grafana (`make alerts`).

- `promtool check rules` on the alert rules, `promtool test rules` on their unit tests, and
  `promtool check config` on the example scrape config that loads them;
- every alert has a test that fires it and one that does not: with its expression replaced by
  one that never fires, and by one that always fires, the unit tests must fail;
- every PromQL expression of the Grafana dashboard parses (checked by promtool as recording
  rules, with Grafana's variables filled in);
- every `coffer_*` metric the rules and the dashboard name is one the code exports (a string
  literal in a crate's sources), so a renamed metric cannot leave an alert that never fires.

`--self-test` first proves the checker catches what it is for: a renamed metric, a dashboard
query that does not parse, and (for every alert) the mutations above.
"""

import argparse
import copy
import json
import pathlib
import re
import shutil
import subprocess
import sys
import tempfile

import yaml

ROOT = pathlib.Path(__file__).resolve().parent.parent
RULES = ROOT / "deploy/prometheus/alerts.yml"
TESTS = ROOT / "deploy/prometheus/alerts.test.yml"
DASHBOARD = ROOT / "deploy/grafana/coffer.json"
SOURCES = ["src", "raft/src", "kv/src", "model/src", "sdk/src"]
NEVER = "vector(1) == 0"
ALWAYS = "vector(1)"
METRIC = re.compile(r"\bcoffer_[a-z0-9_]+")
# Suffixes Prometheus adds to a histogram's series.
HISTOGRAM_SUFFIXES = ("_bucket", "_sum", "_count")
# Grafana's variables, as the dashboard uses them, and what stands in for them.
GRAFANA_VARIABLES = {"$__rate_interval": "5m", "$__interval": "1m", "$node_region": "us-east", "$node": "n1"}


class Failure(Exception):
    pass


def promtool(promtool_bin, *args, cwd):
    return subprocess.run([promtool_bin, *args], cwd=cwd, capture_output=True, text=True)


def exported_metrics():
    """Metric names written as string literals in the crates' sources."""
    names = set()
    for d in SOURCES:
        for f in (ROOT / d).rglob("*.rs"):
            names.update(re.findall(r'"(coffer_[a-z0-9_]+)"', f.read_text()))
    return names


def named_metrics(text):
    out = set()
    for m in METRIC.findall(text):
        for s in HISTOGRAM_SUFFIXES:
            if m.endswith(s):
                m = m[: -len(s)]
                break
        out.add(m)
    return out


def dashboard_exprs(dashboard):
    exprs = []
    for panel in dashboard.get("panels", []):
        for t in panel.get("targets", []):
            if "expr" in t:
                exprs.append((panel.get("title", "?"), t["expr"]))
    return exprs


def check_metric_names(rules_text, dashboard, exported):
    wanted = named_metrics(rules_text) | named_metrics(json.dumps(dashboard))
    unknown = sorted(wanted - exported)
    if unknown:
        raise Failure(f"metrics named in the rules or dashboard that no code exports: {', '.join(unknown)}")


def check_dashboard(dashboard, promtool_bin):
    if not isinstance(dashboard.get("panels"), list) or not dashboard["panels"]:
        raise Failure("the dashboard has no panels")
    exprs = dashboard_exprs(dashboard)
    if not exprs:
        raise Failure("the dashboard has no queries")
    rules = []
    for i, (title, e) in enumerate(exprs):
        for var, value in GRAFANA_VARIABLES.items():
            e = e.replace(var, value)
        rules.append({"record": f"dashboard:panel_{i}", "expr": e})
    with tempfile.TemporaryDirectory() as d:
        p = pathlib.Path(d) / "dashboard.yml"
        p.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}))
        r = promtool(promtool_bin, "check", "rules", str(p), cwd=d)
        if r.returncode != 0:
            raise Failure(f"a dashboard query does not parse:\n{r.stdout}{r.stderr}")


def run_unit_tests(rules, tests_text, promtool_bin):
    """Writes rules and tests to a temp dir and runs promtool on them: (ok, output)."""
    with tempfile.TemporaryDirectory() as d:
        (pathlib.Path(d) / "alerts.yml").write_text(yaml.safe_dump(rules, sort_keys=False))
        (pathlib.Path(d) / "alerts.test.yml").write_text(tests_text)
        c = promtool(promtool_bin, "check", "rules", "alerts.yml", cwd=d)
        if c.returncode != 0:
            return False, c.stdout + c.stderr
        t = promtool(promtool_bin, "test", "rules", "alerts.test.yml", cwd=d)
        return t.returncode == 0, t.stdout + t.stderr


def alerts_of(rules):
    return [(gi, ri, r["alert"]) for gi, g in enumerate(rules["groups"]) for ri, r in enumerate(g["rules"]) if "alert" in r]


def check_mutations(rules, tests_text, promtool_bin):
    """Each alert, made to never fire and to always fire, must fail the unit tests."""
    for gi, ri, name in alerts_of(rules):
        for expr, what in ((NEVER, "never fires"), (ALWAYS, "always fires")):
            mutated = copy.deepcopy(rules)
            mutated["groups"][gi]["rules"][ri]["expr"] = expr
            ok, _ = run_unit_tests(mutated, tests_text, promtool_bin)
            if ok:
                raise Failure(f"alert {name}: the unit tests still pass when it {what}; add a test that catches it")


def check(promtool_bin, rules_text, tests_text, dashboard, mutations):
    if mutations:
        # The files as they are (the mutations below work on a parsed copy).
        for args in (("check", "rules", RULES.name), ("test", "rules", TESTS.name), ("check", "config", "prometheus.yml")):
            r = promtool(promtool_bin, *args, cwd=RULES.parent)
            if r.returncode != 0:
                raise Failure(f"promtool {' '.join(args)}:\n{r.stdout}{r.stderr}")
    rules = yaml.safe_load(rules_text)
    ok, out = run_unit_tests(rules, tests_text, promtool_bin)
    if not ok:
        raise Failure(f"the alert rules or their unit tests fail:\n{out}")
    check_dashboard(dashboard, promtool_bin)
    check_metric_names(rules_text, dashboard, exported_metrics())
    if mutations:
        check_mutations(rules, tests_text, promtool_bin)


def self_test(promtool_bin, rules_text, tests_text, dashboard):
    """The checker must reject each planted break (and the real files' mutations, in check)."""
    breaks = {
        "a renamed metric": (rules_text.replace("coffer_out_of_disk", "coffer_out_of_disk_flag"), dashboard),
        "a dashboard query that does not parse": (
            rules_text,
            {**dashboard, "panels": dashboard["panels"] + [{"title": "broken", "targets": [{"expr": "sum(rate(coffer_raft_term[5m])"}]}]},
        ),
        "a dashboard metric no code exports": (
            rules_text,
            {**dashboard, "panels": dashboard["panels"] + [{"title": "gone", "targets": [{"expr": "coffer_no_such_thing"}]}]},
        ),
    }
    for what, (r, d) in breaks.items():
        try:
            check(promtool_bin, r, tests_text, d, mutations=False)
        except Failure:
            print(f"self-test: caught {what}")
            continue
        raise Failure(f"self-test: the checker missed {what}")
    # A rule that never fires, planted in the real rules, is caught by the mutation check's
    # own mechanism (run on every alert in the real check).
    rules = yaml.safe_load(rules_text)
    gi, ri, name = alerts_of(rules)[0]
    rules["groups"][gi]["rules"][ri]["expr"] = NEVER
    ok, _ = run_unit_tests(rules, tests_text, promtool_bin)
    if ok:
        raise Failure(f"self-test: {name} made to never fire still passes its tests")
    print(f"self-test: caught {name} made to never fire")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--promtool", default=shutil.which("promtool") or "promtool")
    ap.add_argument("--self-test", action="store_true")
    a = ap.parse_args()
    rules_text = RULES.read_text()
    tests_text = TESTS.read_text()
    dashboard = json.loads(DASHBOARD.read_text())
    try:
        if a.self_test:
            self_test(a.promtool, rules_text, tests_text, dashboard)
        else:
            check(a.promtool, rules_text, tests_text, dashboard, mutations=True)
            n = len(alerts_of(yaml.safe_load(rules_text)))
            print(f"alerts: {n} alerts tested (each caught never firing and always firing); "
                  f"{len(dashboard_exprs(dashboard))} dashboard queries parse; every metric named is exported")
    except Failure as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()

"""The alert and dashboard expressions: scripts/promql-exprs reads the rules as
a YAML parser does (exprs), every expression uses only what the catalogue
has and every catalogue metric is on the dashboard (metrics), and
prometheus/expected-empty.txt names existing expressions (expected-empty).
"""

import json

from harness import exported_series
from ops import catalogue, load_yaml, problem, promql_exprs, read
from ops.promql import analyze, expr_problems, self_test_analyzer


def check_exprs(out_rules):
    rules = load_yaml("prometheus", "alerts.yml")
    expected = {
        f"prometheus/alerts.yml:{'alert' if 'alert' in r else 'record'}={r.get('alert') or r.get('record')}": str(r["expr"]).strip()
        for g in rules["groups"] for r in g["rules"]
    }
    got = {e["source"]: e["expr"] for e in promql_exprs()}
    for src, expr in expected.items():
        if src not in got:
            problem(f"scripts/promql-exprs misses {src}")
        elif got[src] != expr:
            problem(f"scripts/promql-exprs reads {src} differently from a YAML parser")
    panels = [e for e in promql_exprs() if e["kind"] in ("panel", "variable")]
    if not panels:
        problem("scripts/promql-exprs found no dashboard expression")
    leftovers = [e["source"] for e in panels if "$" in e["expr"] or "[[" in e["expr"]]
    for src in leftovers:
        problem(f"{src}: a template variable was not substituted")
    # Recording rules, one per dashboard expression, so that promtool parses them.
    with open(out_rules, "w", encoding="utf-8") as f:
        f.write("groups:\n  - name: dashboard-expressions\n    rules:\n")
        for n, e in enumerate(panels):
            f.write(f"      # {e['source']}\n      - record: dashboard_expr_{n}\n        expr: {json.dumps(e['expr'])}\n")


def check_metrics():
    series, entries = catalogue()
    self_test_analyzer(series)
    used = set()
    for e in promql_exprs():
        for p in expr_problems(e["expr"], series):
            problem(f"{e['source']}: {p}")
        if e["kind"] in ("panel", "variable"):
            try:
                used |= {name for name, _ in analyze(e["expr"])[0] if name}
            except (ValueError, IndexError):
                pass
    for e in sorted(entries, key=lambda e: e["name"]):
        if not set(exported_series(e)) & used:
            problem(f"catalogue metric {e['name']} is on no dashboard panel")


def check_expected_empty():
    sources = {e["source"] for e in promql_exprs()}
    seen = set()
    for n, line in enumerate(read("prometheus", "expected-empty.txt").splitlines(), 1):
        if not line.strip() or line.startswith("#"):
            continue
        parts = line.split("\t")
        if len(parts) != 2 or not parts[1].strip():
            problem(f"expected-empty.txt:{n}: expected '<source><TAB><reason>'")
            continue
        if parts[0] not in sources:
            problem(f"expected-empty.txt:{n}: {parts[0]} is not a source printed by scripts/promql-exprs")
        if parts[0] in seen:
            problem(f"expected-empty.txt:{n}: {parts[0]} listed twice")
        seen.add(parts[0])

#!/usr/bin/env python3
"""Structural checks of the deployment and observability files.

Run by scripts/check-ops (with the virtualenv that has ruamel.yaml,
check-jsonschema and dockerfile-parse):

    python3 scripts/ops_checks.py <check> [args]

Each check prints nothing and exits 0 when all is well, or prints one line per
problem and exits 1. The checks:

    alerts       conventions of prometheus/alerts.yml: severity, annotations,
                 runbook links and headings, a firing and a non-firing test
                 per alert in alerts_test.yml
    exprs        scripts/promql-exprs agrees with a YAML parse of the rules;
                 writes the dashboard expressions as recording rules to the
                 file given as argument (promtool then parses them)
    metrics      every metric, label, function and known label value in every
                 alert and panel expression exists in the catalogue
                 (gateway/src/telemetry/metrics.rs); every catalogue metric is
                 on the dashboard
    dashboard    panel ids, datasource uid and the provisioning files agree
    compose      docker-compose.yml and docker-compose.prod.yml: pinned images,
                 hardening, healthchecks, secrets, limits, mounts that exist
    env          .env.example documents every configuration variable and every
                 compose interpolation, and holds no real secret
    dockerfile   Dockerfile: multi-stage, pinned images, --locked build,
                 non-root final stage, HEALTHCHECK, exec-form entrypoint
    nginx        deploy/nginx: no query strings in logs, timeouts, TLS, HSTS
    nginx-testcopy DIR  writes a copy of the nginx config that `nginx -t` can
                 check on this machine (upstream and paths rewritten)
    expected-empty  prometheus/expected-empty.txt names existing expressions
    snippets     README.md explains every panel and has a runbook per alert
"""

import json
import os
import re
import subprocess
import sys

ROOT = os.path.abspath(os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
PROBLEMS = []


def problem(msg):
    PROBLEMS.append(msg)


def path(*parts):
    return os.path.join(ROOT, *parts)


def read(*parts):
    with open(path(*parts), encoding="utf-8") as f:
        return f.read()


def load_yaml(*parts):
    from ruamel.yaml import YAML

    return YAML(typ="safe", pure=True).load(read(*parts))


def promql_exprs():
    out = subprocess.run(
        [sys.executable, path("scripts", "promql-exprs"), "--root", ROOT],
        check=True, capture_output=True, text=True,
    ).stdout
    return [json.loads(line) for line in out.splitlines() if line.strip()]


# ============================================================================
# The metric catalogue


def catalogue():
    """{exported series name: set(labels)} and {catalogue name: kind}."""
    src = read("gateway", "src", "telemetry", "metrics.rs")
    consts = dict(re.findall(r'pub const (\w+): &str = "([a-zA-Z_:][a-zA-Z0-9_:]*)";', src))
    # Names the catalogue takes from the workers crate (`workers::metric_names::X`).
    workers = dict(re.findall(r'pub const (\w+): &str = "([a-zA-Z_:][a-zA-Z0-9_:]*)";', read("workers", "src", "metric_names.rs")))
    for name, other in re.findall(r'pub const (\w+): &str = workers::metric_names::(\w+);', src):
        if other in workers:
            consts[name] = workers[other]
    entries = re.findall(
        r'Metric\s*\{\s*name:\s*("?[\w:]+"?)\s*,\s*kind:\s*Kind::(\w+)\s*,\s*labels:\s*&\[([^\]]*)\]', src
    )
    if not entries:
        raise SystemExit("no Metric { ... } entries found in gateway/src/telemetry/metrics.rs")
    series, kinds = {}, {}
    for name, kind, labels in entries:
        name = name.strip('"') if name.startswith('"') else consts.get(name)
        if name is None:
            raise SystemExit("a catalogue entry names an unknown constant")
        labels = set(re.findall(r'"([A-Za-z_][A-Za-z0-9_]*)"', labels))
        # Target labels that Prometheus attaches to every scraped series.
        labels |= {"job", "instance"}
        kinds[name] = kind
        if kind == "Histogram":
            series[name + "_bucket"] = labels | {"le"}
            series[name + "_sum"] = labels
            series[name + "_count"] = labels
        else:
            series[name] = labels
    series["up"] = {"job", "instance"}
    return series, kinds


# Label values the gateway documents (metric, label) -> allowed values. Only
# equality matchers and plain alternations (a|b) are checked.
KNOWN_VALUES = {
    ("token_requests_total", "outcome"): {
        "memory", "store", "refreshed", "not_authenticated", "refresh_failed",
        "scope_insufficient", "provider_unavailable", "busy",
    },
    ("token_refresh_total", "outcome"): {"success", "unsaved", "skipped", "permanent_failure", "transient_failure"},
    ("token_refresh_total", "trigger"): {"on_demand", "proactive", "keepalive"},
    ("credentials", "state"): {"active", "needs_reauth"},
    ("db_pool_connections", "state"): {"in_use", "idle"},
    ("up", "job"): {"auth-gateway", "prometheus"},
}
for _m in ("job_runs_total", "job_failures_total", "job_last_success_timestamp_seconds",
           "job_duration_seconds_bucket", "job_duration_seconds_sum", "job_duration_seconds_count"):
    KNOWN_VALUES[(_m, "job")] = {"proactive_refresh", "session_sweep", "reencrypt", "metrics_refresh"}

AGGREGATORS = {
    "sum", "min", "max", "avg", "group", "stddev", "stdvar", "count", "count_values",
    "bottomk", "topk", "quantile", "limitk", "limit_ratio",
}
FUNCTIONS = {
    "abs", "absent", "absent_over_time", "ceil", "changes", "clamp", "clamp_max", "clamp_min",
    "day_of_month", "day_of_week", "day_of_year", "days_in_month", "delta", "deriv", "exp",
    "floor", "histogram_avg", "histogram_count", "histogram_fraction", "histogram_quantile",
    "histogram_stddev", "histogram_stdvar", "histogram_sum", "holt_winters",
    "double_exponential_smoothing", "hour", "idelta", "increase", "irate", "label_join",
    "label_replace", "ln", "log2", "log10", "minute", "month", "predict_linear", "rate",
    "resets", "round", "scalar", "sgn", "sort", "sort_desc", "sort_by_label",
    "sort_by_label_desc", "sqrt", "time", "timestamp", "vector", "year", "avg_over_time",
    "min_over_time", "max_over_time", "sum_over_time", "count_over_time",
    "quantile_over_time", "stddev_over_time", "stdvar_over_time", "last_over_time",
    "present_over_time", "mad_over_time", "acos", "acosh", "asin", "asinh", "atan", "atanh",
    "cos", "cosh", "sin", "sinh", "tan", "tanh", "deg", "rad", "pi", "start", "end",
}
GROUPING = {"by", "without", "on", "ignoring", "group_left", "group_right"}
KEYWORDS = {"and", "or", "unless", "bool", "offset", "atan2", "inf", "nan", "Inf", "NaN"} | GROUPING

TOKEN_RE = re.compile(
    r"""
     (?P<ws>\s+)
    |(?P<comment>\#[^\n]*)
    |(?P<str>"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*'|`[^`]*`)
    |(?P<num>0x[0-9a-fA-F]+|\d[\w.]*|\.\d[\w.]*)
    |(?P<ident>[A-Za-z_:][A-Za-z0-9_:]*)
    |(?P<op>=~|!~|!=|==|>=|<=|[-+*/%^<>=(){}\[\],@])
    """,
    re.X,
)


def tokenize(expr):
    pos, toks = 0, []
    while pos < len(expr):
        m = TOKEN_RE.match(expr, pos)
        if not m:
            raise ValueError(f"cannot tokenize at {expr[pos:pos + 20]!r}")
        pos = m.end()
        if m.lastgroup in ("ws", "comment"):
            continue
        toks.append((m.lastgroup, m.group()))
    return toks


def unquote(s):
    if s[0] == "`":
        return s[1:-1]
    return re.sub(r"\\(.)", r"\1", s[1:-1])


def analyze(expr):
    """Return (selectors [(metric or None, [(label, op, value)])], grouping labels, functions)."""
    toks = tokenize(expr)
    selectors, grouping, functions = [], [], []

    def matchers(i):
        out = []
        while toks[i][1] != "}":
            if toks[i][1] == ",":
                i += 1
                continue
            label, op, value = toks[i], toks[i + 1], toks[i + 2]
            if label[0] != "ident" or op[1] not in ("=", "!=", "=~", "!~") or value[0] != "str":
                raise ValueError(f"bad label matcher near {label[1]!r}")
            out.append((label[1], op[1], unquote(value[1])))
            i += 3
        return out, i + 1

    i = 0
    while i < len(toks):
        kind, text = toks[i]
        nxt = toks[i + 1][1] if i + 1 < len(toks) else None
        if text == "[":
            depth = 0
            while True:
                if toks[i][1] == "[":
                    depth += 1
                elif toks[i][1] == "]":
                    depth -= 1
                    if depth == 0:
                        break
                i += 1
            i += 1
            continue
        if kind == "ident":
            if text in GROUPING and nxt == "(":
                j = i + 2
                while toks[j][1] != ")":
                    if toks[j][0] == "ident":
                        grouping.append(toks[j][1])
                    j += 1
                i = j + 1
                continue
            if text in KEYWORDS:
                i += 1
                continue
            if text in AGGREGATORS or nxt == "(":
                functions.append(text)
                i += 1
                continue
            if nxt == "{":
                ms, i = matchers(i + 2)
            else:
                ms, i = [], i + 1
            selectors.append((text, ms))
            continue
        if text == "{":
            ms, i = matchers(i + 1)
            selectors.append((None, ms))
            continue
        i += 1
    return selectors, grouping, functions


def expr_problems(expr, series):
    """Problems of one expression against the catalogue (list of strings)."""
    out = []
    try:
        selectors, grouping, functions = analyze(expr)
    except (ValueError, IndexError) as e:
        return [f"cannot analyse: {e}"]
    all_labels = set().union(*series.values())
    for f in functions:
        if f not in FUNCTIONS and f not in AGGREGATORS:
            out.append(f"unknown function or aggregation {f!r}")
    if not selectors:
        out.append("selects no metric")
    for name, ms in selectors:
        if name is None:
            names = [v for (l, op, v) in ms if l == "__name__" and op == "="]
            if not names:
                out.append("a selector without a metric name")
                continue
            name = names[0]
        if name not in series:
            out.append(f"unknown metric {name!r}")
            continue
        for label, op, value in ms:
            if label == "__name__":
                continue
            if label not in series[name]:
                out.append(f"{name} has no label {label!r} (labels: {', '.join(sorted(series[name]))})")
                continue
            known = KNOWN_VALUES.get((name, label))
            if known and op in ("=", "=~"):
                alternatives = value.split("|") if op == "=~" else [value]
                for alt in alternatives:
                    if op == "=~" and re.search(r"[.*+?()\[\]{}\\^$]", alt):
                        continue  # a real regex: not checked
                    if alt not in known:
                        out.append(f"{name}{{{label}{op}...}}: {alt!r} is not one of {', '.join(sorted(known))}")
    for g in grouping:
        if g not in all_labels:
            out.append(f"grouping label {g!r} is on no catalogue metric")
    return out


def self_test_analyzer(series):
    """The checker must reject these; a checker that accepts anything is useless."""
    bad = [
        "rate(http_request_total[5m])",                                  # misspelt metric
        'sum by (provider) (token_refresh_total{outcome="failed"})',     # unknown value
        'credentials{status="active"}',                                  # unknown label
        "histogram_quantile(0.99, rate(http_request_duration_seconds[5m]))",  # histogram without _bucket
        "sum by (tenant) (db_up)",                                        # unknown grouping label
        "ratee(db_up[5m])",                                               # unknown function
    ]
    good = [
        'histogram_quantile(0.5, sum by (le, route) (rate(http_request_duration_seconds_bucket{instance=~".*"}[5m])))',
        'sum by (provider) (increase(token_refresh_total{outcome=~"permanent_failure|transient_failure"}[15m:1m]))',
        "max by (key_id) (reencryption_pending_values) >= (max by (key_id) (reencryption_pending_values offset 30m) > 0)",
        'up{job="auth-gateway"} == 0 or absent(up{job="auth-gateway"})',
    ]
    for e in bad:
        if not expr_problems(e, series):
            problem(f"self-test: the expression checker accepted the bad expression {e}")
    for e in good:
        p = expr_problems(e, series)
        if p:
            problem(f"self-test: the expression checker rejected {e}: {p}")


# ============================================================================
# Checks


def check_alerts():
    rules = load_yaml("prometheus", "alerts.yml")
    tests = load_yaml("prometheus", "alerts_test.yml")
    readme = read("README.md")
    alerts = [r for g in rules["groups"] for r in g["rules"] if "alert" in r]
    if not alerts:
        problem("alerts.yml defines no alert")
    names = [a["alert"] for a in alerts]
    for dup in sorted({n for n in names if names.count(n) > 1}):
        problem(f"alert {dup} is defined more than once")
    required = {
        "HighAuthFailureRate", "DatabaseConnectionDown", "EncryptionErrors", "RefreshFailureRatioHigh",
        "OnDemandRefreshesHappening", "CredentialsNeedReauthInBulk", "JobStale", "ReencryptionStalled",
        "GatewayDown", "PrimaryKeyTooOld",
    }
    for missing in sorted(required - set(names)):
        problem(f"alert {missing} is missing from alerts.yml")
    if "up{job=\"auth-gateway-db\"}" in read("prometheus", "alerts.yml"):
        problem("DatabaseConnectionDown must use the gateway's db_up, not a separate db scrape job")

    firing, quiet = {}, {}
    for t in tests.get("tests", []):
        for case in t.get("alert_rule_test", []) or []:
            target = firing if case.get("exp_alerts") else quiet
            target[case["alertname"]] = target.get(case["alertname"], 0) + 1
    for a in alerts:
        name = a["alert"]
        sev = (a.get("labels") or {}).get("severity")
        if sev not in ("critical", "warning", "info"):
            problem(f"{name}: severity label must be critical, warning or info (is {sev!r})")
        ann = a.get("annotations") or {}
        for key in ("summary", "description", "runbook_url"):
            if not str(ann.get(key, "")).strip():
                problem(f"{name}: annotation {key} is missing")
        anchor = "runbook-" + name.lower()
        if ann.get("runbook_url") != f"README.md#{anchor}":
            problem(f"{name}: runbook_url must be README.md#{anchor}")
        heading = re.compile(r"^###\s+Runbook:\s+" + re.escape(name) + r"\s*$", re.M)
        if not heading.search(readme):
            problem(f"{name}: README.md has no '### Runbook: {name}' heading")
        if not firing.get(name):
            problem(f"{name}: alerts_test.yml has no case where it fires")
        if not quiet.get(name):
            problem(f"{name}: alerts_test.yml has no case where it does not fire")
    for name in sorted(set(firing) | set(quiet)):
        if name not in names:
            problem(f"alerts_test.yml tests {name}, which alerts.yml does not define")


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
    series, kinds = catalogue()
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
    for name, kind in sorted(kinds.items()):
        exported = {name + s for s in ("_bucket", "_sum", "_count")} if kind == "Histogram" else {name}
        if not exported & used:
            problem(f"catalogue metric {name} is on no dashboard panel")


def check_dashboard():
    ds = load_yaml("grafana", "provisioning", "datasources", "prometheus.yml")
    uids = {d.get("uid") for d in ds.get("datasources", [])}
    if "prometheus" not in uids:
        problem("grafana/provisioning/datasources/prometheus.yml has no datasource with uid prometheus")
    for d in ds.get("datasources", []):
        if d.get("uid") == "prometheus" and d.get("url") != "http://prometheus:9090":
            problem("the prometheus datasource must point at http://prometheus:9090 (the compose service)")
    prov = load_yaml("grafana", "provisioning", "dashboards", "dashboards.yml")
    prov_paths = {p.get("options", {}).get("path") for p in prov.get("providers", [])}
    for compose in ("docker-compose.yml", "docker-compose.prod.yml"):
        doc = load_yaml(compose)
        mounts = [v for v in doc["services"]["grafana"].get("volumes", []) if isinstance(v, str)]
        targets = {v.split(":")[1] for v in mounts if v.startswith("./grafana/dashboards:")}
        if not targets & prov_paths:
            problem(f"{compose}: ./grafana/dashboards is not mounted where dashboards.yml looks ({prov_paths})")
    dash_dir = path("grafana", "dashboards")
    uids_seen = set()
    for fn in sorted(os.listdir(dash_dir)):
        if not fn.endswith(".json"):
            continue
        with open(os.path.join(dash_dir, fn), encoding="utf-8") as f:
            dash = json.load(f)
        if dash["uid"] in uids_seen:
            problem(f"{fn}: dashboard uid {dash['uid']} is used twice")
        uids_seen.add(dash["uid"])

        def walk(panels):
            for p in panels or []:
                yield p
                yield from walk(p.get("panels"))

        ids = [p["id"] for p in walk(dash["panels"])]
        for dup in sorted({i for i in ids if ids.count(i) > 1}):
            problem(f"{fn}: panel id {dup} is used twice")
        cells = {}
        for p in walk(dash["panels"]):
            g = p["gridPos"]
            if g["x"] + g["w"] > 24:
                problem(f"{fn}: panel {p['id']} ({p['title']}) is wider than the grid")
            for yy in range(g["y"], g["y"] + g["h"]):
                for xx in range(g["x"], g["x"] + g["w"]):
                    if (xx, yy) in cells:
                        problem(f"{fn}: panels {cells[(xx, yy)]} and {p['id']} overlap")
                        break
                    cells[(xx, yy)] = p["id"]
                else:
                    continue
                break
            refs = [t.get("refId") for t in p.get("targets", [])]
            if len(refs) != len(set(refs)):
                problem(f"{fn}: panel {p['id']} repeats a refId")


def image_tag_problem(image):
    if "@sha256:" in image:
        return None
    name, _, tag = image.rpartition(":")
    if not name or "/" in tag:
        return f"image {image} has no tag"
    if tag == "latest":
        return f"image {image} uses the latest tag"
    return None


SECRET_VARS = re.compile(
    r"^(DATABASE_URL|AUTH_GATEWAY_ENCRYPTION_KEY|AUTH_GATEWAY_ENCRYPTION_KEY_SALT|AUTH_GATEWAY_ROTATION_KEYS|"
    r"AUTH_GATEWAY_API_KEY|[A-Z0-9_]+_CLIENT_SECRET|METRICS_BEARER_TOKEN|POSTGRES_PASSWORD|PGPASSWORD|"
    r"GF_SECURITY_ADMIN_PASSWORD)$"
)


def env_dict(svc):
    env = svc.get("environment") or {}
    if isinstance(env, list):
        env = dict(e.split("=", 1) if "=" in e else (e, None) for e in env)
    return env


def volume_strings(svc):
    out = []
    for v in svc.get("volumes", []) or []:
        if isinstance(v, str):
            out.append(v)
        else:
            out.append(f"{v.get('source')}:{v.get('target')}")
    return out


def check_compose():
    dev = load_yaml("docker-compose.yml")
    prod = load_yaml("docker-compose.prod.yml")
    for fname, doc in (("docker-compose.yml", dev), ("docker-compose.prod.yml", prod)):
        services = doc.get("services", {})
        declared_volumes = set((doc.get("volumes") or {}).keys())
        declared_secrets = set((doc.get("secrets") or {}).keys())
        for name, svc in services.items():
            where = f"{fname}: {name}"
            if "image" in svc and "build" not in svc:
                p = image_tag_problem(svc["image"])
                if p:
                    problem(f"{where}: {p}")
            if "build" in svc:
                df = (svc["build"] or {}).get("dockerfile", "Dockerfile") if isinstance(svc["build"], dict) else "Dockerfile"
                if not os.path.exists(path(df)):
                    problem(f"{where}: build dockerfile {df} does not exist")
            for v in volume_strings(svc):
                if v.startswith("${"):
                    continue  # source chosen by interpolation (checked by the env check)
                src = v.split(":")[0]
                if src.startswith("./") or src.startswith("/"):
                    if src.startswith("./secrets") or "${" in src or src.startswith("./deploy/certs"):
                        continue
                    if not os.path.exists(path(src)):
                        problem(f"{where}: bind mount source {src} does not exist in the repository")
                elif src not in declared_volumes:
                    problem(f"{where}: named volume {src} is not declared")
            for s in svc.get("secrets", []) or []:
                s = s if isinstance(s, str) else s.get("source")
                if s not in declared_secrets:
                    problem(f"{where}: secret {s} is not declared")
            for key, value in env_dict(svc).items():
                if key.endswith("_FILE") and isinstance(value, str) and value.startswith("/run/secrets/"):
                    secret = value[len("/run/secrets/"):]
                    names = [s if isinstance(s, str) else s.get("source") for s in svc.get("secrets", []) or []]
                    if secret not in names:
                        problem(f"{where}: {key} names secret {secret}, which the service does not mount")
            if "healthcheck" in svc and not svc["healthcheck"].get("test"):
                problem(f"{where}: healthcheck without a test")

    # ---- development file
    s = dev["services"]
    missing = [n for n in ("postgres", "gateway", "prometheus", "grafana") if n not in s]
    missing_prod = [n for n in ("nginx", "gateway", "postgres", "backup", "prometheus", "grafana") if n not in prod["services"]]
    for n in missing:
        problem(f"docker-compose.yml: service {n} is missing")
    for n in missing_prod:
        problem(f"docker-compose.prod.yml: service {n} is missing")
    if missing or missing_prod:
        return
    pg, gw = s["postgres"], s["gateway"]
    if not pg["image"].startswith("postgres:16-alpine"):
        problem("docker-compose.yml: postgres must be postgres:16-alpine")
    if "pg_isready" not in json.dumps(pg.get("healthcheck", {})):
        problem("docker-compose.yml: postgres healthcheck must use pg_isready")
    if not any(v.endswith(":/var/lib/postgresql/data") and not v.startswith(".") for v in volume_strings(pg)):
        problem("docker-compose.yml: postgres data must be on a named volume")
    if (gw.get("depends_on") or {}).get("postgres", {}).get("condition") != "service_healthy":
        problem("docker-compose.yml: gateway must depend on postgres being healthy")
    if ".env" not in (gw.get("env_file") if isinstance(gw.get("env_file"), list) else [gw.get("env_file")]):
        problem("docker-compose.yml: gateway must read .env")
    for name, svc in (("docker-compose.yml", gw), ("docker-compose.prod.yml", prod["services"].get("gateway", {}))):
        if svc.get("read_only") is not True:
            problem(f"{name}: gateway must have read_only: true")
        if not any(str(t).split(":")[0] == "/tmp" for t in svc.get("tmpfs", []) or []):
            problem(f"{name}: gateway needs a tmpfs on /tmp")
        user = str(svc.get("user", "")).split(":")[0]
        if user in ("", "0", "root"):
            problem(f"{name}: gateway must run as a non-root user")
        if "/health" not in json.dumps(svc.get("healthcheck", {})):
            problem(f"{name}: gateway healthcheck must probe /health")
    if not any(str(p).endswith(":8000") or str(p) == "8000" for p in gw.get("ports", [])):
        problem("docker-compose.yml: gateway must publish port 8000")
    if "./prometheus:/etc/prometheus" not in " ".join(volume_strings(s["prometheus"])):
        problem("docker-compose.yml: prometheus must mount ./prometheus at /etc/prometheus")
    for name, doc in (("docker-compose.yml", dev), ("docker-compose.prod.yml", prod)):
        for arg in doc["services"]["prometheus"].get("command", []):
            m = re.match(r"--config\.file=/etc/prometheus/(.+)$", arg)
            if m and not os.path.exists(path("prometheus", m.group(1))):
                problem(f"{name}: prometheus config {m.group(1)} does not exist in prometheus/")
        gv = " ".join(volume_strings(doc["services"]["grafana"]))
        if "./grafana/provisioning:/etc/grafana/provisioning" not in gv:
            problem(f"{name}: grafana must mount ./grafana/provisioning at /etc/grafana/provisioning")

    # ---- production file
    p = prod["services"]
    for name, svc in p.items():
        where = f"docker-compose.prod.yml: {name}"
        if svc.get("restart") not in ("always", "unless-stopped", "on-failure"):
            problem(f"{where}: needs a restart policy")
        limits = ((svc.get("deploy") or {}).get("resources") or {}).get("limits") or {}
        if not limits.get("memory") or not limits.get("cpus"):
            problem(f"{where}: needs deploy.resources.limits (cpus and memory)")
        if svc.get("env_file"):
            problem(f"{where}: production takes secrets from files, not env_file")
        for key, value in env_dict(svc).items():
            if SECRET_VARS.match(key):
                problem(f"{where}: secret {key} given as a plain variable; use {key}_FILE and a docker secret")
        for port in svc.get("ports", []) or []:
            port = str(port)
            if name in ("prometheus", "grafana") and not port.startswith("127.0.0.1:"):
                problem(f"{where}: port {port} must be bound to 127.0.0.1")
    for name in ("postgres", "gateway", "backup"):
        if p[name].get("ports"):
            problem(f"docker-compose.prod.yml: {name} must not publish ports")
    if env_dict(p["gateway"]).get("ENVIRONMENT") != "production":
        problem("docker-compose.prod.yml: gateway must run with ENVIRONMENT=production")
    if not str(env_dict(p["gateway"]).get("PUBLIC_BASE_URL", "")).startswith("https://"):
        problem("docker-compose.prod.yml: PUBLIC_BASE_URL must be https")
    nginx_ports = {str(x).split(":")[-1] for x in p["nginx"].get("ports", [])}
    if not {"80", "443"} <= nginx_ports:
        problem("docker-compose.prod.yml: nginx must publish 80 and 443")
    nv = " ".join(volume_strings(p["nginx"]))
    for need in ("./deploy/nginx/nginx.conf:/etc/nginx/nginx.conf", ":/etc/nginx/certs"):
        if need not in nv:
            problem(f"docker-compose.prod.yml: nginx must mount {need}")
    if ((prod.get("networks") or {}).get("backend") or {}).get("internal") is not True:
        problem("docker-compose.prod.yml: the backend network (database) must be internal")
    if "backend" in (p["nginx"].get("networks") or []):
        problem("docker-compose.prod.yml: nginx must not be on the database network")
    # Behind nginx every request comes from nginx: the gateway must trust
    # nginx's X-Forwarded-For, or per-address limits become one global limit.
    trusted = str(env_dict(p["gateway"]).get("AUTH_GATEWAY_TRUSTED_PROXIES", ""))
    nginx_nets = p["nginx"].get("networks") or {}
    nginx_ip = str(((nginx_nets.get("frontend") or {}) if isinstance(nginx_nets, dict) else {}).get("ipv4_address", ""))
    if not trusted:
        problem("docker-compose.prod.yml: gateway must set AUTH_GATEWAY_TRUSTED_PROXIES to nginx's address")
    elif not nginx_ip:
        problem("docker-compose.prod.yml: nginx needs a fixed ipv4_address on the frontend network for the gateway to trust")
    elif trusted != nginx_ip:
        problem(f"docker-compose.prod.yml: AUTH_GATEWAY_TRUSTED_PROXIES ({trusted}) must be nginx's address ({nginx_ip})")
    if "X-Forwarded-For $remote_addr" not in read("deploy", "nginx", "conf.d", "gateway.conf"):
        problem("deploy/nginx/conf.d/gateway.conf: must set X-Forwarded-For to $remote_addr (the client's address)")
    b = p["backup"]
    entry = " ".join(b.get("entrypoint") or [])
    if "pg-backup.sh" not in entry:
        problem("docker-compose.prod.yml: backup must run deploy/backup/pg-backup.sh")
    if "./deploy/backup/pg-backup.sh:/usr/local/bin/pg-backup.sh" not in " ".join(volume_strings(b)):
        problem("docker-compose.prod.yml: backup must mount ./deploy/backup/pg-backup.sh at /usr/local/bin/pg-backup.sh")
    benv = env_dict(b)
    for need in ("BACKUP_RETENTION_DAYS", "BACKUP_INTERVAL_SECONDS", "BACKUP_DIR", "PGPASSWORD_FILE"):
        if need not in benv:
            problem(f"docker-compose.prod.yml: backup needs {need}")
    if b.get("image") != p["postgres"].get("image"):
        problem("docker-compose.prod.yml: backup must use the server's image (same pg_dump major version)")
    for shared in ("postgres", "prometheus", "grafana"):
        if dev["services"][shared].get("image") != p[shared].get("image"):
            problem(f"{shared}: the two compose files pin different images")


def check_env():
    text = read(".env.example")
    documented = set(re.findall(r"^#?\s*([A-Z][A-Z0-9_]*)=", text, re.M))
    config = read("gateway", "src", "config", "mod.rs")
    vars_block = re.search(r"pub mod vars \{(.*?)\n\}", config, re.S)
    names = set(re.findall(r'"([A-Z][A-Z0-9_]+)"', vars_block.group(1))) if vars_block else set()
    providers = path("gateway", "src", "config", "providers.rs")
    if os.path.exists(providers):
        names |= set(re.findall(r'pub const \w+: &str = "([A-Z][A-Z0-9_]+)"', read("gateway", "src", "config", "providers.rs")))
    # Variables read by name anywhere in the configuration code, and the jobs' switches.
    config_dir = path("gateway", "src", "config")
    for name in sorted(os.listdir(config_dir)):
        if name.endswith(".rs"):
            code = read("gateway", "src", "config", name)
            names |= set(re.findall(r'src\.(?:get|number|secret|parse_or)\(\s*"([A-Z][A-Z0-9_]+)"', code))
            for job in re.findall(r'\("([A-Z_]+)", "[^"]*\*[^"]*"\)', code):
                names |= {f"JOB_{job}_SCHEDULE", f"JOB_{job}_ENABLED"}
    # The design document's and the brief's list (covers what the code may not declare yet).
    names |= {
        "DATABASE_URL", "AUTH_GATEWAY_ENCRYPTION_KEY", "AUTH_GATEWAY_ENCRYPTION_KEY_SALT",
        "AUTH_GATEWAY_ROTATION_KEYS", "AUTH_GATEWAY_API_KEY", "HOST", "PORT", "PUBLIC_BASE_URL",
        "ENVIRONMENT", "SESSION_EXPIRY_MINUTES", "TOKEN_REFRESH_BUFFER_SECONDS", "LOG_LEVEL",
        "LOG_FORMAT", "DATA_DIR", "METRICS_ADDR", "METRICS_BEARER_TOKEN", "MICROSOFT_TENANT",
    }
    for p in ("GOOGLE", "MICROSOFT", "META"):
        names |= {f"{p}_CLIENT_ID", f"{p}_CLIENT_SECRET", f"{p}_REDIRECT_URI"}
    secrets = {n for n in names if SECRET_VARS.match(n)}
    names |= {n + "_FILE" for n in secrets}
    for n in sorted(names - documented):
        problem(f".env.example does not document {n}")
    for compose in ("docker-compose.yml", "docker-compose.prod.yml"):
        for n in sorted(set(re.findall(r"\$\{([A-Z][A-Z0-9_]*)", read(compose)))):
            if n not in documented:
                problem(f".env.example does not document {n}, which {compose} interpolates")
    for m in re.finditer(r"^([A-Z][A-Z0-9_]*)=(.*)$", text, re.M):
        name, value = m.group(1), m.group(2).strip()
        if (SECRET_VARS.match(name) or name.endswith("_PASSWORD")) and value and not value.startswith("change-me"):
            problem(f".env.example: {name} must hold a change-me placeholder, not a value")
        if re.fullmatch(r"[A-Za-z0-9_-]{43}=", value) or re.fullmatch(r"[A-Za-z0-9]{64}", value):
            problem(f".env.example: {name} looks like a real key")
        if " #" in value:
            problem(f".env.example: {name} has an inline comment (parsers disagree on those)")


def check_dockerfile():
    from dockerfile_parse import DockerfileParser

    df = DockerfileParser(path=path("Dockerfile"))
    instrs = df.structure
    stages, current = [], None
    for ins in instrs:
        if ins["instruction"] == "FROM":
            parts = ins["value"].split()
            image = parts[0]
            alias = parts[2] if len(parts) >= 3 and parts[1].upper() == "AS" else None
            current = {"image": image, "alias": alias, "ins": []}
            stages.append(current)
        elif current is not None:
            current["ins"].append(ins)
    if len(stages) < 2:
        problem("Dockerfile: must be multi-stage (a builder and a runtime stage)")
        return
    aliases = set()
    for st in stages:
        if st["image"] not in aliases and st["image"] != "scratch":
            p = image_tag_problem(st["image"])
            if p:
                problem(f"Dockerfile: {p}")
        if st["alias"]:
            aliases.add(st["alias"])
    if not stages[0]["image"].startswith("rust:"):
        problem("Dockerfile: the builder stage must use a rust image")
    if not stages[-1]["image"].startswith("debian:bookworm-slim"):
        problem("Dockerfile: the runtime stage must be debian:bookworm-slim")
    builds = [i["value"] for st in stages for i in st["ins"] if i["instruction"] == "RUN" and "cargo build" in i["value"]]
    if not builds:
        problem("Dockerfile: no RUN cargo build")
    for b in builds:
        for flag in ("--locked", "--release", "-p gateway"):
            if flag not in b:
                problem(f"Dockerfile: cargo build lacks {flag}")
    final = stages[-1]["ins"]
    kinds = [i["instruction"] for i in final]
    users = [i["value"].strip() for i in final if i["instruction"] == "USER"]
    if not users or users[-1].split(":")[0] in ("root", "0"):
        problem("Dockerfile: the final stage must switch to a non-root USER")
    hc = [i["value"] for i in final if i["instruction"] == "HEALTHCHECK"]
    if not hc or hc[-1].strip().upper() == "NONE":
        problem("Dockerfile: the final stage needs a HEALTHCHECK")
    elif "/health" not in hc[-1]:
        problem("Dockerfile: the HEALTHCHECK must probe /health")
    else:
        tool = re.search(r"CMD\s+(\S+)", hc[-1])
        runs = " ".join(i["value"] for i in final if i["instruction"] == "RUN")
        if tool and tool.group(1) in ("curl", "wget", "busybox") and tool.group(1) not in runs:
            problem(f"Dockerfile: the HEALTHCHECK uses {tool.group(1)}, which the final stage does not install")
    ep = [i["value"] for i in final if i["instruction"] == "ENTRYPOINT"]
    cmd = [i["value"] for i in final if i["instruction"] == "CMD"]
    if not ep or json.loads(ep[-1]) != ["gateway"]:
        problem('Dockerfile: ENTRYPOINT must be ["gateway"] (exec form)')
    if not cmd or json.loads(cmd[-1]) != ["serve"]:
        problem('Dockerfile: CMD must be ["serve"] (exec form)')
    exposes = " ".join(i["value"] for i in final if i["instruction"] == "EXPOSE").split()
    if "8000" not in exposes:
        problem("Dockerfile: EXPOSE 8000 is missing")
    if "USER" in kinds and "COPY" in kinds and kinds.index("USER") < max(i for i, k in enumerate(kinds) if k == "COPY"):
        pass  # copying after USER is allowed (files stay root-owned)
    for st in stages:
        for i in st["ins"]:
            v = i["value"]
            if i["instruction"] == "ADD" and re.search(r"https?://", v):
                problem("Dockerfile: ADD of a URL (use a checked download)")
            if i["instruction"] == "RUN" and "apt-get install" in v:
                if "--no-install-recommends" not in v:
                    problem("Dockerfile: apt-get install without --no-install-recommends")
                if "rm -rf /var/lib/apt/lists" not in v:
                    problem("Dockerfile: apt lists are not removed in the same RUN")
                if "-y" not in v.split():
                    problem("Dockerfile: apt-get install without -y")
            if i["instruction"] == "COPY":
                m = re.search(r"--from=(\S+)", v)
                if m and m.group(1) not in aliases:
                    problem(f"Dockerfile: COPY --from={m.group(1)} names no earlier stage")
            if i["instruction"] == "RUN" and re.search(r"\bsudo\b", v):
                problem("Dockerfile: sudo in RUN")
    final_runs = " ".join(i["value"] for i in final if i["instruction"] == "RUN")
    if "ca-certificates" not in final_runs:
        problem("Dockerfile: the runtime stage must install ca-certificates")
    ignore = read(".dockerignore").split()
    for need in ("target/", "data/", ".git/", ".env"):
        if need not in ignore and need.rstrip("/") not in ignore:
            problem(f".dockerignore: {need} is not excluded")


def nginx_files():
    main = read("deploy", "nginx", "nginx.conf")
    confd = path("deploy", "nginx", "conf.d")
    sites = {fn: read("deploy", "nginx", "conf.d", fn) for fn in sorted(os.listdir(confd)) if fn.endswith(".conf")}
    return main, sites


def strip_comments(conf):
    return re.sub(r"#[^\n]*", "", conf)


def nginx_duration(value):
    m = re.fullmatch(r"(\d+)(ms|s|m|h)?", value)
    if not m:
        return None
    n = int(m.group(1))
    return {"ms": n / 1000, None: n, "s": n, "m": n * 60, "h": n * 3600}[m.group(2)]


def location_block(conf, prefix):
    m = re.search(r"location\s+" + re.escape(prefix) + r"\s*\{", conf)
    if not m:
        return None
    depth, i = 1, m.end()
    while depth:
        depth += {"{": 1, "}": -1}.get(conf[i], 0)
        i += 1
    return conf[m.end():i - 1]


def check_nginx():
    main, sites = nginx_files()
    all_conf = strip_comments(main + "\n" + "\n".join(sites.values()))
    formats = re.findall(r"log_format\s+(\w+)(.*?);", all_conf, re.S)
    if not formats:
        problem("nginx: no log_format (the default one logs query strings)")
    for name, body in formats:
        for bad in ("$request_uri", "$request ", "$request'", '$request"', "$args", "$query_string", "$arg_", "$http_referer"):
            if bad in body + " ":
                problem(f"nginx: log_format {name} logs {bad.strip()} (query strings carry OAuth codes)")
        if "$uri" not in body:
            problem(f"nginx: log_format {name} should log $uri")
    for m in re.finditer(r"access_log\s+([^\s;]+)(?:\s+(\w+))?", all_conf):
        if m.group(1) != "off" and m.group(2) not in {n for n, _ in formats}:
            problem(f"nginx: access_log {m.group(1)} does not use the query-free log_format")
    site = strip_comments("\n".join(sites.values()))
    status = location_block(site, "/auth/status/")
    if status is None:
        problem("nginx: no location /auth/status/ (long-poll timeout)")
    else:
        t = re.search(r"proxy_read_timeout\s+(\S+);", status)
        if not t or (nginx_duration(t.group(1)) or 0) <= 60:
            problem("nginx: /auth/status/ needs proxy_read_timeout above 60s")
    cb = location_block(site, "/auth/callback/")
    if cb is None:
        problem("nginx: no location /auth/callback/")
    for m in re.finditer(r"proxy_read_timeout\s+(\S+);", site):
        if (nginx_duration(m.group(1)) or 0) < 30:
            problem(f"nginx: proxy_read_timeout {m.group(1)} is shorter than a provider call may take")
    size = re.search(r"client_max_body_size\s+(\d+)([kKmM]?);", all_conf)
    if not size:
        problem("nginx: client_max_body_size is not set")
    else:
        n = int(size.group(1)) * {"": 1, "k": 1024, "K": 1024, "m": 1 << 20, "M": 1 << 20}[size.group(2)]
        if n > 1 << 20:
            problem("nginx: client_max_body_size above 1m")
    if "Strict-Transport-Security" not in site:
        problem("nginx: HSTS header missing")
    if not re.search(r"listen\s+80\b", site) or not re.search(r"return\s+301\s+https://", site):
        problem("nginx: no HTTP to HTTPS redirect")
    if not re.search(r"listen\s+443\s+ssl", site):
        problem("nginx: no TLS listener on 443")
    if "/etc/nginx/certs/fullchain.pem" not in site or "/etc/nginx/certs/privkey.pem" not in site:
        problem("nginx: certificates must be /etc/nginx/certs/fullchain.pem and privkey.pem")
    if not re.search(r"server\s+gateway:8000", site):
        problem("nginx: the upstream must be gateway:8000")
    for h in ("X-Forwarded-For", "X-Forwarded-Proto", "X-Forwarded-Host", "Host"):
        if not re.search(r"proxy_set_header\s+" + h + r"\s", site):
            problem(f"nginx: proxy_set_header {h} missing")
    metrics = location_block(site, "= /metrics")
    if metrics is None or "return 404" not in metrics:
        problem("nginx: /metrics must not be reachable from outside")


def nginx_testcopy(dest):
    """Copy of the config with paths under dest and the upstream on 127.0.0.1."""
    main, sites = nginx_files()
    os.makedirs(os.path.join(dest, "conf.d"), exist_ok=True)
    # /tmp first: dest itself is usually under /tmp.
    main = re.sub(r"(^|\s)/tmp/", lambda m: m.group(1) + dest + "/tmp/", main)
    main = main.replace("/etc/nginx/conf.d/", dest + "/conf.d/")
    os.makedirs(os.path.join(dest, "tmp"), exist_ok=True)
    with open(os.path.join(dest, "nginx.conf"), "w", encoding="utf-8") as f:
        f.write(main)
    for fn, text in sites.items():
        text = re.sub(r"server\s+gateway:", "server 127.0.0.1:", text)
        text = text.replace("/etc/nginx/certs/", dest + "/certs/")
        with open(os.path.join(dest, "conf.d", fn), "w", encoding="utf-8") as f:
            f.write(text)
    # nginx accepts an include glob that matches nothing: make sure each matches.
    import glob

    for inc in re.findall(r"^\s*include\s+([^;\s]+);", main, re.M):
        if not glob.glob(inc) and not (inc == "/etc/nginx/mime.types" and os.path.exists(inc)):
            problem(f"nginx test copy: include {inc} matches no file")


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


def check_snippets():
    text = read("README.md")
    for need in ("docker compose up", "docker-compose.prod.yml", "pg-backup.sh", "pg-restore.sh", "pg_restore"):
        if need not in text:
            problem(f"README.md does not mention {need}")
    # Every dashboard panel title is explained.
    with open(path("grafana", "dashboards", "gateway-overview.json"), encoding="utf-8") as f:
        dash = json.load(f)
    for p in dash["panels"]:
        if p["type"] != "row" and p["title"] not in text:
            problem(f"README.md does not explain the panel {p['title']!r}")


def main():
    if len(sys.argv) < 2:
        print(__doc__)
        return 2
    check, args = sys.argv[1], sys.argv[2:]
    funcs = {
        "alerts": check_alerts, "exprs": check_exprs, "metrics": check_metrics,
        "dashboard": check_dashboard, "compose": check_compose, "env": check_env,
        "dockerfile": check_dockerfile, "nginx": check_nginx, "nginx-testcopy": nginx_testcopy,
        "expected-empty": check_expected_empty, "snippets": check_snippets,
    }
    if check not in funcs:
        print(f"unknown check {check}", file=sys.stderr)
        return 2
    funcs[check](*args)
    for p in PROBLEMS:
        print(p)
    return 1 if PROBLEMS else 0


if __name__ == "__main__":
    sys.exit(main())

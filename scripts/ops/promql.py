"""A small PromQL analyser: the metrics, labels, label values, grouping labels
and functions an expression uses, checked against the metric catalogue
(expr_problems), and a self-test that it rejects what it must.
"""

import re

from ops import problem


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
    ("webhook_deliveries_total", "outcome"): {"delivered", "failed", "dead"},
    ("webhook_deliveries", "status"): {"pending", "dead"},
    ("jwks_fetch_total", "outcome"): {"ok", "failed"},
    ("token_exchange_total", "via"): {"identity_provider", "worker_assertion", "none"},
}
for _m in ("job_runs_total", "job_failures_total", "job_last_success_timestamp_seconds",
           "job_duration_seconds_bucket", "job_duration_seconds_sum", "job_duration_seconds_count"):
    KNOWN_VALUES[(_m, "job")] = {
        "proactive_refresh", "session_sweep", "reencrypt", "metrics_refresh",
        "webhook_delivery", "revocation_retry", "connection_probe",
    }

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

"""Conventions of prometheus/alerts.yml: the required alerts, severity,
annotations, runbook links and their headings in docs/runbooks.md, and a
firing and a non-firing unit test per alert in alerts_test.yml.
"""

import re

from ops import load_yaml, problem, read


def check_alerts():
    rules = load_yaml("prometheus", "alerts.yml")
    tests = load_yaml("prometheus", "alerts_test.yml")
    runbooks = read("docs", "runbooks.md")
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
        if ann.get("runbook_url") != f"docs/runbooks.md#{anchor}":
            problem(f"{name}: runbook_url must be docs/runbooks.md#{anchor}")
        heading = re.compile(r"^##\s+Runbook:\s+" + re.escape(name) + r"\s*$", re.M)
        if not heading.search(runbooks):
            problem(f"{name}: docs/runbooks.md has no '## Runbook: {name}' heading")
        if not firing.get(name):
            problem(f"{name}: alerts_test.yml has no case where it fires")
        if not quiet.get(name):
            problem(f"{name}: alerts_test.yml has no case where it does not fire")
    for name in sorted(set(firing) | set(quiet)):
        if name not in names:
            problem(f"alerts_test.yml tests {name}, which alerts.yml does not define")

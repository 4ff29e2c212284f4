"""What the structural checks of scripts/ops_checks.py share.

The problems found so far (problem, PROBLEMS; the dispatcher prints them),
the repository's files (ROOT, path, read, load_yaml), the expressions that
scripts/promql-exprs prints (promql_exprs), the metric catalogue as the
gateway prints it (catalogue), and the conventions more than one check
enforces (image_tag_problem, SECRET_VARS). Each check group is a module
beside this one.
"""

import json
import os
import re
import subprocess
import sys

from harness import SetupError, exported_series
import harness

ROOT = harness.ROOT
PROBLEMS = []


def problem(msg):
    PROBLEMS.append(msg)


def path(*parts):
    return os.path.join(ROOT, *parts)


def read(*parts):
    with open(path(*parts), encoding="utf-8") as f:
        return f.read()


def load_yaml(*parts):
    # Imported here: only the checks that read YAML need the virtualenv's ruamel.yaml.
    from ruamel.yaml import YAML

    return YAML(typ="safe", pure=True).load(read(*parts))


def promql_exprs():
    out = subprocess.run(
        [sys.executable, path("scripts", "promql-exprs"), "--root", ROOT],
        check=True, capture_output=True, text=True,
    ).stdout
    return [json.loads(line) for line in out.splitlines() if line.strip()]


def catalogue():
    """{exported series name: set(labels)} and the catalogue's entries, from
    `gateway metrics catalogue --format json` ($GATEWAY_BIN, else
    target/debug/gateway, built when missing)."""
    try:
        entries = harness.catalogue()
    except SetupError as e:
        raise SystemExit(f"the metric catalogue: {e}")
    series = {}
    for e in entries:
        # Target labels that Prometheus attaches to every scraped series.
        labels = set(e["labels"]) | {"job", "instance"}
        for name in exported_series(e):
            series[name] = labels
        if e["type"] == "histogram":
            series[e["name"] + "_bucket"] = labels | {"le"}
    series["up"] = {"job", "instance"}
    return series, entries


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

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
                 alert and panel expression exists in the catalogue (as
                 `gateway metrics catalogue --format json` prints it; the
                 binary is $GATEWAY_BIN, else target/debug/gateway, built when
                 missing); every catalogue metric is on the dashboard
    dashboard    panel ids, datasource uid and the provisioning files agree
    compose      docker-compose.yml and docker-compose.prod.yml: pinned images,
                 hardening, healthchecks, secrets, limits, mounts that exist
    env          .env.example documents every configuration variable (as
                 core/src/config declares and reads them) and every compose
                 interpolation, and holds no real secret
    dockerfile   Dockerfile: multi-stage, pinned images, --locked build,
                 non-root final stage, HEALTHCHECK, exec-form entrypoint
    nginx        deploy/nginx: no query strings in logs, timeouts, TLS, HSTS
    nginx-testcopy DIR  writes a copy of the nginx config that `nginx -t` can
                 check on this machine (upstream and paths rewritten)
    expected-empty  prometheus/expected-empty.txt names existing expressions
    snippets     docs/ mention the deployment commands and explain every panel
    docs         the documentation agrees with the code: relative links, their
                 anchors and alerts.yml's runbook_url resolve; the generated
                 sections (docs/cli.md from every command's --help, the metric
                 table from the catalogue) are current (scripts/ops/docs.py
                 --write rewrites them); docs/configuration.md gives every
                 variable of `gateway config reference --format json` with its
                 default and range; ```sql blocks run on freshly migrated
                 SQLite (and PostgreSQL with $TEST_DATABASE_URL); shell lines
                 use existing gateway subcommands and --flags
    prod-rehearsal [GATEWAY_BIN]  docs/deployment.md's production first
                 start, run word for word with the engine stood in for
                 (scripts/ops/rehearsal.py says how): the documented
                 commands, docker-compose.prod.yml's settings and secrets,
                 the nginx configuration, /health through TLS
    rehearsal-docker ARGS  the `docker` the rehearsal's shell calls

The checks live in the package scripts/ops, one module per group; this file
only dispatches.
"""

import sys

from ops import PROBLEMS, alerts, compose, dashboard, docs, dockerfile, env, expressions, nginx, rehearsal, snippets

CHECKS = {
    "alerts": alerts.check_alerts,
    "exprs": expressions.check_exprs,
    "metrics": expressions.check_metrics,
    "dashboard": dashboard.check_dashboard,
    "compose": compose.check_compose,
    "env": env.check_env,
    "dockerfile": dockerfile.check_dockerfile,
    "nginx": nginx.check_nginx,
    "nginx-testcopy": nginx.nginx_testcopy,
    "expected-empty": expressions.check_expected_empty,
    "snippets": snippets.check_snippets,
    "docs": docs.check_docs,
    "prod-rehearsal": rehearsal.rehearse_prod,
    "rehearsal-docker": rehearsal.docker_standin,
}


def main():
    if len(sys.argv) < 2:
        print(__doc__)
        return 2
    check, args = sys.argv[1], sys.argv[2:]
    if check not in CHECKS:
        print(f"unknown check {check}", file=sys.stderr)
        return 2
    CHECKS[check](*args)
    for p in PROBLEMS:
        print(p)
    return 1 if PROBLEMS else 0


if __name__ == "__main__":
    sys.exit(main())

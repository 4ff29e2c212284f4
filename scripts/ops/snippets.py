"""docs/: the deployment commands docs/deployment.md must mention, and an
explanation of every dashboard panel in docs/observability.md.
"""

import json

from ops import path, problem, read


def check_snippets():
    text = read("docs", "deployment.md")
    for need in ("docker compose up", "docker-compose.prod.yml", "pg-backup.sh", "pg-restore.sh", "pg_restore"):
        if need not in text:
            problem(f"docs/deployment.md does not mention {need}")
    # Every dashboard panel title is explained.
    with open(path("grafana", "dashboards", "gateway-overview.json"), encoding="utf-8") as f:
        dash = json.load(f)
    text = read("docs", "observability.md")
    for p in dash["panels"]:
        if p["type"] != "row" and p["title"] not in text:
            problem(f"docs/observability.md does not explain the panel {p['title']!r}")

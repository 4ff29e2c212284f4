"""README.md: the deployment commands it must mention, and an explanation of
every dashboard panel.
"""

import json

from ops import path, problem, read


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

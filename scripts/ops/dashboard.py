"""The Grafana side: the datasource uid, the provisioning files and the compose
mounts agree, and each dashboard's uid, panel ids, grid and refIds are sound.
"""

import json
import os

from ops import load_yaml, path, problem


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

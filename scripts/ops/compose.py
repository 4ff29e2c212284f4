"""docker-compose.yml and docker-compose.prod.yml: pinned images, hardening,
healthchecks, secrets, limits, networks and mounts that exist.
"""

import json
import os
import re

from ops import SECRET_VARS, image_tag_problem, load_yaml, path, problem, read


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


def service_blocks(text):
    """(service name, its lines) of a compose file's `services:`, comments included."""
    blocks, name, lines, in_services = [], None, [], False
    for line in text.splitlines():
        if re.match(r"^\S", line):
            in_services = line.startswith("services:")
            if name:
                blocks.append((name, lines))
                name, lines = None, []
            continue
        m = re.match(r"^  ([A-Za-z0-9_-]+):\s*$", line)
        if in_services and m:
            if name:
                blocks.append((name, lines))
            name, lines = m.group(1), []
        elif name:
            lines.append(line)
    if name:
        blocks.append((name, lines))
    return blocks


def check_commented_secrets(fname):
    """A *_FILE variable that a runbook says to uncomment must come with its
    secret mounted in the same service (commented out beside it) and declared
    at the top level: otherwise uncommenting what the docs say fails at start-up."""
    text = open(path(fname)).read()
    top = set(re.findall(r"^  #?\s*([a-z0-9_]+):\s*$", text.split("\nsecrets:", 1)[1], re.M)) if "\nsecrets:" in text else set()
    for service, lines in service_blocks(text):
        body = "\n".join(lines)
        mounted = set(re.findall(r"^\s+#?\s*-\s*([a-z0-9_]+)\s*$", body, re.M))
        for var, secret in re.findall(r"^\s+#?\s*([A-Z0-9_]+_FILE):\s*/run/secrets/([a-z0-9_]+)", body, re.M):
            if secret not in mounted:
                problem(f"{fname}: {service}: {var} reads secret {secret}, which the service's secrets: list does not mount (not even commented out beside it)")
            if secret not in top:
                problem(f"{fname}: {service}: {var} reads secret {secret}, which the top-level secrets: does not declare")


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

    check_commented_secrets("docker-compose.prod.yml")

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
        env_files = svc.get("env_file") or []
        env_files = env_files if isinstance(env_files, list) else [env_files]
        paths = [e if isinstance(e, str) else e.get("path") for e in env_files]
        # The gateway may read its non-secret settings from gateway.env; secrets are files.
        allowed = ["./gateway.env"] if name == "gateway" else []
        if any(p not in allowed for p in paths):
            problem(f"{where}: production takes secrets from files, not env_file (only the gateway's ./gateway.env)")
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

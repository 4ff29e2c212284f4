"""The production first start of docs/deployment.md, followed word for word on
a machine with no container engine (rehearse_prod), and the `docker` stand-in
its shell block runs with (docker_standin).

The block runs as written, in a copy of the checkout, under bash with
`set -euo pipefail`. Only what needs an engine is stood in for, and said so:

- `docker build` builds nothing: the gateway binary under test is the image;
- `docker run --rm IMAGE ARGS` runs that binary with ARGS and an empty
  environment, as the image's `ENTRYPOINT ["gateway"]` would;
- `docker compose -f FILE up -d` reads FILE (with `.env` beside it, as
  compose does) and starts what its services describe: the `postgres`
  service's role and database (from its POSTGRES_* settings and its
  password secret) on the local PostgreSQL, the `gateway` service's
  interpolated `environment:` and `env_file:`, every `/run/secrets/NAME` read
  from the file of a secret the service mounts (a `*_FILE` whose secret is
  not mounted fails as it would in a container), and nginx with the mounted
  configuration and certificates; then waits for the gateway's health, as
  `depends_on: condition: service_healthy` does;
- `curl` reaches the public host name on the local nginx (`--connect-to`)
  and trusts the rehearsal's certificate.

What differs from containers, each needed on a shared machine: the gateway
and nginx listen on free loopback ports, the database URL names
127.0.0.1 instead of the `postgres` service, and "/path/to/" (the block's
placeholder for the operator's certificate files) is where the rehearsal
wrote a certificate for the public host name. The role and the database are
dropped afterwards (never one that existed before).
"""

import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time

from ops import path, problem, read
import harness

STATE = "rehearsal-state.json"


def first_start_block():
    text = read("docs", "deployment.md")
    m = re.search(r"^First start:\n\n```sh\n(.*?)^```", text, re.S | re.M)
    if not m:
        problem("docs/deployment.md: no ```sh block after 'First start:'")
        return None
    return m.group(1)


# ---------------------------------------------------------------------------
# compose, as far as the rehearsal needs it


def interpolate(value, env, where):
    """Compose's ${VAR}, ${VAR:-default}, ${VAR-default}, ${VAR:?error}, $VAR, $$."""

    def one(m):
        if m.group(0) == "$$":
            return "$"
        name = m.group("braced") or m.group("bare")
        op, arg = m.group("op"), m.group("arg") or ""
        value = env.get(name)
        if op == ":-":
            return value if value else arg
        if op == "-":
            return value if value is not None else arg
        if op in (":?", "?") and (value is None or (op == ":?" and value == "")):
            raise ValueError(f"{where}: required variable {name} is missing a value: {arg}")
        return value or ""

    pattern = r"\$\$|\$\{(?P<braced>\w+)(?:(?P<op>:-|-|:\?|\?)(?P<arg>[^}]*))?\}|\$(?P<bare>[A-Za-z_]\w*)"
    return re.sub(pattern, one, str(value))


def dotenv(file):
    env = {}
    if os.path.exists(file):
        for line in open(file, encoding="utf-8"):
            line = line.strip()
            if line and not line.startswith("#") and "=" in line:
                name, value = line.split("=", 1)
                env[name.strip()] = value.strip().strip("'\"")
    return env


def service_env(compose, name, project, dot):
    svc = compose["services"][name]
    env = {}
    for entry in svc.get("env_file") or []:
        file = entry["path"] if isinstance(entry, dict) else entry
        required = entry.get("required", True) if isinstance(entry, dict) else True
        full = os.path.join(project, file)
        if os.path.exists(full):
            env.update(dotenv(full))
        elif required:
            raise ValueError(f"{name}: env file {file} not found")
    environment = svc.get("environment") or {}
    if isinstance(environment, list):
        environment = dict(e.split("=", 1) for e in environment)
    for key, value in environment.items():
        env[key] = interpolate(value if value is not None else "", dot, f"service {name}, {key}")
    return env


def mounted_secret(compose, service, value, project):
    """The host file behind /run/secrets/NAME, if the service mounts NAME."""
    m = re.fullmatch(r"/run/secrets/([\w.-]+)", value)
    if not m:
        return None
    name = m.group(1)
    mounts = [s if isinstance(s, str) else s.get("source") for s in compose["services"][service].get("secrets") or []]
    if name not in mounts:
        raise ValueError(f"service {service}: {value} is not mounted (no `- {name}` under its secrets:)")
    secret = (compose.get("secrets") or {}).get(name)
    if not secret or "file" not in secret:
        raise ValueError(f"secret {name} is not defined under the top-level secrets:")
    file = os.path.join(project, secret["file"])
    if not os.path.exists(file):
        raise ValueError(f"secret {name}: {secret['file']} not found")
    return file


def with_secrets(compose, service, env, project):
    out = dict(env)
    for key, value in env.items():
        file = mounted_secret(compose, service, value, project)
        if file and key.endswith("_FILE"):
            out[key] = file
    return out


# ---------------------------------------------------------------------------
# the `docker` stand-in (runs as its own process, called by the block)


def docker_standin(*args):
    state_file = os.environ["REHEARSAL_STATE"]
    state = json.load(open(state_file))
    args = list(args)
    if args[:1] == ["build"]:
        print("(rehearsal) docker build: the gateway binary under test stands in for the image")
        return
    if args[:1] == ["run"]:
        rest = [a for a in args[1:] if a not in ("--rm", "-i", "-t", "-it")]
        image, command = rest[0], rest[1:]
        print(f"(rehearsal) docker run {image}: {shlex.join(['gateway'] + command)}", file=sys.stderr)
        done = subprocess.run([state["gateway"]] + command, env={"PATH": "/usr/bin:/bin"}, check=False)
        sys.exit(done.returncode)
    if args[:1] == ["compose"]:
        files = [args[i + 1] for i, a in enumerate(args) if a == "-f"]
        verbs = [a for i, a in enumerate(args[1:], 1) if not a.startswith("-") and args[i - 1] != "-f"]
        if verbs[:1] == ["up"]:
            compose_up(state, files[0], state_file)
            return
        if verbs[:1] == ["ps"]:
            for name, pid in state.get("pids", {}).items():
                alive = os.path.exists(f"/proc/{pid}")
                print(f"{name:10} {'running' if alive else 'exited'} (pid {pid})")
            return
    sys.exit(f"(rehearsal) docker {' '.join(args)}: not something the first start should need")


def save(state, state_file):
    """At once after each thing made, so the clean-up finds it whatever fails next."""
    with open(state_file, "w") as f:
        json.dump(state, f)


def terminate(pid):
    """SIGTERM to the process group `pid` leads, then at most 10 s for it to
    exit (gone, or a zombie its parent has not reaped)."""
    try:
        os.killpg(pid, signal.SIGTERM)
    except OSError:
        return
    for _ in range(100):
        try:
            if open(f"/proc/{pid}/stat").read().split()[2] == "Z":
                return
        except OSError:
            return
        time.sleep(0.1)


def stop_running(state, name):
    """`up -d` again recreates a changed service: the old process goes first."""
    pid = state.get("pids", {}).get(name)
    if pid:
        terminate(pid)


def compose_up(state, file, state_file):
    from ruamel.yaml import YAML

    project = os.getcwd()
    compose = YAML(typ="safe", pure=True).load(open(os.path.join(project, file)))
    dot = dotenv(os.path.join(project, ".env"))
    tmp = state["tmp"]

    # postgres: its role and database, as the image's entrypoint creates them
    # (once: its data volume keeps them).
    pg = with_secrets(compose, "postgres", service_env(compose, "postgres", project, dot), project)
    password = open(pg["POSTGRES_PASSWORD_FILE"]).read().strip()
    user, db = pg["POSTGRES_USER"], pg["POSTGRES_DB"]
    psql = ["psql", "-v", "ON_ERROR_STOP=1", "-qAt", "-d", "postgres"]
    if not subprocess.run(psql + ["-c", f"SELECT 1 FROM pg_roles WHERE rolname = '{user}'"],
                          capture_output=True, text=True, check=True).stdout.strip():
        subprocess.run(psql + ["-c", f"CREATE ROLE \"{user}\" LOGIN PASSWORD '{password}'"], check=True)
        state["created_role"] = user
        save(state, state_file)
    if state.get("created_db") != db:
        if subprocess.run(psql + ["-c", f"SELECT 1 FROM pg_database WHERE datname = '{db}'"],
                          capture_output=True, text=True, check=True).stdout.strip():
            sys.exit(f"(rehearsal) a database {db} exists on this server already: not touching it")
        subprocess.run(psql + ["-c", f"CREATE DATABASE \"{db}\" OWNER \"{user}\""], check=True)
        state["created_db"] = db
        save(state, state_file)

    # gateway: the service's environment, its secrets from their files.
    env = with_secrets(compose, "gateway", service_env(compose, "gateway", project, dot), project)
    port, metrics = harness.free_port(), harness.free_port()
    url_file = env.get("DATABASE_URL_FILE")
    if url_file:
        url = open(url_file).read().strip()
        local = os.path.join(tmp, "database_url.local")
        pg_port = os.environ.get("PGPORT", "5432")
        open(local, "w").write(re.sub(r"@postgres:5432/", f"@127.0.0.1:{pg_port}/", url) + "\n")
        env["DATABASE_URL_FILE"] = local
    env.update(HOST="127.0.0.1", PORT=str(port), METRICS_ADDR=f"127.0.0.1:{metrics}", PATH="/usr/bin:/bin")
    data = os.path.join(tmp, "data")
    os.makedirs(data, exist_ok=True)
    for name in ("gateway", "nginx"):
        stop_running(state, name)
    log = open(os.path.join(tmp, "gateway.log"), "ab")
    gateway = subprocess.Popen([state["gateway"], "serve"], env=env, cwd=data, stdin=subprocess.DEVNULL,
                               stdout=log, stderr=log, start_new_session=True)
    state.setdefault("pids", {})["gateway"] = gateway.pid
    save(state, state_file)

    # nginx: the mounted configuration and certificates, on free ports.
    nginx_dir = os.path.join(tmp, "nginx")
    from ops.nginx import nginx_testcopy

    nginx_testcopy(nginx_dir)
    os.chmod(os.path.join(nginx_dir, "tmp"), 0o1777)
    volumes = compose["services"]["nginx"].get("volumes") or []
    certs = next(interpolate(v, dot, "nginx volumes").split(":")[0] for v in volumes if "/etc/nginx/certs" in v)
    certs = os.path.join(project, certs)
    if os.path.lexists(os.path.join(nginx_dir, "certs")):
        os.remove(os.path.join(nginx_dir, "certs"))
    os.symlink(certs, os.path.join(nginx_dir, "certs"))
    https, http_port = harness.free_port(), harness.free_port()
    site = os.path.join(nginx_dir, "conf.d", "gateway.conf")
    conf = open(site).read()
    conf = re.sub(r"server 127\.0\.0\.1:\d+", f"server 127.0.0.1:{port}", conf)
    conf = re.sub(r"listen 443 ", f"listen 127.0.0.1:{https} ", conf)
    conf = re.sub(r"listen 80 ", f"listen 127.0.0.1:{http_port} ", conf)
    open(site, "w").write(conf)
    nlog = open(os.path.join(tmp, "nginx.log"), "ab")
    nginx = subprocess.Popen([shutil.which("nginx") or "/usr/sbin/nginx", "-c", os.path.join(nginx_dir, "nginx.conf"),
                              "-p", nginx_dir, "-g", "daemon off;"], stdin=subprocess.DEVNULL, stdout=nlog,
                             stderr=nlog, start_new_session=True)
    state["pids"]["nginx"] = nginx.pid
    state["https_port"] = https
    save(state, state_file)
    with open(os.path.join(tmp, "https_port"), "w") as f:
        f.write(str(https))

    deadline = time.monotonic() + 60
    while True:
        try:
            status, _ = harness.http("GET", f"http://127.0.0.1:{port}/health")
        except OSError:  # not listening yet (URLError is an OSError)
            status = None
        if status == 200:
            break
        if gateway.poll() is not None or nginx.poll() is not None or time.monotonic() > deadline:
            sys.exit("(rehearsal) the stack did not become healthy:\n" + harness.tail(os.path.join(tmp, "gateway.log"))
                     + harness.tail(os.path.join(tmp, "nginx.log")))
        time.sleep(0.2)
    print("(rehearsal) compose up: postgres (local server), gateway and nginx are up and healthy")


# ---------------------------------------------------------------------------
# the rehearsal


def rehearse_prod(gateway_bin=None):
    block = first_start_block()
    if block is None:
        return
    gateway_bin = os.path.abspath(gateway_bin or os.environ.get("GATEWAY_BIN") or path("target", "release", "gateway"))
    if not os.path.exists(gateway_bin):
        gateway_bin = harness.ensure_binaries(["gateway"])[0]
    tmp = tempfile.mkdtemp(prefix="prod-rehearsal-")
    state_file = os.path.join(tmp, STATE)
    json.dump({"gateway": gateway_bin, "tmp": tmp}, open(state_file, "w"))
    checkout = os.path.join(tmp, "checkout")
    os.makedirs(checkout)
    for item in ("docker-compose.prod.yml", "deploy", "prometheus", "grafana", ".env.example"):
        src = path(item)
        (shutil.copytree if os.path.isdir(src) else shutil.copy)(src, os.path.join(checkout, item))
    # What the operator brings: a certificate for the public host name.
    host = "auth.example.com"
    provided = os.path.join(tmp, "provided")
    os.makedirs(provided)
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", f"/CN={host}",
                    "-addext", f"subjectAltName=DNS:{host}", "-keyout", os.path.join(provided, "privkey.pem"),
                    "-out", os.path.join(provided, "fullchain.pem")], check=True, capture_output=True)
    ops_entry = path("scripts", "ops_checks.py")
    preamble = f"""set -euo pipefail
docker() {{ {shlex.quote(sys.executable)} {shlex.quote(ops_entry)} rehearsal-docker "$@"; }}
curl() {{ command curl --max-time 20 --connect-to "::127.0.0.1:$(cat {shlex.quote(os.path.join(tmp, 'https_port'))})" \\
  --cacert {shlex.quote(os.path.join(provided, 'fullchain.pem'))} "$@"; }}
"""
    script = preamble + block.replace("/path/to/", provided + "/")
    env = dict(os.environ, REHEARSAL_STATE=state_file, PYTHONPATH=path("scripts"))
    try:
        done = run_shell(script, checkout, env)
        health = None
        lines = [l for l in done.stdout.splitlines() if l.strip()]
        try:
            health = json.loads(lines[-1]) if lines else None
        except ValueError:
            pass
        if done.returncode != 0 or not isinstance(health, dict) or health.get("status") != "healthy":
            problem(f"prod rehearsal: the first start of docs/deployment.md failed (exit {done.returncode})\n"
                    f"--- stdout ---\n{done.stdout}\n--- stderr ---\n{done.stderr}\n--- gateway log ---\n"
                    + harness.tail(os.path.join(tmp, "gateway.log")))
            return
        print(f"prod rehearsal: first start followed; {host}/health through nginx: {lines[-1]}")
        add_microsoft_and_meta(checkout, preamble, env, tmp)
    finally:
        cleanup(state_file)
        shutil.rmtree(tmp, ignore_errors=True)


def run_shell(script, checkout, env, timeout=300):
    """The script under bash in the rehearsal's checkout; its output captured."""
    return subprocess.run(["bash", "-c", script], cwd=checkout, env=env, capture_output=True, text=True,
                          timeout=timeout)


def add_microsoft_and_meta(checkout, preamble, env, tmp):
    """The paragraph after the block, done as it says: values in .env, the
    commented variables, secret mounts and secrets uncommented, the secret
    files created, `up -d` again; both providers must then be configured."""
    with open(os.path.join(checkout, ".env"), "a", encoding="utf-8") as f:
        f.write("MICROSOFT_CLIENT_ID=00000000-0000-0000-0000-000000000000\n"
                "MICROSOFT_TENANT=11111111-1111-1111-1111-111111111111\nMETA_CLIENT_ID=1234567890\n")
    file = os.path.join(checkout, "docker-compose.prod.yml")
    lines = open(file, encoding="utf-8").read().split("\n")
    out, uncommented, i = [], 0, 0
    while i < len(lines):
        line = lines[i]
        variable = re.match(r"^(\s*)# ((?:MICROSOFT|META)_[A-Z_]+: .*)$", line)
        mount = re.match(r"^(\s*)# (- (?:microsoft|meta)_client_secret)\s*$", line)
        secret = re.match(r"^(\s*)# ((?:microsoft|meta)_client_secret:)\s*$", line)
        if variable or mount:
            m = variable or mount
            out.append(m.group(1) + m.group(2))
            uncommented += 1
        elif secret and i + 1 < len(lines) and re.match(r"^\s*#\s+file: ", lines[i + 1]):
            out.append(secret.group(1) + secret.group(2))
            out.append(re.sub(r"^(\s*)#(\s+)file:", lambda m: m.group(1) + m.group(2)[:-1] + "file:", lines[i + 1]))
            uncommented += 2
            i += 1
        else:
            out.append(line)
        i += 1
    open(file, "w", encoding="utf-8").write("\n".join(out))
    script = preamble + """
printf '%s\\n' 'the-microsoft-client-secret' > secrets/microsoft_client_secret
printf '%s\\n' 'the-meta-app-secret' > secrets/meta_client_secret
chmod 0444 secrets/microsoft_client_secret secrets/meta_client_secret
docker compose -f docker-compose.prod.yml up -d
curl -s https://auth.example.com/health
"""
    done = run_shell(script, checkout, env)
    providers = []
    if done.returncode == 0:
        # As an MCP server would: start alice's consent with each provider.
        for provider in ("google", "microsoft", "meta"):
            started = run_shell(
                preamble + "curl -s -X POST https://auth.example.com/auth/init "
                "-H \"X-API-Key: $(cat secrets/api_key)\" -H 'Content-Type: application/json' "
                f"-d '{{\"provider\": \"{provider}\", \"user_email\": \"alice@example.com\"}}'",
                checkout, env, timeout=60)
            try:
                if json.loads(started.stdout)["auth_url"].startswith("https://auth.example.com/connect/"):
                    providers.append(provider)
            except (ValueError, KeyError, TypeError, AttributeError):
                print(f"prod rehearsal: /auth/init for {provider}: {started.stdout}{started.stderr}")
    if done.returncode != 0 or not {"google", "meta", "microsoft"} <= set(providers):
        problem(f"prod rehearsal: adding Microsoft and Meta as docs/deployment.md says failed ({uncommented} lines "
                f"uncommented, providers {providers})\n--- stdout ---\n{done.stdout}\n--- stderr ---\n{done.stderr}\n"
                "--- gateway log ---\n" + harness.tail(os.path.join(tmp, "gateway.log")))
        return
    print(f"prod rehearsal: Microsoft and Meta added ({uncommented} lines uncommented); consent links from {providers}")


def cleanup(state_file):
    try:
        state = json.load(open(state_file))
    except (OSError, ValueError):
        return
    for pid in state.get("pids", {}).values():
        terminate(pid)
    psql = ["psql", "-qAt", "-d", "postgres", "-c"]
    if state.get("created_db"):
        subprocess.run(psql + [f"DROP DATABASE IF EXISTS \"{state['created_db']}\" WITH (FORCE)"], check=False)
    if state.get("created_role"):
        subprocess.run(psql + [f"DROP ROLE IF EXISTS \"{state['created_role']}\""], check=False)

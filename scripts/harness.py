"""The process harness shared by scripts/check-live-metrics and scripts/fuzz-api,
and the metric catalogue loader that scripts/ops also uses.

It holds: SetupError and log; loopback HTTP (http, http_json, direct_opener)
and opening a connect link like a browser (open_link); waiting (wait_for,
free_port, tail); the children a script starts and their clean-up
(Processes, PROCS, die_with_parent, run_main with its signal handling); the
tools and binaries (apt_install, ensure_binaries); mock-provider plus a
gateway configured for it (GatewayStack, which each script's Stack extends);
and the metric catalogue as the gateway binary prints it (catalogue,
exported_series).

Standard library only: the scripts run it with whatever python3 is there.
"""

import atexit
import base64
import ctypes
from http.cookiejar import CookieJar
import html
import json
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request

ROOT = os.path.abspath(os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
# The script's name, for the prefix of its messages.
PROG = os.path.basename(sys.argv[0]) if sys.argv and sys.argv[0] else "scripts"
HTTP_TIMEOUT = 15
PROVIDER = "mock"


class SetupError(Exception):
    """The environment could not be brought up (exit 2)."""


def log(msg=""):
    print(msg, flush=True)


# ============================================================================
# HTTP on loopback


def direct_opener(*handlers):
    """An opener that ignores *_proxy variables: everything here is on loopback."""
    return urllib.request.build_opener(urllib.request.ProxyHandler({}), *handlers)


DIRECT = direct_opener()


def _open(opener, request):
    """(status, body, final URL); HTTP error statuses are returned, not raised."""
    try:
        with opener.open(request, timeout=HTTP_TIMEOUT) as r:
            return r.status, r.read(), r.geturl()
    except urllib.error.HTTPError as e:
        with e:
            return e.code, e.read(), e.geturl()


def http(method, url, body=None, headers=None):
    """(status, bytes) for a request; HTTP error statuses are returned, not raised."""
    data = None
    headers = dict(headers or {})
    if body is not None:
        data = json.dumps(body).encode()
        headers.setdefault("Content-Type", "application/json")
    status, raw, _ = _open(DIRECT, urllib.request.Request(url, data=data, method=method, headers=headers))
    return status, raw


def http_json(method, url, body=None, headers=None):
    """(status, dict): a JSON object as is, other JSON under "_json", a body
    that is not JSON under "_raw" (so callers can always use .get)."""
    status, raw = http(method, url, body, headers)
    try:
        body = json.loads(raw) if raw else {}
        return status, body if isinstance(body, dict) else {"_json": body}
    except json.JSONDecodeError:
        return status, {"_raw": raw[:300].decode(errors="replace")}


# A GET of a connect link shows a page (scanners that fetch links first use
# nothing); the user's "Continue" POSTs its form back, with the cookie set
# beside the page, and the redirects lead through the provider to the
# callback page.
CONNECT_FORM = re.compile(r'<form method="post" action="([^"]+)">.*?name="csrf" value="([^"]*)"', re.S)


def open_link(url):
    """Opens a connect link like a user's browser that never saw the gateway
    (cookies kept, redirects followed) and presses "Continue"; returns the
    final HTTP status."""
    opener = direct_opener(urllib.request.HTTPCookieProcessor(CookieJar()))
    status, body, at = _open(opener, url)
    found = CONNECT_FORM.search(body.decode(errors="replace")) if status == 200 else None
    if found is None:
        return status
    action = urllib.parse.urljoin(at, html.unescape(found.group(1)))
    form = urllib.parse.urlencode({"csrf": html.unescape(found.group(2))}).encode()
    request = urllib.request.Request(
        action, data=form, method="POST", headers={"Content-Type": "application/x-www-form-urlencoded"}
    )
    status, _, _ = _open(opener, request)
    return status


# ============================================================================
# Waiting


def free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(what, predicate, timeout, interval=0.2, procs=()):
    """Polls predicate() until it returns a true value (returned) or the
    timeout passes (SetupError). Fails early when one of procs exited."""
    deadline = time.monotonic() + timeout
    last_err = None
    while True:
        for p in procs:
            if p.poll() is not None:
                raise SetupError(f"{p.name} exited with status {p.returncode} while waiting for {what}")
        try:
            value = predicate()
            if value:
                return value
        except (OSError, ValueError, urllib.error.URLError) as e:
            last_err = e
        if time.monotonic() >= deadline:
            detail = f" (last error: {last_err})" if last_err else ""
            raise SetupError(f"timed out after {timeout}s waiting for {what}{detail}")
        time.sleep(interval)


def tail(path, lines=40):
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            return "".join(f.readlines()[-lines:])
    except OSError:
        return ""


def addr_in_use(log_path):
    return re.search(r"(?i)address already in use|os error 98", tail(log_path, 20)) is not None


# ============================================================================
# Processes and clean-up


def die_with_parent():
    """In the child before exec: SIGTERM it if this script dies (even by SIGKILL)."""
    try:
        PR_SET_PDEATHSIG = 1
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    except (OSError, AttributeError):
        pass  # not Linux: the atexit/finally clean-up still applies


class Processes:
    """Children started by this script; all stopped at exit, by their pid,
    and the temporary directory they ran in removed (unless keep_tmp)."""

    def __init__(self):
        self.procs = []
        self.tmp = None
        self.keep_tmp = False

    def start(self, name, argv, env, log_path=None, stdout_path=None):
        """Starts argv in self.tmp. Its output goes to log_path (stdout to
        stdout_path when given), or, with no log_path, to this script's own."""
        out = err = None
        if log_path is not None:
            out = open(stdout_path or log_path, "ab")
            err = out if stdout_path is None else open(log_path, "ab")
        try:
            p = subprocess.Popen(argv, env=env, stdin=subprocess.DEVNULL, stdout=out, stderr=err, cwd=self.tmp,
                                 preexec_fn=die_with_parent)
        finally:
            for f in {out, err} - {None}:
                f.close()
        p.name, p.log_path = name, log_path
        self.procs.append(p)
        return p

    def start_on_free_ports(self, launch, ready, attempts=3):
        """launch() picks free ports and starts a process (returned);
        ready(process) waits until it serves (SetupError if not). A port taken
        between probing and binding makes the process exit: then again, on
        other ports."""
        for attempt in range(attempts):
            p = launch()
            try:
                ready(p)
                return p
            except SetupError:
                if p.poll() is None or attempt == attempts - 1 or not addr_in_use(p.log_path):
                    raise
                self.stop(p)

    def stop(self, p, grace=10):
        if p.poll() is None:
            p.terminate()
            try:
                p.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait(timeout=10)
        if p in self.procs:
            self.procs.remove(p)

    def print_log_tails(self, lines=30):
        for p in list(self.procs):
            if p.log_path:
                print(f"--- last lines of {p.name}'s log ({p.log_path}) ---\n{tail(p.log_path, lines)}",
                      file=sys.stderr)

    def cleanup(self):
        for p in reversed(list(self.procs)):
            try:
                self.stop(p)
            except Exception as e:  # keep cleaning up the others
                print(f"{PROG}: could not stop {p.name} (pid {p.pid}): {e}", file=sys.stderr)
        if self.tmp and os.path.isdir(self.tmp):
            if self.keep_tmp:
                print(f"{PROG}: kept {self.tmp}", file=sys.stderr)
            else:
                shutil.rmtree(self.tmp, ignore_errors=True)
            self.tmp = None


PROCS = Processes()


def on_signal(signum, _frame):
    # An exception, not an exit: the finally/atexit clean-up still runs.
    raise SystemExit(128 + signum)


def run_main(body, keep_tmp=False):
    """Runs body() (its return value is the exit status) so that whatever
    happens, a signal included, every child is stopped and the temporary
    directory removed. A SetupError exits 2 with the children's log tails."""
    PROCS.keep_tmp = keep_tmp
    atexit.register(PROCS.cleanup)
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, on_signal)
    try:
        return body()
    except SetupError as e:
        print(f"{PROG}: set-up failed: {e}", file=sys.stderr)
        PROCS.print_log_tails()
        return 2
    finally:
        PROCS.cleanup()


# ============================================================================
# Tools and binaries


def apt_install(*packages):
    """apt-get install, as root, without starting any packaged service."""
    if os.geteuid() != 0:
        raise SetupError(f"{' and '.join(packages)} missing and not root; install: apt-get install {' '.join(packages)}")
    log(f"{PROG}: installing {' '.join(packages)} (apt)")
    # Installing prometheus must not start its service (as in scripts/check-ops).
    policy = "/usr/sbin/policy-rc.d"
    created = False
    if not os.path.exists(policy):
        with open(policy, "w") as f:
            f.write("#!/bin/sh\nexit 101\n")
        os.chmod(policy, 0o755)
        created = True
    try:
        env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
        for argv in (["apt-get", "update", "-qq"],
                     ["apt-get", "install", "-y", "-qq", "--no-install-recommends", *packages]):
            r = subprocess.run(argv, env=env, capture_output=True, text=True)
            if r.returncode != 0:
                raise SetupError(f"{' '.join(argv)} failed:\n{r.stdout}{r.stderr}")
    finally:
        if created:
            os.remove(policy)


# The workspace binaries and the variables that name a prebuilt one (as in
# clients/python/tests/stack.py).
BINARY_VARS = {"gateway": "GATEWAY_BIN", "mock-provider": "MOCK_PROVIDER_BIN"}


def ensure_binaries(names, given=()):
    """Paths of the named binaries ("gateway", "mock-provider"), in order.

    given: the paths from the command line (--gateway, --mock-provider), all
    or none, used as they are. Otherwise each comes from its variable
    ($GATEWAY_BIN, $MOCK_PROVIDER_BIN) when set, else from target/debug (or
    $CARGO_TARGET_DIR/debug), built with `cargo build --locked` only when
    missing there."""
    given = list(given)
    if any(given):
        for b in given:
            if not (b and os.access(b, os.X_OK)):
                raise SetupError(f"--gateway and --mock-provider must both name executables (got {b!r})")
        return [os.path.abspath(b) for b in given]
    target = os.environ.get("CARGO_TARGET_DIR") or os.path.join(ROOT, "target")
    paths, missing = [], []
    for name in names:
        var = BINARY_VARS[name]
        if os.environ.get(var):
            if not os.access(os.environ[var], os.X_OK):
                raise SetupError(f"${var} ({os.environ[var]}) is not an executable")
            paths.append(os.path.abspath(os.environ[var]))
            continue
        paths.append(os.path.join(target, "debug", name))
        if not os.access(paths[-1], os.X_OK):
            missing.append(name)
    if missing:
        argv = ["cargo", "build", "--locked"] + [a for name in missing for a in ("-p", name)]
        # stderr: the ops checks keep stdout for the problems they find.
        print(f"{PROG}: building {' and '.join(missing)} ({' '.join(argv)})", file=sys.stderr, flush=True)
        if subprocess.run(argv, cwd=ROOT, stdout=sys.stderr).returncode != 0:
            raise SetupError(f"{' '.join(argv)} failed")
    return paths


# ============================================================================
# The metric catalogue


METRIC_TYPES = ("counter", "gauge", "histogram")


def catalogue(gateway_bin=None, json_file=None):
    """The metric catalogue: [{name, type, labels, help[, unit, buckets]}], as
    `gateway metrics catalogue --format json` prints it (gateway_bin, by
    default the one ensure_binaries finds), or as read from json_file (a
    saved copy of that output)."""
    if json_file:
        what = json_file
        with open(json_file, encoding="utf-8") as f:
            text = f.read()
    else:
        if gateway_bin is None:
            (gateway_bin,) = ensure_binaries(["gateway"])
        argv = [gateway_bin, "metrics", "catalogue", "--format", "json"]
        what = " ".join(argv)
        r = subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=120)
        if r.returncode != 0:
            raise SetupError(f"{what} exited with status {r.returncode}:\n{r.stderr.strip()}")
        text = r.stdout
    try:
        entries = json.loads(text)
    except ValueError as e:
        raise SetupError(f"{what}: not JSON ({e})") from None
    # Checked here so that a changed format fails loudly, not as odd results.
    if not isinstance(entries, list) or not entries:
        raise SetupError(f"{what}: expected a non-empty JSON array")
    for e in entries:
        if not (isinstance(e, dict) and isinstance(e.get("name"), str) and e.get("type") in METRIC_TYPES
                and isinstance(e.get("labels"), list) and all(isinstance(label, str) for label in e["labels"])):
            raise SetupError(f"{what}: unexpected entry {e!r}")
    return entries


def exported_series(entry):
    """The series a catalogue entry is exported as: a histogram's
    name_bucket, name_sum and name_count; any other metric's name."""
    if entry["type"] == "histogram":
        return [entry["name"] + s for s in ("_bucket", "_sum", "_count")]
    return [entry["name"]]


# ============================================================================
# mock-provider and a gateway that uses it


class GatewayStack:
    """mock-provider and a gateway configured for it (SQLite in tmp, the mock
    as its only provider) on loopback ports, with the API calls both scripts
    make. Each script's Stack adds its environment (gateway_env) and what it
    waits for (gateway_ready), and its scenario."""

    def __init__(self, gateway_bin, mock_bin, tmp):
        self.gateway_bin, self.mock_bin, self.tmp = gateway_bin, mock_bin, tmp
        self.api_key = secrets.token_urlsafe(48)[:64]
        self.enc_key = base64.urlsafe_b64encode(os.urandom(32)).decode()

    # --- mock provider ------------------------------------------------------
    def start_mock(self):
        out = os.path.join(self.tmp, "mock.stdout")
        self.mock = PROCS.start("mock-provider", [self.mock_bin, "--port", "0", "--host", "127.0.0.1"],
                                {"PATH": os.environ.get("PATH", "/usr/bin:/bin")},
                                os.path.join(self.tmp, "mock.log"), stdout_path=out)

        def listening():
            with open(out, encoding="utf-8", errors="replace") as f:
                m = re.search(r"mock-provider listening on (http://127\.0\.0\.1:\d+)", f.read())
            return m.group(1) if m else None

        self.mock_url = wait_for("mock-provider to listen", listening, 30, procs=[self.mock])

    def mock_admin(self, path, body):
        status, raw = http("POST", f"{self.mock_url}/__admin/{path}", body)
        if status not in (200, 204):
            raise SetupError(f"mock-provider /__admin/{path} {body} answered {status}: {raw[:200]!r}")

    # --- gateway ------------------------------------------------------------
    def start_gateway(self):
        def launch():
            self.port = free_port()
            self.base = f"http://127.0.0.1:{self.port}"
            env = {
                "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
                "DATABASE_URL": f"sqlite://{self.tmp}/gw.db?mode=rwc",
                "DATA_DIR": self.tmp,
                "AUTH_GATEWAY_ENCRYPTION_KEY": self.enc_key,
                "AUTH_GATEWAY_API_KEY": self.api_key,
                "HOST": "127.0.0.1",
                "PORT": str(self.port),
                "AUTH_GATEWAY_PROVIDERS": PROVIDER,
                "MOCK_CLIENT_ID": "mock-client-id",
                "MOCK_CLIENT_SECRET": "mock-client-secret",
                "MOCK_AUTH_URL": f"{self.mock_url}/authorize",
                "MOCK_TOKEN_URL": f"{self.mock_url}/token",
                "MOCK_REVOCATION_URL": f"{self.mock_url}/revoke",
                "MOCK_USERINFO_URL": f"{self.mock_url}/userinfo",
                "MOCK_SCOPES": "openid email mail.read",
                **self.gateway_env(),
            }
            # Kept for the command line (cli), which must see the same configuration.
            self.env = env
            self.gateway = PROCS.start("gateway", [self.gateway_bin], env, os.path.join(self.tmp, "gateway.log"))
            return self.gateway

        PROCS.start_on_free_ports(launch, lambda _: self.gateway_ready())

    def gateway_env(self):
        """The script's own variables (after self.port is chosen)."""
        return {}

    def gateway_ready(self):
        wait_for("gateway /health == 200", lambda: http("GET", f"{self.base}/health")[0] == 200, 60,
                 procs=[self.gateway])

    def cli(self, *args):
        """`gateway ARGS...` with the running gateway's configuration (same
        database and keys); its stdout. SetupError when it fails."""
        r = subprocess.run([self.gateway_bin, *args], env=self.env, cwd=self.tmp, stdin=subprocess.DEVNULL,
                           capture_output=True, text=True, timeout=60)
        if r.returncode != 0:
            raise SetupError(f"gateway {' '.join(args)} exited with status {r.returncode}:\n{r.stderr[-2000:]}")
        return r.stdout

    # --- the API ------------------------------------------------------------
    @property
    def headers(self):
        return {"X-API-Key": self.api_key}

    def api(self, method, path, body=None):
        return http_json(method, self.base + path, body, self.headers)

    def init(self, email):
        status, body = self.api("POST", "/auth/init", {"provider": PROVIDER, "user_email": email})
        if status != 200 or "auth_url" not in body:
            raise SetupError(f"POST /auth/init for {email} answered {status}: {body}")
        return body

    def oauth(self, email):
        """Starts a session for email and follows its link like a browser:
        (session id, final HTTP status)."""
        body = self.init(email)
        return body["session_id"], open_link(body["auth_url"])

    def session_status(self, session_id):
        status, body = self.api("GET", f"/auth/status/{session_id}")
        if status != 200:
            raise SetupError(f"GET /auth/status/{session_id} answered {status}: {body}")
        return body

    def token(self, email, required_scopes=None):
        body = {"provider": PROVIDER, "user_email": email}
        if required_scopes:
            body["required_scopes"] = required_scopes
        return self.api("POST", "/auth/token", body)

"""Real processes for the end-to-end tests: the mock provider, the gateway, the example.

Binaries: ``$MOCK_PROVIDER_BIN`` / ``$GATEWAY_BIN`` when set; otherwise
``<repo>/target/debug/{mock-provider,gateway}``, built with
``cargo build -p gateway -p mock-provider`` when missing (or always, when
``MCP_AUTH_CARGO_BUILD=1``).
"""

from __future__ import annotations

import base64
import os
import re
import secrets
import shutil
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import httpx

PACKAGE_ROOT = Path(__file__).resolve().parents[1]
REPO_ROOT = PACKAGE_ROOT.parents[1]
EXAMPLE_SERVER = PACKAGE_ROOT / "examples" / "mail_server.py"

#: Bounds on start-up waits (seconds).
START_TIMEOUT = 60.0
BUILD_TIMEOUT = 3600.0


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def binaries() -> tuple[Path, Path]:
    """Paths of (gateway, mock-provider), building them if needed."""
    gateway_env = os.environ.get("GATEWAY_BIN")
    mock_env = os.environ.get("MOCK_PROVIDER_BIN")
    gateway = Path(gateway_env) if gateway_env else REPO_ROOT / "target" / "debug" / "gateway"
    mock = Path(mock_env) if mock_env else REPO_ROOT / "target" / "debug" / "mock-provider"
    wanted_build = os.environ.get("MCP_AUTH_CARGO_BUILD") == "1"
    if not (gateway_env and mock_env) and (wanted_build or not gateway.exists() or not mock.exists()):
        cargo = shutil.which("cargo")
        if cargo is None:
            raise RuntimeError("cargo not found: set GATEWAY_BIN and MOCK_PROVIDER_BIN")
        subprocess.run(
            [cargo, "build", "-p", "gateway", "-p", "mock-provider"],
            cwd=REPO_ROOT,
            check=True,
            timeout=BUILD_TIMEOUT,
        )
    for path in (gateway, mock):
        if not path.exists():
            raise RuntimeError(f"binary not found: {path}")
    return gateway, mock


def _tail(path: Path, limit: int = 4000) -> str:
    try:
        return path.read_text(errors="replace")[-limit:]
    except OSError:
        return "<no log>"


def _wait_until(check: Callable[[], bool], proc: subprocess.Popen[Any], what: str, log: Path) -> None:
    """Poll ``check`` until true (bounded); fail early if the process died."""
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited with {proc.returncode}:\n{_tail(log)}")
        if check():
            return
        time.sleep(0.1)
    raise RuntimeError(f"{what} not ready after {START_TIMEOUT:g}s:\n{_tail(log)}")


def _http_ok(url: str, accept: Callable[[int], bool]) -> Callable[[], bool]:
    def check() -> bool:
        try:
            return accept(httpx.get(url, timeout=2.0).status_code)
        except httpx.HTTPError:
            return False

    return check


def stop(proc: subprocess.Popen[Any]) -> None:
    """Terminate a child process (bounded), killing it if it lingers."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)


@dataclass
class MockProvider:
    """The running mock OAuth provider and its admin API."""

    proc: subprocess.Popen[str]
    url: str

    @property
    def api_url(self) -> str:
        return f"{self.url}/api/me"

    def admin(self, method: str, path: str, body: Mapping[str, Any] | None = None) -> Any:
        response = httpx.request(method, f"{self.url}/__admin/{path}", json=body, timeout=10.0)
        response.raise_for_status()
        return response.json() if response.content else None

    def reset(self) -> None:
        """Back to defaults: automatic consent as login_hint, no faults, normal tokens."""
        self.admin("POST", "consent", {"mode": "approve_as_login_hint"})
        self.admin("DELETE", "faults")
        self.admin(
            "POST",
            "settings",
            {"access_token_ttl_secs": 3600, "granted_scopes": None, "issue_refresh_tokens": True},
        )

    def last_authorize(self) -> dict[str, str]:
        pairs = self.admin("GET", "last-authorize") or []
        return {name: value for name, value in pairs}

    # --- the test identity provider (issuer <url>/idp) ------------------------------------

    @property
    def idp_issuer(self) -> str:
        """The ``iss`` of the test identity provider's tokens (and its discovery base)."""
        return f"{self.url}/idp"

    def idp_claims(self, email: str, audience: str, /, *, lifetime: int = 300, **overrides: Any) -> dict[str, Any]:
        """The claims of a good access token for ``email``, issued for ``audience``;
        ``overrides`` replace (or, set to ``None``, remove) claims."""
        now = int(time.time())
        claims: dict[str, Any] = {
            "iss": self.idp_issuer,
            "sub": f"sub-{email}",
            "aud": audience,
            "iat": now,
            "exp": now + lifetime,
            "email": email,
            "email_verified": True,
        }
        claims.update(overrides)
        return {name: value for name, value in claims.items() if value is not None}

    def mint(self, claims: Mapping[str, Any], forgery: str | None = None) -> str:
        """A JWT carrying ``claims``, signed ES256 by the IdP's current key, or forged
        (``"alg_none"``, ``"hs256_with_public_key"``, ``"unpublished_key"``)."""
        token = self.admin("POST", "idp/mint", {"claims": dict(claims), "forgery": forgery})["token"]
        assert isinstance(token, str)
        return token

    def user_token(self, email: str, audience: str, /, **overrides: Any) -> str:
        """A good access token for ``email`` and ``audience`` (see :meth:`idp_claims`)."""
        return self.mint(self.idp_claims(email, audience, **overrides))


def start_mock(binary: Path, log_dir: Path) -> MockProvider:
    log = log_dir / "mock-provider.log"
    with log.open("w") as log_file:
        proc = subprocess.Popen(
            [str(binary), "--port", "0"],
            stdout=subprocess.PIPE,
            stderr=log_file,
            text=True,
        )
    assert proc.stdout is not None
    url = _read_listen_line(proc, proc.stdout, log)
    return MockProvider(proc=proc, url=url)


def _read_listen_line(proc: subprocess.Popen[str], stdout: IO[str], log: Path) -> str:
    # The mock prints its address as its first stdout line; readline blocks until it
    # does or the process exits (EOF), so this is bounded by the process itself.
    line = stdout.readline()
    match = re.search(r"listening on (http://\S+)", line)
    if match is None:
        stop(proc)
        raise RuntimeError(f"mock-provider did not announce its address (got {line!r}):\n{_tail(log)}")
    return match.group(1).rstrip("/")


#: The id of the trusted identity provider every test gateway is configured with
#: (``AUTH_GATEWAY_TRUSTED_ISSUERS``): the mock provider's IdP.
IDP_ID = "corp"
#: The ``aud`` of the MCP server's access tokens in the exchange tests.
MCP_AUDIENCE = "https://mail-mcp.example"

#: Rate limits off: a test run opens many sessions from 127.0.0.1, which the default
#: limits would refuse with 429. The rate-limit tests start gateways of their own.
NO_RATE_LIMITS = {
    "RATE_LIMIT_INIT_PER_SECOND": "0",
    "RATE_LIMIT_TOKEN_PER_SECOND": "0",
    "RATE_LIMIT_BROWSER_PER_SECOND": "0",
}


@dataclass
class Gateway:
    """A running gateway, with what is needed to run its CLI (or another replica) against
    the same database."""

    proc: subprocess.Popen[bytes]
    url: str
    api_key: str
    log: Path
    binary: Path
    env: dict[str, str]

    @property
    def data_dir(self) -> Path:
        return Path(self.env["DATA_DIR"])

    @property
    def database(self) -> Path:
        """The SQLite database file."""
        return self.data_dir / "gw.db"

    def cli(self, *args: str) -> str:
        """Run ``gateway ARGS...`` with the server's configuration; return its stdout."""
        done = subprocess.run(
            [str(self.binary), *args],
            env=self.env,
            cwd=self.data_dir,
            capture_output=True,
            text=True,
            timeout=60,
        )
        if done.returncode != 0:
            raise RuntimeError(f"gateway {' '.join(args)} exited with {done.returncode}:\n{done.stderr[-4000:]}")
        return done.stdout

    def add_client(self, name: str, *rights: str) -> str:
        """Add an API client (``gateway clients add NAME RIGHTS...``) and return its key once
        this gateway accepts it (a running gateway reloads its clients within seconds)."""
        key = self.cli("clients", "add", name, *rights).strip()
        assert key and "\n" not in key, f"unexpected output of clients add: {key!r}"
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            # Anything but "Invalid API key." means the gateway knows the key (a request
            # outside the client's rights is refused with another message).
            response = httpx.get(f"{self.url}/auth/status/{uuid.uuid4()}", headers={"X-API-Key": key}, timeout=5.0)
            if response.status_code != 403 or response.json().get("message") != "Invalid API key.":
                return key
            time.sleep(0.2)
        raise RuntimeError(f"the gateway did not pick up API client {name!r} within {START_TIMEOUT:g}s")

    def add_exchange_client(
        self,
        name: str,
        *,
        audience: str = MCP_AUDIENCE,
        actions: str = "init,status,token",
        require_exchange: bool = False,
        extra: tuple[str, ...] = (),
    ) -> str:
        """Add an API client whose MCP server's tokens carry ``aud=audience`` (so it may
        exchange them), optionally bound to token exchange; return its key once the
        gateway accepts it. The bootstrap key has no audience and cannot exchange."""
        args = ["--actions", actions, "--audience", audience, *extra]
        if require_exchange:
            args.append("--require-exchange")
        return self.add_client(name, *args)


def _launch(binary: Path, env: dict[str, str], log: Path) -> Gateway:
    with log.open("wb") as log_file:
        proc = subprocess.Popen([str(binary)], env=env, stdout=log_file, stderr=subprocess.STDOUT, cwd=env["DATA_DIR"])
    url = f"http://127.0.0.1:{env['PORT']}"
    _wait_until(_http_ok(f"{url}/health", lambda s: s == 200), proc, "gateway", log)
    return Gateway(proc=proc, url=url, api_key=env["AUTH_GATEWAY_API_KEY"], log=log, binary=binary, env=env)


def start_gateway(
    binary: Path, mock: MockProvider, data_dir: Path, extra_env: Mapping[str, str] | None = None
) -> Gateway:
    """Start the gateway on a free port with its own SQLite database, configured for the
    mock provider (and for token exchange with its identity provider), with rate limits
    off unless ``extra_env`` sets them."""
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "DATABASE_URL": f"sqlite://{data_dir}/gw.db?mode=rwc",
        "DATA_DIR": str(data_dir),
        "AUTH_GATEWAY_ENCRYPTION_KEY": base64.urlsafe_b64encode(os.urandom(32)).decode(),
        "AUTH_GATEWAY_API_KEY": secrets.token_urlsafe(48)[:64],
        "HOST": "127.0.0.1",
        "PORT": str(free_port()),
        "LOG_FORMAT": "json",
        "AUTH_GATEWAY_PROVIDERS": "mock",
        "MOCK_CLIENT_ID": "mock-client-id",
        "MOCK_CLIENT_SECRET": "mock-client-secret",
        "MOCK_AUTH_URL": f"{mock.url}/authorize",
        "MOCK_TOKEN_URL": f"{mock.url}/token",
        "MOCK_REVOCATION_URL": f"{mock.url}/revoke",
        "MOCK_USERINFO_URL": f"{mock.url}/userinfo",
        "MOCK_SCOPES": "openid email mail.read",
        # Token exchange: the mock provider's identity provider is trusted (JWKS found by
        # OIDC discovery at <issuer>/.well-known/openid-configuration).
        "AUTH_GATEWAY_TRUSTED_ISSUERS": IDP_ID,
        f"IDP_{IDP_ID.upper()}_ISSUER": mock.idp_issuer,
        **NO_RATE_LIMITS,
        **(extra_env or {}),
    }
    return _launch(binary, env, data_dir / "gateway.log")


def start_replica(gateway: Gateway, extra_env: Mapping[str, str] | None = None) -> Gateway:
    """Start another gateway process on the same database, keys and providers (what a
    second replica behind a load balancer is), on its own port."""
    env = {**gateway.env, "PORT": str(free_port()), **(extra_env or {})}
    return _launch(gateway.binary, env, gateway.data_dir / f"gateway-{env['PORT']}.log")


class Processes:
    """Extra mock providers and gateways for one test, stopped when it ends."""

    def __init__(self, binaries: tuple[Path, Path], base_dir: Path) -> None:
        self._gateway_bin, self._mock_bin = binaries
        self._base_dir = base_dir
        self._procs: list[subprocess.Popen[Any]] = []

    def _dir(self, prefix: str) -> Path:
        path = self._base_dir / f"{prefix}-{len(self._procs)}"
        path.mkdir(parents=True)
        return path

    def mock(self) -> MockProvider:
        started = start_mock(self._mock_bin, self._dir("mock"))
        self._procs.append(started.proc)
        return started

    def gateway(self, mock: MockProvider, **env: str) -> Gateway:
        started = start_gateway(self._gateway_bin, mock, self._dir("gateway"), env)
        self._procs.append(started.proc)
        return started

    def replica(self, gateway: Gateway, **env: str) -> Gateway:
        started = start_replica(gateway, env)
        self._procs.append(started.proc)
        return started

    def stop_all(self) -> None:
        for proc in reversed(self._procs):
            stop(proc)


@dataclass
class ExampleServer:
    """The example MCP server (examples/mail_server.py) as a child process."""

    proc: subprocess.Popen[bytes]
    url: str
    log: Path


def start_example(gateway: Gateway, mock: MockProvider, log_dir: Path) -> ExampleServer:
    port = free_port()
    env = dict(os.environ)
    env.update(
        {
            "AUTH_GATEWAY_URL": gateway.url,
            "AUTH_GATEWAY_API_KEY": gateway.api_key,
            "MAIL_API_URL": mock.api_url,
            "MAIL_PROVIDER": "mock",
            "MCP_PORT": str(port),
        }
    )
    log = log_dir / "mail-server.log"
    with log.open("wb") as log_file:
        proc = subprocess.Popen(
            [sys.executable, str(EXAMPLE_SERVER)], env=env, stdout=log_file, stderr=subprocess.STDOUT
        )
    url = f"http://127.0.0.1:{port}/mcp"
    # Any HTTP answer means uvicorn is serving (a bare GET on /mcp is refused with 4xx).
    _wait_until(_http_ok(url, lambda s: s < 500), proc, "example MCP server", log)
    return ExampleServer(proc=proc, url=url, log=log)

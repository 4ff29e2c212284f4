"""AuthClient against a real gateway process and the mock OAuth provider.

Every error code the gateway can be made to answer is produced here by a real gateway:
the sign-in ones, refused API keys and rights, rate limits, a failing provider, a
credential locked by another replica's refresh and a locked database."""

from __future__ import annotations

import sqlite3
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

import anyio
import httpx
import pytest

from mcp_auth_client import (
    AuthClient,
    AuthorizationRequired,
    AuthorizationTimeout,
    AuthSessionFailed,
    Busy,
    Forbidden,
    GatewayAuthError,
    InternalError,
    InvalidEmail,
    InvalidRequest,
    MethodNotAllowed,
    NotAuthenticated,
    NotFound,
    PayloadTooLarge,
    ProviderUnavailable,
    RateLimited,
    RefreshFailed,
    RetryableError,
    ScopeInsufficient,
    ServiceUnavailable,
    SessionNotFound,
    SyncAuthClient,
    Unauthorized,
    UnexpectedResponse,
    UnknownProvider,
    UnsupportedMediaType,
    UntrustedAuthUrl,
)
from mcp_auth_client.exceptions import AuthGatewayError, error_from_response
from tests.browser import open_in_browser, visit
from tests.stack import Gateway, MockProvider, Processes, free_port

pytestmark = [pytest.mark.anyio, pytest.mark.e2e]


async def sign_in(auth: AuthClient, user: str, scopes: list[str] | None = None) -> str:
    session = await auth.init_oauth("mock", user, scopes)
    await open_in_browser(session.auth_url)
    status = await auth.wait_for_completion(session.session_id, timeout=10)
    assert status.is_completed
    return session.session_id


async def test_full_flow_token_works_at_the_protected_api(auth: AuthClient, mock: MockProvider, user: str) -> None:
    with pytest.raises(NotAuthenticated) as missing:
        await auth.get_token("mock", user)
    assert missing.value.status_code == 404
    assert not await auth.is_authenticated("mock", user)

    session = await auth.init_oauth("mock", user)
    assert "/connect/" in session.auth_url
    pending = await auth.get_status(session.session_id)
    assert pending.status == "pending"

    await open_in_browser(session.auth_url)
    assert mock.last_authorize()["login_hint"] == user
    status = await auth.wait_for_completion(session.session_id, timeout=10)
    assert status.status == "completed"
    assert status.user_email == user and status.provider == "mock"

    info = await auth.get_token_info("mock", user)
    assert "mail.read" in info.scopes
    assert info.access_token not in repr(info)
    async with httpx.AsyncClient() as http:
        me = await http.get(mock.api_url, headers={"Authorization": info.authorization_header})
    assert me.status_code == 200
    assert me.json()["email"] == user
    assert await auth.is_authenticated("mock", user)

    grants = await auth.list_providers(user)
    assert [(g.provider, g.state) for g in grants] == [("mock", "active")]

    revoked = await auth.revoke("mock", user)
    assert revoked.success and revoked.provider_revocation == "revoked"
    with pytest.raises(NotAuthenticated):
        await auth.get_token("mock", user)
    with pytest.raises(NotAuthenticated):
        await auth.revoke("mock", user)


async def test_repeated_init_reuses_the_pending_session(auth: AuthClient, user: str) -> None:
    first = await auth.init_oauth("mock", user, ["mail.read"])
    again = await auth.init_oauth("mock", user, ["mail.read"])
    assert again.session_id == first.session_id
    assert again.auth_url == first.auth_url


async def test_status_long_poll_is_bounded_and_returns_on_completion(gateway: Gateway, user: str) -> None:
    waits: list[str | None] = []

    async def record(request: httpx.Request) -> None:
        if "/auth/status/" in request.url.path:
            waits.append(request.url.params.get("wait"))

    async with httpx.AsyncClient(event_hooks={"request": [record]}, timeout=30.0) as http:
        auth = AuthClient(gateway.url, gateway.api_key, http_client=http)
        session = await auth.init_oauth("mock", user)
        started = time.monotonic()
        status = await auth.get_status(session.session_id, wait=1)
        elapsed = time.monotonic() - started
        assert status.is_pending
        assert 0.5 <= elapsed < 5, elapsed

        waits.clear()
        started = time.monotonic()
        with pytest.raises(AuthorizationTimeout) as timed_out:
            await auth.wait_for_completion(session.session_id, timeout=1.5)
        assert timed_out.value.session_id == session.session_id
        # One long-poll of the whole seconds left, no busy polling, no overshoot.
        assert waits == ["1"]
        assert time.monotonic() - started < 3

        await open_in_browser(session.auth_url)
        started = time.monotonic()
        done = await auth.wait_for_completion(session.session_id, timeout=30)
        assert done.is_completed and time.monotonic() - started < 5


@pytest.mark.parametrize(
    ("consent", "reason"),
    [
        ({"mode": "deny"}, "access_denied"),
        ({"mode": "approve_as", "email": "someone-else@example.com"}, "account_mismatch"),
    ],
)
async def test_failed_consent_fails_the_session(
    auth: AuthClient, mock: MockProvider, user: str, consent: dict[str, str], reason: str
) -> None:
    mock.admin("POST", "consent", consent)
    session = await auth.init_oauth("mock", user)
    page = await visit(session.auth_url)
    assert "/auth/callback/" in str(page.url)
    with pytest.raises(AuthSessionFailed) as failed:
        await auth.wait_for_completion(session.session_id, timeout=10)
    assert failed.value.reason == reason
    assert failed.value.session_id == session.session_id
    with pytest.raises(NotAuthenticated):
        await auth.get_token("mock", user)


async def test_a_link_outside_the_gateways_origin_is_not_handed_out(
    processes: Processes, mock: MockProvider, user: str
) -> None:
    # The gateway's PUBLIC_BASE_URL says localhost while the client reaches it as
    # 127.0.0.1: to a browser, two origins, as a proxy's address and the gateway's are.
    port = free_port()
    public = f"http://localhost:{port}"
    gateway = processes.gateway(mock, PORT=str(port), PUBLIC_BASE_URL=public)
    async with AuthClient(gateway.url, gateway.api_key) as auth:
        with pytest.raises(UntrustedAuthUrl) as refused:
            await auth.init_oauth("mock", user)
    assert refused.value.origin == public
    assert refused.value.trusted_origins == (gateway.url,)
    assert "/connect/" not in str(refused.value)

    # Told about the public address, the client accepts the gateway's links there.
    async with AuthClient(gateway.url, gateway.api_key, public_url=public) as behind_proxy:
        assert behind_proxy.trusted_link_origins == (gateway.url, public)
        session = await behind_proxy.init_oauth("mock", user)
        assert session.auth_url.startswith(f"{public}/connect/")
        await open_in_browser(session.auth_url)
        assert (await behind_proxy.wait_for_completion(session.session_id, timeout=10)).is_completed


async def test_scope_insufficient_names_the_missing_scopes(auth: AuthClient, mock: MockProvider, user: str) -> None:
    await sign_in(auth, user, ["mail.read"])
    with pytest.raises(ScopeInsufficient) as err:
        await auth.get_token("mock", user, required_scopes=["mail.read", "mail.send"])
    assert err.value.missing_scopes == ["mail.send"]
    assert err.value.status_code == 403
    assert isinstance(err.value, AuthorizationRequired)
    assert not isinstance(err.value, GatewayAuthError)


async def test_needs_reauth_is_refresh_failed(auth: AuthClient, mock: MockProvider, user: str) -> None:
    mock.admin("POST", "settings", {"access_token_ttl_secs": 1})
    await sign_in(auth, user)
    mock.admin("POST", "invalidate", {"email": user})
    with pytest.raises(RefreshFailed) as err:
        await auth.get_token("mock", user)
    assert err.value.status_code == 401
    assert isinstance(err.value, AuthorizationRequired)
    grants = await auth.list_providers(user)
    assert grants[0].needs_reauth


async def test_provider_outage_is_provider_unavailable(auth: AuthClient, mock: MockProvider, user: str) -> None:
    # Tokens that are expired on arrival: every get_token needs a refresh at the provider.
    mock.admin("POST", "settings", {"access_token_ttl_secs": 0})
    await sign_in(auth, user)
    mock.admin("POST", "faults", {"endpoint": "token", "fault": {"kind": "server_error"}, "times": 20})
    with pytest.raises(ProviderUnavailable) as err:
        await auth.get_token("mock", user)
    assert err.value.status_code == 503
    assert err.value.retry_after is not None and err.value.retry_after >= 0


async def test_bad_api_key_is_not_please_sign_in(gateway: Gateway, user: str) -> None:
    secret = "s3cr3t-" + "x" * 57
    async with AuthClient(gateway.url, secret) as wrong:
        with pytest.raises(Forbidden) as err:
            await wrong.get_token("mock", user)
        assert isinstance(err.value, GatewayAuthError)
        assert not isinstance(err.value, AuthorizationRequired)
        assert err.value.status_code == 403
        assert err.value.message == "Invalid API key."
        assert secret not in str(err.value) + repr(err.value) + repr(wrong)
        # is_authenticated must not turn a configuration error into "not signed in".
        with pytest.raises(Forbidden):
            await wrong.is_authenticated("mock", user)


async def test_a_client_outside_its_rights_is_forbidden(auth: AuthClient, gateway: Gateway, user: str) -> None:
    token_only = gateway.add_client(f"token-only-{uuid.uuid4().hex[:8]}", "--actions", "token", "--providers", "mock")
    async with AuthClient(gateway.url, token_only) as limited:
        # Within its rights: an ordinary answer.
        with pytest.raises(NotAuthenticated):
            await limited.get_token("mock", user)
        assert await limited.is_authenticated("mock", user) is False
        # Outside them: forbidden, a configuration problem and never "please sign in".
        with pytest.raises(Forbidden) as init:
            await limited.init_oauth("mock", user)
        assert init.value.status_code == 403 and "may not use init" in init.value.message
        assert isinstance(init.value, GatewayAuthError) and not isinstance(init.value, AuthorizationRequired)
        with pytest.raises(Forbidden):
            await limited.list_providers(user)
        with pytest.raises(Forbidden):
            await limited.revoke("mock", user)
        assert token_only not in repr(limited)

    # A session belongs to the API client that started it.
    other = gateway.add_client(f"other-{uuid.uuid4().hex[:8]}")
    session = await auth.init_oauth("mock", user)
    async with AuthClient(gateway.url, other) as stranger:
        with pytest.raises(Forbidden) as not_yours:
            await stranger.get_status(session.session_id)
    assert "another API client" in not_yours.value.message
    assert (await auth.get_status(session.session_id)).is_pending


async def test_rate_limited_carries_retry_after(processes: Processes, mock_provider: MockProvider, user: str) -> None:
    # Burst 2, then one request a second (per API client and per source address).
    limited = processes.gateway(mock_provider, RATE_LIMIT_TOKEN_PER_SECOND="1")
    async with AuthClient(limited.url, limited.api_key) as auth:
        answers: list[type[Exception]] = []
        error: RateLimited | None = None
        for _ in range(10):
            try:
                await auth.get_token("mock", user)
            except NotAuthenticated:
                answers.append(NotAuthenticated)
            except RateLimited as exc:
                error = exc
                break
        assert error is not None, answers
        assert answers == [NotAuthenticated, NotAuthenticated]
        assert isinstance(error, RetryableError) and not isinstance(error, AuthorizationRequired)
        assert error.status_code == 429 and error.code == "rate_limited"
        assert error.retry_after is not None and 1 <= error.retry_after <= 2
        assert error.request_id
        # Only /auth/token is limited here; init is not.
        await auth.init_oauth("mock", user)
        # Honouring the hint is enough to be served again.
        await anyio.sleep(error.retry_after + 0.2)
        with pytest.raises(NotAuthenticated):
            await auth.get_token("mock", user)


async def test_busy_while_another_replica_refreshes(processes: Processes, user: str) -> None:
    # Two replicas on one database. Replica A refreshes through a slow provider and holds
    # the credential's refresh lease; replica B waits for the lease for its lock wait
    # (PROVIDER_TIMEOUT_SECONDS + 5 s), then answers busy. Their own mock provider and no
    # background refresh job, so nothing else takes the slow answer.
    provider = processes.mock()
    quiet = {"JOB_PROACTIVE_REFRESH_ENABLED": "false"}
    replica_a = processes.gateway(provider, PROVIDER_TIMEOUT_SECONDS="30", **quiet)
    replica_b = processes.replica(replica_a, PROVIDER_TIMEOUT_SECONDS="1")
    provider.reset()
    provider.admin("POST", "settings", {"access_token_ttl_secs": 0})  # every get_token refreshes
    async with AuthClient(replica_a.url, replica_a.api_key, timeout=30) as a:
        await sign_in(a, user)
        provider.admin("POST", "faults", {"endpoint": "token", "fault": {"kind": "slow", "millis": 8000}})
        async with AuthClient(replica_b.url, replica_b.api_key, timeout=30) as b, anyio.create_task_group() as tg:
            tg.start_soon(a.get_token, "mock", user)  # holds the lease for ~8 s, then succeeds
            with anyio.fail_after(10):  # until A is waiting on the slow provider
                while provider.admin("GET", "counters")["faults_served"] == 0:
                    await anyio.sleep(0.05)
            started = time.monotonic()
            with pytest.raises(Busy) as busy:
                await b.get_token("mock", user)
            assert time.monotonic() - started < 7.5
    assert busy.value.status_code == 503 and busy.value.retry_after == 1
    assert isinstance(busy.value, RetryableError) and not isinstance(busy.value, AuthorizationRequired)


@contextmanager
def database_locked(gateway: Gateway) -> Iterator[None]:
    """Another process holds the SQLite write lock: the gateway's writes wait for its busy
    timeout (5 s), and requests beyond its connection pool wait for a connection."""
    db = sqlite3.connect(gateway.database, isolation_level=None, timeout=10)
    try:
        db.execute("BEGIN EXCLUSIVE")
        yield
        db.execute("ROLLBACK")
    finally:
        db.close()


async def test_locked_database_is_retryable(processes: Processes, mock_provider: MockProvider) -> None:
    gateway = processes.gateway(mock_provider)
    results: list[object] = []
    async with AuthClient(gateway.url, gateway.api_key, timeout=30, max_connections=64) as auth:

        async def start_session(n: int) -> None:
            try:
                results.append(await auth.init_oauth("mock", f"locked-{n}@example.com"))
            except AuthGatewayError as exc:
                results.append(exc)

        with database_locked(gateway):
            async with anyio.create_task_group() as tg:
                for n in range(32):  # more than the gateway's pool (8 on SQLite)
                    tg.start_soon(start_session, n)
        kinds = {type(r) for r in results}
        # Beyond the pool: no connection in time -> service_unavailable (503, Retry-After 1).
        # Holding a connection: SQLite's "database is locked" -> currently internal_error
        # (500, no hint); the client treats both as retryable.
        assert ServiceUnavailable in kinds, results
        assert kinds <= {ServiceUnavailable, InternalError}, results
        for err in results:
            assert isinstance(err, RetryableError)
            if isinstance(err, ServiceUnavailable):
                assert (err.status_code, err.retry_after) == (503, 1)
            else:
                assert (err.status_code, err.retry_after) == (500, None)
        # And it recovers once the lock is gone.
        assert (await auth.init_oauth("mock", "after-the-lock@example.com")).session_id


async def test_missing_api_key_maps_to_unauthorized(gateway: Gateway) -> None:
    async with httpx.AsyncClient() as http:
        response = await http.post(f"{gateway.url}/auth/token", json={"provider": "mock", "user_email": "a@b.co"})
    err = error_from_response(response.status_code, response.json(), retry_after_header=None)
    assert isinstance(err, Unauthorized) and err.status_code == 401


async def test_request_errors_map_to_their_classes(auth: AuthClient, gateway: Gateway, user: str) -> None:
    with pytest.raises(UnknownProvider):
        await auth.get_token("no-such-provider", user)
    with pytest.raises(InvalidEmail):
        await auth.get_token("mock", "not-an-email")
    with pytest.raises(SessionNotFound):
        await auth.get_status("00000000-0000-4000-8000-000000000000")

    headers = {"X-API-Key": gateway.api_key}
    async with httpx.AsyncClient(base_url=gateway.url, headers=headers) as http:
        answers = {
            NotFound: await http.get("/auth/no-such-route"),
            MethodNotAllowed: await http.put("/auth/token", json={}),
            InvalidRequest: await http.post("/auth/token", json={"provider": "mock"}),
            UnsupportedMediaType: await http.post(
                "/auth/token", content=b"provider=mock", headers={"Content-Type": "text/plain"}
            ),
            PayloadTooLarge: await http.post(
                "/auth/token",
                content=b'{"provider":"mock","user_email":"' + b"a" * (32 * 1024) + b'"}',
                headers={"Content-Type": "application/json"},
            ),
        }
    for cls, response in answers.items():
        err = error_from_response(response.status_code, response.json())
        assert type(err) is cls, (cls, response.status_code, response.text[:200])


async def test_request_errors_the_client_itself_can_meet(gateway: Gateway, user: str) -> None:
    async with AuthClient(gateway.url, gateway.api_key) as auth:
        with pytest.raises(InvalidRequest) as redirect:
            await auth.init_oauth("mock", user, redirect_after="https://elsewhere.example/done")
        assert "redirect_after" in redirect.value.message
    # A gateway_url with a wrong path prefix.
    async with AuthClient(gateway.url + "/gateway", gateway.api_key) as misconfigured:
        with pytest.raises(NotFound) as wrong_path:
            await misconfigured.get_token("mock", user)
        assert wrong_path.value.status_code == 404


async def test_path_segments_are_escaped(gateway: Gateway) -> None:
    paths: list[bytes] = []

    async def record(request: httpx.Request) -> None:
        paths.append(request.url.raw_path)

    async with httpx.AsyncClient(event_hooks={"request": [record]}) as http:
        auth = AuthClient(gateway.url, gateway.api_key, http_client=http)
        assert await auth.list_providers("a+b@example.com") == []
        # Unescaped, the "/" would make another route (not_found); escaped, the gateway
        # gets the whole address and judges it.
        with pytest.raises(InvalidEmail):
            await auth.list_providers("a/b@example.com")
    assert paths == [b"/auth/providers/a%2Bb%40example.com", b"/auth/providers/a%2Fb%40example.com"]


async def test_a_url_that_is_not_the_gateway_is_an_unexpected_response(mock_provider: MockProvider) -> None:
    # The mock OAuth provider answers 404 with an empty body where the gateway's API would be.
    async with AuthClient(mock_provider.url, "k" * 64) as wrong_service:
        with pytest.raises(UnexpectedResponse) as caught:
            await wrong_service.get_token("mock", "a@example.com")
    assert caught.value.status_code == 404 and caught.value.code is None


def test_sync_client_round_trip(gateway: Gateway, user: str) -> None:
    with SyncAuthClient(gateway.url, gateway.api_key) as client:
        assert client.health()["status"] == "healthy"
        assert client.is_authenticated("mock", user) is False
        session = client.init_oauth("mock", user, ["mail.read"])
        assert client.get_status(session.session_id).is_pending
        anyio.run(open_in_browser, session.auth_url)
        status = client.wait_for_completion(session.session_id, 10)
        assert status.is_completed and status.user_email == user
        assert client.get_token("mock", user).startswith("mock_at_")
        assert "mail.read" in client.get_token_info("mock", user).scopes
        assert [g.provider for g in client.list_providers(user)] == ["mock"]
        assert client.revoke("mock", user).provider_revocation == "revoked"
        with pytest.raises(NotAuthenticated):
            client.get_token("mock", user)
        assert "api_key" not in repr(client) and gateway.api_key not in repr(client)
    with pytest.raises(RuntimeError):
        client.health()

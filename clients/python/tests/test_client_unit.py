"""AuthClient without a gateway process: error mapping for every code, secrets kept out
of messages, timeouts, bounded waits. (The e2e tests repeat the reachable cases against
the real gateway.)"""

from __future__ import annotations

import subprocess
import sys
import time

import httpx
import pytest

import mcp_auth_client
from mcp_auth_client import (
    AuthClient,
    AuthorizationRequired,
    AuthorizationTimeout,
    AuthSessionFailed,
    Busy,
    Forbidden,
    GatewayAuthError,
    GatewayConnectionError,
    GatewayTimeout,
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
)
from mcp_auth_client.exceptions import ERROR_CODES, AuthGatewayError
from tests.fake_gateway import FakeGateway

pytestmark = pytest.mark.anyio

# The gateway's contract: code -> (status, class).
CONTRACT: dict[str, tuple[int, type[AuthGatewayError]]] = {
    "not_authenticated": (404, NotAuthenticated),
    "refresh_failed": (401, RefreshFailed),
    "scope_insufficient": (403, ScopeInsufficient),
    "provider_unavailable": (503, ProviderUnavailable),
    "busy": (503, Busy),
    "unknown_provider": (400, UnknownProvider),
    "invalid_email": (400, InvalidEmail),
    "invalid_request": (400, InvalidRequest),
    "session_not_found": (404, SessionNotFound),
    "unauthorized": (401, Unauthorized),
    "forbidden": (403, Forbidden),
    "not_found": (404, NotFound),
    "method_not_allowed": (405, MethodNotAllowed),
    "payload_too_large": (413, PayloadTooLarge),
    "unsupported_media_type": (415, UnsupportedMediaType),
    "rate_limited": (429, RateLimited),
    "internal_error": (500, InternalError),
    "service_unavailable": (503, ServiceUnavailable),
}


def test_every_code_has_exactly_one_class() -> None:
    assert set(ERROR_CODES) == set(CONTRACT)
    assert len(set(ERROR_CODES.values())) == len(ERROR_CODES)


@pytest.mark.parametrize("code", sorted(CONTRACT))
async def test_each_code_maps_to_its_exception(code: str) -> None:
    status, cls = CONTRACT[code]
    fake = FakeGateway()
    extra: dict[str, object] = {}
    headers: dict[str, str] = {}
    if status in (429, 503):
        extra["retry_after"] = 7
        headers["Retry-After"] = "7"
    if code == "scope_insufficient":
        extra["missing_scopes"] = ["mail.send"]
    if code in ("not_authenticated", "refresh_failed", "scope_insufficient"):
        extra["auth_required"] = True
    fake.forced = (status, {"error": code, "message": f"m-{code}", "request_id": "r-9", **extra}, headers)
    async with fake.client() as client:
        with pytest.raises(AuthGatewayError) as caught:
            await client.get_token("mock", "alice@example.com")
    err = caught.value
    assert type(err) is cls
    assert (err.code, err.status_code, err.request_id, err.message) == (code, status, "r-9", f"m-{code}")
    assert isinstance(err, AuthorizationRequired) == (
        code in ("not_authenticated", "refresh_failed", "scope_insufficient")
    )
    assert isinstance(err, GatewayAuthError) == (code in ("unauthorized", "forbidden"))
    if isinstance(err, RetryableError) and status in (429, 503):
        assert err.retry_after == 7
    if isinstance(err, ScopeInsufficient):
        assert err.missing_scopes == ["mail.send"]


async def test_same_status_different_meaning() -> None:
    fake = FakeGateway()
    async with fake.client() as client:
        fake.forced = (401, {"error": "refresh_failed", "message": "x", "auth_required": True}, {})
        with pytest.raises(RefreshFailed):
            await client.get_token("mock", "a@example.com")
        fake.forced = (401, {"error": "unauthorized", "message": "x"}, {})
        with pytest.raises(Unauthorized):
            await client.get_token("mock", "a@example.com")
        fake.forced = (403, {"error": "scope_insufficient", "message": "x", "missing_scopes": ["s"]}, {})
        with pytest.raises(ScopeInsufficient):
            await client.get_token("mock", "a@example.com")


async def test_retry_after_header_when_body_has_none() -> None:
    fake = FakeGateway()
    fake.forced = (503, {"error": "provider_unavailable", "message": "down"}, {"Retry-After": "12"})
    async with fake.client() as client:
        with pytest.raises(ProviderUnavailable) as caught:
            await client.get_token("mock", "a@example.com")
    assert caught.value.retry_after == 12
    assert "retry after 12s" in str(caught.value)


async def test_unknown_code_and_non_json_are_unexpected() -> None:
    async def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/auth/token":
            return httpx.Response(418, json={"error": "teapot", "message": "?"})
        return httpx.Response(502, text="<html>bad gateway</html>")

    http = httpx.AsyncClient(transport=httpx.MockTransport(handler))
    async with AuthClient("http://gw.test", "k" * 64, http_client=http) as client:
        with pytest.raises(UnexpectedResponse) as teapot:
            await client.get_token("mock", "a@example.com")
        assert teapot.value.code == "teapot" and teapot.value.status_code == 418
        with pytest.raises(UnexpectedResponse) as html:
            await client.list_providers("a@example.com")
        assert html.value.status_code == 502
    await http.aclose()


async def test_bad_key_is_gateway_auth_error_and_never_leaks() -> None:
    fake = FakeGateway()
    secret = "s3cr3t-" + "z" * 57
    async with fake.client(api_key=secret) as client:
        with pytest.raises(Forbidden) as caught:
            await client.get_token("mock", "a@example.com")
        with pytest.raises(Forbidden):
            await client.is_authenticated("mock", "a@example.com")
        assert secret not in repr(client)
    assert secret not in str(caught.value) and secret not in repr(caught.value)
    assert fake.requests[0].headers["x-api-key"] == secret


async def test_token_is_not_in_reprs() -> None:
    fake = FakeGateway()
    session = None
    async with fake.client() as client:
        session = await client.init_oauth("mock", "a@example.com")
        fake.complete(session.auth_url)
        info = await client.get_token_info("mock", "a@example.com")
    assert info.access_token == "tok-a@example.com"
    assert info.access_token not in repr(info)
    assert info.authorization_header == "Bearer tok-a@example.com"


async def test_path_segments_are_escaped() -> None:
    fake = FakeGateway()
    async with fake.client() as client:
        await client.list_providers("a+b/c@example.com")
    assert fake.requests[-1].url.raw_path == b"/auth/providers/a%2Bb%2Fc%40example.com"


async def test_connection_errors_and_timeouts() -> None:
    async def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("refused", request=request)

    async def slow(request: httpx.Request) -> httpx.Response:
        raise httpx.ReadTimeout("slow", request=request)

    for handler, cls in ((refuse, GatewayConnectionError), (slow, GatewayTimeout)):
        http = httpx.AsyncClient(transport=httpx.MockTransport(handler))
        async with AuthClient("http://gw.test", "k" * 64, http_client=http) as client:
            with pytest.raises(cls):
                await client.health()
        await http.aclose()


async def test_real_timeout_is_applied() -> None:
    import socket

    # A listening socket that never answers: the request must give up after ~timeout.
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        port = server.getsockname()[1]
        async with AuthClient(f"http://127.0.0.1:{port}", "k" * 64, timeout=0.5) as client:
            started = time.monotonic()
            with pytest.raises(GatewayTimeout):
                await client.health()
            assert time.monotonic() - started < 3


async def test_wait_for_completion_long_polls_and_is_bounded() -> None:
    fake = FakeGateway()
    async with fake.client() as client:
        session = await client.init_oauth("mock", "a@example.com")
        started = time.monotonic()
        with pytest.raises(AuthorizationTimeout) as timed_out:
            await client.wait_for_completion(session.session_id, timeout=1.2)
        assert time.monotonic() - started < 2.5
        assert timed_out.value.session_id == session.session_id
        waits = [r.url.params.get("wait") for r in fake.requests if "/auth/status/" in r.url.path]
        assert waits == ["1"]

        fake.complete(session.auth_url)
        status = await client.wait_for_completion(session.session_id, timeout=5)
        assert status.is_completed and status.user_email == "a@example.com"

        denied = await client.init_oauth("mock", "b@example.com")
        fake.complete(denied.auth_url, deny=True)
        with pytest.raises(AuthSessionFailed) as failed:
            await client.wait_for_completion(denied.session_id, timeout=5)
        assert failed.value.reason == "access_denied"


async def test_get_status_rejects_out_of_range_wait() -> None:
    fake = FakeGateway()
    async with fake.client() as client:
        with pytest.raises(ValueError):
            await client.get_status("x", wait=61)


def test_constructor_validates() -> None:
    with pytest.raises(ValueError):
        AuthClient("localhost:8000", "k")
    with pytest.raises(ValueError):
        AuthClient("http://localhost:8000", "")


def test_core_import_does_not_need_mcp() -> None:
    code = (
        "import sys, mcp_auth_client, mcp_auth_client.client, mcp_auth_client.exceptions, mcp_auth_client.sync;"
        "assert not any(m == 'mcp' or m.startswith('mcp.') for m in sys.modules), 'mcp imported'"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


def test_auth_required_exception_is_a_tool_error_importable_as_documented() -> None:
    from mcp.server.mcpserver.exceptions import ToolError

    from mcp_auth_client.exceptions import AuthRequiredException as FromExceptions

    assert mcp_auth_client.AuthRequiredException is FromExceptions
    err = FromExceptions("http://gw/connect/abc", "google", "sid-1")
    assert isinstance(err, ToolError)
    assert (err.auth_url, err.provider, err.session_id) == ("http://gw/connect/abc", "google", "sid-1")
    assert "http://gw/connect/abc" in str(err)
    # The design document's one-argument form still works.
    assert "http://gw/connect/xyz" in str(FromExceptions("http://gw/connect/xyz"))


def test_sync_client_wraps_the_async_one() -> None:
    fake = FakeGateway()
    with SyncAuthClient("http://gateway.test", fake.api_key, transport=httpx.MockTransport(fake.handle)) as client:
        assert fake.api_key not in repr(client)
        assert client.is_authenticated("mock", "a@example.com") is False
        session = client.init_oauth("mock", "a@example.com", ["mail.read"])
        assert client.get_status(session.session_id).is_pending
        fake.complete(session.auth_url)
        assert client.wait_for_completion(session.session_id, 5).is_completed
        assert client.get_token("mock", "a@example.com") == "tok-a@example.com"
        assert [g.provider for g in client.list_providers("a@example.com")] == ["mock"]
        assert client.revoke("mock", "a@example.com").provider_revocation == "revoked"
        with pytest.raises(NotAuthenticated):
            client.get_token("mock", "a@example.com")
    with pytest.raises(RuntimeError):
        client.health()

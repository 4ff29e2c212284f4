"""The client's pure parts, without any gateway: the error-code -> exception mapping on
synthetic bodies, argument validation, secrets kept out of reprs, imports, what happens
when nothing (or nothing that answers) listens at the gateway URL, the warning about
plain http to another machine, and which sign-in links the client lets through.

Everything that needs a gateway answer runs against the real gateway in
test_e2e_client.py, except the sign-in links no real gateway sends (user info, a
backslash, another port): those come from an ``httpx.MockTransport``."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
import warnings

import httpx
import pytest

import mcp_auth_client
from mcp_auth_client import (
    AuthClient,
    AuthorizationRequired,
    Busy,
    ExchangeRequired,
    Forbidden,
    GatewayAuthError,
    GatewayConnectionError,
    GatewayTimeout,
    InsecureGatewayUrlWarning,
    InternalError,
    InvalidClient,
    InvalidEmail,
    InvalidRequest,
    InvalidTarget,
    MethodNotAllowed,
    NotAuthenticated,
    NotFound,
    PayloadTooLarge,
    ProviderUnavailable,
    RateLimited,
    RefreshFailed,
    RequestError,
    RetryableError,
    ScopeInsufficient,
    ServerError,
    ServiceUnavailable,
    SessionNotFound,
    SlowDown,
    SubjectTokenRejected,
    SyncAuthClient,
    TemporarilyUnavailable,
    TokenInfo,
    Unauthorized,
    UnauthorizedClient,
    UnexpectedResponse,
    UnknownProvider,
    UnsupportedGrantType,
    UnsupportedMediaType,
    UntrustedAuthUrl,
)
from mcp_auth_client.exceptions import ERROR_CODES, AuthGatewayError, error_from_response
from mcp_auth_client.links import is_loopback_host, link_origin, origin_of
from tests.stack import free_port

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
    "exchange_required": (403, ExchangeRequired),
    # POST /oauth/token (authorization_required maps by its reason: test_client_exchange_unit.py)
    "invalid_client": (401, InvalidClient),
    "unauthorized_client": (400, UnauthorizedClient),
    "invalid_target": (400, InvalidTarget),
    "unsupported_grant_type": (400, UnsupportedGrantType),
    "invalid_grant": (400, SubjectTokenRejected),
    "slow_down": (429, SlowDown),
    "temporarily_unavailable": (503, TemporarilyUnavailable),
    "server_error": (500, ServerError),
}
SIGN_IN = {"not_authenticated", "refresh_failed", "scope_insufficient"}
RETRYABLE = {
    "provider_unavailable",
    "busy",
    "rate_limited",
    "internal_error",
    "service_unavailable",
    "slow_down",
    "temporarily_unavailable",
    "server_error",
}
API_KEY_REFUSED = {"unauthorized", "forbidden", "exchange_required", "invalid_client", "unauthorized_client"}


def test_every_code_has_exactly_one_class() -> None:
    assert set(ERROR_CODES) == set(CONTRACT)
    assert len(set(ERROR_CODES.values())) == len(ERROR_CODES)


@pytest.mark.parametrize("code", sorted(CONTRACT))
def test_each_code_maps_to_its_exception(code: str) -> None:
    status, cls = CONTRACT[code]
    body: dict[str, object] = {"error": code, "message": f"m-{code}", "request_id": "r-9"}
    if code in RETRYABLE:
        body["retry_after"] = 7
    if code == "scope_insufficient":
        body["missing_scopes"] = ["mail.send"]
    if code in SIGN_IN:
        body["auth_required"] = True
    err = error_from_response(status, body, retry_after_header="7" if code in RETRYABLE else None)
    assert type(err) is cls
    assert (err.code, err.status_code, err.request_id, err.message) == (code, status, "r-9", f"m-{code}")
    assert isinstance(err, AuthorizationRequired) == (code in SIGN_IN)
    assert isinstance(err, GatewayAuthError) == (code in API_KEY_REFUSED)
    assert isinstance(err, RetryableError) == (code in RETRYABLE)
    assert isinstance(err, RequestError) == (code not in SIGN_IN | RETRYABLE | API_KEY_REFUSED)
    if isinstance(err, RetryableError):
        assert err.retry_after == 7
        assert "retry after 7s" in str(err)
    if isinstance(err, ScopeInsufficient):
        assert err.missing_scopes == ["mail.send"]


def test_same_status_different_meaning() -> None:
    assert type(error_from_response(401, {"error": "refresh_failed", "message": "x"})) is RefreshFailed
    assert type(error_from_response(401, {"error": "unauthorized", "message": "x"})) is Unauthorized
    assert type(error_from_response(403, {"error": "scope_insufficient", "message": "x"})) is ScopeInsufficient
    assert type(error_from_response(403, {"error": "forbidden", "message": "x"})) is Forbidden
    assert type(error_from_response(503, {"error": "busy", "message": "x"})) is Busy
    assert type(error_from_response(503, {"error": "service_unavailable", "message": "x"})) is ServiceUnavailable


def test_retry_after_sources() -> None:
    from_header = error_from_response(
        503, {"error": "provider_unavailable", "message": "down"}, retry_after_header="12"
    )
    assert isinstance(from_header, RetryableError) and from_header.retry_after == 12
    assert "retry after 12s" in str(from_header)
    body_wins = error_from_response(
        429, {"error": "rate_limited", "message": "x", "retry_after": 3}, retry_after_header="9"
    )
    assert isinstance(body_wins, RetryableError) and body_wins.retry_after == 3
    # An HTTP-date (the gateway sends seconds) or garbage gives no hint rather than a wrong one.
    http_date = error_from_response(
        503, {"error": "busy", "message": "x"}, retry_after_header="Wed, 21 Oct 2015 07:28:00 GMT"
    )
    assert isinstance(http_date, RetryableError) and http_date.retry_after is None
    negative = error_from_response(503, {"error": "busy", "message": "x", "retry_after": -1})
    assert isinstance(negative, RetryableError) and negative.retry_after is None


def test_unknown_code_and_non_json_are_unexpected() -> None:
    teapot = error_from_response(418, {"error": "teapot", "message": "?"})
    assert type(teapot) is UnexpectedResponse
    assert (teapot.code, teapot.status_code) == ("teapot", 418)
    html = error_from_response(502, None, request_id_header="req-7")
    assert type(html) is UnexpectedResponse
    assert (html.code, html.status_code, html.request_id) == (None, 502, "req-7")
    assert type(error_from_response(500, ["not", "an", "object"])) is UnexpectedResponse
    no_code = error_from_response(400, {"message": "no code"})
    assert type(no_code) is UnexpectedResponse and no_code.code is None


def test_constructor_validates() -> None:
    with pytest.raises(ValueError):
        AuthClient("localhost:8000", "k")
    with pytest.raises(ValueError):
        AuthClient("http://localhost:8000", "")
    with pytest.raises(ValueError):
        AuthClient("http://localhost:8000", "k", timeout=0)
    with pytest.raises(ValueError):
        AuthClient("http://localhost:8000", "k", public_url="gateway.example.com")


@pytest.mark.anyio
async def test_get_status_rejects_out_of_range_wait() -> None:
    # Refused before any request is made: nothing listens at this URL.
    async with AuthClient(f"http://127.0.0.1:{free_port()}", "k" * 64) as client:
        with pytest.raises(ValueError):
            await client.get_status("x", wait=61)
        with pytest.raises(ValueError):
            await client.get_status("x", wait=-1)
        with pytest.raises(ValueError):
            await client.wait_for_completion("x", timeout=-1)


def test_secrets_are_not_in_reprs() -> None:
    secret = "s3cr3t-" + "z" * 57
    client = AuthClient("http://127.0.0.1:1", secret)
    assert secret not in repr(client)
    with SyncAuthClient("http://127.0.0.1:1", secret) as sync_client:
        assert secret not in repr(sync_client)
    info = TokenInfo.from_json({"access_token": "tok-abc", "token_type": "Bearer", "scopes": ["a"]})
    assert "tok-abc" not in repr(info)
    assert info.authorization_header == "Bearer tok-abc"


@pytest.mark.anyio
async def test_nothing_listening_is_a_connection_error() -> None:
    async with AuthClient(f"http://127.0.0.1:{free_port()}", "k" * 64, timeout=5.0) as client:
        with pytest.raises(GatewayConnectionError) as caught:
            await client.health()
    assert not isinstance(caught.value, GatewayTimeout)


@pytest.mark.anyio
async def test_silent_server_times_out_within_the_timeout() -> None:
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


def test_sync_client_refuses_calls_after_close() -> None:
    client = SyncAuthClient(f"http://127.0.0.1:{free_port()}", "k" * 64)
    client.close()
    with pytest.raises(RuntimeError):
        client.health()


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


# --- plain http to another machine -------------------------------------------------------


@pytest.mark.parametrize(
    "url", ["http://gateway.internal:8000", "http://10.0.0.5", "http://[2001:db8::1]:8000", "http://127.example.com"]
)
def test_plain_http_to_another_machine_warns(url: str) -> None:
    secret = "s3cr3t-" + "w" * 57
    with pytest.warns(InsecureGatewayUrlWarning, match="plain http") as caught:
        AuthClient(url, secret)
    assert len(caught) == 1
    assert secret not in str(caught[0].message)
    assert caught[0].filename == __file__  # points at the code that made the client


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:8000",
        "http://127.8.9.10",
        "http://[::1]:8000",
        "http://localhost:8000",
        "http://LOCALHOST./gateway",
        "https://gateway.example.com",
    ],
)
def test_https_and_loopback_do_not_warn(url: str) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error", InsecureGatewayUrlWarning)
        AuthClient(url, "k" * 64)


def test_the_sync_client_warns_too() -> None:
    with pytest.warns(InsecureGatewayUrlWarning), SyncAuthClient("http://gateway.internal:8000", "k" * 64):
        pass


def test_loopback_hosts() -> None:
    assert all(is_loopback_host(h) for h in ("localhost", "127.0.0.1", "127.255.0.9", "::1", "[::1]"))
    assert not any(is_loopback_host(h) for h in ("", "localhost.example.com", "128.0.0.1", "::2", "10.0.0.1"))


# --- sign-in links on the gateway's origin only -------------------------------------------


def test_origins_are_compared_as_a_browser_would() -> None:
    assert origin_of("HTTPS://Gateway.Example.COM/connect/x") == "https://gateway.example.com:443"
    assert origin_of("http://gw/") == origin_of("http://gw:80/x") == "http://gw:80"
    assert origin_of("http://[::1]:8000/") == "http://[::1]:8000"
    for not_a_web_url in ("/connect/x", "javascript:alert(1)", "ftp://gw/x", "http://gw:99999/", "https:///x"):
        assert origin_of(not_a_web_url) is None
    # Links that a browser and Python could read differently have no trusted origin.
    for disguised in (
        "http://gw:8000@evil.example/connect/x",
        "http://evil.example\\@gw:8000/connect/x",
        "http://user@gw:8000/connect/x",
        "http://gw:8000/connect/x\tevil",
        " http://gw:8000/connect/x",
        "http://gw\u00e9:8000/connect/x",
    ):
        assert link_origin(disguised) is None, disguised
    assert link_origin("http://gw:8000/connect/x?y=1#z") == "http://gw:8000"


def gateway_handing_out(link: str) -> httpx.MockTransport:
    """A stand-in answering /auth/init with ``link``: the only way to see what the client
    does with links a real gateway never sends."""

    def answer(request: httpx.Request) -> httpx.Response:
        assert request.url.path == "/auth/init"
        body = {"auth_url": link, "session_id": "sid-1", "expires_at": "2030-01-01T00:00:00Z"}
        return httpx.Response(200, content=json.dumps(body), headers={"content-type": "application/json"})

    return httpx.MockTransport(answer)


GATEWAY = "http://127.0.0.1:8000"


@pytest.mark.anyio
@pytest.mark.parametrize(
    "link",
    [
        "http://127.0.0.1:8000/connect/abc",
        "http://127.0.0.1:8000/gateway/connect/abc",
        "HTTP://127.0.0.1:8000/connect/abc",
        "https://auth.example.com/connect/abc",  # the public_url below
        "https://auth.example.com:443/connect/abc",
    ],
)
async def test_links_on_the_gateways_own_origins_are_handed_out(link: str) -> None:
    transport = gateway_handing_out(link)
    async with AuthClient(GATEWAY, "k" * 64, transport=transport, public_url="https://auth.example.com/") as client:
        assert client.trusted_link_origins == ("http://127.0.0.1:8000", "https://auth.example.com:443")
        session = await client.init_oauth("mock", "alice@example.com")
    assert session.auth_url == link


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("link", "origin"),
    [
        ("https://evil.example/connect/abc", "https://evil.example:443"),
        ("http://127.0.0.1:8001/connect/abc", "http://127.0.0.1:8001"),  # another port
        ("https://127.0.0.1:8000/connect/abc", "https://127.0.0.1:8000"),  # another scheme
        ("http://localhost:8000/connect/abc", "http://localhost:8000"),  # another host name
        ("http://127.0.0.1:8000@evil.example/connect/abc", None),
        ("http://evil.example\\@127.0.0.1:8000/connect/abc", None),
        ("/connect/abc", None),
    ],
)
async def test_links_elsewhere_are_refused(link: str, origin: str | None) -> None:
    async with AuthClient(GATEWAY, "k" * 64, transport=gateway_handing_out(link)) as client:
        with pytest.raises(UntrustedAuthUrl) as refused:
            await client.init_oauth("mock", "alice@example.com")
    assert refused.value.origin == origin
    assert refused.value.trusted_origins == ("http://127.0.0.1:8000",)
    assert "/connect/abc" not in str(refused.value) + repr(refused.value)
    assert isinstance(refused.value, AuthGatewayError)

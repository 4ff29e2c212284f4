"""Token exchange (``POST /oauth/token``) with AuthClient against the real gateway, whose
trusted identity provider is the mock provider's test IdP (tokens minted over its admin
API, signed ES256 by the key it publishes).

The MCP server's API client is added with the gateway's CLI (``gateway clients add ...
--audience``): the bootstrap key has no audience and cannot exchange. Every error the
exchange can answer, except ``server_error``, is produced here by the real gateway."""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from datetime import datetime, timezone

import httpx
import pytest

from mcp_auth_client import (
    ID_TOKEN_TYPE,
    JWT_TOKEN_TYPE,
    AuthClient,
    AuthorizationRequired,
    ExchangeRequired,
    GatewayAuthError,
    InvalidClient,
    InvalidRequest,
    InvalidTarget,
    NotAuthenticated,
    RateLimited,
    RefreshFailed,
    RetryableError,
    ScopeInsufficient,
    SlowDown,
    SubjectTokenRejected,
    TemporarilyUnavailable,
    UnauthorizedClient,
)
from mcp_auth_client.exceptions import error_from_response
from tests.browser import open_in_browser
from tests.stack import MCP_AUDIENCE, Gateway, MockProvider, Processes, free_port

pytestmark = [pytest.mark.anyio, pytest.mark.e2e]


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


@pytest.fixture(scope="module")
def exchanger(gateway: Gateway) -> str:
    """The key of an MCP server's API client that may exchange its users' tokens (and
    start sign-ins and follow them)."""
    return gateway.add_exchange_client(unique("mail-mcp"))


@pytest.fixture
async def server(gateway: Gateway, exchanger: str) -> AsyncIterator[AuthClient]:
    async with AuthClient(gateway.url, exchanger, timeout=15.0) as client:
        yield client


async def connect(auth: AuthClient, user: str, scopes: list[str] | None = None) -> None:
    """The user connects their account the classic way (a named user, the bootstrap key)."""
    session = await auth.init_oauth("mock", user, scopes)
    await open_in_browser(session.auth_url)
    assert (await auth.wait_for_completion(session.session_id, timeout=10)).is_completed


async def owner_of(mock: MockProvider, authorization: str) -> str:
    """Whose account the provider says a token belongs to."""
    async with httpx.AsyncClient() as http:
        me = await http.get(mock.api_url, headers={"Authorization": authorization})
    assert me.status_code == 200, me.text
    return str(me.json()["email"])


async def test_exchange_for_a_connected_user(
    auth: AuthClient, server: AuthClient, mock: MockProvider, user: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    await connect(auth, user)
    subject = mock.user_token(user, MCP_AUDIENCE)
    info = await server.exchange_token_info(subject, "mock", ["mail.read"])
    assert "mail.read" in info.scopes
    assert info.token_type == "Bearer"
    assert info.expires_at is not None and info.expires_at > datetime.now(timezone.utc)
    # The token of the user the subject token proves, working at the provider's API.
    assert await owner_of(mock, info.authorization_header) == user
    assert info.access_token == await auth.get_token("mock", user)
    assert info.access_token not in repr(info)
    assert await server.exchange_token(subject, "mock") == info.access_token
    for token_type in (JWT_TOKEN_TYPE, ID_TOKEN_TYPE):
        assert await server.exchange_token(subject, "mock", subject_token_type=token_type) == info.access_token
    # Neither token reached a log line, with httpx and httpcore logging at DEBUG.
    assert subject not in caplog.text and info.access_token not in caplog.text


async def test_authorization_required_links_the_verified_user(
    server: AuthClient, mock: MockProvider, user: str
) -> None:
    subject = mock.user_token(user, MCP_AUDIENCE)
    with pytest.raises(NotAuthenticated) as needed:
        await server.exchange_token(subject, "mock", ["mail.read"])
    err = needed.value
    assert (err.code, err.reason, err.status_code) == ("authorization_required", "not_authenticated", 400)
    assert err.auth_url is not None and err.auth_url.startswith(f"{server.gateway_url}/connect/")
    assert err.session_id is not None
    assert err.expires_at is not None and err.expires_at > datetime.now(timezone.utc)
    # Asking again before the user has signed in hands back the same session.
    with pytest.raises(NotAuthenticated) as again:
        await server.exchange_token(subject, "mock", ["mail.read"])
    assert again.value.session_id == err.session_id and again.value.auth_url == err.auth_url

    session = err.session
    assert session is not None
    await open_in_browser(session.auth_url)
    # The link was for the user the token proves: the provider was told to expect them.
    assert mock.last_authorize()["login_hint"] == user
    status = await server.wait_for_completion(session.session_id, timeout=10)
    assert status.is_completed and status.user_email == user and status.provider == "mock"

    info = await server.exchange_token_info(subject, "mock", ["mail.read"])
    assert await owner_of(mock, info.authorization_header) == user


async def test_scope_insufficient_and_refresh_failed_via_exchange(
    auth: AuthClient, server: AuthClient, mock: MockProvider, user: str
) -> None:
    await connect(auth, user, ["mail.read"])
    subject = mock.user_token(user, MCP_AUDIENCE)
    with pytest.raises(ScopeInsufficient) as more:
        await server.exchange_token(subject, "mock", ["mail.read", "mail.send"])
    assert more.value.missing_scopes == ["mail.send"]
    assert more.value.reason == "scope_insufficient" and more.value.session is not None

    mock.admin("POST", "settings", {"access_token_ttl_secs": 1})
    await connect(auth, user, ["mail.read"])  # a token that expires at once
    mock.admin("POST", "invalidate", {"email": user})
    with pytest.raises(RefreshFailed) as renew:
        await server.exchange_token(subject, "mock", ["mail.read"])
    assert renew.value.reason == "refresh_failed" and renew.value.session is not None
    assert isinstance(renew.value, AuthorizationRequired)


def refusals(mock: MockProvider, user: str) -> Iterator[tuple[str, str]]:
    """(expected reason, subject token) for tokens the gateway must refuse."""
    now = int(time.time())
    claims = mock.idp_claims
    yield "wrong_audience", mock.mint(claims(user, "https://another-mcp.example"))
    yield "expired", mock.mint(claims(user, MCP_AUDIENCE, iat=now - 900, exp=now - 600))
    yield "not_yet_valid", mock.mint(claims(user, MCP_AUDIENCE, nbf=now + 600))
    yield "too_old", mock.mint(claims(user, MCP_AUDIENCE, iat=now - 3 * 86_400))
    yield "unverified_email", mock.mint(claims(user, MCP_AUDIENCE, email_verified=False))
    yield "missing_claim", mock.mint(claims(user, MCP_AUDIENCE, email=None))
    yield "invalid_email", mock.mint(claims("not-an-email", MCP_AUDIENCE))
    yield "untrusted_issuer", mock.mint(claims(user, MCP_AUDIENCE, iss="https://idp.evil.example"))
    yield "algorithm_refused", mock.mint(claims(user, MCP_AUDIENCE), "alg_none")
    yield "algorithm_refused", mock.mint(claims(user, MCP_AUDIENCE), "hs256_with_public_key")
    yield "unknown_key", mock.mint(claims(user, MCP_AUDIENCE), "unpublished_key")
    good = mock.user_token(user, MCP_AUDIENCE)
    head, payload, signature = good.split(".")
    flipped = ("A" if signature[0] != "A" else "B") + signature[1:]
    yield "bad_signature", f"{head}.{payload}.{flipped}"
    yield "malformed", "not-a-jwt"


async def test_refused_subject_tokens_say_why(
    auth: AuthClient, server: AuthClient, mock: MockProvider, user: str
) -> None:
    await connect(auth, user)  # the user is connected: only the token is wrong
    seen: list[str] = []
    for reason, subject in refusals(mock, user):
        with pytest.raises(SubjectTokenRejected) as refused:
            await server.exchange_token(subject, "mock")
        err = refused.value
        assert (err.code, err.reason, err.status_code) == ("invalid_grant", reason, 400), err
        assert err.request_id
        assert subject not in str(err) + repr(err)
        seen.append(reason)
    assert {"wrong_audience", "expired"} <= set(seen)


async def test_a_client_bound_to_exchange_cannot_name_users(
    gateway: Gateway, auth: AuthClient, mock: MockProvider, user: str
) -> None:
    await connect(auth, user)
    key = gateway.add_exchange_client(unique("exchange-only"), require_exchange=True)
    async with AuthClient(gateway.url, key) as bound:
        with pytest.raises(ExchangeRequired) as refused:
            await bound.get_token("mock", user)
        err = refused.value
        assert (err.code, err.status_code) == ("exchange_required", 403)
        assert isinstance(err, GatewayAuthError) and not isinstance(err, AuthorizationRequired)
        assert "/oauth/token" in err.message
        # Proving the user instead works.
        info = await bound.exchange_token_info(mock.user_token(user, MCP_AUDIENCE), "mock")
    assert await owner_of(mock, info.authorization_header) == user


async def test_the_callers_own_standing(gateway: Gateway, auth: AuthClient, mock: MockProvider, user: str) -> None:
    await connect(auth, user)
    subject = mock.user_token(user, MCP_AUDIENCE)
    secret = "s3cr3t-" + "x" * 57
    async with AuthClient(gateway.url, secret) as wrong_key:
        with pytest.raises(InvalidClient) as invalid:
            await wrong_key.exchange_token(subject, "mock")
    assert invalid.value.status_code == 401 and isinstance(invalid.value, GatewayAuthError)
    assert secret not in str(invalid.value) + repr(invalid.value)

    # The bootstrap key has no registered audience.
    with pytest.raises(UnauthorizedClient) as no_audience:
        await auth.exchange_token(subject, "mock")
    assert "no registered audience" in no_audience.value.message
    assert isinstance(no_audience.value, GatewayAuthError)

    clients = {
        "no token right": gateway.add_exchange_client(unique("no-token"), actions="init,status"),
        "other domains": gateway.add_exchange_client(unique("corp-only"), extra=("--domains", "corp.example")),
    }
    for why, key in clients.items():
        async with AuthClient(gateway.url, key) as limited:
            with pytest.raises(UnauthorizedClient) as refused:
                await limited.exchange_token(subject, "mock")
        assert refused.value.status_code == 400, why

    other_provider = gateway.add_exchange_client(unique("google-only"), extra=("--providers", "google"))
    async with AuthClient(gateway.url, other_provider) as limited:
        with pytest.raises(InvalidTarget):
            await limited.exchange_token(subject, "mock")
    async with AuthClient(gateway.url, clients["other domains"]) as client:
        with pytest.raises(InvalidTarget) as unknown:
            await client.exchange_token(subject, "no-such-provider")
    assert unknown.value.status_code == 400


async def test_a_client_without_the_init_right_gets_no_link(gateway: Gateway, mock: MockProvider, user: str) -> None:
    key = gateway.add_exchange_client(unique("no-init"), actions="status,token")
    async with AuthClient(gateway.url, key) as client:
        with pytest.raises(NotAuthenticated) as needed:
            await client.exchange_token(mock.user_token(user, MCP_AUDIENCE), "mock")
    assert needed.value.auth_url is None and needed.value.session is None


async def test_a_malformed_exchange_is_invalid_request(gateway: Gateway, exchanger: str) -> None:
    # What the client never sends: JSON instead of a form. The gateway's real answer.
    async with httpx.AsyncClient() as http:
        response = await http.post(
            f"{gateway.url}/oauth/token", json={"grant_type": "x"}, headers={"X-API-Key": exchanger}
        )
    assert response.headers["cache-control"] == "no-store"
    assert type(error_from_response(response.status_code, response.json())) is InvalidRequest


async def test_an_unreachable_identity_provider_is_temporarily_unavailable(
    processes: Processes, mock_provider: MockProvider, user: str
) -> None:
    # The IdP's keys live at an address where nothing listens; nothing is cached yet.
    cold = processes.gateway(mock_provider, IDP_CORP_JWKS_URL=f"http://127.0.0.1:{free_port()}/jwks")
    key = cold.add_exchange_client(unique("cold"))
    async with AuthClient(cold.url, key) as client:
        with pytest.raises(TemporarilyUnavailable) as unavailable:
            await client.exchange_token(mock_provider.user_token(user, MCP_AUDIENCE), "mock")
    err = unavailable.value
    assert err.status_code == 503 and isinstance(err, RetryableError)
    assert err.retry_after is not None and err.retry_after >= 0


async def test_slow_down_carries_retry_after(processes: Processes, mock_provider: MockProvider, user: str) -> None:
    limited = processes.gateway(mock_provider, RATE_LIMIT_TOKEN_PER_SECOND="1")
    key = limited.add_exchange_client(unique("limited"))
    subject = mock_provider.user_token(user, MCP_AUDIENCE)
    async with AuthClient(limited.url, key) as client:
        error: SlowDown | None = None
        for _ in range(10):
            try:
                await client.exchange_token(subject, "mock")
            except NotAuthenticated:
                continue
            except SlowDown as exc:
                error = exc
                break
    assert error is not None
    assert isinstance(error, RateLimited) and isinstance(error, RetryableError)
    assert (error.code, error.status_code) == ("slow_down", 429)
    assert error.retry_after is not None and 1 <= error.retry_after <= 2

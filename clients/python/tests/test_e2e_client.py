"""AuthClient against a real gateway process and the mock OAuth provider."""

from __future__ import annotations

import time

import httpx
import pytest

from mcp_auth_client import (
    AuthClient,
    AuthorizationRequired,
    AuthorizationTimeout,
    Forbidden,
    GatewayAuthError,
    InvalidEmail,
    InvalidRequest,
    MethodNotAllowed,
    NotAuthenticated,
    NotFound,
    PayloadTooLarge,
    ProviderUnavailable,
    RefreshFailed,
    ScopeInsufficient,
    SessionNotFound,
    SyncAuthClient,
    Unauthorized,
    UnknownProvider,
    UnsupportedMediaType,
)
from mcp_auth_client.exceptions import error_from_response
from tests.mcp_helpers import open_in_browser
from tests.stack import Gateway, MockProvider

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


async def test_status_long_poll_is_bounded_and_returns_on_completion(auth: AuthClient, user: str) -> None:
    session = await auth.init_oauth("mock", user)
    started = time.monotonic()
    status = await auth.get_status(session.session_id, wait=1)
    elapsed = time.monotonic() - started
    assert status.is_pending
    assert 0.5 <= elapsed < 5, elapsed

    with pytest.raises(AuthorizationTimeout) as timed_out:
        await auth.wait_for_completion(session.session_id, timeout=1.5)
    assert timed_out.value.session_id == session.session_id

    await open_in_browser(session.auth_url)
    started = time.monotonic()
    done = await auth.wait_for_completion(session.session_id, timeout=30)
    assert done.is_completed and time.monotonic() - started < 5


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
    async with AuthClient(gateway.url, "x" * 64) as wrong:
        with pytest.raises(Forbidden) as err:
            await wrong.get_token("mock", user)
        assert isinstance(err.value, GatewayAuthError)
        assert not isinstance(err.value, AuthorizationRequired)
        assert err.value.status_code == 403
        assert "x" * 64 not in str(err.value) + repr(err.value)
        # is_authenticated must not turn a configuration error into "not signed in".
        with pytest.raises(Forbidden):
            await wrong.is_authenticated("mock", user)


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


def test_sync_client_round_trip(gateway: Gateway, user: str) -> None:
    with SyncAuthClient(gateway.url, gateway.api_key) as client:
        assert client.health()["status"] == "healthy"
        assert client.is_authenticated("mock", user) is False
        session = client.init_oauth("mock", user)
        with httpx.Client(follow_redirects=True, timeout=30) as browser:
            assert browser.get(session.auth_url).status_code == 200
        assert client.wait_for_completion(session.session_id, 10).is_completed
        assert client.get_token("mock", user).startswith("mock_at_")
        assert "api_key" not in repr(client) and gateway.api_key not in repr(client)

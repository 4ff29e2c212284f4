"""require_auth in in-process MCP servers, driven by the MCP SDK's client over HTTP,
against the real gateway and the mock OAuth provider: argument passing, sync tools that
want the Context and the full token, the bounded waits, failed consent, the gateway
failures that must not be turned into "please sign in", and sign-in links outside the
gateway's origin, which must not be shown.

The servers here learn the user from a trusted header (``X-User-Email``), which the test
clients send as the proxy in front of a real server would; test_e2e_mcp.py covers the
identity rules themselves."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from typing import Any

import mcp_types as types
import pytest
from mcp.server import MCPServer
from mcp.server.mcpserver import Context

from mcp_auth_client import AuthClient, RateLimited, TokenInfo, require_auth
from tests.browser import open_in_browser, visit
from tests.mcp_helpers import EMAIL_HEADER, ElicitingUser, as_user, link_in, mcp_client, serve, text_of
from tests.stack import Gateway, MockProvider, Processes, free_port

pytestmark = [pytest.mark.anyio, pytest.mark.e2e]

LEGACY = "legacy"
MODERN = "2026-07-28"


def build_server(auth: AuthClient, *, wait_timeout: float = 10.0) -> MCPServer:
    server = MCPServer("decorated")

    @server.tool()
    @require_auth(
        auth, provider="mock", scopes=["mail.read"], wait_timeout=wait_timeout, trusted_email_header=EMAIL_HEADER
    )
    async def read(folder: str = "inbox", *, access_token: str) -> str:
        """Read mail."""
        return f"{folder}:{access_token}"

    @server.tool()
    @require_auth(
        auth, provider="mock", scopes=["mail.send"], wait_timeout=wait_timeout, trusted_email_header=EMAIL_HEADER
    )
    def send(ctx: Context, *, access_token: TokenInfo) -> dict[str, Any]:
        """Send mail (a sync tool that also wants the Context and the full token)."""
        return {"token": access_token.access_token, "scopes": access_token.scopes, "has_ctx": ctx is not None}

    return server


def build_single_user_server(auth: AuthClient) -> MCPServer:
    """A development setup: the model-written argument names the user (opted in)."""
    server = MCPServer("single-user")

    @server.tool()
    @require_auth(auth, provider="mock", scopes=["mail.read"], allow_email_argument=True)
    async def read(user_email: str, folder: str = "inbox", *, access_token: str) -> str:
        """Read mail."""
        return f"{folder}:{access_token}"

    return server


@pytest.fixture
async def url(gateway: Gateway) -> AsyncIterator[str]:
    async with AuthClient(gateway.url, gateway.api_key) as auth, serve(build_server(auth).streamable_http_app()) as u:
        yield u


@pytest.mark.parametrize("mode", [LEGACY, MODERN])
async def test_text_fallback_then_the_tool_runs_with_its_arguments(
    url: str, auth: AuthClient, mock: MockProvider, user: str, mode: str
) -> None:
    async with mcp_client(url, mode=mode, headers=as_user(user)) as client:
        first = await client.call_tool("read", {})
        assert first.is_error
        assert "has not connected their mock account" in text_of(first)
        link = link_in(text_of(first))
        # The same link while it is unused: the gateway hands back the same session.
        assert link_in(text_of(await client.call_tool("read", {}))) == link
        await open_in_browser(link)
        done = await client.call_tool("read", {"folder": "sent"})
    assert not done.is_error, text_of(done)
    assert text_of(done) == f"sent:{await auth.get_token('mock', user)}"


@pytest.mark.parametrize("mode", [LEGACY, MODERN])
async def test_elicitation_accepted_but_never_completed_is_bounded(gateway: Gateway, user: str, mode: str) -> None:
    async def do_nothing(link: str) -> None:
        return None

    person = ElicitingUser("accept", opener=do_nothing)
    async with AuthClient(gateway.url, gateway.api_key) as auth:
        async with serve(build_server(auth, wait_timeout=1.5).streamable_http_app()) as url:
            async with mcp_client(url, mode=mode, elicitation=person, headers=as_user(user)) as client:
                result = await client.call_tool("read", {})
    assert result.is_error
    assert "not finished" in text_of(result)
    assert isinstance(person.requests[0], types.ElicitRequestURLParams)
    assert link_in(text_of(result)) == person.requests[0].url


@pytest.mark.parametrize("mode", [LEGACY, MODERN])
async def test_denied_consent_gives_a_fresh_link(url: str, mock: MockProvider, user: str, mode: str) -> None:
    async def deny(link: str) -> None:
        mock.admin("POST", "consent", {"mode": "deny"})
        await visit(link)
        mock.admin("POST", "consent", {"mode": "approve_as_login_hint"})

    person = ElicitingUser("accept", opener=deny)
    async with mcp_client(url, mode=mode, elicitation=person, headers=as_user(user)) as client:
        result = await client.call_tool("read", {})
        assert result.is_error
        assert "did not succeed" in text_of(result)
        assert isinstance(person.requests[0], types.ElicitRequestURLParams)
        new_link = link_in(text_of(result))
        assert new_link != person.requests[0].url
        # The fresh link works.
        await open_in_browser(new_link)
        assert not (await client.call_tool("read", {})).is_error


@pytest.mark.parametrize("mode", [LEGACY, MODERN])
async def test_scope_insufficient_requests_granted_plus_missing(
    url: str, mock: MockProvider, user: str, mode: str
) -> None:
    async with mcp_client(url, mode=mode, headers=as_user(user)) as client:
        await open_in_browser(link_in(text_of(await client.call_tool("read", {}))))
        granted = set(mock.last_authorize()["scope"].split())
        assert "mail.read" in granted

        result = await client.call_tool("send", {})
        assert result.is_error
        assert "mail.send" in text_of(result)
        await open_in_browser(link_in(text_of(result)))
        # Incremental consent: everything granted so far, plus the missing scope.
        assert set(mock.last_authorize()["scope"].split()) == granted | {"mail.send"}

        sent = await client.call_tool("send", {})
        assert not sent.is_error, text_of(sent)
        assert sent.structured_content is not None
        assert sent.structured_content["token"].startswith("mock_at_")
        assert {"mail.read", "mail.send"} <= set(sent.structured_content["scopes"])
        assert sent.structured_content["has_ctx"] is True
        assert not (await client.call_tool("read", {})).is_error


def explanation(result: types.CallToolResult) -> str:
    """The error text a tool answered with; it must not carry a sign-in link."""
    assert result.is_error
    text = text_of(result)
    assert "/connect/" not in text
    return text


async def test_provider_outage_is_explained_without_a_link(url: str, mock: MockProvider, user: str) -> None:
    mock.admin("POST", "settings", {"access_token_ttl_secs": 0})  # every get_token refreshes
    async with mcp_client(url, mode=LEGACY, headers=as_user(user)) as client:
        await open_in_browser(link_in(text_of(await client.call_tool("read", {}))))
        mock.admin("POST", "faults", {"endpoint": "token", "fault": {"kind": "server_error"}, "times": 20})
        result = await client.call_tool("read", {})
    assert "The mock sign-in service is temporarily unavailable (provider_unavailable). Try again in" in explanation(
        result
    )


async def test_invalid_email_is_explained_without_a_link(url: str) -> None:
    async with mcp_client(url, mode=LEGACY, headers=as_user("not-an-email")) as client:
        result = await client.call_tool("read", {})
    assert "email address was rejected" in explanation(result)


async def test_a_server_outside_its_rights_is_not_told_to_sign_in(gateway: Gateway, user: str) -> None:
    # This server's API client may get tokens but not start sign-ins.
    key = gateway.add_client(f"no-init-{uuid.uuid4().hex[:8]}", "--actions", "token", "--providers", "mock")
    async with AuthClient(gateway.url, key) as auth, serve(build_server(auth).streamable_http_app()) as url:
        async with mcp_client(url, mode=LEGACY, headers=as_user(user)) as client:
            result = await client.call_tool("read", {})
    text = explanation(result)
    assert "not authorized to use its auth gateway" in text
    assert key not in text


async def test_rate_limited_is_explained_with_the_wait(
    processes: Processes, mock_provider: MockProvider, user: str
) -> None:
    limited = processes.gateway(mock_provider, RATE_LIMIT_TOKEN_PER_SECOND="1")
    async with AuthClient(limited.url, limited.api_key) as auth, serve(build_server(auth).streamable_http_app()) as url:
        async with mcp_client(url, mode=LEGACY, headers=as_user(user)) as client:
            # Use up the burst (the limit is per source address too, and all of this is
            # 127.0.0.1), then the tool's own get_token is refused.
            with pytest.raises(RateLimited):
                for _ in range(10):
                    await auth.is_authenticated("mock", user)
            result = await client.call_tool("read", {})
    assert "The auth gateway is temporarily unavailable (rate_limited). Try again in 1 second." in explanation(result)


async def test_an_empty_header_is_a_missing_header(url: str) -> None:
    async with mcp_client(url, mode=LEGACY, headers=as_user("")) as client:
        result = await client.call_tool("read", {})
    assert f"no {EMAIL_HEADER} header" in explanation(result)


async def test_direct_call_without_request_context_uses_text(auth: AuthClient, user: str) -> None:
    from mcp.server.mcpserver.exceptions import ToolError

    # Outside a request there are no headers: only the (opted-in) argument can name the user.
    server = build_single_user_server(auth)
    with pytest.raises(ToolError) as caught:
        await server.call_tool("read", {"user_email": user})
    await open_in_browser(link_in(str(caught.value)))
    result = await server.call_tool("read", {"user_email": user})
    assert isinstance(result, types.CallToolResult)
    assert text_of(result) == f"inbox:{await auth.get_token('mock', user)}"


@pytest.mark.parametrize("mode", [LEGACY, MODERN])
async def test_a_sign_in_link_off_the_gateways_origin_is_never_shown(
    processes: Processes, mock: MockProvider, user: str, mode: str
) -> None:
    # The gateway hands out links on "localhost" while the server reaches it on 127.0.0.1.
    port = free_port()
    foreign = f"http://localhost:{port}"
    gateway = processes.gateway(mock, PORT=str(port), PUBLIC_BASE_URL=foreign)
    person = ElicitingUser("accept")
    async with AuthClient(gateway.url, gateway.api_key) as auth, serve(build_server(auth).streamable_http_app()) as url:
        async with mcp_client(url, mode=mode, elicitation=person, headers=as_user(user)) as client:
            result = await client.call_tool("read", {})
    text = explanation(result)
    assert "does not point to the gateway" in text
    assert foreign not in text and "localhost" not in text
    assert person.requests == []  # nothing was elicited either

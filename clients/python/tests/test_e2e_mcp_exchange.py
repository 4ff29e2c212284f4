"""The whole chain, end to end: a real MCP client with MCP authorization (``Authorization:
Bearer <a JWT from the organisation's identity provider>``) -> an MCP server that
verifies that JWT itself (FastMCP ``token_verifier=`` + ``auth=``, PyJWT against the
IdP's published keys) and whose tools use ``require_auth`` -> token exchange at the real
gateway -> the provider's protected API (the mock provider's ``/api/me``), which says
whose account the exchanged token belongs to.

The MCP server's API client is bound to token exchange (``--require-exchange``), so
nothing in this chain can name a user: the gateway answers for the user the token
proves, or with a sign-in link bound to that user, which the decorator shows through URL
elicitation (both protocol eras) or, failing that, in the tool's error text."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx
import mcp_types as types
import pytest
from mcp.server import MCPServer
from mcp.server.auth.settings import AuthSettings
from pydantic import AnyHttpUrl

from mcp_auth_client import AuthClient, TokenInfo, require_auth
from tests.browser import open_in_browser, visit
from tests.idp_verifier import IdpTokenVerifier
from tests.mcp_helpers import ElicitingUser, link_in, mcp_client, serve, text_of
from tests.stack import MCP_AUDIENCE, Gateway, MockProvider

pytestmark = [pytest.mark.anyio, pytest.mark.e2e]

LEGACY = "legacy"
MODERN = "2026-07-28"


def mail_server(
    auth: AuthClient, mock: MockProvider, *, audience: str = MCP_AUDIENCE, exchange: bool | None = None
) -> MCPServer:
    """An MCP server with MCP authorization whose tools get the user's provider token
    through require_auth (automatic token exchange unless ``exchange`` says otherwise)."""
    server = MCPServer(
        "mail-exchange",
        token_verifier=IdpTokenVerifier(mock.idp_issuer, audience),
        auth=AuthSettings(issuer_url=AnyHttpUrl(mock.idp_issuer), resource_server_url=None),
    )

    async def owner(access_token: str) -> str:
        async with httpx.AsyncClient(timeout=10) as http:
            response = await http.get(mock.api_url, headers={"Authorization": f"Bearer {access_token}"})
        response.raise_for_status()
        return str(response.json()["email"])

    @server.tool()
    @require_auth(auth, provider="mock", scopes=["mail.read"], exchange=exchange, wait_timeout=15)
    async def whoami(*, access_token: str) -> str:
        """Whose mailbox the provider's API says this is."""
        return await owner(access_token)

    @server.tool()
    @require_auth(auth, provider="mock", scopes=["mail.send"], exchange=exchange, wait_timeout=15)
    async def send(to: str, *, access_token: TokenInfo) -> dict[str, Any]:
        """Send mail (needs another scope)."""
        return {"from": await owner(access_token.access_token), "to": to, "scopes": access_token.scopes}

    @server.tool()
    @require_auth(auth, provider="mock", scopes=["mail.read"], exchange=exchange)
    async def whoami_as(user_email: str, *, access_token: str) -> str:
        """The same, for a tool whose model-written arguments name a user."""
        return await owner(access_token)

    return server


@pytest.fixture(scope="module")
def exchange_only_key(gateway: Gateway) -> str:
    """The MCP server's API client: may exchange, start sign-ins and follow them, and
    may not name a user (``/auth/token`` answers ``exchange_required``)."""
    return gateway.add_exchange_client(f"mail-mcp-{uuid.uuid4().hex[:8]}", require_exchange=True)


@pytest.fixture
async def mcp_url(gateway: Gateway, exchange_only_key: str, mock: MockProvider) -> AsyncIterator[str]:
    async with (
        AuthClient(gateway.url, exchange_only_key) as auth,
        serve(mail_server(auth, mock).streamable_http_app()) as url,
    ):
        yield url


def bearer(mock: MockProvider, user: str, audience: str = MCP_AUDIENCE) -> dict[str, str]:
    """What the user's MCP client sends: the access token the IdP issued it for this server."""
    return {"Authorization": f"Bearer {mock.user_token(user, audience)}"}


def explanation(result: types.CallToolResult) -> str:
    """The error text of a tool call that must not carry a sign-in link."""
    assert result.is_error
    text = text_of(result)
    assert "/connect/" not in text and "Authorization required" not in text
    return text


# --- the acceptance test ---------------------------------------------------------------


@pytest.mark.parametrize("mode", [LEGACY, MODERN])
async def test_mcp_authorization_to_the_provider_api_through_exchange(
    mcp_url: str, gateway: Gateway, mock: MockProvider, user: str, mode: str
) -> None:
    person = ElicitingUser("accept")
    async with mcp_client(mcp_url, mode=mode, elicitation=person, headers=bearer(mock, user)) as client:
        first = await client.call_tool("whoami", {})
        # The user was asked, by URL elicitation, to open the gateway's link for them...
        assert len(person.requests) == 1
        request = person.requests[0]
        assert isinstance(request, types.ElicitRequestURLParams)
        assert request.url.startswith(f"{gateway.url}/connect/")
        assert mock.last_authorize()["login_hint"] == user
        # ...and the tool then ran with the exchanged token: the provider's API says whose it is.
        assert not first.is_error, text_of(first)
        assert text_of(first) == user
        again = await client.call_tool("whoami", {})
        assert text_of(again) == user and len(person.requests) == 1


@pytest.mark.parametrize("mode", [LEGACY, MODERN])
async def test_the_text_fallback_carries_the_link_of_the_verified_user(
    mcp_url: str, mock: MockProvider, user: str, mode: str
) -> None:
    async with mcp_client(mcp_url, mode=mode, headers=bearer(mock, user)) as client:
        first = await client.call_tool("whoami", {})
        assert first.is_error
        text = text_of(first)
        assert "has not connected their mock account" in text
        link = link_in(text)
        assert link_in(text_of(await client.call_tool("whoami", {}))) == link  # the same session
        await open_in_browser(link)
        assert mock.last_authorize()["login_hint"] == user
        done = await client.call_tool("whoami", {})
    assert not done.is_error, text_of(done)
    assert text_of(done) == user


async def test_each_user_gets_their_own_account(mcp_url: str, mock: MockProvider) -> None:
    alice, bob = (f"{name}-{uuid.uuid4().hex[:8]}@example.com" for name in ("alice", "bob"))
    for person in (alice, bob):
        async with mcp_client(
            mcp_url, mode=LEGACY, elicitation=ElicitingUser("accept"), headers=bearer(mock, person)
        ) as c:
            assert text_of(await c.call_tool("whoami", {})) == person
    async with mcp_client(mcp_url, mode=MODERN, headers=bearer(mock, alice)) as client:
        assert text_of(await client.call_tool("whoami", {})) == alice


@pytest.mark.parametrize("mode", [LEGACY, MODERN])
async def test_more_scopes_keep_what_the_user_granted(mcp_url: str, mock: MockProvider, user: str, mode: str) -> None:
    person = ElicitingUser("accept")
    async with mcp_client(mcp_url, mode=mode, elicitation=person, headers=bearer(mock, user)) as client:
        assert text_of(await client.call_tool("whoami", {})) == user
        granted = set(mock.last_authorize()["scope"].split())
        assert "mail.read" in granted

        sent = await client.call_tool("send", {"to": "bob@example.com"})
        assert not sent.is_error, text_of(sent)
        assert len(person.requests) == 2
        # The new sign-in asked for the missing scope and everything granted before: the
        # exchange's own link would have asked for mail.send alone and narrowed the grant.
        assert set(mock.last_authorize()["scope"].split()) >= granted | {"mail.send"}
        assert sent.structured_content is not None
        assert sent.structured_content["from"] == user
        assert {"mail.read", "mail.send"} <= set(sent.structured_content["scopes"])
        # The first tool still works without another sign-in.
        assert text_of(await client.call_tool("whoami", {})) == user
        assert len(person.requests) == 2


@pytest.mark.parametrize("mode", [LEGACY, MODERN])
async def test_denied_consent_gives_a_fresh_link(mcp_url: str, mock: MockProvider, user: str, mode: str) -> None:
    async def deny(link: str) -> None:
        mock.admin("POST", "consent", {"mode": "deny"})
        await visit(link)
        mock.admin("POST", "consent", {"mode": "approve_as_login_hint"})

    person = ElicitingUser("accept", opener=deny)
    async with mcp_client(mcp_url, mode=mode, elicitation=person, headers=bearer(mock, user)) as client:
        result = await client.call_tool("whoami", {})
        assert result.is_error
        assert "did not succeed" in text_of(result)
        assert isinstance(person.requests[0], types.ElicitRequestURLParams)
        fresh = link_in(text_of(result))
        assert fresh != person.requests[0].url
        await open_in_browser(fresh)
        done = await client.call_tool("whoami", {})
    assert text_of(done) == user


# --- what the chain refuses ------------------------------------------------------------


async def test_an_argument_naming_another_user_is_refused(mcp_url: str, mock: MockProvider, user: str) -> None:
    async with mcp_client(mcp_url, mode=LEGACY, elicitation=ElicitingUser("accept"), headers=bearer(mock, user)) as c:
        assert text_of(await c.call_tool("whoami_as", {"user_email": user.upper()})) == user
        refused = await c.call_tool("whoami_as", {"user_email": "ceo@example.com"})
    assert "does not match the user making this request" in explanation(refused)


async def test_a_token_the_gateway_does_not_accept_is_explained(
    gateway: Gateway, exchange_only_key: str, mock: MockProvider, user: str
) -> None:
    # The MCP server accepts tokens for another audience than the one its API client
    # registered at the gateway: a configuration mistake, not a reason to sign in.
    other = "https://other-mcp.example"
    subject = bearer(mock, user, other)
    async with AuthClient(gateway.url, exchange_only_key) as auth:
        async with serve(mail_server(auth, mock, audience=other).streamable_http_app()) as url:
            async with mcp_client(url, mode=LEGACY, headers=subject) as client:
                result = await client.call_tool("whoami", {})
    text = explanation(result)
    assert "does not accept this MCP server's access tokens (wrong_audience)" in text
    assert subject["Authorization"].removeprefix("Bearer ") not in text


async def test_naming_the_user_is_refused_to_a_client_bound_to_exchange(
    gateway: Gateway, exchange_only_key: str, mock: MockProvider, user: str
) -> None:
    # exchange=False: the token's email claim names the user, as before token exchange;
    # the gateway refuses that to this API client.
    async with AuthClient(gateway.url, exchange_only_key) as auth:
        async with serve(mail_server(auth, mock, exchange=False).streamable_http_app()) as url:
            async with mcp_client(url, mode=LEGACY, headers=bearer(mock, user)) as client:
                result = await client.call_tool("whoami", {})
    assert "may only get tokens by exchanging the user's access token" in explanation(result)


async def test_an_api_client_without_an_audience_is_told_to_register_one(
    gateway: Gateway, mock: MockProvider, user: str
) -> None:
    async with AuthClient(gateway.url, gateway.api_key) as bootstrap:
        async with serve(mail_server(bootstrap, mock).streamable_http_app()) as url:
            async with mcp_client(url, mode=LEGACY, headers=bearer(mock, user)) as client:
                result = await client.call_tool("whoami", {})
    text = explanation(result)
    assert "does not let this MCP server exchange" in text and "--audience" in text


async def test_without_the_init_right_there_is_no_link_to_show(gateway: Gateway, mock: MockProvider, user: str) -> None:
    key = gateway.add_exchange_client(f"no-init-{uuid.uuid4().hex[:8]}", actions="status,token")
    async with AuthClient(gateway.url, key) as auth, serve(mail_server(auth, mock).streamable_http_app()) as url:
        async with mcp_client(url, mode=LEGACY, elicitation=ElicitingUser("accept"), headers=bearer(mock, user)) as c:
            result = await c.call_tool("whoami", {})
    assert "may not start sign-ins" in explanation(result)


async def test_the_email_path_still_works_with_exchange_off(gateway: Gateway, mock: MockProvider, user: str) -> None:
    # A gateway client that may name users, and exchange=False: the verified email claim
    # of the same JWT names the user (the behaviour before token exchange).
    async with AuthClient(gateway.url, gateway.api_key) as auth:
        async with serve(mail_server(auth, mock, exchange=False).streamable_http_app()) as url:
            async with mcp_client(url, mode=LEGACY, headers=bearer(mock, user)) as client:
                first = await client.call_tool("whoami", {})
                await open_in_browser(link_in(text_of(first)))
                done = await client.call_tool("whoami", {})
    assert text_of(done) == user

"""require_auth end to end: a real MCP client over HTTP -> the example MCP server (and
in-process variants) -> the real gateway -> the mock OAuth provider.

Protocol eras: ``mode="legacy"`` negotiates 2025-11-25 (the server sends a URL-mode
``elicitation/create`` mid-call); ``mode="2026-07-28"`` is the stateless era (the tool
answers ``input_required`` with a URL elicitation and resumes on the client's retry).
A client without an elicitation callback declares no elicitation capability and gets the
text fallback (``AuthRequiredException``).

The example server learns the user from the ``X-User-Email`` header, which the test
clients send as the proxy in front of it would. The in-process variants at the end cover
the identity rules: MCP authorization, the trusted header, the opt-in argument, and the
refusals (a contradicting argument, a missing header, no source at all).
"""

from __future__ import annotations

from typing import Any

import httpx
import mcp_types as types
import pytest
from mcp import Client
from mcp.server import MCPServer
from mcp.server.auth.provider import AccessToken
from mcp.server.auth.settings import AuthSettings
from pydantic import AnyHttpUrl

from mcp_auth_client import AuthClient, require_auth
from tests.browser import open_in_browser
from tests.mcp_helpers import (
    EMAIL_HEADER,
    ElicitingUser,
    Notifications,
    as_user,
    link_in,
    mcp_client,
    serve,
    text_of,
)
from tests.stack import ExampleServer, Gateway, MockProvider

pytestmark = [pytest.mark.anyio, pytest.mark.e2e]

LEGACY = "legacy"
MODERN = "2026-07-28"


async def test_input_schema_hides_access_token(example_server: ExampleServer) -> None:
    for mode in (LEGACY, MODERN):
        async with mcp_client(example_server.url, mode=mode) as client:
            tools = {tool.name: tool for tool in (await client.list_tools()).tools}
            assert set(tools) == {"list_messages", "send_email"}
            for tool in tools.values():
                properties = tool.input_schema["properties"]
                assert "access_token" not in properties
                assert "mcp_auth_context" not in properties
                # The user comes from the trusted header: the model is not asked who they are.
                assert "user_email" not in properties
            assert set(tools["send_email"].input_schema["required"]) == {"to", "subject"}


@pytest.mark.parametrize("mode", [LEGACY, MODERN])
async def test_text_fallback_then_real_result(
    example_server: ExampleServer, mock: MockProvider, user: str, mode: str
) -> None:
    async with mcp_client(example_server.url, mode=mode, headers=as_user(user)) as client:
        first = await client.call_tool("list_messages", {})
        assert first.is_error
        text = text_of(first)
        assert "Authorization required" in text
        link = link_in(text)
        # Calling again before signing in hands out the same link, not a new session.
        again = await client.call_tool("list_messages", {})
        assert link_in(text_of(again)) == link

        await open_in_browser(link)
        assert mock.last_authorize()["login_hint"] == user
        done = await client.call_tool("list_messages", {})
        assert not done.is_error, text_of(done)
        assert user in text_of(done)
        assert "Welcome" in text_of(done)


async def elicited_once_then_stored(client: Client, person: ElicitingUser, user: str) -> types.ElicitRequestURLParams:
    """The first tool call asks for the sign-in link by URL elicitation and returns the
    tool's real result; the second uses the stored credential without asking again."""
    result = await client.call_tool("list_messages", {})
    assert not result.is_error, text_of(result)
    assert user in text_of(result)
    assert len(person.requests) == 1
    request = person.requests[0]
    assert isinstance(request, types.ElicitRequestURLParams)
    assert request.mode == "url" and "/connect/" in request.url
    again = await client.call_tool("list_messages", {})
    assert not again.is_error and len(person.requests) == 1
    return request


async def test_url_elicitation_2025_11_25(example_server: ExampleServer, mock: MockProvider, user: str) -> None:
    person = ElicitingUser("accept")
    notes = Notifications()
    async with mcp_client(
        example_server.url, mode=LEGACY, elicitation=person, notifications=notes, headers=as_user(user)
    ) as client:
        assert client.protocol_version == "2025-11-25"
        request = await elicited_once_then_stored(client, person, user)
    assert request.elicitation_id
    assert request.elicitation_id in notes.elicitation_completions()


async def test_url_elicitation_2026_07_28(example_server: ExampleServer, mock: MockProvider, user: str) -> None:
    person = ElicitingUser("accept")
    async with mcp_client(example_server.url, mode=MODERN, elicitation=person, headers=as_user(user)) as client:
        assert client.protocol_version == "2026-07-28"
        await elicited_once_then_stored(client, person, user)


@pytest.mark.parametrize("mode", [LEGACY, MODERN])
async def test_declined_elicitation_falls_back_to_the_link(
    example_server: ExampleServer, mock: MockProvider, user: str, mode: str
) -> None:
    person = ElicitingUser("decline")
    async with mcp_client(example_server.url, mode=mode, elicitation=person, headers=as_user(user)) as client:
        result = await client.call_tool("list_messages", {})
    assert result.is_error
    assert len(person.requests) == 1
    text = text_of(result)
    assert "did not accept" in text
    assert isinstance(person.requests[0], types.ElicitRequestURLParams)
    assert link_in(text) == person.requests[0].url


@pytest.mark.parametrize("mode", [LEGACY, MODERN])
async def test_revoked_credential_leads_to_a_new_link(
    example_server: ExampleServer, auth: AuthClient, mock: MockProvider, user: str, mode: str
) -> None:
    async with mcp_client(example_server.url, mode=mode, headers=as_user(user)) as client:
        first_link = link_in(text_of(await client.call_tool("list_messages", {})))
        await open_in_browser(first_link)
        assert not (await client.call_tool("list_messages", {})).is_error

        await auth.revoke("mock", user)
        after = await client.call_tool("list_messages", {})
        assert after.is_error
        new_link = link_in(text_of(after))
        assert new_link != first_link
        await open_in_browser(new_link)
        assert not (await client.call_tool("list_messages", {})).is_error


@pytest.mark.parametrize("mode", [LEGACY, MODERN])
async def test_needs_reauth_leads_to_a_new_link(
    example_server: ExampleServer, auth: AuthClient, mock: MockProvider, user: str, mode: str
) -> None:
    mock.admin("POST", "settings", {"access_token_ttl_secs": 1})
    async with mcp_client(example_server.url, mode=mode, headers=as_user(user)) as client:
        first_link = link_in(text_of(await client.call_tool("list_messages", {})))
        await open_in_browser(first_link)
        assert not (await client.call_tool("list_messages", {})).is_error

        mock.admin("POST", "invalidate", {"email": user})
        after = await client.call_tool("list_messages", {})
        assert after.is_error
        text = text_of(after)
        assert "expired or was revoked" in text
        new_link = link_in(text)
        assert new_link != first_link
        assert (await auth.list_providers(user))[0].needs_reauth

        await open_in_browser(new_link)
        healed = await client.call_tool("list_messages", {})
        assert not healed.is_error, text_of(healed)


async def test_needs_reauth_via_elicitation_2026_07_28(
    example_server: ExampleServer, mock: MockProvider, user: str
) -> None:
    mock.admin("POST", "settings", {"access_token_ttl_secs": 1})
    person = ElicitingUser("accept")
    async with mcp_client(example_server.url, mode=MODERN, elicitation=person, headers=as_user(user)) as client:
        assert not (await client.call_tool("list_messages", {})).is_error
        mock.admin("POST", "invalidate", {"email": user})
        healed = await client.call_tool("list_messages", {})
        assert not healed.is_error, text_of(healed)
        assert len(person.requests) == 2
        assert isinstance(person.requests[1], types.ElicitRequestURLParams)
        assert "expired" in person.requests[1].message


@pytest.mark.parametrize("mode", [LEGACY, MODERN])
async def test_scope_insufficient_asks_for_the_missing_scopes(
    example_server: ExampleServer, auth: AuthClient, mock: MockProvider, user: str, mode: str
) -> None:
    async with mcp_client(example_server.url, mode=mode, headers=as_user(user)) as client:
        await open_in_browser(link_in(text_of(await client.call_tool("list_messages", {}))))
        assert not (await client.call_tool("list_messages", {})).is_error

        args = {"to": "bob@example.com", "subject": "hi"}
        needs_more = await client.call_tool("send_email", args)
        assert needs_more.is_error
        text = text_of(needs_more)
        assert "mail.send" in text
        await open_in_browser(link_in(text))
        requested = mock.last_authorize()["scope"].split()
        # The missing scope, and what the user had already granted (incremental consent).
        assert "mail.send" in requested and "mail.read" in requested

        sent = await client.call_tool("send_email", args)
        assert not sent.is_error, text_of(sent)
        assert "mail.send" in text_of(sent)
        # The earlier tool still works with the widened grant.
        assert not (await client.call_tool("list_messages", {})).is_error


async def test_the_example_takes_the_user_from_the_header_not_from_the_model(
    example_server: ExampleServer, mock: MockProvider, user: str
) -> None:
    async with mcp_client(example_server.url, mode=LEGACY, headers=as_user(user)) as client:
        # The example's tools take no user_email; one the model adds anyway is dropped.
        injected = {"user_email": "ceo@example.com"}
        await open_in_browser(link_in(text_of(await client.call_tool("list_messages", injected))))
        assert mock.last_authorize()["login_hint"] == user
        done = await client.call_tool("list_messages", injected)
        assert not done.is_error, text_of(done)
        assert user in text_of(done) and "ceo@" not in text_of(done)
    async with mcp_client(example_server.url, mode=LEGACY) as bypassing_the_proxy:
        refused = await bypassing_the_proxy.call_tool("list_messages", {})
    assert refused.is_error
    assert f"no {EMAIL_HEADER} header" in text_of(refused) and "/connect/" not in text_of(refused)


# --- identity rules, on variants served in-process -------------------------------------


def _server_with(
    gateway_url: str,
    api_key: str,
    mock_api: str,
    *,
    trusted_header: str | None = None,
    allow_email_argument: bool = False,
    **server_kwargs: Any,
) -> MCPServer:
    """A server with two tools that answer whose account their token belongs to: one
    without a user_email argument, one with it."""
    auth = AuthClient(gateway_url, api_key)
    server = MCPServer("variant", **server_kwargs)

    async def owner(access_token: str) -> str:
        async with httpx.AsyncClient() as http:
            response = await http.get(mock_api, headers={"Authorization": f"Bearer {access_token}"})
        response.raise_for_status()
        return str(response.json()["email"])

    @server.tool()
    @require_auth(auth, provider="mock", scopes=["mail.read"], trusted_email_header=trusted_header)
    async def whoami(*, access_token: str) -> str:
        """Who the provider says the token belongs to."""
        return await owner(access_token)

    @server.tool()
    @require_auth(
        auth,
        provider="mock",
        scopes=["mail.read"],
        trusted_email_header=trusted_header,
        allow_email_argument=allow_email_argument,
    )
    async def whoami_arg(user_email: str, *, access_token: str) -> str:
        """Same, for a tool that declares a user_email argument."""
        return await owner(access_token)

    return server


def refusal(result: types.CallToolResult) -> str:
    """The text of a call refused before any gateway request: an error, without a link."""
    assert result.is_error
    text = text_of(result)
    assert "/connect/" not in text and "Authorization required" not in text
    return text


async def test_bad_gateway_api_key_is_not_reported_as_sign_in(gateway: Gateway, mock: MockProvider, user: str) -> None:
    server = _server_with(gateway.url, "wrong-" + "k" * 58, mock.api_url, trusted_header=EMAIL_HEADER)
    async with (
        serve(server.streamable_http_app()) as url,
        mcp_client(url, mode=LEGACY, headers=as_user(user)) as client,
    ):
        result = await client.call_tool("whoami", {})
    text = refusal(result)
    assert "not authorized to use its auth gateway" in text
    assert "wrong-" not in text


class _StaticVerifier:
    """The MCP server's own OAuth: bearer tokens "t-<email>" carry an email claim."""

    async def verify_token(self, token: str) -> AccessToken | None:
        if not token.startswith("t-"):
            return None
        return AccessToken(token=token, client_id="test-client", scopes=[], subject=token, claims={"email": token[2:]})


@pytest.mark.parametrize("mode", [LEGACY, MODERN])
async def test_email_from_the_mcp_servers_own_oauth_identity(
    gateway: Gateway, mock: MockProvider, user: str, mode: str
) -> None:
    server = _server_with(
        gateway.url,
        gateway.api_key,
        mock.api_url,
        token_verifier=_StaticVerifier(),
        auth=AuthSettings(issuer_url=AnyHttpUrl("http://127.0.0.1/issuer"), resource_server_url=None),
    )
    async with serve(server.streamable_http_app()) as url:
        async with mcp_client(url, mode=mode, headers={"Authorization": f"Bearer t-{user}"}) as client:
            first = await client.call_tool("whoami", {})
            await open_in_browser(link_in(text_of(first)))
            assert mock.last_authorize()["login_hint"] == user
            done = await client.call_tool("whoami", {})
            assert not done.is_error, text_of(done)
            assert user in text_of(done)
            # The same address in other case is the same user.
            same = await client.call_tool("whoami_arg", {"user_email": user.upper()})
            assert not same.is_error, text_of(same)
            assert user in text_of(same)
            # A user_email argument cannot override the signed-in identity.
            spoof = await client.call_tool("whoami_arg", {"user_email": "someone-else@example.com"})
            assert "does not match" in refusal(spoof)


async def test_email_from_a_trusted_header(gateway: Gateway, mock: MockProvider, user: str) -> None:
    server = _server_with(gateway.url, gateway.api_key, mock.api_url, trusted_header=EMAIL_HEADER)
    async with serve(server.streamable_http_app()) as url:
        async with mcp_client(url, mode=MODERN, headers=as_user(user)) as client:
            first = await client.call_tool("whoami", {})
            await open_in_browser(link_in(text_of(first)))
            done = await client.call_tool("whoami", {})
            assert not done.is_error and user in text_of(done)
            agreeing = await client.call_tool("whoami_arg", {"user_email": user.upper()})
            assert not agreeing.is_error and user in text_of(agreeing)


@pytest.mark.parametrize("opted_in", [False, True])
async def test_an_argument_naming_another_user_is_refused(
    gateway: Gateway, mock: MockProvider, user: str, opted_in: bool
) -> None:
    # Prompt injection: the conversation talks the model into asking for the CEO's mail,
    # while the request comes from the user the proxy signed in.
    server = _server_with(
        gateway.url, gateway.api_key, mock.api_url, trusted_header=EMAIL_HEADER, allow_email_argument=opted_in
    )
    async with (
        serve(server.streamable_http_app()) as url,
        mcp_client(url, mode=LEGACY, headers=as_user(user)) as client,
    ):
        result = await client.call_tool("whoami_arg", {"user_email": "ceo@example.com"})
    assert "does not match the user making this request" in refusal(result)


async def test_a_missing_trusted_header_never_falls_back_to_the_argument(
    gateway: Gateway, mock: MockProvider, user: str
) -> None:
    # Even with the opt-in: a configured source that is missing is a refusal.
    server = _server_with(
        gateway.url, gateway.api_key, mock.api_url, trusted_header=EMAIL_HEADER, allow_email_argument=True
    )
    async with serve(server.streamable_http_app()) as url, mcp_client(url, mode=LEGACY) as client:
        result = await client.call_tool("whoami_arg", {"user_email": user})
    assert f"no {EMAIL_HEADER} header" in refusal(result)


async def test_the_argument_chooses_the_account_only_when_the_server_opts_in(
    gateway: Gateway, mock: MockProvider, user: str
) -> None:
    closed = _server_with(gateway.url, gateway.api_key, mock.api_url)
    async with serve(closed.streamable_http_app()) as url, mcp_client(url, mode=LEGACY) as client:
        refused = await client.call_tool("whoami_arg", {"user_email": user})
    text = refusal(refused)
    # The no-source error tells the server's author what to configure.
    assert "no trusted source" in text
    for setting in ("MCP authorization", "trusted_email_header", "allow_email_argument"):
        assert setting in text

    single_user = _server_with(gateway.url, gateway.api_key, mock.api_url, allow_email_argument=True)
    async with serve(single_user.streamable_http_app()) as url, mcp_client(url, mode=LEGACY) as client:
        first = await client.call_tool("whoami_arg", {"user_email": user})
        await open_in_browser(link_in(text_of(first)))
        assert mock.last_authorize()["login_hint"] == user
        done = await client.call_tool("whoami_arg", {"user_email": user})
    assert not done.is_error and user in text_of(done)


async def test_header_is_ignored_unless_configured(gateway: Gateway, mock: MockProvider, user: str) -> None:
    server = _server_with(gateway.url, gateway.api_key, mock.api_url)
    async with (
        serve(server.streamable_http_app()) as url,
        mcp_client(url, mode=LEGACY, headers=as_user(user)) as client,
    ):
        result = await client.call_tool("whoami", {})
    assert "no trusted source" in refusal(result)

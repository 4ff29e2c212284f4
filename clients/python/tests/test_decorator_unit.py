"""require_auth with a real MCP client over HTTP and an in-memory gateway (no binaries).

The same flows run against the real gateway in test_e2e_mcp.py; these add the cases the
real stack cannot easily produce (timeouts, denied consent, a provider outage).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import mcp_types as types
import pytest
from mcp.server import MCPServer
from mcp.server.auth.provider import AccessToken
from mcp.server.auth.settings import AuthSettings
from mcp.server.mcpserver import Context
from pydantic import AnyHttpUrl

from mcp_auth_client import AuthClient, TokenInfo, require_auth
from tests.fake_gateway import Credential, FakeGateway
from tests.mcp_helpers import ElicitingUser, link_in, mcp_client, serve, text_of

pytestmark = pytest.mark.anyio

LEGACY = "legacy"
MODERN = "2026-07-28"
ALICE = "alice@example.com"


def build_server(auth: AuthClient, *, wait_timeout: float = 10.0) -> MCPServer:
    server = MCPServer("unit")

    @server.tool()
    @require_auth(auth, provider="mock", scopes=["mail.read"], wait_timeout=wait_timeout)
    async def read(user_email: str, folder: str = "inbox", *, access_token: str) -> str:
        """Read mail."""
        return f"{folder}:{access_token}"

    @server.tool()
    @require_auth(auth, provider="mock", scopes=["mail.send"], wait_timeout=wait_timeout)
    def send(user_email: str, ctx: Context, *, access_token: TokenInfo) -> dict[str, Any]:
        """Send mail (a sync tool that also wants the Context and the full token)."""
        return {"token": access_token.access_token, "scopes": access_token.scopes, "has_ctx": ctx is not None}

    return server


@pytest.fixture
def fake() -> FakeGateway:
    return FakeGateway()


@pytest.fixture
async def url(fake: FakeGateway) -> AsyncIterator[str]:
    async with fake.client() as auth, serve(build_server(auth).streamable_http_app()) as served:
        yield served


async def test_schema_hides_access_token_and_context(fake: FakeGateway) -> None:
    server = build_server(fake.client())
    tools = {t.name: t for t in await server.list_tools()}
    assert tools["read"].input_schema["properties"].keys() == {"user_email", "folder"}
    assert tools["read"].input_schema["required"] == ["user_email"]
    assert tools["send"].input_schema["properties"].keys() == {"user_email"}
    assert tools["read"].description == "Read mail."


def test_tool_without_keyword_only_access_token_is_refused(fake: FakeGateway) -> None:
    auth = fake.client()
    with pytest.raises(TypeError, match="keyword-only"):

        @require_auth(auth, provider="mock")
        async def missing(user_email: str) -> str:
            return ""

    with pytest.raises(TypeError, match="keyword-only"):

        @require_auth(auth, provider="mock")
        async def positional(user_email: str, access_token: str) -> str:
            return access_token


@pytest.mark.parametrize("mode", [LEGACY, MODERN])
async def test_text_fallback(url: str, fake: FakeGateway, mode: str) -> None:
    async with mcp_client(url, mode=mode) as client:
        first = await client.call_tool("read", {"user_email": ALICE})
        assert first.is_error
        link = link_in(text_of(first))
        assert "has not connected their mock account" in text_of(first)
        assert link_in(text_of(await client.call_tool("read", {"user_email": ALICE}))) == link
        assert len(fake.sessions) == 1
        fake.complete(link)
        done = await client.call_tool("read", {"user_email": ALICE, "folder": "sent"})
        assert not done.is_error and text_of(done) == f"sent:tok-{ALICE}"


@pytest.mark.parametrize("mode", [LEGACY, MODERN])
async def test_elicitation_accept(url: str, fake: FakeGateway, mode: str) -> None:
    async def complete(link: str) -> None:
        fake.complete(link)

    person = ElicitingUser("accept", opener=complete)
    async with mcp_client(url, mode=mode, elicitation=person) as client:
        result = await client.call_tool("read", {"user_email": ALICE})
    assert not result.is_error, text_of(result)
    assert text_of(result) == f"inbox:tok-{ALICE}"
    assert len(person.requests) == 1
    assert isinstance(person.requests[0], types.ElicitRequestURLParams)
    assert person.requests[0].url.endswith(next(iter(fake.sessions)))


@pytest.mark.parametrize("mode", [LEGACY, MODERN])
async def test_elicitation_accepted_but_never_completed_is_bounded(fake: FakeGateway, mode: str) -> None:
    async def do_nothing(link: str) -> None:
        return None

    person = ElicitingUser("accept", opener=do_nothing)
    async with fake.client() as auth, serve(build_server(auth, wait_timeout=1.5).streamable_http_app()) as url:
        async with mcp_client(url, mode=mode, elicitation=person) as client:
            result = await client.call_tool("read", {"user_email": ALICE})
    assert result.is_error
    assert "not finished" in text_of(result)
    assert link_in(text_of(result)) == person.requests[0].url  # type: ignore[union-attr]


@pytest.mark.parametrize("mode", [LEGACY, MODERN])
async def test_denied_consent_gives_a_fresh_link(url: str, fake: FakeGateway, mode: str) -> None:
    async def deny(link: str) -> None:
        fake.complete(link, deny=True)

    person = ElicitingUser("accept", opener=deny)
    async with mcp_client(url, mode=mode, elicitation=person) as client:
        result = await client.call_tool("read", {"user_email": ALICE})
    assert result.is_error
    assert "did not succeed" in text_of(result)
    new_link = link_in(text_of(result))
    assert new_link != person.requests[0].url  # type: ignore[union-attr]
    assert len(fake.sessions) == 2


@pytest.mark.parametrize("mode", [LEGACY, MODERN])
async def test_scope_insufficient_requests_existing_plus_missing(url: str, fake: FakeGateway, mode: str) -> None:
    fake.credentials[("mock", ALICE)] = Credential(scopes=["openid", "mail.read"])
    async with mcp_client(url, mode=mode) as client:
        result = await client.call_tool("send", {"user_email": ALICE})
        assert result.is_error
        assert "mail.send" in text_of(result)
        session = fake.sessions[link_in(text_of(result)).rsplit("/", 1)[-1]]
        assert session.scopes == ["openid", "mail.read", "mail.send"]
        fake.complete(link_in(text_of(result)))
        sent = await client.call_tool("send", {"user_email": ALICE})
    assert not sent.is_error
    assert sent.structured_content == {
        "token": f"tok-{ALICE}",
        "scopes": ["openid", "mail.read", "mail.send"],
        "has_ctx": True,
    }


async def test_refresh_failed_explains_and_links(url: str, fake: FakeGateway) -> None:
    fake.credentials[("mock", ALICE)] = Credential(scopes=["mail.read"], state="needs_reauth")
    async with mcp_client(url, mode=LEGACY) as client:
        result = await client.call_tool("read", {"user_email": ALICE})
    assert result.is_error and "expired or was revoked" in text_of(result)
    link_in(text_of(result))


@pytest.mark.parametrize(
    ("status", "code", "expected"),
    [
        (503, "provider_unavailable", "temporarily unavailable (provider_unavailable). Try again in 30 seconds."),
        (403, "forbidden", "not authorized to use its auth gateway"),
        (400, "invalid_email", "email address was rejected"),
    ],
)
async def test_non_sign_in_failures_are_not_links(
    url: str, fake: FakeGateway, status: int, code: str, expected: str
) -> None:
    fake.forced = (status, {"error": code, "message": "m", "retry_after": 30}, {})
    async with mcp_client(url, mode=LEGACY) as client:
        result = await client.call_tool("read", {"user_email": ALICE})
    assert result.is_error
    assert expected in text_of(result)
    assert "/connect/" not in text_of(result)


async def test_missing_email_is_explained(url: str) -> None:
    async with mcp_client(url, mode=LEGACY) as client:
        result = await client.call_tool("read", {"user_email": "  "})
    assert result.is_error and "Cannot tell which user" in text_of(result)


async def test_direct_call_without_request_context_uses_text(fake: FakeGateway) -> None:
    from mcp.server.mcpserver.exceptions import ToolError

    server = build_server(fake.client())
    with pytest.raises(ToolError) as caught:
        await server.call_tool("read", {"user_email": ALICE})
    link = link_in(str(caught.value))
    fake.complete(link)
    result = await server.call_tool("read", {"user_email": ALICE})
    assert isinstance(result, types.CallToolResult)
    assert text_of(result) == f"inbox:tok-{ALICE}"


class _Verifier:
    """The MCP server's own OAuth: bearer "t-<email>" carries that email as a claim."""

    async def verify_token(self, token: str) -> AccessToken | None:
        if not token.startswith("t-"):
            return None
        return AccessToken(token=token, client_id="c", scopes=[], subject=token, claims={"email": token[2:]})


def identity_server(gateway: AuthClient, trusted_header: str | None = None, **kwargs: Any) -> MCPServer:
    server = MCPServer("identity", **kwargs)

    @server.tool()
    @require_auth(gateway, provider="mock", trusted_email_header=trusted_header)
    async def me(*, access_token: str) -> str:
        return access_token

    @server.tool()
    @require_auth(gateway, provider="mock")
    async def me_arg(user_email: str, *, access_token: str) -> str:
        return access_token

    return server


@pytest.mark.parametrize("mode", [LEGACY, MODERN])
async def test_identity_from_the_servers_oauth_token(fake: FakeGateway, mode: str) -> None:
    server = identity_server(
        fake.client(),
        token_verifier=_Verifier(),
        auth=AuthSettings(issuer_url=AnyHttpUrl("http://127.0.0.1/issuer"), resource_server_url=None),
    )
    async with serve(server.streamable_http_app()) as url:
        async with mcp_client(url, mode=mode, headers={"Authorization": f"Bearer t-{ALICE}"}) as client:
            first = await client.call_tool("me", {})
            session = fake.sessions[link_in(text_of(first)).rsplit("/", 1)[-1]]
            assert session.email == ALICE
            fake.complete(link_in(text_of(first)))
            assert text_of(await client.call_tool("me", {})) == f"tok-{ALICE}"
            same = await client.call_tool("me_arg", {"user_email": ALICE.upper()})
            assert not same.is_error
            spoof = await client.call_tool("me_arg", {"user_email": "mallory@example.com"})
            assert spoof.is_error and "does not match the signed-in user" in text_of(spoof)


async def test_identity_from_a_trusted_header_only_when_configured(fake: FakeGateway) -> None:
    fake.credentials[("mock", ALICE)] = Credential(scopes=["mail.read"])
    for trusted, expected in (("X-User-Email", f"tok-{ALICE}"), (None, "Cannot tell which user")):
        server = identity_server(fake.client(), trusted_header=trusted)
        async with serve(server.streamable_http_app()) as url:
            async with mcp_client(url, mode=LEGACY, headers={"x-user-email": ALICE}) as client:
                result = await client.call_tool("me", {})
        assert expected in text_of(result)

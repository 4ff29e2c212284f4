"""require_auth's choice between token exchange and a named user, and what it makes of
each exchange answer, with an ``httpx.MockTransport`` standing in for the gateway and
tools called directly (``MCPServer.call_tool``, no MCP transport): the MCP access
token is put where the SDK's auth middleware puts it.

The same flows run against the real gateway, with a real MCP client and MCP
authorization, in test_e2e_mcp_exchange.py."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any
from urllib.parse import parse_qsl

import httpx
import mcp_types as types
import pytest
from mcp.server import MCPServer
from mcp.server.auth.middleware.auth_context import auth_context_var
from mcp.server.auth.middleware.bearer_auth import AuthenticatedUser
from mcp.server.auth.provider import AccessToken
from mcp.server.mcpserver.exceptions import ToolError

from mcp_auth_client import AuthClient, AuthRequiredException, require_auth
from mcp_auth_client.decorators import NO_TOKEN_TO_EXCHANGE
from mcp_auth_client.identity import NO_IDENTITY_SOURCE, looks_like_jwt

pytestmark = pytest.mark.anyio

GATEWAY = "http://127.0.0.1:8000"
ALICE = "alice@example.com"
JWT = "eyJhbGciOiJFUzI1NiIsImtpZCI6ImsxIn0.eyJzdWIiOiJhbGljZSIsImVtYWlsIjoiYWxpY2UifQ.c2lnbmF0dXJlLXNlY3JldA"
OPAQUE = "opaque-access-token"
LINK = f"{GATEWAY}/connect/link-one"
OTHER_LINK = f"{GATEWAY}/connect/link-two"

Answer = tuple[int, dict[str, Any]]


class Gateway:
    """Answers each path from a list of (status, body), in order; records the requests."""

    def __init__(self, **answers: list[Answer]) -> None:
        self.answers = {path.replace("_", "/"): list(queue) for path, queue in answers.items()}
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        key = next(p for p in self.answers if request.url.path.startswith("/" + p))
        status, body = self.answers[key].pop(0)
        return httpx.Response(status, content=json.dumps(body).encode(), headers={"content-type": "application/json"})

    def paths(self) -> list[str]:
        return [r.url.path for r in self.requests]

    def forms(self) -> list[dict[str, str]]:
        return [dict(parse_qsl(r.content.decode())) for r in self.requests if r.url.path == "/oauth/token"]


def token(name: str = "mock_at_1", scope: str = "mail.read") -> Answer:
    return 200, {"access_token": name, "token_type": "Bearer", "expires_in": 60, "scope": scope, "expires_at": None}


def named_token(name: str = "mock_at_1") -> Answer:
    return 200, {"access_token": name, "token_type": "Bearer", "expires_at": None, "scopes": ["mail.read"]}


def needs_sign_in(reason: str = "not_authenticated", link: str | None = LINK, **extra: Any) -> Answer:
    body: dict[str, Any] = {"error": "authorization_required", "message": "m", "reason": reason, **extra}
    if link is not None:
        body.update(auth_url=link, session_id=f"sid-{link[-3:]}", expires_at="2030-01-01T00:00:00Z")
    return 400, body


def refused(reason: str) -> Answer:
    return 400, {"error": "invalid_grant", "message": f"refused ({reason}) {JWT}", "reason": reason}


@contextmanager
def signed_in(access_token: str, claims: dict[str, Any] | None = None) -> Iterator[None]:
    """The request's verified MCP access token, as the SDK's auth middleware sets it."""
    verified = AccessToken(
        token=access_token, client_id="mcp-client", scopes=[], subject="sub-alice", claims=claims or {"email": ALICE}
    )
    reset = auth_context_var.set(AuthenticatedUser(verified))
    try:
        yield
    finally:
        auth_context_var.reset(reset)


def server_for(gateway: Gateway, **options: Any) -> MCPServer:
    auth = AuthClient(GATEWAY, "k" * 64, transport=httpx.MockTransport(gateway))
    server = MCPServer("unit-exchange")
    scopes = options.pop("scopes", ["mail.read"])

    opted_in = options.pop("allow_email_argument", False)

    @server.tool()
    @require_auth(auth, provider="mock", scopes=scopes, **options)
    async def read(*, access_token: str) -> str:
        return f"token:{access_token}"

    @server.tool()
    @require_auth(auth, provider="mock", scopes=scopes, allow_email_argument=opted_in, **options)
    async def read_as(user_email: str, *, access_token: str) -> str:
        return f"token:{access_token}"

    return server


async def result_text(server: MCPServer, tool: str = "read", arguments: dict[str, Any] | None = None) -> str:
    result = await server.call_tool(tool, arguments or {})
    assert isinstance(result, types.CallToolResult)
    assert not result.is_error
    return "\n".join(block.text for block in result.content if isinstance(block, types.TextContent))


async def tool_error(server: MCPServer, tool: str = "read", arguments: dict[str, Any] | None = None) -> str:
    """The text of the tool's error (a direct call re-raises it as a plain ToolError)."""
    with pytest.raises(ToolError) as caught:
        await server.call_tool(tool, arguments or {})
    text = str(caught.value)
    assert JWT not in text
    return text


def test_what_counts_as_a_jwt() -> None:
    assert looks_like_jwt(JWT)
    assert looks_like_jwt("a.b.")  # an unsigned token still has the shape (the gateway refuses it)
    for not_jwt in (OPAQUE, "t-alice@example.com", "a.b", "a.b.c.d", ".b.c", "a..c", "a b.c.d", "first.last@x.com"):
        assert not looks_like_jwt(not_jwt), not_jwt


# --- which way the user is proven --------------------------------------------------------


async def test_a_jwt_access_token_is_exchanged_by_default() -> None:
    gateway = Gateway(oauth_token=[token()])
    with signed_in(JWT):
        assert await result_text(server_for(gateway)) == "token:mock_at_1"
    assert gateway.paths() == ["/oauth/token"]
    (form,) = gateway.forms()
    assert form["subject_token"] == JWT and form["audience"] == "mock" and form["scope"] == "mail.read"
    assert form["subject_token_type"] == "urn:ietf:params:oauth:token-type:access_token"


async def test_an_opaque_token_names_the_user_by_its_email_claim_as_before() -> None:
    gateway = Gateway(auth_token=[named_token()])
    with signed_in(OPAQUE):
        assert await result_text(server_for(gateway)) == "token:mock_at_1"
    assert gateway.paths() == ["/auth/token"]
    assert json.loads(gateway.requests[0].content)["user_email"] == ALICE


async def test_exchange_false_names_the_user_and_exchange_true_always_exchanges() -> None:
    named = Gateway(auth_token=[named_token()])
    with signed_in(JWT):
        assert await result_text(server_for(named, exchange=False)) == "token:mock_at_1"
    assert named.paths() == ["/auth/token"]

    exchanged = Gateway(oauth_token=[refused("malformed")])
    with signed_in(OPAQUE):
        error = await tool_error(server_for(exchanged, exchange=True))
    assert exchanged.forms()[0]["subject_token"] == OPAQUE
    assert "(malformed)" in error


async def test_exchange_true_without_a_token_is_refused_and_no_token_keeps_the_old_rules() -> None:
    gateway = Gateway()
    assert NO_TOKEN_TO_EXCHANGE in await tool_error(server_for(gateway, exchange=True))
    assert NO_IDENTITY_SOURCE in await tool_error(server_for(gateway))
    assert gateway.requests == []
    with pytest.raises(ValueError):
        require_auth(AuthClient(GATEWAY, "k" * 64), provider="mock", exchange="yes")  # type: ignore[arg-type]


async def test_exchange_does_not_need_an_email_claim_but_checks_what_contradicts_the_token() -> None:
    gateway = Gateway(oauth_token=[token(), token()])
    server = server_for(gateway)
    with signed_in(JWT, {"sub": "alice"}):  # the gateway may use another claim (upn, ...)
        assert await result_text(server) == "token:mock_at_1"
        # An argument cannot be checked against a token without an email: refused.
        assert "does not match" in (await tool_error(server, "read_as", {"user_email": ALICE}))
    with signed_in(JWT, {"email": ALICE}):
        assert await result_text(server, "read_as", {"user_email": ALICE.upper()}) == "token:mock_at_1"
        error = await tool_error(server, "read_as", {"user_email": "ceo@example.com"})
        assert "does not match the user making this request" in error
    with signed_in(JWT, {"email": ALICE, "email_verified": False}):
        assert "does not match" in (await tool_error(server, "read_as", {"user_email": ALICE}))
    # The argument never chooses, even opted in.
    opted_in = server_for(Gateway(), allow_email_argument=True)
    with signed_in(JWT, {"sub": "alice"}):
        assert "does not match" in (await tool_error(opted_in, "read_as", {"user_email": ALICE}))
    # A configured trusted header is still required (a direct call has no headers).
    with signed_in(JWT, {"email": ALICE}):
        assert "no X-User-Email header" in str(
            await tool_error(server_for(Gateway(), trusted_email_header="X-User-Email"))
        )
    assert gateway.paths() == ["/oauth/token", "/oauth/token"]


# --- the sign-in the exchange asks for -----------------------------------------------------


def sign_in_text(reason: str, link: str) -> str:
    """The text of the AuthRequiredException the tool raised (a direct call keeps only it)."""
    return AuthRequiredException(link, "mock", "sid", reason=reason, missing_scopes=["mail.send"]).default_message()


async def test_the_gateways_link_is_shown_without_starting_another_flow() -> None:
    gateway = Gateway(oauth_token=[needs_sign_in()])
    with signed_in(JWT):
        text = await tool_error(server_for(gateway))
    assert sign_in_text("not_authenticated", LINK) in text
    assert gateway.paths() == ["/oauth/token"]  # no /auth/init, no user named


async def test_without_a_link_the_operator_is_told_about_the_init_right() -> None:
    gateway = Gateway(oauth_token=[needs_sign_in(link=None)])
    with signed_in(JWT):
        error = await tool_error(server_for(gateway))
    assert "may not start sign-ins" in error and "/connect/" not in error


async def test_more_scopes_ask_again_with_what_the_user_granted() -> None:
    gateway = Gateway(
        oauth_token=[
            needs_sign_in("scope_insufficient", LINK, missing_scopes=["mail.send"]),
            needs_sign_in("scope_insufficient", OTHER_LINK, missing_scopes=["mail.send"]),
        ],
        auth_providers=[(200, {"providers": [{"provider": "mock", "scopes": ["mail.read"], "state": "active"}]})],
    )
    with signed_in(JWT):
        text = await tool_error(server_for(gateway, scopes=["mail.send"]))
    assert sign_in_text("scope_insufficient", OTHER_LINK) in text
    assert gateway.paths() == ["/oauth/token", f"/auth/providers/{ALICE}", "/oauth/token"]
    assert [form.get("scope") for form in gateway.forms()] == ["mail.send", "mail.read mail.send"]


async def test_the_gateways_link_is_kept_when_nothing_more_was_granted() -> None:
    gateway = Gateway(
        oauth_token=[needs_sign_in("refresh_failed", LINK)],
        auth_providers=[(403, {"error": "forbidden", "message": "may not use status"})],
    )
    with signed_in(JWT):
        text = await tool_error(server_for(gateway))
    assert sign_in_text("refresh_failed", LINK) in text


async def test_a_user_who_signed_in_meanwhile_gets_the_token() -> None:
    gateway = Gateway(
        oauth_token=[needs_sign_in("scope_insufficient", LINK, missing_scopes=["mail.send"]), token("mock_at_2")],
        auth_providers=[(200, {"providers": [{"provider": "mock", "scopes": ["mail.read"], "state": "active"}]})],
    )
    with signed_in(JWT):
        assert await result_text(server_for(gateway, scopes=["mail.send"])) == "token:mock_at_2"


# --- failures that signing in cannot fix -------------------------------------------------


ERROR_TEXTS: dict[str, tuple[Answer, str]] = {
    "expired": (refused("expired"), "must sign the user in again"),
    "too_old": (refused("too_old"), "must sign the user in again"),
    "wrong_audience": (refused("wrong_audience"), "does not accept this MCP server's access tokens (wrong_audience)"),
    "unverified_email": (refused("unverified_email"), "no usable, verified email address (unverified_email)"),
    "unauthorized_client": (
        (400, {"error": "unauthorized_client", "message": "The API client x has no registered audience."}),
        "does not let this MCP server exchange the user's access token: The API client x has no registered",
    ),
    "invalid_client": (
        (401, {"error": "invalid_client", "message": "Invalid API key."}),
        "refused the server's API key",
    ),
    "invalid_target": ((400, {"error": "invalid_target", "message": "no"}), "no provider 'mock' that this MCP server"),
    "temporarily_unavailable": (
        (503, {"error": "temporarily_unavailable", "message": "IdP down", "retry_after": 5}),
        "The auth gateway is temporarily unavailable (temporarily_unavailable). Try again in 5 seconds.",
    ),
    "slow_down": (
        (429, {"error": "slow_down", "message": "slow", "retry_after": 1}),
        "temporarily unavailable (slow_down). Try again in 1 second.",
    ),
}


@pytest.mark.parametrize("case", sorted(ERROR_TEXTS))
async def test_exchange_failures_are_explained_without_a_link(case: str) -> None:
    answer, expected = ERROR_TEXTS[case]
    gateway = Gateway(oauth_token=[answer])
    with signed_in(JWT):
        error = await tool_error(server_for(gateway))
    assert expected in error
    assert "/connect/" not in error and "Authorization required" not in error


async def test_a_client_bound_to_exchange_explains_a_request_without_a_token() -> None:
    gateway = Gateway(auth_token=[(403, {"error": "exchange_required", "message": "must prove its user"})])
    with signed_in(OPAQUE):  # an opaque token: the email path, which the gateway refuses
        error = await tool_error(server_for(gateway))
    assert "may only get tokens by exchanging the user's access token" in error

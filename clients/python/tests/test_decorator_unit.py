"""require_auth's pure parts, without any gateway or HTTP: the signature it hands to the
MCP SDK (and so the tool's input schema), its refusal of tools it cannot fill, and how
the user's email is worked out from the tool arguments and the OAuth claims.

Every flow that talks to a gateway runs against the real gateway in
test_e2e_decorator.py and test_e2e_mcp.py."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from mcp.server import MCPServer
from mcp.server.auth.middleware.auth_context import auth_context_var
from mcp.server.auth.middleware.bearer_auth import AuthenticatedUser
from mcp.server.auth.provider import AccessToken
from mcp.server.mcpserver import Context

from mcp_auth_client import AuthClient, TokenInfo, require_auth
from mcp_auth_client.identity import IdentityError, IdentityPolicy, resolve_user_email

ALICE = "alice@example.com"

# Never contacted: these tests stop before any gateway call.
UNUSED = AuthClient("http://127.0.0.1:1", "k" * 64)


def build_server() -> MCPServer:
    server = MCPServer("unit")

    @server.tool()
    @require_auth(UNUSED, provider="mock", scopes=["mail.read"])
    async def read(user_email: str, folder: str = "inbox", *, access_token: str) -> str:
        """Read mail."""
        return f"{folder}:{access_token}"

    @server.tool()
    @require_auth(UNUSED, provider="mock", scopes=["mail.send"])
    def send(user_email: str, ctx: Context, *, access_token: TokenInfo) -> dict[str, Any]:
        """Send mail (a sync tool that also wants the Context and the full token)."""
        return {"token": access_token.access_token, "has_ctx": ctx is not None}

    return server


@pytest.mark.anyio
async def test_schema_hides_access_token_and_context() -> None:
    tools = {t.name: t for t in await build_server().list_tools()}
    assert tools["read"].input_schema["properties"].keys() == {"user_email", "folder"}
    assert tools["read"].input_schema["required"] == ["user_email"]
    assert tools["send"].input_schema["properties"].keys() == {"user_email"}
    assert tools["read"].description == "Read mail."


def test_tool_without_keyword_only_access_token_is_refused() -> None:
    with pytest.raises(TypeError, match="keyword-only"):

        @require_auth(UNUSED, provider="mock")
        async def missing(user_email: str) -> str:
            return ""

    with pytest.raises(TypeError, match="keyword-only"):

        @require_auth(UNUSED, provider="mock")
        async def positional(user_email: str, access_token: str) -> str:
            return access_token


def test_reserved_context_name_and_bad_settings_are_refused() -> None:
    with pytest.raises(TypeError, match="reserved"):

        @require_auth(UNUSED, provider="mock")
        async def clash(user_email: str, mcp_auth_context: str = "", *, access_token: str) -> str:
            return access_token

    with pytest.raises(ValueError):
        require_auth(UNUSED, provider="")
    with pytest.raises(ValueError):
        require_auth(UNUSED, provider="mock", wait_timeout=-1)


# --- identity: arguments and OAuth claims ------------------------------------------------


@contextmanager
def signed_in(claims: dict[str, Any]) -> Iterator[None]:
    """The MCP server's own OAuth identity for the current context, as the SDK's auth
    middleware sets it for a request with a verified bearer token."""
    token = AccessToken(token="t", client_id="c", scopes=[], subject="s", claims=claims)
    reset = auth_context_var.set(AuthenticatedUser(token))
    try:
        yield
    finally:
        auth_context_var.reset(reset)


POLICY = IdentityPolicy()


def test_email_from_the_argument_without_oauth() -> None:
    assert resolve_user_email({"user_email": f"  {ALICE} "}, None, POLICY) == ALICE
    assert resolve_user_email({"mail": ALICE}, None, IdentityPolicy(email_argument="mail")) == ALICE
    for arguments in ({}, {"user_email": "   "}, {"user_email": 42}):
        with pytest.raises(IdentityError, match="Cannot tell which user"):
            resolve_user_email(arguments, None, POLICY)
    with pytest.raises(IdentityError, match="Cannot tell which user"):
        resolve_user_email({"user_email": ALICE}, None, IdentityPolicy(email_argument=None))


def test_the_oauth_claim_wins_over_the_argument() -> None:
    with signed_in({"email": ALICE}):
        assert resolve_user_email({}, None, POLICY) == ALICE
        assert resolve_user_email({"user_email": ALICE.upper()}, None, POLICY) == ALICE
        with pytest.raises(IdentityError, match="does not match the signed-in user"):
            resolve_user_email({"user_email": "mallory@example.com"}, None, POLICY)
    with signed_in({"upn": ALICE}):
        assert resolve_user_email({}, None, IdentityPolicy(email_claim="upn")) == ALICE


def test_unusable_oauth_claims_are_refused() -> None:
    with signed_in({"sub": "123"}), pytest.raises(IdentityError, match="carries no 'email' claim"):
        # A server using OAuth never falls back to the model-supplied argument.
        resolve_user_email({"user_email": ALICE}, None, POLICY)
    with signed_in({"email": ALICE, "email_verified": False}), pytest.raises(IdentityError, match="not verified"):
        resolve_user_email({}, None, POLICY)

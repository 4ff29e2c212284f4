"""require_auth's pure parts, without any gateway or HTTP: the signature it hands to the
MCP SDK (and so the tool's input schema), its refusal of tools it cannot fill, and how
the user's email is worked out from the OAuth claims, a trusted header and (only when
the server opts in) the tool arguments.

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
from mcp.server.auth.settings import AuthSettings
from mcp.server.mcpserver import Context
from mcp.server.mcpserver.exceptions import ToolError
from pydantic import AnyHttpUrl
from starlette.datastructures import Headers

from mcp_auth_client import AuthClient, TokenInfo, require_auth
from mcp_auth_client.identity import (
    NO_IDENTITY_SOURCE,
    IdentityError,
    IdentityPolicy,
    choose_user_email,
    resolve_user_email,
)

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


def test_opting_in_to_the_argument_needs_a_tool_that_takes_it() -> None:
    with pytest.raises(TypeError, match="has no 'user_email' parameter"):

        @require_auth(UNUSED, provider="mock", allow_email_argument=True)
        async def no_argument(*, access_token: str) -> str:
            return access_token

    with pytest.raises(ValueError, match="needs an email_argument"):
        require_auth(UNUSED, provider="mock", allow_email_argument=True, email_argument=None)


@pytest.mark.anyio
async def test_the_decorator_neither_adds_nor_removes_user_email_in_the_schema() -> None:
    server = MCPServer("schema")

    @server.tool()
    @require_auth(UNUSED, provider="mock", trusted_email_header="X-User-Email")
    async def from_header(*, access_token: str) -> str:
        return access_token

    @server.tool()
    @require_auth(UNUSED, provider="mock", allow_email_argument=True)
    async def from_argument(user_email: str, *, access_token: str) -> str:
        return access_token

    tools = {t.name: t for t in await server.list_tools()}
    assert "user_email" not in tools["from_header"].input_schema["properties"]
    assert tools["from_argument"].input_schema["required"] == ["user_email"]


# --- identity -------------------------------------------------------------------------


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


CEO = "ceo@example.com"
DEFAULT = IdentityPolicy()
HEADER = IdentityPolicy(trusted_header="X-User-Email")
OPTED_IN = IdentityPolicy(allow_email_argument=True)
HEADER_AND_OPTED_IN = IdentityPolicy(trusted_header="X-User-Email", allow_email_argument=True)


def test_by_default_the_argument_never_chooses_the_account() -> None:
    # No MCP authorization, no header configured, no opt-in: a clear error for the
    # server's author, whatever the model passes.
    for arguments in ({"user_email": ALICE}, {}):
        with pytest.raises(IdentityError) as caught:
            resolve_user_email(arguments, None, DEFAULT)
        assert str(caught.value) == NO_IDENTITY_SOURCE
    for setting in ("MCP authorization", "trusted_email_header=", "allow_email_argument=True"):
        assert setting in NO_IDENTITY_SOURCE
    # A header nobody configured is not trusted either.
    with pytest.raises(IdentityError, match="no trusted source"):
        choose_user_email({}, DEFAULT, headers={"X-User-Email": ALICE})


def test_the_argument_chooses_the_account_only_when_opted_in() -> None:
    assert resolve_user_email({"user_email": f"  {ALICE} "}, None, OPTED_IN) == ALICE
    renamed = IdentityPolicy(email_argument="mail", allow_email_argument=True)
    assert resolve_user_email({"mail": ALICE}, None, renamed) == ALICE
    for arguments in ({}, {"user_email": "   "}, {"user_email": 42}):
        with pytest.raises(IdentityError, match="Pass the user's email address as 'user_email'"):
            resolve_user_email(arguments, None, OPTED_IN)


def test_the_trusted_header_names_the_user() -> None:
    assert choose_user_email({}, HEADER, headers={"x-user-email": f" {ALICE} "}) == ALICE
    # An argument that agrees (in any case) is fine, opted in or not.
    for policy in (HEADER, HEADER_AND_OPTED_IN):
        assert choose_user_email({"user_email": ALICE.upper()}, policy, headers={"X-User-Email": ALICE}) == ALICE


@pytest.mark.parametrize("policy", [HEADER, HEADER_AND_OPTED_IN], ids=["default", "opted-in"])
def test_an_argument_naming_another_user_than_the_header_is_refused(policy: IdentityPolicy) -> None:
    # The prompt-injection case: the model was talked into asking for the CEO's mail.
    with pytest.raises(IdentityError, match="does not match the user making this request") as caught:
        choose_user_email({"user_email": CEO}, policy, headers={"X-User-Email": ALICE})
    assert CEO not in str(caught.value) and ALICE not in str(caught.value)


@pytest.mark.parametrize("policy", [HEADER, HEADER_AND_OPTED_IN], ids=["default", "opted-in"])
def test_a_configured_header_that_is_missing_is_refused_without_fallback(policy: IdentityPolicy) -> None:
    for headers in (None, {}, {"X-Other": ALICE}, {"X-User-Email": "  "}):
        with pytest.raises(IdentityError, match="no X-User-Email header"):
            choose_user_email({"user_email": ALICE}, policy, headers=headers)
    # Outside any request (no headers at all), the same.
    with pytest.raises(IdentityError, match="no X-User-Email header"):
        resolve_user_email({"user_email": ALICE}, None, policy)


def test_a_header_sent_twice_with_different_users_is_refused() -> None:
    # A proxy that appends its header instead of replacing the client's lets the
    # client's copy through; two different values cannot both be the user.
    headers = Headers(raw=[(b"x-user-email", CEO.encode()), (b"x-user-email", ALICE.encode())])
    with pytest.raises(IdentityError, match="more than one user"):
        choose_user_email({}, HEADER, headers=headers)


def test_the_oauth_claim_names_the_user() -> None:
    with signed_in({"email": ALICE}):
        assert resolve_user_email({}, None, DEFAULT) == ALICE
        assert resolve_user_email({"user_email": ALICE.upper()}, None, DEFAULT) == ALICE
        for policy in (DEFAULT, OPTED_IN):
            with pytest.raises(IdentityError, match="does not match the user making this request"):
                resolve_user_email({"user_email": CEO}, None, policy)
    with signed_in({"upn": ALICE}):
        assert resolve_user_email({}, None, IdentityPolicy(email_claim="upn")) == ALICE


def test_unusable_oauth_claims_are_refused() -> None:
    with signed_in({"sub": "123"}), pytest.raises(IdentityError, match="carries no 'email' claim"):
        # A server using OAuth never falls back to the model-supplied argument.
        resolve_user_email({"user_email": ALICE}, None, OPTED_IN)
    for unverified in (False, "false"):
        with (
            signed_in({"email": ALICE, "email_verified": unverified}),
            pytest.raises(IdentityError, match="not verified"),
        ):
            resolve_user_email({}, None, DEFAULT)


def test_a_server_with_mcp_authorization_needs_the_token() -> None:
    with pytest.raises(IdentityError, match="carries no verified access token"):
        choose_user_email({"user_email": ALICE}, OPTED_IN, server_uses_mcp_auth=True)
    with signed_in({"email": ALICE}):
        assert choose_user_email({}, OPTED_IN, server_uses_mcp_auth=True) == ALICE


@pytest.mark.anyio
async def test_a_tool_on_a_server_with_mcp_authorization_refuses_a_call_without_a_token() -> None:
    # A direct call carries no token (over HTTP the SDK's middleware turns such a
    # request away before any tool runs). Even with the opt-in, the argument is not used.
    server = MCPServer(
        "authorized",
        token_verifier=_NoTokens(),
        auth=AuthSettings(issuer_url=AnyHttpUrl("http://127.0.0.1/issuer"), resource_server_url=None),
    )

    @server.tool()
    @require_auth(UNUSED, provider="mock", allow_email_argument=True)
    async def read(user_email: str, *, access_token: str) -> str:
        return access_token

    with pytest.raises(ToolError, match="carries no verified access token"):
        await server.call_tool("read", {"user_email": ALICE})


class _NoTokens:
    async def verify_token(self, token: str) -> AccessToken | None:
        return None


def test_oauth_and_header_together_must_agree() -> None:
    with signed_in({"email": ALICE}):
        assert choose_user_email({}, HEADER, headers={"X-User-Email": ALICE.upper()}) == ALICE
        with pytest.raises(IdentityError, match="name different users"):
            choose_user_email({}, HEADER, headers={"X-User-Email": CEO})
        with pytest.raises(IdentityError, match="no X-User-Email header"):
            choose_user_email({}, HEADER, headers={})

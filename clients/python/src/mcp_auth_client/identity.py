"""Working out which user is calling a tool, from sources the model cannot write.

The account a tool acts on decides whose mailbox it reads, so it must come from
something the model (and anyone who can put text in front of it) cannot choose. The
trusted sources are:

1. **MCP authorization.** When the MCP server runs with it (``MCPServer(auth=...)``),
   or a request carries a verified access token anyway, the token's email claim
   (``get_access_token()``) names the user. A request without a token on such a
   server, a token without the claim, or one whose ``email_verified`` is false is
   refused.
2. **A trusted header** (``trusted_header``, e.g. ``X-User-Email``) that an
   authenticating proxy in front of the server sets, replacing any copy the client
   sent. Configured but absent is refused; sent twice with different values is refused.

Every configured source must be present and they must all name the same user
(case-insensitively). A configured source that is missing never falls back to a
weaker one.

The tool's ``user_email`` argument (``email_argument``) is written by the model. It
chooses the account only when the server opts in with ``allow_email_argument=True``
(single-user or development setups) and no trusted source exists. Whenever a trusted
identity exists, an argument that names someone else is refused, opted in or not: a
mismatch is what a prompt injection looks like.

With no trusted source and no opt-in, the tool answers with an error telling the
server's author how to configure identity, never with a sign-in link for a guessed user.

**Token exchange.** When the request carries a verified access token that is a JWT,
``require_auth`` (by default) does not name the user at all: it hands the token to the
gateway (``POST /oauth/token``), which verifies it itself and answers for the user it
proves (:func:`exchange_identity`). The rules above then only guard against
contradictions: a configured trusted header must be present and name the token's
(verified) email, and an email argument that does not match the token's email is
refused. The argument never chooses the account in that case, opted in or not.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from mcp.server.auth.middleware.auth_context import get_access_token
from mcp.server.auth.provider import AccessToken
from mcp.server.mcpserver import Context
from mcp.server.mcpserver.exceptions import ToolError

__all__ = [
    "NO_IDENTITY_SOURCE",
    "IdentityError",
    "IdentityPolicy",
    "choose_user_email",
    "exchange_identity",
    "looks_like_jwt",
    "resolve_user_email",
]

_BASE64URL = re.compile(r"[A-Za-z0-9_-]+")

#: What a tool answers when nothing tells it who the user is. It reaches the model and
#: the user, but it is addressed to the server's author: only they can fix it.
NO_IDENTITY_SOURCE = (
    "This tool cannot tell which user is calling it: the MCP server has no trusted source of "
    "the user's identity, and it does not take the user's email from tool arguments, which the "
    "model writes. This is a server configuration problem that signing in cannot fix; tell the "
    "server's operator. For the server's author: run the MCP server with MCP authorization (the "
    "email claim of the user's access token names them), or set trusted_email_header= to a header "
    "that an authenticating proxy in front of the server sets, or, for single-user and "
    "development setups only, set allow_email_argument=True on require_auth."
)


class IdentityError(ToolError):
    """The calling user's email could not be determined, or sources disagree."""


@dataclass(frozen=True)
class IdentityPolicy:
    """Where :func:`resolve_user_email` looks.

    Attributes:
        email_argument: Name of the tool argument that may hold the user's email
            (``None``: no such argument). Without ``allow_email_argument`` it is only
            checked against the trusted identity, never used to choose the account.
        allow_email_argument: Let the argument choose the account when no trusted
            source exists. The model writes it, so any user, or any text injected
            into the conversation, can name another person: for single-user or
            development setups only.
        email_claim: The access-token claim holding the email.
        trusted_header: Header set by a trusted proxy; ``None`` (default) disables it.
    """

    email_argument: str | None = "user_email"
    allow_email_argument: bool = False
    email_claim: str = "email"
    trusted_header: str | None = None

    def __post_init__(self) -> None:
        if self.allow_email_argument and not self.email_argument:
            raise ValueError("allow_email_argument=True needs an email_argument to read")
        if self.trusted_header is not None and not self.trusted_header.strip():
            raise ValueError("trusted_header must be a header name (or None)")


def _clean(value: object) -> str | None:
    if isinstance(value, str):
        value = value.strip()
        return value or None
    return None


def _same(a: str, b: str) -> bool:
    return a.casefold() == b.casefold()


def _header_values(headers: Mapping[str, str] | None, name: str) -> list[str]:
    """Every non-empty value of the header (a repeated header yields each copy)."""
    if headers is None:
        return []
    wanted = name.lower()
    values = (_clean(value) for key, value in headers.items() if key.lower() == wanted)
    return [value for value in values if value is not None]


def _request_headers(ctx: Context[Any, Any] | None) -> Mapping[str, str] | None:
    if ctx is None:
        return None
    try:
        return ctx.headers
    except ValueError:  # a Context built outside a request
        return None


def _server_uses_mcp_auth(ctx: Context[Any, Any] | None) -> bool:
    """Whether the MCP server was set up with MCP authorization (``MCPServer(auth=...)``)."""
    if ctx is None:
        return False
    try:
        return ctx.mcp_server.settings.auth is not None
    except (ValueError, AttributeError):  # no server behind this Context
        return False


def _unverified(claims: Mapping[str, Any]) -> bool:
    verified = claims.get("email_verified")
    # Some identity providers send the flag as a string.
    return verified is False or (isinstance(verified, str) and verified.strip().lower() == "false")


def _trusted_header_email(header: str, headers: Mapping[str, str] | None) -> str:
    """The one user a configured trusted header names; raises when it is missing or ambiguous."""
    values = _header_values(headers, header)
    if not values:
        # No fall-back to the argument: a request without the header did not come
        # through the proxy that vouches for the user.
        raise IdentityError(
            f"The request has no {header} header, which this MCP server relies on "
            "to know the user (a proxy in front of the server sets it), so the user cannot be "
            "identified."
        )
    if any(not _same(value, values[0]) for value in values[1:]):
        raise IdentityError(f"The {header} header names more than one user.")
    return values[0]


def _trusted_identities(
    policy: IdentityPolicy, headers: Mapping[str, str] | None, server_uses_mcp_auth: bool
) -> list[str]:
    """The email of each configured trusted source; raises when one is missing or unusable."""
    found: list[str] = []
    token = get_access_token()
    if token is not None or server_uses_mcp_auth:
        if token is None:
            raise IdentityError(
                "This MCP server uses MCP authorization, but the request carries no verified access "
                "token, so the user cannot be identified."
            )
        claims = token.claims or {}
        if _unverified(claims):
            raise IdentityError("The signed-in identity's email address is not verified.")
        claimed = _clean(claims.get(policy.email_claim))
        if claimed is None:
            raise IdentityError(
                f"The signed-in identity carries no {policy.email_claim!r} claim, so the user's "
                "account cannot be chosen."
            )
        found.append(claimed)
    if policy.trusted_header is not None:
        found.append(_trusted_header_email(policy.trusted_header, headers))
    if any(not _same(email, found[0]) for email in found[1:]):
        raise IdentityError(f"The signed-in identity and the {policy.trusted_header} header name different users.")
    return found


def choose_user_email(
    arguments: Mapping[str, Any],
    policy: IdentityPolicy,
    *,
    headers: Mapping[str, str] | None = None,
    server_uses_mcp_auth: bool = False,
) -> str:
    """Apply the rules of this module to one call.

    Args:
        arguments: The tool's keyword arguments.
        policy: Which sources are configured.
        headers: The request's headers, if any.
        server_uses_mcp_auth: The MCP server runs with MCP authorization, so a request
            without an access token is refused.

    Raises:
        IdentityError: A configured source is missing or unusable, sources disagree,
            an argument contradicts the trusted identity, or there is no source at all.
    """
    argument = _clean(arguments.get(policy.email_argument)) if policy.email_argument else None
    trusted = _trusted_identities(policy, headers, server_uses_mcp_auth)
    if trusted:
        if argument is not None and not _same(argument, trusted[0]):
            raise IdentityError(
                f"{policy.email_argument} does not match the user making this request, so the call "
                "is refused. Omit it or pass the user's own address."
            )
        return trusted[0]
    if not policy.allow_email_argument:
        raise IdentityError(NO_IDENTITY_SOURCE)
    if argument is None:
        raise IdentityError(
            f"Cannot tell which user is calling this tool. Pass the user's email address as {policy.email_argument!r}."
        )
    return argument


def resolve_user_email(arguments: Mapping[str, Any], ctx: Context[Any, Any] | None, policy: IdentityPolicy) -> str:
    """Return the calling user's email for a tool call (see the module's rules).

    Args:
        arguments: The tool's keyword arguments.
        ctx: The MCP request context (its headers, and whether the server uses MCP
            authorization), if any.
        policy: Where to look.

    Raises:
        IdentityError: See :func:`choose_user_email`.
    """
    return choose_user_email(
        arguments, policy, headers=_request_headers(ctx), server_uses_mcp_auth=_server_uses_mcp_auth(ctx)
    )


def looks_like_jwt(token: str) -> bool:
    """Whether ``token`` has the shape of a compact JWS (three base64url parts): the only
    kind of access token the gateway can verify, and so exchange. Opaque tokens (checked
    by introspection, say) cannot be exchanged."""
    parts = token.split(".")
    if len(parts) != 3 or not parts[0] or not parts[1]:
        return False
    return all(_BASE64URL.fullmatch(part) for part in parts if part)


def exchange_identity(
    arguments: Mapping[str, Any], ctx: Context[Any, Any] | None, policy: IdentityPolicy, token: AccessToken
) -> str | None:
    """The checks for a call whose user the gateway proves from ``token`` (token exchange).

    The gateway, not this function, decides who the user is. What is checked here is
    that nothing in the call contradicts the token: a configured trusted header must be
    present and name the token's email, and an email argument must match it (the
    argument never chooses the account, whatever ``allow_email_argument`` says).

    Returns:
        The token's email claim (``policy.email_claim``), unless it is missing or marked
        unverified; only for consistency checks and for reading the user's grants.

    Raises:
        IdentityError: A configured header is missing, ambiguous or names someone else;
            an argument names someone else, or cannot be checked because the token has
            no verified email claim.
    """
    claims = token.claims or {}
    claimed = None if _unverified(claims) else _clean(claims.get(policy.email_claim))
    if policy.trusted_header is not None:
        from_header = _trusted_header_email(policy.trusted_header, _request_headers(ctx))
        if claimed is None:
            raise IdentityError(
                f"The signed-in identity carries no verified {policy.email_claim!r} claim to check the "
                f"{policy.trusted_header} header against, so the call is refused."
            )
        if not _same(from_header, claimed):
            raise IdentityError(f"The signed-in identity and the {policy.trusted_header} header name different users.")
    argument = _clean(arguments.get(policy.email_argument)) if policy.email_argument else None
    if argument is not None and (claimed is None or not _same(argument, claimed)):
        raise IdentityError(
            f"{policy.email_argument} does not match the user making this request, so the call "
            "is refused. Omit it or pass the user's own address."
        )
    return claimed

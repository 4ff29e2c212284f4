"""Working out which user is calling a tool.

In order of precedence:

1. The MCP server's own OAuth identity, when the server uses MCP authorization: the
   email claim of the access token the MCP client presented (``get_access_token()``).
   It is authoritative: a ``user_email`` argument that disagrees is refused.
2. The tool's ``user_email`` argument (name configurable).
3. Only when configured: a header set by a trusted front proxy (e.g. ``X-User-Email``).
   When both an argument and the header are present they must agree.

The argument comes from the model, so a server that needs real identity assurance should
use MCP authorization (1) or a trusted proxy header (3).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from mcp.server.auth.middleware.auth_context import get_access_token
from mcp.server.mcpserver import Context
from mcp.server.mcpserver.exceptions import ToolError

__all__ = ["IdentityError", "IdentityPolicy", "resolve_user_email"]


class IdentityError(ToolError):
    """The calling user's email could not be determined, or sources disagree."""


@dataclass(frozen=True)
class IdentityPolicy:
    """Where :func:`resolve_user_email` looks.

    Attributes:
        email_argument: Name of the tool argument holding the email (``None``: never
            read an argument).
        email_claim: The access-token claim holding the email.
        trusted_header: Header set by a trusted proxy; ``None`` (default) disables it.
    """

    email_argument: str | None = "user_email"
    email_claim: str = "email"
    trusted_header: str | None = None


def _clean(value: object) -> str | None:
    if isinstance(value, str):
        value = value.strip()
        return value or None
    return None


def _same(a: str, b: str) -> bool:
    return a.casefold() == b.casefold()


def _header(headers: Mapping[str, str] | None, name: str) -> str | None:
    if not headers:
        return None
    wanted = name.lower()
    for key, value in headers.items():
        if key.lower() == wanted:
            return _clean(value)
    return None


def _request_headers(ctx: Context[Any, Any] | None) -> Mapping[str, str] | None:
    if ctx is None:
        return None
    try:
        return ctx.headers
    except ValueError:  # a Context built outside a request
        return None


def email_from_oauth_identity(policy: IdentityPolicy) -> tuple[bool, str | None]:
    """Return ``(server_uses_oauth, email)`` from the MCP request's access token."""
    token = get_access_token()
    if token is None:
        return False, None
    claims = token.claims or {}
    if claims.get("email_verified") is False:
        raise IdentityError("The signed-in identity's email address is not verified.")
    return True, _clean(claims.get(policy.email_claim))


def resolve_user_email(arguments: Mapping[str, Any], ctx: Context[Any, Any] | None, policy: IdentityPolicy) -> str:
    """Return the calling user's email.

    Args:
        arguments: The tool's keyword arguments.
        ctx: The MCP request context (for headers), if any.
        policy: Where to look.

    Raises:
        IdentityError: No source gave an email, or two sources disagree.
    """
    argument = _clean(arguments.get(policy.email_argument)) if policy.email_argument else None
    uses_oauth, claimed = email_from_oauth_identity(policy)
    if uses_oauth:
        if claimed is None:
            raise IdentityError(
                f"The signed-in identity carries no {policy.email_claim!r} claim, so the user's "
                "account cannot be chosen."
            )
        if argument is not None and not _same(argument, claimed):
            raise IdentityError(
                f"{policy.email_argument} does not match the signed-in user; omit it or pass "
                "the signed-in user's own address."
            )
        return claimed
    header = _header(_request_headers(ctx), policy.trusted_header) if policy.trusted_header else None
    if argument is not None:
        if header is not None and not _same(argument, header):
            raise IdentityError(f"{policy.email_argument} does not match the authenticated user.")
        return argument
    if header is not None:
        return header
    hint = f" Pass the user's email address as {policy.email_argument!r}." if policy.email_argument else ""
    raise IdentityError(f"Cannot tell which user is calling this tool.{hint}")

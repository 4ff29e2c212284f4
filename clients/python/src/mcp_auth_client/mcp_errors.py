"""The MCP-facing "please sign in" error.

In the 2.x MCP SDK only the text of a ``ToolError`` reaches the model (any other
exception becomes a generic "Error executing tool"), so the exception that carries the
sign-in link subclasses ``ToolError``. This module imports the MCP SDK; the core client
does not.
"""

from __future__ import annotations

from collections.abc import Sequence

from mcp.server.mcpserver.exceptions import ToolError

__all__ = ["AuthRequiredException"]


class AuthRequiredException(ToolError):
    """The user must open ``auth_url`` to connect their account, then retry the tool.

    Raised by :func:`~mcp_auth_client.require_auth` when the connected MCP client cannot
    show a URL elicitation (or the user did not finish in time). Its text, which the
    model reads, contains the link and tells the model to show it to the user.

    Attributes:
        auth_url: The gateway's ``/connect/<id>`` link (a one-time link for this user;
            it is not a credential of the MCP server).
        provider: The provider to connect (``"google"``, ...).
        session_id: The gateway session, for ``AuthClient.get_status``.
        reason: Why sign-in is needed: ``"not_authenticated"``, ``"refresh_failed"``,
            ``"scope_insufficient"``, ``"declined"``, ``"timeout"``, ``"failed"``.
        missing_scopes: For ``scope_insufficient``, the scopes to grant.
    """

    def __init__(
        self,
        auth_url: str,
        provider: str | None = None,
        session_id: str | None = None,
        *,
        reason: str | None = None,
        missing_scopes: Sequence[str] | None = None,
        message: str | None = None,
    ) -> None:
        self.auth_url = auth_url
        self.provider = provider
        self.session_id = session_id
        self.reason = reason
        self.missing_scopes: list[str] = list(missing_scopes or [])
        super().__init__(message or self.default_message())

    def default_message(self) -> str:
        """The text the model sees: what happened, the link, and what to do next."""
        account = f"{self.provider} account" if self.provider else "account"
        if self.reason == "scope_insufficient" and self.missing_scopes:
            why = f"This tool needs more permissions on the user's {account} ({', '.join(self.missing_scopes)})."
        elif self.reason == "refresh_failed":
            why = f"The user's {account} connection has expired or was revoked and must be renewed."
        elif self.reason == "declined":
            why = f"The user did not accept the request to connect their {account}."
        elif self.reason == "timeout":
            why = f"The user has not finished connecting their {account} yet."
        elif self.reason == "failed":
            why = f"The last attempt to connect the user's {account} did not succeed."
        else:
            why = f"The user has not connected their {account} yet."
        return (
            f"Authorization required. {why} Show the user this link and ask them to open it "
            f"in a browser to sign in: {self.auth_url} . Once they have finished, call this tool again."
        )

    def __repr__(self) -> str:
        return (
            f"AuthRequiredException(auth_url={self.auth_url!r}, provider={self.provider!r}, "
            f"session_id={self.session_id!r}, reason={self.reason!r})"
        )

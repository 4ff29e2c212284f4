"""A small "mail" MCP server whose tools use the user's OAuth token from the gateway.

Everything OAuth is in the two decorator lines: no client secrets, no token storage, no
callback route. Run it against a gateway (and the mock provider) with:

    AUTH_GATEWAY_URL=http://127.0.0.1:8000 AUTH_GATEWAY_API_KEY=... \
    MAIL_API_URL=http://127.0.0.1:9000/api/me python examples/mail_server.py

and point an MCP client at http://127.0.0.1:8001/mcp, sending the header
``X-User-Email: <the user's address>``.

Who the user is comes from that header, never from a tool argument the model writes.
The server trusts it because it is meant to sit behind an authenticating proxy that
sets the header (replacing any copy the client sent) and because it listens on
127.0.0.1 only, so nothing but that proxy reaches it. A request without the header is
refused. ``MCP_TRUSTED_EMAIL_HEADER`` names another header (``X-Forwarded-Email`` for
oauth2-proxy, for example). A server run with MCP authorization (``MCPServer(auth=...,
token_verifier=...)``) needs no header: ``require_auth`` then exchanges the user's access
token at the gateway, which proves the user itself (see the gateway's docs/token-exchange.md).
"""

from __future__ import annotations

import os
from typing import Any

import httpx
from mcp.server import MCPServer
from mcp.server.mcpserver.exceptions import ToolError

from mcp_auth_client import AuthClient, require_auth

PROVIDER = os.environ.get("MAIL_PROVIDER", "mock")
MAIL_API_URL = os.environ.get("MAIL_API_URL", "http://127.0.0.1:9000/api/me")
#: The header the proxy in front of this server sets to the signed-in user's email.
EMAIL_HEADER = os.environ.get("MCP_TRUSTED_EMAIL_HEADER", "X-User-Email")

auth = AuthClient(os.environ["AUTH_GATEWAY_URL"], os.environ["AUTH_GATEWAY_API_KEY"])
mcp = MCPServer("mail")


async def _mailbox(access_token: str) -> dict[str, Any]:
    """Call the provider's protected API with the user's token."""
    async with httpx.AsyncClient(timeout=10) as http:
        response = await http.get(MAIL_API_URL, headers={"Authorization": f"Bearer {access_token}"})
    if response.status_code != 200:
        raise ToolError(f"The mail API answered HTTP {response.status_code}")
    mailbox: dict[str, Any] = response.json()
    return mailbox


@mcp.tool()
@require_auth(auth, provider=PROVIDER, scopes=["mail.read"], trusted_email_header=EMAIL_HEADER)
async def list_messages(*, access_token: str) -> dict[str, Any]:
    """List the messages in the user's mailbox."""
    mailbox = await _mailbox(access_token)
    return {"owner": mailbox["email"], "messages": mailbox["messages"]}


@mcp.tool()
@require_auth(auth, provider=PROVIDER, scopes=["mail.send"], trusted_email_header=EMAIL_HEADER)
async def send_email(to: str, subject: str, *, access_token: str) -> dict[str, Any]:
    """Send an email from the user's mailbox."""
    mailbox = await _mailbox(access_token)
    # The mock provider has no send endpoint: show what the API says the token may do.
    return {"from": mailbox["email"], "to": to, "subject": subject, "granted": mailbox["scopes"]}


if __name__ == "__main__":
    mcp.run(
        "streamable-http",
        host=os.environ.get("MCP_HOST", "127.0.0.1"),
        port=int(os.environ.get("MCP_PORT", "8001")),
    )

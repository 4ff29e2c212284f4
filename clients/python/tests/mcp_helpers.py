"""MCP-side helpers for the tests: a real ``mcp.Client`` over HTTP, a user who answers URL
elicitations (opening the link with :mod:`tests.browser`), and an in-process server
runner."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import anyio
import httpx2
import mcp_types as types
import uvicorn
from mcp import Client
from mcp.client.session import ClientRequestContext, ElicitationFnT, IncomingMessage
from mcp.client.streamable_http import streamable_http_client
from starlette.applications import Starlette

from tests.browser import open_in_browser
from tests.stack import free_port

LINK = re.compile(r"https?://[^\s]+/connect/[^\s]+")


#: The header a trusted proxy sets to the user's email (what examples/mail_server.py reads).
EMAIL_HEADER = "X-User-Email"


def as_user(email: str) -> dict[str, str]:
    """Request headers of a user whom the proxy in front of the MCP server signed in."""
    return {EMAIL_HEADER: email}


def link_in(text: str) -> str:
    """The gateway connect link in a tool's error text (fails the test if absent)."""
    match = LINK.search(text)
    assert match is not None, f"no connect link in: {text!r}"
    return match.group(0)


def text_of(result: types.CallToolResult) -> str:
    """All text content of a tool result."""
    return "\n".join(block.text for block in result.content if isinstance(block, types.TextContent))


@dataclass
class ElicitingUser:
    """An MCP client-side user who answers URL elicitations.

    ``action="accept"`` opens the link in the "browser" first (completing the consent),
    then accepts; ``"decline"``/``"cancel"`` answer without opening it.
    """

    action: str = "accept"
    opener: Callable[[str], Awaitable[object]] = open_in_browser
    requests: list[types.ElicitRequestParams] = field(default_factory=list)

    async def __call__(
        self, context: ClientRequestContext, params: types.ElicitRequestParams
    ) -> types.ElicitResult | types.ErrorData:
        self.requests.append(params)
        if not isinstance(params, types.ElicitRequestURLParams):
            return types.ErrorData(code=types.INVALID_REQUEST, message="only URL elicitations expected")
        if self.action == "accept":
            await self.opener(params.url)
            return types.ElicitResult(action="accept")
        return types.ElicitResult(action="decline" if self.action == "decline" else "cancel")


@dataclass
class Notifications:
    """Collects server notifications the client receives."""

    received: list[Any] = field(default_factory=list)

    async def __call__(self, message: IncomingMessage) -> None:
        self.received.append(message)

    def elicitation_completions(self) -> list[str]:
        return [m.params.elicitation_id for m in self.received if isinstance(m, types.ElicitCompleteNotification)]


@asynccontextmanager
async def mcp_client(
    url: str,
    *,
    mode: str,
    elicitation: ElicitationFnT | None = None,
    headers: Mapping[str, str] | None = None,
    notifications: Notifications | None = None,
) -> AsyncIterator[Client]:
    """A connected MCP SDK client over streamable HTTP.

    ``mode="legacy"`` negotiates 2025-11-25 through ``initialize``; ``mode="2026-07-28"``
    speaks the stateless 2026-07-28 protocol.
    """
    async with httpx2.AsyncClient(headers=dict(headers or {}), timeout=httpx2.Timeout(30.0, read=300.0)) as http:
        client = Client(
            streamable_http_client(url, http_client=http),
            mode=mode,
            elicitation_callback=elicitation,
            message_handler=notifications,
            read_timeout_seconds=120.0,
        )
        async with client:
            yield client


@asynccontextmanager
async def serve(app: Starlette) -> AsyncIterator[str]:
    """Serve an ASGI app on a free loopback port for the duration of the block."""
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    async with anyio.create_task_group() as tg:
        tg.start_soon(server.serve)
        with anyio.fail_after(20):
            while not server.started:  # uvicorn offers no start-up event to wait on
                await anyio.sleep(0.02)
        try:
            yield f"http://127.0.0.1:{port}/mcp"
        finally:
            server.should_exit = True

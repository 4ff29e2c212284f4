"""Receiving the gateway's webhooks: forget what an MCP server cached for a user as soon
as the user's grant is revoked or needs a new consent.

An MCP server often keeps things per user that it got with the user's token: a mailbox
listing, the user's profile, a "connected" flag. When the grant goes away (the user or
an operator revoked it, the provider stopped accepting it), ``get_token`` would say so
on the next tool call, but what was cached would still be served until it expires. The
gateway's ``credential.revoked`` and ``credential.needs_reauth`` webhooks close that gap:
this receiver verifies each delivery (Standard Webhooks signature, timestamp within five
minutes), drops the user's entries from the cache and answers ``204`` at once. A
delivery it cannot verify gets ``400`` and changes nothing.

The cache lives in the MCP server's memory, so the route belongs in the same process:

    cache = UserCache()
    receiver = WebhookReceiver(WebhookVerifier(os.environ["GATEWAY_WEBHOOK_SECRET"]), cache)
    mcp.custom_route(WEBHOOK_PATH, methods=["POST"])(receiver.endpoint)

(``MCPServer.custom_route``: the route is served next to ``/mcp`` and is not behind the
MCP server's authorization; the signature is its authentication.) Standing alone, for a
try-out:

    GATEWAY_WEBHOOK_SECRET=whsec_... python examples/webhook_receiver.py    # 127.0.0.1:8002
    gateway webhooks add http://127.0.0.1:8002/webhooks/gateway \\
        --events credential.revoked,credential.needs_reauth
    gateway webhooks test <the id it printed>

``gateway webhooks add`` prints the subscription's id and, on the next line, its
``whsec_`` secret (once). Deliveries are at least once: a retry carries the same
``webhook-id``, which the receiver remembers so it acts on each event once.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections import OrderedDict
from collections.abc import Hashable

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from mcp_auth_client import InvalidWebhook, WebhookEvent, WebhookVerifier
from mcp_auth_client.webhooks import CREDENTIAL_NEEDS_REAUTH, CREDENTIAL_REVOKED

logger = logging.getLogger("webhook_receiver")

#: Where the gateway delivers (the URL given to ``gateway webhooks add``).
WEBHOOK_PATH = "/webhooks/gateway"
#: The events that end a user's grant: what was derived from it must go.
INVALIDATING_EVENTS = frozenset({CREDENTIAL_REVOKED, CREDENTIAL_NEEDS_REAUTH})
#: The gateway's bodies are a few hundred bytes; anything far larger is refused unread.
MAX_BODY_BYTES = 64 * 1024


class UserCache:
    """What the MCP server keeps per (provider, user): values with a time to live.

    The TTL is the fallback for an event that never arrives (a receiver down for longer
    than the gateway retries); the webhook is what makes a revocation take effect at once.
    Thread-safe, so tools run in worker threads may use it too.
    """

    def __init__(self, ttl: float = 3600.0) -> None:
        self.ttl = ttl
        self._lock = threading.Lock()
        self._entries: dict[tuple[str, str], dict[Hashable, tuple[float, object]]] = {}

    @staticmethod
    def _user(provider: str, user_email: str) -> tuple[str, str]:
        return provider, user_email.strip().lower()

    def put(self, provider: str, user_email: str, key: Hashable, value: object) -> None:
        with self._lock:
            entries = self._entries.setdefault(self._user(provider, user_email), {})
            entries[key] = (time.monotonic() + self.ttl, value)

    def get(self, provider: str, user_email: str, key: Hashable) -> object | None:
        with self._lock:
            entries = self._entries.get(self._user(provider, user_email), {})
            found = entries.get(key)
            if found is None:
                return None
            expires, value = found
            if expires <= time.monotonic():
                del entries[key]
                return None
            return value

    def invalidate(self, provider: str, user_email: str) -> int:
        """Forget everything cached for the user at ``provider``; return how many entries."""
        with self._lock:
            return len(self._entries.pop(self._user(provider, user_email), {}))


class WebhookReceiver:
    """The delivery endpoint: verify, deduplicate, invalidate, answer.

    ``endpoint`` is a Starlette endpoint (``Route(WEBHOOK_PATH, receiver.endpoint,
    methods=["POST"])``, or ``MCPServer.custom_route``). Acting on an event is kept to
    in-memory work so the gateway gets its 2xx in milliseconds; anything slow belongs in
    a background task started from :meth:`handle`.
    """

    def __init__(self, verifier: WebhookVerifier, cache: UserCache, *, remember: int = 10_000) -> None:
        self.verifier = verifier
        self.cache = cache
        self._remember = remember
        self._seen: OrderedDict[str, None] = OrderedDict()
        self._lock = threading.Lock()
        #: Events acted on, oldest first (for inspection; bounded like the seen ids).
        self.events: list[WebhookEvent] = []

    async def endpoint(self, request: Request) -> Response:
        declared = request.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > MAX_BODY_BYTES:
            return JSONResponse({"error": "payload_too_large"}, status_code=413)
        body = bytearray()
        async for chunk in request.stream():
            body += chunk
            if len(body) > MAX_BODY_BYTES:
                return JSONResponse({"error": "payload_too_large"}, status_code=413)
        try:
            event = self.verifier.verify(request.headers, bytes(body))
        except InvalidWebhook as invalid:
            # Never log the body or the headers: the reason and the id are enough.
            logger.warning("refused a webhook delivery (%s, id %s)", invalid.reason, invalid.webhook_id)
            return JSONResponse({"error": invalid.reason}, status_code=400)
        with self._lock:
            if event.id in self._seen:
                return Response(status_code=204)  # a retry of an event already handled
        self.handle(event)
        with self._lock:
            self._seen[event.id] = None
            while len(self._seen) > self._remember:
                self._seen.popitem(last=False)
        return Response(status_code=204)

    def handle(self, event: WebhookEvent) -> None:
        """Act on a verified event. An exception here answers 500, and the gateway retries."""
        if event.type in INVALIDATING_EVENTS and event.provider and event.user_email:
            dropped = self.cache.invalidate(event.provider, event.user_email)
            logger.info("%s: dropped %d cached entries of a user at %s", event.type, dropped, event.provider)
        else:
            logger.info("webhook %s (%s): nothing to do", event.type, event.id)
        with self._lock:
            self.events.append(event)
            del self.events[: -self._remember]


def create_app(receiver: WebhookReceiver) -> Starlette:
    """A standalone ASGI app serving ``POST WEBHOOK_PATH``."""
    return Starlette(routes=[Route(WEBHOOK_PATH, receiver.endpoint, methods=["POST"])])


if __name__ == "__main__":
    import uvicorn

    logging.basicConfig(level=logging.INFO)
    # Fails here, at start-up, when the secret is not a whsec_ secret.
    webhook_receiver = WebhookReceiver(WebhookVerifier(os.environ["GATEWAY_WEBHOOK_SECRET"]), UserCache())
    uvicorn.run(
        create_app(webhook_receiver),
        host=os.environ.get("WEBHOOK_HOST", "127.0.0.1"),
        port=int(os.environ.get("WEBHOOK_PORT", "8002")),
    )

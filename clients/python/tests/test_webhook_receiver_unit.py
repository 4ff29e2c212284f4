"""The example webhook receiver (examples/webhook_receiver.py) in process, through
httpx's ASGI transport: what it answers, what it invalidates, and what it refuses.
(tests/test_e2e_webhooks.py runs it over real HTTP against the real gateway.)"""

from __future__ import annotations

import base64
import json
import logging
import os
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from examples.webhook_receiver import (
    MAX_BODY_BYTES,
    WEBHOOK_PATH,
    UserCache,
    WebhookReceiver,
    create_app,
)
from mcp_auth_client import WebhookVerifier
from mcp_auth_client.webhooks import sign_webhook

pytestmark = pytest.mark.anyio

SECRET = "whsec_" + base64.b64encode(os.urandom(32)).decode()
ANN = "ann@example.com"
BOB = "bob@example.com"


def signed(event_type: str, data: dict[str, Any], *, msg_id: str | None = None, secret: str = SECRET) -> dict[str, Any]:
    """Keyword arguments for ``http.post``: a delivery as the gateway sends it."""
    body = json.dumps({"type": event_type, "timestamp": "2025-12-01T00:00:00.000Z", "data": data}).encode()
    msg_id = msg_id or str(uuid.uuid4())
    now = int(time.time())
    headers = {
        "webhook-id": msg_id,
        "webhook-timestamp": str(now),
        "webhook-signature": sign_webhook(secret, msg_id, now, body),
        "content-type": "application/json",
    }
    return {"content": body, "headers": headers}


@pytest.fixture
def cache() -> UserCache:
    cache = UserCache()
    for user in (ANN, BOB):
        cache.put("mock", user, "mailbox", {"owner": user})
        cache.put("other", user, "mailbox", {"owner": user})
    return cache


@pytest.fixture
def receiver(cache: UserCache) -> WebhookReceiver:
    return WebhookReceiver(WebhookVerifier(SECRET), cache)


@pytest.fixture
async def http(receiver: WebhookReceiver) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=create_app(receiver))
    async with httpx.AsyncClient(transport=transport, base_url="http://receiver.test") as client:
        yield client


@pytest.mark.parametrize("event_type", ["credential.revoked", "credential.needs_reauth"])
async def test_revoked_or_needs_reauth_drops_that_users_entries_only(
    http: httpx.AsyncClient, cache: UserCache, receiver: WebhookReceiver, event_type: str
) -> None:
    response = await http.post(WEBHOOK_PATH, **signed(event_type, {"provider": "mock", "user_email": ANN}))
    assert response.status_code == 204
    assert cache.get("mock", ANN, "mailbox") is None
    # Another provider's grant of the same user, and other users, are untouched.
    assert cache.get("other", ANN, "mailbox") == {"owner": ANN}
    assert cache.get("mock", BOB, "mailbox") == {"owner": BOB}
    assert [e.type for e in receiver.events] == [event_type]


async def test_other_events_are_acknowledged_and_change_nothing(
    http: httpx.AsyncClient, cache: UserCache, receiver: WebhookReceiver
) -> None:
    events: list[tuple[str, dict[str, Any]]] = [
        ("credential.connected", {"provider": "mock", "user_email": ANN, "scopes": ["mail.read"]}),
        ("credential.refreshed", {"provider": "mock", "user_email": ANN, "expires_at": None}),
        ("provider.failing", {"provider": "mock", "category": "invalid_client"}),
        ("webhook.test", {"webhook_id": str(uuid.uuid4())}),
        ("something.new", {"provider": "mock", "user_email": ANN}),
    ]
    for event_type, data in events:
        assert (await http.post(WEBHOOK_PATH, **signed(event_type, data))).status_code == 204
    assert cache.get("mock", ANN, "mailbox") == {"owner": ANN}
    assert len(receiver.events) == 5


async def test_a_retried_event_is_acted_on_once(
    http: httpx.AsyncClient, cache: UserCache, receiver: WebhookReceiver
) -> None:
    msg_id = str(uuid.uuid4())
    first = signed("credential.revoked", {"provider": "mock", "user_email": ANN}, msg_id=msg_id)
    assert (await http.post(WEBHOOK_PATH, **first)).status_code == 204
    cache.put("mock", ANN, "mailbox", {"owner": ANN, "fresh": True})  # re-filled after a new consent
    again = signed("credential.revoked", {"provider": "mock", "user_email": ANN}, msg_id=msg_id)
    assert (await http.post(WEBHOOK_PATH, **again)).status_code == 204
    assert cache.get("mock", ANN, "mailbox") == {"owner": ANN, "fresh": True}
    assert len(receiver.events) == 1


async def test_unverifiable_deliveries_get_400_and_change_nothing(
    http: httpx.AsyncClient, cache: UserCache, receiver: WebhookReceiver, caplog: pytest.LogCaptureFixture
) -> None:
    data = {"provider": "mock", "user_email": ANN}
    forged = signed("credential.revoked", data, secret="whsec_" + base64.b64encode(os.urandom(32)).decode())
    tampered = signed("credential.revoked", {"provider": "mock", "user_email": BOB})
    tampered["content"] = tampered["content"].replace(BOB.encode(), ANN.encode())
    stale = signed("credential.revoked", data)
    stamp = int(time.time()) - 3600
    stale["headers"]["webhook-timestamp"] = str(stamp)
    stale["headers"]["webhook-signature"] = sign_webhook(
        SECRET, stale["headers"]["webhook-id"], stamp, stale["content"]
    )
    unsigned = signed("credential.revoked", data)
    del unsigned["headers"]["webhook-signature"]

    with caplog.at_level(logging.WARNING, logger="webhook_receiver"):
        for request, reason in [
            (forged, "signature_mismatch"),
            (tampered, "signature_mismatch"),
            (stale, "timestamp_too_old"),
            (unsigned, "missing_header"),
        ]:
            response = await http.post(WEBHOOK_PATH, **request)
            assert response.status_code == 400
            assert response.json() == {"error": reason}
    assert cache.get("mock", ANN, "mailbox") == {"owner": ANN}
    assert receiver.events == []
    assert SECRET.removeprefix("whsec_") not in caplog.text
    assert ANN not in caplog.text  # neither body nor headers are logged


async def test_oversized_bodies_and_other_methods_are_refused(http: httpx.AsyncClient, cache: UserCache) -> None:
    big = signed("credential.revoked", {"provider": "mock", "user_email": ANN, "pad": "x" * MAX_BODY_BYTES})
    assert (await http.post(WEBHOOK_PATH, **big)).status_code == 413

    async def chunks() -> AsyncIterator[bytes]:  # no content-length: counted while read
        for _ in range(MAX_BODY_BYTES // 1024 + 2):
            yield b"x" * 1024

    streamed = await http.post(WEBHOOK_PATH, content=chunks(), headers=signed("webhook.test", {})["headers"])
    assert streamed.status_code == 413
    assert (await http.get(WEBHOOK_PATH)).status_code == 405
    assert cache.get("mock", ANN, "mailbox") == {"owner": ANN}


def test_the_cache_expires_and_normalises_emails() -> None:
    cache = UserCache(ttl=0.0)
    cache.put("mock", ANN, "k", 1)
    assert cache.get("mock", ANN, "k") is None
    cache = UserCache()
    cache.put("mock", "Ann@Example.com", "k", 1)
    assert cache.get("mock", ANN, "k") == 1
    assert cache.invalidate("mock", " ANN@example.com ") == 1
    assert cache.invalidate("mock", ANN) == 0

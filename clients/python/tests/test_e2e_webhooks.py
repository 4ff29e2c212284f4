"""Webhooks from the real gateway: subscribed with its CLI, delivered by its
``webhook_delivery`` job to real HTTP receivers on 127.0.0.1, verified with this
package's verifier and with the reference ``standardwebhooks`` package.

The gateway here is this module's own (so other tests' users do not reach these
receivers), delivering every second with immediate retries
(``JOB_WEBHOOK_DELIVERY_SCHEDULE="*/1 * * * * *"``, ``WEBHOOK_RETRY_SCHEDULE_SECONDS=0,0``:
three attempts, then a dead letter). Every wait is bounded; the receivers signal each
delivery through a condition variable."""

from __future__ import annotations

import base64
import json
import os
import time
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import anyio
import pytest
import standardwebhooks

from examples.webhook_receiver import WEBHOOK_PATH, UserCache, WebhookReceiver, create_app
from mcp_auth_client import AuthClient, InvalidWebhook, RefreshFailed, WebhookEvent, WebhookVerifier, verify_webhook
from mcp_auth_client.webhooks import (
    CREDENTIAL_CONNECTED,
    CREDENTIAL_NEEDS_REAUTH,
    CREDENTIAL_REVOKED,
    SESSION_FAILED,
    WEBHOOK_TEST,
)
from tests.browser import open_in_browser, visit
from tests.stack import Gateway, MockProvider, Processes
from tests.webhook_helpers import DELIVERY_TIMEOUT, Delivery, RecordingReceiver, serve_asgi, subscription

pytestmark = [pytest.mark.anyio, pytest.mark.e2e]

FAST_DELIVERY = {
    "JOB_WEBHOOK_DELIVERY_SCHEDULE": "*/1 * * * * *",
    "WEBHOOK_RETRY_SCHEDULE_SECONDS": "0,0",
}
#: With the schedule above: the first attempt and two retries.
ATTEMPTS = 3


@pytest.fixture(scope="module")
def webhook_gateway(
    built: tuple[Path, Path], mock_provider: MockProvider, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Gateway]:
    processes = Processes(built, tmp_path_factory.mktemp("webhooks"))
    try:
        yield processes.gateway(mock_provider, **FAST_DELIVERY)
    finally:
        processes.stop_all()


@pytest.fixture
async def wauth(webhook_gateway: Gateway) -> AsyncIterator[AuthClient]:
    async with AuthClient(webhook_gateway.url, webhook_gateway.api_key, timeout=15.0) as client:
        yield client


def new_secret() -> str:
    return "whsec_" + base64.b64encode(os.urandom(32)).decode()


async def sign_in(auth: AuthClient, user: str) -> None:
    session = await auth.init_oauth("mock", user)
    await open_in_browser(session.auth_url)
    assert (await auth.wait_for_completion(session.session_id, timeout=10)).is_completed


def about(user: str, *types: str) -> Callable[[Delivery], bool]:
    """Deliveries of the given event types about ``user``."""

    def matches(delivery: Delivery) -> bool:
        payload = json.loads(delivery.body)
        return bool(payload["type"] in types and payload["data"].get("user_email") == user)

    return matches


def wait_for_types(receiver: RecordingReceiver, user: str, *types: str) -> dict[str, Delivery]:
    """The first delivery of each type about ``user``, once all have arrived (bounded)."""

    def first_of_each(deliveries: list[Delivery]) -> dict[str, Delivery]:
        found: dict[str, Delivery] = {}
        for d in deliveries:
            kind = json.loads(d.body)["type"]
            if about(user, *types)(d) and d.answered < 300:
                found.setdefault(kind, d)
        return found

    deliveries = receiver.wait_for(lambda ds: len(first_of_each(ds)) == len(types), what=f"{types} for {user}")
    return first_of_each(deliveries)


def verify_both(secret: str, delivery: Delivery) -> WebhookEvent:
    """Verify with this package and with the reference implementation; they must agree."""
    event = verify_webhook(secret, delivery.headers, delivery.body)
    reference = standardwebhooks.Webhook(secret).verify(delivery.body, delivery.headers)
    assert reference == json.loads(delivery.body)
    assert event.id == delivery.webhook_id
    assert event.type == reference["type"] and dict(event.data) == reference["data"]
    return event


def first_attempt_ok(webhook_id: str, line: str) -> bool:
    """A ``webhooks deliveries`` line of subscription ``webhook_id`` delivered at once."""
    return webhook_id in line and " delivered " in line and "attempts=1 " in line


def deliveries_listing(gateway: Gateway, *args: str) -> list[str]:
    return gateway.cli("webhooks", "deliveries", *args).splitlines()


def wait_for_listing(gateway: Gateway, predicate: Callable[[list[str]], bool], *args: str) -> list[str]:
    """Poll ``gateway webhooks deliveries ARGS`` until ``predicate`` holds (bounded)."""
    deadline = time.monotonic() + DELIVERY_TIMEOUT
    while True:
        lines = deliveries_listing(gateway, *args)
        if predicate(lines):
            return lines
        if time.monotonic() > deadline:
            raise AssertionError(f"`webhooks deliveries {' '.join(args)}` never matched:\n" + "\n".join(lines))
        time.sleep(0.2)


async def wait_until(check: Callable[[], bool], what: str, timeout: float = DELIVERY_TIMEOUT) -> None:
    with anyio.fail_after(timeout):
        while not check():
            await anyio.sleep(0.05)


# --- raw deliveries ------------------------------------------------------------------------


async def test_grant_events_arrive_signed_and_verify_with_both_verifiers(
    webhook_gateway: Gateway, wauth: AuthClient, mock: MockProvider, user: str
) -> None:
    with RecordingReceiver() as receiver, subscription(webhook_gateway, receiver.url) as sub:
        listed = webhook_gateway.cli("webhooks", "list")
        assert sub.id in listed and receiver.url in listed
        assert sub.secret not in listed  # shown once, at creation

        await sign_in(wauth, user)
        token = await wauth.get_token_info("mock", user)
        revoked = await wauth.revoke("mock", user)
        assert revoked.success

        found = wait_for_types(receiver, user, CREDENTIAL_CONNECTED, CREDENTIAL_REVOKED)
        connected = verify_both(sub.secret, found[CREDENTIAL_CONNECTED])
        gone = verify_both(sub.secret, found[CREDENTIAL_REVOKED])

    assert connected.data["provider"] == "mock" and connected.user_email == user
    assert "mail.read" in connected.data["scopes"]
    assert gone.provider == "mock" and gone.user_email == user
    assert gone.data["provider_revocation"] == revoked.provider_revocation == "revoked"
    assert connected.id != gone.id
    assert connected.timestamp <= gone.timestamp
    for delivery in found.values():
        headers = delivery.headers
        assert headers["content-type"] == "application/json"
        assert headers["webhook-signature"].startswith("v1,")
        assert abs(int(headers["webhook-timestamp"]) - time.time()) < 60
        # Never a token in a payload.
        assert token.access_token not in delivery.body.decode()
        assert "token" not in json.dumps(json.loads(delivery.body)["data"]).replace("provider_revocation", "")
        # Signed with this subscription's secret only: another secret does not verify.
        with pytest.raises(InvalidWebhook, match="signature"):
            verify_webhook(new_secret(), headers, delivery.body)
        with pytest.raises(standardwebhooks.WebhookVerificationError):
            standardwebhooks.Webhook(new_secret()).verify(delivery.body, headers)

    # Both answered 2xx at the first attempt, as the gateway records it.
    wait_for_listing(webhook_gateway, lambda ls: sum(first_attempt_ok(sub.id, line) for line in ls) >= 2)


async def test_session_failures_and_test_pings_verify(
    webhook_gateway: Gateway, wauth: AuthClient, mock: MockProvider, user: str
) -> None:
    secret = new_secret()
    with (
        RecordingReceiver() as receiver,
        subscription(webhook_gateway, receiver.url, events=[SESSION_FAILED], secret=secret) as sub,
    ):
        assert sub.secret == secret
        # A signed ping, sent by the CLI itself and answered before it returns.
        answer = webhook_gateway.cli("webhooks", "test", sub.id)
        assert "204" in answer
        ping = receiver.wait_for(lambda ds: any(json.loads(d.body)["type"] == WEBHOOK_TEST for d in ds))[-1]
        event = verify_both(secret, ping)
        assert event.data == {"webhook_id": sub.id}

        mock.admin("POST", "consent", {"mode": "deny"})
        session = await wauth.init_oauth("mock", user)
        await visit(session.auth_url)
        found = wait_for_types(receiver, user, SESSION_FAILED)
        failed = verify_both(secret, found[SESSION_FAILED])
        assert failed.data["session_id"] == session.session_id
        assert failed.data["reason"] == "access_denied"
        # Only what the subscription named: no credential events, no other users.
        assert {json.loads(d.body)["type"] for d in receiver.deliveries} <= {WEBHOOK_TEST, SESSION_FAILED}


async def test_a_failed_delivery_is_retried_with_the_same_id(
    webhook_gateway: Gateway, wauth: AuthClient, mock: MockProvider, user: str
) -> None:
    seen: set[str] = set()

    def fail_first_attempt(headers: dict[str, str], body: bytes) -> int:
        if json.loads(body)["data"].get("user_email") != user or headers["webhook-id"] in seen:
            return 204
        seen.add(headers["webhook-id"])
        return 500

    with (
        RecordingReceiver(fail_first_attempt) as receiver,
        subscription(webhook_gateway, receiver.url, events=[CREDENTIAL_CONNECTED]) as sub,
    ):
        await sign_in(wauth, user)
        attempts = receiver.wait_for(lambda ds: sum(about(user, CREDENTIAL_CONNECTED)(d) for d in ds) >= 2)
        first, second = [d for d in attempts if about(user, CREDENTIAL_CONNECTED)(d)][:2]
        assert (first.answered, second.answered) == (500, 204)
        assert first.webhook_id == second.webhook_id and first.body == second.body
        # Each attempt is signed for its own timestamp, and both verify.
        for attempt in (first, second):
            verify_both(sub.secret, attempt)
        lines = wait_for_listing(webhook_gateway, lambda ls: any(sub.id in line and "delivered" in line for line in ls))
        assert any(sub.id in line and "attempts=2" in line for line in lines), lines
    await wauth.revoke("mock", user)


async def test_a_receiver_that_keeps_failing_gets_a_dead_letter(
    webhook_gateway: Gateway, wauth: AuthClient, mock: MockProvider, user: str
) -> None:
    with (
        RecordingReceiver(lambda _h, _b: 503) as receiver,
        subscription(webhook_gateway, receiver.url, events=[CREDENTIAL_CONNECTED]) as sub,
    ):
        await sign_in(wauth, user)
        dead = wait_for_listing(webhook_gateway, lambda ls: any(sub.id in line for line in ls), "--status", "dead")
        line = next(line for line in dead if sub.id in line)
        assert CREDENTIAL_CONNECTED in line and f"attempts={ATTEMPTS}" in line, line
        attempts = [d for d in receiver.deliveries if about(user, CREDENTIAL_CONNECTED)(d)]
        assert len(attempts) == ATTEMPTS
        assert len({d.webhook_id for d in attempts}) == 1
        for attempt in attempts:
            verify_both(sub.secret, attempt)


# --- the example receiver ------------------------------------------------------------------


async def test_the_example_receiver_drops_the_users_cache_on_revocation_and_reauth(
    webhook_gateway: Gateway, wauth: AuthClient, mock: MockProvider, user: str
) -> None:
    secret = new_secret()
    cache = UserCache()
    receiver = WebhookReceiver(WebhookVerifier(secret), cache)
    bystander = f"bystander-{user}"
    with (
        serve_asgi(create_app(receiver)) as base_url,
        subscription(
            webhook_gateway,
            base_url + WEBHOOK_PATH,
            events=[CREDENTIAL_REVOKED, CREDENTIAL_NEEDS_REAUTH],
            secret=secret,
        ) as sub,
    ):
        # Revoked: what the MCP server cached for the user goes; other users' stays.
        await sign_in(wauth, user)
        cache.put("mock", user, "mailbox", {"messages": 3})
        cache.put("mock", bystander, "mailbox", {"messages": 7})
        await wauth.revoke("mock", user)
        await wait_until(lambda: cache.get("mock", user, "mailbox") is None, "the revocation to reach the cache")
        assert cache.get("mock", bystander, "mailbox") == {"messages": 7}

        # Needs re-consent (the provider refuses the refresh token): the same.
        mock.admin("POST", "settings", {"access_token_ttl_secs": 1})
        await sign_in(wauth, user)
        cache.put("mock", user, "mailbox", {"messages": 4})
        mock.admin("POST", "invalidate", {"email": user})
        with pytest.raises(RefreshFailed):
            await wauth.get_token("mock", user)
        await wait_until(lambda: cache.get("mock", user, "mailbox") is None, "the re-consent to reach the cache")
        assert cache.get("mock", bystander, "mailbox") == {"messages": 7}

        handled = [(e.type, e.user_email) for e in receiver.events]
        assert handled == [(CREDENTIAL_REVOKED, user), (CREDENTIAL_NEEDS_REAUTH, user)]
        needs = receiver.events[1]
        assert needs.provider == "mock" and isinstance(needs.data.get("category"), str)

        # Each answered 2xx at the first attempt.
        wait_for_listing(webhook_gateway, lambda ls: sum(first_attempt_ok(sub.id, line) for line in ls) >= 2)

"""The webhook verifier (mcp_auth_client.webhooks) on deliveries built here: the
specification's test vector, every refusal, and a cross-check with the reference
``standardwebhooks`` package in both directions."""

from __future__ import annotations

import base64
import email.message
import json
import os
import time
from datetime import datetime, timedelta, timezone
from typing import Any

import httpx
import pytest
import standardwebhooks

from mcp_auth_client import InvalidWebhook, InvalidWebhookSecret, WebhookEvent, WebhookVerifier, verify_webhook
from mcp_auth_client.webhooks import (
    CREDENTIAL_REVOKED,
    DEFAULT_TOLERANCE,
    EVENT_TYPES,
    sign_webhook,
)

# The Standard Webhooks specification's published example.
SPEC_SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
SPEC_ID = "msg_p5jXN8AQM9LWM0D4loKWxJek"
SPEC_TIMESTAMP = 1614265330
SPEC_BODY = '{"test": 2432232314}'
SPEC_SIGNATURE = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="

SECRET = "whsec_" + base64.b64encode(bytes(range(32))).decode()
OTHER_SECRET = "whsec_" + base64.b64encode(bytes(range(100, 132))).decode()
NOW = 1_764_547_200
MSG_ID = "0199d2c4-7f5e-7a51-8c8e-3a1b2c3d4e5f"


def body_of(event_type: str = CREDENTIAL_REVOKED, **data: Any) -> bytes:
    """A body the way the gateway writes it (compact JSON)."""
    data = data or {"provider": "google", "user_email": "ann@example.com", "provider_revocation": "revoked"}
    payload = {"type": event_type, "timestamp": "2025-12-01T00:00:00.000Z", "data": data}
    return json.dumps(payload, separators=(",", ":")).encode()


def delivery(
    body: bytes | None = None, *, secret: str = SECRET, msg_id: str = MSG_ID, timestamp: int = NOW
) -> tuple[dict[str, str], bytes]:
    """(headers, body) of a delivery signed as the gateway signs it."""
    raw = body_of() if body is None else body
    headers = {
        "webhook-id": msg_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": sign_webhook(secret, msg_id, timestamp, raw),
        "content-type": "application/json",
    }
    return headers, raw


def message_of(pairs: list[tuple[str, str]]) -> email.message.Message:
    """Headers as http.server hands them to a handler (``self.headers``): repetitions kept."""
    message = email.message.Message()
    for name, value in pairs:
        message[name] = value
    return message


def refused(headers: Any, body: bytes | str, *, secret: str = SECRET, now: float = NOW, **kw: Any) -> InvalidWebhook:
    with pytest.raises(InvalidWebhook) as caught:
        verify_webhook(secret, headers, body, now=now, **kw)
    # Whatever the failure, nothing secret or signed leaks into the exception.
    text = f"{caught.value} {caught.value!r} {caught.value.args}"
    for secret_text in (SECRET, SECRET.removeprefix("whsec_"), OTHER_SECRET.removeprefix("whsec_")):
        assert secret_text not in text
    signatures = headers.get("webhook-signature", "") if isinstance(headers, dict) else ""
    for part in signatures.split():
        encoded = part.partition(",")[2]
        assert len(encoded) < 8 or encoded not in text
    return caught.value


# --- the specification's vector ------------------------------------------------------


def test_the_specification_test_vector() -> None:
    verifier = WebhookVerifier(SPEC_SECRET)
    assert verifier.sign(SPEC_ID, SPEC_TIMESTAMP, SPEC_BODY) == SPEC_SIGNATURE
    headers = {"webhook-id": SPEC_ID, "webhook-timestamp": str(SPEC_TIMESTAMP), "webhook-signature": SPEC_SIGNATURE}
    assert verifier.verify_signature(headers, SPEC_BODY, now=SPEC_TIMESTAMP) == SPEC_ID
    assert verifier.verify_signature(headers, SPEC_BODY.encode(), now=SPEC_TIMESTAMP + DEFAULT_TOLERANCE) == SPEC_ID
    # Valid signature, but not an event body: verify() refuses what it cannot parse.
    assert refused(headers, SPEC_BODY, secret=SPEC_SECRET, now=SPEC_TIMESTAMP).reason == "invalid_payload"
    tampered = SPEC_BODY.replace("4", "5")
    with pytest.raises(InvalidWebhook) as caught:
        verifier.verify_signature(headers, tampered, now=SPEC_TIMESTAMP)
    assert caught.value.reason == "signature_mismatch"


# --- good deliveries ------------------------------------------------------------------


def test_a_good_delivery_gives_the_typed_event() -> None:
    headers, body = delivery()
    event = verify_webhook(SECRET, headers, body, now=NOW)
    assert isinstance(event, WebhookEvent)
    assert event.id == MSG_ID
    assert event.type == CREDENTIAL_REVOKED and event.type in EVENT_TYPES
    assert event.timestamp == datetime(2025, 12, 1, tzinfo=timezone.utc)
    assert event.data == {"provider": "google", "user_email": "ann@example.com", "provider_revocation": "revoked"}
    assert (event.provider, event.user_email) == ("google", "ann@example.com")
    assert event.attempted_at == NOW
    # The body may be given as text too; events are comparable and hashable (by id etc.).
    assert verify_webhook(SECRET, headers, body.decode(), now=NOW) == event
    assert len({event, verify_webhook(SECRET, headers, body, now=NOW + 1)}) == 1


def test_header_names_are_case_insensitive_whatever_the_container() -> None:
    headers, body = delivery()
    shouted = {name.upper(): value for name, value in headers.items()}
    mixed = {name.title(): value for name, value in headers.items()}
    for container in (shouted, mixed, httpx.Headers(mixed), message_of(list(mixed.items()))):
        assert verify_webhook(SECRET, container, body, now=NOW).id == MSG_ID


def test_non_ascii_bodies_are_signed_as_utf8_bytes() -> None:
    body = body_of(provider="mock", user_email="zoë@exämple.com", provider_revocation="revoked")
    headers, raw = delivery(body)
    assert verify_webhook(SECRET, headers, raw, now=NOW).user_email == "zoë@exämple.com"
    assert verify_webhook(SECRET, headers, raw.decode("utf-8"), now=NOW).user_email == "zoë@exämple.com"


def test_unknown_event_types_from_a_newer_gateway_still_verify() -> None:
    headers, body = delivery(body_of("credential.something_new", provider="mock"))
    event = verify_webhook(SECRET, headers, body, now=NOW)
    assert event.type == "credential.something_new" and event.type not in EVENT_TYPES
    assert event.user_email is None


@pytest.mark.parametrize(
    ("stamp", "expected"),
    [
        ("2025-12-01T10:20:30Z", datetime(2025, 12, 1, 10, 20, 30, tzinfo=timezone.utc)),
        ("2025-12-01T10:20:30.5Z", datetime(2025, 12, 1, 10, 20, 30, 500000, tzinfo=timezone.utc)),
        ("2025-12-01T10:20:30.123456789+00:00", datetime(2025, 12, 1, 10, 20, 30, 123456, tzinfo=timezone.utc)),
        ("2025-12-01T12:20:30+02:00", datetime(2025, 12, 1, 10, 20, 30, tzinfo=timezone.utc)),
    ],
)
def test_event_timestamps_in_rfc3339_forms(stamp: str, expected: datetime) -> None:
    raw = json.dumps({"type": "provider.recovered", "timestamp": stamp, "data": {"provider": "mock"}}).encode()
    headers, body = delivery(raw)
    assert verify_webhook(SECRET, headers, body, now=NOW).timestamp == expected


# --- refusals ----------------------------------------------------------------------------


def test_a_tampered_body_is_refused() -> None:
    headers, body = delivery()
    for tampered in (body.replace(b"ann@", b"bob@"), body + b" ", body[:-1], b""):
        assert refused(headers, tampered).reason == "signature_mismatch"


def test_tampered_id_or_timestamp_is_refused() -> None:
    headers, body = delivery()
    assert refused({**headers, "webhook-id": MSG_ID + "x"}, body).reason == "signature_mismatch"
    assert refused({**headers, "webhook-timestamp": str(NOW + 1)}, body).reason == "signature_mismatch"


def test_a_wrong_secret_is_refused() -> None:
    headers, body = delivery(secret=OTHER_SECRET)
    error = refused(headers, body)
    assert error.reason == "signature_mismatch"
    assert error.webhook_id == MSG_ID
    assert verify_webhook(OTHER_SECRET, headers, body, now=NOW).id == MSG_ID


@pytest.mark.parametrize(
    ("offset", "reason"),
    [
        (-DEFAULT_TOLERANCE - 1, "timestamp_too_old"),
        (-86_400 * 365, "timestamp_too_old"),
        (DEFAULT_TOLERANCE + 1, "timestamp_too_new"),
        (86_400, "timestamp_too_new"),
    ],
)
def test_timestamps_outside_the_tolerance_are_refused(offset: int, reason: str) -> None:
    headers, body = delivery(timestamp=NOW + offset)
    assert refused(headers, body).reason == reason


def test_the_tolerance_is_inclusive_both_ways_and_configurable() -> None:
    for offset in (-DEFAULT_TOLERANCE, 0, DEFAULT_TOLERANCE):
        headers, body = delivery(timestamp=NOW + offset)
        assert verify_webhook(SECRET, headers, body, now=NOW).attempted_at == NOW + offset
    headers, body = delivery(timestamp=NOW - 11)
    assert refused(headers, body, tolerance=10).reason == "timestamp_too_old"
    assert verify_webhook(SECRET, headers, body, now=NOW, tolerance=11).id == MSG_ID
    headers, body = delivery(timestamp=NOW + 11)
    assert refused(headers, body, tolerance=10).reason == "timestamp_too_new"
    # A fractional `now` (time.time()) is compared as is.
    headers, body = delivery(timestamp=NOW)
    assert refused(headers, body, tolerance=0, now=NOW + 0.5).reason == "timestamp_too_old"


def test_the_default_clock_is_the_real_one() -> None:
    now = int(time.time())
    headers, body = delivery(timestamp=now)
    assert verify_webhook(SECRET, headers, body).id == MSG_ID
    headers, body = delivery(timestamp=now - 3600)
    with pytest.raises(InvalidWebhook) as caught:
        verify_webhook(SECRET, headers, body)
    assert caught.value.reason == "timestamp_too_old"


@pytest.mark.parametrize("stamp", ["", " ", "abc", "1.5", "-1", "+1764547200", "1e9", "0x10", "9" * 16])
def test_malformed_timestamps_are_refused(stamp: str) -> None:
    headers, body = delivery()
    error = refused({**headers, "webhook-timestamp": stamp}, body)
    assert error.reason == ("missing_header" if not stamp.strip() else "invalid_timestamp")


def test_several_signatures_one_matching_is_enough() -> None:
    headers, body = delivery()
    good = headers["webhook-signature"]
    other = sign_webhook(OTHER_SECRET, MSG_ID, NOW, body)
    for header in (
        f"{other} {good}",
        f"{good} {other}",
        f"v1a,{good[3:]} {good}",  # another scheme is skipped
        f"v2,abc v1,!!!notbase64 {good}",
        f"  {other}   {good}  ",
    ):
        assert verify_webhook(SECRET, {**headers, "webhook-signature": header}, body, now=NOW).id == MSG_ID
    # Without ours among them, refused.
    assert refused({**headers, "webhook-signature": f"{other} {other}"}, body).reason == "signature_mismatch"
    # A signature header repeated counts as one list, whether the container keeps the
    # repetitions (http.server, Starlette) or joins them with ", " (httpx, some proxies).
    pairs = [(k, v) for k, v in headers.items() if k != "webhook-signature"]
    for first, second in ((other, good), (good, other)):
        joined = httpx.Headers([*pairs, ("webhook-signature", first), ("Webhook-Signature", second)])
        assert verify_webhook(SECRET, joined, body, now=NOW).id == MSG_ID
        assert (
            verify_webhook(
                SECRET, message_of([*pairs, ("webhook-signature", first), ("Webhook-Signature", second)]), body, now=NOW
            ).id
            == MSG_ID
        )


def test_signatures_of_another_version_or_form_are_not_v1() -> None:
    headers, body = delivery()
    signature = headers["webhook-signature"].partition(",")[2]
    for header in (f"v1a,{signature}", f"v2,{signature}", signature, f"v1:{signature}", "v1,", "v1,@@@@"):
        error = refused({**headers, "webhook-signature": header}, body)
        assert error.reason == "no_signature", header
    # A truncated v1 signature decodes, but does not match.
    assert refused({**headers, "webhook-signature": f"v1,{signature[:20]}"}, body).reason == "signature_mismatch"


def test_rotated_secrets_either_one_verifies() -> None:
    verifier = WebhookVerifier([OTHER_SECRET, SECRET])
    for secret in (SECRET, OTHER_SECRET):
        headers, body = delivery(secret=secret)
        assert verifier.verify(headers, body, now=NOW).id == MSG_ID
    # And the gateway's own rotation form: both signatures in one header.
    headers, body = delivery()
    both = f"{sign_webhook(OTHER_SECRET, MSG_ID, NOW, body)} {headers['webhook-signature']}"
    assert WebhookVerifier(SECRET).verify({**headers, "webhook-signature": both}, body, now=NOW).id == MSG_ID


@pytest.mark.parametrize("missing", ["webhook-id", "webhook-timestamp", "webhook-signature"])
def test_missing_or_empty_headers_are_refused(missing: str) -> None:
    headers, body = delivery()
    without = {k: v for k, v in headers.items() if k != missing}
    assert refused(without, body).reason == "missing_header"
    assert missing in str(refused(without, body))
    assert refused({**headers, missing: ""}, body).reason == "missing_header"
    assert refused({}, body).reason == "missing_header"


def test_conflicting_repeated_headers_are_refused() -> None:
    headers, body = delivery()
    pairs = list(headers.items())
    for name in ("webhook-id", "webhook-timestamp"):
        assert refused(message_of([*pairs, (name.upper(), "1234")]), body).reason == "duplicate_header"
        same = message_of([*pairs, (name, headers[name])])
        assert verify_webhook(SECRET, same, body, now=NOW).id == MSG_ID


@pytest.mark.parametrize(
    ("raw", "what"),
    [
        (b"not json", "is not JSON"),
        (b"[1, 2]", "is not a JSON object"),
        (b'{"timestamp": "2025-12-01T00:00:00Z", "data": {}}', "has no event type"),
        (b'{"type": "", "timestamp": "2025-12-01T00:00:00Z", "data": {}}', "has no event type"),
        (b'{"type": "webhook.test", "data": {}}', "has no RFC 3339 timestamp"),
        (b'{"type": "webhook.test", "timestamp": "yesterday", "data": {}}', "has no RFC 3339 timestamp"),
        (b'{"type": "webhook.test", "timestamp": "2025-12-01T00:00:00", "data": {}}', "has no RFC 3339 timestamp"),
        (b'{"type": "webhook.test", "timestamp": 1764547200, "data": {}}', "has no RFC 3339 timestamp"),
        (b'{"type": "webhook.test", "timestamp": "2025-12-01T00:00:00Z"}', "has no data object"),
        (b'{"type": "webhook.test", "timestamp": "2025-12-01T00:00:00Z", "data": []}', "has no data object"),
        (b"\xff\xfe", "is not JSON"),
    ],
)
def test_signed_bodies_that_are_not_events_are_refused(raw: bytes, what: str) -> None:
    headers, body = delivery(raw)
    error = refused(headers, body)
    assert error.reason == "invalid_payload"
    assert what in str(error)


# --- secrets -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "secret",
    [
        "",
        "whsec_",
        "whsec_!!!not-base64!!!",
        "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",  # the right bytes without the prefix
        "whsec_c2hvcnQ=",  # too short a key (5 bytes)
        "whsec_" + base64.b64encode(os.urandom(65)).decode(),  # too long
        "whsec_" + base64.urlsafe_b64encode(b"\xfb" * 32).decode(),  # URL-safe alphabet is not the standard one
        "sk_live_whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
    ],
)
def test_malformed_secrets_are_refused_without_echoing_them(secret: str) -> None:
    headers, body = delivery()
    with pytest.raises(InvalidWebhookSecret) as caught:
        verify_webhook(secret, headers, body, now=NOW)
    assert isinstance(caught.value, ValueError)
    assert not isinstance(caught.value, InvalidWebhook)  # configuration, not a bad delivery
    encoded = secret.removeprefix("whsec_")
    if encoded:
        assert encoded not in f"{caught.value} {caught.value!r}"
    assert "whsec_" in str(caught.value)
    with pytest.raises(InvalidWebhookSecret):
        WebhookVerifier(secret)


def test_secret_forms_the_gateway_writes_are_accepted() -> None:
    headers, body = delivery()
    key_b64 = SECRET.removeprefix("whsec_")
    for form in (SECRET, f"  {SECRET}\n", SECRET.encode(), f"whsec_{key_b64.rstrip('=')}"):
        assert verify_webhook(form, headers, body, now=NOW).id == MSG_ID
    for size in (24, 64):  # the gateway's bounds
        secret = "whsec_" + base64.b64encode(os.urandom(size)).decode()
        h, b = delivery(secret=secret)
        assert verify_webhook(secret, h, b, now=NOW).id == MSG_ID
    with pytest.raises(InvalidWebhookSecret):
        WebhookVerifier([])
    with pytest.raises(InvalidWebhookSecret):
        WebhookVerifier(b"\xff" * 40)


def test_the_verifier_keeps_its_secret_out_of_repr() -> None:
    verifier = WebhookVerifier(SECRET, tolerance=60)
    assert repr(verifier) == "WebhookVerifier(secrets=1, tolerance=60)"
    for tolerance in (-1, 1.5, True):
        with pytest.raises(ValueError):
            WebhookVerifier(SECRET, tolerance=tolerance)  # type: ignore[arg-type]


# --- the reference implementation -----------------------------------------------------------


def test_the_reference_library_agrees_on_the_specification_vector() -> None:
    reference = standardwebhooks.Webhook(SPEC_SECRET)
    stamp = datetime.fromtimestamp(SPEC_TIMESTAMP, tz=timezone.utc)
    assert reference.sign(SPEC_ID, stamp, SPEC_BODY) == SPEC_SIGNATURE
    assert sign_webhook(SPEC_SECRET, SPEC_ID, SPEC_TIMESTAMP, SPEC_BODY) == SPEC_SIGNATURE


@pytest.mark.parametrize("round_", range(20))
def test_the_reference_library_and_this_verifier_accept_each_others_signatures(round_: int) -> None:
    secret = "whsec_" + base64.b64encode(os.urandom(24 + round_)).decode()
    now = int(time.time()) - round_ * 7
    user = f"user-{round_}-{os.urandom(3).hex()}@exämple.com"
    body = body_of("credential.needs_reauth", provider="mock", user_email=user, category="invalid_grant").decode()
    msg_id = f"msg_{os.urandom(8).hex()}"
    reference = standardwebhooks.Webhook(secret)

    # Signed by the reference, verified here...
    theirs = reference.sign(msg_id, datetime.fromtimestamp(now, tz=timezone.utc), body)
    headers = {"webhook-id": msg_id, "webhook-timestamp": str(now), "webhook-signature": theirs}
    assert verify_webhook(secret, headers, body.encode()).user_email == user
    # ...and signed here, verified by the reference.
    ours = sign_webhook(secret, msg_id, now, body)
    assert ours == theirs
    assert reference.verify(body, headers) == json.loads(body)
    # Both refuse the same tampering.
    tampered = body.replace("invalid_grant", "invalid_grunt")
    with pytest.raises(standardwebhooks.WebhookVerificationError):
        reference.verify(tampered, headers)
    with pytest.raises(InvalidWebhook):
        verify_webhook(secret, headers, tampered)
    stale = {**headers, "webhook-timestamp": str(now - 3600)}
    stale["webhook-signature"] = sign_webhook(secret, msg_id, now - 3600, body)
    with pytest.raises(standardwebhooks.WebhookVerificationError):
        reference.verify(body, stale)
    with pytest.raises(InvalidWebhook):
        verify_webhook(secret, stale, body)


def test_tolerance_matches_the_reference_five_minutes() -> None:
    assert timedelta(seconds=DEFAULT_TOLERANCE) == timedelta(minutes=5)

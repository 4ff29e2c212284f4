"""Verifying the gateway's webhooks (the Standard Webhooks specification).

The gateway tells subscribers when a user's grant changes (``credential.revoked``,
``credential.needs_reauth``, ...). Each delivery is an HTTP ``POST`` whose body is
``{"type": ..., "timestamp": ..., "data": {...}}`` and whose headers sign it:

- ``webhook-id``: the event's id, the same on every retry (deduplicate on it);
- ``webhook-timestamp``: the attempt's time, in Unix seconds;
- ``webhook-signature``: ``v1,<base64 HMAC-SHA256 of "<id>.<timestamp>.<body>">``, keyed
  by the bytes of the subscription's ``whsec_<base64>`` secret; several space-separated
  signatures may be sent (while a secret is rotated), and one matching is enough.

```python
verifier = WebhookVerifier(os.environ["GATEWAY_WEBHOOK_SECRET"])  # fails fast on a bad secret
event = verifier.verify(request.headers, await request.body())   # raises InvalidWebhook
if event.type == CREDENTIAL_REVOKED:
    cache.invalidate(event.provider, event.user_email)
```

Verify the body exactly as received (bytes), before parsing it: re-serialised JSON does
not match the signature. Only the standard library is used (``hmac``, ``hashlib``,
``base64``); comparisons are constant-time. No exception or ``repr`` here contains the
secret.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import re
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

__all__ = [
    "CREDENTIAL_CONNECTED",
    "CREDENTIAL_NEEDS_REAUTH",
    "CREDENTIAL_REFRESHED",
    "CREDENTIAL_REVOKED",
    "DEFAULT_TOLERANCE",
    "EVENT_TYPES",
    "KEYS_REENCRYPTION_FINISHED",
    "PROVIDER_FAILING",
    "PROVIDER_RECOVERED",
    "SECRET_PREFIX",
    "SESSION_FAILED",
    "WEBHOOK_TEST",
    "HeaderSource",
    "InvalidWebhook",
    "InvalidWebhookSecret",
    "WebhookEvent",
    "WebhookVerifier",
    "sign_webhook",
    "verify_webhook",
]

#: A user completed a consent; ``data``: ``provider``, ``user_email``, ``scopes``.
CREDENTIAL_CONNECTED = "credential.connected"
#: A grant's tokens were refreshed (only for subscriptions that name it);
#: ``data``: ``provider``, ``user_email``, ``expires_at``.
CREDENTIAL_REFRESHED = "credential.refreshed"
#: A grant can no longer be refreshed, the user must consent again;
#: ``data``: ``provider``, ``user_email``, ``category``.
CREDENTIAL_NEEDS_REAUTH = "credential.needs_reauth"
#: A grant was revoked and deleted; ``data``: ``provider``, ``user_email``,
#: ``provider_revocation``.
CREDENTIAL_REVOKED = "credential.revoked"
#: A consent flow failed; ``data``: ``provider``, ``user_email``, ``session_id``, ``reason``.
SESSION_FAILED = "session.failed"
#: A provider refuses the gateway's own OAuth client; ``data``: ``provider``, ``category``.
PROVIDER_FAILING = "provider.failing"
#: A provider accepts the gateway's client again; ``data``: ``provider``.
PROVIDER_RECOVERED = "provider.recovered"
#: A re-encryption finished; ``data``: ``primary_key_id``, ``reencrypted``, ``undecryptable``.
KEYS_REENCRYPTION_FINISHED = "keys.reencryption_finished"
#: ``gateway webhooks test ID``: a signed ping; ``data``: ``webhook_id``.
WEBHOOK_TEST = "webhook.test"

#: The event types this version knows. A newer gateway may send others: verification
#: does not refuse them, so a receiver should ignore types it does not handle.
EVENT_TYPES = frozenset(
    {
        CREDENTIAL_CONNECTED,
        CREDENTIAL_REFRESHED,
        CREDENTIAL_NEEDS_REAUTH,
        CREDENTIAL_REVOKED,
        SESSION_FAILED,
        PROVIDER_FAILING,
        PROVIDER_RECOVERED,
        KEYS_REENCRYPTION_FINISHED,
        WEBHOOK_TEST,
    }
)

#: The text form of a signing secret starts with this.
SECRET_PREFIX = "whsec_"
#: Seconds a ``webhook-timestamp`` may be away from the receiver's clock, either way
#: (the specification's and the gateway's five minutes).
DEFAULT_TOLERANCE = 300

_ID_HEADER = "webhook-id"
_TIMESTAMP_HEADER = "webhook-timestamp"
_SIGNATURE_HEADER = "webhook-signature"
_SIGNATURE_VERSION = "v1"
#: The gateway's (and the specification's) bounds on a secret's key length, in bytes.
_MIN_KEY_BYTES = 24
_MAX_KEY_BYTES = 64
#: A Unix timestamp in whole seconds (the specification's form), of sane length.
_TIMESTAMP_RE = re.compile(r"[0-9]{1,15}")
#: At most this many candidate signatures are looked at.
_MAX_SIGNATURES = 32


class HeaderSource(Protocol):
    """Anything with ``items()`` yielding ``(name, value)`` pairs: a ``dict``, Starlette's
    ``request.headers``, ``http.server``'s ``self.headers``, an ``httpx.Headers``..."""

    def items(self) -> Iterable[tuple[str, str]]: ...


class InvalidWebhook(Exception):
    """A delivery that must not be trusted: answer it with a 4xx and do not act on it.

    Attributes:
        reason: A stable code: ``missing_header``, ``duplicate_header``,
            ``invalid_timestamp``, ``timestamp_too_old``, ``timestamp_too_new``,
            ``no_signature`` (no ``v1`` signature in the header),
            ``signature_mismatch`` or ``invalid_payload`` (signed, but not the
            ``{"type", "timestamp", "data"}`` shape).
        webhook_id: The ``webhook-id`` header, when there was one (not a secret).

    The message never contains the secret, a signature or the body.
    """

    def __init__(self, reason: str, message: str, *, webhook_id: str | None = None) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message
        self.webhook_id = webhook_id

    def __repr__(self) -> str:
        return f"InvalidWebhook(reason={self.reason!r}, message={self.message!r})"


class InvalidWebhookSecret(ValueError):
    """The configured secret is not a ``whsec_`` secret (a configuration error of the
    receiver, not a bad delivery). The message never contains the secret."""


def _decode_secret(secret: str | bytes) -> bytes:
    """The key bytes of ``whsec_<base64>`` (surrounding whitespace, such as a secret
    file's newline, is ignored; missing base64 padding is tolerated)."""
    if isinstance(secret, bytes):
        try:
            secret = secret.decode("ascii")
        except UnicodeDecodeError:
            raise InvalidWebhookSecret("the webhook secret is not text: it is whsec_ followed by base64") from None
    if not isinstance(secret, str):
        raise InvalidWebhookSecret(f"the webhook secret must be a str, not {type(secret).__name__}")
    text = secret.strip()
    if not text.startswith(SECRET_PREFIX):
        raise InvalidWebhookSecret(
            f"the webhook secret must start with {SECRET_PREFIX!r} (as `gateway webhooks add` prints it)"
        )
    encoded = text[len(SECRET_PREFIX) :]
    encoded += "=" * (-len(encoded) % 4)
    try:
        key = base64.b64decode(encoded, validate=True)
    except (binascii.Error, ValueError):
        raise InvalidWebhookSecret(f"the webhook secret is not {SECRET_PREFIX} followed by base64") from None
    if not _MIN_KEY_BYTES <= len(key) <= _MAX_KEY_BYTES:
        raise InvalidWebhookSecret(
            f"the webhook secret is {SECRET_PREFIX} followed by base64 of {_MIN_KEY_BYTES} to {_MAX_KEY_BYTES} bytes"
        )
    return key


def _body_bytes(body: bytes | bytearray | memoryview | str) -> bytes:
    if isinstance(body, str):
        return body.encode("utf-8")
    if isinstance(body, (bytes, bytearray, memoryview)):
        return bytes(body)
    raise TypeError(f"the webhook body must be bytes or str, not {type(body).__name__}")


def _signature(key: bytes, msg_id: str, timestamp: int, body: bytes) -> bytes:
    mac = hmac.new(key, f"{msg_id}.{timestamp}.".encode(), hashlib.sha256)
    mac.update(body)
    return mac.digest()


def _headers(headers: Mapping[str, str] | HeaderSource) -> dict[str, list[str]]:
    """The three webhook headers (names case-insensitive), each with every value sent."""
    found: dict[str, list[str]] = {}
    for name, value in headers.items():
        key = str(name).strip().lower()
        if key in (_ID_HEADER, _TIMESTAMP_HEADER, _SIGNATURE_HEADER):
            found.setdefault(key, []).append(str(value).strip())
    return found


def _single(found: dict[str, list[str]], name: str, msg_id: str | None) -> str:
    values = [v for v in found.get(name, []) if v]
    if not values:
        raise InvalidWebhook("missing_header", f"the {name} header is missing or empty", webhook_id=msg_id)
    if len(set(values)) > 1:
        raise InvalidWebhook("duplicate_header", f"the {name} header was sent with different values", webhook_id=msg_id)
    return values[0]


def _parse_time(value: object) -> datetime | None:
    """An RFC 3339 time (``...Z`` or an offset, any number of fractional digits)."""
    if not isinstance(value, str):
        return None
    text = value.strip()
    if text.endswith(("Z", "z")):
        text = text[:-1] + "+00:00"
    # Python 3.10's fromisoformat takes exactly 3 or 6 fractional digits: make it 6.
    match = re.fullmatch(r"([^.]+)\.([0-9]+)(.*)", text)
    if match is not None:
        text = f"{match.group(1)}.{match.group(2)[:6].ljust(6, '0')}{match.group(3)}"
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        return None
    return parsed if parsed.tzinfo is not None else None


@dataclass(frozen=True)
class WebhookEvent:
    """A verified delivery.

    Attributes:
        id: The ``webhook-id``: the event's id, identical on every retry of it, so a
            receiver that has already handled an id can answer 2xx and do nothing.
        type: The event type (``credential.revoked``, ...; see :data:`EVENT_TYPES`).
        timestamp: When the event happened (the body's ``timestamp``, timezone-aware).
        data: The event's fields (``provider``, ``user_email``, ...). Never a token.
        attempted_at: The ``webhook-timestamp`` of the attempt that was verified (Unix
            seconds; each retry has its own).
    """

    id: str
    type: str
    timestamp: datetime
    data: Mapping[str, Any] = field(hash=False)
    attempted_at: int | None = field(default=None, compare=False)

    @property
    def provider(self) -> str | None:
        """``data["provider"]``, when the event names a provider."""
        value = self.data.get("provider")
        return value if isinstance(value, str) else None

    @property
    def user_email(self) -> str | None:
        """``data["user_email"]``, when the event is about a user's grant."""
        value = self.data.get("user_email")
        return value if isinstance(value, str) else None


class WebhookVerifier:
    """Verifies deliveries signed with one subscription's secret.

    Args:
        secret: The ``whsec_...`` secret ``gateway webhooks add`` printed (or the one
            given to it with ``--secret-file``). Parsed here, so a malformed secret fails
            at start-up with :class:`InvalidWebhookSecret`, not on the first delivery.
        tolerance: Seconds ``webhook-timestamp`` may differ from the local clock, in the
            past or the future (default 300), bounding how long a captured delivery can
            be replayed.

    Several secrets (while rotating one): pass a sequence; a delivery signed by any of
    them is accepted.
    """

    def __init__(self, secret: str | bytes | Iterable[str | bytes], *, tolerance: int = DEFAULT_TOLERANCE) -> None:
        if isinstance(tolerance, bool) or not isinstance(tolerance, int) or tolerance < 0:
            raise ValueError("tolerance must be a non-negative number of seconds")
        secrets = [secret] if isinstance(secret, (str, bytes)) else list(secret)
        if not secrets:
            raise InvalidWebhookSecret("no webhook secret given")
        self._keys = tuple(_decode_secret(s) for s in secrets)
        self.tolerance = tolerance

    def __repr__(self) -> str:
        return f"WebhookVerifier(secrets={len(self._keys)}, tolerance={self.tolerance})"

    def sign(self, msg_id: str, timestamp: int, body: bytes | str) -> str:
        """The ``webhook-signature`` value the gateway sends for this delivery (with the
        first secret): for testing a receiver."""
        digest = _signature(self._keys[0], msg_id, timestamp, _body_bytes(body))
        return f"{_SIGNATURE_VERSION},{base64.b64encode(digest).decode('ascii')}"

    def verify(
        self,
        headers: Mapping[str, str] | HeaderSource,
        body: bytes | bytearray | memoryview | str,
        *,
        now: float | None = None,
    ) -> WebhookEvent:
        """Check a delivery and return its event.

        Args:
            headers: The request's headers (names are matched case-insensitively).
            body: The request body exactly as received (bytes; a ``str`` is encoded as
                UTF-8).
            now: The current Unix time (default: ``time.time()``), for tests.

        Raises:
            InvalidWebhook: Missing or malformed headers, no matching ``v1`` signature, a
                timestamp outside the tolerance, or a signed body that is not an event.
        """
        raw = _body_bytes(body)
        msg_id, timestamp = self._check(headers, raw, now)
        return _event(msg_id, timestamp, raw)

    def verify_signature(
        self,
        headers: Mapping[str, str] | HeaderSource,
        body: bytes | bytearray | memoryview | str,
        *,
        now: float | None = None,
    ) -> str:
        """Check the headers and signature only (any body, not necessarily an event);
        return the ``webhook-id``. Raises :class:`InvalidWebhook` as :meth:`verify` does."""
        msg_id, _ = self._check(headers, _body_bytes(body), now)
        return msg_id

    def _check(self, headers: Mapping[str, str] | HeaderSource, raw: bytes, now: float | None) -> tuple[str, int]:
        found = _headers(headers)
        msg_id = _single(found, _ID_HEADER, None)
        timestamp_text = _single(found, _TIMESTAMP_HEADER, msg_id)
        if not _TIMESTAMP_RE.fullmatch(timestamp_text):
            raise InvalidWebhook(
                "invalid_timestamp", "the webhook-timestamp header is not Unix seconds", webhook_id=msg_id
            )
        timestamp = int(timestamp_text)
        # Space-separated; a proxy that merged repeated headers may have added ", ".
        candidates = [
            part.rstrip(",") for value in found.get(_SIGNATURE_HEADER, []) for part in value.split() if part.rstrip(",")
        ]
        if not candidates:
            raise InvalidWebhook(
                "missing_header", "the webhook-signature header is missing or empty", webhook_id=msg_id
            )

        signatures: list[bytes] = []
        for candidate in candidates[:_MAX_SIGNATURES]:
            version, comma, encoded = candidate.partition(",")
            if not comma or version != _SIGNATURE_VERSION or not encoded:
                continue  # another scheme (v1a, ...) or noise: not ours to check
            try:
                signatures.append(base64.b64decode(encoded, validate=True))
            except (binascii.Error, ValueError):
                continue
        if not signatures:
            raise InvalidWebhook("no_signature", "the webhook-signature header has no v1 signature", webhook_id=msg_id)
        expected = [_signature(key, msg_id, timestamp, raw) for key in self._keys]
        matched = False
        for signature in signatures:
            for digest in expected:
                # Constant time, and no early exit that depends on the bytes compared.
                matched |= hmac.compare_digest(digest, signature)
        if not matched:
            raise InvalidWebhook("signature_mismatch", "no webhook signature matches", webhook_id=msg_id)

        current = time.time() if now is None else now
        if timestamp < current - self.tolerance:
            raise InvalidWebhook(
                "timestamp_too_old",
                f"the webhook timestamp is {int(current - timestamp)}s old (tolerance {self.tolerance}s)",
                webhook_id=msg_id,
            )
        if timestamp > current + self.tolerance:
            raise InvalidWebhook(
                "timestamp_too_new",
                f"the webhook timestamp is {int(timestamp - current)}s ahead (tolerance {self.tolerance}s)",
                webhook_id=msg_id,
            )
        return msg_id, timestamp


def _event(msg_id: str, timestamp: int, raw: bytes) -> WebhookEvent:
    def invalid(what: str) -> InvalidWebhook:
        return InvalidWebhook("invalid_payload", f"the webhook body {what}", webhook_id=msg_id)

    try:
        payload = json.loads(raw)
    except ValueError:
        raise invalid("is not JSON") from None
    if not isinstance(payload, dict):
        raise invalid("is not a JSON object")
    kind = payload.get("type")
    if not isinstance(kind, str) or not kind:
        raise invalid("has no event type")
    at = _parse_time(payload.get("timestamp"))
    if at is None:
        raise invalid("has no RFC 3339 timestamp")
    data = payload.get("data")
    if not isinstance(data, dict):
        raise invalid("has no data object")
    return WebhookEvent(id=msg_id, type=kind, timestamp=at, data=data, attempted_at=timestamp)


def verify_webhook(
    secret: str | bytes | Iterable[str | bytes],
    headers: Mapping[str, str] | HeaderSource,
    body: bytes | bytearray | memoryview | str,
    *,
    tolerance: int = DEFAULT_TOLERANCE,
    now: float | None = None,
) -> WebhookEvent:
    """Verify one delivery with ``secret`` (see :class:`WebhookVerifier`, which parses the
    secret once).

    Raises:
        InvalidWebhookSecret: ``secret`` is not a ``whsec_`` secret.
        InvalidWebhook: The delivery must not be trusted (``.reason`` says why).
    """
    return WebhookVerifier(secret, tolerance=tolerance).verify(headers, body, now=now)


def sign_webhook(secret: str | bytes, msg_id: str, timestamp: int, body: bytes | str) -> str:
    """The ``webhook-signature`` value (``v1,<base64>``) for a delivery, as the gateway
    computes it: for testing a receiver."""
    return WebhookVerifier(secret).sign(msg_id, timestamp, body)

"""Typed results of the gateway's endpoints."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Literal

from mcp_auth_client.exceptions import UnexpectedResponse

__all__ = [
    "ACCESS_TOKEN_TYPE",
    "AuthSession",
    "ProviderGrant",
    "RevokeResult",
    "SessionStatus",
    "TokenInfo",
]


def parse_timestamp(value: object) -> datetime | None:
    """Parse an RFC 3339 timestamp (``...Z`` or with an offset); ``None`` stays ``None``."""
    if value is None:
        return None
    if not isinstance(value, str):
        raise UnexpectedResponse(f"Expected an RFC 3339 timestamp, got {type(value).__name__}")
    text = value.strip()
    if text.endswith(("Z", "z")):
        text = text[:-1] + "+00:00"
    # Python < 3.11 accepts at most 6 fractional digits; trim longer fractions.
    if "." in text:
        head, _, rest = text.partition(".")
        digits = ""
        while rest and rest[0].isdigit():
            digits, rest = digits + rest[0], rest[1:]
        text = f"{head}.{digits[:6]}{rest}" if digits else head + rest
    try:
        return datetime.fromisoformat(text)
    except ValueError as exc:
        raise UnexpectedResponse(f"Invalid timestamp {value!r} in gateway answer") from exc


def require_str(body: Mapping[str, Any], key: str) -> str:
    """Return ``body[key]`` as a string or raise :class:`UnexpectedResponse`."""
    value = body.get(key)
    if not isinstance(value, str):
        raise UnexpectedResponse(f"Gateway answer lacks the string field {key!r}")
    return value


def optional_str(body: Mapping[str, Any], key: str) -> str | None:
    """Return ``body[key]`` when it is a string, else ``None``."""
    value = body.get(key)
    return value if isinstance(value, str) else None


def str_list(body: Mapping[str, Any], key: str) -> list[str]:
    """Return ``body[key]`` as a list of strings (missing or ``null`` gives ``[]``)."""
    value = body.get(key)
    if value is None:
        return []
    if not isinstance(value, list):
        raise UnexpectedResponse(f"Gateway answer field {key!r} is not a list")
    return [item for item in value if isinstance(item, str)]


#: RFC 8693 token type of an OAuth access token (the exchange's ``issued_token_type``,
#: and the default ``subject_token_type``).
ACCESS_TOKEN_TYPE = "urn:ietf:params:oauth:token-type:access_token"


@dataclass(frozen=True)
class TokenInfo:
    """A valid access token from ``POST /auth/token`` or a token exchange (``POST /oauth/token``).

    ``repr()`` never shows the token itself.
    """

    access_token: str = field(repr=False)
    token_type: str
    expires_at: datetime | None
    scopes: list[str]

    @classmethod
    def from_json(cls, body: Mapping[str, Any]) -> TokenInfo:
        """Build from the gateway's JSON answer."""
        return cls(
            access_token=require_str(body, "access_token"),
            token_type=optional_str(body, "token_type") or "Bearer",
            expires_at=parse_timestamp(body.get("expires_at")),
            scopes=str_list(body, "scopes"),
        )

    @classmethod
    def from_exchange_json(cls, body: Mapping[str, Any], *, issued_at: datetime) -> TokenInfo:
        """Build from a token exchange's answer (RFC 8693 §2.2.1).

        Args:
            body: The JSON answer (``access_token``, ``issued_token_type``,
                ``token_type``, ``expires_in``, ``scope``).
            issued_at: When the request was sent (timezone-aware); ``expires_in`` counts
                from it, so the expiry is never later than the gateway meant.
        """
        issued_type = body.get("issued_token_type")
        if issued_type is not None and issued_type != ACCESS_TOKEN_TYPE:
            raise UnexpectedResponse(f"Token exchange issued a {issued_type!r}, not an access token")
        expires_in = body.get("expires_in")
        if expires_in is None:
            expires_at = None
        elif isinstance(expires_in, (int, float)) and not isinstance(expires_in, bool):
            expires_at = issued_at + timedelta(seconds=max(0.0, float(expires_in)))
        else:
            raise UnexpectedResponse("Gateway answer field 'expires_in' is not a number")
        scope = body.get("scope")
        if scope is not None and not isinstance(scope, str):
            raise UnexpectedResponse("Gateway answer field 'scope' is not a string")
        return cls(
            access_token=require_str(body, "access_token"),
            token_type=optional_str(body, "token_type") or "Bearer",
            expires_at=expires_at,
            scopes=(scope or "").split(),
        )

    @property
    def authorization_header(self) -> str:
        """The value for an ``Authorization`` header, e.g. ``"Bearer mock_at_..."``."""
        return f"{self.token_type} {self.access_token}"


@dataclass(frozen=True)
class AuthSession:
    """A started OAuth flow from ``POST /auth/init``.

    Attributes:
        auth_url: The link the user must open (the gateway's ``/connect/<id>`` page).
        session_id: Poll it with ``get_status`` / ``wait_for_completion``.
        expires_at: When the flow expires if the user does not complete it.
    """

    auth_url: str
    session_id: str
    expires_at: datetime | None

    @classmethod
    def from_json(cls, body: Mapping[str, Any]) -> AuthSession:
        """Build from the gateway's JSON answer."""
        return cls(
            auth_url=require_str(body, "auth_url"),
            session_id=require_str(body, "session_id"),
            expires_at=parse_timestamp(body.get("expires_at")),
        )


SessionState = Literal["pending", "completed", "failed"]


@dataclass(frozen=True)
class SessionStatus:
    """The state of an OAuth session from ``GET /auth/status/{id}``.

    Attributes:
        status: ``"pending"``, ``"completed"`` or ``"failed"``.
        error: For failed sessions, the human-readable error (``"Session expired"``).
        reason: For failed sessions, the machine-readable reason (``"expired"``,
            ``"access_denied"``, ``"account_mismatch"``, ...).
    """

    status: SessionState
    session_id: str
    expires_at: datetime | None = None
    user_email: str | None = None
    provider: str | None = None
    completed_at: datetime | None = None
    error: str | None = None
    reason: str | None = None

    @property
    def is_pending(self) -> bool:
        """True while the user has not finished (or abandoned) the flow."""
        return self.status == "pending"

    @property
    def is_completed(self) -> bool:
        """True once the credential is stored."""
        return self.status == "completed"

    @property
    def is_failed(self) -> bool:
        """True when the flow ended without a credential."""
        return self.status == "failed"

    @classmethod
    def from_json(cls, body: Mapping[str, Any]) -> SessionStatus:
        """Build from the gateway's JSON answer."""
        status = body.get("status")
        if status not in ("pending", "completed", "failed"):
            raise UnexpectedResponse(f"Unknown session status {status!r}")
        return cls(
            status=status,
            session_id=require_str(body, "session_id"),
            expires_at=parse_timestamp(body.get("expires_at")),
            user_email=optional_str(body, "user_email"),
            provider=optional_str(body, "provider"),
            completed_at=parse_timestamp(body.get("completed_at")),
            error=optional_str(body, "error"),
            reason=optional_str(body, "reason"),
        )


@dataclass(frozen=True)
class ProviderGrant:
    """One provider a user has connected, from ``GET /auth/providers/{email}``.

    Attributes:
        state: ``"active"``, or ``"needs_reauth"`` when the refresh token was refused
            and the user must sign in again.
    """

    provider: str
    scopes: list[str]
    authenticated_at: datetime | None
    token_expires_at: datetime | None
    state: str

    @property
    def needs_reauth(self) -> bool:
        """True when the user must sign in again for this provider."""
        return self.state == "needs_reauth"

    @classmethod
    def from_json(cls, body: Mapping[str, Any]) -> ProviderGrant:
        """Build from one entry of the gateway's ``providers`` list."""
        return cls(
            provider=require_str(body, "provider"),
            scopes=str_list(body, "scopes"),
            authenticated_at=parse_timestamp(body.get("authenticated_at")),
            token_expires_at=parse_timestamp(body.get("token_expires_at")),
            state=optional_str(body, "state") or "active",
        )


@dataclass(frozen=True)
class RevokeResult:
    """The answer of ``DELETE /auth/revoke``.

    Attributes:
        provider_revocation: What the provider said: ``"revoked"``,
            ``"already_invalid"``, ``"failed"`` or ``"not_supported"`` (``None`` if the
            gateway did not say). The stored credential is deleted in every case.
    """

    success: bool
    message: str
    provider_revocation: str | None

    @classmethod
    def from_json(cls, body: Mapping[str, Any]) -> RevokeResult:
        """Build from the gateway's JSON answer."""
        return cls(
            success=bool(body.get("success", False)),
            message=optional_str(body, "message") or "",
            provider_revocation=optional_str(body, "provider_revocation"),
        )

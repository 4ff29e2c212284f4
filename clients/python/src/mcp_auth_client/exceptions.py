"""Typed exceptions for the gateway's error codes.

Every error body the gateway sends carries a stable ``error`` code; each code maps to
exactly one exception class here (see :data:`ERROR_CODES`). Mapping is done by code,
never by HTTP status alone: a 401 is either ``unauthorized`` (this MCP server's API key
is missing) or ``refresh_failed`` (the *user* must sign in again), and a 403 is either
``forbidden`` (wrong API key) or ``scope_insufficient``.

The token-exchange endpoint (``POST /oauth/token``, RFC 8693) answers with OAuth's codes
(RFC 6749 §5.2: ``invalid_grant``, ``invalid_client``, ...); they map into the same
families. Its ``authorization_required`` answer is the one code that maps by its
``reason`` instead: to :class:`NotAuthenticated`, :class:`RefreshFailed` or
:class:`ScopeInsufficient`, exactly what ``/auth/token`` raises for the same situation,
carrying the gateway's sign-in link for the verified user when it sent one.

The classes fall into a few families a caller can catch at once:

- :class:`AuthorizationRequired`: the user must (re)authorize; start an OAuth flow.
- :class:`GatewayAuthError`: the gateway refused *this MCP server's* credentials. A
  configuration problem, never something to tell the end user to sign in for.
- :class:`RetryableError`: temporary; ``retry_after`` carries the gateway's hint.
- :class:`RequestError`: the request itself was wrong (bad provider, email, ...), or
  the subject token of an exchange was refused (:class:`SubjectTokenRejected`).

No message or ``repr`` here ever contains the API key or an OAuth token: messages are
built from the gateway's ``message`` text, which it keeps free of secrets, plus the code
(and the client removes a subject token from it should a gateway ever echo one).

:class:`AuthRequiredException` (the MCP-facing "please open this link" error) lives in
:mod:`mcp_auth_client.mcp_errors` because it subclasses the MCP SDK's ``ToolError``; it
is re-exported lazily from here and from the package root, so importing this module does
not import the MCP SDK.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from mcp_auth_client.mcp_errors import AuthRequiredException
    from mcp_auth_client.models import AuthSession

__all__ = [
    "AUTHORIZATION_REASONS",
    "ERROR_CODES",
    "AuthGatewayError",
    "AuthRequiredException",
    "AuthSessionFailed",
    "AuthorizationRequired",
    "AuthorizationTimeout",
    "Busy",
    "ExchangeRequired",
    "Forbidden",
    "GatewayAuthError",
    "GatewayConnectionError",
    "GatewayTimeout",
    "InsecureGatewayUrlWarning",
    "InternalError",
    "InvalidClient",
    "InvalidEmail",
    "InvalidRequest",
    "InvalidTarget",
    "MethodNotAllowed",
    "NotAuthenticated",
    "NotFound",
    "PayloadTooLarge",
    "ProviderUnavailable",
    "RateLimited",
    "RefreshFailed",
    "RequestError",
    "RetryableError",
    "ScopeInsufficient",
    "ServerError",
    "ServiceUnavailable",
    "SessionNotFound",
    "SlowDown",
    "SubjectTokenRejected",
    "TemporarilyUnavailable",
    "Unauthorized",
    "UnauthorizedClient",
    "UnexpectedResponse",
    "UnknownProvider",
    "UnsupportedGrantType",
    "UnsupportedMediaType",
    "UntrustedAuthUrl",
    "error_from_response",
]


class AuthGatewayError(Exception):
    """Base class of every error this package raises about the gateway.

    Attributes:
        code: The gateway's stable error code (``"not_authenticated"``, ...), or ``None``
            when the failure did not come with one (network error, unexpected body).
        message: Human-readable text from the gateway (never contains a secret).
        status_code: The HTTP status, when there was a response.
        request_id: The gateway's request id, for correlating with its logs.
    """

    #: The code this class stands for; ``None`` on classes that are not tied to one.
    error_code: str | None = None

    def __init__(
        self,
        message: str,
        *,
        code: str | None = None,
        status_code: int | None = None,
        request_id: str | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.code = code if code is not None else self.error_code
        self.status_code = status_code
        self.request_id = request_id

    def __str__(self) -> str:
        parts = [self.message]
        details = []
        if self.code:
            details.append(f"error={self.code}")
        if self.status_code is not None:
            details.append(f"status={self.status_code}")
        if self.request_id:
            details.append(f"request_id={self.request_id}")
        if details:
            parts.append(f"({', '.join(details)})")
        return " ".join(parts)

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(message={self.message!r}, code={self.code!r}, "
            f"status_code={self.status_code!r}, request_id={self.request_id!r})"
        )


# --- the user must (re)authorize -------------------------------------------------------


class AuthorizationRequired(AuthGatewayError):
    """The user has to go through an OAuth flow before a token can be handed out.

    The gateway marks these answers with ``auth_required: true`` (``/auth/token``) or
    answers ``authorization_required`` (token exchange). Catch this class to handle all
    three causes at once; start a flow with ``AuthClient.init_oauth``, or, after a token
    exchange, show the link of the flow the gateway already started (``session``).

    Attributes:
        reason: ``"not_authenticated"``, ``"refresh_failed"`` or ``"scope_insufficient"``
            (for ``/auth/token`` answers, the same as ``code``).
        missing_scopes: The scopes the user still has to grant (``scope_insufficient``).
        auth_url: Token exchange only: a connect link bound to the user the gateway
            verified, when this MCP server's API client may start sign-ins (the ``init``
            right); ``None`` otherwise. It has been checked to be on the gateway's origin
            (else :class:`UntrustedAuthUrl` is raised instead), and it is kept out of
            ``str()`` and ``repr()``.
        session_id: The gateway session behind ``auth_url`` (wait for it with
            ``AuthClient.wait_for_completion``).
        expires_at: When that session expires.
    """

    def __init__(
        self,
        message: str,
        *,
        reason: str | None = None,
        missing_scopes: Sequence[str] | None = None,
        auth_url: str | None = None,
        session_id: str | None = None,
        expires_at: datetime | None = None,
        code: str | None = None,
        status_code: int | None = None,
        request_id: str | None = None,
    ) -> None:
        super().__init__(message, code=code, status_code=status_code, request_id=request_id)
        self.reason = reason if reason is not None else self.error_code
        self.missing_scopes: list[str] = list(missing_scopes or [])
        self.auth_url = auth_url
        self.session_id = session_id
        self.expires_at = expires_at

    @property
    def session(self) -> AuthSession | None:
        """The sign-in the gateway started for the verified user (token exchange), as an
        :class:`~mcp_auth_client.models.AuthSession`; ``None`` when it started none."""
        if self.auth_url is None or self.session_id is None:
            return None
        from mcp_auth_client.models import AuthSession

        return AuthSession(auth_url=self.auth_url, session_id=self.session_id, expires_at=self.expires_at)


class NotAuthenticated(AuthorizationRequired):
    """``not_authenticated`` (404): no credential is stored for this user and provider."""

    error_code = "not_authenticated"


class RefreshFailed(AuthorizationRequired):
    """``refresh_failed`` (401): the stored credential can no longer be refreshed.

    The provider refused the refresh token (revoked, expired, ``needs_reauth``); the
    user must sign in again. Not to be confused with :class:`Unauthorized`.
    """

    error_code = "refresh_failed"


class ScopeInsufficient(AuthorizationRequired):
    """``scope_insufficient`` (403): the grant lacks scopes the caller required.

    Attributes:
        missing_scopes: The scopes the user still has to grant.
    """

    error_code = "scope_insufficient"


#: The ``reason`` of a token exchange's ``authorization_required`` answer -> its class.
AUTHORIZATION_REASONS: Mapping[str, type[AuthorizationRequired]] = {
    "not_authenticated": NotAuthenticated,
    "refresh_failed": RefreshFailed,
    "scope_insufficient": ScopeInsufficient,
}


# --- this MCP server's own credentials were refused ------------------------------------


class GatewayAuthError(AuthGatewayError):
    """The gateway refused this MCP server's API key (``unauthorized``/``forbidden``).

    A deployment problem: the end user signing in would not help, so this is never
    reported as "please sign in".
    """


class Unauthorized(GatewayAuthError):
    """``unauthorized`` (401): no API key was sent, or it was empty."""

    error_code = "unauthorized"


class Forbidden(GatewayAuthError):
    """``forbidden`` (403): the API key is wrong, or not allowed to do this."""

    error_code = "forbidden"


class ExchangeRequired(GatewayAuthError):
    """``exchange_required`` (403): this API client was registered with
    ``--require-exchange``, so it may not name a user (``/auth/token``); it must prove
    the user by exchanging their access token (``AuthClient.exchange_token``)."""

    error_code = "exchange_required"


class InvalidClient(GatewayAuthError):
    """``invalid_client`` (401, token exchange): no API key was sent, or it is wrong."""

    error_code = "invalid_client"


class UnauthorizedClient(GatewayAuthError):
    """``unauthorized_client`` (400, token exchange): this API client may not exchange
    tokens, or not for this user.

    It lacks the ``token`` right, has no registered audience (``gateway clients update
    NAME --audience ...``), or the verified user's email domain is outside its domains.
    The gateway's ``message`` says which.
    """

    error_code = "unauthorized_client"


# --- temporary failures -----------------------------------------------------------------


class RetryableError(AuthGatewayError):
    """A temporary failure; try again later.

    Attributes:
        retry_after: Seconds the gateway asked to wait (body ``retry_after`` or the
            ``Retry-After`` header), or ``None`` when it gave no hint.
    """

    def __init__(
        self,
        message: str,
        *,
        retry_after: int | None = None,
        code: str | None = None,
        status_code: int | None = None,
        request_id: str | None = None,
    ) -> None:
        super().__init__(message, code=code, status_code=status_code, request_id=request_id)
        self.retry_after = retry_after

    def __str__(self) -> str:
        text = super().__str__()
        if self.retry_after is not None:
            text += f" [retry after {self.retry_after}s]"
        return text


class ProviderUnavailable(RetryableError):
    """``provider_unavailable`` (503): the OAuth provider is failing or unreachable."""

    error_code = "provider_unavailable"


class Busy(RetryableError):
    """``busy`` (503): the gateway is at capacity for this operation."""

    error_code = "busy"


class RateLimited(RetryableError):
    """``rate_limited`` (429): too many requests from this client."""

    error_code = "rate_limited"


class SlowDown(RateLimited):
    """``slow_down`` (429, token exchange): too many requests from this client."""

    error_code = "slow_down"


class ServiceUnavailable(RetryableError):
    """``service_unavailable`` (503): the gateway itself cannot serve (database down, ...)."""

    error_code = "service_unavailable"


class InternalError(RetryableError):
    """``internal_error`` (500): a bug or an unexpected failure inside the gateway."""

    error_code = "internal_error"


class TemporarilyUnavailable(RetryableError):
    """``temporarily_unavailable`` (503, token exchange): the identity provider's signing
    keys cannot be fetched, or the provider or the gateway's database is unavailable."""

    error_code = "temporarily_unavailable"


class ServerError(InternalError):
    """``server_error`` (500, token exchange): an unexpected failure inside the gateway."""

    error_code = "server_error"


# --- the request was wrong --------------------------------------------------------------


class RequestError(AuthGatewayError):
    """The gateway rejected the request itself; retrying it unchanged will not help."""


class UnknownProvider(RequestError):
    """``unknown_provider`` (400): the gateway has no provider by that name."""

    error_code = "unknown_provider"


class InvalidEmail(RequestError):
    """``invalid_email`` (400): the user email is not a valid address."""

    error_code = "invalid_email"


class InvalidRequest(RequestError):
    """``invalid_request`` (400): malformed body or parameters."""

    error_code = "invalid_request"


class SessionNotFound(RequestError):
    """``session_not_found`` (404): no OAuth session with that id."""

    error_code = "session_not_found"


class NotFound(RequestError):
    """``not_found`` (404): no such route (a wrong ``gateway_url`` path, usually)."""

    error_code = "not_found"


class MethodNotAllowed(RequestError):
    """``method_not_allowed`` (405)."""

    error_code = "method_not_allowed"


class PayloadTooLarge(RequestError):
    """``payload_too_large`` (413)."""

    error_code = "payload_too_large"


class UnsupportedMediaType(RequestError):
    """``unsupported_media_type`` (415)."""

    error_code = "unsupported_media_type"


class InvalidTarget(RequestError):
    """``invalid_target`` (400, token exchange): the ``audience`` is not a provider this
    gateway serves, or not one this API client may use."""

    error_code = "invalid_target"


class UnsupportedGrantType(RequestError):
    """``unsupported_grant_type`` (400, token exchange)."""

    error_code = "unsupported_grant_type"


class SubjectTokenRejected(RequestError):
    """``invalid_grant`` (400, token exchange): the gateway refused the subject token.

    Attributes:
        reason: Why, as a stable code: ``malformed``, ``algorithm_refused``,
            ``untrusted_issuer``, ``unknown_key``, ``bad_signature``, ``wrong_audience``,
            ``expired``, ``not_yet_valid``, ``too_old``, ``missing_claim``,
            ``invalid_email``, ``unverified_email``, ``assertion_lifetime``,
            ``assertion_too_old`` or ``replayed`` (``None`` if the gateway gave none).

    The token itself is never part of the message or ``repr``.
    """

    error_code = "invalid_grant"

    def __init__(
        self,
        message: str,
        *,
        reason: str | None = None,
        code: str | None = None,
        status_code: int | None = None,
        request_id: str | None = None,
    ) -> None:
        super().__init__(message, code=code, status_code=status_code, request_id=request_id)
        self.reason = reason

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(message={self.message!r}, reason={self.reason!r}, code={self.code!r}, "
            f"status_code={self.status_code!r}, request_id={self.request_id!r})"
        )


# --- failures without a gateway error code ----------------------------------------------


class GatewayConnectionError(AuthGatewayError):
    """The gateway could not be reached (connection refused, DNS, TLS, ...)."""


class GatewayTimeout(GatewayConnectionError):
    """The gateway did not answer within the configured timeout."""


class UnexpectedResponse(AuthGatewayError):
    """The gateway answered something this client does not understand.

    A non-JSON error body (a proxy's HTML page), an error code this version does not
    know, or a success body missing required fields.
    """


class AuthSessionFailed(AuthGatewayError):
    """An OAuth session ended in ``failed`` (expired, access_denied, account_mismatch, ...).

    Attributes:
        session_id: The failed session.
        reason: The gateway's machine-readable reason (``"expired"``, ...), if any.
    """

    def __init__(self, message: str, *, session_id: str, reason: str | None = None) -> None:
        super().__init__(message, code="session_failed")
        self.session_id = session_id
        self.reason = reason


class AuthorizationTimeout(AuthGatewayError):
    """``wait_for_completion`` gave up while the session was still pending.

    Attributes:
        session_id: The session that is still pending.
    """

    def __init__(self, message: str, *, session_id: str) -> None:
        super().__init__(message, code="timeout")
        self.session_id = session_id


class UntrustedAuthUrl(AuthGatewayError):
    """The gateway returned a sign-in link on another origin than the gateway's own.

    The link is not shown to anyone: a user who opens it signs in wherever it leads. A
    gateway behind a proxy that hands out links on another address is configured with
    ``AuthClient(..., public_url=...)``.

    Attributes:
        origin: The link's origin (``scheme://host:port``), or ``None`` when the link is
            not a plain absolute http(s) URL (see :func:`mcp_auth_client.links.link_origin`).
            The whole link is kept out of the message: it is a sign-in link for one user.
        trusted_origins: The origins links may have.
    """

    def __init__(self, *, origin: str | None, trusted_origins: tuple[str, ...]) -> None:
        where = f"on {origin}" if origin else "whose origin cannot be read safely"
        super().__init__(
            f"The gateway returned a sign-in link {where}, outside the gateway's own origin "
            f"({', '.join(trusted_origins)}); it is not shown to the user. If the gateway is reached "
            "through a proxy that serves it on another address, pass that address as public_url.",
            code="untrusted_auth_url",
        )
        self.origin = origin
        self.trusted_origins = trusted_origins


# --- warnings --------------------------------------------------------------------------


class InsecureGatewayUrlWarning(UserWarning):
    """The gateway URL is plain ``http`` to a host that is not loopback.

    The API key and the users' access tokens would cross the network unencrypted. Use
    ``https`` (plain ``http`` is fine to 127.0.0.0/8, ``::1`` and ``localhost``).
    """


#: Gateway error code -> exception class, one to one. The token exchange's
#: ``authorization_required`` is not here: it maps by its ``reason``
#: (:data:`AUTHORIZATION_REASONS`).
ERROR_CODES: Mapping[str, type[AuthGatewayError]] = {
    cls.error_code: cls
    for cls in (
        NotAuthenticated,
        RefreshFailed,
        ScopeInsufficient,
        Unauthorized,
        Forbidden,
        ExchangeRequired,
        ProviderUnavailable,
        Busy,
        RateLimited,
        ServiceUnavailable,
        InternalError,
        UnknownProvider,
        InvalidEmail,
        InvalidRequest,
        SessionNotFound,
        NotFound,
        MethodNotAllowed,
        PayloadTooLarge,
        UnsupportedMediaType,
        # POST /oauth/token (RFC 6749 §5.2, RFC 8693 §2.2.2); invalid_request is shared.
        InvalidClient,
        UnauthorizedClient,
        InvalidTarget,
        UnsupportedGrantType,
        SubjectTokenRejected,
        SlowDown,
        TemporarilyUnavailable,
        ServerError,
    )
    if cls.error_code is not None
}

#: The ``error`` code of a token exchange's "the user must sign in" answer.
AUTHORIZATION_REQUIRED_CODE = "authorization_required"


def _parse_retry_after(body_value: object, header_value: str | None) -> int | None:
    if isinstance(body_value, int) and not isinstance(body_value, bool) and body_value >= 0:
        return body_value
    if header_value is not None:
        try:
            seconds = int(header_value.strip())
        except ValueError:
            return None  # an HTTP-date: the gateway sends seconds, so ignore anything else
        return seconds if seconds >= 0 else None
    return None


def error_from_response(
    status_code: int,
    body: Any,
    *,
    retry_after_header: str | None = None,
    request_id_header: str | None = None,
) -> AuthGatewayError:
    """Build the exception for a gateway error answer.

    Args:
        status_code: The HTTP status.
        body: The decoded JSON body (anything; non-objects are handled).
        retry_after_header: The ``Retry-After`` header, if present.
        request_id_header: The ``X-Request-Id`` header, used when the body has none.

    Returns:
        The exception instance of the class the ``error`` code maps to, or
        :class:`UnexpectedResponse` when the body carries no known code.
    """
    if not isinstance(body, Mapping):
        return UnexpectedResponse(
            f"Gateway answered HTTP {status_code} without a JSON error body",
            status_code=status_code,
            request_id=request_id_header,
        )
    code = body.get("error")
    raw_message = body.get("message")
    if not (isinstance(raw_message, str) and raw_message):
        raw_message = body.get("error_description")  # OAuth's field, for answers without "message"
    message = raw_message if isinstance(raw_message, str) and raw_message else f"Gateway error {code!r}"
    raw_request_id = body.get("request_id")
    request_id = raw_request_id if isinstance(raw_request_id, str) else request_id_header
    if code == AUTHORIZATION_REQUIRED_CODE:
        return _authorization_required(status_code, body, message, request_id)
    cls = ERROR_CODES.get(code) if isinstance(code, str) else None
    if cls is None:
        return UnexpectedResponse(
            f"Gateway answered HTTP {status_code} with unknown error code {code!r}: {message}",
            code=code if isinstance(code, str) else None,
            status_code=status_code,
            request_id=request_id,
        )
    if issubclass(cls, ScopeInsufficient):
        return cls(message, missing_scopes=_missing_scopes(body), status_code=status_code, request_id=request_id)
    if issubclass(cls, RetryableError):
        retry_after = _parse_retry_after(body.get("retry_after"), retry_after_header)
        return cls(message, retry_after=retry_after, status_code=status_code, request_id=request_id)
    if issubclass(cls, SubjectTokenRejected):
        return cls(message, reason=_optional_str(body, "reason"), status_code=status_code, request_id=request_id)
    return cls(message, status_code=status_code, request_id=request_id)


def _optional_str(body: Mapping[str, Any], key: str) -> str | None:
    value = body.get(key)
    return value if isinstance(value, str) and value else None


def _missing_scopes(body: Mapping[str, Any]) -> list[str]:
    missing = body.get("missing_scopes")
    return [s for s in missing if isinstance(s, str)] if isinstance(missing, list) else []


def _authorization_required(
    status_code: int, body: Mapping[str, Any], message: str, request_id: str | None
) -> AuthorizationRequired:
    """A token exchange's ``authorization_required``: the class its ``reason`` names
    (the base class for a reason this version does not know), with the sign-in link."""
    from mcp_auth_client.models import parse_timestamp

    reason = _optional_str(body, "reason")
    try:
        expires_at = parse_timestamp(body.get("expires_at"))
    except UnexpectedResponse:
        expires_at = None
    cls = AUTHORIZATION_REASONS.get(reason, AuthorizationRequired) if reason is not None else AuthorizationRequired
    return cls(
        message,
        reason=reason,
        missing_scopes=_missing_scopes(body),
        auth_url=_optional_str(body, "auth_url"),
        session_id=_optional_str(body, "session_id"),
        expires_at=expires_at,
        code=AUTHORIZATION_REQUIRED_CODE,
        status_code=status_code,
        request_id=request_id,
    )


def __getattr__(name: str) -> Any:
    # AuthRequiredException subclasses the MCP SDK's ToolError; import it on first use
    # so that this module (and the core client) work without the MCP SDK installed.
    if name == "AuthRequiredException":
        from mcp_auth_client.mcp_errors import AuthRequiredException

        return AuthRequiredException
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

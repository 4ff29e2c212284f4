"""Typed exceptions for the gateway's error codes.

Every error body the gateway sends carries a stable ``error`` code; each code maps to
exactly one exception class here (see :data:`ERROR_CODES`). Mapping is done by code,
never by HTTP status alone: a 401 is either ``unauthorized`` (this MCP server's API key
is missing) or ``refresh_failed`` (the *user* must sign in again), and a 403 is either
``forbidden`` (wrong API key) or ``scope_insufficient``.

The classes fall into a few families a caller can catch at once:

- :class:`AuthorizationRequired`: the user must (re)authorize; start an OAuth flow.
- :class:`GatewayAuthError`: the gateway refused *this MCP server's* credentials. A
  configuration problem, never something to tell the end user to sign in for.
- :class:`RetryableError`: temporary; ``retry_after`` carries the gateway's hint.
- :class:`RequestError`: the request itself was wrong (bad provider, email, ...).

No message or ``repr`` here ever contains the API key or an OAuth token: messages are
built from the gateway's ``message`` text, which it keeps free of secrets, plus the code.

:class:`AuthRequiredException` (the MCP-facing "please open this link" error) lives in
:mod:`mcp_auth_client.mcp_errors` because it subclasses the MCP SDK's ``ToolError``; it
is re-exported lazily from here and from the package root, so importing this module does
not import the MCP SDK.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from mcp_auth_client.mcp_errors import AuthRequiredException

__all__ = [
    "ERROR_CODES",
    "AuthGatewayError",
    "AuthRequiredException",
    "AuthSessionFailed",
    "AuthorizationRequired",
    "AuthorizationTimeout",
    "Busy",
    "Forbidden",
    "GatewayAuthError",
    "GatewayConnectionError",
    "GatewayTimeout",
    "InsecureGatewayUrlWarning",
    "InternalError",
    "InvalidEmail",
    "InvalidRequest",
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
    "ServiceUnavailable",
    "SessionNotFound",
    "Unauthorized",
    "UnexpectedResponse",
    "UnknownProvider",
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

    The gateway marks these answers with ``auth_required: true``. Catch this class to
    handle all three causes at once; start a flow with ``AuthClient.init_oauth``.
    """


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

    def __init__(
        self,
        message: str,
        *,
        missing_scopes: list[str] | None = None,
        code: str | None = None,
        status_code: int | None = None,
        request_id: str | None = None,
    ) -> None:
        super().__init__(message, code=code, status_code=status_code, request_id=request_id)
        self.missing_scopes: list[str] = list(missing_scopes or [])


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


class ServiceUnavailable(RetryableError):
    """``service_unavailable`` (503): the gateway itself cannot serve (database down, ...)."""

    error_code = "service_unavailable"


class InternalError(RetryableError):
    """``internal_error`` (500): a bug or an unexpected failure inside the gateway."""

    error_code = "internal_error"


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


#: Gateway error code -> exception class, one to one.
ERROR_CODES: Mapping[str, type[AuthGatewayError]] = {
    cls.error_code: cls
    for cls in (
        NotAuthenticated,
        RefreshFailed,
        ScopeInsufficient,
        Unauthorized,
        Forbidden,
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
    )
    if cls.error_code is not None
}


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
    message = raw_message if isinstance(raw_message, str) and raw_message else f"Gateway error {code!r}"
    raw_request_id = body.get("request_id")
    request_id = raw_request_id if isinstance(raw_request_id, str) else request_id_header
    cls = ERROR_CODES.get(code) if isinstance(code, str) else None
    if cls is None:
        return UnexpectedResponse(
            f"Gateway answered HTTP {status_code} with unknown error code {code!r}: {message}",
            code=code if isinstance(code, str) else None,
            status_code=status_code,
            request_id=request_id,
        )
    if issubclass(cls, ScopeInsufficient):
        missing = body.get("missing_scopes")
        scopes = [s for s in missing if isinstance(s, str)] if isinstance(missing, list) else []
        return cls(message, missing_scopes=scopes, status_code=status_code, request_id=request_id)
    if issubclass(cls, RetryableError):
        retry_after = _parse_retry_after(body.get("retry_after"), retry_after_header)
        return cls(message, retry_after=retry_after, status_code=status_code, request_id=request_id)
    return cls(message, status_code=status_code, request_id=request_id)


def __getattr__(name: str) -> Any:
    # AuthRequiredException subclasses the MCP SDK's ToolError; import it on first use
    # so that this module (and the core client) work without the MCP SDK installed.
    if name == "AuthRequiredException":
        from mcp_auth_client.mcp_errors import AuthRequiredException

        return AuthRequiredException
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

"""mcp-auth-client: OAuth tokens for MCP servers from the central auth gateway.

The core (:class:`AuthClient`, :class:`SyncAuthClient`, the exceptions and models) needs
only ``httpx``; the webhook verifier (:func:`verify_webhook`, :class:`WebhookVerifier`,
:mod:`mcp_auth_client.webhooks`) only the standard library. The MCP integration
(:func:`require_auth`, :class:`AuthRequiredException`) needs the ``mcp`` SDK
(``pip install "mcp-auth-client[mcp]"``) and is imported on first use, so
``import mcp_auth_client`` never imports the MCP SDK by itself.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from mcp_auth_client._version import __version__
from mcp_auth_client.client import ACCESS_TOKEN_TYPE, ID_TOKEN_TYPE, JWT_TOKEN_TYPE, AuthClient
from mcp_auth_client.exceptions import (
    AuthGatewayError,
    AuthorizationRequired,
    AuthorizationTimeout,
    AuthSessionFailed,
    Busy,
    ExchangeRequired,
    Forbidden,
    GatewayAuthError,
    GatewayConnectionError,
    GatewayTimeout,
    InsecureGatewayUrlWarning,
    InternalError,
    InvalidClient,
    InvalidEmail,
    InvalidRequest,
    InvalidTarget,
    MethodNotAllowed,
    NotAuthenticated,
    NotFound,
    PayloadTooLarge,
    ProviderUnavailable,
    RateLimited,
    RefreshFailed,
    RequestError,
    RetryableError,
    ScopeInsufficient,
    ServerError,
    ServiceUnavailable,
    SessionNotFound,
    SlowDown,
    SubjectTokenRejected,
    TemporarilyUnavailable,
    Unauthorized,
    UnauthorizedClient,
    UnexpectedResponse,
    UnknownProvider,
    UnsupportedGrantType,
    UnsupportedMediaType,
    UntrustedAuthUrl,
)
from mcp_auth_client.models import AuthSession, ProviderGrant, RevokeResult, SessionStatus, TokenInfo
from mcp_auth_client.sync import SyncAuthClient
from mcp_auth_client.webhooks import (
    InvalidWebhook,
    InvalidWebhookSecret,
    WebhookEvent,
    WebhookVerifier,
    verify_webhook,
)

if TYPE_CHECKING:
    from mcp_auth_client.decorators import require_auth
    from mcp_auth_client.identity import IdentityError
    from mcp_auth_client.mcp_errors import AuthRequiredException

__all__ = [
    "ACCESS_TOKEN_TYPE",
    "ID_TOKEN_TYPE",
    "JWT_TOKEN_TYPE",
    "AuthClient",
    "AuthGatewayError",
    "AuthRequiredException",
    "AuthSession",
    "AuthSessionFailed",
    "AuthorizationRequired",
    "AuthorizationTimeout",
    "Busy",
    "ExchangeRequired",
    "Forbidden",
    "GatewayAuthError",
    "GatewayConnectionError",
    "GatewayTimeout",
    "IdentityError",
    "InsecureGatewayUrlWarning",
    "InternalError",
    "InvalidClient",
    "InvalidEmail",
    "InvalidRequest",
    "InvalidTarget",
    "InvalidWebhook",
    "InvalidWebhookSecret",
    "MethodNotAllowed",
    "NotAuthenticated",
    "NotFound",
    "PayloadTooLarge",
    "ProviderGrant",
    "ProviderUnavailable",
    "RateLimited",
    "RefreshFailed",
    "RequestError",
    "RetryableError",
    "RevokeResult",
    "ScopeInsufficient",
    "ServerError",
    "ServiceUnavailable",
    "SessionNotFound",
    "SessionStatus",
    "SlowDown",
    "SubjectTokenRejected",
    "SyncAuthClient",
    "TemporarilyUnavailable",
    "TokenInfo",
    "Unauthorized",
    "UnauthorizedClient",
    "UnexpectedResponse",
    "UnknownProvider",
    "UnsupportedGrantType",
    "UnsupportedMediaType",
    "UntrustedAuthUrl",
    "WebhookEvent",
    "WebhookVerifier",
    "__version__",
    "require_auth",
    "verify_webhook",
]

_LAZY = {
    "require_auth": "mcp_auth_client.decorators",
    "AuthRequiredException": "mcp_auth_client.mcp_errors",
    "IdentityError": "mcp_auth_client.identity",
}


def __getattr__(name: str) -> Any:
    module_name = _LAZY.get(name)
    if module_name is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(module_name), name)
    globals()[name] = value
    return value

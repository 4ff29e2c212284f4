"""The asynchronous gateway client.

Talks to the gateway's HTTP API with one pooled ``httpx.AsyncClient`` (connections are
reused across calls), sends the API key as ``X-API-Key``, applies a timeout to every
request, and turns every error answer into the exception its ``error`` code maps to
(:mod:`mcp_auth_client.exceptions`). It warns about a plain-http gateway URL to another
machine and refuses sign-in links outside the gateway's origin (:mod:`mcp_auth_client.links`).
This module does not depend on the MCP SDK.
"""

from __future__ import annotations

import math
import time
import warnings
from collections.abc import Mapping, Sequence
from datetime import datetime, timezone
from types import TracebackType
from typing import Any
from urllib.parse import quote, urlsplit

import httpx

from mcp_auth_client._version import __version__
from mcp_auth_client.exceptions import (
    AuthGatewayError,
    AuthorizationRequired,
    AuthorizationTimeout,
    AuthSessionFailed,
    GatewayConnectionError,
    GatewayTimeout,
    InsecureGatewayUrlWarning,
    UnexpectedResponse,
    UntrustedAuthUrl,
    error_from_response,
)
from mcp_auth_client.links import link_origin, origin_of, plain_http_to_remote_host
from mcp_auth_client.models import (
    ACCESS_TOKEN_TYPE,
    AuthSession,
    ProviderGrant,
    RevokeResult,
    SessionStatus,
    TokenInfo,
)

__all__ = [
    "ACCESS_TOKEN_TYPE",
    "DEFAULT_TIMEOUT",
    "ID_TOKEN_TYPE",
    "JWT_TOKEN_TYPE",
    "MAX_STATUS_WAIT",
    "TOKEN_EXCHANGE_GRANT_TYPE",
    "AuthClient",
]

#: Default per-request timeout, in seconds.
DEFAULT_TIMEOUT = 10.0
#: The longest long-poll the gateway accepts on ``/auth/status`` (seconds).
MAX_STATUS_WAIT = 60
#: RFC 8693 grant type of ``POST /oauth/token``.
TOKEN_EXCHANGE_GRANT_TYPE = "urn:ietf:params:oauth:grant-type:token-exchange"
#: ``subject_token_type`` for a JWT that is not an access token (a worker assertion).
JWT_TOKEN_TYPE = "urn:ietf:params:oauth:token-type:jwt"
#: ``subject_token_type`` for an OpenID Connect ID token.
ID_TOKEN_TYPE = "urn:ietf:params:oauth:token-type:id_token"
#: What replaces a subject token should a gateway message ever echo it.
_REDACTED = "[subject_token]"
#: A connection closed (or reset) under a request before any answer: what a client meets
#: when the server drops a pooled keep-alive connection as the request goes out.
_DROPPED = (httpx.RemoteProtocolError, httpx.ReadError, httpx.WriteError)


class AuthClient:
    """Asynchronous client for the auth gateway.

    Example:
        ```python
        async with AuthClient("http://localhost:8000", api_key) as client:
            token = await client.get_token("google", "alice@company.com")
            # or, proving the user with the access token they presented to this server:
            token = await client.exchange_token(users_access_token, "google")
        ```

    Args:
        gateway_url: Base URL of the gateway (``http(s)://host:port``, optionally with a
            path prefix).
        api_key: This MCP server's gateway API key, sent as ``X-API-Key``.
        timeout: Seconds allowed for each request (long-polls get their wait on top).
        connect_timeout: Seconds allowed to open a connection (defaults to ``timeout``).
        max_connections: Connection pool size.
        transport: A custom httpx transport (TLS settings, proxies, ``httpx.MockTransport``
            in tests) for the client's own connection pool.
        http_client: Bring your own ``httpx.AsyncClient`` (its base URL is ignored; the
            caller keeps ownership and closes it).
        public_url: The gateway's public address (its ``PUBLIC_BASE_URL``) when it differs
            from ``gateway_url``, e.g. a gateway reached internally but linked to users
            through a proxy. Sign-in links (``auth_url``) must be on the origin of
            ``gateway_url`` or of ``public_url``; any other link raises
            :class:`~mcp_auth_client.exceptions.UntrustedAuthUrl` instead of reaching a user.

    A ``gateway_url`` with plain ``http`` to a host other than 127.0.0.0/8, ``::1`` or
    ``localhost`` works, but warns with
    :class:`~mcp_auth_client.exceptions.InsecureGatewayUrlWarning`: the API key and the
    users' tokens would cross the network unencrypted.

    The client is safe to share between concurrent tasks of one event loop. Close it
    with ``await client.aclose()`` or use it as an async context manager.

    A request whose pooled connection the server closes or resets before answering (a
    keep-alive connection dropped as the request went out) is sent once more on a fresh
    connection; every other failure is raised at once.
    """

    def __init__(
        self,
        gateway_url: str,
        api_key: str,
        *,
        timeout: float = DEFAULT_TIMEOUT,
        connect_timeout: float | None = None,
        max_connections: int = 20,
        transport: httpx.AsyncBaseTransport | None = None,
        http_client: httpx.AsyncClient | None = None,
        public_url: str | None = None,
    ) -> None:
        if not isinstance(gateway_url, str) or not gateway_url:
            raise ValueError("gateway_url must be a non-empty URL")
        parts = urlsplit(gateway_url)
        gateway_origin = origin_of(gateway_url)
        if parts.scheme not in ("http", "https") or gateway_origin is None:
            raise ValueError("gateway_url must be an absolute http(s) URL")
        origins = [gateway_origin]
        if public_url is not None:
            public_origin = origin_of(public_url) if isinstance(public_url, str) else None
            if public_origin is None:
                raise ValueError("public_url must be an absolute http(s) URL")
            if public_origin not in origins:
                origins.append(public_origin)
        if not isinstance(api_key, str) or not api_key:
            raise ValueError("api_key must be a non-empty string")
        if not timeout > 0:
            raise ValueError("timeout must be positive")
        remote_host = plain_http_to_remote_host(gateway_url)
        if remote_host is not None:
            # A warning, not an error: a private network or a service mesh that encrypts
            # on its own may be deliberate, but it should be a visible decision.
            warnings.warn(
                f"AuthClient: gateway_url uses plain http to {remote_host}, which is not a loopback "
                "address; the API key and users' access tokens cross the network unencrypted. Use https.",
                InsecureGatewayUrlWarning,
                stacklevel=2,
            )
        self._base_url = gateway_url.rstrip("/")
        self._link_origins = tuple(origins)
        self._api_key = api_key
        self._timeout = float(timeout)
        self._connect_timeout = float(connect_timeout) if connect_timeout is not None else self._timeout
        self._owns_http = http_client is None
        self._http = http_client or httpx.AsyncClient(
            timeout=httpx.Timeout(self._timeout, connect=self._connect_timeout),
            limits=httpx.Limits(max_connections=max_connections, max_keepalive_connections=max_connections),
            follow_redirects=False,
            transport=transport,
        )

    # --- lifecycle ----------------------------------------------------------------------

    @property
    def gateway_url(self) -> str:
        """The gateway base URL (without a trailing slash)."""
        return self._base_url

    @property
    def trusted_link_origins(self) -> tuple[str, ...]:
        """The origins (``scheme://host:port``) a sign-in link may have: the gateway's,
        and ``public_url``'s when given."""
        return self._link_origins

    @property
    def timeout(self) -> float:
        """The per-request timeout in seconds."""
        return self._timeout

    def __repr__(self) -> str:
        # Never show the API key.
        return f"AuthClient(gateway_url={self._base_url!r})"

    async def aclose(self) -> None:
        """Close the connection pool (only if this client created it)."""
        if self._owns_http:
            await self._http.aclose()

    async def __aenter__(self) -> AuthClient:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    # --- the API ------------------------------------------------------------------------

    async def get_token(self, provider: str, user_email: str, required_scopes: Sequence[str] | None = None) -> str:
        """Return a valid access token for the user (the gateway refreshes it if needed).

        Args:
            provider: Provider id as configured on the gateway (``"google"``, ...).
            user_email: The user's email address.
            required_scopes: Scopes the token must carry; the gateway answers
                ``scope_insufficient`` when the grant lacks any of them.

        Raises:
            NotAuthenticated: Nothing stored for this user and provider.
            RefreshFailed: The credential can no longer be refreshed; sign in again.
            ScopeInsufficient: The grant lacks ``missing_scopes``.
            GatewayAuthError: This server's API key was refused.
            ExchangeRequired: This API client was registered with ``--require-exchange``:
                it must prove the user with :meth:`exchange_token` instead.
            ProviderUnavailable: The provider is down; see ``retry_after``.
        """
        info = await self.get_token_info(provider, user_email, required_scopes)
        return info.access_token

    async def get_token_info(
        self, provider: str, user_email: str, required_scopes: Sequence[str] | None = None
    ) -> TokenInfo:
        """Like :meth:`get_token`, returning the token with its type, expiry and scopes."""
        payload: dict[str, Any] = {"provider": provider, "user_email": user_email}
        if required_scopes:
            payload["required_scopes"] = list(required_scopes)
        body = await self._request("POST", "/auth/token", json=payload)
        return TokenInfo.from_json(body)

    async def exchange_token(
        self,
        subject_token: str,
        provider: str,
        scopes: Sequence[str] | None = None,
        *,
        subject_token_type: str = ACCESS_TOKEN_TYPE,
    ) -> str:
        """Exchange the user's access token for their token at ``provider`` (RFC 8693).

        The gateway verifies ``subject_token`` (a JWT issued by a trusted identity
        provider for this MCP server, i.e. with one of the ``aud`` values registered for
        this API client) and answers with the token of the user it names: the user is
        proven, never named by the caller. The API client needs a registered audience
        (``gateway clients update NAME --audience ...``); the bootstrap key has none.

        Args:
            subject_token: The access token the user's MCP client presented to this MCP
                server (or a worker's signed assertion, with ``JWT_TOKEN_TYPE``). It is
                sent in the form body only, and never appears in an exception or log.
            provider: Provider id whose token is wanted (the exchange's ``audience``).
            scopes: Scopes the token must carry (the exchange's ``scope``).
            subject_token_type: ``ACCESS_TOKEN_TYPE`` (default), ``JWT_TOKEN_TYPE`` or
                ``ID_TOKEN_TYPE``.

        Raises:
            NotAuthenticated, RefreshFailed, ScopeInsufficient: The verified user must
                (re)authorize (``authorization_required``). When this API client may
                start sign-ins, ``auth_url``/``session_id``/``session`` carry the link
                the gateway started for that user.
            UntrustedAuthUrl: That link is not on the gateway's origin (nor on
                ``public_url``'s); it must not be shown to anyone.
            SubjectTokenRejected: The subject token was refused; ``reason`` says why
                (``expired``, ``wrong_audience``, ...).
            InvalidClient: This server's API key is missing or wrong.
            UnauthorizedClient: This API client may not exchange (no ``token`` right, no
                registered audience, or the user's domain is outside its domains).
            InvalidTarget: No such provider, or not one this API client may use.
            SlowDown, TemporarilyUnavailable, ServerError: Temporary (``retry_after``).
        """
        info = await self.exchange_token_info(subject_token, provider, scopes, subject_token_type=subject_token_type)
        return info.access_token

    async def exchange_token_info(
        self,
        subject_token: str,
        provider: str,
        scopes: Sequence[str] | None = None,
        *,
        subject_token_type: str = ACCESS_TOKEN_TYPE,
    ) -> TokenInfo:
        """Like :meth:`exchange_token`, returning the token with its type, expiry and scopes.

        ``expires_at`` is computed from the answer's ``expires_in``, counted from when
        the request was sent.
        """
        if not isinstance(subject_token, str) or not subject_token:
            raise ValueError("subject_token must be a non-empty string")
        if not isinstance(provider, str) or not provider:
            raise ValueError("provider must be a non-empty provider id")
        if not isinstance(subject_token_type, str) or not subject_token_type:
            raise ValueError("subject_token_type must be a token type URN")
        if isinstance(scopes, str):
            raise TypeError("scopes must be a sequence of scope names, not one string")
        form = {
            "grant_type": TOKEN_EXCHANGE_GRANT_TYPE,
            "subject_token": subject_token,
            "subject_token_type": subject_token_type,
            "audience": provider,
        }
        scope = " ".join(s for s in scopes or () if s)
        if scope:
            form["scope"] = scope
        issued_at = datetime.now(timezone.utc)
        try:
            body = await self._request("POST", "/oauth/token", form=form)
        except AuthGatewayError as exc:
            _redact(exc, subject_token)
            if isinstance(exc, AuthorizationRequired) and exc.auth_url is not None:
                origin = link_origin(exc.auth_url)
                if origin not in self._link_origins:
                    raise UntrustedAuthUrl(origin=origin, trusted_origins=self._link_origins) from exc
            raise
        return TokenInfo.from_exchange_json(body, issued_at=issued_at)

    async def init_oauth(
        self,
        provider: str,
        user_email: str,
        scopes: Sequence[str] | None = None,
        *,
        redirect_after: str | None = None,
    ) -> AuthSession:
        """Start an OAuth flow and return the link the user must open.

        Repeating the same call (same user, provider and scopes) while the session is
        pending and its link unused returns the same session, so calling this on every
        failed tool call does not pile up flows.

        Args:
            provider: Provider id.
            user_email: The user who must sign in (the provider is told to expect them).
            scopes: Scopes to request; the provider's defaults when omitted.
            redirect_after: Where the success page sends the browser afterwards.

        Raises:
            UntrustedAuthUrl: The gateway's link is not on its own origin (nor on
                ``public_url``'s); it must not be shown to the user.
        """
        payload: dict[str, Any] = {"provider": provider, "user_email": user_email}
        if scopes:
            payload["scopes"] = list(scopes)
        if redirect_after is not None:
            payload["redirect_after"] = redirect_after
        body = await self._request("POST", "/auth/init", json=payload)
        session = AuthSession.from_json(body)
        # Checked here, where every link enters the package, so that no caller (the
        # decorator's elicitation, its tool error, a script printing it) can show one
        # that leads somewhere else.
        origin = link_origin(session.auth_url)
        if origin not in self._link_origins:
            raise UntrustedAuthUrl(origin=origin, trusted_origins=self._link_origins)
        return session

    async def get_status(self, session_id: str, wait: float | None = None) -> SessionStatus:
        """Return an OAuth session's state.

        Args:
            session_id: From :meth:`init_oauth`.
            wait: Long-poll up to this many seconds (0..60, rounded up to whole seconds)
                for the session to leave ``pending``; the gateway answers as soon as it
                does.

        Raises:
            SessionNotFound: No such session.
        """
        params: dict[str, str] = {}
        extra = 0.0
        if wait is not None:
            if not 0 <= wait <= MAX_STATUS_WAIT:
                raise ValueError(f"wait must be between 0 and {MAX_STATUS_WAIT} seconds")
            seconds = math.ceil(wait)
            params["wait"] = str(seconds)
            extra = float(seconds)
        body = await self._request(
            "GET", f"/auth/status/{quote(session_id, safe='')}", params=params, extra_timeout=extra
        )
        return SessionStatus.from_json(body)

    async def wait_for_completion(self, session_id: str, timeout: float) -> SessionStatus:
        """Wait (bounded) until the user completes the flow, using the gateway's long-poll.

        Args:
            session_id: From :meth:`init_oauth`.
            timeout: Seconds to wait at most.

        Returns:
            The ``completed`` status.

        Raises:
            AuthSessionFailed: The flow failed (expired, denied, wrong account, ...).
            AuthorizationTimeout: Still pending when ``timeout`` ran out.
        """
        if timeout < 0:
            raise ValueError("timeout must not be negative")
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            wait = min(float(MAX_STATUS_WAIT), max(0.0, math.floor(remaining)))
            status = await self.get_status(session_id, wait=wait)
            if status.is_completed:
                return status
            if status.is_failed:
                reason = f" ({status.reason})" if status.reason else ""
                raise AuthSessionFailed(
                    f"Authorization failed: {status.error or 'session failed'}{reason}",
                    session_id=session_id,
                    reason=status.reason,
                )
            if deadline - time.monotonic() < 1.0:
                # The gateway's long-poll has whole-second granularity: with less than a
                # second left, one more poll would overshoot the caller's bound.
                raise AuthorizationTimeout(f"Authorization still pending after {timeout:g}s", session_id=session_id)

    async def is_authenticated(
        self, provider: str, user_email: str, required_scopes: Sequence[str] | None = None
    ) -> bool:
        """True when a valid token (with ``required_scopes``) can be had right now.

        Only "the user must authorize" answers give ``False``; any other failure (a bad
        API key, the provider being down) is raised, so that it is not mistaken for a
        user who is not signed in.
        """
        try:
            await self.get_token_info(provider, user_email, required_scopes)
        except AuthorizationRequired:
            return False
        return True

    async def list_providers(self, user_email: str) -> list[ProviderGrant]:
        """The providers the user has connected, with scopes and state."""
        body = await self._request("GET", f"/auth/providers/{quote(user_email, safe='')}")
        providers = body.get("providers")
        if not isinstance(providers, list):
            raise UnexpectedResponse("Gateway answer lacks the 'providers' list")
        return [ProviderGrant.from_json(p) for p in providers if isinstance(p, Mapping)]

    async def revoke(self, provider: str, user_email: str) -> RevokeResult:
        """Revoke the user's grant at the provider and delete the stored credential.

        Raises:
            NotAuthenticated: Nothing was stored.
        """
        body = await self._request("DELETE", "/auth/revoke", json={"provider": provider, "user_email": user_email})
        return RevokeResult.from_json(body)

    async def health(self) -> dict[str, Any]:
        """The gateway's ``/health`` answer."""
        return dict(await self._request("GET", "/health"))

    # --- transport ----------------------------------------------------------------------

    async def _request(
        self,
        method: str,
        path: str,
        *,
        json: Mapping[str, Any] | None = None,
        form: Mapping[str, str] | None = None,
        params: Mapping[str, str] | None = None,
        extra_timeout: float = 0.0,
    ) -> Mapping[str, Any]:
        headers = {
            "X-API-Key": self._api_key,
            "Accept": "application/json",
            "User-Agent": f"mcp-auth-client/{__version__}",
        }
        timeout = httpx.Timeout(self._timeout + extra_timeout, connect=self._connect_timeout)
        try:
            for attempt in range(2):
                try:
                    response = await self._http.request(
                        method,
                        self._base_url + path,
                        json=json,
                        data=form,  # application/x-www-form-urlencoded
                        params=params or None,
                        headers=headers,
                        timeout=timeout,
                    )
                    break
                except _DROPPED:
                    # The server closed or reset the (pooled, keep-alive) connection
                    # without an answer: almost always one it dropped as the request
                    # went out, unprocessed. Once more, on a fresh connection (the pool
                    # discards the dead one); the gateway's calls are safe to repeat
                    # (init and the exchange hand back the pending session).
                    if attempt:
                        raise
        except httpx.TimeoutException as exc:
            raise GatewayTimeout(
                f"Gateway did not answer {method} {path} within {self._timeout + extra_timeout:g}s"
            ) from exc
        except httpx.TransportError as exc:
            raise GatewayConnectionError(f"Cannot reach the gateway for {method} {path}: {type(exc).__name__}") from exc
        return self._decode(response)

    @staticmethod
    def _decode(response: httpx.Response) -> Mapping[str, Any]:
        try:
            body: Any = response.json()
        except ValueError:
            body = None
        if response.status_code >= 400:
            raise error_from_response(
                response.status_code,
                body,
                retry_after_header=response.headers.get("retry-after"),
                request_id_header=response.headers.get("x-request-id"),
            )
        if not isinstance(body, Mapping):
            raise UnexpectedResponse(
                f"Gateway answered HTTP {response.status_code} without a JSON object",
                status_code=response.status_code,
                request_id=response.headers.get("x-request-id"),
            )
        return body


def _redact(exc: AuthGatewayError, secret: str) -> None:
    """Remove ``secret`` from an exception's message (a defence: the gateway does not
    echo subject tokens, but an intermediary or a future bug might)."""
    if secret in exc.message:
        exc.message = exc.message.replace(secret, _REDACTED)
        exc.args = (exc.message,)

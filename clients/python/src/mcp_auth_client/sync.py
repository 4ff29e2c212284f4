"""A blocking wrapper around :class:`~mcp_auth_client.client.AuthClient`.

For scripts and synchronous servers. It runs one private event loop in a background
thread (an anyio blocking portal) and forwards each call to the async client there, so
connection pooling, timeouts and error mapping are exactly those of the async client.
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable, Sequence
from contextlib import AbstractContextManager
from types import TracebackType
from typing import Any, TypeVar

import anyio.from_thread
import httpx

from mcp_auth_client.client import DEFAULT_TIMEOUT, AuthClient
from mcp_auth_client.models import (
    ACCESS_TOKEN_TYPE,
    AuthSession,
    ProviderGrant,
    RevokeResult,
    SessionStatus,
    TokenInfo,
)

__all__ = ["SyncAuthClient"]

_T = TypeVar("_T")


class SyncAuthClient:
    """Synchronous twin of :class:`AuthClient` (same methods, without ``await``).

    Example:
        ```python
        with SyncAuthClient("http://localhost:8000", api_key) as client:
            token = client.get_token("google", "alice@company.com")
        ```

    Call :meth:`close` (or use ``with``) to stop the background thread.
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
        public_url: str | None = None,
    ) -> None:
        """See :class:`AuthClient` for the arguments; ``transport`` replaces the HTTP
        transport (custom TLS, proxies, or ``httpx.MockTransport`` in tests)."""
        self._portal_cm: AbstractContextManager[anyio.from_thread.BlockingPortal] = (
            anyio.from_thread.start_blocking_portal()
        )
        self._portal = self._portal_cm.__enter__()
        self._closed = False
        try:
            self._client = self._portal.call(
                functools.partial(
                    _make_client,
                    gateway_url,
                    api_key,
                    timeout=timeout,
                    connect_timeout=connect_timeout,
                    max_connections=max_connections,
                    transport=transport,
                    public_url=public_url,
                )
            )
        except BaseException:
            self._portal_cm.__exit__(None, None, None)
            raise

    def __repr__(self) -> str:
        return f"SyncAuthClient(gateway_url={self._client.gateway_url!r})"

    def _call(self, fn: Callable[..., Awaitable[_T]], *args: Any, **kwargs: Any) -> _T:
        if self._closed:
            raise RuntimeError("SyncAuthClient is closed")
        return self._portal.call(functools.partial(fn, *args, **kwargs))

    def close(self) -> None:
        """Close the connection pool and stop the background event loop."""
        if self._closed:
            return
        try:
            self._portal.call(self._client.aclose)
        finally:
            self._closed = True
            self._portal_cm.__exit__(None, None, None)

    def __enter__(self) -> SyncAuthClient:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def get_token(self, provider: str, user_email: str, required_scopes: Sequence[str] | None = None) -> str:
        """See :meth:`AuthClient.get_token`."""
        return self._call(self._client.get_token, provider, user_email, required_scopes)

    def get_token_info(self, provider: str, user_email: str, required_scopes: Sequence[str] | None = None) -> TokenInfo:
        """See :meth:`AuthClient.get_token_info`."""
        return self._call(self._client.get_token_info, provider, user_email, required_scopes)

    def exchange_token(
        self,
        subject_token: str,
        provider: str,
        scopes: Sequence[str] | None = None,
        *,
        subject_token_type: str = ACCESS_TOKEN_TYPE,
    ) -> str:
        """See :meth:`AuthClient.exchange_token`."""
        return self._call(
            self._client.exchange_token, subject_token, provider, scopes, subject_token_type=subject_token_type
        )

    def exchange_token_info(
        self,
        subject_token: str,
        provider: str,
        scopes: Sequence[str] | None = None,
        *,
        subject_token_type: str = ACCESS_TOKEN_TYPE,
    ) -> TokenInfo:
        """See :meth:`AuthClient.exchange_token_info`."""
        return self._call(
            self._client.exchange_token_info, subject_token, provider, scopes, subject_token_type=subject_token_type
        )

    def init_oauth(
        self,
        provider: str,
        user_email: str,
        scopes: Sequence[str] | None = None,
        *,
        redirect_after: str | None = None,
    ) -> AuthSession:
        """See :meth:`AuthClient.init_oauth`."""
        return self._call(self._client.init_oauth, provider, user_email, scopes, redirect_after=redirect_after)

    def get_status(self, session_id: str, wait: float | None = None) -> SessionStatus:
        """See :meth:`AuthClient.get_status`."""
        return self._call(self._client.get_status, session_id, wait)

    def wait_for_completion(self, session_id: str, timeout: float) -> SessionStatus:
        """See :meth:`AuthClient.wait_for_completion`."""
        return self._call(self._client.wait_for_completion, session_id, timeout)

    def is_authenticated(self, provider: str, user_email: str, required_scopes: Sequence[str] | None = None) -> bool:
        """See :meth:`AuthClient.is_authenticated`."""
        return self._call(self._client.is_authenticated, provider, user_email, required_scopes)

    def list_providers(self, user_email: str) -> list[ProviderGrant]:
        """See :meth:`AuthClient.list_providers`."""
        return self._call(self._client.list_providers, user_email)

    def revoke(self, provider: str, user_email: str) -> RevokeResult:
        """See :meth:`AuthClient.revoke`."""
        return self._call(self._client.revoke, provider, user_email)

    def health(self) -> dict[str, Any]:
        """See :meth:`AuthClient.health`."""
        return self._call(self._client.health)


async def _make_client(
    gateway_url: str,
    api_key: str,
    *,
    timeout: float,
    connect_timeout: float | None,
    max_connections: int,
    transport: httpx.AsyncBaseTransport | None,
    public_url: str | None,
) -> AuthClient:
    # Built inside the portal's event loop, which then owns its connection pool.
    return AuthClient(
        gateway_url,
        api_key,
        timeout=timeout,
        connect_timeout=connect_timeout,
        max_connections=max_connections,
        transport=transport,
        public_url=public_url,
    )

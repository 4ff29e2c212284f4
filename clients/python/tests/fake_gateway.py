"""An in-memory stand-in for the gateway's HTTP contract, served through
``httpx.MockTransport``, for fast tests that need no binaries.

It keeps the contract's shapes (routes, error bodies, codes and statuses, long-poll,
session reuse). The end-to-end tests run the same flows against the real gateway.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote

import anyio
import httpx

from mcp_auth_client import AuthClient

BASE = "http://gateway.test"


@dataclass
class Credential:
    scopes: list[str]
    state: str = "active"


@dataclass
class Session:
    id: str
    provider: str
    email: str
    scopes: list[str]
    status: str = "pending"
    reason: str | None = None
    used: bool = False
    done: anyio.Event = field(default_factory=anyio.Event)


class FakeGateway:
    """State plus an async request handler for ``httpx.MockTransport``."""

    def __init__(self, api_key: str = "k" * 64, default_scopes: tuple[str, ...] = ("mail.read",)) -> None:
        self.api_key = api_key
        self.default_scopes = list(default_scopes)
        self.credentials: dict[tuple[str, str], Credential] = {}
        self.sessions: dict[str, Session] = {}
        self.requests: list[httpx.Request] = []
        #: When set, every /auth/* answer is this (status, body, headers).
        self.forced: tuple[int, dict[str, Any], dict[str, str]] | None = None

    def client(self, api_key: str | None = None) -> AuthClient:
        transport = httpx.MockTransport(self.handle)
        return AuthClient(BASE, api_key or self.api_key, http_client=httpx.AsyncClient(transport=transport), timeout=5)

    # --- what a browser would do --------------------------------------------------

    def complete(self, auth_url: str, *, deny: bool = False) -> None:
        session = self.sessions[auth_url.rsplit("/", 1)[-1]]
        session.used = True
        if deny:
            session.status, session.reason = "failed", "access_denied"
        else:
            session.status = "completed"
            self.credentials[(session.provider, session.email)] = Credential(scopes=list(session.scopes))
        session.done.set()

    # --- the HTTP contract --------------------------------------------------------

    @staticmethod
    def _error(status: int, code: str, message: str, **extra: Any) -> httpx.Response:
        headers = {}
        if "retry_after" in extra:
            headers["Retry-After"] = str(extra["retry_after"])
        body = {"error": code, "message": message, "request_id": "req-1", **extra}
        return httpx.Response(status, json=body, headers=headers)

    async def handle(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        path = request.url.path
        if path == "/health":
            return httpx.Response(200, json={"status": "healthy"})
        key = request.headers.get("x-api-key")
        if not key:
            return self._error(401, "unauthorized", "Missing API key")
        if key != self.api_key:
            return self._error(403, "forbidden", "Invalid API key")
        if self.forced is not None:
            status, body, headers = self.forced
            return httpx.Response(status, json=body, headers=headers)
        body = json.loads(request.content) if request.content else {}
        if path == "/auth/token" and request.method == "POST":
            return self._token(body)
        if path == "/auth/init" and request.method == "POST":
            return self._init(body)
        if path.startswith("/auth/status/"):
            return await self._status(path.rsplit("/", 1)[-1], request.url.params.get("wait"))
        if path.startswith("/auth/providers/"):
            email = unquote(path.rsplit("/", 1)[-1])
            grants = [
                {
                    "provider": p,
                    "scopes": c.scopes,
                    "authenticated_at": "2026-01-01T00:00:00Z",
                    "token_expires_at": None,
                    "state": c.state,
                }
                for (p, e), c in self.credentials.items()
                if e == email
            ]
            return httpx.Response(200, json={"user_email": email, "providers": grants})
        if path == "/auth/revoke" and request.method == "DELETE":
            if self.credentials.pop((body["provider"], body["user_email"]), None) is None:
                return self._error(404, "not_authenticated", "Nothing stored", auth_required=True)
            return httpx.Response(200, json={"success": True, "message": "revoked", "provider_revocation": "revoked"})
        return self._error(404, "not_found", "No such route")

    def _token(self, body: dict[str, Any]) -> httpx.Response:
        if "@" not in body.get("user_email", ""):
            return self._error(400, "invalid_email", "Invalid email")
        credential = self.credentials.get((body["provider"], body["user_email"]))
        if credential is None:
            return self._error(404, "not_authenticated", "Please authenticate", auth_required=True)
        if credential.state == "needs_reauth":
            return self._error(401, "refresh_failed", "Please re-authenticate", auth_required=True)
        missing = [s for s in body.get("required_scopes") or [] if s not in credential.scopes]
        if missing:
            return self._error(403, "scope_insufficient", "More scopes", auth_required=True, missing_scopes=missing)
        return httpx.Response(
            200,
            json={
                "access_token": f"tok-{body['user_email']}",
                "token_type": "Bearer",
                "expires_at": "2030-01-01T00:00:00Z",
                "scopes": credential.scopes,
            },
        )

    def _init(self, body: dict[str, Any]) -> httpx.Response:
        scopes = list(body.get("scopes") or self.default_scopes)
        for session in self.sessions.values():
            if (session.provider, session.email, session.scopes, session.status, session.used) == (
                body["provider"],
                body["user_email"],
                scopes,
                "pending",
                False,
            ):
                break
        else:
            session = Session(id=str(uuid.uuid4()), provider=body["provider"], email=body["user_email"], scopes=scopes)
            self.sessions[session.id] = session
        return httpx.Response(
            200,
            json={
                "auth_url": f"{BASE}/connect/{session.id}",
                "session_id": session.id,
                "expires_at": "2030-01-01T00:00:00Z",
            },
        )

    async def _status(self, session_id: str, wait: str | None) -> httpx.Response:
        session = self.sessions.get(session_id)
        if session is None:
            return self._error(404, "session_not_found", "No such session")
        if session.status == "pending" and wait:
            with anyio.move_on_after(int(wait)):
                await session.done.wait()
        body: dict[str, Any] = {"status": session.status, "session_id": session.id}
        if session.status == "completed":
            body.update(user_email=session.email, provider=session.provider, completed_at="2026-01-01T00:00:00Z")
        elif session.status == "failed":
            body.update(error="Access denied", reason=session.reason)
        else:
            body["expires_at"] = "2030-01-01T00:00:00Z"
        return httpx.Response(200, json=body)

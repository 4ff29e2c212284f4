"""The MCP server's side of MCP authorization in the tests: a token verifier for the
access tokens of an OIDC identity provider (here the mock provider's test IdP).

It verifies locally with PyJWT (installed with the MCP SDK) against the keys the issuer
publishes, found by OIDC discovery, exactly as a production MCP server in front of
Okta, Entra ID or Keycloak would: signature (asymmetric algorithms only), issuer,
audience (this MCP server), expiry. It never asks the gateway: the point of the token
exchange is that the gateway verifies the token independently.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import anyio
import httpx
import jwt
from mcp.server.auth.provider import AccessToken

__all__ = ["IdpTokenVerifier"]


class IdpTokenVerifier:
    """A ``TokenVerifier`` (``MCPServer(token_verifier=...)``) for one issuer's JWTs.

    Args:
        issuer: The exact ``iss`` of the tokens; its discovery document is at
            ``<issuer>/.well-known/openid-configuration``.
        audience: The ``aud`` a token must carry to be for this MCP server.
        algorithms: The signature algorithms accepted (never ``none`` or ``HS*``).
        leeway: Clock skew allowed on ``exp``/``iat``/``nbf``, in seconds.
    """

    def __init__(
        self,
        issuer: str,
        audience: str,
        *,
        algorithms: Sequence[str] = ("ES256", "EdDSA", "RS256"),
        leeway: float = 30.0,
        timeout: float = 10.0,
    ) -> None:
        self._issuer = issuer
        self._audience = audience
        self._algorithms = frozenset(algorithms)
        self._leeway = leeway
        self._timeout = timeout
        self._keys: dict[str, jwt.PyJWK] = {}
        self._lock = anyio.Lock()
        #: How many times the keys were fetched (the tests look).
        self.fetches = 0

    async def verify_token(self, token: str) -> AccessToken | None:
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError:
            return None
        alg, kid = header.get("alg"), header.get("kid")
        if alg not in self._algorithms or not isinstance(kid, str):
            return None
        key = await self._key(kid)
        if key is None:
            return None
        try:
            claims: dict[str, Any] = jwt.decode(
                token,
                key=key,
                algorithms=[alg],
                audience=self._audience,
                issuer=self._issuer,
                leeway=self._leeway,
                options={"require": ["exp", "iat", "iss", "aud", "sub"]},
            )
        except jwt.PyJWTError:
            return None
        scope = claims.get("scope")
        return AccessToken(
            token=token,
            client_id=str(claims.get("azp") or claims.get("client_id") or "mcp-client"),
            scopes=scope.split() if isinstance(scope, str) else [],
            expires_at=int(claims["exp"]),
            resource=self._audience,
            subject=str(claims["sub"]),
            claims=claims,
        )

    async def _key(self, kid: str) -> jwt.PyJWK | None:
        if kid not in self._keys:
            # An unknown kid: the issuer may have rotated its keys. (A production verifier
            # would also limit how often a made-up kid can cause a fetch.)
            await self._fetch_keys()
        return self._keys.get(kid)

    async def _fetch_keys(self) -> None:
        async with self._lock:
            try:
                async with httpx.AsyncClient(timeout=self._timeout) as http:
                    discovery = await http.get(f"{self._issuer}/.well-known/openid-configuration")
                    discovery.raise_for_status()
                    jwks = await http.get(discovery.json()["jwks_uri"])
                    jwks.raise_for_status()
                keys = jwt.PyJWKSet.from_dict(jwks.json()).keys
            except (httpx.HTTPError, KeyError, ValueError, jwt.PyJWTError):
                return  # keep the keys already held
            self.fetches += 1
            self._keys = {key.key_id: key for key in keys if key.key_id}

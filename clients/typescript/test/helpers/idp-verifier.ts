/**
 * The MCP server's own token verification for the exchange tests: the identity
 * provider's JWTs checked against the keys it publishes (found by OIDC discovery), with
 * `jose`, exactly as a production MCP server in front of Okta or Keycloak would. The
 * verified claims go into `AuthInfo.extra`, where `requireAuth` reads the email claim.
 */

import type { AuthInfo } from "@modelcontextprotocol/sdk/server/auth/types.js";
import { createRemoteJWKSet, jwtVerify, type JWTVerifyGetKey } from "jose";

import type { Verifier } from "./mcp.js";

export function idpVerifier(issuer: string, audience: string): Verifier {
  let keys: Promise<JWTVerifyGetKey> | undefined;
  const keySet = async (): Promise<JWTVerifyGetKey> => {
    const response = await fetch(`${issuer}/.well-known/openid-configuration`, { signal: AbortSignal.timeout(10_000) });
    if (!response.ok) throw new Error(`discovery failed: HTTP ${response.status}`);
    const { jwks_uri: jwksUri } = (await response.json()) as { jwks_uri: string };
    return createRemoteJWKSet(new URL(jwksUri));
  };
  return async (token: string): Promise<AuthInfo> => {
    keys ??= keySet();
    const { payload } = await jwtVerify(token, await keys, { issuer, audience, algorithms: ["ES256", "RS256", "EdDSA"] });
    const scope = typeof payload["scope"] === "string" ? payload["scope"] : "";
    const clientId = typeof payload["azp"] === "string" ? payload["azp"] : (payload.sub ?? "unknown");
    return {
      token,
      clientId,
      scopes: scope.split(" ").filter(Boolean),
      ...(payload.exp !== undefined ? { expiresAt: payload.exp } : {}),
      extra: { ...payload },
    };
  };
}

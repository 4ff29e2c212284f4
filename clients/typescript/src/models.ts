/** Typed results of the gateway's endpoints, and the parsers that check them. */

import { UnexpectedResponse } from "./errors.js";

/**
 * RFC 8693 token type of an OAuth access token (the exchange's `issued_token_type`, and
 * the default `subject_token_type`).
 */
export const ACCESS_TOKEN_TYPE = "urn:ietf:params:oauth:token-type:access_token";

const INSPECT = Symbol.for("nodejs.util.inspect.custom");

/**
 * A valid access token from `POST /auth/token` or a token exchange (`POST /oauth/token`).
 *
 * The token is held in a private field: `util.inspect`, `console.log` and
 * `JSON.stringify` show the type, expiry and scopes, never the token.
 */
export class TokenInfo {
  readonly #accessToken: string;
  /** `"Bearer"`. */
  readonly tokenType: string;
  /** When the token expires, if the gateway said. */
  readonly expiresAt: Date | null;
  /** The scopes the grant carries. */
  readonly scopes: readonly string[];

  constructor(accessToken: string, tokenType: string, expiresAt: Date | null, scopes: readonly string[]) {
    this.#accessToken = accessToken;
    this.tokenType = tokenType;
    this.expiresAt = expiresAt;
    this.scopes = Object.freeze([...scopes]);
  }

  /** The access token itself. */
  get accessToken(): string {
    return this.#accessToken;
  }

  /** The value for an `Authorization` header, e.g. `"Bearer mock_at_..."`. */
  get authorizationHeader(): string {
    return `${this.tokenType} ${this.#accessToken}`;
  }

  toJSON(): Record<string, unknown> {
    return { tokenType: this.tokenType, expiresAt: this.expiresAt, scopes: this.scopes };
  }

  [INSPECT](): string {
    const expires = this.expiresAt ? this.expiresAt.toISOString() : "null";
    return `TokenInfo { tokenType: '${this.tokenType}', expiresAt: ${expires}, scopes: [${this.scopes.map((s) => `'${s}'`).join(", ")}] }`;
  }

  /** Build from the JSON answer of `POST /auth/token`. */
  static fromJson(body: Record<string, unknown>): TokenInfo {
    return new TokenInfo(
      requireString(body, "access_token"),
      optionalString(body, "token_type") ?? "Bearer",
      parseTimestamp(body["expires_at"]),
      stringList(body, "scopes"),
    );
  }

  /**
   * Build from a token exchange's answer (RFC 8693 §2.2.1). `expires_in` counts from
   * `issuedAt`, when the request was sent, so the expiry is never later than meant.
   */
  static fromExchangeJson(body: Record<string, unknown>, issuedAt: Date): TokenInfo {
    const issuedType = body["issued_token_type"];
    if (issuedType !== undefined && issuedType !== null && issuedType !== ACCESS_TOKEN_TYPE) {
      throw new UnexpectedResponse(`Token exchange issued a ${JSON.stringify(issuedType)}, not an access token`);
    }
    const expiresIn = body["expires_in"];
    let expiresAt: Date | null = null;
    if (typeof expiresIn === "number" && Number.isFinite(expiresIn)) {
      expiresAt = new Date(issuedAt.getTime() + Math.max(0, expiresIn) * 1000);
    } else if (expiresIn !== undefined && expiresIn !== null) {
      throw new UnexpectedResponse("Gateway answer field 'expires_in' is not a number");
    }
    const scope = body["scope"];
    if (scope !== undefined && scope !== null && typeof scope !== "string") {
      throw new UnexpectedResponse("Gateway answer field 'scope' is not a string");
    }
    return new TokenInfo(
      requireString(body, "access_token"),
      optionalString(body, "token_type") ?? "Bearer",
      expiresAt,
      (scope ?? "").split(/\s+/).filter(Boolean),
    );
  }
}

/** A started OAuth flow (`POST /auth/init`, or a token exchange's `authorization_required`). */
export interface AuthSession {
  /** The link the user must open (the gateway's `/connect/<id>` page). */
  readonly authUrl: string;
  /** Poll it with `getStatus` / `waitForCompletion`. */
  readonly sessionId: string;
  /** When the flow expires if the user does not complete it. */
  readonly expiresAt: Date | null;
}

export type SessionState = "pending" | "completed" | "failed";

/** The state of an OAuth session (`GET /auth/status/{id}`). */
export interface SessionStatus {
  readonly status: SessionState;
  readonly sessionId: string;
  readonly expiresAt: Date | null;
  readonly userEmail: string | null;
  readonly provider: string | null;
  readonly completedAt: Date | null;
  /** For failed sessions, the human-readable error (`"Session expired"`). */
  readonly error: string | null;
  /** For failed sessions, the machine-readable reason (`expired`, `access_denied`, ...). */
  readonly reason: string | null;
}

/** One provider a user has connected (`GET /auth/providers/{email}`). */
export interface ProviderGrant {
  readonly provider: string;
  readonly scopes: readonly string[];
  readonly authenticatedAt: Date | null;
  readonly tokenExpiresAt: Date | null;
  /** `"active"`, or `"needs_reauth"` when the user must sign in again. */
  readonly state: string;
  readonly needsReauth: boolean;
}

/** The answer of `DELETE /auth/revoke`. */
export interface RevokeResult {
  readonly success: boolean;
  readonly message: string;
  /** `revoked`, `already_invalid`, `failed` or `not_supported` (`null` if not said). */
  readonly providerRevocation: string | null;
}

export function parseAuthSession(body: Record<string, unknown>): AuthSession {
  return {
    authUrl: requireString(body, "auth_url"),
    sessionId: requireString(body, "session_id"),
    expiresAt: parseTimestamp(body["expires_at"]),
  };
}

export function parseSessionStatus(body: Record<string, unknown>): SessionStatus {
  const status = body["status"];
  if (status !== "pending" && status !== "completed" && status !== "failed") {
    throw new UnexpectedResponse(`Unknown session status ${JSON.stringify(status ?? null)}`);
  }
  return {
    status,
    sessionId: requireString(body, "session_id"),
    expiresAt: parseTimestamp(body["expires_at"]),
    userEmail: optionalString(body, "user_email"),
    provider: optionalString(body, "provider"),
    completedAt: parseTimestamp(body["completed_at"]),
    error: optionalString(body, "error"),
    reason: optionalString(body, "reason"),
  };
}

export function parseProviderGrant(body: Record<string, unknown>): ProviderGrant {
  const state = optionalString(body, "state") ?? "active";
  return {
    provider: requireString(body, "provider"),
    scopes: stringList(body, "scopes"),
    authenticatedAt: parseTimestamp(body["authenticated_at"]),
    tokenExpiresAt: parseTimestamp(body["token_expires_at"]),
    state,
    needsReauth: state === "needs_reauth",
  };
}

export function parseRevokeResult(body: Record<string, unknown>): RevokeResult {
  return {
    success: body["success"] === true,
    message: optionalString(body, "message") ?? "",
    providerRevocation: optionalString(body, "provider_revocation"),
  };
}

/** Parse an RFC 3339 timestamp; `null`/missing stays `null`. */
export function parseTimestamp(value: unknown): Date | null {
  if (value === undefined || value === null) return null;
  if (typeof value !== "string") {
    throw new UnexpectedResponse(`Expected an RFC 3339 timestamp, got ${typeof value}`);
  }
  const date = new Date(value);
  if (Number.isNaN(date.getTime())) {
    throw new UnexpectedResponse(`Invalid timestamp ${JSON.stringify(value)} in gateway answer`);
  }
  return date;
}

export function requireString(body: Record<string, unknown>, key: string): string {
  const value = body[key];
  if (typeof value !== "string") throw new UnexpectedResponse(`Gateway answer lacks the string field '${key}'`);
  return value;
}

function optionalString(body: Record<string, unknown>, key: string): string | null {
  const value = body[key];
  return typeof value === "string" ? value : null;
}

function stringList(body: Record<string, unknown>, key: string): string[] {
  const value = body[key];
  if (value === undefined || value === null) return [];
  if (!Array.isArray(value)) throw new UnexpectedResponse(`Gateway answer field '${key}' is not a list`);
  return value.filter((item): item is string => typeof item === "string");
}

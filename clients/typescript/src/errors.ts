/**
 * Typed errors for the gateway's error codes.
 *
 * Every error body the gateway sends carries a stable `error` code; each code maps to
 * exactly one class here (see {@link ERROR_CODES}). Mapping is done by code, never by
 * HTTP status alone: a 401 is either `unauthorized` (this MCP server's API key is
 * missing) or `refresh_failed` (the *user* must sign in again), and a 403 is either
 * `forbidden` (wrong API key) or `scope_insufficient`.
 *
 * The token-exchange endpoint (`POST /oauth/token`, RFC 8693) answers with OAuth's codes
 * (RFC 6749 §5.2); they map into the same families. Its `authorization_required` answer
 * maps by its `reason` instead: to {@link NotAuthenticated}, {@link RefreshFailed} or
 * {@link ScopeInsufficient}, exactly what `/auth/token` raises for the same situation,
 * carrying the gateway's sign-in link for the verified user when it sent one.
 *
 * The families a caller can catch at once (the same as the Python client's):
 *
 * - {@link AuthorizationRequired}: the user must (re)authorize.
 * - {@link GatewayAuthError}: the gateway refused *this MCP server's* credentials. A
 *   configuration problem, never something to tell the end user to sign in for.
 * - {@link RetryableError}: temporary; `retryAfter` carries the gateway's hint.
 * - {@link RequestError}: the request itself was wrong, or the subject token of an
 *   exchange was refused ({@link SubjectTokenRejected}).
 *
 * No message, `util.inspect` or JSON output of these errors ever contains the API key or
 * an OAuth token; the sign-in link of an {@link AuthorizationRequired} is kept in a
 * private field (read it with `authUrl` or `session`).
 */

import type { AuthSession } from "./models.js";

/** Every field any error class takes; each class uses those that apply to it. */
export interface ErrorInit {
  /** The gateway's code, when it differs from the class's own (`authorization_required`). */
  code?: string | null;
  statusCode?: number | null;
  requestId?: string | null;
  retryAfter?: number | null;
  reason?: string | null;
  missingScopes?: readonly string[];
  authUrl?: string | null;
  sessionId?: string | null;
  expiresAt?: Date | null;
  cause?: unknown;
}

/** Base class of every error this package throws about the gateway. */
export class AuthGatewayError extends Error {
  /** The code this class stands for; `null` on classes that are not tied to one. */
  static readonly errorCode: string | null = null;

  /** The gateway's stable error code, or `null` (network error, unexpected body). */
  readonly code: string | null;
  /** The gateway's own text (never contains a secret), without the details below. */
  gatewayMessage: string;
  /** The HTTP status, when there was a response. */
  readonly statusCode: number | null;
  /** The gateway's request id, for correlating with its logs. */
  readonly requestId: string | null;

  constructor(message: string, init: ErrorInit = {}) {
    const ctor = new.target;
    const code = init.code ?? ctor.errorCode;
    super(formatMessage(message, code, init), init.cause === undefined ? undefined : { cause: init.cause });
    this.name = ctor.name;
    this.code = code;
    this.gatewayMessage = message;
    this.statusCode = init.statusCode ?? null;
    this.requestId = init.requestId ?? null;
  }

  /** A plain object without secrets (what `JSON.stringify` shows). */
  toJSON(): Record<string, unknown> {
    return {
      name: this.name,
      message: this.message,
      code: this.code,
      statusCode: this.statusCode,
      requestId: this.requestId,
    };
  }
}

function formatMessage(message: string, code: string | null, init: ErrorInit): string {
  const details: string[] = [];
  if (code) details.push(`error=${code}`);
  if (init.statusCode !== undefined && init.statusCode !== null) details.push(`status=${init.statusCode}`);
  if (init.requestId) details.push(`request_id=${init.requestId}`);
  let text = details.length > 0 ? `${message} (${details.join(", ")})` : message;
  if (init.retryAfter !== undefined && init.retryAfter !== null) text += ` [retry after ${init.retryAfter}s]`;
  return text;
}

// --- the user must (re)authorize ------------------------------------------------------

/**
 * The user has to go through an OAuth flow before a token can be handed out.
 *
 * `reason` is `not_authenticated`, `refresh_failed` or `scope_insufficient`;
 * `missingScopes` the scopes still to grant. After a token exchange, `authUrl`,
 * `sessionId` and `expiresAt` (or all three as `session`) are the sign-in the gateway
 * started for the verified user, when this MCP server's API client has the `init` right.
 * The link has been checked to be on the gateway's origin and is kept out of the
 * message, `util.inspect` and JSON.
 */
export class AuthorizationRequired extends AuthGatewayError {
  readonly reason: string | null;
  readonly missingScopes: string[];
  readonly sessionId: string | null;
  readonly expiresAt: Date | null;
  readonly #authUrl: string | null;

  constructor(message: string, init: ErrorInit = {}) {
    super(message, init);
    const ctor = new.target as typeof AuthGatewayError;
    this.reason = init.reason ?? ctor.errorCode;
    this.missingScopes = [...(init.missingScopes ?? [])];
    this.#authUrl = init.authUrl ?? null;
    this.sessionId = init.sessionId ?? null;
    this.expiresAt = init.expiresAt ?? null;
  }

  /** The connect link of the sign-in the gateway started (token exchange), if any. */
  get authUrl(): string | null {
    return this.#authUrl;
  }

  /** That sign-in as an {@link AuthSession}; `null` when the gateway started none. */
  get session(): AuthSession | null {
    if (this.#authUrl === null || this.sessionId === null) return null;
    return { authUrl: this.#authUrl, sessionId: this.sessionId, expiresAt: this.expiresAt };
  }

  override toJSON(): Record<string, unknown> {
    return { ...super.toJSON(), reason: this.reason, missingScopes: this.missingScopes, sessionId: this.sessionId };
  }
}

/** `not_authenticated` (404): no credential is stored for this user and provider. */
export class NotAuthenticated extends AuthorizationRequired {
  static override readonly errorCode: string | null = "not_authenticated";
}

/**
 * `refresh_failed` (401): the stored credential can no longer be refreshed (revoked,
 * `needs_reauth`); the user must sign in again. Not to be confused with {@link Unauthorized}.
 */
export class RefreshFailed extends AuthorizationRequired {
  static override readonly errorCode: string | null = "refresh_failed";
}

/** `scope_insufficient` (403): the grant lacks `missingScopes`. */
export class ScopeInsufficient extends AuthorizationRequired {
  static override readonly errorCode: string | null = "scope_insufficient";
}

/** The `reason` of a token exchange's `authorization_required` answer → its class. */
export const AUTHORIZATION_REASONS: Readonly<Record<string, typeof AuthorizationRequired>> = Object.freeze({
  not_authenticated: NotAuthenticated,
  refresh_failed: RefreshFailed,
  scope_insufficient: ScopeInsufficient,
});

// --- this MCP server's own credentials were refused -----------------------------------

/**
 * The gateway refused this MCP server's API key or API client. A deployment problem:
 * the end user signing in would not help, so this is never reported as "please sign in".
 */
export class GatewayAuthError extends AuthGatewayError {}

/** `unauthorized` (401): no API key was sent, or it was empty. */
export class Unauthorized extends GatewayAuthError {
  static override readonly errorCode: string | null = "unauthorized";
}

/** `forbidden` (403): the API key is wrong, or not allowed to do this. */
export class Forbidden extends GatewayAuthError {
  static override readonly errorCode: string | null = "forbidden";
}

/**
 * `exchange_required` (403): this API client was registered with `--require-exchange`,
 * so it may not name a user; it must prove the user by token exchange.
 */
export class ExchangeRequired extends GatewayAuthError {
  static override readonly errorCode: string | null = "exchange_required";
}

/** `invalid_client` (401, token exchange): no API key was sent, or it is wrong. */
export class InvalidClient extends GatewayAuthError {
  static override readonly errorCode: string | null = "invalid_client";
}

/**
 * `unauthorized_client` (400, token exchange): this API client may not exchange tokens,
 * or not for this user (no `token` right, no registered audience, or the user's domain
 * outside its domains). `reason` says which when the gateway sent it.
 */
export class UnauthorizedClient extends GatewayAuthError {
  static override readonly errorCode: string | null = "unauthorized_client";
  readonly reason: string | null;

  constructor(message: string, init: ErrorInit = {}) {
    super(message, init);
    this.reason = init.reason ?? null;
  }
}

// --- temporary failures -----------------------------------------------------------------

/** A temporary failure; `retryAfter` is the wait in seconds the gateway asked for, if any. */
export class RetryableError extends AuthGatewayError {
  readonly retryAfter: number | null;

  constructor(message: string, init: ErrorInit = {}) {
    super(message, init);
    this.retryAfter = init.retryAfter ?? null;
  }

  override toJSON(): Record<string, unknown> {
    return { ...super.toJSON(), retryAfter: this.retryAfter };
  }
}

/** `provider_unavailable` (503): the OAuth provider is failing or unreachable. */
export class ProviderUnavailable extends RetryableError {
  static override readonly errorCode: string | null = "provider_unavailable";
}

/** `busy` (503): another replica holds the credential's refresh lease. */
export class Busy extends RetryableError {
  static override readonly errorCode: string | null = "busy";
}

/** `rate_limited` (429): too many requests from this client. */
export class RateLimited extends RetryableError {
  static override readonly errorCode: string | null = "rate_limited";
}

/** `slow_down` (429, token exchange): too many requests from this client. */
export class SlowDown extends RateLimited {
  static override readonly errorCode: string | null = "slow_down";
}

/** `service_unavailable` (503): the gateway itself cannot serve (database down, ...). */
export class ServiceUnavailable extends RetryableError {
  static override readonly errorCode: string | null = "service_unavailable";
}

/** `internal_error` (500): a bug or an unexpected failure inside the gateway. */
export class InternalError extends RetryableError {
  static override readonly errorCode: string | null = "internal_error";
}

/**
 * `temporarily_unavailable` (503, token exchange): the identity provider's signing keys
 * cannot be fetched, or the provider or the gateway's database is unavailable.
 */
export class TemporarilyUnavailable extends RetryableError {
  static override readonly errorCode: string | null = "temporarily_unavailable";
}

/** `server_error` (500, token exchange): an unexpected failure inside the gateway. */
export class ServerError extends InternalError {
  static override readonly errorCode: string | null = "server_error";
}

// --- the request was wrong --------------------------------------------------------------

/** The gateway rejected the request itself; retrying it unchanged will not help. */
export class RequestError extends AuthGatewayError {}

/** `unknown_provider` (400): the gateway has no provider by that name. */
export class UnknownProvider extends RequestError {
  static override readonly errorCode: string | null = "unknown_provider";
}

/** `invalid_email` (400): the user email is not a valid address. */
export class InvalidEmail extends RequestError {
  static override readonly errorCode: string | null = "invalid_email";
}

/** `invalid_request` (400): malformed body or parameters. */
export class InvalidRequest extends RequestError {
  static override readonly errorCode: string | null = "invalid_request";
}

/** `session_not_found` (404): no OAuth session with that id. */
export class SessionNotFound extends RequestError {
  static override readonly errorCode: string | null = "session_not_found";
}

/** `not_found` (404): no such route (a wrong gateway URL path, usually). */
export class NotFound extends RequestError {
  static override readonly errorCode: string | null = "not_found";
}

/** `method_not_allowed` (405). */
export class MethodNotAllowed extends RequestError {
  static override readonly errorCode: string | null = "method_not_allowed";
}

/** `payload_too_large` (413). */
export class PayloadTooLarge extends RequestError {
  static override readonly errorCode: string | null = "payload_too_large";
}

/** `unsupported_media_type` (415). */
export class UnsupportedMediaType extends RequestError {
  static override readonly errorCode: string | null = "unsupported_media_type";
}

/**
 * `invalid_target` (400, token exchange): the `audience` is not a provider this gateway
 * serves, or not one this API client may use.
 */
export class InvalidTarget extends RequestError {
  static override readonly errorCode: string | null = "invalid_target";
  readonly reason: string | null;

  constructor(message: string, init: ErrorInit = {}) {
    super(message, init);
    this.reason = init.reason ?? null;
  }
}

/** `unsupported_grant_type` (400, token exchange). */
export class UnsupportedGrantType extends RequestError {
  static override readonly errorCode: string | null = "unsupported_grant_type";
}

/**
 * `invalid_grant` (400, token exchange): the gateway refused the subject token. `reason`
 * says why: `malformed`, `algorithm_refused`, `untrusted_issuer`, `unknown_key`,
 * `bad_signature`, `wrong_audience`, `expired`, `not_yet_valid`, `too_old`,
 * `missing_claim`, `invalid_email`, `unverified_email`, `assertion_lifetime`,
 * `assertion_too_old` or `replayed` (`null` if the gateway gave none). The token itself
 * is never part of the message.
 */
export class SubjectTokenRejected extends RequestError {
  static override readonly errorCode: string | null = "invalid_grant";
  readonly reason: string | null;

  constructor(message: string, init: ErrorInit = {}) {
    super(message, init);
    this.reason = init.reason ?? null;
  }

  override toJSON(): Record<string, unknown> {
    return { ...super.toJSON(), reason: this.reason };
  }
}

// --- failures without a gateway error code ----------------------------------------------

/** The gateway could not be reached (connection refused, DNS, TLS, ...). */
export class GatewayConnectionError extends AuthGatewayError {}

/** The gateway did not answer within the configured timeout. */
export class GatewayTimeout extends GatewayConnectionError {}

/**
 * The gateway answered something this client does not understand: a non-JSON error body
 * (a proxy's HTML page), an error code this version does not know, or a success body
 * missing required fields.
 */
export class UnexpectedResponse extends AuthGatewayError {}

/** An OAuth session ended in `failed` (expired, access_denied, account_mismatch, ...). */
export class AuthSessionFailed extends AuthGatewayError {
  readonly sessionId: string;
  readonly reason: string | null;

  constructor(message: string, sessionId: string, reason: string | null = null) {
    super(message, { code: "session_failed" });
    this.sessionId = sessionId;
    this.reason = reason;
  }
}

/** `waitForCompletion` gave up while the session was still pending. */
export class AuthorizationTimeout extends AuthGatewayError {
  readonly sessionId: string;

  constructor(message: string, sessionId: string) {
    super(message, { code: "timeout" });
    this.sessionId = sessionId;
  }
}

/**
 * The gateway returned a sign-in link on another origin than the gateway's own. The link
 * is not shown to anyone (a user signs in wherever it leads). A gateway reached through a
 * proxy that hands out links on another address is configured with
 * `new AuthClient(url, key, { publicUrl })`. `origin` is the link's origin, or `null`
 * when it cannot be read safely; the whole link is kept out of the message.
 */
export class UntrustedAuthUrl extends AuthGatewayError {
  readonly origin: string | null;
  readonly trustedOrigins: readonly string[];

  constructor(origin: string | null, trustedOrigins: readonly string[]) {
    const where = origin ? `on ${origin}` : "whose origin cannot be read safely";
    super(
      `The gateway returned a sign-in link ${where}, outside the gateway's own origin ` +
        `(${trustedOrigins.join(", ")}); it is not shown to the user. If the gateway is reached ` +
        "through a proxy that serves it on another address, pass that address as publicUrl.",
      { code: "untrusted_auth_url" },
    );
    this.origin = origin;
    this.trustedOrigins = trustedOrigins;
  }
}

/**
 * The warning `AuthClient` emits (through `process.emitWarning`) when the gateway URL is
 * plain `http` to a host that is not loopback: the API key and the users' access tokens
 * would cross the network unencrypted.
 */
export class InsecureGatewayUrlWarning extends Error {
  constructor(message: string) {
    super(message);
    this.name = "InsecureGatewayUrlWarning";
  }
}

type CodedClass = typeof AuthGatewayError & { readonly errorCode: string | null };

const CODED: readonly CodedClass[] = [
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
  // POST /oauth/token (RFC 6749 §5.2, RFC 8693 §2.2.2); invalid_request is shared.
  InvalidClient,
  UnauthorizedClient,
  InvalidTarget,
  UnsupportedGrantType,
  SubjectTokenRejected,
  SlowDown,
  TemporarilyUnavailable,
  ServerError,
];

/**
 * Gateway error code → error class, one to one. The token exchange's
 * `authorization_required` is not here: it maps by its `reason` ({@link AUTHORIZATION_REASONS}).
 */
export const ERROR_CODES: Readonly<Record<string, typeof AuthGatewayError>> = Object.freeze(
  Object.fromEntries(CODED.map((cls) => [cls.errorCode as string, cls])),
);

/** The `error` code of a token exchange's "the user must sign in" answer. */
export const AUTHORIZATION_REQUIRED_CODE = "authorization_required";

/** Headers of an error answer that the mapping reads. */
export interface ErrorHeaders {
  retryAfter?: string | null;
  requestId?: string | null;
}

/**
 * The error for a gateway error answer: an instance of the class its `error` code maps
 * to, or {@link UnexpectedResponse} when the body carries no known code.
 *
 * @param statusCode The HTTP status.
 * @param body The decoded JSON body (anything; non-objects are handled).
 * @param headers `Retry-After` and `X-Request-Id`, when present.
 */
export function errorFromResponse(statusCode: number, body: unknown, headers: ErrorHeaders = {}): AuthGatewayError {
  if (!isRecord(body)) {
    return new UnexpectedResponse(`Gateway answered HTTP ${statusCode} without a JSON error body`, {
      statusCode,
      requestId: headers.requestId ?? null,
    });
  }
  const code = body["error"];
  let raw = body["message"];
  if (!(typeof raw === "string" && raw)) raw = body["error_description"]; // OAuth's field
  const message = typeof raw === "string" && raw ? raw : `Gateway error ${JSON.stringify(code)}`;
  const bodyRequestId = body["request_id"];
  const requestId = typeof bodyRequestId === "string" ? bodyRequestId : (headers.requestId ?? null);
  if (code === AUTHORIZATION_REQUIRED_CODE) {
    const reason = optionalString(body, "reason");
    const cls = (reason !== null ? AUTHORIZATION_REASONS[reason] : undefined) ?? AuthorizationRequired;
    return new cls(message, {
      code: AUTHORIZATION_REQUIRED_CODE,
      reason,
      missingScopes: stringList(body, "missing_scopes"),
      authUrl: optionalString(body, "auth_url"),
      sessionId: optionalString(body, "session_id"),
      expiresAt: optionalDate(body["expires_at"]),
      statusCode,
      requestId,
    });
  }
  const cls = typeof code === "string" && Object.hasOwn(ERROR_CODES, code) ? ERROR_CODES[code] : undefined;
  if (cls === undefined) {
    return new UnexpectedResponse(
      `Gateway answered HTTP ${statusCode} with unknown error code ${JSON.stringify(code ?? null)}: ${message}`,
      { code: typeof code === "string" ? code : null, statusCode, requestId },
    );
  }
  return new cls(message, {
    statusCode,
    requestId,
    missingScopes: stringList(body, "missing_scopes"),
    retryAfter: parseRetryAfter(body["retry_after"], headers.retryAfter ?? null),
    reason: optionalString(body, "reason"),
  });
}

/** Seconds from the body's `retry_after` or the `Retry-After` header (seconds only). */
export function parseRetryAfter(bodyValue: unknown, headerValue: string | null): number | null {
  if (typeof bodyValue === "number" && Number.isInteger(bodyValue) && bodyValue >= 0) return bodyValue;
  if (headerValue !== null) {
    const text = headerValue.trim();
    // An HTTP-date is ignored: the gateway sends seconds.
    if (/^\d+$/.test(text)) return Number.parseInt(text, 10);
  }
  return null;
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

function optionalString(body: Record<string, unknown>, key: string): string | null {
  const value = body[key];
  return typeof value === "string" && value ? value : null;
}

function stringList(body: Record<string, unknown>, key: string): string[] {
  const value = body[key];
  return Array.isArray(value) ? value.filter((item): item is string => typeof item === "string") : [];
}

function optionalDate(value: unknown): Date | null {
  if (typeof value !== "string") return null;
  const date = new Date(value);
  return Number.isNaN(date.getTime()) ? null : date;
}

/**
 * Remove `secret` from an error's message (a defence: the gateway does not echo subject
 * tokens, but an intermediary or a future bug might).
 */
export function redactSecret(error: AuthGatewayError, secret: string, replacement = "[subject_token]"): void {
  if (!secret) return;
  if (error.message.includes(secret)) error.message = error.message.split(secret).join(replacement);
  if (error.gatewayMessage.includes(secret)) error.gatewayMessage = error.gatewayMessage.split(secret).join(replacement);
  if (error.stack?.includes(secret)) error.stack = error.stack.split(secret).join(replacement);
}

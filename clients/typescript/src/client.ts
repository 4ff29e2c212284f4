/**
 * The gateway client.
 *
 * Talks to the gateway's HTTP API with the platform's `fetch` (Node's keeps connections
 * alive and reuses them across calls), sends the API key as `X-API-Key`, applies a
 * timeout to every request (and honours the caller's `AbortSignal`), and turns every
 * error answer into the error class its code maps to (`./errors.ts`). It warns about a
 * plain-http gateway URL to another machine and refuses sign-in links outside the
 * gateway's origin (`./links.ts`). This module does not depend on the MCP SDK.
 */

import {
  AuthGatewayError,
  AuthorizationRequired,
  AuthorizationTimeout,
  AuthSessionFailed,
  GatewayConnectionError,
  GatewayTimeout,
  InsecureGatewayUrlWarning,
  UnexpectedResponse,
  UntrustedAuthUrl,
  errorFromResponse,
  redactSecret,
} from "./errors.js";
import { linkOrigin, originOf, plainHttpToRemoteHost } from "./links.js";
import {
  ACCESS_TOKEN_TYPE,
  TokenInfo,
  parseAuthSession,
  parseProviderGrant,
  parseRevokeResult,
  parseSessionStatus,
  type AuthSession,
  type ProviderGrant,
  type RevokeResult,
  type SessionStatus,
} from "./models.js";
import { VERSION } from "./version.js";

/** Default per-request timeout, in milliseconds. */
export const DEFAULT_TIMEOUT_MS = 10_000;
/** The longest long-poll the gateway accepts on `/auth/status` (seconds). */
export const MAX_STATUS_WAIT_SECONDS = 60;
/** RFC 8693 grant type of `POST /oauth/token`. */
export const TOKEN_EXCHANGE_GRANT_TYPE = "urn:ietf:params:oauth:grant-type:token-exchange";
/** `subject_token_type` for a JWT that is not an access token (a worker assertion). */
export const JWT_TOKEN_TYPE = "urn:ietf:params:oauth:token-type:jwt";
/** `subject_token_type` for an OpenID Connect ID token. */
export const ID_TOKEN_TYPE = "urn:ietf:params:oauth:token-type:id_token";
export { ACCESS_TOKEN_TYPE };

/** Error codes of a connection the server closed or reset before answering. */
const DROPPED = new Set(["UND_ERR_SOCKET", "ECONNRESET", "EPIPE", "UND_ERR_CLOSED"]);
const INSPECT = Symbol.for("nodejs.util.inspect.custom");

export interface AuthClientOptions {
  /** Milliseconds allowed for each request (long-polls get their wait on top). Default 10 000. */
  timeoutMs?: number;
  /**
   * The gateway's public address (its `PUBLIC_BASE_URL`) when it differs from
   * `gatewayUrl`. Sign-in links must be on the origin of `gatewayUrl` or of `publicUrl`;
   * any other link throws {@link UntrustedAuthUrl} instead of reaching a user.
   */
  publicUrl?: string;
  /** A `fetch` to use instead of the global one (a proxy agent, a stand-in in tests). */
  fetch?: typeof fetch;
}

/** Per-call options. */
export interface CallOptions {
  /** Abort the call (the caller's cancellation is re-thrown as is, not wrapped). */
  signal?: AbortSignal;
  /** This call's timeout instead of the client's. */
  timeoutMs?: number;
}

export interface TokenOptions extends CallOptions {
  /** Scopes the token must carry; the gateway answers `scope_insufficient` otherwise. */
  requiredScopes?: readonly string[];
}

export interface ExchangeOptions extends CallOptions {
  /** `ACCESS_TOKEN_TYPE` (default), `JWT_TOKEN_TYPE` or `ID_TOKEN_TYPE`. */
  subjectTokenType?: string;
}

export interface InitOptions extends CallOptions {
  /** Scopes to request; the provider's defaults when omitted. */
  scopes?: readonly string[];
  /** Where the success page sends the browser afterwards. */
  redirectAfter?: string;
}

export interface StatusOptions extends CallOptions {
  /** Long-poll up to this many seconds (0..60, rounded up) for the session to leave `pending`. */
  waitSeconds?: number;
}

interface RequestSpec {
  method: "GET" | "POST" | "DELETE";
  path: string;
  json?: Record<string, unknown>;
  form?: Record<string, string>;
  query?: Record<string, string>;
  extraMs?: number;
  options: CallOptions | undefined;
}

/**
 * Client of the auth gateway.
 *
 * ```ts
 * const gateway = new AuthClient("http://localhost:8000", apiKey);
 * const token = await gateway.getToken("google", "alice@company.com");
 * // or, proving the user with the access token they presented to this MCP server:
 * const proven = await gateway.exchangeToken(usersAccessToken, "google");
 * ```
 *
 * The API key lives in a private field: it is sent as `X-API-Key` and never appears in
 * an error, `util.inspect` or `JSON.stringify` output. A `gatewayUrl` with plain `http`
 * to a host other than loopback works but emits an {@link InsecureGatewayUrlWarning}.
 *
 * A request whose pooled keep-alive connection the gateway closes or resets before
 * answering is sent once more on a fresh connection (the gateway's calls are safe to
 * repeat); timeouts, refused connections and every error answer are thrown at once.
 */
export class AuthClient {
  readonly #apiKey: string;
  readonly #baseUrl: string;
  readonly #linkOrigins: readonly string[];
  readonly #timeoutMs: number;
  readonly #fetch: typeof fetch;

  constructor(gatewayUrl: string, apiKey: string, options: AuthClientOptions = {}) {
    if (typeof gatewayUrl !== "string" || !gatewayUrl) throw new TypeError("gatewayUrl must be a non-empty URL");
    const gatewayOrigin = originOf(gatewayUrl);
    if (gatewayOrigin === null) throw new TypeError("gatewayUrl must be an absolute http(s) URL");
    const origins = [gatewayOrigin];
    if (options.publicUrl !== undefined) {
      const publicOrigin = originOf(options.publicUrl);
      if (publicOrigin === null) throw new TypeError("publicUrl must be an absolute http(s) URL");
      if (!origins.includes(publicOrigin)) origins.push(publicOrigin);
    }
    if (typeof apiKey !== "string" || !apiKey) throw new TypeError("apiKey must be a non-empty string");
    const timeoutMs = options.timeoutMs ?? DEFAULT_TIMEOUT_MS;
    if (!(timeoutMs > 0) || !Number.isFinite(timeoutMs)) throw new RangeError("timeoutMs must be a positive number");
    const remoteHost = plainHttpToRemoteHost(gatewayUrl);
    if (remoteHost !== null) {
      // A warning, not an error: a private network or a mesh that encrypts on its own may
      // be deliberate, but it should be a visible decision.
      emitWarning(
        new InsecureGatewayUrlWarning(
          `AuthClient: gatewayUrl uses plain http to ${remoteHost}, which is not a loopback address; ` +
            "the API key and users' access tokens cross the network unencrypted. Use https.",
        ),
      );
    }
    this.#apiKey = apiKey;
    this.#baseUrl = gatewayUrl.replace(/\/+$/, "");
    this.#linkOrigins = Object.freeze(origins);
    this.#timeoutMs = timeoutMs;
    this.#fetch = options.fetch ?? globalThis.fetch.bind(globalThis);
  }

  /** The gateway base URL (without a trailing slash). */
  get gatewayUrl(): string {
    return this.#baseUrl;
  }

  /** The origins (`scheme://host:port`) a sign-in link may have. */
  get trustedLinkOrigins(): readonly string[] {
    return this.#linkOrigins;
  }

  /** The per-request timeout in milliseconds. */
  get timeoutMs(): number {
    return this.#timeoutMs;
  }

  toString(): string {
    return `AuthClient(${this.#baseUrl})`;
  }

  toJSON(): Record<string, unknown> {
    return { gatewayUrl: this.#baseUrl };
  }

  [INSPECT](): string {
    return `AuthClient { gatewayUrl: '${this.#baseUrl}' }`;
  }

  // --- the API --------------------------------------------------------------------------

  /**
   * A valid access token for the user (the gateway refreshes it when needed).
   *
   * @throws {NotAuthenticated} nothing stored for this user and provider.
   * @throws {RefreshFailed} the credential can no longer be refreshed; sign in again.
   * @throws {ScopeInsufficient} the grant lacks `missingScopes`.
   * @throws {GatewayAuthError} this server's API key was refused (`ExchangeRequired`
   *   when its API client was registered with `--require-exchange`).
   * @throws {ProviderUnavailable} the provider is down; see `retryAfter`.
   */
  async getToken(provider: string, userEmail: string, options?: TokenOptions): Promise<string> {
    return (await this.getTokenInfo(provider, userEmail, options)).accessToken;
  }

  /** Like {@link getToken}, with the token's type, expiry and scopes. */
  async getTokenInfo(provider: string, userEmail: string, options?: TokenOptions): Promise<TokenInfo> {
    const json: Record<string, unknown> = { provider, user_email: userEmail };
    if (options?.requiredScopes?.length) json["required_scopes"] = [...options.requiredScopes];
    const body = await this.#request({ method: "POST", path: "/auth/token", json, options });
    return TokenInfo.fromJson(body);
  }

  /**
   * Exchange the user's access token for their token at `provider` (RFC 8693,
   * `POST /oauth/token`). The gateway verifies `subjectToken` (a JWT a trusted identity
   * provider issued for this MCP server) and answers for the user it proves: the user is
   * never named by the caller. The API client needs a registered audience (`gateway
   * clients update NAME --audience ...`); the bootstrap key has none.
   *
   * The subject token is sent in the form body only and never appears in an error.
   *
   * @throws {NotAuthenticated | RefreshFailed | ScopeInsufficient} the verified user must
   *   (re)authorize; `authUrl`/`sessionId`/`session` carry the link the gateway started
   *   for them when this API client has the `init` right.
   * @throws {UntrustedAuthUrl} that link is not on the gateway's origin.
   * @throws {SubjectTokenRejected} the subject token was refused; `reason` says why.
   * @throws {InvalidClient} this server's API key is missing or wrong.
   * @throws {UnauthorizedClient} this API client may not exchange (for this user).
   * @throws {InvalidTarget} no such provider, or not one this API client may use.
   * @throws {SlowDown | TemporarilyUnavailable | ServerError} temporary (`retryAfter`).
   */
  async exchangeToken(
    subjectToken: string,
    provider: string,
    scopes?: readonly string[] | null,
    options?: ExchangeOptions,
  ): Promise<string> {
    return (await this.exchangeTokenInfo(subjectToken, provider, scopes, options)).accessToken;
  }

  /**
   * Like {@link exchangeToken}, with the token's type, expiry and scopes; `expiresAt` is
   * computed from the answer's `expires_in`, counted from when the request was sent.
   */
  async exchangeTokenInfo(
    subjectToken: string,
    provider: string,
    scopes?: readonly string[] | null,
    options?: ExchangeOptions,
  ): Promise<TokenInfo> {
    if (typeof subjectToken !== "string" || !subjectToken) throw new TypeError("subjectToken must be a non-empty string");
    if (typeof provider !== "string" || !provider) throw new TypeError("provider must be a non-empty provider id");
    if (typeof scopes === "string") throw new TypeError("scopes must be an array of scope names, not one string");
    const subjectTokenType = options?.subjectTokenType ?? ACCESS_TOKEN_TYPE;
    if (!subjectTokenType) throw new TypeError("subjectTokenType must be a token type URN");
    const form: Record<string, string> = {
      grant_type: TOKEN_EXCHANGE_GRANT_TYPE,
      subject_token: subjectToken,
      subject_token_type: subjectTokenType,
      audience: provider,
    };
    const scope = (scopes ?? []).filter(Boolean).join(" ");
    if (scope) form["scope"] = scope;
    const issuedAt = new Date();
    let body: Record<string, unknown>;
    try {
      body = await this.#request({ method: "POST", path: "/oauth/token", form, options });
    } catch (error) {
      if (error instanceof AuthGatewayError) {
        redactSecret(error, subjectToken);
        if (error instanceof AuthorizationRequired && error.authUrl !== null) this.#checkLink(error.authUrl);
      }
      throw error;
    }
    return TokenInfo.fromExchangeJson(body, issuedAt);
  }

  /**
   * Start an OAuth flow and return the link the user must open. The same call while the
   * session is pending and its link unused returns the same session.
   *
   * @throws {UntrustedAuthUrl} the gateway's link is not on its own origin.
   */
  async initOAuth(provider: string, userEmail: string, options?: InitOptions): Promise<AuthSession> {
    const json: Record<string, unknown> = { provider, user_email: userEmail };
    if (options?.scopes?.length) json["scopes"] = [...options.scopes];
    if (options?.redirectAfter !== undefined) json["redirect_after"] = options.redirectAfter;
    const body = await this.#request({ method: "POST", path: "/auth/init", json, options });
    const session = parseAuthSession(body);
    // Checked here, where every link enters the package, so that no caller (the
    // wrapper's elicitation, its tool error, a script printing it) shows one that leads
    // somewhere else.
    this.#checkLink(session.authUrl);
    return session;
  }

  /**
   * An OAuth session's state; `waitSeconds` long-polls (0..60): the gateway answers as
   * soon as the session leaves `pending`.
   *
   * @throws {SessionNotFound} no such session.
   */
  async getStatus(sessionId: string, options?: StatusOptions): Promise<SessionStatus> {
    const query: Record<string, string> = {};
    let extraMs = 0;
    const wait = options?.waitSeconds;
    if (wait !== undefined) {
      if (!(wait >= 0 && wait <= MAX_STATUS_WAIT_SECONDS)) {
        throw new RangeError(`waitSeconds must be between 0 and ${MAX_STATUS_WAIT_SECONDS}`);
      }
      const seconds = Math.ceil(wait);
      query["wait"] = String(seconds);
      extraMs = seconds * 1000;
    }
    const path = `/auth/status/${encodeURIComponent(sessionId)}`;
    const body = await this.#request({ method: "GET", path, query, extraMs, options });
    return parseSessionStatus(body);
  }

  /**
   * Wait (bounded by `timeoutMs`) until the user completes the flow, on the gateway's
   * long-poll.
   *
   * @returns the `completed` status.
   * @throws {AuthSessionFailed} the flow failed (expired, denied, wrong account, ...).
   * @throws {AuthorizationTimeout} still pending when `timeoutMs` ran out.
   */
  async waitForCompletion(sessionId: string, timeoutMs: number, options?: CallOptions): Promise<SessionStatus> {
    if (!(timeoutMs >= 0)) throw new RangeError("timeoutMs must not be negative");
    const deadline = performance.now() + timeoutMs;
    for (;;) {
      const remainingSeconds = Math.max(0, Math.floor((deadline - performance.now()) / 1000));
      const status = await this.getStatus(sessionId, {
        ...options,
        waitSeconds: Math.min(MAX_STATUS_WAIT_SECONDS, remainingSeconds),
      });
      if (status.status === "completed") return status;
      if (status.status === "failed") {
        const reason = status.reason ? ` (${status.reason})` : "";
        throw new AuthSessionFailed(
          `Authorization failed: ${status.error ?? "session failed"}${reason}`,
          sessionId,
          status.reason,
        );
      }
      if (deadline - performance.now() < 1000) {
        // The long-poll has whole-second granularity: with less than a second left, one
        // more poll would overshoot the caller's bound.
        throw new AuthorizationTimeout(`Authorization still pending after ${timeoutMs / 1000}s`, sessionId);
      }
    }
  }

  /**
   * True when a valid token (with `requiredScopes`) can be had right now. Only "the user
   * must authorize" answers give `false`; any other failure (a bad API key, the provider
   * being down) is thrown, so that it is not mistaken for a user who is not signed in.
   */
  async isAuthenticated(provider: string, userEmail: string, options?: TokenOptions): Promise<boolean> {
    try {
      await this.getTokenInfo(provider, userEmail, options);
    } catch (error) {
      if (error instanceof AuthorizationRequired) return false;
      throw error;
    }
    return true;
  }

  /** The providers the user has connected, with scopes and state. */
  async listProviders(userEmail: string, options?: CallOptions): Promise<ProviderGrant[]> {
    const path = `/auth/providers/${encodeURIComponent(userEmail)}`;
    const body = await this.#request({ method: "GET", path, options });
    const providers = body["providers"];
    if (!Array.isArray(providers)) throw new UnexpectedResponse("Gateway answer lacks the 'providers' list");
    return providers.filter(isRecord).map(parseProviderGrant);
  }

  /**
   * Revoke the user's grant at the provider and delete the stored credential.
   *
   * @throws {NotAuthenticated} nothing was stored.
   */
  async revoke(provider: string, userEmail: string, options?: CallOptions): Promise<RevokeResult> {
    const json = { provider, user_email: userEmail };
    const body = await this.#request({ method: "DELETE", path: "/auth/revoke", json, options });
    return parseRevokeResult(body);
  }

  /** The gateway's `/health` answer. */
  async health(options?: CallOptions): Promise<Record<string, unknown>> {
    return await this.#request({ method: "GET", path: "/health", options });
  }

  // --- transport ------------------------------------------------------------------------

  #checkLink(authUrl: string): void {
    const origin = linkOrigin(authUrl);
    if (origin === null || !this.#linkOrigins.includes(origin)) {
      throw new UntrustedAuthUrl(origin, this.#linkOrigins);
    }
  }

  async #request(spec: RequestSpec): Promise<Record<string, unknown>> {
    const { method, path } = spec;
    const url = new URL(this.#baseUrl + path);
    for (const [name, value] of Object.entries(spec.query ?? {})) url.searchParams.set(name, value);
    const headers: Record<string, string> = {
      "X-API-Key": this.#apiKey,
      Accept: "application/json",
      "User-Agent": `mcp-auth-client-ts/${VERSION}`,
    };
    let body: string | undefined;
    if (spec.json !== undefined) {
      headers["Content-Type"] = "application/json";
      body = JSON.stringify(spec.json);
    } else if (spec.form !== undefined) {
      headers["Content-Type"] = "application/x-www-form-urlencoded";
      body = new URLSearchParams(spec.form).toString();
    }
    const limitMs = (spec.options?.timeoutMs ?? this.#timeoutMs) + (spec.extraMs ?? 0);
    const callerSignal = spec.options?.signal;
    callerSignal?.throwIfAborted();
    const timeout = AbortSignal.timeout(limitMs);
    const signal = callerSignal ? AbortSignal.any([callerSignal, timeout]) : timeout;
    const what = `${method} ${path.split("/").slice(0, 3).join("/")}`;

    for (let attempt = 0; ; attempt++) {
      let response: Response;
      let text: string;
      try {
        response = await this.#fetch(url, { method, headers, body: body ?? null, signal, redirect: "manual" });
        text = await response.text();
      } catch (error) {
        if (callerSignal?.aborted) throw callerSignal.reason;
        if (timeout.aborted) {
          throw new GatewayTimeout(`Gateway did not answer ${what} within ${limitMs / 1000}s`, { cause: error });
        }
        if (attempt === 0 && isDroppedConnection(error)) {
          // The server closed or reset a pooled keep-alive connection without an answer:
          // almost always one it dropped as the request went out, unprocessed. Once more,
          // on a fresh connection; the gateway's calls are safe to repeat.
          continue;
        }
        throw new GatewayConnectionError(`Cannot reach the gateway for ${what}: ${describe(error)}`, { cause: error });
      }
      return decode(response, text);
    }
  }
}

function decode(response: Response, text: string): Record<string, unknown> {
  let body: unknown;
  try {
    body = text ? JSON.parse(text) : null;
  } catch {
    body = null; // not JSON: a proxy's page, say
  }
  const requestId = response.headers.get("x-request-id");
  if (response.status >= 400) {
    throw errorFromResponse(response.status, body, { retryAfter: response.headers.get("retry-after"), requestId });
  }
  if (response.status >= 300 || !isRecord(body)) {
    throw new UnexpectedResponse(`Gateway answered HTTP ${response.status} without a JSON object`, {
      statusCode: response.status,
      requestId,
    });
  }
  return body;
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

function errorCode(error: unknown): string | undefined {
  if (typeof error !== "object" || error === null) return undefined;
  const code = (error as { code?: unknown }).code;
  return typeof code === "string" ? code : undefined;
}

function isDroppedConnection(error: unknown): boolean {
  const cause = typeof error === "object" && error !== null ? (error as { cause?: unknown }).cause : undefined;
  const code = errorCode(cause) ?? errorCode(error);
  return code !== undefined && DROPPED.has(code);
}

function describe(error: unknown): string {
  const cause = typeof error === "object" && error !== null ? (error as { cause?: unknown }).cause : undefined;
  const code = errorCode(cause) ?? errorCode(error);
  if (code) return code;
  return error instanceof Error ? error.name : "network error";
}

function emitWarning(warning: InsecureGatewayUrlWarning): void {
  const proc = (globalThis as { process?: { emitWarning?: (warning: Error) => void } }).process;
  if (typeof proc?.emitWarning === "function") proc.emitWarning(warning);
  else console.warn(warning.message);
}

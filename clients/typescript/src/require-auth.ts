/**
 * `requireAuth`: gateway tokens for tools of the MCP TypeScript SDK's `McpServer`.
 *
 * ```ts
 * server.registerTool(
 *   "list_messages",
 *   { description: "List the messages in the user's mailbox.", inputSchema: {} },
 *   requireAuth({ server, client: auth, provider: "google", scopes: ["https://mail.google.com/"],
 *                 trustedEmailHeader: "X-User-Email" },
 *     async (_args, { accessToken }) => ({ content: [{ type: "text", text: await listMail(accessToken) }] })),
 * );
 * ```
 *
 * The handler receives the user's token in `extra.accessToken` (and `extra.tokenInfo`);
 * the tool's arguments never carry it, so neither its input schema nor the model ever
 * sees it. The token is obtained in one of two ways:
 *
 * - **token exchange** (the MCP server runs with MCP authorization and the request
 *   carries an access token that is a JWT): the token is handed to the gateway
 *   (`POST /oauth/token`, RFC 8693), which verifies it and answers with the provider token
 *   of the user it proves; the server never names the user;
 * - **a named user** otherwise: the user's email comes from a source the model cannot
 *   write (the access token's email claim or a trusted header, see `./identity.ts`) and
 *   the gateway is asked for that user's token.
 *
 * When the user must sign in first, the wrapper uses a gateway session (the one the
 * exchange answer started for the verified user, or one it starts for the named user)
 * and tells the user through the best channel the MCP client supports:
 *
 * - protocol 2025-11-25 (or newer) with URL elicitation declared: a URL-mode
 *   `elicitation/create` in the middle of the call; once the user accepts, the wrapper
 *   waits (bounded) on the gateway's `/auth/status` long-poll, sends
 *   `notifications/elicitation/complete`, gets the token and runs the handler;
 * - otherwise (no URL elicitation, declined, timed out): the tool answers with an error
 *   whose text carries the link and asks the model to show it and call the tool again.
 *
 * Other gateway failures become tool errors with an explanation and no link: a refused
 * API key (a server configuration problem, never "please sign in"), an outage (with the
 * retry hint), an invalid email, a link off the gateway's origin, and the token-exchange
 * refusals. This is the Python client's `require_auth`, rule for rule.
 */

import type { McpServer } from "@modelcontextprotocol/sdk/server/mcp.js";
import type { AuthInfo } from "@modelcontextprotocol/sdk/server/auth/types.js";
import type { RequestHandlerExtra } from "@modelcontextprotocol/sdk/shared/protocol.js";
import type {
  CallToolResult,
  ClientCapabilities,
  ServerNotification,
  ServerRequest,
} from "@modelcontextprotocol/sdk/types.js";

import type { AuthClient } from "./client.js";
import {
  AUTHORIZATION_REQUIRED_CODE,
  AuthGatewayError,
  AuthorizationRequired,
  AuthorizationTimeout,
  AuthSessionFailed,
  ExchangeRequired,
  GatewayAuthError,
  GatewayConnectionError,
  InvalidEmail,
  InvalidTarget,
  RefreshFailed,
  RequestError,
  RetryableError,
  ScopeInsufficient,
  SubjectTokenRejected,
  UnauthorizedClient,
  UnknownProvider,
  UntrustedAuthUrl,
} from "./errors.js";
import {
  IdentityError,
  ToolError,
  chooseUserEmail,
  exchangeIdentity,
  identityPolicy,
  looksLikeJwt,
  type CallIdentity,
  type IdentityPolicy,
} from "./identity.js";
import type { AuthSession, TokenInfo } from "./models.js";

/** Milliseconds to wait for the user to finish signing in after accepting an elicitation. */
export const DEFAULT_WAIT_TIMEOUT_MS = 120_000;
/** The first protocol version with URL-mode elicitation. */
export const URL_ELICITATION_VERSION = "2025-11-25";

/** What a tool set to `exchange: true` answers for a request without an access token. */
export const NO_TOKEN_TO_EXCHANGE =
  "This tool gets the user's account by exchanging the access token the MCP client presented, " +
  "but the request carries none. This is a server configuration problem that signing in to the " +
  "provider cannot fix; tell the server's operator. For the server's author: run the MCP server " +
  "with MCP authorization (verify the bearer token and pass it to the transport as req.auth), " +
  "or leave exchange unset.";

/** `SubjectTokenRejected.reason` values the user (their MCP client) can cure by signing in again. */
const STALE_TOKEN = new Set(["expired", "not_yet_valid", "too_old"]);
/** Those about the identity the token carries rather than about the configuration. */
const UNUSABLE_IDENTITY = new Set(["missing_claim", "invalid_email", "unverified_email"]);
/** The JSON-RPC error code of a request that timed out (the SDK's `ErrorCode.RequestTimeout`). */
const REQUEST_TIMEOUT = -32001;

/** The `extra` the SDK passes to a tool handler. */
export type ToolExtra = RequestHandlerExtra<ServerRequest, ServerNotification>;

/** The `extra` the wrapped handler receives: the SDK's, plus the user's token. */
export type AuthorizedExtra = ToolExtra & {
  /** The user's access token for the provider. */
  readonly accessToken: string;
  /** The same with its type, expiry and scopes. */
  readonly tokenInfo: TokenInfo;
};

/** Anything that can tell the client's capabilities: an `McpServer` or a low-level `Server`. */
export type ServerLike =
  | Pick<McpServer, "server">
  | { getClientCapabilities(): ClientCapabilities | undefined };

/** Where the wrapper reports what it does (never a token or a link's secret part). */
export interface AuthLogger {
  info?(message: string): void;
  warn?(message: string): void;
  debug?(message: string): void;
}

export interface RequireAuthOptions {
  /** The gateway client. */
  client: AuthClient;
  /** Gateway provider id (`"google"`, `"microsoft"`, ...). */
  provider: string;
  /**
   * Scopes the tool needs: checked on every call and requested when the user signs in;
   * omitted: whatever the user granted, and the provider's default scopes at sign-in.
   */
  scopes?: readonly string[];
  /**
   * The server the tool is registered on, to read the client's capabilities (URL
   * elicitation). Without it the link is always given in the tool's error text.
   */
  server?: ServerLike;
  /**
   * Tool argument that may hold the user's email (`null`: none; default `"user_email"`).
   * Unless `allowEmailArgument` is set it never chooses the account; a value that
   * disagrees with the trusted identity is refused.
   */
  emailArgument?: string | null;
  /**
   * Let the model-written `emailArgument` choose the account when no trusted source
   * exists. Anyone who can talk to the model can then act as anyone else whose account is
   * connected: for single-user or development setups only.
   */
  allowEmailArgument?: boolean;
  /** Claim of the MCP server's own access token holding the email (default `"email"`). */
  emailClaim?: string;
  /** Header set by a trusted proxy (e.g. `"X-User-Email"`); once named, a request without it is refused. */
  trustedEmailHeader?: string;
  /**
   * The server runs with MCP authorization: a request without `authInfo` is refused
   * (without this, a request that carries `authInfo` is still checked against it).
   */
  mcpAuthorization?: boolean;
  /** The verified token's claims; default `authInfo.extra` (where a verifier puts them). */
  claims?: (authInfo: AuthInfo) => Readonly<Record<string, unknown>> | undefined;
  /** Upper bound on waiting for the user to finish signing in after accepting (default 120 s). */
  waitTimeoutMs?: number;
  /** `false`: always give the link in the tool's error text. */
  elicitation?: boolean;
  /**
   * How the user is proven to the gateway. Unset (default): by token exchange whenever the
   * request carries a verified access token that is a JWT, otherwise by naming the user's
   * email. `true`: always by token exchange; a request without an access token is refused.
   * `false`: never; the token's email claim names the user.
   */
  exchange?: boolean;
  /** Where to log what the wrapper does (nothing by default). */
  logger?: AuthLogger;
}

interface Flow {
  readonly client: AuthClient;
  readonly provider: string;
  readonly scopes: readonly string[];
  readonly waitTimeoutMs: number;
  readonly elicitation: boolean;
  readonly exchange: boolean | undefined;
  readonly server: ServerLike | undefined;
  readonly logger: AuthLogger;
}

/** Whom one call acts for: a named user, or the user the gateway proves from `subjectToken`. */
interface User {
  readonly email: string | null;
  readonly subjectToken: string | null;
}

/** A token turned up where a sign-in link was looked for: the call goes on with it. */
class TokenReady extends Error {
  constructor(readonly info: TokenInfo) {
    super("token ready");
  }
}

/**
 * The MCP-facing "please sign in" error: the user must open `authUrl`, then the tool is
 * called again. Its text, which the model reads, carries the link and says what to do.
 * `reason`: `not_authenticated`, `refresh_failed`, `scope_insufficient`, `declined`,
 * `timeout` or `failed`.
 */
export class AuthRequiredError extends ToolError {
  readonly authUrl: string;
  readonly provider: string | null;
  readonly sessionId: string | null;
  readonly reason: string | null;
  readonly missingScopes: readonly string[];

  constructor(
    authUrl: string,
    options: { provider?: string; sessionId?: string; reason?: string; missingScopes?: readonly string[] } = {},
  ) {
    super(authRequiredText(authUrl, options.provider ?? null, options.reason ?? null, options.missingScopes ?? []));
    this.authUrl = authUrl;
    this.provider = options.provider ?? null;
    this.sessionId = options.sessionId ?? null;
    this.reason = options.reason ?? null;
    this.missingScopes = [...(options.missingScopes ?? [])];
  }
}

function authRequiredText(authUrl: string, provider: string | null, reason: string | null, missing: readonly string[]): string {
  const account = provider ? `${provider} account` : "account";
  let why: string;
  if (reason === "scope_insufficient" && missing.length > 0) {
    why = `This tool needs more permissions on the user's ${account} (${missing.join(", ")}).`;
  } else if (reason === "refresh_failed") {
    why = `The user's ${account} connection has expired or was revoked and must be renewed.`;
  } else if (reason === "declined") {
    why = `The user did not accept the request to connect their ${account}.`;
  } else if (reason === "timeout") {
    why = `The user has not finished connecting their ${account} yet.`;
  } else if (reason === "failed") {
    why = `The last attempt to connect the user's ${account} did not succeed.`;
  } else {
    why = `The user has not connected their ${account} yet.`;
  }
  return (
    `Authorization required. ${why} Show the user this link and ask them to open it in a browser ` +
    `to sign in: ${authUrl} . Once they have finished, call this tool again.`
  );
}

/** A tool result carrying `text` as an error. */
export function toolErrorResult(text: string): CallToolResult {
  return { content: [{ type: "text", text }], isError: true };
}

/**
 * Wrap a tool handler of an `McpServer` so that it receives the user's access token for
 * `options.provider` (in `extra.accessToken` and `extra.tokenInfo`).
 *
 * Register the tool with an `inputSchema` (`{}` for a tool without arguments): the SDK
 * then calls the wrapper with `(args, extra)`.
 *
 * Without MCP authorization, `trustedEmailHeader` or `allowEmailArgument`, the tool has
 * no way to know its user and answers every call with an error telling the server's
 * author how to configure one. Token exchange needs the API client to have the MCP
 * server's token audience registered at the gateway (`gateway clients update NAME
 * --audience ...`).
 */
export function requireAuth<Args = Record<string, unknown>>(
  options: RequireAuthOptions,
  handler: (args: Args, extra: AuthorizedExtra) => CallToolResult | Promise<CallToolResult>,
): (args: Args, extra: ToolExtra) => Promise<CallToolResult> {
  if (!options.provider) throw new TypeError("provider must be a non-empty provider id");
  const waitTimeoutMs = options.waitTimeoutMs ?? DEFAULT_WAIT_TIMEOUT_MS;
  if (!(waitTimeoutMs >= 0)) throw new RangeError("waitTimeoutMs must not be negative");
  if (options.exchange !== undefined && typeof options.exchange !== "boolean") {
    throw new TypeError("exchange must be true, false or unset");
  }
  const policy = identityPolicy({
    ...(options.emailArgument !== undefined ? { emailArgument: options.emailArgument } : {}),
    ...(options.allowEmailArgument !== undefined ? { allowEmailArgument: options.allowEmailArgument } : {}),
    ...(options.emailClaim !== undefined ? { emailClaim: options.emailClaim } : {}),
    ...(options.trustedEmailHeader !== undefined ? { trustedHeader: options.trustedEmailHeader } : {}),
  });
  const flow: Flow = {
    client: options.client,
    provider: options.provider,
    scopes: Object.freeze([...(options.scopes ?? [])]),
    waitTimeoutMs,
    elicitation: options.elicitation ?? true,
    exchange: options.exchange,
    server: options.server,
    logger: options.logger ?? {},
  };
  const claimsOf = options.claims ?? ((authInfo: AuthInfo) => authInfo.extra);
  const mcpAuthorization = options.mcpAuthorization ?? false;

  return async (rawArgs: Args, rawExtra: ToolExtra): Promise<CallToolResult> => {
    // A tool registered without an inputSchema is called with (extra) alone.
    let args = rawArgs;
    let extra = rawExtra as ToolExtra | undefined;
    if (extra === undefined && looksLikeExtra(rawArgs)) {
      extra = rawArgs;
      args = {} as Args;
    }
    if (extra === undefined) throw new TypeError("requireAuth: the tool was called without the SDK's extra");
    let info: TokenInfo;
    try {
      const authInfo = extra.authInfo;
      const call: CallIdentity = {
        args,
        authInfo,
        claims: authInfo ? claimsOf(authInfo) : undefined,
        headers: extra.requestInfo?.headers,
        mcpAuthorization,
      };
      const user = resolveUser(call, policy, flow);
      info = await obtainToken(flow, extra, user);
    } catch (error) {
      if (error instanceof ToolError) return toolErrorResult(error.message);
      throw error;
    }
    return await handler(args, { ...extra, accessToken: info.accessToken, tokenInfo: info });
  };
}

function looksLikeExtra(value: unknown): value is ToolExtra {
  return (
    typeof value === "object" &&
    value !== null &&
    "requestId" in value &&
    "signal" in value &&
    typeof (value as { sendRequest?: unknown }).sendRequest === "function"
  );
}

// --- who the call is for ------------------------------------------------------------------

function resolveUser(call: CallIdentity, policy: IdentityPolicy, flow: Flow): User {
  const token = call.authInfo?.token;
  if (flow.exchange === true && !token) throw new IdentityError(NO_TOKEN_TO_EXCHANGE);
  if (flow.exchange === false || !token || (flow.exchange === undefined && !looksLikeJwt(token))) {
    return { email: chooseUserEmail(call, policy), subjectToken: null };
  }
  return { email: exchangeIdentity(call, policy), subjectToken: token };
}

// --- the token dance ----------------------------------------------------------------------

async function obtainToken(flow: Flow, extra: ToolExtra, user: User): Promise<TokenInfo> {
  try {
    return await tokenOrSignIn(flow, extra, user);
  } catch (error) {
    if (error instanceof TokenReady) return error.info;
    throw error;
  }
}

async function tokenOrSignIn(flow: Flow, extra: ToolExtra, user: User): Promise<TokenInfo> {
  let cause: AuthorizationRequired;
  try {
    return await getToken(flow, user, extra.signal);
  } catch (error) {
    if (!(error instanceof AuthorizationRequired)) throw error;
    cause = error;
  }
  const session = await startSession(flow, user, cause, extra.signal);
  const reason = reasonOf(cause);
  const missing = missingOf(cause);
  const how = channel(flow, extra);
  flow.logger.info?.(
    `user must authorize ${flow.provider} (${reason}${user.subjectToken !== null ? ", token exchange" : ""}); ` +
      `telling them via ${how === "elicit" ? "URL elicitation" : "the tool's error text"}`,
  );
  if (how === "elicit") return await elicitAndWait(flow, extra, user, session, reason, missing);
  throw authRequired(flow, session, reason, missing);
}

/** Get a token; every failure but "sign in" becomes a `ToolError`. */
async function getToken(flow: Flow, user: User, signal: AbortSignal | undefined): Promise<TokenInfo> {
  const call = signal ? { signal } : {};
  try {
    if (user.subjectToken !== null) {
      return await flow.client.exchangeTokenInfo(user.subjectToken, flow.provider, flow.scopes, call);
    }
    return await flow.client.getTokenInfo(flow.provider, user.email ?? "", { ...call, requiredScopes: flow.scopes });
  } catch (error) {
    if (error instanceof AuthorizationRequired) throw error;
    throw asToolError(error, flow);
  }
}

/**
 * Scopes for a new sign-in: what the tool needs and, when a grant exists (missing scopes,
 * or a credential to renew), what the user already granted, so that the new grant never
 * narrows what other tools rely on.
 */
async function scopesToRequest(flow: Flow, user: User, cause: AuthorizationRequired): Promise<string[]> {
  let wanted = unique([...flow.scopes, ...cause.missingScopes]);
  if (!(cause instanceof ScopeInsufficient || cause instanceof RefreshFailed) || user.email === null) return wanted;
  try {
    for (const grant of await flow.client.listProviders(user.email)) {
      if (grant.provider === flow.provider) wanted = unique([...grant.scopes, ...wanted]);
    }
  } catch (error) {
    if (!(error instanceof AuthGatewayError)) throw error;
  }
  return wanted;
}

async function startSession(
  flow: Flow,
  user: User,
  cause: AuthorizationRequired,
  signal: AbortSignal | undefined,
): Promise<AuthSession> {
  if (user.subjectToken !== null) return await exchangeSession(flow, user, user.subjectToken, cause, signal);
  const scopes = await scopesToRequest(flow, user, cause);
  try {
    return await flow.client.initOAuth(flow.provider, user.email ?? "", { scopes, ...(signal ? { signal } : {}) });
  } catch (error) {
    throw asToolError(error, flow);
  }
}

/**
 * The sign-in for an exchanging user: the one the gateway started with its
 * `authorization_required` answer, or, when that is missing (a retry) or would narrow the
 * user's grant, the one a new exchange asking for more scopes starts. Throws
 * {@link TokenReady} if that exchange finds the user signed in after all.
 */
async function exchangeSession(
  flow: Flow,
  user: User,
  subjectToken: string,
  cause: AuthorizationRequired,
  signal: AbortSignal | undefined,
): Promise<AuthSession> {
  const wanted = await scopesToRequest(flow, user, cause);
  // The gateway's link asks for the exchange's scopes (the tool's), not for what the user
  // granted before; ask again with both so that the new grant keeps them.
  const widened = wanted.some((scope) => !flow.scopes.includes(scope));
  if (!widened) {
    const session = cause.session;
    if (session !== null) return session;
    if (cause.code === AUTHORIZATION_REQUIRED_CODE) throw noSignInRight(flow, cause);
  }
  let info: TokenInfo;
  try {
    info = await flow.client.exchangeTokenInfo(subjectToken, flow.provider, wanted.length > 0 ? wanted : flow.scopes, signal ? { signal } : {});
  } catch (error) {
    if (error instanceof AuthorizationRequired) {
      const session = error.session;
      if (session === null) throw noSignInRight(flow, error);
      return session;
    }
    throw asToolError(error, flow);
  }
  throw new TokenReady(info);
}

function noSignInRight(flow: Flow, cause: AuthorizationRequired): ToolError {
  return new ToolError(
    `The user must connect their ${flow.provider} account (${reasonOf(cause)}), but this MCP server's ` +
      "gateway client may not start sign-ins (it lacks the init right), so there is no link to show. " +
      "This is a server configuration problem; tell the server's operator.",
  );
}

function reasonOf(cause: AuthorizationRequired): string {
  if (cause instanceof ScopeInsufficient) return "scope_insufficient";
  if (cause instanceof RefreshFailed) return "refresh_failed";
  return "not_authenticated";
}

function missingOf(cause: AuthorizationRequired): readonly string[] {
  return cause instanceof ScopeInsufficient ? cause.missingScopes : [];
}

function authRequired(flow: Flow, session: AuthSession, reason: string, missing: readonly string[]): AuthRequiredError {
  return new AuthRequiredError(session.authUrl, {
    provider: flow.provider,
    sessionId: session.sessionId,
    reason,
    missingScopes: missing,
  });
}

function elicitationMessage(flow: Flow, reason: string, missing: readonly string[]): string {
  if (reason === "scope_insufficient" && missing.length > 0) {
    return `Grant access to your ${flow.provider} account (${missing.join(", ")}) to continue.`;
  }
  if (reason === "refresh_failed") return `Your ${flow.provider} connection has expired. Sign in again to continue.`;
  return `Connect your ${flow.provider} account to continue.`;
}

/** The client's capabilities, from whatever server object the options gave. */
function clientCapabilities(server: ServerLike | undefined): ClientCapabilities | undefined {
  if (server === undefined) return undefined;
  if ("getClientCapabilities" in server) return server.getClientCapabilities();
  return server.server.getClientCapabilities();
}

/** How to show the sign-in link to this MCP client. */
function channel(flow: Flow, extra: ToolExtra): "elicit" | "text" {
  if (!flow.elicitation || typeof extra.sendRequest !== "function") return "text";
  let capabilities: ClientCapabilities | undefined;
  try {
    capabilities = clientCapabilities(flow.server);
  } catch {
    return "text";
  }
  if (capabilities?.elicitation?.url === undefined) return "text";
  // Over HTTP the client names its protocol version on every request; URL elicitation
  // exists from 2025-11-25 on (ISO dates compare as strings).
  const version = extra.requestInfo?.headers["mcp-protocol-version"];
  if (typeof version === "string" && version < URL_ELICITATION_VERSION) return "text";
  return "elicit";
}

// --- URL elicitation in the middle of the call (2025-11-25) ------------------------------

async function elicitAndWait(
  flow: Flow,
  extra: ToolExtra,
  user: User,
  session: AuthSession,
  reason: string,
  missing: readonly string[],
): Promise<TokenInfo> {
  const deadline = performance.now() + flow.waitTimeoutMs;
  const remaining = (): number => Math.max(0, deadline - performance.now());
  const { ElicitResultSchema } = await import("@modelcontextprotocol/sdk/types.js");
  let action: string;
  try {
    const answer = await extra.sendRequest(
      {
        method: "elicitation/create",
        params: {
          mode: "url",
          message: elicitationMessage(flow, reason, missing),
          url: session.authUrl,
          elicitationId: session.sessionId,
        },
      },
      ElicitResultSchema,
      { timeout: Math.max(1, remaining()), signal: extra.signal },
    );
    action = answer.action;
  } catch (error) {
    if (extra.signal.aborted) throw error; // the client cancelled the tool call
    if (errorCodeOf(error) === REQUEST_TIMEOUT) throw authRequired(flow, session, "timeout", missing);
    // The client refused the request (or has no channel back): fall back to the text.
    flow.logger.info?.(`URL elicitation failed (${error instanceof Error ? error.message : "error"}); falling back to text`);
    throw authRequired(flow, session, reason, missing);
  }
  if (action !== "accept") throw authRequired(flow, session, "declined", missing);
  try {
    await flow.client.waitForCompletion(session.sessionId, remaining(), { signal: extra.signal });
  } catch (error) {
    if (error instanceof AuthSessionFailed) {
      const retry = await startSession(flow, user, causeForRetry(reason, missing), extra.signal);
      throw authRequired(flow, retry, "failed", missing);
    }
    if (error instanceof AuthorizationTimeout) throw authRequired(flow, session, "timeout", missing);
    throw asToolError(error, flow);
  }
  try {
    await extra.sendNotification({
      method: "notifications/elicitation/complete",
      params: { elicitationId: session.sessionId },
    });
  } catch {
    flow.logger.debug?.("could not send notifications/elicitation/complete"); // best effort (spec)
  }
  return await tokenAfterSignIn(flow, user, extra.signal);
}

/**
 * The token right after a completed session; if the grant still falls short (the user
 * unticked a scope), start over with a new link.
 */
async function tokenAfterSignIn(flow: Flow, user: User, signal: AbortSignal): Promise<TokenInfo> {
  try {
    return await getToken(flow, user, signal);
  } catch (error) {
    if (!(error instanceof AuthorizationRequired)) throw error;
    const session = await startSession(flow, user, error, signal);
    throw authRequired(flow, session, reasonOf(error), missingOf(error));
  }
}

function causeForRetry(reason: string, missing: readonly string[]): AuthorizationRequired {
  if (reason === "scope_insufficient") return new ScopeInsufficient("retry", { missingScopes: missing });
  return new AuthorizationRequired("retry");
}

// --- gateway failures as text for the model ---------------------------------------------

function subjectTokenText(error: SubjectTokenRejected, flow: Flow): string {
  const reason = error.reason ?? "refused";
  if (STALE_TOKEN.has(reason)) {
    return (
      `The auth gateway no longer accepts the user's sign-in to this MCP server (${reason}). ` +
      "The MCP client must sign the user in again (or refresh its access token); then call this tool again."
    );
  }
  if (UNUSABLE_IDENTITY.has(reason)) {
    return (
      `The user's access token carries no usable, verified email address (${reason}), so the auth ` +
      `gateway cannot tell whose ${flow.provider} account to use. This is a configuration problem of ` +
      "the identity provider or the gateway; tell the server's operator."
    );
  }
  return (
    `The auth gateway does not accept this MCP server's access tokens (${reason}). This is a ` +
    "configuration problem between the MCP server, its identity provider and the gateway, not " +
    "something the user can fix by signing in; tell the server's operator."
  );
}

/** Turn a gateway failure that signing in cannot fix into text for the model. */
function asToolError(error: unknown, flow: Flow): Error {
  if (error instanceof ToolError || error instanceof TokenReady) return error;
  if (!(error instanceof AuthGatewayError)) return error instanceof Error ? error : new Error(String(error));
  let text: string;
  if (error instanceof ExchangeRequired) {
    text =
      "This MCP server's gateway client may only get tokens by exchanging the user's access token " +
      "(it was registered with --require-exchange), but this request carries no access token to " +
      "exchange. This is a server configuration problem (run the MCP server with MCP authorization), " +
      "not something the user can fix by signing in; tell the server's operator.";
  } else if (error instanceof UnauthorizedClient) {
    text =
      `The auth gateway does not let this MCP server exchange the user's access token: ${error.gatewayMessage} ` +
      "This is a server configuration problem, not something the user can fix by signing in; tell the server's operator.";
  } else if (error instanceof GatewayAuthError) {
    text =
      "This MCP server is not authorized to use its auth gateway (the gateway refused the server's " +
      "API key). This is a server configuration problem, not something the user can fix by signing " +
      "in; tell the server's operator.";
  } else if (error instanceof RetryableError) {
    const seconds = error.retryAfter;
    const wait = seconds !== null ? ` Try again in ${seconds} second${seconds === 1 ? "" : "s"}.` : " Try again later.";
    const what = error.code === "provider_unavailable" ? `The ${flow.provider} sign-in service` : "The auth gateway";
    text = `${what} is temporarily unavailable (${error.code}).${wait}`;
  } else if (error instanceof SubjectTokenRejected) {
    text = subjectTokenText(error, flow);
  } else if (error instanceof InvalidEmail) {
    text = `The user's email address was rejected: ${error.gatewayMessage}`;
  } else if (error instanceof UnknownProvider) {
    text = `The auth gateway has no provider '${flow.provider}'; this is a server configuration problem.`;
  } else if (error instanceof InvalidTarget) {
    text =
      `The auth gateway has no provider '${flow.provider}' that this MCP server may use; ` +
      "this is a server configuration problem.";
  } else if (error instanceof RequestError) {
    text = `The auth gateway rejected the request (${error.code}): ${error.gatewayMessage}`;
  } else if (error instanceof UntrustedAuthUrl) {
    // The link (and its origin, which could be an attacker's) stays out of the text the
    // model reads; the operator finds the origin in the log.
    flow.logger.warn?.(`refused a sign-in link outside the gateway's origin: ${error.message}`);
    text =
      "The auth gateway handed out a sign-in link that does not point to the gateway itself, so it " +
      "is not shown. This is a server configuration problem (or a compromised gateway), not something " +
      "the user can fix; tell the server's operator.";
  } else if (error instanceof GatewayConnectionError) {
    text = "The auth gateway cannot be reached right now; try again later.";
  } else {
    text = `The auth gateway failed (${error.code ?? "unexpected answer"}).`;
  }
  return new ToolError(text);
}

function errorCodeOf(error: unknown): unknown {
  return typeof error === "object" && error !== null ? (error as { code?: unknown }).code : undefined;
}

function unique(items: readonly string[]): string[] {
  return [...new Set(items)];
}

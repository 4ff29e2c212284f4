/**
 * Working out which user is calling a tool, from sources the model cannot write.
 *
 * The account a tool acts on decides whose mailbox it reads, so it must come from
 * something the model (and anyone who can put text in front of it) cannot choose. The
 * trusted sources are:
 *
 * 1. **MCP authorization.** When the MCP server runs with it (its HTTP layer verifies the
 *    bearer token and hands the SDK an `AuthInfo`), the token's email claim names the
 *    user. A request without a token on such a server (`mcpAuthorization: true`), a token
 *    without the claim, or one whose `email_verified` is false is refused.
 * 2. **A trusted header** (e.g. `X-User-Email`) that an authenticating proxy in front of
 *    the server sets, replacing any copy the client sent. Configured but absent is
 *    refused; several different values are refused.
 *
 * Every configured source must be present and they must all name the same user
 * (case-insensitively). A configured source that is missing never falls back to a
 * weaker one. The tool's `user_email` argument is written by the model: it chooses the
 * account only when the server opts in (`allowEmailArgument: true`) and no trusted source
 * exists; whenever a trusted identity exists, an argument naming someone else is refused.
 * With no source at all, the tool answers with an error for the server's author, never
 * with a sign-in link for a guessed user.
 *
 * **Token exchange.** When the request carries a verified access token that is a JWT,
 * `requireAuth` (by default) does not name the user: the gateway verifies the token and
 * answers for the user it proves ({@link exchangeIdentity} only checks that nothing in
 * the call contradicts the token).
 *
 * These are the Python client's rules (`mcp_auth_client.identity`), one for one.
 */

import type { AuthInfo } from "@modelcontextprotocol/sdk/server/auth/types.js";

/** An error whose text is meant for the model (and the user): the tool answers with it. */
export class ToolError extends Error {
  constructor(message: string) {
    super(message);
    this.name = new.target.name;
  }
}

/** The calling user's email could not be determined, or sources disagree. */
export class IdentityError extends ToolError {}

/** What a tool answers when nothing tells it who the user is (addressed to the server's author). */
export const NO_IDENTITY_SOURCE =
  "This tool cannot tell which user is calling it: the MCP server has no trusted source of " +
  "the user's identity, and it does not take the user's email from tool arguments, which the " +
  "model writes. This is a server configuration problem that signing in cannot fix; tell the " +
  "server's operator. For the server's author: run the MCP server with MCP authorization (the " +
  "email claim of the user's access token names them), or set trustedEmailHeader to a header " +
  "that an authenticating proxy in front of the server sets, or, for single-user and " +
  "development setups only, set allowEmailArgument: true on requireAuth.";

/** Where {@link chooseUserEmail} looks. */
export interface IdentityPolicy {
  /** The tool argument that may hold the user's email (`null`: none). */
  readonly emailArgument: string | null;
  /** Let that argument choose the account when no trusted source exists (single-user/dev only). */
  readonly allowEmailArgument: boolean;
  /** The access-token claim holding the email. */
  readonly emailClaim: string;
  /** A header set by a trusted proxy; `null` disables it. */
  readonly trustedHeader: string | null;
}

/** Build a policy with the defaults, checking it. */
export function identityPolicy(options: Partial<IdentityPolicy> = {}): IdentityPolicy {
  const policy: IdentityPolicy = {
    emailArgument: options.emailArgument === undefined ? "user_email" : options.emailArgument,
    allowEmailArgument: options.allowEmailArgument ?? false,
    emailClaim: options.emailClaim ?? "email",
    trustedHeader: options.trustedHeader ?? null,
  };
  if (policy.allowEmailArgument && !policy.emailArgument) {
    throw new TypeError("allowEmailArgument: true needs an emailArgument to read");
  }
  if (policy.trustedHeader !== null && !policy.trustedHeader.trim()) {
    throw new TypeError("trustedEmailHeader must be a header name (or omitted)");
  }
  if (!policy.emailClaim) throw new TypeError("emailClaim must be a claim name");
  return policy;
}

/** Request headers as the SDK passes them (`extra.requestInfo.headers`). */
export type RequestHeaders = Readonly<Record<string, string | readonly string[] | undefined>>;

/** What one call offers to identify its user. */
export interface CallIdentity {
  /** The tool's arguments (as the SDK parsed them). */
  readonly args: unknown;
  /** The verified access token, when the server runs with MCP authorization. */
  readonly authInfo: AuthInfo | undefined;
  /** That token's claims (by default `authInfo.extra`). */
  readonly claims: Readonly<Record<string, unknown>> | undefined;
  /** The HTTP request's headers, if any. */
  readonly headers: RequestHeaders | undefined;
  /** The server runs with MCP authorization: a request without a token is refused. */
  readonly mcpAuthorization: boolean;
}

function clean(value: unknown): string | null {
  if (typeof value !== "string") return null;
  const trimmed = value.trim();
  return trimmed || null;
}

function same(a: string, b: string): boolean {
  return a.toLowerCase() === b.toLowerCase();
}

/** Every non-empty value of the header: repeated copies (joined by ", " or as a list) each count. */
export function headerValues(headers: RequestHeaders | undefined, name: string): string[] {
  if (!headers) return [];
  const wanted = name.toLowerCase();
  const values: string[] = [];
  for (const [key, value] of Object.entries(headers)) {
    if (key.toLowerCase() !== wanted || value === undefined) continue;
    for (const item of typeof value === "string" ? [value] : value) {
      // Fetch-style headers join repeated copies with ", "; an address has no comma.
      for (const part of item.split(",")) {
        const cleaned = clean(part);
        if (cleaned !== null) values.push(cleaned);
      }
    }
  }
  return values;
}

function argument(args: unknown, name: string | null): string | null {
  if (name === null || typeof args !== "object" || args === null) return null;
  return clean((args as Record<string, unknown>)[name]);
}

function unverified(claims: Readonly<Record<string, unknown>>): boolean {
  const verified = claims["email_verified"];
  // Some identity providers send the flag as a string.
  return verified === false || (typeof verified === "string" && verified.trim().toLowerCase() === "false");
}

function trustedHeaderEmail(header: string, headers: RequestHeaders | undefined): string {
  const values = headerValues(headers, header);
  const first = values[0];
  if (first === undefined) {
    // No fall-back to the argument: a request without the header did not come through
    // the proxy that vouches for the user.
    throw new IdentityError(
      `The request has no ${header} header, which this MCP server relies on to know the user ` +
        "(a proxy in front of the server sets it), so the user cannot be identified.",
    );
  }
  if (values.some((value) => !same(value, first))) {
    throw new IdentityError(`The ${header} header names more than one user.`);
  }
  return first;
}

function trustedIdentities(call: CallIdentity, policy: IdentityPolicy): string[] {
  const found: string[] = [];
  if (call.authInfo !== undefined || call.mcpAuthorization) {
    if (call.authInfo === undefined) {
      throw new IdentityError(
        "This MCP server uses MCP authorization, but the request carries no verified access token, " +
          "so the user cannot be identified.",
      );
    }
    const claims = call.claims ?? {};
    if (unverified(claims)) throw new IdentityError("The signed-in identity's email address is not verified.");
    const claimed = clean(claims[policy.emailClaim]);
    if (claimed === null) {
      throw new IdentityError(
        `The signed-in identity carries no '${policy.emailClaim}' claim, so the user's account cannot be chosen.`,
      );
    }
    found.push(claimed);
  }
  if (policy.trustedHeader !== null) found.push(trustedHeaderEmail(policy.trustedHeader, call.headers));
  const first = found[0];
  if (first !== undefined && found.some((email) => !same(email, first))) {
    throw new IdentityError(`The signed-in identity and the ${policy.trustedHeader} header name different users.`);
  }
  return found;
}

function mismatch(policy: IdentityPolicy): IdentityError {
  return new IdentityError(
    `${policy.emailArgument} does not match the user making this request, so the call is refused. ` +
      "Omit it or pass the user's own address.",
  );
}

/**
 * The calling user's email for a call that names its user (no token exchange).
 *
 * @throws {IdentityError} a configured source is missing or unusable, sources disagree,
 *   an argument contradicts the trusted identity, or there is no source at all.
 */
export function chooseUserEmail(call: CallIdentity, policy: IdentityPolicy): string {
  const fromArgument = argument(call.args, policy.emailArgument);
  const trusted = trustedIdentities(call, policy)[0];
  if (trusted !== undefined) {
    if (fromArgument !== null && !same(fromArgument, trusted)) throw mismatch(policy);
    return trusted;
  }
  if (!policy.allowEmailArgument) throw new IdentityError(NO_IDENTITY_SOURCE);
  if (fromArgument === null) {
    throw new IdentityError(
      `Cannot tell which user is calling this tool. Pass the user's email address as '${policy.emailArgument}'.`,
    );
  }
  return fromArgument;
}

/**
 * Whether `token` has the shape of a compact JWS (three base64url parts): the only kind
 * of access token the gateway can verify, and so exchange. Opaque tokens cannot be.
 */
export function looksLikeJwt(token: string): boolean {
  const parts = token.split(".");
  if (parts.length !== 3 || !parts[0] || !parts[1]) return false;
  return parts.every((part) => part === "" || /^[A-Za-z0-9_-]+$/.test(part));
}

/**
 * The checks for a call whose user the gateway proves from its access token (token
 * exchange). The gateway, not this function, decides who the user is; this checks that
 * nothing in the call contradicts the token: a configured trusted header must be present
 * and name the token's email, and an email argument must match it (the argument never
 * chooses the account, whatever `allowEmailArgument` says).
 *
 * @returns the token's email claim unless missing or marked unverified (only for
 *   consistency checks and for reading the user's grants).
 * @throws {IdentityError} see above.
 */
export function exchangeIdentity(call: CallIdentity, policy: IdentityPolicy): string | null {
  const claims = call.claims ?? {};
  const claimed = unverified(claims) ? null : clean(claims[policy.emailClaim]);
  if (policy.trustedHeader !== null) {
    const fromHeader = trustedHeaderEmail(policy.trustedHeader, call.headers);
    if (claimed === null) {
      throw new IdentityError(
        `The signed-in identity carries no verified '${policy.emailClaim}' claim to check the ` +
          `${policy.trustedHeader} header against, so the call is refused.`,
      );
    }
    if (!same(fromHeader, claimed)) {
      throw new IdentityError(`The signed-in identity and the ${policy.trustedHeader} header name different users.`);
    }
  }
  const fromArgument = argument(call.args, policy.emailArgument);
  if (fromArgument !== null && (claimed === null || !same(fromArgument, claimed))) throw mismatch(policy);
  return claimed;
}

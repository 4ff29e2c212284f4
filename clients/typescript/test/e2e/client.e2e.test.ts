/**
 * AuthClient end to end against the real gateway and mock provider processes: the whole
 * OAuth flow, the long-poll, every error code a real gateway produces mapped to its
 * class, and token exchange with JWTs minted by the mock's identity provider.
 */

import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import { inspect } from "node:util";
import { after, before, beforeEach, describe, it } from "node:test";

import {
  AuthClient,
  AuthorizationRequired,
  AuthorizationTimeout,
  AuthSessionFailed,
  ExchangeRequired,
  Forbidden,
  GatewayAuthError,
  InvalidClient,
  InvalidEmail,
  InvalidRequest,
  InvalidTarget,
  MethodNotAllowed,
  NotAuthenticated,
  NotFound,
  PayloadTooLarge,
  ProviderUnavailable,
  RateLimited,
  RefreshFailed,
  RetryableError,
  ScopeInsufficient,
  SessionNotFound,
  SlowDown,
  SubjectTokenRejected,
  TemporarilyUnavailable,
  Unauthorized,
  UnauthorizedClient,
  UnknownProvider,
  UnsupportedMediaType,
  UntrustedAuthUrl,
  errorFromResponse,
  type AuthGatewayError,
} from "../../src/index.js";
import { openInBrowser, visit } from "../helpers/browser.js";
import { MCP_AUDIENCE, Stack, freePort, freshUser } from "../helpers/stack.js";

const TIMEOUT = { timeout: 120_000 };

let stack: Stack;
let auth: AuthClient;
let exchanger: AuthClient;
let exchangerKey: string;

before(async () => {
  stack = await Stack.start("client");
  auth = new AuthClient(stack.gateway.url, stack.gateway.apiKey, { timeoutMs: 15_000 });
  exchangerKey = await stack.gateway.addExchangeClient(`exchanger-${randomUUID().slice(0, 8)}`);
  exchanger = new AuthClient(stack.gateway.url, exchangerKey);
});

after(async () => {
  await Stack.stopAll();
});

beforeEach(async () => {
  await stack.mock.reset();
});

/** Expect `promise` to reject with an instance of `cls`; return the error. */
async function rejects<T extends AuthGatewayError>(promise: Promise<unknown>, cls: abstract new (...args: never[]) => T): Promise<T> {
  try {
    await promise;
  } catch (error) {
    assert.ok(error instanceof cls, `expected ${cls.name}, got ${inspect(error)}`);
    return error;
  }
  assert.fail(`expected ${cls.name}, nothing was thrown`);
}

async function signIn(client: AuthClient, user: string, scopes?: string[]): Promise<void> {
  const session = await client.initOAuth("mock", user, scopes ? { scopes } : {});
  await openInBrowser(session.authUrl);
  const status = await client.waitForCompletion(session.sessionId, 10_000);
  assert.equal(status.status, "completed");
}

async function ownerOf(authorization: string): Promise<string> {
  const response = await fetch(stack.mock.apiUrl, { headers: { Authorization: authorization } });
  assert.equal(response.status, 200);
  return ((await response.json()) as { email: string }).email;
}

function unique(prefix: string): string {
  return `${prefix}-${randomUUID().slice(0, 8)}`;
}

describe("the OAuth flow", () => {
  it("gets a token that works at the protected API", TIMEOUT, async () => {
    const user = freshUser();
    assert.equal(await auth.isAuthenticated("mock", user), false);
    await rejects(auth.getToken("mock", user), NotAuthenticated);
    const session = await auth.initOAuth("mock", user, { scopes: ["mail.read"] });
    assert.ok(session.authUrl.startsWith(`${stack.gateway.url}/connect/`));
    assert.ok(session.expiresAt instanceof Date && session.expiresAt.getTime() > Date.now());
    await openInBrowser(session.authUrl);
    const status = await auth.waitForCompletion(session.sessionId, 10_000);
    assert.equal(status.status, "completed");
    assert.equal(status.userEmail, user);
    assert.equal(status.provider, "mock");

    const info = await auth.getTokenInfo("mock", user, { requiredScopes: ["mail.read"] });
    assert.equal(info.tokenType, "Bearer");
    assert.ok(info.scopes.includes("mail.read"));
    assert.ok(info.expiresAt !== null && info.expiresAt.getTime() > Date.now());
    assert.equal(await ownerOf(info.authorizationHeader), user);
    assert.ok(!inspect(info).includes(info.accessToken) && !JSON.stringify(info).includes(info.accessToken));
    assert.equal(await auth.getToken("mock", user), info.accessToken);
    assert.equal(await auth.isAuthenticated("mock", user), true);

    const grants = await auth.listProviders(user);
    assert.equal(grants.length, 1);
    const [grant] = grants;
    assert.ok(grant);
    assert.equal(grant.provider, "mock");
    assert.equal(grant.state, "active");

    const revoked = await auth.revoke("mock", user);
    assert.equal(revoked.success, true);
    assert.equal(revoked.providerRevocation, "revoked");
    await rejects(auth.getToken("mock", user), NotAuthenticated);
    await rejects(auth.revoke("mock", user), NotAuthenticated);
  });

  it("reuses the pending session for a repeated init", TIMEOUT, async () => {
    const user = freshUser();
    const first = await auth.initOAuth("mock", user);
    const second = await auth.initOAuth("mock", user);
    assert.equal(second.sessionId, first.sessionId);
    assert.equal(second.authUrl, first.authUrl);
  });

  it("bounds the status long-poll and answers on completion", TIMEOUT, async () => {
    const user = freshUser();
    const session = await auth.initOAuth("mock", user);
    const started = performance.now();
    const timedOut = await rejects(auth.waitForCompletion(session.sessionId, 1_500), AuthorizationTimeout);
    const elapsed = performance.now() - started;
    assert.ok(elapsed >= 900 && elapsed < 5_000, `waited ${elapsed} ms`);
    assert.equal(timedOut.sessionId, session.sessionId);
    assert.equal((await auth.getStatus(session.sessionId)).status, "pending");

    // A long-poll in flight answers as soon as the session completes.
    const waiting = auth.getStatus(session.sessionId, { waitSeconds: 30 });
    const began = performance.now();
    await openInBrowser(session.authUrl);
    const status = await waiting;
    assert.equal(status.status, "completed");
    assert.ok(performance.now() - began < 10_000);
  });

  it("fails the session on a denied or mismatched consent", TIMEOUT, async () => {
    for (const [consent, reason] of [
      [{ mode: "deny" }, "access_denied"],
      [{ mode: "approve_as", email: "someone-else@example.com" }, "account_mismatch"],
    ] as const) {
      await stack.mock.admin("POST", "consent", consent);
      const user = freshUser();
      const session = await auth.initOAuth("mock", user);
      const page = await visit(session.authUrl);
      assert.ok(page.url.includes("/auth/callback/"), page.url);
      const failed = await rejects(auth.waitForCompletion(session.sessionId, 10_000), AuthSessionFailed);
      assert.equal(failed.reason, reason);
      assert.equal(failed.sessionId, session.sessionId);
      await rejects(auth.getToken("mock", user), NotAuthenticated);
    }
  });

  it("does not hand out a link outside the gateway's origin", TIMEOUT, async () => {
    // PUBLIC_BASE_URL says localhost while the client reaches 127.0.0.1: two origins.
    const port = await freePort();
    const publicUrl = `http://localhost:${port}`;
    const gateway = await stack.anotherGateway({ PORT: String(port), PUBLIC_BASE_URL: publicUrl });
    const user = freshUser();
    const client = new AuthClient(gateway.url, gateway.apiKey);
    const refused = await rejects(client.initOAuth("mock", user), UntrustedAuthUrl);
    assert.equal(refused.origin, publicUrl);
    assert.deepEqual(refused.trustedOrigins, [gateway.url]);
    assert.ok(!refused.message.includes("/connect/"));

    const behindProxy = new AuthClient(gateway.url, gateway.apiKey, { publicUrl });
    assert.deepEqual(behindProxy.trustedLinkOrigins, [gateway.url, publicUrl]);
    const session = await behindProxy.initOAuth("mock", user);
    assert.ok(session.authUrl.startsWith(`${publicUrl}/connect/`));
    await openInBrowser(session.authUrl);
    assert.equal((await behindProxy.waitForCompletion(session.sessionId, 10_000)).status, "completed");
  });
});

describe("gateway error codes from a real gateway", () => {
  it("scope_insufficient names the missing scopes", TIMEOUT, async () => {
    const user = freshUser();
    await signIn(auth, user, ["mail.read"]);
    const error = await rejects(auth.getToken("mock", user, { requiredScopes: ["mail.read", "mail.send"] }), ScopeInsufficient);
    assert.deepEqual(error.missingScopes, ["mail.send"]);
    assert.equal(error.statusCode, 403);
    assert.equal(error.reason, "scope_insufficient");
    assert.ok(error instanceof AuthorizationRequired && !(error instanceof GatewayAuthError));
  });

  it("needs_reauth is refresh_failed", TIMEOUT, async () => {
    await stack.mock.admin("POST", "settings", { access_token_ttl_secs: 1 });
    const user = freshUser();
    await signIn(auth, user);
    await stack.mock.admin("POST", "invalidate", { email: user });
    const error = await rejects(auth.getToken("mock", user), RefreshFailed);
    assert.equal(error.statusCode, 401);
    assert.equal((await auth.listProviders(user))[0]?.needsReauth, true);
  });

  it("a provider outage is provider_unavailable with retryAfter", TIMEOUT, async () => {
    await stack.mock.admin("POST", "settings", { access_token_ttl_secs: 0 });
    const user = freshUser();
    await signIn(auth, user);
    await stack.mock.admin("POST", "faults", { endpoint: "token", fault: { kind: "server_error" }, times: 20 });
    const error = await rejects(auth.getToken("mock", user), ProviderUnavailable);
    assert.equal(error.statusCode, 503);
    assert.ok(error.retryAfter !== null && error.retryAfter >= 0);
  });

  it("a wrong API key is forbidden, never 'please sign in', and is never shown", TIMEOUT, async () => {
    const secret = `s3cr3t-${"x".repeat(57)}`;
    const wrong = new AuthClient(stack.gateway.url, secret);
    const error = await rejects(wrong.getToken("mock", freshUser()), Forbidden);
    assert.ok(error instanceof GatewayAuthError && !(error instanceof AuthorizationRequired));
    assert.equal(error.statusCode, 403);
    assert.equal(error.gatewayMessage, "Invalid API key.");
    const shown = [String(error), inspect(error), JSON.stringify(error), error.stack ?? "", inspect(wrong), JSON.stringify(wrong), String(wrong)];
    assert.ok(shown.every((text) => !text.includes(secret)));
    // isAuthenticated must not turn a configuration error into "not signed in".
    await rejects(wrong.isAuthenticated("mock", freshUser()), Forbidden);
  });

  it("a client outside its rights is forbidden; a session belongs to its client", TIMEOUT, async () => {
    const user = freshUser();
    const tokenOnly = await stack.gateway.addClient(unique("token-only"), "--actions", "token", "--providers", "mock");
    const limited = new AuthClient(stack.gateway.url, tokenOnly);
    await rejects(limited.getToken("mock", user), NotAuthenticated);
    assert.equal(await limited.isAuthenticated("mock", user), false);
    const init = await rejects(limited.initOAuth("mock", user), Forbidden);
    assert.match(init.gatewayMessage, /may not use init/);
    await rejects(limited.listProviders(user), Forbidden);
    await rejects(limited.revoke("mock", user), Forbidden);

    const other = await stack.gateway.addClient(unique("other"));
    const session = await auth.initOAuth("mock", user);
    const notYours = await rejects(new AuthClient(stack.gateway.url, other).getStatus(session.sessionId), Forbidden);
    assert.match(notYours.gatewayMessage, /another API client/);
    assert.equal((await auth.getStatus(session.sessionId)).status, "pending");
  });

  it("rate_limited carries retryAfter", TIMEOUT, async () => {
    const limited = await stack.anotherGateway({ RATE_LIMIT_TOKEN_PER_SECOND: "1" });
    const client = new AuthClient(limited.url, limited.apiKey);
    const user = freshUser();
    const answers: string[] = [];
    let error: RateLimited | undefined;
    for (let i = 0; i < 10 && !error; i++) {
      try {
        await client.getToken("mock", user);
      } catch (caught) {
        if (caught instanceof RateLimited) error = caught;
        else if (caught instanceof NotAuthenticated) answers.push("not_authenticated");
        else throw caught;
      }
    }
    assert.ok(error, answers.join());
    // A burst of two is served first (more, should the loop be slow enough to refill).
    assert.ok(answers.length >= 2 && answers.every((answer) => answer === "not_authenticated"), answers.join());
    assert.ok(error instanceof RetryableError && !(error instanceof AuthorizationRequired));
    assert.equal(error.code, "rate_limited");
    assert.equal(error.statusCode, 429);
    assert.ok(error.retryAfter !== null && error.retryAfter >= 1 && error.retryAfter <= 2);
    assert.ok(error.requestId);
  });

  it("request errors map to their classes", TIMEOUT, async () => {
    const user = freshUser();
    const unknown = await rejects(auth.getToken("no-such-provider", user), UnknownProvider);
    assert.equal(unknown.statusCode, 400);
    await rejects(auth.getToken("mock", "not-an-email"), InvalidEmail);
    await rejects(auth.initOAuth("mock", user, { redirectAfter: "https://evil.example/" }), InvalidRequest);
    await rejects(auth.getStatus(randomUUID()), SessionNotFound);
    await rejects(new AuthClient(`${stack.gateway.url}/wrong-prefix`, stack.gateway.apiKey).getToken("mock", user), NotFound);
    // Path segments are escaped: an address with "/" and "?" stays one segment.
    await rejects(auth.listProviders("a/b?c@example.com"), InvalidEmail);
  });

  it("raw requests the client never sends map through errorFromResponse", TIMEOUT, async () => {
    const raw = async (path: string, init: RequestInit): Promise<AuthGatewayError> => {
      const response = await fetch(`${stack.gateway.url}${path}`, init);
      return errorFromResponse(response.status, await response.json(), {
        retryAfter: response.headers.get("retry-after"),
        requestId: response.headers.get("x-request-id"),
      });
    };
    const key = { "X-API-Key": stack.gateway.apiKey };
    const json = { ...key, "Content-Type": "application/json" };
    assert.ok((await raw("/auth/token", { method: "POST", headers: { "Content-Type": "application/json" }, body: "{}" })) instanceof Unauthorized);
    assert.ok((await raw("/auth/token", { method: "PUT", headers: json, body: "{}" })) instanceof MethodNotAllowed);
    assert.ok((await raw("/auth/token", { method: "POST", headers: json, body: "{not json" })) instanceof InvalidRequest);
    assert.ok((await raw("/auth/token", { method: "POST", headers: { ...key, "Content-Type": "text/plain" }, body: "x" })) instanceof UnsupportedMediaType);
    const big = JSON.stringify({ provider: "mock", user_email: "a@example.com", pad: "x".repeat(20_000) });
    assert.ok((await raw("/auth/token", { method: "POST", headers: json, body: big })) instanceof PayloadTooLarge);
    // The exchange endpoint takes a form, not JSON.
    const exchangeJson = { "X-API-Key": exchangerKey, "Content-Type": "application/json" };
    assert.ok((await raw("/oauth/token", { method: "POST", headers: exchangeJson, body: '{"grant_type":"x"}' })) instanceof InvalidRequest);
  });
});

describe("token exchange against the real gateway", () => {
  it("exchanges the token of a connected user", TIMEOUT, async () => {
    const user = freshUser();
    await signIn(auth, user, ["mail.read"]);
    const subject = await stack.mock.userToken(user);
    const info = await exchanger.exchangeTokenInfo(subject, "mock", ["mail.read"]);
    assert.equal(info.tokenType, "Bearer");
    assert.ok(info.scopes.includes("mail.read"));
    assert.ok(info.expiresAt !== null && info.expiresAt.getTime() > Date.now());
    assert.equal(await ownerOf(info.authorizationHeader), user);
    assert.equal(await exchanger.exchangeToken(subject, "mock"), info.accessToken);
  });

  it("answers authorization_required with a link bound to the verified user", TIMEOUT, async () => {
    const user = freshUser();
    const subject = await stack.mock.userToken(user);
    const needed = await rejects(exchanger.exchangeToken(subject, "mock", ["mail.read"]), NotAuthenticated);
    assert.equal(needed.code, "authorization_required");
    assert.equal(needed.reason, "not_authenticated");
    assert.equal(needed.statusCode, 400);
    const session = needed.session;
    assert.ok(session !== null);
    assert.ok(session.authUrl.startsWith(`${stack.gateway.url}/connect/`));
    for (const shown of [needed.message, String(needed), inspect(needed), JSON.stringify(needed)]) {
      assert.ok(!shown.includes(session.authUrl) && !shown.includes(subject));
    }
    await openInBrowser(session.authUrl);
    assert.equal((await stack.mock.lastAuthorize())["login_hint"], user);
    assert.equal((await exchanger.waitForCompletion(session.sessionId, 10_000)).status, "completed");
    assert.equal(await ownerOf(`Bearer ${await exchanger.exchangeToken(subject, "mock")}`), user);

    // scope_insufficient and refresh_failed, by their reasons.
    const more = await rejects(exchanger.exchangeToken(subject, "mock", ["mail.send"]), ScopeInsufficient);
    assert.deepEqual(more.missingScopes, ["mail.send"]);
    assert.ok(more.session !== null);
  });

  it("maps refresh_failed through the exchange", TIMEOUT, async () => {
    await stack.mock.admin("POST", "settings", { access_token_ttl_secs: 1 });
    const user = freshUser();
    await signIn(auth, user);
    await stack.mock.admin("POST", "invalidate", { email: user });
    const error = await rejects(exchanger.exchangeToken(await stack.mock.userToken(user), "mock"), RefreshFailed);
    assert.equal(error.reason, "refresh_failed");
  });

  it("says why a subject token is refused, without echoing it", TIMEOUT, async () => {
    const user = freshUser();
    await signIn(auth, user);
    const now = Math.floor(Date.now() / 1000);
    const claims = (overrides: Record<string, unknown> = {}): Record<string, unknown> => stack.mock.idpClaims(user, MCP_AUDIENCE, overrides);
    const good = await stack.mock.userToken(user);
    const [head, payload, signature] = good.split(".");
    const flipped = `${(signature ?? "").startsWith("A") ? "B" : "A"}${(signature ?? "").slice(1)}`;
    const cases: [string, string][] = [
      ["wrong_audience", await stack.mock.userToken(user, "https://other.example")],
      ["expired", await stack.mock.mint(claims({ iat: now - 600, exp: now - 300 }))],
      ["not_yet_valid", await stack.mock.mint(claims({ nbf: now + 3600 }))],
      ["too_old", await stack.mock.mint(claims({ iat: now - 7 * 86_400 }))],
      ["unverified_email", await stack.mock.mint(claims({ email_verified: false }))],
      ["missing_claim", await stack.mock.mint(claims({ email: undefined }))],
      ["invalid_email", await stack.mock.mint(claims({ email: "not-an-email" }))],
      ["untrusted_issuer", await stack.mock.mint(claims({ iss: "https://evil.example" }))],
      ["algorithm_refused", await stack.mock.mint(claims(), "hs256_with_public_key")],
      ["unknown_key", await stack.mock.mint(claims(), "unpublished_key")],
      ["bad_signature", `${head ?? ""}.${payload ?? ""}.${flipped}`],
      ["malformed", "not-a-jwt"],
    ];
    for (const [reason, subject] of cases) {
      const error = await rejects(exchanger.exchangeToken(subject, "mock"), SubjectTokenRejected);
      assert.deepEqual([error.code, error.reason, error.statusCode], ["invalid_grant", reason, 400], reason);
      assert.ok(error.requestId);
      assert.ok(![String(error), inspect(error), JSON.stringify(error)].some((text) => text.includes(subject)));
    }
  });

  it("refuses naming users to a client bound to exchange", TIMEOUT, async () => {
    const user = freshUser();
    await signIn(auth, user);
    const key = await stack.gateway.addExchangeClient(unique("exchange-only"), { requireExchange: true });
    const bound = new AuthClient(stack.gateway.url, key);
    const error = await rejects(bound.getToken("mock", user), ExchangeRequired);
    assert.equal(error.statusCode, 403);
    assert.ok(error instanceof GatewayAuthError && !(error instanceof AuthorizationRequired));
    assert.match(error.gatewayMessage, /\/oauth\/token/);
    const info = await bound.exchangeTokenInfo(await stack.mock.userToken(user), "mock");
    assert.equal(await ownerOf(info.authorizationHeader), user);
  });

  it("maps the caller's own standing: invalid_client, unauthorized_client, invalid_target", TIMEOUT, async () => {
    const user = freshUser();
    await signIn(auth, user);
    const subject = await stack.mock.userToken(user);
    const secret = `s3cr3t-${"x".repeat(57)}`;
    const invalid = await rejects(new AuthClient(stack.gateway.url, secret).exchangeToken(subject, "mock"), InvalidClient);
    assert.equal(invalid.statusCode, 401);
    assert.ok(invalid instanceof GatewayAuthError && !inspect(invalid).includes(secret));

    const noAudience = await rejects(auth.exchangeToken(subject, "mock"), UnauthorizedClient);
    assert.match(noAudience.gatewayMessage, /no registered audience/);
    assert.equal(noAudience.reason, "no_audience_registered");
    const noTokenRight = await stack.gateway.addExchangeClient(unique("no-token"), { actions: "init,status" });
    await rejects(new AuthClient(stack.gateway.url, noTokenRight).exchangeToken(subject, "mock"), UnauthorizedClient);

    const target = await rejects(exchanger.exchangeToken(subject, "no-such-provider"), InvalidTarget);
    assert.equal(target.statusCode, 400);
  });

  it("gives no link to a client without the init right", TIMEOUT, async () => {
    const key = await stack.gateway.addExchangeClient(unique("no-init"), { actions: "status,token" });
    const error = await rejects(new AuthClient(stack.gateway.url, key).exchangeToken(await stack.mock.userToken(freshUser()), "mock"), NotAuthenticated);
    assert.equal(error.authUrl, null);
    assert.equal(error.session, null);
  });

  it("an unreachable identity provider is temporarily_unavailable", TIMEOUT, async () => {
    const cold = await stack.anotherGateway({ IDP_CORP_JWKS_URL: `http://127.0.0.1:${await freePort()}/jwks` });
    const key = await cold.addExchangeClient(unique("cold"));
    const error = await rejects(new AuthClient(cold.url, key).exchangeToken(await stack.mock.userToken(freshUser()), "mock"), TemporarilyUnavailable);
    assert.equal(error.statusCode, 503);
    assert.ok(error instanceof RetryableError && error.retryAfter !== null && error.retryAfter >= 0);
  });

  it("slow_down carries retryAfter", TIMEOUT, async () => {
    const limited = await stack.anotherGateway({ RATE_LIMIT_TOKEN_PER_SECOND: "1" });
    const key = await limited.addExchangeClient(unique("limited"));
    const client = new AuthClient(limited.url, key);
    const subject = await stack.mock.userToken(freshUser());
    let error: SlowDown | undefined;
    for (let i = 0; i < 10 && !error; i++) {
      try {
        await client.exchangeToken(subject, "mock");
      } catch (caught) {
        if (caught instanceof SlowDown) error = caught;
        else if (!(caught instanceof NotAuthenticated)) throw caught;
      }
    }
    assert.ok(error);
    assert.ok(error instanceof RateLimited && error instanceof RetryableError);
    assert.deepEqual([error.code, error.statusCode], ["slow_down", 429]);
    assert.ok(error.retryAfter !== null && error.retryAfter >= 1 && error.retryAfter <= 2);
  });
});

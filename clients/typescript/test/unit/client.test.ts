/**
 * AuthClient without a gateway: argument checks, the API key kept out of what it shows,
 * requests exactly as sent (a stand-in fetch), links off the gateway's origin, and the
 * transport's failures against local sockets (refused, silent, dropped connections).
 */

import assert from "node:assert/strict";
import { createServer as createHttpServer } from "node:http";
import { createServer, type Socket } from "node:net";
import type { AddressInfo } from "node:net";
import { after, describe, it } from "node:test";
import { inspect } from "node:util";

import {
  ACCESS_TOKEN_TYPE,
  AuthClient,
  AuthorizationTimeout,
  AuthSessionFailed,
  GatewayConnectionError,
  GatewayTimeout,
  ID_TOKEN_TYPE,
  InsecureGatewayUrlWarning,
  NotAuthenticated,
  SubjectTokenRejected,
  TOKEN_EXCHANGE_GRANT_TYPE,
  UnexpectedResponse,
  UntrustedAuthUrl,
} from "../../src/index.js";
import { freePort } from "../helpers/stack.js";
import {
  API_KEY,
  GATEWAY,
  exchangeAnswer,
  gatewayError,
  initAnswer,
  json,
  standIn,
  statusAnswer,
  tokenAnswer,
} from "../helpers/standin.js";

const JWT = "eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiJhbGljZSJ9.c2lnbmF0dXJl";

async function rejects<T extends Error>(promise: Promise<unknown>, cls: abstract new (...args: never[]) => T): Promise<T> {
  try {
    await promise;
  } catch (error) {
    assert.ok(error instanceof cls, `expected ${cls.name}, got ${inspect(error)}`);
    return error;
  }
  assert.fail(`expected ${cls.name}, nothing was thrown`);
}

/** Capture process warnings emitted while `body` runs. */
async function warningsDuring(body: () => void): Promise<Error[]> {
  const seen: Error[] = [];
  const listener = (warning: Error): void => {
    seen.push(warning);
  };
  process.on("warning", listener);
  try {
    body();
    await new Promise((done) => setImmediate(done)); // warnings are emitted on the next tick
  } finally {
    process.off("warning", listener);
  }
  return seen;
}

describe("AuthClient construction", () => {
  it("checks its arguments", () => {
    assert.throws(() => new AuthClient("", API_KEY), TypeError);
    assert.throws(() => new AuthClient("ftp://gateway", API_KEY), TypeError);
    assert.throws(() => new AuthClient("/relative", API_KEY), TypeError);
    assert.throws(() => new AuthClient(GATEWAY, ""), TypeError);
    assert.throws(() => new AuthClient(GATEWAY, API_KEY, { publicUrl: "nope" }), TypeError);
    assert.throws(() => new AuthClient(GATEWAY, API_KEY, { timeoutMs: 0 }), RangeError);
    assert.throws(() => new AuthClient(GATEWAY, API_KEY, { timeoutMs: Number.NaN }), RangeError);
    const client = new AuthClient(`${GATEWAY}///`, API_KEY, { publicUrl: "https://auth.example.com/base", timeoutMs: 5000 });
    assert.equal(client.gatewayUrl, GATEWAY);
    assert.deepEqual(client.trustedLinkOrigins, [GATEWAY, "https://auth.example.com:443"]);
    assert.equal(client.timeoutMs, 5000);
  });

  it("never shows the API key", () => {
    const client = new AuthClient(GATEWAY, API_KEY);
    for (const shown of [inspect(client), inspect(client, { showHidden: true, depth: 5 }), JSON.stringify(client), String(client), client.toString()]) {
      assert.ok(!shown.includes(API_KEY), shown);
      assert.ok(shown.includes(GATEWAY), shown);
    }
    assert.deepEqual(Object.keys(client), []);
  });

  it("warns about plain http to a host that is not loopback", async () => {
    const remote = await warningsDuring(() => new AuthClient("http://gateway.internal:8000", API_KEY));
    assert.equal(remote.length, 1);
    assert.ok(remote[0] instanceof InsecureGatewayUrlWarning);
    assert.match(remote[0].message, /gateway\.internal/);
    assert.ok(!remote[0].message.includes(API_KEY));
    for (const fine of [GATEWAY, "http://localhost:8000", "https://gateway.internal"]) {
      assert.deepEqual(await warningsDuring(() => new AuthClient(fine, API_KEY)), [], fine);
    }
  });
});

describe("requests as sent", () => {
  it("sends the key, JSON bodies and scopes for the named-user calls", async () => {
    const gateway = standIn((request) => {
      const path = request.url.pathname;
      if (path === "/auth/token") return tokenAnswer();
      if (path === "/auth/init") return initAnswer();
      if (path.startsWith("/auth/status/")) return statusAnswer("s-1", "pending", { expires_at: "2030-01-01T00:00:00Z" });
      if (path.startsWith("/auth/providers/")) {
        return json(200, {
          user_email: "a@example.com",
          providers: [{ provider: "mock", scopes: ["mail.read"], authenticated_at: "2026-01-01T00:00:00Z", token_expires_at: null, state: "needs_reauth" }],
        });
      }
      if (path === "/auth/revoke") return json(200, { success: true, message: "Revoked", provider_revocation: "already_invalid" });
      if (path === "/health") return json(200, { status: "healthy" });
      return gatewayError(404, "not_found");
    });
    const client = new AuthClient(GATEWAY, API_KEY, { fetch: gateway.fetch });

    const info = await client.getTokenInfo("mock", "a@example.com", { requiredScopes: ["mail.read"] });
    assert.equal(info.accessToken, "mock_at_1");
    assert.deepEqual(info.scopes, ["openid", "email", "mail.read"]);
    assert.equal(info.expiresAt?.toISOString(), "2030-01-01T00:00:00.123Z");
    assert.equal(info.authorizationHeader, "Bearer mock_at_1");
    assert.ok(!inspect(info).includes("mock_at_1") && !JSON.stringify(info).includes("mock_at_1"));
    await client.getToken("mock", "a@example.com");
    const session = await client.initOAuth("mock", "a@example.com", { scopes: ["mail.read"], redirectAfter: "https://app.example/done" });
    assert.equal(session.sessionId, "s-1");
    const status = await client.getStatus("s/1?x", { waitSeconds: 2.5 });
    assert.equal(status.status, "pending");
    const [grant] = await client.listProviders("a/b@example.com");
    assert.ok(grant);
    assert.equal(grant.needsReauth, true);
    assert.equal(grant.tokenExpiresAt, null);
    const revoked = await client.revoke("mock", "a@example.com");
    assert.deepEqual(revoked, { success: true, message: "Revoked", providerRevocation: "already_invalid" });
    assert.deepEqual(await client.health(), { status: "healthy" });

    const [token, plainToken, init, statusRequest, providers, revoke] = gateway.requests;
    assert.ok(token && plainToken && init && statusRequest && providers && revoke);
    for (const request of gateway.requests) {
      assert.equal(request.headers.get("x-api-key"), API_KEY);
      assert.equal(request.headers.get("accept"), "application/json");
      assert.match(request.headers.get("user-agent") ?? "", /^mcp-auth-client-ts\//);
    }
    assert.equal(token.method, "POST");
    assert.equal(token.headers.get("content-type"), "application/json");
    assert.deepEqual(JSON.parse(token.body), { provider: "mock", user_email: "a@example.com", required_scopes: ["mail.read"] });
    assert.deepEqual(JSON.parse(plainToken.body), { provider: "mock", user_email: "a@example.com" });
    assert.deepEqual(JSON.parse(init.body), {
      provider: "mock",
      user_email: "a@example.com",
      scopes: ["mail.read"],
      redirect_after: "https://app.example/done",
    });
    assert.equal(statusRequest.url.pathname, "/auth/status/s%2F1%3Fx");
    assert.equal(statusRequest.url.searchParams.get("wait"), "3");
    assert.equal(providers.url.pathname, "/auth/providers/a%2Fb%40example.com");
    assert.equal(revoke.method, "DELETE");
    assert.deepEqual(JSON.parse(revoke.body), { provider: "mock", user_email: "a@example.com" });
  });

  it("sends the token exchange as a form, and reads its answer", async () => {
    const gateway = standIn(() => exchangeAnswer("mock_at_9", "openid mail.read"));
    const client = new AuthClient(GATEWAY, API_KEY, { fetch: gateway.fetch });
    const before = Date.now();
    const info = await client.exchangeTokenInfo(JWT, "mock", ["mail.read", "", "mail.send"]);
    assert.equal(info.accessToken, "mock_at_9");
    assert.deepEqual(info.scopes, ["openid", "mail.read"]);
    const expires = info.expiresAt?.getTime() ?? 0;
    assert.ok(expires >= before + 3_600_000 && expires <= Date.now() + 3_600_000);
    await client.exchangeToken(JWT, "mock", null, { subjectTokenType: ID_TOKEN_TYPE });

    const [first, second] = gateway.requests;
    assert.ok(first && second);
    assert.equal(first.url.pathname, "/oauth/token");
    assert.equal(first.headers.get("content-type"), "application/x-www-form-urlencoded");
    assert.equal(first.headers.get("x-api-key"), API_KEY);
    assert.deepEqual(Object.fromEntries(new URLSearchParams(first.body)), {
      grant_type: TOKEN_EXCHANGE_GRANT_TYPE,
      subject_token: JWT,
      subject_token_type: ACCESS_TOKEN_TYPE,
      audience: "mock",
      scope: "mail.read mail.send",
    });
    const secondForm = Object.fromEntries(new URLSearchParams(second.body));
    assert.equal(secondForm["subject_token_type"], ID_TOKEN_TYPE);
    assert.equal(secondForm["scope"], undefined);
  });

  it("checks exchange arguments and answers", async () => {
    const client = new AuthClient(GATEWAY, API_KEY, { fetch: standIn(() => json(200, { access_token: "t", issued_token_type: "urn:ietf:params:oauth:token-type:refresh_token" })).fetch });
    await rejects(client.exchangeToken("", "mock"), TypeError);
    await rejects(client.exchangeToken(JWT, ""), TypeError);
    await rejects(client.exchangeToken(JWT, "mock", "mail.read" as unknown as string[]), TypeError);
    await rejects(client.exchangeToken(JWT, "mock"), UnexpectedResponse);
    const badExpiry = new AuthClient(GATEWAY, API_KEY, { fetch: standIn(() => json(200, { access_token: "t", expires_in: "soon" })).fetch });
    await rejects(badExpiry.exchangeToken(JWT, "mock"), UnexpectedResponse);
  });

  it("redacts an echoed subject token and checks the exchange's link", async () => {
    const echo = new AuthClient(GATEWAY, API_KEY, {
      fetch: standIn(() => gatewayError(400, "invalid_grant", { message: `refused ${JWT}`, reason: "malformed" })).fetch,
    });
    const refused = await rejects(echo.exchangeToken(JWT, "mock"), SubjectTokenRejected);
    for (const shown of [refused.message, String(refused), inspect(refused), JSON.stringify(refused)]) assert.ok(!shown.includes(JWT));

    const elsewhere = new AuthClient(GATEWAY, API_KEY, {
      fetch: standIn(() =>
        gatewayError(400, "authorization_required", { reason: "not_authenticated", auth_url: "https://evil.example/connect/x", session_id: "s" }),
      ).fetch,
    });
    const untrusted = await rejects(elsewhere.exchangeToken(JWT, "mock"), UntrustedAuthUrl);
    assert.equal(untrusted.origin, "https://evil.example:443");
    assert.ok(!untrusted.message.includes("/connect/x"));
    assert.ok(untrusted.cause === undefined || !(untrusted.cause instanceof Error) || !untrusted.message.includes(JWT));

    const good = new AuthClient(GATEWAY, API_KEY, {
      fetch: standIn(() => gatewayError(400, "authorization_required", { reason: "not_authenticated", auth_url: `${GATEWAY}/connect/x`, session_id: "s" })).fetch,
    });
    const needed = await rejects(good.exchangeToken(JWT, "mock"), NotAuthenticated);
    assert.equal(needed.session?.authUrl, `${GATEWAY}/connect/x`);
  });

  it("refuses init links off the gateway's origin, and accepts publicUrl's", async () => {
    for (const link of ["https://evil.example/connect/x", "http://127.0.0.1:8001/connect/x", "http://evil.example\\@127.0.0.1:8000/connect/x", "/connect/x"]) {
      const client = new AuthClient(GATEWAY, API_KEY, {
        fetch: standIn(() => json(200, { auth_url: link, session_id: "s", expires_at: null })).fetch,
      });
      const error = await rejects(client.initOAuth("mock", "a@example.com"), UntrustedAuthUrl);
      assert.ok(!error.message.includes(link), error.message);
      assert.deepEqual(error.trustedOrigins, [GATEWAY]);
    }
    const proxied = new AuthClient(GATEWAY, API_KEY, {
      publicUrl: "https://auth.example.com",
      fetch: standIn(() => initAnswer("s-2", "https://auth.example.com")).fetch,
    });
    assert.equal((await proxied.initOAuth("mock", "a@example.com")).authUrl, "https://auth.example.com/connect/c-s-2");
  });

  it("treats odd answers as UnexpectedResponse", async () => {
    const answers = [
      new Response("<html>proxy</html>", { status: 200, headers: { "content-type": "text/html" } }),
      new Response(null, { status: 302, headers: { location: "https://elsewhere.example/" } }),
      json(200, { session_id: "s", status: "weird" }),
      json(200, { token_type: "Bearer" }),
      new Response("<html>bad gateway</html>", { status: 502, headers: { "x-request-id": "rid" } }),
    ];
    const client = new AuthClient(GATEWAY, API_KEY, { fetch: standIn(() => answers.shift() ?? json(500, {})).fetch });
    await rejects(client.getToken("mock", "a@example.com"), UnexpectedResponse);
    await rejects(client.getToken("mock", "a@example.com"), UnexpectedResponse);
    await rejects(client.getStatus("s"), UnexpectedResponse);
    await rejects(client.getToken("mock", "a@example.com"), UnexpectedResponse);
    const bad = await rejects(client.getToken("mock", "a@example.com"), UnexpectedResponse);
    assert.equal(bad.statusCode, 502);
    assert.equal(bad.requestId, "rid");
  });
});

describe("waiting for a session", () => {
  it("returns on completed and throws on failed", async () => {
    const answers = [statusAnswer("s", "pending"), statusAnswer("s", "completed", { user_email: "a@example.com", provider: "mock" })];
    const gateway = standIn(() => answers.shift() ?? statusAnswer("s", "failed", { error: "Session expired", reason: "expired" }));
    const client = new AuthClient(GATEWAY, API_KEY, { fetch: gateway.fetch });
    const done = await client.waitForCompletion("s", 5_000);
    assert.equal(done.userEmail, "a@example.com");
    // Whole seconds, never past the caller's bound.
    assert.deepEqual(gateway.requests.map((request) => request.url.searchParams.get("wait")), ["4", "4"]);
    const failed = await rejects(client.waitForCompletion("s", 5_000), AuthSessionFailed);
    assert.equal(failed.reason, "expired");
    assert.equal(failed.sessionId, "s");
    assert.match(failed.message, /Session expired \(expired\)/);
  });

  it("is bounded, and checks its arguments", async () => {
    const client = new AuthClient(GATEWAY, API_KEY, { fetch: standIn(() => statusAnswer("s", "pending")).fetch });
    const timedOut = await rejects(client.waitForCompletion("s", 0), AuthorizationTimeout);
    assert.equal(timedOut.sessionId, "s");
    await rejects(client.waitForCompletion("s", -1), RangeError);
    await rejects(client.getStatus("s", { waitSeconds: 61 }), RangeError);
    await rejects(client.getStatus("s", { waitSeconds: -1 }), RangeError);
  });
});

describe("the transport", () => {
  const sockets: Socket[] = [];
  const servers: { close(): void }[] = [];
  after(() => {
    for (const socket of sockets) socket.destroy();
    for (const server of servers) server.close();
  });

  async function listen(onConnection: (socket: Socket) => void): Promise<string> {
    const server = createServer((socket) => {
      sockets.push(socket);
      onConnection(socket);
    });
    servers.push(server);
    await new Promise<void>((done) => server.listen(0, "127.0.0.1", done));
    return `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  }

  it("reports a refused connection as GatewayConnectionError", async () => {
    const client = new AuthClient(`http://127.0.0.1:${await freePort()}`, API_KEY);
    const error = await rejects(client.getToken("mock", "a@example.com"), GatewayConnectionError);
    assert.ok(!(error instanceof GatewayTimeout));
    assert.match(error.message, /ECONNREFUSED/);
    assert.ok(!inspect(error).includes(API_KEY));
  });

  it("reports silence as GatewayTimeout", async () => {
    const url = await listen(() => undefined); // accepts, never answers
    const client = new AuthClient(url, API_KEY, { timeoutMs: 300 });
    const started = performance.now();
    const error = await rejects(client.getToken("mock", "a@example.com"), GatewayTimeout);
    assert.ok(performance.now() - started < 5_000);
    assert.match(error.message, /within 0\.3s/);
    // The long-poll gets its wait on top of the timeout.
    const polled = performance.now();
    await rejects(client.getStatus("s", { waitSeconds: 1 }), GatewayTimeout);
    assert.ok(performance.now() - polled >= 1_200);
  });

  it("re-throws the caller's abort as is", async () => {
    const url = await listen(() => undefined);
    const client = new AuthClient(url, API_KEY);
    const controller = new AbortController();
    const pending = client.getToken("mock", "a@example.com", { signal: controller.signal });
    setTimeout(() => { controller.abort(new Error("caller gave up")); }, 50);
    await assert.rejects(pending, /caller gave up/);
    const already = AbortSignal.abort(new Error("before"));
    await assert.rejects(client.getToken("mock", "a@example.com", { signal: already }), /before/);
  });

  it("sends once more when a kept-alive connection is dropped before the answer", async () => {
    let connections = 0;
    const server = createHttpServer((req, res) => {
      connections++;
      if (connections === 1) {
        req.socket.destroy(); // dropped as the request went out
        return;
      }
      res.writeHead(200, { "content-type": "application/json" });
      res.end(JSON.stringify({ access_token: "mock_at_2", token_type: "Bearer", expires_at: null, scopes: [] }));
    });
    servers.push(server);
    await new Promise<void>((done) => server.listen(0, "127.0.0.1", done));
    const client = new AuthClient(`http://127.0.0.1:${(server.address() as AddressInfo).port}`, API_KEY);
    assert.equal(await client.getToken("mock", "a@example.com"), "mock_at_2");
    assert.equal(connections, 2);

    // Twice in a row is an error, not a loop.
    connections = 0;
    const dropping = createHttpServer((req) => { req.socket.destroy(); });
    servers.push(dropping);
    await new Promise<void>((done) => dropping.listen(0, "127.0.0.1", done));
    const unlucky = new AuthClient(`http://127.0.0.1:${(dropping.address() as AddressInfo).port}`, API_KEY);
    await rejects(unlucky.getToken("mock", "a@example.com"), GatewayConnectionError);
  });
});

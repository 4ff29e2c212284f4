/**
 * requireAuth without a gateway: the choice between exchange and a named user, the
 * channel (URL elicitation or text), what it makes of each gateway answer (bodies shaped
 * like the real gateway's, from a stand-in fetch), and one round trip through a real SDK
 * client and McpServer over the SDK's in-memory transport.
 */

import assert from "node:assert/strict";
import { describe, it } from "node:test";

import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { InMemoryTransport } from "@modelcontextprotocol/sdk/inMemory.js";
import { McpServer } from "@modelcontextprotocol/sdk/server/mcp.js";
import type { AuthInfo } from "@modelcontextprotocol/sdk/server/auth/types.js";
import {
  ElicitRequestSchema,
  ElicitationCompleteNotificationSchema,
  McpError,
  type CallToolResult,
  type ClientCapabilities,
  type ElicitRequest,
  type ElicitResult,
} from "@modelcontextprotocol/sdk/types.js";

import {
  AuthClient,
  NO_TOKEN_TO_EXCHANGE,
  requireAuth,
  type AuthorizedExtra,
  type RequireAuthOptions,
  type ServerLike,
  type ToolExtra,
} from "../../src/index.js";
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
  type Recorded,
  type Route,
  type StandIn,
} from "../helpers/standin.js";

const ALICE = "alice@example.com";
const JWT = "eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiJhbGljZSJ9.c2lnbmF0dXJl";
const URL_CAPABLE: ServerLike = { getClientCapabilities: () => ({ elicitation: { url: {} } }) };

interface Harness {
  gateway: StandIn;
  client: AuthClient;
  calls: AuthorizedExtra[];
  logs: string[];
  tool: (args: Record<string, unknown>, extra: ToolExtra) => Promise<CallToolResult>;
}

function harness(route: Route, options: Partial<RequireAuthOptions> = {}): Harness {
  const gateway = standIn(route);
  const client = new AuthClient(GATEWAY, API_KEY, { fetch: gateway.fetch });
  const calls: AuthorizedExtra[] = [];
  const logs: string[] = [];
  const record = (message: string): void => {
    logs.push(message);
  };
  const tool = requireAuth(
    { client, provider: "mock", scopes: ["mail.read"], logger: { info: record, warn: record, debug: record }, ...options },
    (args, extra) => {
      calls.push(extra);
      return { content: [{ type: "text", text: `ran with ${JSON.stringify(args)}` }] };
    },
  );
  return { gateway, client, calls, logs, tool };
}

interface ExtraOptions {
  authInfo?: AuthInfo;
  headers?: Record<string, string>;
  elicit?: (params: ElicitRequest["params"], timeout: number | undefined) => Promise<ElicitResult>;
  notifications?: unknown[];
}

function extraOf(options: ExtraOptions = {}): ToolExtra {
  const controller = new AbortController();
  const extra = {
    signal: controller.signal,
    requestId: 1,
    ...(options.authInfo ? { authInfo: options.authInfo } : {}),
    requestInfo: { headers: options.headers ?? {} },
    sendNotification: (notification: unknown) => {
      options.notifications?.push(notification);
      return Promise.resolve();
    },
    sendRequest: async (request: ElicitRequest, _schema: unknown, requestOptions?: { timeout?: number }) => {
      if (!options.elicit) throw new Error("no elicitation expected");
      return await options.elicit(request.params, requestOptions?.timeout);
    },
  };
  return extra as unknown as ToolExtra;
}

const asAlice = { headers: { "x-user-email": ALICE } };

function textOf(result: CallToolResult): string {
  return result.content.map((block) => (block.type === "text" ? block.text : "")).join("\n");
}

function errorText(result: CallToolResult): string {
  assert.equal(result.isError, true);
  return textOf(result);
}

/** The one call the handler got. */
function only(h: Harness): AuthorizedExtra {
  assert.equal(h.calls.length, 1);
  const [call] = h.calls;
  assert.ok(call);
  return call;
}

function paths(gateway: StandIn): string[] {
  return gateway.requests.map((request) => `${request.method} ${request.url.pathname}`);
}

function bodyOf(request: Recorded | undefined): Record<string, unknown> {
  assert.ok(request);
  return JSON.parse(request.body) as Record<string, unknown>;
}

describe("requireAuth: a named user", () => {
  it("runs the handler with the token of the user the trusted header names", async () => {
    const h = harness(() => tokenAnswer("mock_at_alice"), { trustedEmailHeader: "X-User-Email" });
    const result = await h.tool({ to: "bob@example.com" }, extraOf(asAlice));
    assert.equal(textOf(result), 'ran with {"to":"bob@example.com"}');
    assert.equal(only(h).accessToken, "mock_at_alice");
    assert.deepEqual(only(h).tokenInfo.scopes, ["openid", "email", "mail.read"]);
    assert.equal(only(h).requestId, 1); // the SDK's extra is passed on
    assert.deepEqual(bodyOf(h.gateway.requests[0]), { provider: "mock", user_email: ALICE, required_scopes: ["mail.read"] });
  });

  it("gives the link in the text when the client cannot elicit by URL", async () => {
    const capabilities: (ClientCapabilities | undefined)[] = [undefined, {}, { elicitation: { form: {} } }];
    for (const caps of capabilities) {
      const h = harness(
        (request) => (request.url.pathname === "/auth/token" ? gatewayError(404, "not_authenticated", { auth_required: true }) : initAnswer()),
        { trustedEmailHeader: "X-User-Email", server: { getClientCapabilities: () => caps } },
      );
      const text = errorText(await h.tool({}, extraOf(asAlice)));
      assert.match(text, /^Authorization required\. The user has not connected their mock account yet\./);
      assert.ok(text.includes(`${GATEWAY}/connect/c-s-1 .`), text);
      assert.match(text, /call this tool again/);
      assert.equal(h.calls.length, 0);
      assert.deepEqual(paths(h.gateway), ["POST /auth/token", "POST /auth/init"]);
      assert.deepEqual(bodyOf(h.gateway.requests[1]), { provider: "mock", user_email: ALICE, scopes: ["mail.read"] });
      assert.ok(h.logs.some((line) => line.includes("the tool's error text")));
    }
  });

  it("uses the text for an older protocol, or with elicitation turned off", async () => {
    for (const [options, headers] of [
      [{ server: URL_CAPABLE }, { "x-user-email": ALICE, "mcp-protocol-version": "2025-06-18" }],
      [{ server: URL_CAPABLE, elicitation: false }, { "x-user-email": ALICE }],
    ] as const) {
      const h = harness(
        (request) => (request.url.pathname === "/auth/token" ? gatewayError(404, "not_authenticated") : initAnswer()),
        { trustedEmailHeader: "X-User-Email", ...options },
      );
      const text = errorText(await h.tool({}, extraOf({ headers, elicit: () => assert.fail("no elicitation expected") })));
      assert.match(text, /Authorization required/);
    }
  });

  it("elicits by URL, waits for the session, then runs the handler", async () => {
    let signedIn = false;
    const h = harness(
      (request) => {
        if (request.url.pathname === "/auth/token") return signedIn ? tokenAnswer("mock_at_new") : gatewayError(404, "not_authenticated");
        if (request.url.pathname === "/auth/init") return initAnswer("s-7");
        signedIn = true;
        return statusAnswer("s-7", "completed", { user_email: ALICE, provider: "mock" });
      },
      { trustedEmailHeader: "X-User-Email", server: URL_CAPABLE, waitTimeoutMs: 30_000 },
    );
    const asked: ElicitRequest["params"][] = [];
    const notifications: unknown[] = [];
    let timeout: number | undefined;
    const result = await h.tool({}, extraOf({
      ...asAlice,
      notifications,
      elicit: (params, requestTimeout) => {
        asked.push(params);
        timeout = requestTimeout;
        return Promise.resolve({ action: "accept" });
      },
    }));
    assert.equal(textOf(result), "ran with {}");
    assert.equal(only(h).accessToken, "mock_at_new");
    assert.deepEqual(asked, [{ mode: "url", message: "Connect your mock account to continue.", url: `${GATEWAY}/connect/c-s-7`, elicitationId: "s-7" }]);
    assert.ok(timeout !== undefined && timeout > 29_000 && timeout <= 30_000);
    assert.deepEqual(notifications, [{ method: "notifications/elicitation/complete", params: { elicitationId: "s-7" } }]);
    assert.deepEqual(paths(h.gateway), ["POST /auth/token", "POST /auth/init", "GET /auth/status/s-7", "POST /auth/token"]);
  });

  it("falls back to the text when the user declines, the request fails or times out", async () => {
    const cases: [() => Promise<ElicitResult>, RegExp][] = [
      [() => Promise.resolve({ action: "decline" }), /did not accept the request to connect their mock account/],
      [() => Promise.resolve({ action: "cancel" }), /did not accept/],
      [() => Promise.reject(new Error("client refused")), /has not connected their mock account yet/],
      [() => Promise.reject(new McpError(-32001, "Request timed out")), /has not finished connecting their mock account/],
    ];
    for (const [answer, pattern] of cases) {
      const h = harness(
        (request) => (request.url.pathname === "/auth/token" ? gatewayError(404, "not_authenticated") : initAnswer("s-3")),
        { trustedEmailHeader: "X-User-Email", server: URL_CAPABLE },
      );
      const text = errorText(await h.tool({}, extraOf({ ...asAlice, elicit: answer })));
      assert.match(text, pattern);
      assert.ok(text.includes(`${GATEWAY}/connect/c-s-3`));
      assert.equal(h.calls.length, 0);
    }
  });

  it("gives a fresh link when the session fails, and a bounded wait when it stays pending", async () => {
    let inits = 0;
    const failing = harness(
      (request) => {
        if (request.url.pathname === "/auth/token") return gatewayError(404, "not_authenticated");
        if (request.url.pathname === "/auth/init") return initAnswer(`s-${++inits}`);
        return statusAnswer("s-1", "failed", { error: "The user denied access", reason: "access_denied" });
      },
      { trustedEmailHeader: "X-User-Email", server: URL_CAPABLE },
    );
    const text = errorText(await failing.tool({}, extraOf({ ...asAlice, elicit: () => Promise.resolve({ action: "accept" }) })));
    assert.match(text, /did not succeed/);
    assert.ok(text.includes("/connect/c-s-2"));

    const pending = harness(
      (request) => {
        if (request.url.pathname === "/auth/token") return gatewayError(404, "not_authenticated");
        if (request.url.pathname === "/auth/init") return initAnswer("s-5");
        return statusAnswer("s-5", "pending");
      },
      { trustedEmailHeader: "X-User-Email", server: URL_CAPABLE, waitTimeoutMs: 0 },
    );
    const waited = errorText(await pending.tool({}, extraOf({ ...asAlice, elicit: () => Promise.resolve({ action: "accept" }) })));
    assert.match(waited, /has not finished connecting/);
    assert.ok(waited.includes("/connect/c-s-5"));
  });

  it("asks for the missing scopes plus those already granted", async () => {
    const h = harness(
      (request) => {
        if (request.url.pathname === "/auth/token") return gatewayError(403, "scope_insufficient", { missing_scopes: ["mail.send"], auth_required: true });
        if (request.url.pathname.startsWith("/auth/providers/")) {
          return json(200, { user_email: ALICE, providers: [{ provider: "mock", scopes: ["openid", "mail.read"], state: "active" }, { provider: "other", scopes: ["x"] }] });
        }
        return initAnswer();
      },
      { trustedEmailHeader: "X-User-Email", scopes: ["mail.send"] },
    );
    const text = errorText(await h.tool({}, extraOf(asAlice)));
    assert.match(text, /needs more permissions on the user's mock account \(mail\.send\)/);
    assert.deepEqual(paths(h.gateway), ["POST /auth/token", `GET /auth/providers/${encodeURIComponent(ALICE)}`, "POST /auth/init"]);
    assert.deepEqual(bodyOf(h.gateway.requests[2])["scopes"], ["openid", "mail.read", "mail.send"]);
  });

  it("renews a refresh_failed credential with a new link", async () => {
    const h = harness(
      (request) => {
        if (request.url.pathname === "/auth/token") return gatewayError(401, "refresh_failed", { auth_required: true });
        if (request.url.pathname.startsWith("/auth/providers/")) return gatewayError(403, "forbidden", { message: "may not use status" });
        return initAnswer();
      },
      { trustedEmailHeader: "X-User-Email" },
    );
    const text = errorText(await h.tool({}, extraOf(asAlice)));
    assert.match(text, /expired or was revoked and must be renewed/);
    assert.deepEqual(bodyOf(h.gateway.requests[2])["scopes"], ["mail.read"]);
  });

  it("explains failures that signing in cannot fix, without a link", async () => {
    const cases: [Response, RegExp][] = [
      [gatewayError(403, "forbidden", { message: "Invalid API key." }), /not authorized to use its auth gateway/],
      [gatewayError(401, "unauthorized"), /not authorized to use its auth gateway/],
      [gatewayError(403, "exchange_required"), /may only get tokens by exchanging/],
      [gatewayError(429, "rate_limited", {}, { "retry-after": "1" }), /auth gateway is temporarily unavailable \(rate_limited\)\. Try again in 1 second\./],
      [gatewayError(503, "provider_unavailable", { retry_after: 30 }), /The mock sign-in service is temporarily unavailable \(provider_unavailable\)\. Try again in 30 seconds\./],
      [gatewayError(503, "busy"), /\(busy\)\. Try again later\./],
      [gatewayError(400, "invalid_email", { message: "Invalid email address" }), /email address was rejected: Invalid email address/],
      [gatewayError(400, "unknown_provider"), /has no provider 'mock'/],
      [gatewayError(400, "invalid_request", { message: "bad" }), /rejected the request \(invalid_request\): bad/],
      [new Response("<html>", { status: 502 }), /The auth gateway failed \(unexpected answer\)/],
    ];
    for (const [answer, pattern] of cases) {
      const h = harness(() => answer.clone(), { trustedEmailHeader: "X-User-Email" });
      const text = errorText(await h.tool({}, extraOf(asAlice)));
      assert.match(text, pattern);
      assert.ok(!text.includes("/connect/") && !text.includes(API_KEY), text);
    }
    const unreachable = new AuthClient("http://127.0.0.1:1", API_KEY);
    const tool = requireAuth({ client: unreachable, provider: "mock", trustedEmailHeader: "X-User-Email" }, () => ({ content: [] }));
    assert.match(errorText(await tool({}, extraOf(asAlice))), /cannot be reached right now/);
  });

  it("never shows a link off the gateway's origin", async () => {
    const h = harness(
      (request) =>
        request.url.pathname === "/auth/token"
          ? gatewayError(404, "not_authenticated")
          : json(200, { auth_url: "https://evil.example/connect/x", session_id: "s", expires_at: null }),
      { trustedEmailHeader: "X-User-Email" },
    );
    const text = errorText(await h.tool({}, extraOf(asAlice)));
    assert.match(text, /does not point to the gateway itself/);
    assert.ok(!text.includes("evil.example"));
    assert.ok(h.logs.some((line) => line.includes("evil.example")), "the operator finds the origin in the log");
  });

  it("refuses before any gateway request when the user cannot be identified", async () => {
    const h = harness(() => assert.fail("no gateway request expected"));
    assert.match(errorText(await h.tool({ user_email: ALICE }, extraOf(asAlice))), /no trusted source/);
    const header = harness(() => assert.fail("no gateway request expected"), { trustedEmailHeader: "X-User-Email" });
    assert.match(errorText(await header.tool({ user_email: "ceo@example.com" }, extraOf(asAlice))), /does not match/);
    assert.equal(h.gateway.requests.length + header.gateway.requests.length, 0);
  });

  it("lets the handler's own errors through, and accepts a call with (extra) alone", async () => {
    const gateway = standIn(() => tokenAnswer());
    const client = new AuthClient(GATEWAY, API_KEY, { fetch: gateway.fetch });
    const failing = requireAuth({ client, provider: "mock", trustedEmailHeader: "X-User-Email" }, () => {
      throw new Error("the mail API is down");
    });
    await assert.rejects(failing({}, extraOf(asAlice)), /the mail API is down/);
    const noArgs = requireAuth({ client, provider: "mock", trustedEmailHeader: "X-User-Email" }, (args, extra) => ({
      content: [{ type: "text", text: `${JSON.stringify(args)} ${extra.accessToken}` }],
    }));
    const call = noArgs as unknown as (extra: ToolExtra) => Promise<CallToolResult>;
    assert.equal(textOf(await call(extraOf(asAlice))), "{} mock_at_1");
  });

  it("checks its options", () => {
    const client = new AuthClient(GATEWAY, API_KEY);
    const handler = (): CallToolResult => ({ content: [] });
    assert.throws(() => requireAuth({ client, provider: "" }, handler), TypeError);
    assert.throws(() => requireAuth({ client, provider: "mock", waitTimeoutMs: -1 }, handler), RangeError);
    assert.throws(() => requireAuth({ client, provider: "mock", allowEmailArgument: true, emailArgument: null }, handler), TypeError);
    assert.throws(() => requireAuth({ client, provider: "mock", exchange: "yes" as unknown as boolean }, handler), TypeError);
  });
});

describe("requireAuth: token exchange", () => {
  const jwtUser = (claims: Record<string, unknown> = { email: ALICE }): AuthInfo => ({ token: JWT, clientId: "c", scopes: [], extra: claims });

  it("exchanges a JWT access token instead of naming the user", async () => {
    const h = harness(() => exchangeAnswer("mock_at_exchanged"));
    const result = await h.tool({}, extraOf({ authInfo: jwtUser() }));
    assert.equal(textOf(result), "ran with {}");
    assert.equal(only(h).accessToken, "mock_at_exchanged");
    assert.deepEqual(paths(h.gateway), ["POST /oauth/token"]);
    const form = Object.fromEntries(new URLSearchParams(h.gateway.requests[0]?.body));
    assert.equal(form["subject_token"], JWT);
    assert.equal(form["audience"], "mock");
    assert.equal(form["scope"], "mail.read");
  });

  it("names the user by the email claim for an opaque token or with exchange: false", async () => {
    for (const [authInfo, exchange] of [
      [{ token: "opaque", clientId: "c", scopes: [], extra: { email: ALICE } }, undefined],
      [jwtUser(), false],
    ] satisfies [AuthInfo, boolean | undefined][]) {
      const h = harness(() => tokenAnswer(), exchange === undefined ? {} : { exchange });
      await h.tool({}, extraOf({ authInfo }));
      assert.deepEqual(paths(h.gateway), ["POST /auth/token"]);
      assert.equal(bodyOf(h.gateway.requests[0])["user_email"], ALICE);
    }
  });

  it("refuses a request without a token when exchange: true", async () => {
    const h = harness(() => assert.fail("no gateway request expected"), { exchange: true, trustedEmailHeader: "X-User-Email" });
    assert.equal(errorText(await h.tool({}, extraOf(asAlice))), NO_TOKEN_TO_EXCHANGE);
    const opaque = harness(() => gatewayError(400, "invalid_grant", { reason: "malformed" }), { exchange: true });
    assert.match(errorText(await opaque.tool({}, extraOf({ authInfo: { token: "opaque", clientId: "c", scopes: [] } }))), /\(malformed\)/);
  });

  it("shows the link the gateway's authorization_required carries", async () => {
    const h = harness(() =>
      gatewayError(400, "authorization_required", {
        reason: "not_authenticated",
        auth_url: `${GATEWAY}/connect/bound`,
        session_id: "s-b",
        expires_at: "2030-01-01T00:00:00Z",
      }),
    );
    const text = errorText(await h.tool({}, extraOf({ authInfo: jwtUser() })));
    assert.ok(text.includes(`${GATEWAY}/connect/bound`));
    assert.deepEqual(paths(h.gateway), ["POST /oauth/token"]); // no /auth/init: the gateway's link is bound to the verified user
    assert.ok(!text.includes(JWT) && !h.logs.join("\n").includes(JWT));
  });

  it("says so when the API client may not start sign-ins", async () => {
    const h = harness(() => gatewayError(400, "authorization_required", { reason: "not_authenticated" }));
    assert.match(errorText(await h.tool({}, extraOf({ authInfo: jwtUser() }))), /may not start sign-ins \(it lacks the init right\)/);
  });

  it("exchanges again with the granted scopes so that the new grant keeps them", async () => {
    let exchanges = 0;
    const h = harness((request) => {
      if (request.url.pathname.startsWith("/auth/providers/")) {
        return json(200, { user_email: ALICE, providers: [{ provider: "mock", scopes: ["openid", "mail.read"], state: "active" }] });
      }
      exchanges++;
      return gatewayError(400, "authorization_required", {
        reason: "scope_insufficient",
        missing_scopes: ["mail.send"],
        auth_url: `${GATEWAY}/connect/round-${exchanges}`,
        session_id: `s-${exchanges}`,
      });
    }, { scopes: ["mail.send"] });
    const text = errorText(await h.tool({}, extraOf({ authInfo: jwtUser() })));
    assert.ok(text.includes("/connect/round-2"), text);
    const second = Object.fromEntries(new URLSearchParams(h.gateway.requests[2]?.body));
    assert.equal(second["scope"], "openid mail.read mail.send");

    // When that exchange finds the user signed in after all, the tool runs with it.
    let round = 0;
    const ready = harness((request) => {
      if (request.url.pathname.startsWith("/auth/providers/")) {
        return json(200, { user_email: ALICE, providers: [{ provider: "mock", scopes: ["openid"], state: "active" }] });
      }
      return ++round === 1 ? gatewayError(400, "authorization_required", { reason: "refresh_failed", auth_url: `${GATEWAY}/connect/x`, session_id: "s" }) : exchangeAnswer("mock_at_ready");
    });
    assert.equal(textOf(await ready.tool({}, extraOf({ authInfo: jwtUser() }))), "ran with {}");
    assert.equal(only(ready).accessToken, "mock_at_ready");
  });

  it("explains refused subject tokens by reason", async () => {
    for (const [reason, pattern] of [
      ["expired", /no longer accepts the user's sign-in to this MCP server \(expired\)/],
      ["unverified_email", /no usable, verified email address \(unverified_email\)/],
      ["wrong_audience", /does not accept this MCP server's access tokens \(wrong_audience\)/],
    ] as const) {
      const h = harness(() => gatewayError(400, "invalid_grant", { reason }));
      const text = errorText(await h.tool({}, extraOf({ authInfo: jwtUser() })));
      assert.match(text, pattern);
      assert.ok(!text.includes(JWT));
    }
    const noAudience = harness(() => gatewayError(400, "unauthorized_client", { message: "The API client x has no registered audience; register one with --audience." }));
    assert.match(errorText(await noAudience.tool({}, extraOf({ authInfo: jwtUser() }))), /does not let this MCP server exchange.*--audience/);
    const target = harness(() => gatewayError(400, "invalid_target", { reason: "provider_not_allowed" }));
    assert.match(errorText(await target.tool({}, extraOf({ authInfo: jwtUser() }))), /no provider 'mock' that this MCP server may use/);
  });

  it("refuses an argument or header that contradicts the token", async () => {
    const h = harness(() => assert.fail("no gateway request expected"), { trustedEmailHeader: "X-User-Email" });
    assert.match(errorText(await h.tool({ user_email: "ceo@example.com" }, extraOf({ authInfo: jwtUser(), ...asAlice }))), /does not match/);
    assert.match(errorText(await h.tool({}, extraOf({ authInfo: jwtUser(), headers: { "x-user-email": "bob@example.com" } }))), /different users/);
  });
});

describe("requireAuth through a real SDK client and server (in memory)", () => {
  it("elicits by URL over the protocol and runs the tool after sign-in", async () => {
    let signedIn = false;
    const gateway = standIn((request) => {
      if (request.url.pathname === "/auth/token") return signedIn ? tokenAnswer("mock_at_mem") : gatewayError(404, "not_authenticated");
      if (request.url.pathname === "/auth/init") return initAnswer("s-mem");
      return statusAnswer("s-mem", "completed");
    });
    const auth = new AuthClient(GATEWAY, API_KEY, { fetch: gateway.fetch });
    const server = new McpServer({ name: "mem", version: "0" });
    server.registerTool(
      "whoami",
      { inputSchema: {} },
      requireAuth({ server, client: auth, provider: "mock", allowEmailArgument: true, emailArgument: "user_email" }, (_args, extra) => ({
        content: [{ type: "text", text: `token of length ${extra.accessToken.length}` }],
      })),
    );
    server.registerTool(
      "whoami_as",
      { inputSchema: { user_email: (await import("zod")).z.string() } },
      requireAuth({ server, client: auth, provider: "mock", allowEmailArgument: true }, () => ({ content: [{ type: "text", text: "ok" }] })),
    );
    const client = new Client({ name: "mem-client", version: "0" }, { capabilities: { elicitation: { url: {} } } });
    const asked: string[] = [];
    const completed: string[] = [];
    client.setRequestHandler(ElicitRequestSchema, (request) => {
      if (request.params.mode === "url") asked.push(request.params.url);
      signedIn = true; // the user signs in, then accepts
      return { action: "accept" };
    });
    client.setNotificationHandler(ElicitationCompleteNotificationSchema, (notification) => {
      completed.push(notification.params.elicitationId);
    });
    const [clientSide, serverSide] = InMemoryTransport.createLinkedPair();
    await server.connect(serverSide);
    await client.connect(clientSide);
    try {
      const { tools } = await client.listTools();
      for (const tool of tools) assert.ok(!JSON.stringify(tool.inputSchema).includes("token"), tool.name);
      const refused = (await client.callTool({ name: "whoami", arguments: {} })) as CallToolResult;
      assert.match(errorText(refused), /Pass the user's email address as 'user_email'/);
      const result = (await client.callTool({ name: "whoami_as", arguments: { user_email: ALICE } })) as CallToolResult;
      assert.equal(textOf(result), "ok");
      assert.deepEqual(asked, [`${GATEWAY}/connect/c-s-mem`]);
      assert.deepEqual(completed, ["s-mem"]);
      assert.ok(!JSON.stringify(result).includes("mock_at_mem"));
    } finally {
      await client.close();
      await server.close();
    }
  });
});

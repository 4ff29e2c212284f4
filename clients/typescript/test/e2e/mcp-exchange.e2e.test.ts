/**
 * The whole chain, end to end: a real MCP client with MCP authorization (`Authorization:
 * Bearer <a JWT minted by the mock's identity provider>`) → an MCP server that verifies
 * that JWT itself (jose against the IdP's published keys) and whose tools use
 * `requireAuth` → token exchange at the real gateway → the provider's protected API
 * (`/api/me`), which says whose account the exchanged token belongs to.
 *
 * The MCP server's API client is bound to token exchange (`--require-exchange`), so
 * nothing in this chain can name a user: the gateway answers for the user the token
 * proves, or with a sign-in link bound to that user, which the wrapper shows by URL
 * elicitation or, failing that, in the tool's error text.
 */

import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import { after, before, beforeEach, describe, it } from "node:test";

import { McpServer } from "@modelcontextprotocol/sdk/server/mcp.js";
import type { CallToolResult } from "@modelcontextprotocol/sdk/types.js";
import { z } from "zod";

import { AuthClient, requireAuth, type AuthLogger } from "../../src/index.js";
import { openInBrowser, visit } from "../helpers/browser.js";
import { idpVerifier } from "../helpers/idp-verifier.js";
import { ElicitingUser, call, linkIn, serveMcp, textOf, withClient } from "../helpers/mcp.js";
import { MCP_AUDIENCE, Stack, freshUser } from "../helpers/stack.js";

const TIMEOUT = { timeout: 120_000 };

let stack: Stack;
let exchangeOnlyKey: string;

before(async () => {
  stack = await Stack.start("mcp-exchange");
  // May exchange, start sign-ins and follow them; may not name a user.
  exchangeOnlyKey = await stack.gateway.addExchangeClient(`mail-mcp-${randomUUID().slice(0, 8)}`, { requireExchange: true });
});

after(async () => {
  await Stack.stopAll();
});

beforeEach(async () => {
  await stack.mock.reset();
});

interface ServerOptions {
  apiKey?: string;
  audience?: string;
  exchange?: boolean;
  logger?: AuthLogger;
}

/** An MCP server with MCP authorization whose tools get the provider token through requireAuth. */
async function withMailServer<T>(options: ServerOptions, body: (url: string) => Promise<T>): Promise<T> {
  const client = new AuthClient(stack.gateway.url, options.apiKey ?? exchangeOnlyKey);
  const owner = async (token: string): Promise<string> => {
    const response = await fetch(stack.mock.apiUrl, { headers: { Authorization: `Bearer ${token}` } });
    assert.equal(response.status, 200);
    return ((await response.json()) as { email: string }).email;
  };
  const served = await serveMcp(
    () => {
      const server = new McpServer({ name: "mail-exchange", version: "0" });
      const common = {
        server,
        client,
        provider: "mock",
        mcpAuthorization: true,
        waitTimeoutMs: 15_000,
        ...(options.exchange !== undefined ? { exchange: options.exchange } : {}),
        ...(options.logger ? { logger: options.logger } : {}),
      };
      server.registerTool(
        "whoami",
        { description: "Whose mailbox the provider's API says this is.", inputSchema: {} },
        requireAuth({ ...common, scopes: ["mail.read"] }, async (_args, { accessToken }) => ({
          content: [{ type: "text", text: await owner(accessToken) }],
        })),
      );
      server.registerTool(
        "send",
        { description: "Send mail (needs another scope).", inputSchema: { to: z.string() } },
        requireAuth({ ...common, scopes: ["mail.send"] }, async ({ to }, { tokenInfo }) => {
          const value = { from: await owner(tokenInfo.accessToken), to, scopes: [...tokenInfo.scopes] };
          return { content: [{ type: "text", text: JSON.stringify(value) }], structuredContent: value };
        }),
      );
      server.registerTool(
        "whoami_as",
        { description: "The same, for a tool whose arguments name a user.", inputSchema: { user_email: z.string() } },
        requireAuth({ ...common, scopes: ["mail.read"] }, async (_args, { accessToken }) => ({
          content: [{ type: "text", text: await owner(accessToken) }],
        })),
      );
      return server;
    },
    idpVerifier(stack.mock.idpIssuer, options.audience ?? MCP_AUDIENCE),
  );
  try {
    return await body(served.url);
  } finally {
    await served.close();
  }
}

/** What the user's MCP client sends: the access token the IdP issued it for this server. */
async function bearer(user: string, audience = MCP_AUDIENCE): Promise<Record<string, string>> {
  return { Authorization: `Bearer ${await stack.mock.userToken(user, audience)}` };
}

/** The error text of a tool call that must not carry a sign-in link. */
function explanation(result: CallToolResult): string {
  assert.equal(result.isError, true);
  const text = textOf(result);
  assert.ok(!text.includes("/connect/") && !text.includes("Authorization required"), text);
  return text;
}

describe("token exchange through a real MCP client with MCP authorization", () => {
  it("elicits the verified user's link, then reaches the provider API with the exchanged token", TIMEOUT, async () => {
    const user = freshUser();
    const person = new ElicitingUser("accept");
    const logged: string[] = [];
    const logger: AuthLogger = { info: (m) => logged.push(m), warn: (m) => logged.push(m), debug: (m) => logged.push(m) };
    const headers = await bearer(user);
    await withMailServer({ logger }, async (url) => {
      await withClient(url, { headers, elicitation: person }, async (client) => {
        const first = await call(client, "whoami");
        // The user was asked, by URL elicitation, to open the gateway's link for them...
        assert.equal(person.requests.length, 1);
        const request = person.requests[0];
        assert.ok(request?.mode === "url");
        assert.ok(request.url.startsWith(`${stack.gateway.url}/connect/`));
        assert.equal((await stack.mock.lastAuthorize())["login_hint"], user);
        // ...and the tool then ran with the exchanged token: the provider's API says whose it is.
        assert.ok(!first.isError, textOf(first));
        assert.equal(textOf(first), user);
        const again = await call(client, "whoami");
        assert.equal(textOf(again), user);
        assert.equal(person.requests.length, 1);
        // Neither the subject token nor the provider token reach the tool's input schema or the log.
        const { tools } = await client.listTools();
        for (const tool of tools) assert.ok(!JSON.stringify(tool.inputSchema).includes("token"), tool.name);
      });
    });
    const subject = (headers["Authorization"] ?? "").slice("Bearer ".length);
    const providerToken = await new AuthClient(stack.gateway.url, exchangeOnlyKey).exchangeToken(subject, "mock");
    const log = logged.join("\n");
    assert.match(log, /token exchange/);
    assert.ok(!log.includes(subject) && !log.includes(providerToken));
  });

  it("gives the verified user's link in the text to a client without elicitation", TIMEOUT, async () => {
    const user = freshUser();
    await withMailServer({}, async (url) => {
      await withClient(url, { headers: await bearer(user) }, async (client) => {
        const first = await call(client, "whoami");
        assert.equal(first.isError, true);
        const text = textOf(first);
        assert.match(text, /has not connected their mock account/);
        const link = linkIn(text);
        assert.equal(linkIn(textOf(await call(client, "whoami"))), link); // the same session
        await openInBrowser(link);
        assert.equal((await stack.mock.lastAuthorize())["login_hint"], user);
        const done = await call(client, "whoami");
        assert.ok(!done.isError, textOf(done));
        assert.equal(textOf(done), user);
      });
    });
  });

  it("gives each user their own account", TIMEOUT, async () => {
    const alice = freshUser("alice");
    const bob = freshUser("bob");
    await withMailServer({}, async (url) => {
      for (const person of [alice, bob]) {
        await withClient(url, { headers: await bearer(person), elicitation: new ElicitingUser("accept") }, async (client) => {
          assert.equal(textOf(await call(client, "whoami")), person);
        });
      }
      await withClient(url, { headers: await bearer(alice) }, async (client) => {
        assert.equal(textOf(await call(client, "whoami")), alice);
      });
    });
  });

  it("keeps what the user granted when a tool needs more scopes", TIMEOUT, async () => {
    const user = freshUser();
    const person = new ElicitingUser("accept");
    await withMailServer({}, async (url) => {
      await withClient(url, { headers: await bearer(user), elicitation: person }, async (client) => {
        assert.equal(textOf(await call(client, "whoami")), user);
        const granted = ((await stack.mock.lastAuthorize())["scope"] ?? "").split(" ");
        assert.ok(granted.includes("mail.read"));

        const sent = await call(client, "send", { to: "bob@example.com" });
        assert.ok(!sent.isError, textOf(sent));
        assert.equal(person.requests.length, 2);
        // The new sign-in asked for the missing scope and everything granted before.
        const asked = ((await stack.mock.lastAuthorize())["scope"] ?? "").split(" ");
        for (const scope of [...granted, "mail.send"]) assert.ok(asked.includes(scope), `${scope} not asked`);
        const content = sent.structuredContent as { from: string; scopes: string[] };
        assert.equal(content.from, user);
        assert.ok(content.scopes.includes("mail.read") && content.scopes.includes("mail.send"));
        assert.equal(textOf(await call(client, "whoami")), user);
        assert.equal(person.requests.length, 2);
      });
    });
  });

  it("gives a fresh link after a denied consent", TIMEOUT, async () => {
    const user = freshUser();
    const deny = async (link: string): Promise<void> => {
      await stack.mock.admin("POST", "consent", { mode: "deny" });
      await visit(link);
      await stack.mock.admin("POST", "consent", { mode: "approve_as_login_hint" });
    };
    const person = new ElicitingUser("accept", deny);
    await withMailServer({}, async (url) => {
      await withClient(url, { headers: await bearer(user), elicitation: person }, async (client) => {
        const result = await call(client, "whoami");
        assert.equal(result.isError, true);
        assert.match(textOf(result), /did not succeed/);
        const fresh = linkIn(textOf(result));
        const first = person.requests[0];
        assert.ok(first?.mode === "url");
        assert.notEqual(fresh, first.url);
        await openInBrowser(fresh);
        assert.equal(textOf(await call(client, "whoami")), user);
      });
    });
  });

  it("leads a renewed credential (needs_reauth) to a new link", TIMEOUT, async () => {
    await stack.mock.admin("POST", "settings", { access_token_ttl_secs: 1 });
    const user = freshUser();
    await withMailServer({}, async (url) => {
      await withClient(url, { headers: await bearer(user) }, async (client) => {
        await openInBrowser(linkIn(textOf(await call(client, "whoami"))));
        assert.equal(textOf(await call(client, "whoami")), user);
        await stack.mock.admin("POST", "invalidate", { email: user });
        const after = await call(client, "whoami");
        assert.equal(after.isError, true);
        assert.match(textOf(after), /expired or was revoked/);
        await openInBrowser(linkIn(textOf(after)));
        assert.equal(textOf(await call(client, "whoami")), user);
      });
    });
  });
});

describe("what the exchange chain refuses", () => {
  it("refuses an argument naming another user", TIMEOUT, async () => {
    const user = freshUser();
    await withMailServer({}, async (url) => {
      await withClient(url, { headers: await bearer(user), elicitation: new ElicitingUser("accept") }, async (client) => {
        assert.equal(textOf(await call(client, "whoami_as", { user_email: user.toUpperCase() })), user);
        const refused = await call(client, "whoami_as", { user_email: "ceo@example.com" });
        assert.match(explanation(refused), /does not match the user making this request/);
      });
    });
  });

  it("explains a token the gateway does not accept (another audience)", TIMEOUT, async () => {
    const other = "https://other-mcp.example";
    const headers = await bearer(freshUser(), other);
    await withMailServer({ audience: other }, async (url) => {
      await withClient(url, { headers }, async (client) => {
        const text = explanation(await call(client, "whoami"));
        assert.match(text, /does not accept this MCP server's access tokens \(wrong_audience\)/);
        assert.ok(!text.includes((headers["Authorization"] ?? "").slice("Bearer ".length)));
      });
    });
  });

  it("refuses naming the user to a client bound to exchange (exchange: false)", TIMEOUT, async () => {
    await withMailServer({ exchange: false }, async (url) => {
      await withClient(url, { headers: await bearer(freshUser()) }, async (client) => {
        assert.match(explanation(await call(client, "whoami")), /may only get tokens by exchanging the user's access token/);
      });
    });
  });

  it("tells an API client without an audience to register one", TIMEOUT, async () => {
    await withMailServer({ apiKey: stack.gateway.apiKey }, async (url) => {
      await withClient(url, { headers: await bearer(freshUser()) }, async (client) => {
        const text = explanation(await call(client, "whoami"));
        assert.match(text, /does not let this MCP server exchange/);
        assert.match(text, /--audience/);
      });
    });
  });

  it("has no link to show without the init right", TIMEOUT, async () => {
    const key = await stack.gateway.addExchangeClient(`no-init-${randomUUID().slice(0, 8)}`, { actions: "status,token" });
    await withMailServer({ apiKey: key }, async (url) => {
      await withClient(url, { headers: await bearer(freshUser()), elicitation: new ElicitingUser("accept") }, async (client) => {
        assert.match(explanation(await call(client, "whoami")), /may not start sign-ins/);
      });
    });
  });

  it("asks the MCP client to sign in again for an expired access token", TIMEOUT, async () => {
    const now = Math.floor(Date.now() / 1000);
    // The MCP server's verifier accepts it (still valid for jose), the gateway's clock
    // skew does not: iat far in the past makes it "too_old" at the gateway.
    const token = await stack.mock.userToken(freshUser(), MCP_AUDIENCE, { iat: now - 7 * 86_400, exp: now + 300 });
    await withMailServer({}, async (url) => {
      await withClient(url, { headers: { Authorization: `Bearer ${token}` } }, async (client) => {
        const text = explanation(await call(client, "whoami"));
        assert.match(text, /no longer accepts the user's sign-in to this MCP server \(too_old\)/);
      });
    });
  });

  it("still names the user by the verified email claim with exchange off", TIMEOUT, async () => {
    const user = freshUser();
    await withMailServer({ apiKey: stack.gateway.apiKey, exchange: false }, async (url) => {
      await withClient(url, { headers: await bearer(user) }, async (client) => {
        await openInBrowser(linkIn(textOf(await call(client, "whoami"))));
        assert.equal((await stack.mock.lastAuthorize())["login_hint"], user);
        assert.equal(textOf(await call(client, "whoami")), user);
      });
    });
  });
});

/**
 * requireAuth end to end: a real MCP SDK client over streamable HTTP → the example MCP
 * server (a child process, as its README runs it) and in-process variants → the real
 * gateway → the mock OAuth provider's protected API.
 *
 * The example learns the user from the `X-User-Email` header, which the test clients send
 * as the proxy in front of it would. A client declaring URL elicitation gets the link by a
 * URL-mode `elicitation/create` mid-call; one without gets it in the tool's error text.
 */

import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { after, before, beforeEach, describe, it } from "node:test";

import { McpServer } from "@modelcontextprotocol/sdk/server/mcp.js";
import type { AuthInfo } from "@modelcontextprotocol/sdk/server/auth/types.js";
import type { CallToolResult } from "@modelcontextprotocol/sdk/types.js";
import { z } from "zod";

import { AuthClient, requireAuth, type RequireAuthOptions } from "../../src/index.js";
import { openInBrowser, visit } from "../helpers/browser.js";
import {
  EMAIL_HEADER,
  ElicitingUser,
  asUser,
  call,
  linkIn,
  serveMcp,
  textOf,
  withClient,
  type Served,
  type Verifier,
} from "../helpers/mcp.js";
import { Stack, freshUser, type ExampleServer } from "../helpers/stack.js";

const TIMEOUT = { timeout: 120_000 };

let stack: Stack;
let example: ExampleServer;
let auth: AuthClient;

before(async () => {
  stack = await Stack.start("mcp");
  example = await stack.example();
  auth = new AuthClient(stack.gateway.url, stack.gateway.apiKey, { timeoutMs: 15_000 });
});

after(async () => {
  await Stack.stopAll();
});

beforeEach(async () => {
  await stack.mock.reset();
});

/** The text of a call refused without a sign-in link. */
function refusal(result: CallToolResult): string {
  assert.equal(result.isError, true);
  const text = textOf(result);
  assert.ok(!text.includes("/connect/") && !text.includes("Authorization required"), text);
  return text;
}

describe("the example server", () => {
  it("hides the token from every input schema", TIMEOUT, async () => {
    await withClient(example.url, { headers: asUser(freshUser()) }, async (client) => {
      const { tools } = await client.listTools();
      assert.deepEqual(tools.map((tool) => tool.name).sort(), ["list_messages", "send_email"]);
      for (const tool of tools) {
        const properties = Object.keys(tool.inputSchema.properties ?? {});
        assert.ok(!properties.includes("access_token") && !properties.includes("accessToken"), tool.name);
        // The user comes from the trusted header: the model is not asked who they are.
        assert.ok(!properties.includes("user_email"), tool.name);
      }
      const send = tools.find((tool) => tool.name === "send_email");
      assert.deepEqual([...(send?.inputSchema.required ?? [])].sort(), ["subject", "to"]);
    });
  });

  it("elicits the link by URL, then returns the real result", TIMEOUT, async () => {
    const user = freshUser();
    const person = new ElicitingUser("accept");
    const completions: string[] = [];
    await withClient(example.url, { headers: asUser(user), elicitation: person, completions }, async (client) => {
      const result = await call(client, "list_messages");
      assert.ok(!result.isError, textOf(result));
      assert.equal((result.structuredContent as { owner: string }).owner, user);
      assert.equal(person.requests.length, 1);
      const request = person.requests[0];
      assert.ok(request?.mode === "url");
      assert.ok(request.url.startsWith(`${stack.gateway.url}/connect/`), request.url);
      assert.equal((await stack.mock.lastAuthorize())["login_hint"], user);
      assert.ok(completions.includes(request.elicitationId), "notifications/elicitation/complete was sent");
      // The stored credential serves the next call without asking again.
      const again = await call(client, "list_messages");
      assert.ok(!again.isError);
      assert.equal(person.requests.length, 1);
    });
  });

  it("gives a client without elicitation the link in the text, then the real result", TIMEOUT, async () => {
    const user = freshUser();
    await withClient(example.url, { headers: asUser(user) }, async (client) => {
      const first = await call(client, "list_messages");
      assert.equal(first.isError, true);
      const text = textOf(first);
      assert.match(text, /Authorization required/);
      const link = linkIn(text);
      // Calling again before signing in hands out the same link, not a new session.
      assert.equal(linkIn(textOf(await call(client, "list_messages"))), link);
      await openInBrowser(link);
      assert.equal((await stack.mock.lastAuthorize())["login_hint"], user);
      const done = await call(client, "list_messages");
      assert.ok(!done.isError, textOf(done));
      assert.match(textOf(done), new RegExp(user.replace(/[.]/g, "\\.")));
      assert.match(textOf(done), /Welcome/);
    });
  });

  it("gives a client with form-only elicitation the text fallback", TIMEOUT, async () => {
    await withClient(example.url, { headers: asUser(freshUser()), formOnly: true }, async (client) => {
      const first = await call(client, "list_messages");
      assert.equal(first.isError, true);
      linkIn(textOf(first));
    });
  });

  it("falls back to the link when the user declines", TIMEOUT, async () => {
    const person = new ElicitingUser("decline");
    await withClient(example.url, { headers: asUser(freshUser()), elicitation: person }, async (client) => {
      const result = await call(client, "list_messages");
      assert.equal(result.isError, true);
      assert.match(textOf(result), /did not accept/);
      const request = person.requests[0];
      assert.ok(request?.mode === "url");
      assert.equal(linkIn(textOf(result)), request.url);
    });
  });

  it("leads a revoked credential to a new link", TIMEOUT, async () => {
    const user = freshUser();
    await withClient(example.url, { headers: asUser(user) }, async (client) => {
      const firstLink = linkIn(textOf(await call(client, "list_messages")));
      await openInBrowser(firstLink);
      assert.ok(!(await call(client, "list_messages")).isError);

      await auth.revoke("mock", user);
      const after = await call(client, "list_messages");
      assert.equal(after.isError, true);
      const newLink = linkIn(textOf(after));
      assert.notEqual(newLink, firstLink);
      await openInBrowser(newLink);
      assert.ok(!(await call(client, "list_messages")).isError);
    });
  });

  it("leads needs_reauth to a new link, by text and by elicitation", TIMEOUT, async () => {
    await stack.mock.admin("POST", "settings", { access_token_ttl_secs: 1 });
    const user = freshUser();
    await withClient(example.url, { headers: asUser(user) }, async (client) => {
      const firstLink = linkIn(textOf(await call(client, "list_messages")));
      await openInBrowser(firstLink);
      assert.ok(!(await call(client, "list_messages")).isError);

      await stack.mock.admin("POST", "invalidate", { email: user });
      const after = await call(client, "list_messages");
      assert.equal(after.isError, true);
      const text = textOf(after);
      assert.match(text, /expired or was revoked/);
      const newLink = linkIn(text);
      assert.notEqual(newLink, firstLink);
      assert.equal((await auth.listProviders(user))[0]?.needsReauth, true);
      await openInBrowser(newLink);
      const healed = await call(client, "list_messages");
      assert.ok(!healed.isError, textOf(healed));
    });

    const other = freshUser();
    const person = new ElicitingUser("accept");
    await withClient(example.url, { headers: asUser(other), elicitation: person }, async (client) => {
      assert.ok(!(await call(client, "list_messages")).isError);
      await stack.mock.admin("POST", "invalidate", { email: other });
      const healed = await call(client, "list_messages");
      assert.ok(!healed.isError, textOf(healed));
      assert.equal(person.requests.length, 2);
      assert.match(person.requests[1]?.message ?? "", /expired/);
    });
  });

  it("asks for the missing scopes plus those granted", TIMEOUT, async () => {
    const user = freshUser();
    await withClient(example.url, { headers: asUser(user) }, async (client) => {
      await openInBrowser(linkIn(textOf(await call(client, "list_messages"))));
      assert.ok(!(await call(client, "list_messages")).isError);

      const args = { to: "bob@example.com", subject: "hi" };
      const needsMore = await call(client, "send_email", args);
      assert.equal(needsMore.isError, true);
      const text = textOf(needsMore);
      assert.match(text, /mail\.send/);
      await openInBrowser(linkIn(text));
      const requested = ((await stack.mock.lastAuthorize())["scope"] ?? "").split(" ");
      // The missing scope, and what the user had already granted (incremental consent).
      assert.ok(requested.includes("mail.send") && requested.includes("mail.read"), requested.join(" "));

      const sent = await call(client, "send_email", args);
      assert.ok(!sent.isError, textOf(sent));
      assert.ok((sent.structuredContent as { granted: string[] }).granted.includes("mail.send"));
      assert.ok(!(await call(client, "list_messages")).isError);
    });
  });

  it("asks for the missing scopes by elicitation too", TIMEOUT, async () => {
    const person = new ElicitingUser("accept");
    await withClient(example.url, { headers: asUser(freshUser()), elicitation: person }, async (client) => {
      assert.ok(!(await call(client, "list_messages")).isError);
      const sent = await call(client, "send_email", { to: "bob@example.com", subject: "hi" });
      assert.ok(!sent.isError, textOf(sent));
      assert.equal(person.requests.length, 2);
      assert.match(person.requests[1]?.message ?? "", /mail\.send/);
    });
  });

  it("takes the user from the header, not from the model", TIMEOUT, async () => {
    const user = freshUser();
    await withClient(example.url, { headers: asUser(user) }, async (client) => {
      // The example's tools take no user_email; one the model adds anyway is dropped.
      const injected = { user_email: "ceo@example.com" };
      await openInBrowser(linkIn(textOf(await call(client, "list_messages", injected))));
      assert.equal((await stack.mock.lastAuthorize())["login_hint"], user);
      const done = await call(client, "list_messages", injected);
      assert.ok(!done.isError, textOf(done));
      assert.ok(textOf(done).includes(user) && !textOf(done).includes("ceo@"));
    });
    await withClient(example.url, {}, async (bypassingTheProxy) => {
      const refused = await call(bypassingTheProxy, "list_messages");
      assert.match(refusal(refused), new RegExp(`no ${EMAIL_HEADER} header`));
    });
  });

  it("keeps the token out of results and logs", TIMEOUT, async () => {
    const user = freshUser();
    let results = "";
    await withClient(example.url, { headers: asUser(user), elicitation: new ElicitingUser("accept") }, async (client) => {
      for (const name of ["list_messages", "send_email"]) {
        const result = await call(client, name, name === "send_email" ? { to: "bob@example.com", subject: "x" } : {});
        results += JSON.stringify(result);
      }
    });
    const token = await auth.getToken("mock", user);
    assert.match(token, /^mock_at_/);
    assert.ok(!results.includes(token), "the token is in a tool result");
    const log = readFileSync(example.log, "utf8");
    assert.match(log, /user must authorize mock/); // the log is being written
    assert.ok(!log.includes(token), "the token is in the example's log");
    assert.ok(!log.includes(stack.gateway.apiKey), "the API key is in the example's log");
  });
});

// --- variants served in-process ---------------------------------------------------------------

interface VariantOptions extends Partial<RequireAuthOptions> {
  apiKey?: string;
  verify?: Verifier;
}

/** Two tools that answer whose account their token belongs to: one without a user_email argument, one with it. */
async function variant(options: VariantOptions = {}): Promise<Served> {
  const { apiKey, verify, ...settings } = options;
  const client = new AuthClient(stack.gateway.url, apiKey ?? stack.gateway.apiKey);
  const owner = async (token: string): Promise<string> => {
    const response = await fetch(stack.mock.apiUrl, { headers: { Authorization: `Bearer ${token}` } });
    assert.equal(response.status, 200);
    return ((await response.json()) as { email: string }).email;
  };
  return await serveMcp(() => {
    const server = new McpServer({ name: "variant", version: "0" });
    const common = { server, client, provider: "mock", scopes: ["mail.read"], waitTimeoutMs: 15_000, ...settings };
    server.registerTool(
      "whoami",
      { inputSchema: {} },
      requireAuth(common, async (_args, { accessToken }) => ({ content: [{ type: "text", text: await owner(accessToken) }] })),
    );
    server.registerTool(
      "whoami_arg",
      { inputSchema: { user_email: z.string() } },
      requireAuth(common, async (_args, { accessToken }) => ({ content: [{ type: "text", text: await owner(accessToken) }] })),
    );
    return server;
  }, verify);
}

async function withVariant<T>(options: VariantOptions, body: (url: string) => Promise<T>): Promise<T> {
  const served = await variant(options);
  try {
    return await body(served.url);
  } finally {
    await served.close();
  }
}

/** The MCP server's own OAuth, for the email-claim rules: bearer tokens "t-<email>" (opaque, not JWTs). */
const staticVerifier: Verifier = (token: string): Promise<AuthInfo> => {
  if (!token.startsWith("t-")) return Promise.reject(new Error("unknown token"));
  return Promise.resolve({ token, clientId: "test-client", scopes: [], extra: { email: token.slice(2) } });
};

describe("identity rules through a real MCP client", () => {
  it("does not report a wrong gateway API key as 'please sign in'", TIMEOUT, async () => {
    const wrongKey = `wrong-${"k".repeat(58)}`;
    await withVariant({ apiKey: wrongKey, trustedEmailHeader: EMAIL_HEADER }, async (url) => {
      await withClient(url, { headers: asUser(freshUser()), elicitation: new ElicitingUser("accept") }, async (client) => {
        const text = refusal(await call(client, "whoami"));
        assert.match(text, /not authorized to use its auth gateway/);
        assert.ok(!text.includes("wrong-"));
      });
    });
  });

  it("takes the email from the MCP server's own OAuth identity", TIMEOUT, async () => {
    const user = freshUser();
    await withVariant({ verify: staticVerifier, mcpAuthorization: true }, async (url) => {
      await withClient(url, { headers: { Authorization: `Bearer t-${user}` } }, async (client) => {
        await openInBrowser(linkIn(textOf(await call(client, "whoami"))));
        assert.equal((await stack.mock.lastAuthorize())["login_hint"], user);
        assert.equal(textOf(await call(client, "whoami")), user);
        // The same address in other case is the same user.
        assert.equal(textOf(await call(client, "whoami_arg", { user_email: user.toUpperCase() })), user);
        // A user_email argument cannot override the signed-in identity.
        assert.match(refusal(await call(client, "whoami_arg", { user_email: "someone-else@example.com" })), /does not match/);
      });
    });
  });

  it("refuses an argument naming another user, opted in or not", TIMEOUT, async () => {
    for (const allowEmailArgument of [false, true]) {
      await withVariant({ trustedEmailHeader: EMAIL_HEADER, allowEmailArgument }, async (url) => {
        await withClient(url, { headers: asUser(freshUser()) }, async (client) => {
          const result = await call(client, "whoami_arg", { user_email: "ceo@example.com" });
          assert.match(refusal(result), /does not match the user making this request/);
        });
      });
    }
  });

  it("never falls back from a missing trusted header to the argument", TIMEOUT, async () => {
    await withVariant({ trustedEmailHeader: EMAIL_HEADER, allowEmailArgument: true }, async (url) => {
      await withClient(url, {}, async (client) => {
        const result = await call(client, "whoami_arg", { user_email: freshUser() });
        assert.match(refusal(result), new RegExp(`no ${EMAIL_HEADER} header`));
      });
    });
  });

  it("lets the argument choose the account only when the server opts in", TIMEOUT, async () => {
    const user = freshUser();
    await withVariant({}, async (url) => {
      await withClient(url, { headers: asUser(user) }, async (client) => {
        const text = refusal(await call(client, "whoami_arg", { user_email: user }));
        assert.match(text, /no trusted source/);
        for (const setting of ["MCP authorization", "trustedEmailHeader", "allowEmailArgument"]) assert.ok(text.includes(setting));
        // A header is ignored unless configured.
        assert.match(refusal(await call(client, "whoami")), /no trusted source/);
      });
    });
    await withVariant({ allowEmailArgument: true }, async (url) => {
      await withClient(url, {}, async (client) => {
        await openInBrowser(linkIn(textOf(await call(client, "whoami_arg", { user_email: user }))));
        assert.equal((await stack.mock.lastAuthorize())["login_hint"], user);
        assert.equal(textOf(await call(client, "whoami_arg", { user_email: user })), user);
      });
    });
  });

  it("bounds the wait when the user accepts but never finishes", TIMEOUT, async () => {
    await withVariant({ trustedEmailHeader: EMAIL_HEADER, waitTimeoutMs: 2_000 }, async (url) => {
      const person = new ElicitingUser("ignore");
      await withClient(url, { headers: asUser(freshUser()), elicitation: person }, async (client) => {
        const started = performance.now();
        const result = await call(client, "whoami");
        assert.ok(performance.now() - started < 10_000);
        assert.equal(result.isError, true);
        assert.match(textOf(result), /has not finished connecting/);
        const request = person.requests[0];
        assert.ok(request?.mode === "url");
        assert.equal(linkIn(textOf(result)), request.url);
      });
    });
  });

  it("gives a fresh link after a denied consent", TIMEOUT, async () => {
    const deny = async (link: string): Promise<void> => {
      await stack.mock.admin("POST", "consent", { mode: "deny" });
      await visit(link);
      await stack.mock.admin("POST", "consent", { mode: "approve_as_login_hint" });
    };
    await withVariant({ trustedEmailHeader: EMAIL_HEADER }, async (url) => {
      const person = new ElicitingUser("accept", deny);
      await withClient(url, { headers: asUser(freshUser()), elicitation: person }, async (client) => {
        const result = await call(client, "whoami");
        assert.equal(result.isError, true);
        assert.match(textOf(result), /did not succeed/);
        const fresh = linkIn(textOf(result));
        const first = person.requests[0];
        assert.ok(first?.mode === "url");
        assert.notEqual(fresh, first.url);
        await openInBrowser(fresh);
        assert.ok(!(await call(client, "whoami")).isError);
      });
    });
  });

  it("explains a provider outage without a link", TIMEOUT, async () => {
    const user = freshUser();
    await stack.mock.admin("POST", "settings", { access_token_ttl_secs: 0 });
    await withVariant({ trustedEmailHeader: EMAIL_HEADER }, async (url) => {
      await withClient(url, { headers: asUser(user) }, async (client) => {
        await openInBrowser(linkIn(textOf(await call(client, "whoami"))));
        await stack.mock.admin("POST", "faults", { endpoint: "token", fault: { kind: "server_error" }, times: 10 });
        const text = refusal(await call(client, "whoami"));
        assert.match(text, /mock sign-in service is temporarily unavailable \(provider_unavailable\)/);
      });
    });
  });
});

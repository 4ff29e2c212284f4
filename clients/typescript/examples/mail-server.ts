/**
 * A small "mail" MCP server whose tools use the user's OAuth token from the gateway.
 *
 * Everything OAuth is in the `requireAuth(...)` lines: no client secrets, no token
 * storage, no callback route. Run it against a gateway and the mock provider with
 * (from clients/typescript, after `npm ci`):
 *
 *     AUTH_GATEWAY_URL=http://127.0.0.1:8000 AUTH_GATEWAY_API_KEY=... \
 *     MAIL_API_URL=http://127.0.0.1:9000/api/me npm run example
 *
 * and point an MCP client at http://127.0.0.1:8001/mcp, sending the header
 * `X-User-Email: <the user's address>`.
 *
 * Who the user is comes from that header, never from a tool argument the model writes.
 * The server trusts it because it is meant to sit behind an authenticating proxy that
 * sets the header (replacing any copy the client sent) and because it listens on
 * 127.0.0.1 only, so nothing but that proxy reaches it. A request without the header is
 * refused. `MCP_TRUSTED_EMAIL_HEADER` names another header (`X-Forwarded-Email` for
 * oauth2-proxy, for example). A server that runs with MCP authorization needs no header:
 * `requireAuth` then exchanges the user's access token at the gateway (see the gateway's docs/token-exchange.md).
 */

import { randomUUID } from "node:crypto";
import { createServer, type IncomingMessage, type ServerResponse } from "node:http";
import { pathToFileURL } from "node:url";

import { McpServer } from "@modelcontextprotocol/sdk/server/mcp.js";
import { StreamableHTTPServerTransport } from "@modelcontextprotocol/sdk/server/streamableHttp.js";
import { isInitializeRequest, type CallToolResult } from "@modelcontextprotocol/sdk/types.js";
import { z } from "zod";

import { AuthClient, requireAuth, type AuthLogger } from "../src/index.js";

const PROVIDER = process.env["MAIL_PROVIDER"] ?? "mock";
const MAIL_API_URL = process.env["MAIL_API_URL"] ?? "http://127.0.0.1:9000/api/me";
/** The header the proxy in front of this server sets to the signed-in user's email. */
const EMAIL_HEADER = process.env["MCP_TRUSTED_EMAIL_HEADER"] ?? "X-User-Email";

const auth = new AuthClient(process.env["AUTH_GATEWAY_URL"] ?? "", process.env["AUTH_GATEWAY_API_KEY"] ?? "");
const logger: AuthLogger = {
  info: (message) => { console.error(`[mail-server] ${message}`); },
  warn: (message) => { console.error(`[mail-server] warning: ${message}`); },
};

interface Mailbox {
  email: string;
  scopes: string[];
  messages: unknown[];
}

/** Call the provider's protected API with the user's token. */
async function mailbox(accessToken: string): Promise<Mailbox> {
  const response = await fetch(MAIL_API_URL, {
    headers: { Authorization: `Bearer ${accessToken}` },
    signal: AbortSignal.timeout(10_000),
  });
  if (!response.ok) throw new Error(`The mail API answered HTTP ${response.status}`);
  return (await response.json()) as Mailbox;
}

function json(value: unknown): CallToolResult {
  return { content: [{ type: "text", text: JSON.stringify(value) }], structuredContent: value as Record<string, unknown> };
}

/** One McpServer per MCP session (the SDK binds a server to one transport). */
function buildServer(): McpServer {
  const server = new McpServer({ name: "mail", version: "0.1.0" });
  const common = { server, client: auth, provider: PROVIDER, trustedEmailHeader: EMAIL_HEADER, logger };

  server.registerTool(
    "list_messages",
    { description: "List the messages in the user's mailbox.", inputSchema: {} },
    requireAuth({ ...common, scopes: ["mail.read"] }, async (_args, { accessToken }) => {
      const box = await mailbox(accessToken);
      return json({ owner: box.email, messages: box.messages });
    }),
  );

  server.registerTool(
    "send_email",
    {
      description: "Send an email from the user's mailbox.",
      inputSchema: { to: z.string().describe("Recipient address"), subject: z.string() },
    },
    requireAuth({ ...common, scopes: ["mail.send"] }, async ({ to, subject }, { accessToken }) => {
      const box = await mailbox(accessToken);
      // The mock provider has no send endpoint: show what the API says the token may do.
      return json({ from: box.email, to, subject, granted: box.scopes });
    }),
  );
  return server;
}

async function readJson(req: IncomingMessage): Promise<unknown> {
  const chunks: Buffer[] = [];
  for await (const chunk of req) chunks.push(chunk as Buffer);
  const text = Buffer.concat(chunks).toString("utf8");
  return text ? (JSON.parse(text) as unknown) : undefined;
}

function refuse(res: ServerResponse, status: number, message: string): void {
  res.writeHead(status, { "content-type": "application/json" });
  res.end(JSON.stringify({ jsonrpc: "2.0", error: { code: -32000, message }, id: null }));
}

/** Streamable HTTP on `/mcp`, one transport and server per session. */
export function startMailServer(host: string, port: number): Promise<ReturnType<typeof createServer>> {
  const sessions = new Map<string, StreamableHTTPServerTransport>();
  const http = createServer((req, res) => {
    void (async () => {
      if (new URL(req.url ?? "/", "http://localhost").pathname !== "/mcp") {
        refuse(res, 404, "Not found");
        return;
      }
      const sessionId = req.headers["mcp-session-id"];
      const existing = typeof sessionId === "string" ? sessions.get(sessionId) : undefined;
      if (existing) {
        await existing.handleRequest(req, res, req.method === "POST" ? await readJson(req) : undefined);
        return;
      }
      if (req.method !== "POST") {
        refuse(res, 400, "No valid session");
        return;
      }
      const body = await readJson(req);
      if (!isInitializeRequest(body)) {
        refuse(res, 400, "No valid session");
        return;
      }
      const transport: StreamableHTTPServerTransport = new StreamableHTTPServerTransport({
        sessionIdGenerator: () => randomUUID(),
        onsessioninitialized: (id) => {
          sessions.set(id, transport);
        },
      });
      transport.onclose = () => {
        if (transport.sessionId) sessions.delete(transport.sessionId);
      };
      await buildServer().connect(transport);
      await transport.handleRequest(req, res, body);
    })().catch((error: unknown) => {
      console.error("[mail-server] request failed:", error instanceof Error ? error.message : error);
      if (!res.headersSent) refuse(res, 500, "Internal error");
    });
  });
  return new Promise((resolve) => {
    http.listen(port, host, () => { resolve(http); });
  });
}

const isMain = process.argv[1] !== undefined && import.meta.url === pathToFileURL(process.argv[1]).href;
if (isMain) {
  const host = process.env["MCP_HOST"] ?? "127.0.0.1";
  const port = Number.parseInt(process.env["MCP_PORT"] ?? "8001", 10);
  void startMailServer(host, port).then(() => {
    console.error(`[mail-server] listening on http://${host}:${port}/mcp`);
  });
}

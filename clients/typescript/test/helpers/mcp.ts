/**
 * MCP-side helpers for the tests: a real SDK `Client` over streamable HTTP, a user who
 * answers URL elicitations (opening the link with ./browser.ts), and an in-process
 * streamable-HTTP server for variants of the example (optionally with MCP authorization).
 */

import { randomUUID } from "node:crypto";
import { createServer, type IncomingMessage, type Server as HttpServer, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";

import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { StreamableHTTPClientTransport } from "@modelcontextprotocol/sdk/client/streamableHttp.js";
import type { McpServer } from "@modelcontextprotocol/sdk/server/mcp.js";
import type { AuthInfo } from "@modelcontextprotocol/sdk/server/auth/types.js";
import { StreamableHTTPServerTransport } from "@modelcontextprotocol/sdk/server/streamableHttp.js";
import {
  ElicitRequestSchema,
  ElicitationCompleteNotificationSchema,
  isInitializeRequest,
  type CallToolResult,
  type ClientCapabilities,
  type ElicitRequest,
  type ElicitResult,
} from "@modelcontextprotocol/sdk/types.js";

import { openInBrowser } from "./browser.js";

/** The header a trusted proxy sets to the user's email (what the example reads). */
export const EMAIL_HEADER = "X-User-Email";

/** Request headers of a user whom the proxy in front of the MCP server signed in. */
export function asUser(email: string): Record<string, string> {
  return { [EMAIL_HEADER]: email };
}

const LINK = /https?:\/\/\S+\/connect\/[^\s]+/;

/** The gateway connect link in a tool's error text (throws if absent). */
export function linkIn(text: string): string {
  const match = LINK.exec(text);
  if (!match) throw new Error(`no connect link in: ${JSON.stringify(text)}`);
  return match[0];
}

/** All text content of a tool result. */
export function textOf(result: CallToolResult): string {
  return result.content
    .filter((block): block is { type: "text"; text: string } => block.type === "text")
    .map((block) => block.text)
    .join("\n");
}

/**
 * An MCP client-side user who answers URL elicitations: `accept` opens the link in the
 * "browser" first (completing the consent, or whatever `opener` does), then accepts;
 * `decline`/`cancel` answer without opening it.
 */
export class ElicitingUser {
  readonly requests: ElicitRequest["params"][] = [];
  constructor(
    readonly action: "accept" | "decline" | "cancel" | "ignore" = "accept",
    readonly opener: (url: string) => Promise<unknown> = openInBrowser,
  ) {}

  async answer(params: ElicitRequest["params"]): Promise<ElicitResult> {
    this.requests.push(params);
    if (params.mode !== "url") throw new Error("only URL elicitations expected");
    if (this.action === "accept" || this.action === "ignore") {
      // "ignore": accept without opening the link (the user never finishes).
      if (this.action === "accept") await this.opener(params.url);
      return { action: "accept" };
    }
    return { action: this.action };
  }
}

export interface ConnectOptions {
  headers?: Record<string, string>;
  /** Answer URL elicitations (declares the `elicitation.url` capability). */
  elicitation?: ElicitingUser;
  /** Declare form-only elicitation (no URL mode). */
  formOnly?: boolean;
  /** Collects `notifications/elicitation/complete` ids. */
  completions?: string[];
}

/** A connected MCP SDK client over streamable HTTP; close it with `client.close()`. */
export async function connect(url: string, options: ConnectOptions = {}): Promise<Client> {
  const capabilities: ClientCapabilities = {};
  if (options.elicitation) capabilities.elicitation = { url: {} };
  else if (options.formOnly) capabilities.elicitation = { form: {} };
  const client = new Client({ name: "mcp-auth-client-tests", version: "0.0.0" }, { capabilities });
  const person = options.elicitation;
  if (person) {
    client.setRequestHandler(ElicitRequestSchema, async (request) => await person.answer(request.params));
  }
  const completions = options.completions;
  if (completions) {
    client.setNotificationHandler(ElicitationCompleteNotificationSchema, (notification) => {
      completions.push(notification.params.elicitationId);
    });
  }
  const transport = new StreamableHTTPClientTransport(new URL(url), { requestInit: { headers: options.headers ?? {} } });
  await client.connect(transport);
  return client;
}

/** Call a tool and return its result as a `CallToolResult` (with a generous timeout). */
export async function call(client: Client, name: string, args: Record<string, unknown> = {}): Promise<CallToolResult> {
  return (await client.callTool({ name, arguments: args }, undefined, { timeout: 120_000 })) as CallToolResult;
}

/** Run `body` with a connected client, closing it afterwards. */
export async function withClient<T>(url: string, options: ConnectOptions, body: (client: Client) => Promise<T>): Promise<T> {
  const client = await connect(url, options);
  try {
    return await body(client);
  } finally {
    await client.close();
  }
}

/** Verifies a bearer token (the MCP server's own OAuth); throws when it refuses it. */
export type Verifier = (token: string) => Promise<AuthInfo>;

export interface Served {
  readonly url: string;
  close(): Promise<void>;
}

async function readJson(req: IncomingMessage): Promise<unknown> {
  const chunks: Buffer[] = [];
  for await (const chunk of req) chunks.push(chunk as Buffer);
  const text = Buffer.concat(chunks).toString("utf8");
  return text ? (JSON.parse(text) as unknown) : undefined;
}

function refuse(res: ServerResponse, status: number, message: string, headers: Record<string, string> = {}): void {
  res.writeHead(status, { "content-type": "application/json", ...headers });
  res.end(JSON.stringify({ jsonrpc: "2.0", error: { code: -32000, message }, id: null }));
}

/**
 * Serve MCP servers made by `build` (one per session) over streamable HTTP on a free
 * loopback port. With `verify`, the server runs with MCP authorization: every request
 * needs `Authorization: Bearer <token>`, whose verified `AuthInfo` reaches the tools.
 */
export async function serveMcp(build: () => McpServer, verify?: Verifier): Promise<Served> {
  const sessions = new Map<string, StreamableHTTPServerTransport>();
  const servers: McpServer[] = [];
  const http: HttpServer = createServer((req: IncomingMessage & { auth?: AuthInfo }, res) => {
    void (async () => {
      if (verify) {
        const header = req.headers.authorization ?? "";
        const token = header.startsWith("Bearer ") ? header.slice("Bearer ".length).trim() : "";
        try {
          if (!token) throw new Error("no token");
          req.auth = await verify(token);
        } catch {
          refuse(res, 401, "invalid_token", { "www-authenticate": 'Bearer error="invalid_token"' });
          return;
        }
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
      const server = build();
      servers.push(server);
      await server.connect(transport);
      await transport.handleRequest(req, res, body);
    })().catch((error: unknown) => {
      if (!res.headersSent) refuse(res, 500, error instanceof Error ? error.message : "error");
    });
  });
  await new Promise<void>((done) => http.listen(0, "127.0.0.1", done));
  const { port } = http.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}/mcp`,
    close: async () => {
      for (const server of servers) await server.close().catch(() => undefined);
      http.closeAllConnections();
      await new Promise<void>((done) => http.close(() => { done(); }));
    },
  };
}

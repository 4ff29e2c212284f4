/**
 * Real processes for the end-to-end tests: the mock provider, the gateway, the example
 * MCP server (the TypeScript twin of clients/python/tests/stack.py).
 *
 * Binaries: `$GATEWAY_BIN` / `$MOCK_PROVIDER_BIN` when set, otherwise
 * `<repo>/target/debug/{gateway,mock-provider}`. Nothing here builds them.
 */

import { spawn, execFile, type ChildProcess } from "node:child_process";
import { randomBytes, randomUUID } from "node:crypto";
import { existsSync, mkdtempSync, openSync, closeSync, readFileSync, rmSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { createInterface } from "node:readline";
import { fileURLToPath } from "node:url";

/** clients/typescript (this file is build/test/helpers/stack.js once compiled). */
export const PACKAGE_ROOT = findPackageRoot(dirname(fileURLToPath(import.meta.url)));
export const REPO_ROOT = resolve(PACKAGE_ROOT, "..", "..");
/** The compiled example server. */
export const EXAMPLE_SERVER = join(PACKAGE_ROOT, "build", "examples", "mail-server.js");

/** Bound on start-up waits. */
export const START_TIMEOUT_MS = 60_000;
/** The id of the identity provider every test gateway trusts (the mock's IdP). */
export const IDP_ID = "corp";
/** The `aud` of the MCP server's access tokens in the exchange tests. */
export const MCP_AUDIENCE = "https://mail-mcp.example";
/** Rate limits off: a test run opens many sessions from 127.0.0.1. */
export const NO_RATE_LIMITS: Readonly<Record<string, string>> = {
  RATE_LIMIT_INIT_PER_SECOND: "0",
  RATE_LIMIT_TOKEN_PER_SECOND: "0",
  RATE_LIMIT_BROWSER_PER_SECOND: "0",
};

function findPackageRoot(start: string): string {
  let dir = start;
  for (;;) {
    const manifest = join(dir, "package.json");
    if (existsSync(manifest) && (JSON.parse(readFileSync(manifest, "utf8")) as { name?: string }).name === "mcp-auth-client") {
      return dir;
    }
    const parent = dirname(dir);
    if (parent === dir) throw new Error(`package root of mcp-auth-client not found above ${start}`);
    dir = parent;
  }
}

/** Paths of (gateway, mock-provider); fails with a clear message when they are missing. */
export function binaries(): { gateway: string; mock: string } {
  const gateway = process.env["GATEWAY_BIN"] || join(REPO_ROOT, "target", "debug", "gateway");
  const mock = process.env["MOCK_PROVIDER_BIN"] || join(REPO_ROOT, "target", "debug", "mock-provider");
  for (const [path, variable] of [
    [gateway, "GATEWAY_BIN"],
    [mock, "MOCK_PROVIDER_BIN"],
  ] as const) {
    if (!existsSync(path)) {
      throw new Error(
        `binary not found: ${path}. Build it (cargo build -p gateway -p mock-provider) or set ` +
          `${variable} (and ${variable === "GATEWAY_BIN" ? "MOCK_PROVIDER_BIN" : "GATEWAY_BIN"}) to the binaries.`,
      );
    }
  }
  return { gateway, mock };
}

/** A TCP port on 127.0.0.1 that was free a moment ago. */
export async function freePort(): Promise<number> {
  return await new Promise((resolvePort, reject) => {
    const server = createServer();
    server.once("error", reject);
    server.listen(0, "127.0.0.1", () => {
      const address = server.address();
      const port = typeof address === "object" && address !== null ? address.port : 0;
      server.close(() => {
        resolvePort(port);
      });
    });
  });
}

/** A fresh temporary directory. */
export function tempDir(prefix: string): string {
  return mkdtempSync(join(tmpdir(), `mcp-auth-ts-${prefix}-`));
}

const children = new Set<ChildProcess>();
process.once("exit", () => {
  for (const child of children) if (child.exitCode === null && child.signalCode === null) child.kill("SIGKILL");
});

function track(child: ChildProcess): ChildProcess {
  children.add(child);
  child.once("exit", () => children.delete(child));
  return child;
}

/** Terminate a child process (bounded), killing it if it lingers. */
export async function stop(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise<void>((done) => child.once("exit", () => { done(); }));
  child.kill("SIGTERM");
  const timer = setTimeout(() => child.kill("SIGKILL"), 10_000);
  await exited;
  clearTimeout(timer);
}

function tail(path: string, limit = 4000): string {
  try {
    return readFileSync(path, "utf8").slice(-limit);
  } catch {
    return "<no log>";
  }
}

/** Poll `check` until true (bounded), failing early if the process died. */
async function waitUntil(check: () => Promise<boolean>, child: ChildProcess, what: string, log: string): Promise<void> {
  const deadline = Date.now() + START_TIMEOUT_MS;
  while (Date.now() < deadline) {
    if (child.exitCode !== null || child.signalCode !== null) {
      throw new Error(`${what} exited with ${child.exitCode ?? child.signalCode}:\n${tail(log)}`);
    }
    if (await check()) return;
    await new Promise((done) => setTimeout(done, 100)); // no readiness signal: poll
  }
  throw new Error(`${what} not ready after ${START_TIMEOUT_MS / 1000}s:\n${tail(log)}`);
}

function httpOk(url: string, accept: (status: number) => boolean): () => Promise<boolean> {
  return async () => {
    try {
      const response = await fetch(url, { signal: AbortSignal.timeout(2000) });
      await response.arrayBuffer();
      return accept(response.status);
    } catch {
      return false;
    }
  };
}

// --- the mock provider ---------------------------------------------------------------------

/** The running mock OAuth provider, its admin API and its test identity provider. */
export class MockProvider {
  constructor(
    readonly process: ChildProcess,
    readonly url: string,
  ) {}

  /** The protected API (`/api/me`). */
  get apiUrl(): string {
    return `${this.url}/api/me`;
  }

  /** The `iss` of the test identity provider's tokens. */
  get idpIssuer(): string {
    return `${this.url}/idp`;
  }

  async admin(method: string, path: string, body?: unknown): Promise<unknown> {
    const response = await fetch(`${this.url}/__admin/${path}`, {
      method,
      headers: body === undefined ? {} : { "content-type": "application/json" },
      body: body === undefined ? null : JSON.stringify(body),
      signal: AbortSignal.timeout(10_000),
    });
    const text = await response.text();
    if (!response.ok) throw new Error(`mock admin ${method} ${path}: HTTP ${response.status} ${text}`);
    return text ? (JSON.parse(text) as unknown) : null;
  }

  /** Back to defaults: automatic consent as login_hint, no faults, normal tokens. */
  async reset(): Promise<void> {
    await this.admin("POST", "consent", { mode: "approve_as_login_hint" });
    await this.admin("DELETE", "faults");
    await this.admin("POST", "settings", { access_token_ttl_secs: 3600, granted_scopes: null, issue_refresh_tokens: true });
  }

  /** The last `/authorize` query. */
  async lastAuthorize(): Promise<Record<string, string>> {
    const pairs = ((await this.admin("GET", "last-authorize")) ?? []) as [string, string][];
    return Object.fromEntries(pairs);
  }

  /** The claims of a good access token for `email` issued for `audience`; `undefined` overrides remove a claim. */
  idpClaims(email: string, audience: string, overrides: Record<string, unknown> = {}): Record<string, unknown> {
    const now = Math.floor(Date.now() / 1000);
    const claims: Record<string, unknown> = {
      iss: this.idpIssuer,
      sub: `sub-${email}`,
      aud: audience,
      iat: now,
      exp: now + 300,
      email,
      email_verified: true,
      ...overrides,
    };
    return Object.fromEntries(Object.entries(claims).filter(([, value]) => value !== undefined));
  }

  /** A JWT carrying `claims`, signed ES256 by the IdP's key, or forged (`alg_none`, ...). */
  async mint(claims: Record<string, unknown>, forgery?: string): Promise<string> {
    const answer = (await this.admin("POST", "idp/mint", { claims, forgery: forgery ?? null })) as { token: string };
    return answer.token;
  }

  /** A good access token for `email` and `audience`. */
  async userToken(email: string, audience = MCP_AUDIENCE, overrides: Record<string, unknown> = {}): Promise<string> {
    return await this.mint(this.idpClaims(email, audience, overrides));
  }
}

export async function startMock(binary: string, logDir: string): Promise<MockProvider> {
  const log = join(logDir, "mock-provider.log");
  const logFd = openSync(log, "w");
  const child = track(spawn(binary, ["--port", "0"], { stdio: ["ignore", "pipe", logFd] }));
  closeSync(logFd);
  // The mock prints its address as its first stdout line.
  const lines = createInterface({ input: child.stdout as NodeJS.ReadableStream });
  const first = await new Promise<string>((done, fail) => {
    const timer = setTimeout(() => { fail(new Error(`mock-provider did not announce its address:\n${tail(log)}`)); }, START_TIMEOUT_MS);
    lines.once("line", (line) => { clearTimeout(timer); done(line); });
    child.once("exit", (code) => { clearTimeout(timer); fail(new Error(`mock-provider exited with ${code}:\n${tail(log)}`)); });
  });
  const match = /listening on (http:\/\/\S+)/.exec(first);
  if (!match?.[1]) {
    await stop(child);
    throw new Error(`mock-provider did not announce its address (got ${JSON.stringify(first)})`);
  }
  child.stdout?.resume(); // keep draining
  return new MockProvider(child, match[1].replace(/\/$/, ""));
}

// --- the gateway --------------------------------------------------------------------------

/** A running gateway, with what it takes to run its CLI against the same database. */
export class Gateway {
  constructor(
    readonly process: ChildProcess,
    readonly url: string,
    readonly apiKey: string,
    readonly log: string,
    readonly binary: string,
    readonly env: Readonly<Record<string, string>>,
  ) {}

  get dataDir(): string {
    return this.env["DATA_DIR"] ?? "";
  }

  /** Run `gateway ARGS...` with the server's configuration; return its stdout. */
  async cli(...args: string[]): Promise<string> {
    return await new Promise((done, fail) => {
      execFile(this.binary, args, { env: this.env, cwd: this.dataDir, timeout: 60_000 }, (error, stdout, stderr) => {
        if (error) fail(new Error(`gateway ${args.join(" ")} failed: ${error.message}\n${stderr.slice(-4000)}`));
        else done(stdout);
      });
    });
  }

  /**
   * Add an API client (`gateway clients add NAME ARGS...`) and return its key once this
   * gateway accepts it (a running gateway reloads its clients within seconds).
   */
  async addClient(name: string, ...args: string[]): Promise<string> {
    const key = (await this.cli("clients", "add", name, ...args)).trim();
    if (!key || key.includes("\n")) throw new Error(`unexpected output of clients add: ${JSON.stringify(key)}`);
    const deadline = Date.now() + START_TIMEOUT_MS;
    while (Date.now() < deadline) {
      // Anything but "Invalid API key." means the gateway knows the key.
      const response = await fetch(`${this.url}/auth/status/${randomUUID()}`, { headers: { "X-API-Key": key } });
      const body = (await response.json()) as { message?: string };
      if (response.status !== 403 || body.message !== "Invalid API key.") return key;
      await new Promise((done) => setTimeout(done, 200)); // the reload has no signal to wait on
    }
    throw new Error(`the gateway did not pick up API client ${name} within ${START_TIMEOUT_MS / 1000}s`);
  }

  /** An API client whose MCP server's tokens carry `aud=audience`, so it may exchange them. */
  async addExchangeClient(
    name: string,
    options: { audience?: string; actions?: string; requireExchange?: boolean } = {},
  ): Promise<string> {
    const args = ["--actions", options.actions ?? "init,status,token", "--audience", options.audience ?? MCP_AUDIENCE];
    if (options.requireExchange) args.push("--require-exchange");
    return await this.addClient(name, ...args);
  }
}

/**
 * Start the gateway on a free port with its own SQLite database, configured for the mock
 * provider and for token exchange with its identity provider, rate limits off unless
 * `extraEnv` sets them.
 */
export async function startGateway(
  binary: string,
  mock: MockProvider,
  dataDir: string,
  extraEnv: Record<string, string> = {},
): Promise<Gateway> {
  const env: Record<string, string> = {
    PATH: process.env["PATH"] ?? "/usr/bin:/bin",
    DATABASE_URL: `sqlite://${dataDir}/gw.db?mode=rwc`,
    DATA_DIR: dataDir,
    AUTH_GATEWAY_ENCRYPTION_KEY: randomBytes(32).toString("base64url"),
    AUTH_GATEWAY_API_KEY: randomBytes(48).toString("base64url").slice(0, 64),
    HOST: "127.0.0.1",
    PORT: String(await freePort()),
    LOG_FORMAT: "json",
    AUTH_GATEWAY_PROVIDERS: "mock",
    MOCK_CLIENT_ID: "mock-client-id",
    MOCK_CLIENT_SECRET: "mock-client-secret",
    MOCK_AUTH_URL: `${mock.url}/authorize`,
    MOCK_TOKEN_URL: `${mock.url}/token`,
    MOCK_REVOCATION_URL: `${mock.url}/revoke`,
    MOCK_USERINFO_URL: `${mock.url}/userinfo`,
    MOCK_SCOPES: "openid email mail.read",
    AUTH_GATEWAY_TRUSTED_ISSUERS: IDP_ID,
    [`IDP_${IDP_ID.toUpperCase()}_ISSUER`]: mock.idpIssuer,
    ...NO_RATE_LIMITS,
    ...extraEnv,
  };
  const log = join(dataDir, `gateway-${env["PORT"] ?? ""}.log`);
  const logFd = openSync(log, "w");
  const child = track(spawn(binary, [], { env, cwd: dataDir, stdio: ["ignore", logFd, logFd] }));
  closeSync(logFd);
  const url = `http://127.0.0.1:${env["PORT"] ?? ""}`;
  await waitUntil(httpOk(`${url}/health`, (status) => status === 200), child, "gateway", log);
  return new Gateway(child, url, env["AUTH_GATEWAY_API_KEY"] ?? "", log, binary, env);
}

// --- the example MCP server ------------------------------------------------------------------

export interface ExampleServer {
  readonly process: ChildProcess;
  readonly url: string;
  readonly log: string;
}

/** Start examples/mail-server.ts (compiled) as a child process, as its README says. */
export async function startExample(gateway: Gateway, mock: MockProvider, logDir: string): Promise<ExampleServer> {
  const port = await freePort();
  const log = join(logDir, "mail-server.log");
  const logFd = openSync(log, "w");
  const env = {
    ...process.env,
    AUTH_GATEWAY_URL: gateway.url,
    AUTH_GATEWAY_API_KEY: gateway.apiKey,
    MAIL_API_URL: mock.apiUrl,
    MAIL_PROVIDER: "mock",
    MCP_PORT: String(port),
  };
  const child = track(spawn(process.execPath, [EXAMPLE_SERVER], { env, stdio: ["ignore", logFd, logFd] }));
  closeSync(logFd);
  const url = `http://127.0.0.1:${port}/mcp`;
  // Any HTTP answer below 500 means it is serving (a bare GET on /mcp is refused with 4xx).
  await waitUntil(httpOk(url, (status) => status < 500), child, "example MCP server", log);
  return { process: child, url, log };
}

/** One test file's whole stack: a mock provider and a gateway, and whatever else it starts. */
export class Stack {
  static readonly #running = new Set<Stack>();
  readonly extra: ChildProcess[] = [];
  readonly dirs: string[] = [];
  private constructor(
    readonly dir: string,
    readonly bins: { gateway: string; mock: string },
    readonly mock: MockProvider,
    readonly gateway: Gateway,
  ) {}

  static async start(name: string, gatewayEnv: Record<string, string> = {}): Promise<Stack> {
    const bins = binaries();
    const dir = tempDir(name);
    const mock = await startMock(bins.mock, dir);
    try {
      const gateway = await startGateway(bins.gateway, mock, dir, gatewayEnv);
      const stack = new Stack(dir, bins, mock, gateway);
      Stack.#running.add(stack);
      return stack;
    } catch (error) {
      await stop(mock.process);
      throw error;
    }
  }

  /** Another gateway against the same mock (its own database), stopped with the stack. */
  async anotherGateway(env: Record<string, string> = {}): Promise<Gateway> {
    const dataDir = tempDir("gw");
    this.dirs.push(dataDir);
    const gateway = await startGateway(this.bins.gateway, this.mock, dataDir, env);
    this.extra.push(gateway.process);
    return gateway;
  }

  async example(): Promise<ExampleServer> {
    const server = await startExample(this.gateway, this.mock, this.dir);
    this.extra.push(server.process);
    return server;
  }

  /** Stop every stack started in this process (an `after` hook's job, even when `before` failed). */
  static async stopAll(): Promise<void> {
    for (const stack of [...Stack.#running]) await stack.stop();
  }

  async stop(): Promise<void> {
    Stack.#running.delete(this);
    for (const child of [...this.extra].reverse()) await stop(child);
    await stop(this.gateway.process);
    await stop(this.mock.process);
    if (!process.env["KEEP_TEST_LOGS"]) {
      for (const dir of [this.dir, ...this.dirs]) rmSync(dir, { recursive: true, force: true });
    }
  }
}

/** A fresh user, so tests sharing a gateway never see each other's credentials. */
export function freshUser(name = "user"): string {
  return `${name}-${randomUUID().slice(0, 12)}@example.com`;
}

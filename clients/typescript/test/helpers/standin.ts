/**
 * A stand-in for the gateway in unit tests: a `fetch` that records each request and
 * answers with what the test scripts (bodies shaped like the real gateway's). Flows are
 * tested against the real gateway in test/e2e; this is for what a real gateway never
 * sends, and for checking requests exactly as sent.
 */

export interface Recorded {
  readonly method: string;
  readonly url: URL;
  readonly headers: Headers;
  readonly body: string;
}

export type Route = (request: Recorded) => Response | Promise<Response>;

export interface StandIn {
  readonly fetch: typeof fetch;
  readonly requests: Recorded[];
}

export function standIn(route: Route): StandIn {
  const requests: Recorded[] = [];
  const fetcher = async (input: string | URL | Request, init?: RequestInit): Promise<Response> => {
    init?.signal?.throwIfAborted();
    const url = new URL(input instanceof Request ? input.url : input.toString());
    const body = typeof init?.body === "string" ? init.body : "";
    const recorded: Recorded = { method: init?.method ?? "GET", url, headers: new Headers(init?.headers), body };
    requests.push(recorded);
    return await route(recorded);
  };
  return { fetch: fetcher, requests };
}

/** A JSON answer. */
export function json(status: number, body: unknown, headers: Record<string, string> = {}): Response {
  return new Response(JSON.stringify(body), { status, headers: { "content-type": "application/json", ...headers } });
}

/** A gateway error answer. */
export function gatewayError(status: number, code: string, extra: Record<string, unknown> = {}, headers: Record<string, string> = {}): Response {
  return json(status, { error: code, message: `stand-in ${code}`, request_id: "req-1", ...extra }, headers);
}

export const GATEWAY = "http://127.0.0.1:8000";
export const API_KEY = `k-${"x".repeat(62)}`;

/** A token answer of POST /auth/token. */
export function tokenAnswer(token = "mock_at_1", scopes = ["openid", "email", "mail.read"]): Response {
  return json(200, { access_token: token, token_type: "Bearer", expires_at: "2030-01-01T00:00:00.123456Z", scopes });
}

/** An exchange answer of POST /oauth/token. */
export function exchangeAnswer(token = "mock_at_x", scope = "openid email mail.read"): Response {
  return json(200, {
    access_token: token,
    issued_token_type: "urn:ietf:params:oauth:token-type:access_token",
    token_type: "Bearer",
    expires_in: 3600,
    scope,
  });
}

/** An init answer of POST /auth/init. */
export function initAnswer(id = "s-1", origin = GATEWAY): Response {
  return json(200, { auth_url: `${origin}/connect/c-${id}`, session_id: id, expires_at: "2030-01-01T00:00:00Z" });
}

/** A status answer. */
export function statusAnswer(id: string, status: "pending" | "completed" | "failed", extra: Record<string, unknown> = {}): Response {
  return json(200, { session_id: id, status, ...extra });
}

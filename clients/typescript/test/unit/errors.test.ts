/** The error-code → class mapping, for every code, and what errors show. */

import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { describe, it } from "node:test";
import { inspect } from "node:util";

import {
  AUTHORIZATION_REASONS,
  AuthGatewayError,
  AuthorizationRequired,
  Busy,
  ERROR_CODES,
  ExchangeRequired,
  Forbidden,
  GatewayAuthError,
  InternalError,
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
  RequestError,
  RetryableError,
  ScopeInsufficient,
  ServerError,
  ServiceUnavailable,
  SessionNotFound,
  SlowDown,
  SubjectTokenRejected,
  TemporarilyUnavailable,
  Unauthorized,
  UnauthorizedClient,
  UnexpectedResponse,
  UnknownProvider,
  UnsupportedGrantType,
  UnsupportedMediaType,
  VERSION,
  errorFromResponse,
} from "../../src/index.js";
import { parseRetryAfter, redactSecret } from "../../src/errors.js";
import { PACKAGE_ROOT } from "../helpers/stack.js";

/** Every gateway code, its status, class and family (docs/api.md and docs/token-exchange.md). */
const TABLE: [string, number, typeof AuthGatewayError, typeof AuthGatewayError][] = [
  ["not_authenticated", 404, NotAuthenticated, AuthorizationRequired],
  ["refresh_failed", 401, RefreshFailed, AuthorizationRequired],
  ["scope_insufficient", 403, ScopeInsufficient, AuthorizationRequired],
  ["unauthorized", 401, Unauthorized, GatewayAuthError],
  ["forbidden", 403, Forbidden, GatewayAuthError],
  ["exchange_required", 403, ExchangeRequired, GatewayAuthError],
  ["invalid_client", 401, InvalidClient, GatewayAuthError],
  ["unauthorized_client", 400, UnauthorizedClient, GatewayAuthError],
  ["provider_unavailable", 503, ProviderUnavailable, RetryableError],
  ["busy", 503, Busy, RetryableError],
  ["rate_limited", 429, RateLimited, RetryableError],
  ["slow_down", 429, SlowDown, RetryableError],
  ["service_unavailable", 503, ServiceUnavailable, RetryableError],
  ["internal_error", 500, InternalError, RetryableError],
  ["server_error", 500, ServerError, RetryableError],
  ["temporarily_unavailable", 503, TemporarilyUnavailable, RetryableError],
  ["unknown_provider", 400, UnknownProvider, RequestError],
  ["invalid_email", 400, InvalidEmail, RequestError],
  ["invalid_request", 400, InvalidRequest, RequestError],
  ["session_not_found", 404, SessionNotFound, RequestError],
  ["not_found", 404, NotFound, RequestError],
  ["method_not_allowed", 405, MethodNotAllowed, RequestError],
  ["payload_too_large", 413, PayloadTooLarge, RequestError],
  ["unsupported_media_type", 415, UnsupportedMediaType, RequestError],
  ["invalid_grant", 400, SubjectTokenRejected, RequestError],
  ["invalid_target", 400, InvalidTarget, RequestError],
  ["unsupported_grant_type", 400, UnsupportedGrantType, RequestError],
];

describe("errorFromResponse", () => {
  it("maps every code to exactly its class, in its family", () => {
    assert.deepEqual(Object.keys(ERROR_CODES).sort(), TABLE.map(([code]) => code).sort());
    for (const [code, status, cls, family] of TABLE) {
      const error = errorFromResponse(status, { error: code, message: `m ${code}`, request_id: "r-1" });
      assert.equal(error.constructor, cls, code);
      assert.ok(error instanceof family && error instanceof AuthGatewayError && error instanceof Error, code);
      assert.equal(error.code, code);
      assert.equal(error.statusCode, status);
      assert.equal(error.requestId, "r-1");
      assert.equal(error.gatewayMessage, `m ${code}`);
      assert.equal(error.name, cls.name);
      assert.ok(error.message.startsWith(`m ${code} (error=${code}, status=${status}, request_id=r-1)`), error.message);
      // The families never overlap: "please sign in" is never a configuration problem.
      const families = [AuthorizationRequired, GatewayAuthError, RetryableError, RequestError].filter((f) => error instanceof f);
      assert.equal(families.length, 1, code);
    }
    assert.ok(new SlowDown("x") instanceof RateLimited);
    assert.ok(new ServerError("x") instanceof InternalError);
  });

  it("maps by code, never by status alone", () => {
    assert.ok(errorFromResponse(401, { error: "unauthorized" }) instanceof Unauthorized);
    assert.ok(errorFromResponse(401, { error: "refresh_failed" }) instanceof RefreshFailed);
    assert.ok(errorFromResponse(403, { error: "forbidden" }) instanceof Forbidden);
    assert.ok(errorFromResponse(403, { error: "scope_insufficient" }) instanceof ScopeInsufficient);
  });

  it("maps authorization_required by its reason, with the link", () => {
    for (const [reason, cls] of Object.entries(AUTHORIZATION_REASONS)) {
      const error = errorFromResponse(400, {
        error: "authorization_required",
        error_description: "The user must authorize",
        message: "The user must authorize",
        reason,
        missing_scopes: reason === "scope_insufficient" ? ["mail.send"] : undefined,
        auth_url: "http://127.0.0.1:8000/connect/secret-link",
        session_id: "s-9",
        expires_at: "2030-01-01T00:00:00.123456Z",
        request_id: "r-2",
      });
      assert.equal(error.constructor, cls);
      assert.ok(error instanceof AuthorizationRequired);
      assert.equal(error.code, "authorization_required");
      assert.equal(error.reason, reason);
      assert.deepEqual(error.missingScopes, reason === "scope_insufficient" ? ["mail.send"] : []);
      assert.equal(error.authUrl, "http://127.0.0.1:8000/connect/secret-link");
      assert.deepEqual(error.session, {
        authUrl: "http://127.0.0.1:8000/connect/secret-link",
        sessionId: "s-9",
        expiresAt: new Date("2030-01-01T00:00:00.123Z"),
      });
      // The link is one user's sign-in: kept out of what errors show.
      for (const shown of [error.message, String(error), inspect(error), JSON.stringify(error), error.stack ?? ""]) {
        assert.ok(!shown.includes("secret-link"), shown);
      }
    }
    const unknownReason = errorFromResponse(400, { error: "authorization_required", reason: "something_new" });
    assert.equal(unknownReason.constructor, AuthorizationRequired);
    const noLink = errorFromResponse(400, { error: "authorization_required", reason: "not_authenticated" });
    assert.ok(noLink instanceof NotAuthenticated);
    assert.equal(noLink.authUrl, null);
    assert.equal(noLink.session, null);
  });

  it("reads retry_after from the body, else from Retry-After seconds", () => {
    const fromBody = errorFromResponse(429, { error: "rate_limited", retry_after: 3 }, { retryAfter: "9" });
    assert.ok(fromBody instanceof RetryableError);
    assert.equal(fromBody.retryAfter, 3);
    assert.match(fromBody.message, /\[retry after 3s\]$/);
    const fromHeader = errorFromResponse(503, { error: "busy" }, { retryAfter: " 2 " });
    assert.ok(fromHeader instanceof Busy);
    assert.equal(fromHeader.retryAfter, 2);
    const none = errorFromResponse(503, { error: "provider_unavailable" }, { retryAfter: "Wed, 21 Oct 2015 07:28:00 GMT" });
    assert.ok(none instanceof ProviderUnavailable);
    assert.equal(none.retryAfter, null);
    assert.equal(parseRetryAfter(-1, null), null);
    assert.equal(parseRetryAfter(1.5, null), null);
    assert.equal(parseRetryAfter(true, "-3"), null);
  });

  it("keeps the details of refusals", () => {
    const rejected = errorFromResponse(400, { error: "invalid_grant", error_description: "expired token", reason: "expired" });
    assert.ok(rejected instanceof SubjectTokenRejected);
    assert.equal(rejected.reason, "expired");
    assert.equal(rejected.gatewayMessage, "expired token"); // OAuth's field when there is no message
    const client = errorFromResponse(400, { error: "unauthorized_client", message: "m", reason: "no_audience_registered" });
    assert.ok(client instanceof UnauthorizedClient);
    assert.equal(client.reason, "no_audience_registered");
    const scopes = errorFromResponse(403, { error: "scope_insufficient", missing_scopes: ["a", 3, "b"] });
    assert.ok(scopes instanceof ScopeInsufficient);
    assert.deepEqual(scopes.missingScopes, ["a", "b"]);
  });

  it("answers UnexpectedResponse for bodies it does not understand", () => {
    const html = errorFromResponse(502, "<html>bad gateway</html>", { requestId: "from-header" });
    assert.equal(html.constructor, UnexpectedResponse);
    assert.equal(html.statusCode, 502);
    assert.equal(html.requestId, "from-header");
    for (const body of [null, [1, 2], 42]) assert.equal(errorFromResponse(500, body).constructor, UnexpectedResponse);
    const unknown = errorFromResponse(418, { error: "teapot", message: "short and stout" });
    assert.equal(unknown.constructor, UnexpectedResponse);
    assert.equal(unknown.code, "teapot");
    assert.match(unknown.message, /unknown error code "teapot": short and stout/);
    assert.equal(errorFromResponse(400, { error: "toString" }).constructor, UnexpectedResponse);
    const noMessage = errorFromResponse(404, { error: "not_found" });
    assert.equal(noMessage.gatewayMessage, 'Gateway error "not_found"');
    assert.equal(errorFromResponse(400, { error: "x" }, { requestId: "h" }).requestId, "h");
  });

  it("redacts a secret from an error that echoes it", () => {
    const secret = "eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiJ4In0.c2ln";
    const error = errorFromResponse(400, { error: "invalid_grant", message: `bad token ${secret}` });
    redactSecret(error, secret);
    for (const shown of [error.message, error.gatewayMessage, String(error), inspect(error), error.stack ?? ""]) {
      assert.ok(!shown.includes(secret), shown);
      assert.ok(shown.includes("[subject_token]"), shown);
    }
  });

  it("keeps VERSION equal to package.json's", () => {
    const manifest = JSON.parse(readFileSync(`${PACKAGE_ROOT}/package.json`, "utf8")) as { version: string };
    assert.equal(VERSION, manifest.version);
  });
});

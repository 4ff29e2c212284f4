/** Every identity rule: OAuth claims, the trusted header, the opt-in argument, the refusals. */

import assert from "node:assert/strict";
import { describe, it } from "node:test";

import type { AuthInfo } from "@modelcontextprotocol/sdk/server/auth/types.js";

import {
  IdentityError,
  NO_IDENTITY_SOURCE,
  ToolError,
  chooseUserEmail,
  exchangeIdentity,
  identityPolicy,
  looksLikeJwt,
  type CallIdentity,
} from "../../src/index.js";
import { headerValues } from "../../src/identity.js";

const ALICE = "alice@example.com";

function token(claims: Record<string, unknown>, raw = "opaque-token"): Pick<CallIdentity, "authInfo" | "claims"> {
  const authInfo: AuthInfo = { token: raw, clientId: "c", scopes: [], extra: claims };
  return { authInfo, claims };
}

function call(parts: Partial<CallIdentity> = {}): CallIdentity {
  return { args: {}, authInfo: undefined, claims: undefined, headers: undefined, mcpAuthorization: false, ...parts };
}

function refused(body: () => unknown, pattern: RegExp): void {
  assert.throws(body, (error: unknown) => {
    assert.ok(error instanceof IdentityError && error instanceof ToolError);
    assert.match(error.message, pattern);
    return true;
  });
}

describe("identity policy", () => {
  it("checks its settings", () => {
    assert.deepEqual(identityPolicy(), { emailArgument: "user_email", allowEmailArgument: false, emailClaim: "email", trustedHeader: null });
    assert.throws(() => identityPolicy({ allowEmailArgument: true, emailArgument: null }), TypeError);
    assert.throws(() => identityPolicy({ trustedHeader: "  " }), TypeError);
    assert.throws(() => identityPolicy({ emailClaim: "" }), TypeError);
  });
});

describe("chooseUserEmail", () => {
  const policy = identityPolicy();
  const withHeader = identityPolicy({ trustedHeader: "X-User-Email" });

  it("takes the email claim of the server's own OAuth identity", () => {
    assert.equal(chooseUserEmail(call(token({ email: ` ${ALICE} ` })), policy), ALICE);
    assert.equal(chooseUserEmail(call(token({ upn: ALICE })), identityPolicy({ emailClaim: "upn" })), ALICE);
    refused(() => chooseUserEmail(call(token({ email: ALICE, email_verified: false })), policy), /not verified/);
    refused(() => chooseUserEmail(call(token({ email: ALICE, email_verified: "False" })), policy), /not verified/);
    assert.equal(chooseUserEmail(call(token({ email: ALICE, email_verified: "true" })), policy), ALICE);
    refused(() => chooseUserEmail(call(token({ sub: "x" })), policy), /no 'email' claim/);
    refused(() => chooseUserEmail(call({ mcpAuthorization: true }), policy), /carries no verified access token/);
  });

  it("takes a trusted header, and refuses when it is missing or ambiguous", () => {
    assert.equal(chooseUserEmail(call({ headers: { "x-user-email": ALICE } }), withHeader), ALICE);
    assert.equal(chooseUserEmail(call({ headers: { "X-User-Email": [ALICE, ALICE.toUpperCase()] } }), withHeader), ALICE);
    refused(() => chooseUserEmail(call({ headers: {} }), withHeader), /no X-User-Email header/);
    refused(() => chooseUserEmail(call({ headers: { "x-user-email": "  " } }), withHeader), /no X-User-Email header/);
    // Fetch-style headers join repeated copies with ", ".
    refused(() => chooseUserEmail(call({ headers: { "x-user-email": `${ALICE}, mallory@example.com` } }), withHeader), /more than one user/);
    refused(() => chooseUserEmail(call({ headers: { "x-user-email": [ALICE, "mallory@example.com"] } }), withHeader), /more than one user/);
  });

  it("needs every configured source, agreeing", () => {
    const both = call({ ...token({ email: ALICE }), headers: { "x-user-email": ALICE.toUpperCase() } });
    assert.equal(chooseUserEmail(both, withHeader), ALICE);
    refused(() => chooseUserEmail(call({ ...token({ email: ALICE }), headers: { "x-user-email": "bob@example.com" } }), withHeader), /name different users/);
    refused(() => chooseUserEmail(call({ ...token({ email: ALICE }), headers: {} }), withHeader), /no X-User-Email header/);
  });

  it("never lets the argument choose the account without the opt-in", () => {
    refused(() => chooseUserEmail(call({ args: { user_email: ALICE } }), policy), /no trusted source/);
    assert.ok(NO_IDENTITY_SOURCE.includes("allowEmailArgument") && NO_IDENTITY_SOURCE.includes("trustedEmailHeader"));
    // A header that is not configured is no source.
    refused(() => chooseUserEmail(call({ headers: { "x-user-email": ALICE } }), policy), /no trusted source/);
  });

  it("refuses an argument contradicting the trusted identity, opted in or not", () => {
    for (const allowEmailArgument of [false, true]) {
      const p = identityPolicy({ trustedHeader: "X-User-Email", allowEmailArgument });
      const headers = { "x-user-email": ALICE };
      refused(() => chooseUserEmail(call({ headers, args: { user_email: "ceo@example.com" } }), p), /does not match the user making this request/);
      assert.equal(chooseUserEmail(call({ headers, args: { user_email: ALICE.toUpperCase() } }), p), ALICE);
    }
    refused(() => chooseUserEmail(call({ ...token({ email: ALICE }), args: { user_email: "ceo@example.com" } }), policy), /does not match/);
  });

  it("lets the argument choose the account with the opt-in and no trusted source", () => {
    const optIn = identityPolicy({ allowEmailArgument: true });
    assert.equal(chooseUserEmail(call({ args: { user_email: ALICE } }), optIn), ALICE);
    assert.equal(chooseUserEmail(call({ args: { who: ALICE } }), identityPolicy({ allowEmailArgument: true, emailArgument: "who" })), ALICE);
    refused(() => chooseUserEmail(call({ args: {} }), optIn), /Pass the user's email address as 'user_email'/);
    refused(() => chooseUserEmail(call({ args: { user_email: 42 } }), optIn), /Pass the user's email/);
    // A configured header that is missing is still a refusal, never a fall-back.
    refused(
      () => chooseUserEmail(call({ args: { user_email: ALICE }, headers: {} }), identityPolicy({ allowEmailArgument: true, trustedHeader: "X-User-Email" })),
      /no X-User-Email header/,
    );
  });
});

describe("token exchange identity", () => {
  const jwt = "eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiJhIn0.c2ln";

  it("recognises JWTs", () => {
    assert.ok(looksLikeJwt(jwt));
    assert.ok(looksLikeJwt("eyJhbGciOiJub25lIn0.eyJzdWIiOiJhIn0.")); // unsigned shape (the gateway refuses it)
    for (const opaque of ["opaque", "a.b", "a.b.c.d", ".b.c", "a..c", "a.b.c d", "a+b.c.d"]) assert.ok(!looksLikeJwt(opaque), opaque);
  });

  it("only checks the call against the token", () => {
    const policy = identityPolicy();
    assert.equal(exchangeIdentity(call(token({ email: ALICE }, jwt)), policy), ALICE);
    assert.equal(exchangeIdentity(call(token({ sub: "x" }, jwt)), policy), null);
    assert.equal(exchangeIdentity(call(token({ email: ALICE, email_verified: false }, jwt)), policy), null);
    assert.equal(exchangeIdentity(call({ ...token({ email: ALICE }, jwt), args: { user_email: ALICE.toUpperCase() } }), policy), ALICE);
    refused(() => exchangeIdentity(call({ ...token({ email: ALICE }, jwt), args: { user_email: "ceo@example.com" } }), policy), /does not match/);
    // Without a verified email, an argument cannot be checked: refused, whatever the opt-in.
    const optIn = identityPolicy({ allowEmailArgument: true });
    refused(() => exchangeIdentity(call({ ...token({ sub: "x" }, jwt), args: { user_email: ALICE } }), optIn), /does not match/);
  });

  it("needs a configured header to agree with the token", () => {
    const policy = identityPolicy({ trustedHeader: "X-User-Email" });
    assert.equal(exchangeIdentity(call({ ...token({ email: ALICE }, jwt), headers: { "x-user-email": ALICE } }), policy), ALICE);
    refused(() => exchangeIdentity(call({ ...token({ email: ALICE }, jwt), headers: {} }), policy), /no X-User-Email header/);
    refused(() => exchangeIdentity(call({ ...token({ email: ALICE }, jwt), headers: { "x-user-email": "bob@example.com" } }), policy), /different users/);
    refused(() => exchangeIdentity(call({ ...token({ sub: "x" }, jwt), headers: { "x-user-email": ALICE } }), policy), /no verified 'email' claim/);
  });

  it("splits header values", () => {
    assert.deepEqual(headerValues({ "X-A": "a, b", "x-a": ["c", " "], other: "z" }, "x-a"), ["a", "b", "c"]);
    assert.deepEqual(headerValues(undefined, "x-a"), []);
  });
});

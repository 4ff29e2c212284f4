/** Which link origins are trusted, and which gateway URLs deserve the plain-http warning. */

import assert from "node:assert/strict";
import { describe, it } from "node:test";

import { isLoopbackHost, linkOrigin, originOf, plainHttpToRemoteHost } from "../../src/index.js";

describe("links", () => {
  it("reads origins as scheme://host:port", () => {
    assert.equal(originOf("http://127.0.0.1:8000/connect/x"), "http://127.0.0.1:8000");
    assert.equal(originOf("HTTPS://Auth.Example.COM/connect/x"), "https://auth.example.com:443");
    assert.equal(originOf("http://auth.example.com/"), "http://auth.example.com:80");
    assert.equal(originOf("http://[::1]:9000/"), "http://[::1]:9000");
    for (const bad of ["", "/connect/x", "ftp://h/x", "javascript:alert(1)", "http://", "not a url"]) {
      assert.equal(originOf(bad), null, bad);
    }
  });

  it("refuses links a browser might read differently", () => {
    assert.equal(linkOrigin("http://127.0.0.1:8000/connect/abc"), "http://127.0.0.1:8000");
    for (const bad of [
      "http://evil.example\\@127.0.0.1:8000/connect/x", // a browser goes to evil.example
      "http://127.0.0.1:8000@evil.example/connect/x", // user info disguises the host
      "http://user:pw@127.0.0.1:8000/connect/x",
      "http://127.0.0.1:8000/connect/x y",
      "http://127.0.0.1:8000/connect/\tx",
      "http://127.0.0.1:8000/connect/é",
      "http://ｅvil.example/connect/x",
      "data:text/html,hi",
    ]) {
      assert.equal(linkOrigin(bad), null, bad);
    }
  });

  it("knows loopback hosts", () => {
    for (const host of ["localhost", "LOCALHOST.", "127.0.0.1", "127.255.0.9", "::1", "[::1]"]) assert.ok(isLoopbackHost(host), host);
    for (const host of ["10.0.0.1", "128.0.0.1", "127.0.0.256", "localhost.example", "example.com", "::2"]) {
      assert.ok(!isLoopbackHost(host), host);
    }
  });

  it("warns about plain http to another machine only", () => {
    assert.equal(plainHttpToRemoteHost("http://gateway.internal:8000"), "gateway.internal");
    assert.equal(plainHttpToRemoteHost("http://10.1.2.3/"), "10.1.2.3");
    for (const fine of ["https://gateway.internal", "http://127.0.0.1:8000", "http://localhost:8000", "http://[::1]:8000"]) {
      assert.equal(plainHttpToRemoteHost(fine), null, fine);
    }
  });
});

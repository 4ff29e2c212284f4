/** The package's promises: no runtime dependency but the SDK (a peer), which the core never loads. */

import assert from "node:assert/strict";
import { readFileSync, readdirSync } from "node:fs";
import { join } from "node:path";
import { describe, it } from "node:test";

import { PACKAGE_ROOT } from "../helpers/stack.js";

interface Manifest {
  type?: string;
  exports?: Record<string, { types?: string; import?: string }>;
  engines?: { node?: string };
  dependencies?: Record<string, string>;
  peerDependencies?: Record<string, string>;
  peerDependenciesMeta?: Record<string, { optional?: boolean }>;
  devDependencies?: Record<string, string>;
}

describe("the package", () => {
  const manifest = JSON.parse(readFileSync(join(PACKAGE_ROOT, "package.json"), "utf8")) as Manifest;

  it("is ESM with type declarations, for Node 20+, and depends on nothing but the SDK as a peer", () => {
    assert.equal(manifest.type, "module");
    assert.deepEqual(manifest.exports?.["."], { types: "./dist/index.d.ts", import: "./dist/index.js" });
    assert.equal(manifest.engines?.node, ">=20");
    assert.equal(manifest.dependencies, undefined);
    assert.deepEqual(Object.keys(manifest.peerDependencies ?? {}), ["@modelcontextprotocol/sdk"]);
    // Every dev dependency is pinned exactly (the lockfile pins the rest of the tree).
    for (const [name, version] of Object.entries(manifest.devDependencies ?? {})) assert.match(version, /^\d+\.\d+\.\d+$/, name);
  });

  it("never imports the SDK statically from its sources (the core works without it)", () => {
    const sources = join(PACKAGE_ROOT, "build", "src");
    for (const file of readdirSync(sources).filter((name) => name.endsWith(".js"))) {
      const code = readFileSync(join(sources, file), "utf8");
      assert.doesNotMatch(code, /^\s*import\s[^;]*["']@modelcontextprotocol\//m, file);
      assert.doesNotMatch(code, /^\s*import\s*["']/m, file); // no side-effect imports either
    }
  });
});

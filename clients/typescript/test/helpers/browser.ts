/**
 * The user's browser, for the tests: what happens when someone opens a gateway link.
 *
 * The gateway's connect link answers a GET with a page holding one POST form (a hidden
 * `csrf` field) and sets a `SameSite=Strict` cookie; submitting the form with that cookie
 * (and a same-origin `Origin`) redirects to the provider, which approves at once and
 * redirects back to the gateway's callback. The TypeScript twin of
 * clients/python/tests/browser.py.
 */

export interface Page {
  readonly status: number;
  readonly url: string;
  readonly body: string;
  /** Every URL visited, the final one last. */
  readonly hops: readonly string[];
}

export interface Form {
  readonly action: string;
  readonly method: string;
  readonly fields: Record<string, string>;
}

function attributes(tag: string): Record<string, string> {
  const found: Record<string, string> = {};
  for (const match of tag.matchAll(/([a-zA-Z_:][-a-zA-Z0-9_:.]*)\s*=\s*("([^"]*)"|'([^']*)'|([^\s"'>]+))/g)) {
    const name = match[1]?.toLowerCase();
    if (name) found[name] = decodeEntities(match[3] ?? match[4] ?? match[5] ?? "");
  }
  return found;
}

function decodeEntities(text: string): string {
  return text
    .replace(/&quot;/g, '"')
    .replace(/&#x27;|&#39;/g, "'")
    .replace(/&lt;/g, "<")
    .replace(/&gt;/g, ">")
    .replace(/&amp;/g, "&");
}

/** The first POST form of a page: its action, method, hidden fields and first named submit button. */
export function postFormIn(html: string): Form | null {
  for (const formMatch of html.matchAll(/<form\b([^>]*)>([\s\S]*?)<\/form>/gi)) {
    const formAttributes = attributes(formMatch[1] ?? "");
    const method = (formAttributes["method"] ?? "get").toLowerCase();
    if (method !== "post") continue;
    const fields: Record<string, string> = {};
    let submitNamed = false;
    for (const input of (formMatch[2] ?? "").matchAll(/<(input|button)\b([^>]*)>/gi)) {
      const tag = (input[1] ?? "").toLowerCase();
      const attrs = attributes(input[2] ?? "");
      const name = attrs["name"];
      if (name === undefined) continue;
      const kind = (attrs["type"] ?? (tag === "button" ? "submit" : "text")).toLowerCase();
      if (tag === "input" && kind === "hidden") fields[name] = attrs["value"] ?? "";
      else if (kind === "submit" && !submitNamed) {
        fields[name] = attrs["value"] ?? "";
        submitNamed = true;
      }
    }
    return { action: formAttributes["action"] ?? "", method, fields };
  }
  return null;
}

/** A browser session: cookies per host, redirects followed by hand (GET after a POST). */
class Browser {
  readonly #cookies = new Map<string, Map<string, string>>();
  readonly hops: string[] = [];

  #cookieHeader(url: URL): string | undefined {
    const jar = this.#cookies.get(url.host);
    if (!jar || jar.size === 0) return undefined;
    return [...jar].map(([name, value]) => `${name}=${value}`).join("; ");
  }

  #keep(url: URL, response: Response): void {
    for (const line of response.headers.getSetCookie()) {
      const pair = line.split(";")[0] ?? "";
      const at = pair.indexOf("=");
      if (at <= 0) continue;
      let jar = this.#cookies.get(url.host);
      if (!jar) {
        jar = new Map();
        this.#cookies.set(url.host, jar);
      }
      jar.set(pair.slice(0, at).trim(), pair.slice(at + 1).trim());
    }
  }

  async send(url: URL, init: RequestInit = {}): Promise<Response> {
    const headers = new Headers(init.headers);
    const cookie = this.#cookieHeader(url);
    if (cookie) headers.set("cookie", cookie);
    this.hops.push(url.href);
    const response = await fetch(url, { ...init, headers, redirect: "manual", signal: AbortSignal.timeout(30_000) });
    this.#keep(url, response);
    return response;
  }

  /** GET `url`, following redirects (bounded). */
  async get(start: URL): Promise<{ response: Response; url: URL; redirected: boolean }> {
    let url = start;
    for (let hop = 0; hop < 10; hop++) {
      const response = await this.send(url);
      const location = response.headers.get("location");
      if (response.status >= 300 && response.status < 400 && location) {
        await response.arrayBuffer();
        url = new URL(location, url);
        continue;
      }
      return { response, url, redirected: hop > 0 };
    }
    throw new Error(`too many redirects from ${start.href}`);
  }
}

/**
 * Open `url` as a browser would and return the page it ends on: GET (following
 * redirects); when that lands directly on a page with a POST form (the connect page),
 * submit it with the page's cookie and a same-origin `Origin`, and follow the redirects.
 */
export async function visit(link: string): Promise<Page> {
  const browser = new Browser();
  const landed = await browser.get(new URL(link));
  const html = await landed.response.text();
  const contentType = landed.response.headers.get("content-type") ?? "";
  const form = !landed.redirected && landed.response.status === 200 && contentType.includes("html") ? postFormIn(html) : null;
  if (form === null) {
    return { status: landed.response.status, url: landed.url.href, body: html, hops: browser.hops };
  }
  const target = new URL(form.action || landed.url.href, landed.url);
  const submitted = await browser.send(target, {
    method: "POST",
    headers: { "content-type": "application/x-www-form-urlencoded", origin: landed.url.origin, referer: landed.url.href },
    body: new URLSearchParams(form.fields).toString(),
  });
  const location = submitted.headers.get("location");
  if (!(submitted.status >= 300 && submitted.status < 400 && location)) {
    return { status: submitted.status, url: target.href, body: await submitted.text(), hops: browser.hops };
  }
  await submitted.arrayBuffer();
  const end = await browser.get(new URL(location, target));
  return { status: end.response.status, url: end.url.href, body: await end.response.text(), hops: browser.hops };
}

/**
 * Open a sign-in link and complete the consent (automatic at the mock provider): the
 * browser must end on the gateway's callback page with a 200.
 */
export async function openInBrowser(link: string): Promise<Page> {
  const page = await visit(link);
  if (page.status !== 200) throw new Error(`consent flow ended with HTTP ${page.status}: ${page.body.slice(0, 500)}`);
  if (!page.url.includes("/auth/callback/")) throw new Error(`did not land on the gateway callback: ${page.url}`);
  return page;
}

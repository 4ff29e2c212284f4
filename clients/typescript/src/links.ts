/**
 * Which addresses the client trusts: where the API key may go, and where links may point.
 *
 * - A gateway URL with plain `http` to a host that is not loopback sends the API key (and
 *   every user's access token in the answers) across the network unencrypted;
 *   {@link plainHttpToRemoteHost} spots it so that `AuthClient` can warn.
 * - The `auth_url` the gateway returns is shown to a user, who will sign in wherever it
 *   leads. A link on another origin than the gateway's would send them to a look-alike
 *   sign-in page, so links are checked ({@link linkOrigin}) before anyone sees them.
 */

const DEFAULT_PORTS: Readonly<Record<string, string>> = { "http:": "80", "https:": "443" };

/**
 * The URL's origin as `scheme://host:port` (lower case, explicit port), or `null` when it
 * is not an absolute http(s) URL.
 */
export function originOf(url: string): string | null {
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    return null;
  }
  const defaultPort = DEFAULT_PORTS[parsed.protocol];
  if (defaultPort === undefined || !parsed.hostname) return null;
  return `${parsed.protocol}//${parsed.hostname}:${parsed.port || defaultPort}`;
}

/**
 * The origin a browser would open `url` on, or `null` when that is in doubt.
 *
 * The gateway's links are plain ASCII without user info. Anything else is refused rather
 * than parsed: a backslash (browsers read it as `/`), control, space or non-ASCII
 * characters, and user info (`https://gateway@elsewhere/`), which exists mostly to
 * disguise where a link leads.
 */
export function linkOrigin(url: string): string | null {
  for (const char of url) {
    const code = char.codePointAt(0) ?? 0;
    if (char === "\\" || code <= 0x20 || code >= 0x7f) return null;
  }
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    return null;
  }
  if (parsed.username !== "" || parsed.password !== "" || /^[a-z][a-z0-9+.-]*:\/\/[^/?#]*@/i.test(url)) return null;
  return originOf(url);
}

/** True for `localhost`, 127.0.0.0/8 and `::1`: traffic that never leaves the machine. */
export function isLoopbackHost(host: string): boolean {
  let name = host.toLowerCase();
  if (name.startsWith("[") && name.endsWith("]")) name = name.slice(1, -1);
  if (name.endsWith(".")) name = name.slice(0, -1);
  if (name === "localhost" || name === "::1" || name === "0:0:0:0:0:0:0:1") return true;
  const octets = name.split(".");
  return (
    octets.length === 4 &&
    octets[0] === "127" &&
    octets.every((octet) => /^\d{1,3}$/.test(octet) && Number.parseInt(octet, 10) <= 255)
  );
}

/**
 * The host name when `url` is plain `http` to a host that is not loopback (the case worth
 * a warning); `null` otherwise.
 */
export function plainHttpToRemoteHost(url: string): string | null {
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    return null;
  }
  if (parsed.protocol !== "http:" || isLoopbackHost(parsed.hostname)) return null;
  return parsed.hostname;
}

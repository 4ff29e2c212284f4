"""Which addresses the client trusts: where the API key may go, and where links may point.

Two checks live here, both about URLs and neither about the MCP SDK:

- A gateway URL with plain ``http`` to a host that is not loopback sends the API key
  (and every user's access token in the answers) across the network unencrypted;
  :func:`plain_http_to_remote_host` spots it so that :class:`~mcp_auth_client.AuthClient`
  can warn.
- The ``auth_url`` the gateway returns is shown to a user, who will sign in wherever it
  leads. A link on another origin than the gateway's (a compromised or misconfigured
  gateway, a proxy rewriting answers) would send them to a look-alike sign-in page, so
  links are checked against the origins the client was configured with
  (:func:`link_origin`) before anyone sees them.
"""

from __future__ import annotations

import ipaddress
from urllib.parse import urlsplit

__all__ = ["is_loopback_host", "link_origin", "origin_of", "plain_http_to_remote_host"]

_DEFAULT_PORTS = {"http": 80, "https": 443}


def origin_of(url: str) -> str | None:
    """The URL's origin as ``scheme://host:port`` (lower case, explicit port), or ``None``
    when the URL is not an absolute http(s) URL."""
    try:
        parts = urlsplit(url)
        port = parts.port  # raises ValueError on a malformed port
    except ValueError:
        return None
    scheme = parts.scheme.lower()
    host = parts.hostname  # lower-cased, without IPv6 brackets
    if scheme not in _DEFAULT_PORTS or not host:
        return None
    if ":" in host:
        host = f"[{host}]"
    return f"{scheme}://{host}:{port if port is not None else _DEFAULT_PORTS[scheme]}"


def link_origin(url: str) -> str | None:
    """The origin a browser would open ``url`` on, or ``None`` when that is in doubt.

    The gateway's links are plain ASCII without user info. Anything else is refused
    rather than parsed, because browsers and Python read such URLs differently: a
    browser treats ``\\`` as ``/`` and drops tabs and newlines, so for
    ``http://evil.example\\@gateway/`` Python sees the host ``gateway`` while the
    browser goes to ``evil.example``; user info (``https://gateway@elsewhere/``) exists
    mostly to disguise where a link leads.
    """
    if "\\" in url or any(not 0x20 < ord(char) < 0x7F for char in url):
        return None
    try:
        parts = urlsplit(url)
    except ValueError:
        return None
    if parts.username is not None or parts.password is not None:
        return None
    return origin_of(url)


def is_loopback_host(host: str) -> bool:
    """True for ``localhost``, 127.0.0.0/8 and ``::1``: traffic that never leaves the machine."""
    host = host.strip("[]").rstrip(".").lower()
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def plain_http_to_remote_host(url: str) -> str | None:
    """The host name when ``url`` is plain ``http`` to a host that is not loopback (the
    case worth a warning); ``None`` otherwise."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if parts.scheme.lower() != "http" or is_loopback_host(host):
        return None
    return host

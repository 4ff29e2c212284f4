"""Opening a gateway connect link the way a user's browser does.

A GET of the link shows a page (scanners that fetch links first use nothing);
the user's "Continue" POSTs its form back, with the cookie set beside the page,
and the redirects lead through the provider to the callback page. Used by
check-live-metrics and fuzz-api; standard library only.
"""

import html
import re
import urllib.error
import urllib.parse
import urllib.request

FORM = re.compile(r'<form method="post" action="([^"]+)">.*?name="csrf" value="([^"]*)"', re.S)


def _open(opener, request, timeout):
    try:
        with opener.open(request, timeout=timeout) as r:
            return r.status, r.read(), r.geturl()
    except urllib.error.HTTPError as e:
        with e:
            return e.code, e.read(), e.geturl()


def open_link(url, opener, timeout):
    """Opens the link and presses "Continue"; returns the final HTTP status.
    `opener` must keep cookies (an HTTPCookieProcessor) and follow redirects."""
    status, body, at = _open(opener, url, timeout)
    found = FORM.search(body.decode(errors="replace")) if status == 200 else None
    if found is None:
        return status
    action = urllib.parse.urljoin(at, html.unescape(found.group(1)))
    form = urllib.parse.urlencode({"csrf": html.unescape(found.group(2))}).encode()
    request = urllib.request.Request(
        action, data=form, method="POST", headers={"Content-Type": "application/x-www-form-urlencoded"}
    )
    status, _, _ = _open(opener, request, timeout)
    return status

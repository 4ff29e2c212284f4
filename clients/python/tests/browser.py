"""The user's browser, for the tests: what happens when someone opens a gateway link.

Every test that "opens the link" goes through :func:`visit`, so that it keeps working
whichever way the gateway's connect page behaves:

- it redirects straight to the provider on GET (the gateway as it was), or
- it answers 200 with a page holding one POST form (a hidden ``csrf`` field) and sets a
  cookie; submitting the form, with that cookie, redirects to the provider. (A link
  scanner that only GETs the link then consumes nothing.)

From the provider, redirects lead back to the gateway's callback page either way.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from html.parser import HTMLParser
from urllib.parse import urljoin

import httpx


@dataclass
class Form:
    """A form as a browser would submit it."""

    action: str
    method: str
    fields: dict[str, str] = field(default_factory=dict)


class _FormParser(HTMLParser):
    """Collects each form's action, method, hidden fields and first named submit button."""

    def __init__(self) -> None:
        super().__init__()
        self.forms: list[Form] = []
        self._current: Form | None = None
        self._submit_named = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attributes = {name: value or "" for name, value in attrs}
        if tag == "form":
            self._current = Form(action=attributes.get("action", ""), method=attributes.get("method", "get").lower())
            self._submit_named = False
            self.forms.append(self._current)
            return
        if self._current is None or "name" not in attributes:
            return
        kind = attributes.get("type", "submit" if tag == "button" else "text").lower()
        if tag == "input" and kind == "hidden":
            self._current.fields[attributes["name"]] = attributes.get("value", "")
        elif tag in ("input", "button") and kind == "submit" and not self._submit_named:
            # A browser sends the name and value of the button that was clicked.
            self._current.fields[attributes["name"]] = attributes.get("value", "")
            self._submit_named = True

    def handle_endtag(self, tag: str) -> None:
        if tag == "form":
            self._current = None


def post_form_in(response: httpx.Response) -> Form | None:
    """The POST form of a page the browser landed on directly (not after redirects)."""
    if response.history or response.status_code != 200:
        return None
    if "html" not in response.headers.get("content-type", ""):
        return None
    parser = _FormParser()
    parser.feed(response.text)
    parser.close()
    for form in parser.forms:
        if form.method == "post":
            return form
    return None


async def visit(url: str, *, transport: httpx.AsyncBaseTransport | None = None) -> httpx.Response:
    """Open ``url`` as a browser would and return the page it ends on.

    GETs the link with a cookie-keeping client, following redirects. When that lands
    directly on a page holding a POST form (the connect page), submits the form (its
    hidden fields, the same cookies, the headers a browser adds to a same-origin form
    post) and follows the redirects from there. Otherwise the answer is returned as is.
    """
    async with httpx.AsyncClient(follow_redirects=True, timeout=30.0, transport=transport) as browser:
        page = await browser.get(url)
        form = post_form_in(page)
        if form is None:
            return page
        target = urljoin(str(page.url), form.action or str(page.url))
        # httpx drops default ports from URLs, as a browser's Origin header does.
        origin = f"{page.url.scheme}://{page.url.netloc.decode('ascii')}"
        submitted = await browser.post(
            target,
            data=form.fields,
            headers={"Origin": origin, "Referer": str(page.url)},
            follow_redirects=False,
        )
        if not submitted.is_redirect:
            return submitted
        # Followed by hand: after a POST, a browser follows the redirect with a plain GET
        # (no body, no Origin header); httpx would carry the Origin header along.
        return await browser.get(urljoin(str(submitted.url), submitted.headers["location"]))


async def open_in_browser(url: str) -> httpx.Response:
    """Open a sign-in link and complete the consent (automatic at the mock provider):
    the browser must end on the gateway's callback page with a 200."""
    response = await visit(url)
    assert response.status_code == 200, f"consent flow ended with HTTP {response.status_code}: {response.text[:500]}"
    assert "/auth/callback/" in str(response.url), f"did not land on the gateway callback: {response.url}"
    return response

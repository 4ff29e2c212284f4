"""The tests' browser (tests/browser.py) against both shapes of the gateway's connect
link, played by an ``httpx.MockTransport``: the link that redirects straight to the
provider, and the page whose form must be posted back with its cookie. The e2e tests
meet whichever one the gateway binary has; this makes sure the helper handles both."""

from __future__ import annotations

from urllib.parse import parse_qs

import httpx
import pytest

from tests.browser import post_form_in, visit

pytestmark = pytest.mark.anyio

GATEWAY = "http://127.0.0.1:8000"
PROVIDER = "http://127.0.0.1:9000"

CONNECT_PAGE = """<!doctype html>
<html><body>
<p>Connect your mock account</p>
<form method="post" action="/connect/abc">
  <input type="hidden" name="csrf" value="form-token">
  <button type="submit">Continue</button>
</form>
</body></html>"""


class FakeFlow:
    """The connect link, the provider's consent and the gateway's callback page."""

    def __init__(self, *, form: bool) -> None:
        self.form = form
        self.posts: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        url = str(request.url)
        if url == f"{GATEWAY}/connect/abc" and request.method == "GET":
            if not self.form:
                return httpx.Response(302, headers={"location": f"{PROVIDER}/authorize?state=s"})
            # The value is the form's too (double submit), as the gateway does it.
            cookie = "gw_connect=form-token; Path=/connect/abc; Max-Age=3600; HttpOnly; SameSite=Strict"
            return httpx.Response(
                200, text=CONNECT_PAGE, headers={"content-type": "text/html; charset=utf-8", "set-cookie": cookie}
            )
        if url == f"{GATEWAY}/connect/abc" and request.method == "POST":
            self.posts.append(request)
            fields = parse_qs(request.content.decode())
            if (
                request.headers.get("content-type") != "application/x-www-form-urlencoded"
                or fields.get("csrf") != ["form-token"]
                or "gw_connect=form-token" not in request.headers.get("cookie", "")
                or request.headers.get("origin", GATEWAY) != GATEWAY
            ):
                return httpx.Response(403, text="refused")
            return httpx.Response(302, headers={"location": f"{PROVIDER}/authorize?state=s"})
        if url.startswith(f"{PROVIDER}/authorize"):
            return httpx.Response(302, headers={"location": f"{GATEWAY}/auth/callback/mock?code=c&state=s"})
        if url.startswith(f"{GATEWAY}/auth/callback/mock") and request.method == "GET":
            return httpx.Response(200, text="<p>Connected</p>", headers={"content-type": "text/html"})
        return httpx.Response(404)


async def test_the_connect_pages_form_is_posted_with_its_cookie() -> None:
    flow = FakeFlow(form=True)
    page = await visit(f"{GATEWAY}/connect/abc", transport=httpx.MockTransport(flow))
    assert page.status_code == 200, page.text
    assert str(page.url).startswith(f"{GATEWAY}/auth/callback/mock")
    assert len(flow.posts) == 1
    posted = flow.posts[0]
    assert posted.headers["origin"] == GATEWAY
    assert "gw_connect=form-token" in posted.headers["cookie"]


async def test_a_link_that_redirects_straight_away_is_followed_as_is() -> None:
    flow = FakeFlow(form=False)
    page = await visit(f"{GATEWAY}/connect/abc", transport=httpx.MockTransport(flow))
    assert page.status_code == 200
    assert str(page.url).startswith(f"{GATEWAY}/auth/callback/mock")
    assert flow.posts == []


def test_only_a_page_reached_directly_counts_as_the_connect_page() -> None:
    request = httpx.Request("GET", f"{GATEWAY}/connect/abc")
    page = httpx.Response(200, text=CONNECT_PAGE, headers={"content-type": "text/html"}, request=request)
    form = post_form_in(page)
    assert form is not None
    assert (form.action, form.method, form.fields) == ("/connect/abc", "post", {"csrf": "form-token"})
    # The same form at the end of redirects (a provider's own page) is not submitted.
    redirected = httpx.Response(200, text=CONNECT_PAGE, headers={"content-type": "text/html"}, request=request)
    redirected.history = [httpx.Response(302, request=request)]
    assert post_form_in(redirected) is None
    assert post_form_in(httpx.Response(200, json={"form": "<form method=post>"}, request=request)) is None

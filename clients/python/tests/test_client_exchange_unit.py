"""Token exchange (``POST /oauth/token``) in the client, against an ``httpx.MockTransport``
standing in for the gateway: the request exactly as sent (a form, the API key header, no
token anywhere but the body), the answer turned into a ``TokenInfo``, every error answer
the endpoint has mapped onto the exception families, and the subject token kept out of
every exception, ``repr`` and log line.

The bodies below are the gateway's own answers (captured from the real binary); the
end-to-end tests in test_e2e_exchange.py produce them from a real gateway as well."""

from __future__ import annotations

import json
import logging
from datetime import datetime, timedelta, timezone
from typing import Any
from urllib.parse import parse_qsl

import httpx
import pytest

from mcp_auth_client import (
    ACCESS_TOKEN_TYPE,
    ID_TOKEN_TYPE,
    JWT_TOKEN_TYPE,
    AuthClient,
    AuthGatewayError,
    AuthorizationRequired,
    AuthSession,
    ExchangeRequired,
    GatewayAuthError,
    GatewayConnectionError,
    GatewayTimeout,
    InternalError,
    InvalidClient,
    InvalidRequest,
    InvalidTarget,
    NotAuthenticated,
    PayloadTooLarge,
    RateLimited,
    RefreshFailed,
    RequestError,
    RetryableError,
    ScopeInsufficient,
    ServerError,
    SlowDown,
    SubjectTokenRejected,
    SyncAuthClient,
    TemporarilyUnavailable,
    UnauthorizedClient,
    UnexpectedResponse,
    UnsupportedGrantType,
    UntrustedAuthUrl,
    __version__,
)
from mcp_auth_client.exceptions import error_from_response
from tests.stack import free_port

pytestmark = pytest.mark.anyio

GATEWAY = "http://127.0.0.1:8000"
API_KEY = "k" * 64
#: Looks like a JWT; the stand-in gateway does not verify it.
SUBJECT = "eyJhbGciOiJFUzI1NiIsImtpZCI6ImsxIn0.eyJzdWIiOiJhbGljZSJ9.c2lnbmF0dXJlLXNlY3JldA"
GRANT = "urn:ietf:params:oauth:grant-type:token-exchange"
LINK = f"{GATEWAY}/connect/abcdefghijklmnop"
SESSION_ID = "c6c05284-b076-4ece-ae9e-3487a58c3717"


class StandIn:
    """A gateway stand-in: records each request and answers with ``status``/``body``."""

    def __init__(self, status: int = 200, body: Any = None, headers: dict[str, str] | None = None) -> None:
        self.status = status
        self.body = body if body is not None else success()
        self.headers = headers or {}
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        headers = {"content-type": "application/json", "cache-control": "no-store", **self.headers}
        return httpx.Response(self.status, content=json.dumps(self.body).encode(), headers=headers)

    @property
    def transport(self) -> httpx.MockTransport:
        return httpx.MockTransport(self)

    @property
    def form(self) -> dict[str, str]:
        (request,) = self.requests
        return dict(parse_qsl(request.content.decode(), keep_blank_values=True))


def success(**overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "access_token": "mock_at_provider-token",
        "issued_token_type": ACCESS_TOKEN_TYPE,
        "token_type": "Bearer",
        "expires_in": 3600,
        "scope": "openid email mail.read",
    }
    body.update(overrides)
    return {k: v for k, v in body.items() if v is not None}


def oauth_error(code: str, message: str = "m", **fields: Any) -> dict[str, Any]:
    """An error body as /oauth/token sends it."""
    return {"error": code, "error_description": message, "message": message, "request_id": "req-1", **fields}


# --- the request ----------------------------------------------------------------------


async def test_the_exchange_is_a_form_post_with_the_api_key_header() -> None:
    gateway = StandIn()
    async with AuthClient(GATEWAY, API_KEY, transport=gateway.transport) as client:
        before = datetime.now(timezone.utc)
        info = await client.exchange_token_info(SUBJECT, "google", ["mail.read", "mail.send"])
        after = datetime.now(timezone.utc)
    (request,) = gateway.requests
    assert request.method == "POST"
    assert str(request.url) == f"{GATEWAY}/oauth/token"
    assert request.headers["content-type"] == "application/x-www-form-urlencoded"
    assert request.headers["x-api-key"] == API_KEY
    assert request.headers["accept"] == "application/json"
    assert request.headers["user-agent"] == f"mcp-auth-client/{__version__}"
    # The subject token travels in the body only: not as a bearer, not in the URL.
    assert "authorization" not in request.headers
    assert SUBJECT not in str(request.url)
    assert gateway.form == {
        "grant_type": GRANT,
        "subject_token": SUBJECT,
        "subject_token_type": ACCESS_TOKEN_TYPE,
        "audience": "google",
        "scope": "mail.read mail.send",
    }
    assert info.access_token == "mock_at_provider-token"
    assert info.token_type == "Bearer"
    assert info.scopes == ["openid", "email", "mail.read"]
    # expires_in counts from when the request was sent.
    assert info.expires_at is not None
    assert before + timedelta(seconds=3600) <= info.expires_at <= after + timedelta(seconds=3600)
    assert "mock_at_provider-token" not in repr(info)
    assert info.authorization_header == "Bearer mock_at_provider-token"


async def test_options_of_the_exchange() -> None:
    gateway = StandIn(body=success(expires_in=None, scope=""))
    # A path prefix is kept; no scope is sent when none is wanted.
    async with AuthClient(GATEWAY + "/gateway/", API_KEY, transport=gateway.transport) as client:
        token = await client.exchange_token(SUBJECT, "mock", subject_token_type=ID_TOKEN_TYPE)
        info = await client.exchange_token_info(SUBJECT, "mock", [])
    assert token == "mock_at_provider-token"
    assert [r.url.path for r in gateway.requests] == ["/gateway/oauth/token"] * 2
    first, second = (dict(parse_qsl(r.content.decode())) for r in gateway.requests)
    assert first["subject_token_type"] == ID_TOKEN_TYPE and "scope" not in first
    assert second["subject_token_type"] == ACCESS_TOKEN_TYPE and "scope" not in second
    assert info.expires_at is None and info.scopes == []
    assert JWT_TOKEN_TYPE == "urn:ietf:params:oauth:token-type:jwt"


def test_the_sync_client_exchanges_too() -> None:
    gateway = StandIn()
    with SyncAuthClient(GATEWAY, API_KEY, transport=gateway.transport) as client:
        assert client.exchange_token(SUBJECT, "mock", ["mail.read"]) == "mock_at_provider-token"
        assert client.exchange_token_info(SUBJECT, "mock").scopes == ["openid", "email", "mail.read"]
    assert [r.url.path for r in gateway.requests] == ["/oauth/token"] * 2


async def test_arguments_are_checked_before_any_request() -> None:
    gateway = StandIn()
    async with AuthClient(GATEWAY, API_KEY, transport=gateway.transport) as client:
        for subject, provider in (("", "mock"), (SUBJECT, "")):
            with pytest.raises(ValueError) as caught:
                await client.exchange_token(subject, provider)
            assert SUBJECT not in str(caught.value)
        with pytest.raises(TypeError, match="not one string"):
            await client.exchange_token(SUBJECT, "mock", "mail.read")
        with pytest.raises(ValueError):
            await client.exchange_token(SUBJECT, "mock", subject_token_type="")
    assert gateway.requests == []


@pytest.mark.parametrize(
    "body",
    [
        success(access_token=None),
        success(issued_token_type="urn:ietf:params:oauth:token-type:id_token"),
        success(expires_in="soon"),
        success(scope=["mail.read"]),
        ["not", "an", "object"],
    ],
    ids=["no-access-token", "not-an-access-token", "bad-expires-in", "bad-scope", "not-an-object"],
)
async def test_a_success_answer_that_makes_no_sense_is_unexpected(body: Any) -> None:
    async with AuthClient(GATEWAY, API_KEY, transport=StandIn(body=body).transport) as client:
        with pytest.raises(UnexpectedResponse) as caught:
            await client.exchange_token_info(SUBJECT, "mock")
    assert "mock_at_provider-token" not in str(caught.value) + repr(caught.value)
    assert SUBJECT not in str(caught.value) + repr(caught.value)


# --- the error answers ------------------------------------------------------------------


async def exchange_failing_with(
    status: int, body: dict[str, Any], headers: dict[str, str] | None = None, **client_options: Any
) -> AuthGatewayError:
    gateway = StandIn(status, body, headers)
    async with AuthClient(GATEWAY, API_KEY, transport=gateway.transport, **client_options) as client:
        with pytest.raises(AuthGatewayError) as caught:
            await client.exchange_token_info(SUBJECT, "mock", ["mail.read"])
    err = caught.value
    assert SUBJECT not in str(err) + repr(err)
    return err


#: (status, body, headers) -> class, and the family it must (only) belong to.
ERRORS: dict[str, tuple[int, dict[str, Any], dict[str, str], type[AuthGatewayError], type[AuthGatewayError]]] = {
    "invalid_request": (
        400,
        oauth_error("invalid_request", "Expected Content-Type: application/x-www-form-urlencoded."),
        {},
        InvalidRequest,
        RequestError,
    ),
    "unsupported_grant_type": (
        400,
        oauth_error("unsupported_grant_type", "Only grant_type=... is supported."),
        {},
        UnsupportedGrantType,
        RequestError,
    ),
    "invalid_target": (
        400,
        oauth_error("invalid_target", 'The audience "nope" is not a provider this gateway serves.'),
        {},
        InvalidTarget,
        RequestError,
    ),
    "unauthorized_client": (
        400,
        oauth_error("unauthorized_client", "The API client bootstrap has no registered audience; ..."),
        {},
        UnauthorizedClient,
        GatewayAuthError,
    ),
    "invalid_client": (
        401,
        oauth_error("invalid_client", "Invalid API key."),
        {"www-authenticate": 'ApiKey header="X-API-Key"'},
        InvalidClient,
        GatewayAuthError,
    ),
    "slow_down": (
        429,
        oauth_error("slow_down", "Too many requests; retry in 3 seconds.", retry_after=3),
        {"retry-after": "3"},
        SlowDown,
        RetryableError,
    ),
    "temporarily_unavailable": (
        503,
        oauth_error("temporarily_unavailable", "The identity provider corp cannot be reached; retry shortly."),
        {"retry-after": "5"},  # the header alone carries the hint
        TemporarilyUnavailable,
        RetryableError,
    ),
    "server_error": (500, oauth_error("server_error", "Internal error."), {}, ServerError, RetryableError),
    "payload_too_large": (
        413,
        {"error": "payload_too_large", "message": "The request body is larger than 16384 bytes."},
        {},
        PayloadTooLarge,
        RequestError,
    ),
}


@pytest.mark.parametrize("code", sorted(ERRORS))
async def test_each_error_of_the_exchange_maps_to_its_family(code: str) -> None:
    status, body, headers, cls, family = ERRORS[code]
    err = await exchange_failing_with(status, body, headers)
    assert type(err) is cls
    assert (err.code, err.status_code) == (code, status)
    assert err.message == body["message"]
    for other in (AuthorizationRequired, GatewayAuthError, RetryableError, RequestError):
        assert isinstance(err, other) == (other is family), other
    if code == "slow_down":
        assert isinstance(err, RateLimited) and isinstance(err, RetryableError) and err.retry_after == 3
    if code == "temporarily_unavailable":
        assert isinstance(err, RetryableError) and err.retry_after == 5
        assert "retry after 5s" in str(err)
    if code == "server_error":
        assert isinstance(err, InternalError) and isinstance(err, RetryableError) and err.retry_after is None


INVALID_GRANT_REASONS = [
    "malformed",
    "algorithm_refused",
    "untrusted_issuer",
    "unknown_key",
    "bad_signature",
    "wrong_audience",
    "expired",
    "not_yet_valid",
    "too_old",
    "missing_claim",
    "invalid_email",
    "unverified_email",
    "assertion_lifetime",
    "assertion_too_old",
    "replayed",
]


@pytest.mark.parametrize("reason", INVALID_GRANT_REASONS)
async def test_a_refused_subject_token_says_why(reason: str) -> None:
    err = await exchange_failing_with(400, oauth_error("invalid_grant", f"refused: {reason}", reason=reason))
    assert type(err) is SubjectTokenRejected
    assert isinstance(err, RequestError) and not isinstance(err, (AuthorizationRequired, GatewayAuthError))
    assert (err.code, err.reason, err.status_code, err.request_id) == ("invalid_grant", reason, 400, "req-1")
    assert f"reason={reason!r}" in repr(err)


async def test_invalid_grant_without_a_reason() -> None:
    err = error_from_response(400, {"error": "invalid_grant", "error_description": "OAuth's own field"})
    assert isinstance(err, SubjectTokenRejected) and err.reason is None
    # Without "message", OAuth's error_description is the message.
    assert err.message == "OAuth's own field"


@pytest.mark.parametrize(
    ("reason", "cls", "extra"),
    [
        ("not_authenticated", NotAuthenticated, {}),
        ("refresh_failed", RefreshFailed, {}),
        ("scope_insufficient", ScopeInsufficient, {"missing_scopes": ["mail.send"]}),
    ],
)
async def test_authorization_required_is_the_sign_in_family_with_the_gateways_link(
    reason: str, cls: type[AuthorizationRequired], extra: dict[str, Any]
) -> None:
    body = oauth_error(
        "authorization_required",
        f"The user must authorize this gateway at the provider ({reason}).",
        reason=reason,
        auth_url=LINK,
        session_id=SESSION_ID,
        expires_at="2026-12-01T03:19:24.119364Z",
        **extra,
    )
    err = await exchange_failing_with(400, body)
    assert type(err) is cls
    assert isinstance(err, AuthorizationRequired)
    assert not isinstance(err, (GatewayAuthError, RequestError, RetryableError))
    assert (err.code, err.reason, err.status_code) == ("authorization_required", reason, 400)
    assert (err.auth_url, err.session_id) == (LINK, SESSION_ID)
    assert err.expires_at == datetime(2026, 12, 1, 3, 19, 24, 119364, tzinfo=timezone.utc)
    assert err.session == AuthSession(auth_url=LINK, session_id=SESSION_ID, expires_at=err.expires_at)
    assert err.missing_scopes == extra.get("missing_scopes", [])
    # A sign-in link for one user: available to the caller, but not in logs and tracebacks.
    assert LINK not in str(err) + repr(err)


async def test_authorization_required_without_a_link_or_with_an_unknown_reason() -> None:
    # A client without the init right gets no link.
    no_link = await exchange_failing_with(
        400, oauth_error("authorization_required", "must authorize", reason="not_authenticated")
    )
    assert type(no_link) is NotAuthenticated
    assert no_link.auth_url is None and no_link.session_id is None and no_link.session is None
    unknown = await exchange_failing_with(
        400, oauth_error("authorization_required", "must authorize", reason="something_new", auth_url=LINK)
    )
    assert type(unknown) is AuthorizationRequired and unknown.reason == "something_new"
    assert unknown.session is None  # no session id


async def test_the_get_token_family_has_reasons_too() -> None:
    err = error_from_response(403, {"error": "scope_insufficient", "message": "x", "missing_scopes": ["a"]})
    assert isinstance(err, ScopeInsufficient)
    assert (err.reason, err.missing_scopes, err.session) == ("scope_insufficient", ["a"], None)


@pytest.mark.parametrize(
    ("link", "origin"),
    [
        ("https://evil.example/connect/abc", "https://evil.example:443"),
        ("http://127.0.0.1:8001/connect/abc", "http://127.0.0.1:8001"),
        ("http://evil.example\\@127.0.0.1:8000/connect/abc", None),
    ],
)
async def test_a_sign_in_link_off_the_gateways_origin_is_refused(link: str, origin: str | None) -> None:
    body = oauth_error("authorization_required", "x", reason="not_authenticated", auth_url=link, session_id="s")
    err = await exchange_failing_with(400, body)
    assert isinstance(err, UntrustedAuthUrl)
    assert err.origin == origin
    assert "/connect/abc" not in str(err) + repr(err)


async def test_a_sign_in_link_on_the_public_url_is_accepted() -> None:
    link = "https://auth.example.com/connect/abc"
    body = oauth_error("authorization_required", "x", reason="not_authenticated", auth_url=link, session_id="s")
    err = await exchange_failing_with(400, body, public_url="https://auth.example.com")
    assert isinstance(err, NotAuthenticated) and err.auth_url == link


async def test_a_client_bound_to_exchange_gets_exchange_required_from_get_token() -> None:
    message = "The API client mail must prove its user: exchange the user's access token at POST /oauth/token."
    gateway = StandIn(403, {"error": "exchange_required", "message": message, "request_id": "r"})
    async with AuthClient(GATEWAY, API_KEY, transport=gateway.transport) as client:
        with pytest.raises(ExchangeRequired) as caught:
            await client.get_token("mock", "alice@example.com")
        # Not "the user must sign in": is_authenticated raises it too.
        with pytest.raises(ExchangeRequired):
            await client.is_authenticated("mock", "alice@example.com")
    err = caught.value
    assert isinstance(err, GatewayAuthError) and not isinstance(err, AuthorizationRequired)
    assert (err.code, err.status_code, err.message) == ("exchange_required", 403, message)


# --- the subject token never leaks --------------------------------------------------------


@pytest.mark.parametrize(
    "body",
    [
        oauth_error("invalid_grant", f"The token {SUBJECT} is refused.", reason="malformed"),
        oauth_error("teapot", f"echo {SUBJECT}"),
        oauth_error(
            "authorization_required", f"for {SUBJECT}", reason="not_authenticated", auth_url=LINK, session_id="s"
        ),
        oauth_error("temporarily_unavailable", f"{SUBJECT}{SUBJECT}"),
    ],
    ids=["invalid_grant", "unknown-code", "authorization_required", "retryable"],
)
async def test_a_gateway_echoing_the_subject_token_does_not_leak_it(
    body: dict[str, Any], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    err = await exchange_failing_with(400, body)  # asserts the token is in neither str nor repr
    assert "[subject_token]" in err.message
    assert SUBJECT not in " ".join(str(a) for a in err.args)
    assert SUBJECT not in caplog.text


async def test_connection_failures_do_not_carry_the_subject_token() -> None:
    async with AuthClient(f"http://127.0.0.1:{free_port()}", API_KEY, timeout=5.0) as client:
        with pytest.raises(GatewayConnectionError) as refused:
            await client.exchange_token(SUBJECT, "mock")

    def hang(request: httpx.Request) -> httpx.Response:
        raise httpx.ReadTimeout("timed out", request=request)

    async with AuthClient(GATEWAY, API_KEY, transport=httpx.MockTransport(hang)) as client:
        with pytest.raises(GatewayTimeout) as timed_out:
            await client.exchange_token(SUBJECT, "mock")
    for err in (refused.value, timed_out.value):
        assert SUBJECT not in str(err) + repr(err)
        assert "/oauth/token" in str(err)


async def test_nothing_logs_the_tokens(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    gateway = StandIn()
    async with AuthClient(GATEWAY, API_KEY, transport=gateway.transport) as client:
        info = await client.exchange_token_info(SUBJECT, "mock")
    assert SUBJECT not in caplog.text and info.access_token not in caplog.text
    assert SUBJECT not in repr(client)


class Flaky:
    """A transport whose first ``failures`` requests meet ``error``, then answer."""

    def __init__(self, error: type[httpx.TransportError], failures: int) -> None:
        self.error = error
        self.failures = failures
        self.attempts: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.attempts.append(request)
        if len(self.attempts) <= self.failures:
            raise self.error("Server disconnected without sending a response.", request=request)
        return httpx.Response(200, json=success())


@pytest.mark.parametrize("error", [httpx.RemoteProtocolError, httpx.ReadError, httpx.WriteError])
async def test_a_connection_dropped_without_an_answer_is_retried_once(error: type[httpx.TransportError]) -> None:
    # The gateway sometimes closes a keep-alive connection right after an error answer;
    # the next request on it then finds it closed (or reset) without any response.
    once = Flaky(error, failures=1)
    async with AuthClient(GATEWAY, API_KEY, transport=httpx.MockTransport(once)) as client:
        assert await client.exchange_token(SUBJECT, "mock") == "mock_at_provider-token"
    assert len(once.attempts) == 2 and once.attempts[0].content == once.attempts[1].content

    always = Flaky(error, failures=10)
    async with AuthClient(GATEWAY, API_KEY, transport=httpx.MockTransport(always)) as client:
        with pytest.raises(GatewayConnectionError) as caught:
            await client.exchange_token(SUBJECT, "mock")
    assert len(always.attempts) == 2  # once more, not forever
    assert SUBJECT not in str(caught.value) + repr(caught.value)


async def test_a_refused_connection_is_not_retried() -> None:
    refused = Flaky(httpx.ConnectError, failures=10)
    async with AuthClient(GATEWAY, API_KEY, transport=httpx.MockTransport(refused)) as client:
        with pytest.raises(GatewayConnectionError):
            await client.exchange_token(SUBJECT, "mock")
    assert len(refused.attempts) == 1  # nothing listening: no point in asking twice

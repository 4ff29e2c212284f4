"""``require_auth``: gateway tokens for tools of an MCP SDK 2.x ``MCPServer``.

```python
mcp = MCPServer("mail")
auth = AuthClient(os.environ["AUTH_GATEWAY_URL"], os.environ["AUTH_GATEWAY_API_KEY"])

@mcp.tool()
@require_auth(auth, provider="google", scopes=["https://mail.google.com/"], trusted_email_header="X-User-Email")
async def list_messages(*, access_token: str) -> list[dict[str, Any]]:
    ...  # call the provider's API with access_token
```

The tool declares a keyword-only ``access_token`` parameter. The decorator removes it
from the signature the SDK derives the input schema from (so the model never sees it)
and calls the tool with the user's token, which it gets in one of two ways:

- **token exchange** (when the MCP server runs with MCP authorization and the request
  carries a verified JWT access token): it hands that token to the gateway
  (``POST /oauth/token``, RFC 8693), which verifies it and answers with the provider
  token of the user it proves; the server never names the user;
- **a named user** otherwise: it finds the user's email from a source the model cannot
  write (the access token's email claim or a trusted header,
  :mod:`mcp_auth_client.identity`) and asks the gateway for that user's token.

When the user must sign in first, it uses the gateway OAuth session (the one the
exchange answer started for the verified user, or one it starts for the named user)
and tells the user through the best channel the MCP client supports:

- protocol 2026-07-28 (stateless, SEP-2322) with URL elicitation: the tool answers with
  an ``InputRequiredResult`` holding a URL-mode ``elicitation/create``; the client shows
  the link and retries the call with the user's answer, and the tool resumes, waiting
  (bounded) on the gateway's ``/auth/status`` long-poll before getting the token;
- protocol 2025-11-25 with URL elicitation: the server sends the URL-mode elicitation
  request in the middle of the call, waits (bounded) for the session to complete, then
  sends ``notifications/elicitation/complete`` and runs the tool;
- otherwise (no elicitation support, user declined, timeout): it raises
  :class:`~mcp_auth_client.mcp_errors.AuthRequiredException` (a ``ToolError``), whose
  text carries the link to the model; the user signs in and the tool is called again.
"""

from __future__ import annotations

import functools
import inspect
import json
import logging
import typing
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import anyio
import anyio.to_thread
from mcp.server.auth.middleware.auth_context import get_access_token
from mcp.server.auth.provider import principal_components
from mcp.server.mcpserver import Context
from mcp.server.mcpserver.exceptions import ToolError
from mcp.server.mcpserver.resolve import find_resolved_parameters
from mcp.shared.exceptions import MCPError
from mcp_types import ElicitRequest, ElicitRequestURLParams, ElicitResult, InputRequiredResult
from mcp_types.version import is_version_at_least

from mcp_auth_client.client import AuthClient
from mcp_auth_client.exceptions import (
    AUTHORIZATION_REQUIRED_CODE,
    AuthGatewayError,
    AuthorizationRequired,
    AuthorizationTimeout,
    AuthSessionFailed,
    ExchangeRequired,
    GatewayAuthError,
    GatewayConnectionError,
    InvalidEmail,
    InvalidTarget,
    RefreshFailed,
    RequestError,
    RetryableError,
    ScopeInsufficient,
    SessionNotFound,
    SubjectTokenRejected,
    UnauthorizedClient,
    UnknownProvider,
    UntrustedAuthUrl,
)
from mcp_auth_client.identity import (
    IdentityError,
    IdentityPolicy,
    exchange_identity,
    looks_like_jwt,
    resolve_user_email,
)
from mcp_auth_client.mcp_errors import AuthRequiredException
from mcp_auth_client.models import AuthSession, TokenInfo

__all__ = ["ACCESS_TOKEN_PARAMETER", "DEFAULT_WAIT_TIMEOUT", "require_auth"]

logger = logging.getLogger(__name__)

#: The keyword-only parameter the decorator fills.
ACCESS_TOKEN_PARAMETER = "access_token"
#: Seconds to wait for the user to finish signing in after accepting an elicitation.
DEFAULT_WAIT_TIMEOUT = 120.0
#: Name of the ``Context`` parameter added when the tool declares none (no leading "_":
#: the SDK refuses such parameter names).
_CONTEXT_PARAMETER = "mcp_auth_context"
#: Marks the decorator's own ``request_state`` (2026-07-28 flow).
_STATE_MARK = "mcp-auth-client/v1"
_INPUT_REQUIRED_VERSION = "2026-07-28"
_URL_ELICITATION_VERSION = "2025-11-25"

Channel = Literal["input_required", "elicit", "text"]

#: What a tool set to ``exchange=True`` answers for a request without an access token.
NO_TOKEN_TO_EXCHANGE = (
    "This tool gets the user's account by exchanging the access token the MCP client presented, "
    "but the request carries none. This is a server configuration problem that signing in to the "
    "provider cannot fix; tell the server's operator. For the server's author: run the MCP server "
    "with MCP authorization (MCPServer(auth=..., token_verifier=...)), or pass exchange=None."
)

#: ``SubjectTokenRejected.reason`` values that the user (their MCP client) can cure by
#: signing in to the MCP server again.
_STALE_TOKEN = frozenset({"expired", "not_yet_valid", "too_old"})
#: Those about the identity the token carries rather than about the configuration.
_UNUSABLE_IDENTITY = frozenset({"missing_claim", "invalid_email", "unverified_email"})


@dataclass(frozen=True)
class _Flow:
    """Per-decoration settings shared by every call."""

    client: AuthClient
    provider: str
    scopes: tuple[str, ...]
    wait_timeout: float
    elicitation: bool
    allow_input_required: bool
    exchange: bool | None = None

    @property
    def input_key(self) -> str:
        return f"mcp-auth-client/{self.provider}"


@dataclass(frozen=True)
class _User:
    """Whom one call acts for.

    Either a user named by a trusted email (``subject_token`` is ``None``), or the
    user the gateway proves from the caller's access token (``subject_token``, which
    is exchanged; ``email`` is then the token's verified email claim, if it has one,
    used only to read the user's grants).
    """

    email: str | None
    subject_token: str | None = field(default=None, repr=False)
    #: For an exchange, who the token's principal is (client, issuer, subject, email):
    #: what a resumed 2026-07-28 round must match. Never the token itself.
    principal: str | None = None

    @property
    def who(self) -> str:
        """The identity a resumed round must have to continue this one."""
        if self.subject_token is not None:
            return f"token:{self.principal}"
        return f"email:{(self.email or '').casefold()}"


class _Ready(Exception):
    """A token turned up where a sign-in link was looked for (the user finished signing
    in between two exchanges): the call goes on with it."""

    def __init__(self, info: TokenInfo) -> None:
        super().__init__("token ready")
        self.info = info


def require_auth(
    auth_client: AuthClient,
    provider: str,
    scopes: Sequence[str] | None = None,
    *,
    email_argument: str | None = "user_email",
    allow_email_argument: bool = False,
    email_claim: str = "email",
    trusted_email_header: str | None = None,
    wait_timeout: float = DEFAULT_WAIT_TIMEOUT,
    elicitation: bool = True,
    exchange: bool | None = None,
) -> Callable[[Callable[..., Any]], Callable[..., Awaitable[Any]]]:
    """Decorate an MCP tool so that it receives the user's access token for ``provider``.

    Apply it below ``@mcp.tool()``. The tool must declare a keyword-only
    ``access_token`` parameter (``str``, or :class:`~mcp_auth_client.models.TokenInfo`
    for the token with its expiry and scopes); it is filled by the decorator and does not
    appear in the tool's input schema.

    Args:
        auth_client: The gateway client.
        provider: Gateway provider id (``"google"``, ``"microsoft"``, ...).
        scopes: Scopes the tool needs. Checked on every call (``required_scopes``) and
            requested when the user signs in; ``None`` accepts whatever the user granted
            and signs in with the provider's default scopes.
        email_argument: Tool argument that may hold the user's email (``None``: none).
            Unless ``allow_email_argument`` is set it never chooses the account; a value
            that disagrees with the trusted identity is refused.
        allow_email_argument: Let the model-written ``email_argument`` choose the
            account when no trusted source exists. Any user, or text injected into the
            conversation, can then name someone else: for single-user or development
            setups only.
        email_claim: Claim of the MCP server's own OAuth access token holding the email.
        trusted_email_header: Header set by a trusted proxy (e.g. ``"X-User-Email"``);
            off unless named. Once named, a request without it is refused.
        wait_timeout: Upper bound, in seconds, on waiting for the user to finish signing
            in after they accepted a URL elicitation.
        elicitation: Set to ``False`` to always use the text fallback.
        exchange: How the user is proven to the gateway. ``None`` (default): by token
            exchange whenever the request carries a verified access token that is a JWT
            (MCP authorization), otherwise by naming the user's email as before.
            ``True``: always by token exchange; a request without an access token is
            refused. ``False``: never; the token's email claim names the user.

    Without MCP authorization, ``trusted_email_header`` or ``allow_email_argument``, the
    tool has no way to know its user and answers every call with an error that tells the
    server's author how to configure one (see :mod:`mcp_auth_client.identity`).

    Token exchange needs the API client to have the MCP server's token audience
    registered at the gateway (``gateway clients update NAME --audience ...``); the
    gateway's ``authorization_required`` answer then carries the sign-in link, which is
    shown through the same channels as above.

    Raises:
        TypeError: At decoration, when the tool has no keyword-only ``access_token``, or
            ``allow_email_argument`` is set but the tool has no ``email_argument`` parameter.
    """
    if not provider:
        raise ValueError("provider must be a non-empty provider id")
    if wait_timeout < 0:
        raise ValueError("wait_timeout must not be negative")
    if exchange not in (None, True, False):
        raise ValueError("exchange must be None, True or False")
    policy = IdentityPolicy(
        email_argument=email_argument,
        allow_email_argument=allow_email_argument,
        email_claim=email_claim,
        trusted_header=trusted_email_header,
    )

    def decorate(fn: Callable[..., Any]) -> Callable[..., Awaitable[Any]]:
        return _wrap(
            fn,
            policy,
            _Flow(
                client=auth_client,
                provider=provider,
                scopes=tuple(scopes or ()),
                wait_timeout=float(wait_timeout),
                elicitation=elicitation,
                # A tool whose parameters use the SDK's Resolve(...) hands its one
                # input_required channel to the resolvers; it gets the other channels.
                allow_input_required=not find_resolved_parameters(fn),
                exchange=exchange,
            ),
        )

    return decorate


# --- signature surgery --------------------------------------------------------------------


def _type_hints(fn: Callable[..., Any]) -> dict[str, Any]:
    try:
        return typing.get_type_hints(fn, include_extras=True)
    except Exception:  # unresolvable forward references: keep the raw annotations
        return {}


def _is_context_annotation(annotation: Any) -> bool:
    if inspect.isclass(annotation) and issubclass(annotation, Context):
        return True
    origin = typing.get_origin(annotation)
    if origin is typing.Annotated:
        return _is_context_annotation(typing.get_args(annotation)[0])
    if origin is not None:
        return any(inspect.isclass(a) and issubclass(a, Context) for a in typing.get_args(annotation))
    return False


def _accepts(signature: inspect.Signature, name: str | None) -> bool:
    """Whether a call can pass ``name`` to the tool as a keyword."""
    if name is None:
        return False
    param = signature.parameters.get(name)
    if param is not None:
        return param.kind in (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
    return any(p.kind is inspect.Parameter.VAR_KEYWORD for p in signature.parameters.values())


def _wrap(fn: Callable[..., Any], policy: IdentityPolicy, flow: _Flow) -> Callable[..., Awaitable[Any]]:
    signature = inspect.signature(fn)
    token_param = signature.parameters.get(ACCESS_TOKEN_PARAMETER)
    if token_param is None or token_param.kind is not inspect.Parameter.KEYWORD_ONLY:
        raise TypeError(
            f"{getattr(fn, '__qualname__', fn)!r}: @require_auth needs a keyword-only parameter "
            f"'{ACCESS_TOKEN_PARAMETER}' (write `*, {ACCESS_TOKEN_PARAMETER}: str`)"
        )
    if policy.allow_email_argument and not _accepts(signature, policy.email_argument):
        raise TypeError(
            f"{getattr(fn, '__qualname__', fn)!r}: allow_email_argument=True, but the tool has no "
            f"{policy.email_argument!r} parameter to read the email from"
        )
    hints = _type_hints(fn)
    wants_info = hints.get(ACCESS_TOKEN_PARAMETER) is TokenInfo
    is_async = inspect.iscoroutinefunction(inspect.unwrap(fn)) or inspect.iscoroutinefunction(fn)

    params: list[inspect.Parameter] = []
    user_context: str | None = None
    for param in signature.parameters.values():
        if param.name == ACCESS_TOKEN_PARAMETER:
            continue
        annotation = hints.get(param.name, param.annotation)
        if user_context is None and _is_context_annotation(annotation):
            user_context = param.name
        params.append(param.replace(annotation=annotation))

    context_name = user_context or _CONTEXT_PARAMETER
    if user_context is None:
        if context_name in signature.parameters:
            raise TypeError(f"{fn.__qualname__!r}: parameter name {context_name!r} is reserved by @require_auth")
        extra = inspect.Parameter(context_name, inspect.Parameter.KEYWORD_ONLY, default=None, annotation=Context | None)
        index = len(params)
        if params and params[-1].kind is inspect.Parameter.VAR_KEYWORD:
            index -= 1
        params.insert(index, extra)

    return_annotation = hints.get("return", signature.return_annotation)

    @functools.wraps(fn)
    async def wrapper(*args: Any, **kwargs: Any) -> Any:
        # The added context parameter is the decorator's; the tool's own one is passed on.
        ctx = kwargs.pop(context_name, None) if user_context is None else kwargs.get(context_name)
        if not isinstance(ctx, Context):
            ctx = None
        user = _resolve_user(kwargs, ctx, policy, flow)
        obtained = await _obtain_token(flow, ctx, user)
        if isinstance(obtained, InputRequiredResult):
            return obtained
        kwargs[ACCESS_TOKEN_PARAMETER] = obtained if wants_info else obtained.access_token
        if is_async:
            return await fn(*args, **kwargs)
        return await anyio.to_thread.run_sync(functools.partial(fn, *args, **kwargs))

    new_signature = signature.replace(parameters=params, return_annotation=return_annotation)
    wrapper.__signature__ = new_signature  # type: ignore[attr-defined]
    annotations = {p.name: p.annotation for p in params if p.annotation is not inspect.Parameter.empty}
    if return_annotation is not inspect.Signature.empty:
        annotations["return"] = return_annotation
    wrapper.__annotations__ = annotations
    return wrapper


# --- who the call is for ------------------------------------------------------------------


def _resolve_user(
    kwargs: Mapping[str, Any], ctx: Context[Any, Any] | None, policy: IdentityPolicy, flow: _Flow
) -> _User:
    """The user this call acts for: the caller's access token to exchange, or a trusted
    email (the rules of :mod:`mcp_auth_client.identity`)."""
    token = get_access_token()
    if flow.exchange is True and token is None:
        raise IdentityError(NO_TOKEN_TO_EXCHANGE)
    if flow.exchange is False or token is None or (flow.exchange is None and not looks_like_jwt(token.token)):
        return _User(email=resolve_user_email(kwargs, ctx, policy))
    claimed = exchange_identity(kwargs, ctx, policy, token)
    client_id, issuer, subject = principal_components(token)
    principal = json.dumps([client_id, issuer, subject, claimed.casefold() if claimed else None])
    return _User(email=claimed, subject_token=token.token, principal=principal)


# --- the token dance ----------------------------------------------------------------------


def _channel(flow: _Flow, ctx: Context[Any, Any] | None) -> Channel:
    """The best way to show the sign-in link to this MCP client."""
    if ctx is None or not flow.elicitation:
        return "text"
    try:
        capabilities = ctx.client_capabilities
        version = ctx.protocol_version
        can_send = ctx.session.can_send_request
    except (ValueError, AttributeError):  # a Context built outside a request
        return "text"
    elicitation = capabilities.elicitation if capabilities is not None else None
    if elicitation is None or elicitation.url is None or version is None:
        return "text"
    if is_version_at_least(version, _INPUT_REQUIRED_VERSION):
        return "input_required" if flow.allow_input_required else "text"
    if is_version_at_least(version, _URL_ELICITATION_VERSION) and can_send:
        return "elicit"
    return "text"


def _subject_token_text(exc: SubjectTokenRejected, flow: _Flow) -> str:
    reason = exc.reason or "refused"
    if reason in _STALE_TOKEN:
        return (
            f"The auth gateway no longer accepts the user's sign-in to this MCP server ({reason}). "
            "The MCP client must sign the user in again (or refresh its access token); then call "
            "this tool again."
        )
    if reason in _UNUSABLE_IDENTITY:
        return (
            f"The user's access token carries no usable, verified email address ({reason}), so the "
            f"auth gateway cannot tell whose {flow.provider} account to use. This is a configuration "
            "problem of the identity provider or the gateway; tell the server's operator."
        )
    return (
        f"The auth gateway does not accept this MCP server's access tokens ({reason}). This is a "
        "configuration problem between the MCP server, its identity provider and the gateway, not "
        "something the user can fix by signing in; tell the server's operator."
    )


def _tool_error(exc: AuthGatewayError, flow: _Flow) -> ToolError:
    """Turn a gateway failure that signing in cannot fix into text for the model."""
    if isinstance(exc, ExchangeRequired):
        text = (
            "This MCP server's gateway client may only get tokens by exchanging the user's access "
            "token (it was registered with --require-exchange), but this request carries no access "
            "token to exchange. This is a server configuration problem (run the MCP server with MCP "
            "authorization), not something the user can fix by signing in; tell the server's operator."
        )
    elif isinstance(exc, UnauthorizedClient):
        text = (
            f"The auth gateway does not let this MCP server exchange the user's access token: "
            f"{exc.message} This is a server configuration problem, not something the user can fix "
            "by signing in; tell the server's operator."
        )
    elif isinstance(exc, GatewayAuthError):
        text = (
            "This MCP server is not authorized to use its auth gateway (the gateway refused "
            "the server's API key). This is a server configuration problem, not something "
            "the user can fix by signing in; tell the server's operator."
        )
    elif isinstance(exc, RetryableError):
        seconds = exc.retry_after
        wait = (
            f" Try again in {seconds} second{'' if seconds == 1 else 's'}."
            if seconds is not None
            else " Try again later."
        )
        what = f"The {flow.provider} sign-in service" if exc.code == "provider_unavailable" else "The auth gateway"
        text = f"{what} is temporarily unavailable ({exc.code}).{wait}"
    elif isinstance(exc, SubjectTokenRejected):
        text = _subject_token_text(exc, flow)
    elif isinstance(exc, InvalidEmail):
        text = f"The user's email address was rejected: {exc.message}"
    elif isinstance(exc, UnknownProvider):
        text = f"The auth gateway has no provider {flow.provider!r}; this is a server configuration problem."
    elif isinstance(exc, InvalidTarget):
        text = (
            f"The auth gateway has no provider {flow.provider!r} that this MCP server may use; "
            "this is a server configuration problem."
        )
    elif isinstance(exc, RequestError):
        text = f"The auth gateway rejected the request ({exc.code}): {exc.message}"
    elif isinstance(exc, UntrustedAuthUrl):
        # The link itself (and its origin, which could be an attacker's) stays out of the
        # text the model reads; the operator finds the origin in the log.
        logger.warning("refused a sign-in link outside the gateway's origin: %s", exc.message)
        text = (
            "The auth gateway handed out a sign-in link that does not point to the gateway itself, "
            "so it is not shown. This is a server configuration problem (or a compromised gateway), "
            "not something the user can fix; tell the server's operator."
        )
    elif isinstance(exc, GatewayConnectionError):
        text = "The auth gateway cannot be reached right now; try again later."
    else:
        text = f"The auth gateway failed ({exc.code or 'unexpected answer'})."
    return ToolError(text)


def _no_sign_in_right(flow: _Flow, cause: AuthorizationRequired) -> ToolError:
    """The user must sign in, but the gateway started no flow: this server's API client
    lacks the ``init`` right."""
    return ToolError(
        f"The user must connect their {flow.provider} account ({_reason(cause)}), but this MCP "
        "server's gateway client may not start sign-ins (it lacks the init right), so there is no "
        "link to show. This is a server configuration problem; tell the server's operator."
    )


async def _get_token(flow: _Flow, user: _User) -> TokenInfo:
    """Get a token; every non-"sign in" failure becomes a ``ToolError``."""
    try:
        if user.subject_token is not None:
            return await flow.client.exchange_token_info(user.subject_token, flow.provider, flow.scopes or None)
        assert user.email is not None
        return await flow.client.get_token_info(flow.provider, user.email, flow.scopes or None)
    except AuthorizationRequired:
        raise
    except AuthGatewayError as exc:
        raise _tool_error(exc, flow) from exc


async def _scopes_to_request(flow: _Flow, user: _User, cause: AuthorizationRequired) -> list[str] | None:
    """Scopes for a new sign-in: what the tool needs and, when a grant exists (missing
    scopes, or a credential to renew), what the user already granted, so that the new
    grant never narrows what other tools rely on."""
    wanted = list(dict.fromkeys([*flow.scopes, *cause.missing_scopes]))
    if not isinstance(cause, (ScopeInsufficient, RefreshFailed)) or user.email is None:
        return wanted or None
    try:
        grants = await flow.client.list_providers(user.email)
    except AuthGatewayError:
        return wanted or None
    for grant in grants:
        if grant.provider == flow.provider:
            wanted = list(dict.fromkeys([*grant.scopes, *wanted]))
    return wanted or None


async def _start_session(flow: _Flow, user: _User, cause: AuthorizationRequired) -> AuthSession:
    if user.subject_token is not None:
        return await _exchange_session(flow, user, user.subject_token, cause)
    assert user.email is not None
    scopes = await _scopes_to_request(flow, user, cause)
    try:
        return await flow.client.init_oauth(flow.provider, user.email, scopes)
    except AuthGatewayError as exc:
        raise _tool_error(exc, flow) from exc


async def _exchange_session(flow: _Flow, user: _User, subject_token: str, cause: AuthorizationRequired) -> AuthSession:
    """The sign-in for an exchanging user: the one the gateway started with its
    ``authorization_required`` answer, or, when that is missing (a retry) or would
    narrow the user's grant, the one a new exchange asking for more scopes starts.
    Raises :class:`_Ready` if that exchange finds the user signed in after all."""
    wanted = await _scopes_to_request(flow, user, cause)
    # The gateway's link asks for the scopes of the exchange (the tool's), not for what
    # the user granted before; ask again with both so that the new grant keeps them.
    widened = wanted is not None and not set(wanted) <= set(flow.scopes)
    if not widened:
        session = cause.session
        if session is not None:
            return session
        if cause.code == AUTHORIZATION_REQUIRED_CODE:
            raise _no_sign_in_right(flow, cause)
    try:
        info = await flow.client.exchange_token_info(subject_token, flow.provider, wanted or flow.scopes or None)
    except AuthorizationRequired as again:
        session = again.session
        if session is None:
            raise _no_sign_in_right(flow, again) from again
        return session
    except AuthGatewayError as exc:
        raise _tool_error(exc, flow) from exc
    raise _Ready(info)


def _reason(cause: AuthorizationRequired) -> str:
    if isinstance(cause, ScopeInsufficient):
        return "scope_insufficient"
    if isinstance(cause, RefreshFailed):
        return "refresh_failed"
    return "not_authenticated"


def _missing(cause: AuthorizationRequired) -> list[str]:
    return cause.missing_scopes if isinstance(cause, ScopeInsufficient) else []


def _elicitation_message(flow: _Flow, reason: str, missing: Sequence[str]) -> str:
    if reason == "scope_insufficient" and missing:
        return f"Grant access to your {flow.provider} account ({', '.join(missing)}) to continue."
    if reason == "refresh_failed":
        return f"Your {flow.provider} connection has expired. Sign in again to continue."
    return f"Connect your {flow.provider} account to continue."


def _auth_required(
    flow: _Flow, session: AuthSession, reason: str, missing: Sequence[str] = ()
) -> AuthRequiredException:
    return AuthRequiredException(
        session.auth_url, flow.provider, session.session_id, reason=reason, missing_scopes=missing
    )


async def _obtain_token(flow: _Flow, ctx: Context[Any, Any] | None, user: _User) -> TokenInfo | InputRequiredResult:
    """A token for ``user``, an ``InputRequiredResult`` to send, or ``AuthRequiredException``."""
    try:
        return await _token_or_sign_in(flow, ctx, user)
    except _Ready as ready:
        return ready.info


async def _token_or_sign_in(flow: _Flow, ctx: Context[Any, Any] | None, user: _User) -> TokenInfo | InputRequiredResult:
    resumed = _resumed_state(flow, ctx)
    if resumed is not None:
        return await _resume(flow, ctx, user, resumed)
    try:
        return await _get_token(flow, user)
    except AuthorizationRequired as exc:
        cause = exc
    session = await _start_session(flow, user, cause)
    reason, missing = _reason(cause), _missing(cause)
    channel = _channel(flow, ctx)
    logger.info(
        "user must authorize %s (%s%s); telling them via %s",
        flow.provider,
        reason,
        ", token exchange" if user.subject_token is not None else "",
        channel,
    )
    if channel == "input_required":
        return _input_required(flow, session, user, reason, missing)
    if channel == "elicit":
        assert ctx is not None
        return await _elicit_and_wait(flow, ctx, user, session, reason, missing)
    raise _auth_required(flow, session, reason, missing)


# --- 2025-11-25: URL elicitation in the middle of the call ------------------------------


async def _elicit_and_wait(
    flow: _Flow,
    ctx: Context[Any, Any],
    user: _User,
    session: AuthSession,
    reason: str,
    missing: Sequence[str],
) -> TokenInfo:
    message = _elicitation_message(flow, reason, missing)
    outcome: Literal["accept", "decline", "cancel"] | None = None
    failed: AuthSessionFailed | None = None
    with anyio.move_on_after(flow.wait_timeout) as scope:
        try:
            answer = await ctx.elicit_url(message, session.auth_url, session.session_id)
        except MCPError as exc:  # the client refused the request (or has no back-channel)
            logger.info("URL elicitation failed (%s); falling back to text", exc.message)
            raise _auth_required(flow, session, reason, missing) from exc
        outcome = answer.action
        if outcome == "accept":
            remaining = max(0.0, scope.deadline - anyio.current_time())
            try:
                await flow.client.wait_for_completion(session.session_id, remaining)
            except AuthSessionFailed as exc:
                failed = exc
            except AuthorizationTimeout:
                pass
            except AuthGatewayError as exc:
                raise _tool_error(exc, flow) from exc
            else:
                await _notify_complete(ctx, session.session_id)
                return await _token_after_sign_in(flow, user)
    if failed is not None:
        retry = await _start_session(flow, user, _cause_for_retry(reason, missing))
        raise _auth_required(flow, retry, "failed", missing)
    if outcome in ("decline", "cancel"):
        raise _auth_required(flow, session, "declined", missing)
    raise _auth_required(flow, session, "timeout", missing)


async def _notify_complete(ctx: Context[Any, Any], elicitation_id: str) -> None:
    try:
        await ctx.session.send_elicit_complete(elicitation_id, related_request_id=ctx.request_context.request_id)
    except Exception:  # best effort: the client does not depend on it (spec)
        logger.debug("could not send notifications/elicitation/complete", exc_info=True)


async def _token_after_sign_in(flow: _Flow, user: _User) -> TokenInfo:
    """The token right after a completed session; if the grant still falls short (the user
    unticked a scope), start over with a new link."""
    try:
        return await _get_token(flow, user)
    except AuthorizationRequired as exc:
        session = await _start_session(flow, user, exc)
        raise _auth_required(flow, session, _reason(exc), _missing(exc)) from exc


def _cause_for_retry(reason: str, missing: Sequence[str]) -> AuthorizationRequired:
    if reason == "scope_insufficient":
        return ScopeInsufficient("retry", missing_scopes=list(missing))
    return AuthorizationRequired("retry")


# --- 2026-07-28: InputRequiredResult and resume on retry --------------------------------


def _input_required(
    flow: _Flow, session: AuthSession, user: _User, reason: str, missing: Sequence[str]
) -> InputRequiredResult:
    request = ElicitRequest(
        params=ElicitRequestURLParams(message=_elicitation_message(flow, reason, missing), url=session.auth_url)
    )
    # The SDK seals request_state (AES-GCM, bound to this tool call and principal)
    # before it leaves the server, so it is neither readable nor forgeable by the client.
    # It names the user (never holds an access token).
    state = {
        "mark": _STATE_MARK,
        "provider": flow.provider,
        "session_id": session.session_id,
        "auth_url": session.auth_url,
        "who": user.who,
        "reason": reason,
        "missing": list(missing),
    }
    return InputRequiredResult(input_requests={flow.input_key: request}, request_state=json.dumps(state))


def _resumed_state(flow: _Flow, ctx: Context[Any, Any] | None) -> Mapping[str, Any] | None:
    """The decorator's own state echoed back on a 2026-07-28 retry, if this is one."""
    if ctx is None:
        return None
    raw = ctx.request_state
    if not raw:
        return None
    try:
        state = json.loads(raw)
    except ValueError:
        return None
    if not isinstance(state, dict) or state.get("mark") != _STATE_MARK or state.get("provider") != flow.provider:
        return None
    if not isinstance(state.get("session_id"), str) or not isinstance(state.get("auth_url"), str):
        return None
    return state


async def _resume(flow: _Flow, ctx: Context[Any, Any] | None, user: _User, state: Mapping[str, Any]) -> TokenInfo:
    session = AuthSession(auth_url=state["auth_url"], session_id=state["session_id"], expires_at=None)
    reason = str(state.get("reason") or "not_authenticated")
    missing = [s for s in state.get("missing") or [] if isinstance(s, str)]
    if state.get("who") != user.who:
        # The caller's identity changed between rounds: never hand this user a token
        # through another user's session; start from scratch.
        return await _fresh_text_fallback(flow, user)
    responses = (ctx.input_responses if ctx is not None else None) or {}
    answer = responses.get(flow.input_key)
    if not isinstance(answer, ElicitResult) or answer.action != "accept":
        raise _auth_required(flow, session, "declined", missing)
    try:
        await flow.client.wait_for_completion(session.session_id, flow.wait_timeout)
    except AuthSessionFailed as exc:
        retry = await _start_session(flow, user, _cause_for_retry(reason, missing))
        raise _auth_required(flow, retry, "failed", missing) from exc
    except AuthorizationTimeout as exc:
        raise _auth_required(flow, session, "timeout", missing) from exc
    except SessionNotFound:
        # The gateway no longer knows the session (cleaned up): start from scratch.
        return await _fresh_text_fallback(flow, user)
    except AuthGatewayError as exc:
        raise _tool_error(exc, flow) from exc
    return await _token_after_sign_in(flow, user)


async def _fresh_text_fallback(flow: _Flow, user: _User) -> TokenInfo:
    try:
        return await _get_token(flow, user)
    except AuthorizationRequired as exc:
        session = await _start_session(flow, user, exc)
        raise _auth_required(flow, session, _reason(exc), _missing(exc)) from exc

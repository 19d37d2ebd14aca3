"""Provider quirks as named hooks: each :class:`OAuthQuirk` is small functions at fixed points.

After authlib's compliance hooks. The OAuth client calls the hooks of a provider's quirks at
these seven points, and nowhere else looks at a quirk:

- ``authorize``: the query parameters of the authorization request;
- ``token_request``: every call to the token endpoint (code exchange and refresh);
- ``refresh_request``: refresh calls only (another endpoint, method or credential);
- ``token_response``: the parsed body of every token endpoint answer, before errors are read;
- ``after_exchange``: once after the code exchange (trade a short-lived token for a long one);
- ``identity``: how the account identifier is read, instead of a plain userinfo GET;
- ``revocation``: the call that revokes a token (RFC 7009 unless a quirk reshapes it).

:func:`hooks_for` maps each quirk with an exhaustive ``match``: a quirk added to the enum
without a hook fails ``mypy``.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal, Protocol, assert_never

from alter_mcp.errors import ConfigurationError
from alter_mcp.providers.schema import (
    Injection,
    InjectionKind,
    OAuthQuirk,
    OAuthSpec,
    TokenEndpointAuth,
)
from alter_mcp.redaction import Secret

if TYPE_CHECKING:
    from alter_mcp.oauth.tokens import TokenSet

__all__ = ["Exchange", "Hooks", "Identity", "QuirkHttp", "TokenCall", "hooks_for"]

_TOKEN_FIELDS = frozenset({"access_token", "refresh_token", "expires_in", "scope",
                           "token_type"})


@dataclass
class TokenCall:
    """One call to a token endpoint, as the hooks may reshape it before it is sent."""

    url: str
    body: dict[str, str]
    headers: dict[str, str] = field(default_factory=dict)
    method: Literal["GET", "POST", "DELETE"] = "POST"
    as_json: bool = False
    #: False when the provider takes no client credentials for this call (Instagram refresh).
    client_auth: bool = True
    #: How the client authenticates on this call, when not as ``token_endpoint_auth`` says.
    auth_method: TokenEndpointAuth | None = None


class QuirkHttp(Protocol):
    """What the asynchronous hooks may ask of the OAuth client."""

    async def call(self, call: TokenCall, *, what: str,
                   secrets: Iterable[str | Secret]) -> dict[str, Any]:
        """Send a token-endpoint-like call and return its parsed, checked body."""

    async def read(self, url: str, *, headers: dict[str, str], what: str,
                   json: Any = None, form: dict[str, str] | None = None) -> Any:
        """GET (or POST ``json`` or ``form`` to) a document about the grant; return its JSON."""


@dataclass(frozen=True)
class Exchange:
    """What an ``after_exchange`` hook works on: the provider, its client and the answer."""

    http: QuirkHttp
    spec: OAuthSpec
    client_id: str
    client_secret: Secret | None
    data: dict[str, Any]


@dataclass(frozen=True)
class Identity:
    """What an ``identity`` hook works on: where to ask, with which token and header."""

    http: QuirkHttp
    spec: OAuthSpec
    injection: tuple[Injection, ...]
    token: Secret


Authorize = Callable[[OAuthSpec, dict[str, str]], None]
Request = Callable[[OAuthSpec, TokenCall], None]
Refresh = Callable[[OAuthSpec, TokenCall, "TokenSet"], None]
Response = Callable[[dict[str, Any]], dict[str, Any]]
AfterExchange = Callable[[Exchange], Awaitable[dict[str, Any]]]
ReadIdentity = Callable[[Identity], Awaitable[Any]]


@dataclass(frozen=True)
class Hooks:
    """The hook functions of one provider's quirks, by hook point."""

    authorize: tuple[Authorize, ...] = ()
    token_request: tuple[Request, ...] = ()
    refresh_request: tuple[Refresh, ...] = ()
    token_response: tuple[Response, ...] = ()
    after_exchange: tuple[AfterExchange, ...] = ()
    identity: ReadIdentity | None = None
    revocation: tuple[Request, ...] = ()

    def __add__(self, other: Hooks) -> Hooks:
        if self.identity is not None and other.identity is not None:
            raise ConfigurationError("Two quirks of one provider both read the account identity.",
                                     setting="catalog.oauth.quirks",
                                     hint="Keep one identity quirk.")
        return Hooks(
            authorize=self.authorize + other.authorize,
            token_request=self.token_request + other.token_request,
            refresh_request=self.refresh_request + other.refresh_request,
            token_response=self.token_response + other.token_response,
            after_exchange=self.after_exchange + other.after_exchange,
            identity=self.identity or other.identity,
            revocation=self.revocation + other.revocation,
        )


def hooks_for(spec: OAuthSpec) -> Hooks:
    """Return the hooks of every quirk ``spec`` names."""
    hooks = Hooks()
    for quirk in spec.quirks:
        hooks = hooks + _hooks(quirk)
    return hooks


def _hooks(quirk: OAuthQuirk) -> Hooks:
    match quirk:
        case OAuthQuirk.SLACK_AUTHED_USER:
            return Hooks(token_response=(_lift_authed_user,))
        case OAuthQuirk.JSON_TOKEN_REQUEST:
            return Hooks(token_request=(_json_body,))
        case OAuthQuirk.NO_EXPIRY:
            return Hooks(token_response=(_drop_expiry,))
        case OAuthQuirk.USER_SCOPE_PARAM:
            return Hooks(authorize=(_user_scope,))
        case OAuthQuirk.OK_FALSE_ERRORS:
            return Hooks(token_response=(_ok_false_is_error,))
        case OAuthQuirk.USERINFO_POST:
            return Hooks(identity=_userinfo_post)
        case OAuthQuirk.CLIENT_KEY:
            return Hooks(authorize=(_client_key,), token_request=(_client_key_body,))
        case OAuthQuirk.GRAPHQL_IDENTITY:
            return Hooks(identity=_graphql_identity)
        case OAuthQuirk.INSTAGRAM_LONG_LIVED:
            return Hooks(after_exchange=(_instagram_exchange,),
                         refresh_request=(_instagram_refresh,))
        case OAuthQuirk.FACEBOOK_LONG_LIVED:
            return Hooks(after_exchange=(_facebook_exchange,))
        case OAuthQuirk.GITHUB_GRANT_REVOCATION:
            return Hooks(revocation=(_github_revocation,))
        case OAuthQuirk.LAUNCHPAD_TYPE:
            return Hooks(authorize=(_launchpad_authorize,), token_request=(_launchpad_type,))
        case _:
            assert_never(quirk)


# -- authorize ---------------------------------------------------------------------------------
def _user_scope(spec: OAuthSpec, params: dict[str, str]) -> None:
    """Slack user tokens: scopes go in ``user_scope``."""
    if "scope" in params:
        params["user_scope"] = params.pop("scope")


def _client_key(spec: OAuthSpec, params: dict[str, str]) -> None:
    """TikTok: the client id is called ``client_key``."""
    if "client_id" in params:
        params["client_key"] = params.pop("client_id")


def _launchpad_authorize(spec: OAuthSpec, params: dict[str, str]) -> None:
    """Basecamp: the authorization request says ``type=web_server``."""
    params["type"] = "web_server"


# -- token requests ----------------------------------------------------------------------------
def _launchpad_type(spec: OAuthSpec, call: TokenCall) -> None:
    """Basecamp: the token request names its kind in ``type``."""
    refresh = call.body.get("grant_type") == "refresh_token"
    call.body["type"] = "refresh" if refresh else "web_server"


def _json_body(spec: OAuthSpec, call: TokenCall) -> None:
    """Notion: the token endpoint takes a JSON body."""
    call.as_json = True


def _client_key_body(spec: OAuthSpec, call: TokenCall) -> None:
    """TikTok: the client id is ``client_key`` in the token request too."""
    if "client_id" in call.body:
        call.body["client_key"] = call.body.pop("client_id")


def _instagram_refresh(spec: OAuthSpec, call: TokenCall, tokens: TokenSet) -> None:
    """Instagram: extend the long-lived token itself (there is no refresh token)."""
    call.url = spec.refresh_url or spec.token_url
    call.method = "GET"
    call.client_auth = False
    call.body = {"grant_type": "ig_refresh_token", "access_token": tokens.access_token.reveal()}


def _github_revocation(spec: OAuthSpec, call: TokenCall) -> None:
    """GitHub: DELETE the app's grant, client in Basic auth, the token in a JSON body."""
    call.method = "DELETE"
    call.as_json = True
    call.auth_method = TokenEndpointAuth.CLIENT_SECRET_BASIC
    call.body = {"access_token": call.body.get("token", "")}


# -- token responses ---------------------------------------------------------------------------
def _lift_authed_user(data: dict[str, Any]) -> dict[str, Any]:
    """Slack v2: the user token is nested in ``authed_user``; lift it, keep the rest."""
    user = data.get("authed_user")
    if isinstance(user, dict) and user.get("access_token"):
        # The bot's token fields must not complete the user's token set.
        rest = {k: v for k, v in data.items() if k not in _TOKEN_FIELDS}
        return {**rest, **user}
    return data


def _drop_expiry(data: dict[str, Any]) -> dict[str, Any]:
    """Tokens that never expire: ignore any ``expires_in``."""
    return {k: v for k, v in data.items() if k != "expires_in"}


def _ok_false_is_error(data: dict[str, Any]) -> dict[str, Any]:
    """Slack: HTTP 200 with ``ok: false`` is an error."""
    if data.get("ok") is False and "error" not in data:
        return {**data, "error": "ok_false"}
    return data


# -- after the code exchange -------------------------------------------------------------------
async def _instagram_exchange(ctx: Exchange) -> dict[str, Any]:
    """Instagram: trade the one-hour token for a 60-day one (``ig_exchange_token``)."""
    short = str(ctx.data.get("access_token") or "")
    secret = ctx.client_secret.reveal() if ctx.client_secret else ""
    call = TokenCall(url=ctx.spec.exchange_url or ctx.spec.token_url, method="GET",
                     client_auth=False, body={"grant_type": "ig_exchange_token",
                                              "client_secret": secret, "access_token": short})
    return {**ctx.data, **await ctx.http.call(call, what="token exchange", secrets=[short])}


async def _facebook_exchange(ctx: Exchange) -> dict[str, Any]:
    """Facebook: trade the short-lived user token for a 60-day one (``fb_exchange_token``)."""
    short = str(ctx.data.get("access_token") or "")
    secret = ctx.client_secret.reveal() if ctx.client_secret else ""
    # Facebook wants both client values as parameters here, whatever the token endpoint takes.
    call = TokenCall(url=ctx.spec.exchange_url or ctx.spec.token_url, method="GET",
                     client_auth=False, body={
                         "grant_type": "fb_exchange_token", "client_id": ctx.client_id,
                         "client_secret": secret, "fb_exchange_token": short})
    return {**ctx.data, **await ctx.http.call(call, what="token exchange", secrets=[short])}


# -- account identity --------------------------------------------------------------------------
async def _userinfo_post(ctx: Identity) -> Any:
    """Userinfo endpoints that want the token in a POST body."""
    return await ctx.http.read(ctx.spec.userinfo_url or "", headers={}, what="userinfo",
                               form={"access_token": ctx.token.reveal()})


async def _graphql_identity(ctx: Identity) -> Any:
    """GraphQL APIs (Linear, monday): ask for the account field with a query built from it."""
    path = ctx.spec.account_field.removeprefix("data.").split(".")
    query = "{ " + " { ".join(path) + " }" * len(path)
    return await ctx.http.read(ctx.spec.userinfo_url or "", what="identity", json={"query": query},
                               headers=dict([_api_auth(ctx.injection, ctx.token)]))


def _api_auth(injection: tuple[Injection, ...], token: Secret) -> tuple[str, str]:
    """Return the header the provider's API takes the token in (monday: no ``Bearer``)."""
    for rule in injection:
        match rule.kind:
            case InjectionKind.BEARER:
                return rule.name or "Authorization", f"Bearer {token.reveal()}"
            case InjectionKind.HEADER:
                return rule.name or "Authorization", rule.format.replace(
                    "{access_token}", token.reveal())
            case InjectionKind.QUERY | InjectionKind.BASIC | InjectionKind.AWS_SIGV4:
                continue
            case _:
                assert_never(rule.kind)
    return "Authorization", f"Bearer {token.reveal()}"

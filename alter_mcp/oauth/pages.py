"""The connect pages' HTML: provider picker, key form, connected, refused, expired or used.

Small, self-contained documents: one inline stylesheet allowed by its hash in the
Content-Security-Policy (no script, no image, no font, nothing from elsewhere; the key form
alone may post, and only to its own link), a
language, landmarks, a labelled list of choices, visible focus, colours above WCAG AA
contrast in light and dark schemes. Every text that came from outside is escaped. A provider's
error code is explained in plain words; its free-text description is never shown (a crafted
link could put anything there).
"""

from __future__ import annotations

import base64
import hashlib
import html
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from alter_mcp.errors import AlterError, ConnectFlowError
from alter_mcp.oauth.flow import ProviderChoice
from alter_mcp.oauth.keypage import SecretForm

__all__ = ["CSP", "DARK", "FORM_HEADERS", "HEADERS", "LIGHT", "STYLE", "Page", "connected",
           "key_form", "picker", "refused", "render", "unexpected"]

#: Colour roles of the light scheme (each text colour is checked against ``bg`` in tests).
LIGHT = {"bg": "#ffffff", "fg": "#1b1b1f", "muted": "#4b4b57", "accent": "#0b4fc4",
         "ok": "#0a6a2c", "bad": "#a3161a", "line": "#767684", "hover": "#eef3fd"}
#: Colour roles of the dark scheme.
DARK = {"bg": "#16161a", "fg": "#ececf1", "muted": "#b4b4c0", "accent": "#8ab4ff",
        "ok": "#6fdc8c", "bad": "#ff8f8f", "line": "#8e8e9c", "hover": "#222a3a"}


def _vars(palette: Mapping[str, str]) -> str:
    return ";".join(f"--{name}:{value}" for name, value in palette.items())


STYLE = (
    f":root{{color-scheme:light dark;{_vars(LIGHT)}}}"
    f"@media (prefers-color-scheme:dark){{:root{{{_vars(DARK)}}}}}"
    "*{box-sizing:border-box}"
    "body{margin:0;background:var(--bg);color:var(--fg);"
    "font:1.0625rem/1.55 system-ui,-apple-system,'Segoe UI',Roboto,sans-serif}"
    "main{max-width:34rem;margin:12vh auto 2rem;padding:0 1.25rem}"
    ".brand{margin:0 0 .75rem;color:var(--muted);font-size:.875rem;letter-spacing:.04em}"
    ".head{display:flex;gap:.7rem;align-items:center;margin:0 0 1rem}"
    "h1{margin:0;font-size:1.5rem;line-height:1.25}h1:focus{outline:none}"
    ".icon{flex:none;display:inline-grid;place-items:center;width:2rem;height:2rem;"
    "border-radius:50%;border:2px solid currentColor;font-size:1.1rem;font-weight:700}"
    ".ok .icon{color:var(--ok)}.bad .icon{color:var(--bad)}.neutral .icon{color:var(--muted)}"
    "p{margin:0 0 .9rem}.muted{color:var(--muted)}"
    "ul{list-style:none;margin:1.25rem 0;padding:0}li{margin:0 0 .6rem}"
    "a{color:var(--accent)}"
    "a.choice{display:flex;justify-content:space-between;align-items:center;"
    "padding:.85rem 1.1rem;border:1px solid var(--line);border-radius:.6rem;"
    "color:var(--fg);text-decoration:none;font-weight:600}"
    "a.choice:hover{background:var(--hover);border-color:var(--accent)}"
    "a:focus-visible{outline:3px solid var(--accent);outline-offset:3px}"
    "code{font-size:.9em}"
    "form{margin:1.25rem 0}label{display:block;margin:0 0 .3rem;font-weight:600}"
    "input{display:block;width:100%;margin:0 0 1rem;padding:.6rem .75rem;font:inherit;"
    "color:var(--fg);background:var(--bg);border:1px solid var(--line);border-radius:.5rem}"
    "input:focus-visible,button:focus-visible{outline:3px solid var(--accent);"
    "outline-offset:2px}"
    "button{font:inherit;font-weight:600;padding:.7rem 1.4rem;border-radius:.6rem;"
    "border:1px solid var(--accent);background:var(--accent);color:var(--bg);cursor:pointer}"
    ".error{color:var(--bad);font-weight:600}"
)
_STYLE_HASH = base64.b64encode(hashlib.sha256(STYLE.encode("utf-8")).digest()).decode("ascii")
#: Nothing but this one stylesheet may load or run; no page may frame these.
CSP = (f"default-src 'none'; style-src 'sha256-{_STYLE_HASH}'; img-src 'none'; "
       "form-action 'none'; base-uri 'none'; frame-ancestors 'none'")
HEADERS = {
    "Cache-Control": "no-store",
    "Referrer-Policy": "no-referrer",
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Cross-Origin-Opener-Policy": "same-origin",
    "Cross-Origin-Resource-Policy": "same-origin",
    "Content-Security-Policy": CSP,
}
#: The key form's headers: it may post, to its own link only.
FORM_HEADERS = {**HEADERS, "Content-Security-Policy": CSP.replace("form-action 'none'",
                                                                  "form-action 'self'")}

_AGAIN = "Ask the app or agent that sent you here for a new connect link."
#: A provider's ``error=`` code (RFC 6749 §4.1.2.1, OpenID Connect) in plain words.
_PROVIDER_ERRORS: dict[str, tuple[str, str, str]] = {
    "access_denied": ("You declined", "You chose not to give access, so nothing was connected.",
                      "Changed your mind? " + _AGAIN + " Then choose Allow."),
    "invalid_scope": ("Permissions not accepted",
                      "The provider did not accept the permissions this app asked for.",
                      "Tell whoever runs this server: the provider's scopes need fixing."),
    "unauthorized_client": ("This app may not connect",
                            "The provider does not allow this app to connect accounts.",
                            "Tell whoever runs this server: the OAuth client needs fixing."),
    "unsupported_response_type": ("This app may not connect",
                                  "The provider does not allow this kind of sign-in.",
                                  "Tell whoever runs this server: the OAuth client needs "
                                  "fixing."),
    "invalid_request": ("The provider rejected the request",
                        "The provider found the sign-in request malformed.",
                        "Tell whoever runs this server: the provider's settings need fixing."),
    "server_error": ("The provider had a problem",
                     "Something went wrong at the provider, so nothing was connected.",
                     "Try again in a few minutes. " + _AGAIN),
    "temporarily_unavailable": ("The provider is busy",
                                "The provider is temporarily unavailable.",
                                "Try again in a few minutes. " + _AGAIN),
    "login_required": ("Sign-in needed", "The provider needs you to sign in first.", _AGAIN),
    "interaction_required": ("Sign-in needed",
                             "The provider needs you to sign in or confirm first.", _AGAIN),
    "consent_required": ("Permission needed",
                         "The provider needs you to confirm access first.", _AGAIN),
    "account_selection_required": ("Choose an account",
                                   "The provider needs you to pick an account first.", _AGAIN),
}
#: Link problems: the link itself can no longer be used.
_LINK_PROBLEMS: dict[str, tuple[str, str, str]] = {
    "expired": ("This link has expired",
                "Connect links work for a few minutes only, and this one has run out.", _AGAIN),
    "used": ("This link was already used",
             "Each connect link works once, and this one has been used.", _AGAIN),
    "unknown_link": ("This link is not valid",
                     "This connect link is not known here: it may be mistyped or cut short.",
                     _AGAIN),
    "replayed": ("Already finished",
                 "This sign-in response was already used: the page was reloaded or opened "
                 "twice.",
                 "You can close this window. If the account is not connected, ask for a new "
                 "link."),
}


@dataclass(frozen=True, slots=True)
class Page:
    """A page to send: its title, body HTML (already escaped), status and tone."""

    title: str
    body: str
    status: int = 200
    tone: str = "plain"


def render(page: Page) -> str:
    """Return the full HTML document of a page."""
    icon = {"ok": "✓", "bad": "✕", "neutral": "&ndash;"}.get(page.tone)
    mark = f"<span class=icon aria-hidden=true>{icon}</span>" if icon else ""
    focus = "" if "autofocus" in page.body else " autofocus"
    return (
        "<!doctype html><html lang=en><head><meta charset=utf-8>"
        "<meta name=viewport content='width=device-width,initial-scale=1'>"
        "<meta name=color-scheme content='light dark'>"
        f"<title>{html.escape(page.title)} · alter-mcp</title><style>{STYLE}</style></head>"
        f"<body><main class={page.tone} aria-labelledby=title>"
        "<p class=brand>alter-mcp · connect an account</p>"
        f"<div class=head>{mark}<h1 id=title tabindex=-1{focus}>{html.escape(page.title)}</h1>"
        "</div>"
        f"{page.body}</main></body></html>"
    )


def _para(text: str, *, muted: bool = False) -> str:
    return f"<p{' class=muted' if muted else ''}>{html.escape(text)}</p>"


def picker(choices: Sequence[ProviderChoice]) -> Page:
    """Return the page offering the link's providers."""
    items = "".join(
        f"<li><a class=choice href='?provider={html.escape(c.provider_id, quote=True)}'"
        f"{' autofocus' if i == 0 else ''}>{html.escape(c.name)}"
        "<span aria-hidden=true>→</span></a></li>" for i, c in enumerate(choices))
    return Page("Choose an account to connect",
                _para("Pick a service. You will sign in on its own site; the AI agent never "
                      "sees your password or tokens.")
                + f"<nav aria-label='Services to connect'><ul>{items}</ul></nav>"
                + _para("This link works once, for a few minutes.", muted=True))


def connected(provider_name: str, account: str | None, *, repaired: bool) -> Page:
    """Return the page shown once an account is connected or re-authorized."""
    verb = "re-authorized" if repaired else "connected"
    who = f" as <b>{html.escape(account)}</b>" if account else ""
    return Page(f"{provider_name} {verb}",
                f"<p>Your {html.escape(provider_name)} account is {verb}{who}.</p>"
                + _para("You can close this window and go back to your app.", muted=True),
                tone="ok")


def refused(exc: AlterError, *, status: int, provider_error: str | None = None) -> Page:
    """Return the failure page of a refused or failed connect, in plain words."""
    reason = exc.reason if isinstance(exc, ConnectFlowError) else None
    if reason in ("access_denied", "provider_error") and provider_error:
        code = "".join(c for c in provider_error[:64] if c.isalnum() or c in "_-.")
        known = _PROVIDER_ERRORS.get(code)
        if known is not None:
            title, what, fix = known
        else:
            title, what, fix = ("The provider refused the connection",
                                "The provider said no, so nothing was connected.", _AGAIN)
        detail = f"<p class=muted>The provider's error code: <code>{html.escape(code)}</code>"
        # Declining is the user's choice, not a fault: no alarm for it.
        tone = "neutral" if code == "access_denied" else "bad"
        return Page(title, _para(what) + _para(fix) + detail + "</p>", status, tone)
    if reason in _LINK_PROBLEMS:
        title, what, fix = _LINK_PROBLEMS[reason]
        return Page(title, _para(what) + _para(fix, muted=True), status, "bad")
    hint = _para(exc.hint, muted=True) if exc.hint else ""
    return Page("Connection not completed", _para(exc.message) + hint, status, "bad")


def unexpected() -> Page:
    """Return the page of an unexpected server error (nothing about its cause)."""
    return Page("Connection not completed",
                _para("Something went wrong on this server, so nothing was connected.")
                + _para(_AGAIN, muted=True), 500, "bad")


def key_form(form: SecretForm) -> Page:
    """Return the page where the user pastes a key-based provider's secret fields."""
    name = html.escape(form.provider_name)
    error = (f"<p class=error id=form-error role=alert>{html.escape(form.error)}</p>"
             if form.error else "")
    inputs = []
    for index, spec in enumerate(form.fields):
        ident = f"field-{html.escape(spec.name, quote=True)}"
        kind = "password" if spec.secret else "text"
        invalid = (" aria-invalid=true aria-describedby=form-error"
                   if form.error_field == f"fields.{spec.name}" else "")
        focus = " autofocus" if index == 0 else ""
        inputs.append(
            f"<label for={ident}>{html.escape(spec.label)}"
            f"{'' if spec.required else ' (optional)'}</label>"
            f"<input id={ident} name='field.{html.escape(spec.name, quote=True)}' type={kind}"
            f" autocomplete=off spellcheck=false{' required' if spec.required else ''}"
            f"{invalid}{focus}>")
    for value in form.connection:
        ident = f"field-{html.escape(value.name, quote=True)}"
        invalid = (" aria-invalid=true aria-describedby=form-error"
                   if form.error_field in (f"fields.{value.name}", f"connection.{value.name}")
                   else "")
        inputs.insert(0, f"<label for={ident}>{html.escape(value.label)}</label>"
                         f"<input id={ident} name='field.{html.escape(value.name, quote=True)}'"
                         f" type=text autocomplete=off spellcheck=false required{invalid}>")
    where = (f" Create one at <a href='{html.escape(form.docs_url, quote=True)}' "
             f"rel='noopener noreferrer' target=_blank>{name}'s site</a>."
             if form.docs_url else "")
    body = (
        f"<p>Paste your {name} credentials. The vault encrypts them and sends them only to "
        f"{name} itself; the AI agent never sees them.{where}</p>{error}"
        f"<form method=post autocomplete=off>"
        f"<input type=hidden name=provider value='{html.escape(form.provider_id, quote=True)}'>"
        + "".join(inputs)
        + "<label for=label>Label (optional)</label>"
        "<input id=label name=label type=text maxlength=120 placeholder='e.g. work account'>"
        f"<button type=submit>Save {name} key</button></form>"
        + _para("This link works once, for a few minutes.", muted=True))
    return Page(f"Connect {form.provider_name}", body, status=400 if form.error else 200)

"""Translate vault errors into MCP tool errors, once, at the server's boundary.

The text is written for the model that reads it: what happened, then what to do next (call
``connect``, send the user to a repair link, pick one of the listed grants, retry later). It is
redacted and never carries a stack trace; unexpected exceptions stay masked by FastMCP.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager

from fastmcp.exceptions import ResourceError, ToolError

from alter_mcp.errors import (
    AlterError,
    AmbiguousGrantError,
    AuditWriteError,
    AuthenticationError,
    CryptoError,
    GrantNotFoundError,
    PolicyViolationError,
    ProviderNotConfiguredError,
    ReAuthRequiredError,
    RequestSentUnauditedError,
    ScopeReauthRequiredError,
    SentRequestFailedError,
    StoreError,
)
from alter_mcp.redaction import redact_text

__all__ = [
    "QuietExpectedErrors",
    "describe",
    "install_log_filters",
    "log_level",
    "resource_errors",
    "tool_errors",
]


def _connect_call(provider_id: str | None) -> str:
    return f"`connect` with providers=[{provider_id!r}]" if provider_id else "`connect`"


def _next_step(exc: AlterError) -> str | None:
    """Return the sentence telling the model what to do after ``exc``."""
    if isinstance(exc, ScopeReauthRequiredError):
        missing = ", ".join(exc.missing_scopes) or "new scopes"
        where = (f"open {exc.connect_url}" if exc.connect_url
                 else f"re-authorize via {_connect_call(exc.provider_id)}")
        return f"The grant lacks {missing}: ask the user to {where}, then retry."
    if isinstance(exc, ReAuthRequiredError):
        if exc.connect_url:
            return f"Ask the user to re-authorize at {exc.connect_url}, then retry."
        return (f"Call {_connect_call(exc.provider_id)} so the user can re-authorize, "
                "then retry.")
    if isinstance(exc, GrantNotFoundError):
        if exc.connect_url:
            return f"Ask the user to connect the account at {exc.connect_url}, then retry."
        if exc.provider_id:
            return (f"Call {_connect_call(exc.provider_id)} to let the user authorize, "
                    "or call `list_grants` to see the grants you can use.")
        return exc.hint or "Call `list_grants` to see the grants you can use."
    if isinstance(exc, AmbiguousGrantError):
        return "Retry with `account` (or `grant_id`) set to one of the candidates above."
    if isinstance(exc, PolicyViolationError):
        reason = f" ({exc.reason})" if exc.reason else ""
        return (f"Denied by policy rule {exc.rule!r}{reason}. Do not retry the same request; "
                "tell the user what was refused.")
    if isinstance(exc, ProviderNotConfiguredError):
        return ("Tell the user an operator must configure this provider's OAuth client "
                "(see providers://catalog for what is configured).")
    if isinstance(exc, AuthenticationError):
        return "The caller must sign in again (a fresh token) before retrying."
    return exc.hint


def describe(exc: AlterError) -> str:
    """Return the model-facing text of a vault error: what happened, then the next step."""
    if isinstance(exc, RequestSentUnauditedError | SentRequestFailedError):
        # Sent already: the model must not send it again, whatever else went wrong.
        return redact_text(f"[{exc.code}] {exc.message} Do not retry this request: it was "
                           "already sent. Tell the user it was made but its outcome needs "
                           "checking.")
    if isinstance(exc, AuditWriteError):
        return (f"[{exc.code}] The vault could not write its audit log, so it did nothing: "
                "nothing was sent to the provider. Retry later; if it persists, an operator "
                "should run `alter-mcp doctor`.")
    if isinstance(exc, StoreError | CryptoError):
        # Internal failures: the code is enough; details belong in the operator's logs.
        return (f"[{exc.code}] The vault could not complete the action. Retry later; if it "
                "persists, an operator should run `alter-mcp doctor`.")
    parts = [f"[{exc.code}] {exc.message}"]
    step = _next_step(exc)
    if step and step not in exc.message:
        parts.append(step)
    return redact_text(" ".join(parts))


class QuietExpectedErrors(logging.Filter):
    """Drop the traceback fastmcp attaches to an expected refusal (logged below ERROR).

    fastmcp logs every ``ResourceError`` with ``exc_info=True`` at the error's own level, so
    "unknown provider" printed a full stack trace at INFO; the message line is enough.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        """Keep the record; strip its traceback when it is an expected, sub-ERROR refusal."""
        if record.exc_info and record.levelno < logging.ERROR:
            record.exc_info = None
            record.exc_text = None
        return True


def install_log_filters() -> None:
    """Attach :class:`QuietExpectedErrors` to fastmcp's server logger (once)."""
    logger = logging.getLogger("fastmcp.server.server")
    if not any(isinstance(f, QuietExpectedErrors) for f in logger.filters):
        logger.addFilter(QuietExpectedErrors())


def log_level(exc: AlterError) -> int:
    """Return how loudly the server logs ``exc``: ERROR only for what an operator must fix."""
    if isinstance(exc, StoreError | CryptoError | AuditWriteError):
        return logging.ERROR
    if isinstance(exc, PolicyViolationError | AuthenticationError):
        return logging.WARNING
    # Not found, bad input, re-authorization needed: the model is told; nothing to operate.
    return logging.INFO


@contextmanager
def tool_errors() -> Iterator[None]:
    """Raise every vault error inside the block as a ``ToolError`` the model can act on."""
    try:
        yield
    except AlterError as exc:
        raise ToolError(describe(exc), log_level=log_level(exc)) from None


@contextmanager
def resource_errors() -> Iterator[None]:
    """Raise every vault error inside the block as a ``ResourceError``."""
    try:
        yield
    except AlterError as exc:
        raise ResourceError(describe(exc), log_level=log_level(exc)) from None

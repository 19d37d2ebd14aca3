"""The policy file: TOML ``[[rule]]`` tables, validated at start and reloaded on change.

A reload that fails validation keeps the last good rules and logs why the new file was
rejected; evaluation itself (:mod:`alter_mcp.policy.rules`) never touches the file system.
"""

from __future__ import annotations

import logging
import tomllib
from pathlib import Path

from pydantic import ValidationError

from alter_mcp.errors import ConfigurationError
from alter_mcp.policy.index import PolicyIndex
from alter_mcp.policy.rules import RuleSet

__all__ = ["PolicyFile", "load_rules"]

log = logging.getLogger("alter_mcp.policy")
SETTING = "ALTER_MCP_POLICY_FILE"


def _problem(exc: ValidationError) -> str:
    first = exc.errors()[0]
    loc = first["loc"]
    where = ".".join(str(p) for p in loc)
    if len(loc) >= 2 and loc[0] == "rule" and isinstance(loc[1], int):
        where = f"rule #{loc[1] + 1}" + ("." + ".".join(str(p) for p in loc[2:])
                                          if len(loc) > 2 else "")
    return f"{where}: {first['msg']}"


def load_rules(path: Path) -> PolicyIndex:
    """Read and validate a policy file; raise ConfigurationError naming the rule and field."""
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigurationError(f"The policy file {path} does not exist.", setting=SETTING,
                                 hint="Create it or unset ALTER_MCP_POLICY_FILE.") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigurationError(f"The policy file {path} cannot be read ({exc}).",
                                 setting=SETTING, hint="Check its permissions.") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigurationError(f"The policy file {path} is not valid TOML: {exc}.",
                                 setting=SETTING, hint="Fix the syntax at that position.") from None
    try:
        return PolicyIndex(RuleSet.model_validate(data).rule)
    except ValidationError as exc:
        raise ConfigurationError(
            f"The policy file {path} is invalid: {_problem(exc)}.", setting=SETTING,
            hint="Fix that rule; the README's policy section lists every field.",
        ) from None


class PolicyFile:
    """The rules of one policy file, reloaded when its modification time changes."""

    def __init__(self, path: Path) -> None:
        self._path = path
        self._rules = load_rules(path)
        self._stamp = self._mtime()
        self.last_error: str | None = None

    def _mtime(self) -> float | None:
        try:
            return self._path.stat().st_mtime_ns / 1e9
        except OSError:
            return None

    @property
    def path(self) -> Path:
        """Return the policy file's path."""
        return self._path

    def rules(self) -> PolicyIndex:
        """Return the current rules (indexed by target), reloading first if the file changed."""
        stamp = self._mtime()
        if stamp != self._stamp:
            self._stamp = stamp
            try:
                self._rules = load_rules(self._path)
                self.last_error = None
                log.info("policy reloaded from %s: %d rules", self._path, len(self._rules))
            except ConfigurationError as exc:
                self.last_error = exc.message
                log.error("policy file rejected, keeping the last good rules: %s", exc.message)
        return self._rules

"""One public vault action under way, and the audit event it owes whatever happens.

Every public action of ``AlterVault`` runs through :meth:`VaultBase._action`: identify the
caller, run the action's body with an :class:`Action`, then audit the outcome. A body that
fails is audited as denied (a typed error) or as an error (anything else), with the facts it
had gathered; a body that succeeds is audited from its facts, unless it sealed its event into
its own transaction (:meth:`Action.sealer`) or a callee wrote it. So "every action, allowed or
denied, is audited" holds by structure, and ``tests/test_vault_every_action_audited.py`` walks
every public method to prove it.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from alter_mcp.audit import INTENT_SEQ, AuditEntry, AuditLog
from alter_mcp.models import Identity, Outcome
from alter_mcp.redaction import Secret
from alter_mcp.store.base import AuditSealer

__all__ = ["Action"]


class Action:
    """The caller, the action's name, and the facts its audit event will carry."""

    __slots__ = ("_audit", "_done", "facts", "identity", "name", "outcome", "secrets")

    def __init__(self, audit: AuditLog, name: str, identity: Identity,
                 facts: dict[str, Any]) -> None:
        self._audit = audit
        self._done = False
        self.name = name
        self.identity = identity
        self.facts = facts
        self.outcome = Outcome.ALLOWED
        self.secrets: list[str | Secret] = []

    @property
    def audited(self) -> bool:
        """Return True once the success event is written by the body (or a callee)."""
        return self._done

    def note(self, **facts: Any) -> None:
        """Add facts (grant_id, provider_id, detail, ...) to the action's event."""
        self.facts.update(facts)

    def redact(self, values: Iterable[str | Secret]) -> None:
        """Keep these values out of the action's event, whatever field they appear in."""
        self.secrets.extend(values)

    def link(self, intent_seq: int | None) -> None:
        """Make the action's event the outcome of the intent event ``intent_seq``."""
        if intent_seq is not None:
            self.facts["detail"] = {**self.facts.get("detail", {}), INTENT_SEQ: intent_seq}

    def entry(self) -> AuditEntry:
        """Return the event of the action as it succeeded."""
        return AuditEntry(self.name, self.outcome, identity=self.identity, **self.facts)

    def sealer(self) -> AuditSealer:
        """Return the success event's sealer, to be written in the action's own transaction."""
        self._done = True
        return self._audit.sealer(self.entry(), self.secrets)

    def audited_by_callee(self) -> None:
        """Say that the callee that did the work wrote the success event itself."""
        self._done = True

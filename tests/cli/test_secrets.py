"""``alter-mcp secrets``: store a managed secret without echoing it, list it, grant it."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

from tests.cli.conftest import as_json, run

KEY = "sk-managed-secret-0123456789abcdef"


def test_secrets_add_list_grant_to_each_kind_of_principal(env: dict[str, str],
                                                           tmp_path: Path) -> None:
    """A secret read from env or stdin is stored sealed; grants go to a user, group, system."""
    added = as_json(run(["secrets", "add", "openai", "--label", "prod", "--field-env",
                         "api_key=OPENAI_KEY", "--json"], {**env, "OPENAI_KEY": KEY}))
    assert added["provider_id"] == "openai" and added["field_names"] == ["api_key"]
    piped = run(["secrets", "add", "anthropic", "--label", "ci", "--field-stdin", "api_key"],
                env, stdin=KEY)
    assert piped.returncode == 0 and "encrypted" in piped.stderr
    listed = as_json(run(["secrets", "list", "--json"], env))
    assert {s["label"] for s in listed} == {"prod", "ci"}
    secret_id = added["secret_id"]
    user = as_json(run(["secrets", "grant", secret_id, "--user", "https://idp.example#alice",
                        "--label", "alice-openai", "--json"], env))
    assert user["owner"] == "user:https://idp.example#alice" and user["principal_type"] == "user"
    group = as_json(run(["secrets", "grant", secret_id, "--group", "https://idp.example#eng",
                         "--label", "eng", "--json"], env))
    assert group["owner"] == "group:https://idp.example#eng"
    system = run(["secrets", "grant", secret_id, "--system"], env)
    assert system.returncode == 0 and len(system.stdout.strip()) == 36
    alice = as_json(run(["grants", "list", "--user", "https://idp.example#alice", "--json"],
                        env))["grants"]
    assert [g["label"] for g in alice] == ["alice-openai"]
    with sqlite3.connect(tmp_path / "data" / "vault.db") as conn:
        audit = " ".join(row[0] for row in conn.execute("SELECT data FROM audit_events"))
    assert audit.count('"secret.create"') == 2 and audit.count('"secret.grant"') == 3
    everything = json.dumps([added, listed, user, group]) + piped.stdout + system.stdout
    assert KEY not in everything + audit

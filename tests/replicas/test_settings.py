"""The replica settings: ``ALTER_MCP_STATELESS_HTTP``, and the startup warnings naming what a
replica on a shared database must share with the others."""

from __future__ import annotations

from pathlib import Path

from alter_mcp.config import load_settings
from alter_mcp.server.run import replica_warnings

PG = "postgresql://alter@127.0.0.1:5432/alter"


def test_stateless_http_is_read_from_the_environment(tmp_path: Path) -> None:
    """ALTER_MCP_STATELESS_HTTP=true turns stateless HTTP on; it is off by default."""
    env = {"ALTER_MCP_DATA_DIR": str(tmp_path)}
    assert load_settings(env).stateless_http is False
    assert load_settings({**env, "ALTER_MCP_STATELESS_HTTP": "true"}).stateless_http is True


def test_replica_warnings_name_what_replicas_must_share(tmp_path: Path) -> None:
    """On PostgreSQL, a stateful server or a missing request-state key is warned about."""
    env = {"ALTER_MCP_DATA_DIR": str(tmp_path)}
    warned = replica_warnings(load_settings(env, database_url=PG))
    assert [w.split(" ", 1)[0] for w in warned] == ["ALTER_MCP_STATELESS_HTTP",
                                                    "ALTER_MCP_REQUEST_STATE_KEY"]
    ready = load_settings(env, database_url=PG, stateless_http=True,
                          request_state_key="k" * 32)
    assert replica_warnings(ready) == []
    assert replica_warnings(load_settings(env)) == []  # SQLite: one process

"""``alter-mcp demo``: the whole loop, offline and headless, as a new user runs it."""

from __future__ import annotations

import json
from pathlib import Path

from tests.cli.conftest import as_json, run

STEPS = ["Connect", "Authenticated request", "List grants", "Revoke", "Audit"]


def test_demo_runs_green_on_a_fresh_home_and_leaves_nothing(tmp_path: Path) -> None:
    """demo walks connect → request → list → revoke → audit and touches no real vault."""
    home = tmp_path / "home"
    home.mkdir()
    result = run(["demo"], {"HOME": str(home), "XDG_DATA_HOME": str(home / ".local/share")})
    assert result.returncode == 0, result.stdout + result.stderr
    text = " ".join(result.stdout.split())
    positions = [text.index(f"{n}. {step}") for n, step in enumerate(STEPS, start=1)]
    assert positions == sorted(positions)
    for phrase in ("plays it with an HTTP client", "“Sandbox connected”", "HTTP 200: 3 items",
                   "no token appears", "provider revocation: revoked",
                   "the next request is refused", "chain intact", "Done in"):
        assert phrase in text, phrase
    assert list(home.rglob("*")) == [], "the demo wrote outside its temporary directory"


def test_demo_json_summary_and_kept_vault(tmp_path: Path) -> None:
    """demo --json reports every step ok; with --data-dir its audit log stays and verifies."""
    data = tmp_path / "kept"
    summary = as_json(run(["demo", "--json", "--data-dir", str(data)], {}))
    assert summary["ok"] is True and [s["step"] for s in summary["steps"]] == STEPS
    assert all(step["ok"] for step in summary["steps"])
    assert summary["sandbox"]["token"] == {"authorization_code": 1}
    assert summary["sandbox"]["api_calls"] == 1 and summary["sandbox"]["revoked"] >= 1
    verified = as_json(run(["audit", "verify", "--json"], {"ALTER_MCP_DATA_DIR": str(data)}))
    assert verified["ok"] and verified["checked"] == summary["steps"][-1]["events"]
    assert json.dumps(summary).count("sbx_at_") == 0

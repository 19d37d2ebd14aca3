"""alter-mcp: an MCP server whose embedded vault calls APIs for agents without showing them a credential."""

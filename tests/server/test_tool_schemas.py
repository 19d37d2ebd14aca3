"""Every tool parameter has a type in its JSON schema, so strict schema converters accept it."""

from __future__ import annotations

from typing import Any

import pytest

from alter_mcp.vault import AlterVault
from tests.server.conftest import ERAS, era_client, server_for

#: The JSON Schema type names a strict converter (OpenAI, Gemini, …) knows.
JSON_TYPES = {"object", "array", "string", "number", "integer", "boolean", "null"}


def untyped(schema: dict[str, Any], where: str) -> list[str]:
    """Return the paths under ``schema`` that carry no ``type`` (directly or in every branch)."""
    if "anyOf" in schema:
        return [p for i, branch in enumerate(schema["anyOf"])
                for p in untyped(branch, f"{where}.anyOf[{i}]")]
    if schema.get("type") not in JSON_TYPES:
        return [where]
    found = []
    for name, sub in schema.get("properties", {}).items():
        found += untyped(sub, f"{where}.{name}")
    if isinstance(schema.get("items"), dict):
        found += untyped(schema["items"], f"{where}[]")
    if isinstance(schema.get("additionalProperties"), dict):
        found += untyped(schema["additionalProperties"], f"{where}{{}}")
    return found


@pytest.mark.parametrize("era", ERAS)
async def test_tool_schemas_type_every_parameter(svault: AlterVault, era: str) -> None:
    """Every parameter of every tool, nested ones included, has a JSON type and a description."""
    async with era_client(server_for(svault), era) as client:
        tools = await client.list_tools()
    assert {"connect", "list_grants", "revoke_grant", "authenticated_request"} <= {
        t.name for t in tools}
    missing: list[str] = []
    for tool in tools:
        schema = tool.input_schema
        assert schema["type"] == "object" and "$ref" not in str(schema), tool.name
        for name, prop in schema["properties"].items():
            missing += untyped(prop, f"{tool.name}.{name}")
            if not prop.get("description"):
                missing.append(f"{tool.name}.{name} (no description)")
    assert missing == []


async def test_tool_schemas_json_body_is_any_json_value(svault: AlterVault) -> None:
    """``authenticated_request.json`` is the union object|array|string|number|boolean|null."""
    async with era_client(server_for(svault), "legacy") as client:
        tools = {t.name: t for t in await client.list_tools()}
    prop = tools["authenticated_request"].input_schema["properties"]["json"]
    assert sorted(branch["type"] for branch in prop["anyOf"]) == [
        "array", "boolean", "null", "number", "object", "string"]

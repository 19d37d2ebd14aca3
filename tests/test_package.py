"""The package's shape: public names, lazy imports, and layers that import only downward."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import alter_mcp

PACKAGE = Path(alter_mcp.__file__).parent

#: Each module's layer: a module may import only modules of its own or a lower layer.
LAYERS = {
    "server": 5,
    "cli": 5,
    "doctor": 5,
    "testing": 5,
    "vault": 4,
    "oauth": 3,
    "proxy": 3,
    "identity": 3,
    "policy": 3,
    "audit": 3,
    "audit_export": 3,
    "audit_head": 3,
    "audit_retention": 3,
    "outbound": 3,
    "managed": 3,
    "apikeys": 3,
    "jwt": 3,
    "tokens": 3,
    "login": 3,
    "store": 2,
    "crypto": 2,
    "config": 1,
    "errors": 1,
    "exceptions": 1,
    "models": 1,
    "providers": 1,
    "redaction": 1,
}


def _layer(module: str) -> int | None:
    parts = module.split(".")
    if parts[0] != "alter_mcp" or len(parts) < 2:
        return None
    return LAYERS.get(parts[1])


def test_package_all_is_sorted_and_resolves() -> None:
    """Every name in __all__ is sorted and resolves to an object."""
    assert alter_mcp.__all__ == sorted(alter_mcp.__all__)
    for name in alter_mcp.__all__:
        assert getattr(alter_mcp, name) is not None


def test_package_import_is_lazy() -> None:
    """Importing alter_mcp imports neither the vault, the store nor fastmcp."""
    code = (
        "import sys, alter_mcp; "
        "print(any(m in sys.modules for m in "
        "('alter_mcp.vault', 'alter_mcp.store', 'fastmcp', 'aiosqlite')))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_package_layers_import_only_downward() -> None:
    """No module imports a module of a higher layer (ARCHITECTURE.md)."""
    violations = []
    for path in PACKAGE.rglob("*.py"):
        rel = path.relative_to(PACKAGE.parent).with_suffix("")
        module = ".".join(rel.parts).removesuffix(".__init__")
        own = _layer(module)
        if own is None:
            continue
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            targets: list[str] = []
            if isinstance(node, ast.ImportFrom) and node.module:
                targets = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
            elif isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            for target in targets:
                layer = _layer(target)
                if layer is not None and layer > own:
                    violations.append(f"{module} (layer {own}) imports {target} (layer {layer})")
    assert violations == []


def test_package_every_module_has_a_known_layer() -> None:
    """Every top-level module of the package is placed in a layer."""
    names = {p.stem if p.is_file() else p.name for p in PACKAGE.iterdir()
             if (p.suffix == ".py" or (p.is_dir() and (p / "__init__.py").exists()))}
    names -= {"__init__"}
    assert names - set(LAYERS) == set()

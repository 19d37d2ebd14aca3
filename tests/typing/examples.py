"""Every Python example of the README and of ``alter_mcp.testing``'s docstring, as programs.

An example is rendered as written, after a prelude that defines the few names the examples
leave to the reader's application (``get_current_user_jwt``, ``current_user_jwt``,
``grant_id``, ``tmp_path``), read from the environment. An example with top-level ``await``
runs inside ``async def _example()``; one with its own ``asyncio.run`` runs as is.
"""

from __future__ import annotations

import re
import textwrap
from dataclasses import dataclass
from pathlib import Path

import alter_mcp.testing

ROOT = Path(__file__).resolve().parents[2]

PRELUDE = '''\
# The names the examples leave to your application, here read from the environment.
import asyncio
import os
from pathlib import Path


def get_current_user_jwt() -> str:
    """Return the signed-in user's JWT (in an app: from the request's session)."""
    return os.environ["EXAMPLE_USER_JWT"]


current_user_jwt = os.environ.get("EXAMPLE_USER_JWT", "")
grant_id = os.environ.get("EXAMPLE_GRANT_ID", "")
tmp_path = Path(os.environ.get("EXAMPLE_TMP_PATH", "."))

'''

_FENCE = re.compile(r"^(?P<indent> *)```python\n(?P<body>.*?)^(?P=indent)```", re.M | re.S)


@dataclass(frozen=True)
class Example:
    """One example: where it is written and its code as written."""

    name: str
    where: str
    source: str

    def program(self) -> str:
        """Return the example as a runnable, type-checkable program."""
        if "asyncio.run(" in self.source:
            return PRELUDE + self.source
        body = textwrap.indent(self.source, "    ")
        return f"{PRELUDE}\nasync def _example() -> None:\n{body}\n\nasyncio.run(_example())\n"


def examples() -> list[Example]:
    """Return the README's Python examples, then the one in ``alter_mcp.testing``."""
    readme = (ROOT / "README.md").read_text()
    found = []
    for number, match in enumerate(_FENCE.finditer(readme), start=1):
        line = readme.count("\n", 0, match.start()) + 1
        source = textwrap.dedent(match.group("body"))
        found.append(Example(f"readme_{number}", f"README.md:{line}", source))
    doc = alter_mcp.testing.__doc__ or ""
    block = doc.split("::\n", 1)[1]
    found.append(Example("testing_doc", "alter_mcp/testing/__init__.py",
                         textwrap.dedent(block).strip("\n") + "\n"))
    return found


def write_programs(directory: Path) -> dict[str, Path]:
    """Write each example as ``<name>.py`` under ``directory``; return them by name."""
    directory.mkdir(parents=True, exist_ok=True)
    paths = {}
    for example in examples():
        path = directory / f"{example.name}.py"
        path.write_text(example.program())
        paths[example.name] = path
    return paths

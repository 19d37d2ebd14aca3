"""The README's Python examples and ``alter_mcp.testing``'s docstring: type-checked, and run.

They run against the sandbox playing Google on loopback and the oauth2-mock-server identity
provider, each as its own program (``python example.py``) with the settings in the
environment, as a reader would run them; the only change is the URL's origin
(``https://www.googleapis.com`` becomes the sandbox's), since no test may reach the internet.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import anyio
import pytest

from alter_mcp import AlterVault
from tests.seeds.conftest import Seed, connect_as
from tests.typing.examples import ROOT, Example, examples, write_programs

GOOGLE = "https://www.googleapis.com"
BROWSER = ROOT / "tests" / "seeds" / "browser.py"
STRIPE_KEY = "sk_live_readme_0123456789abcdef"


def test_examples_found_in_the_readme_and_the_testing_module() -> None:
    """Every ```python block of the README is found, plus the testing module's example."""
    readme = (ROOT / "README.md").read_text()
    found = examples()
    assert len(found) == readme.count("```python") + 1
    assert all(e.source.strip() for e in found)


@pytest.mark.slow
def test_examples_type_check_strict(tmp_path: Path) -> None:
    """mypy --strict (the project's configuration) accepts every example as written."""
    paths = write_programs(tmp_path / "examples")
    done = subprocess.run([sys.executable, "-m", "mypy", "--strict", *map(str, paths.values())],
                          cwd=ROOT, capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"no issues found in {len(paths)} source files" in done.stdout


@pytest.mark.parametrize("example", examples(), ids=lambda e: e.name)
async def test_examples_run(example: Example, seed: Seed, tmp_path: Path) -> None:
    """Each example exits 0 with no traceback, printing when it prints, and leaks no secret."""
    # What the reader's deployment already has: Alice connected Google, and a system grant.
    await connect_as(seed, "alice")
    system = AlterVault()
    [system_grant] = await system.connect(["google"], open_browser=seed.sandbox.approve)
    await system.close()
    program = tmp_path / f"{example.name}.py"
    program.write_text(example.program().replace(GOOGLE, seed.sandbox.issuer))
    env = {**os.environ, "BROWSER": f"{sys.executable} {BROWSER} %s",
           "EXAMPLE_USER_JWT": seed.jwt("alice"), "EXAMPLE_GRANT_ID": system_grant.grant_id,
           "EXAMPLE_TMP_PATH": str(tmp_path / "example"), "STRIPE_SECRET_KEY": STRIPE_KEY}
    done = await anyio.run_process([sys.executable, str(program)], env=env, check=False,
                                   cwd=tmp_path)
    out, err = done.stdout.decode(), done.stderr.decode()
    assert done.returncode == 0, f"{example.where}:\n{err[-3000:]}"
    assert "Traceback" not in err and STRIPE_KEY not in out + err
    assert bool(out.strip()) == ("print(" in example.source)
    assert seed.jwt("alice") not in out + err

"""``alter-mcp doctor``'s storage checks: a nearly full disk, a damaged SQLite file and an
unreachable PostgreSQL server each get one failing verdict with its fix.

Real conditions where this machine allows: a 2 MiB tmpfs as the data directory (as root), a
copy of a real vault.db with a B-tree page overwritten, a PostgreSQL cluster that is stopped.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import sqlite3
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from alter_mcp.doctor import MIN_FREE_BYTES, Check, run_checks
from tests.peers.postgres import find_bindir, temporary_cluster


@pytest.fixture
def doctor_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    """The process environment with no ALTER_MCP_* setting but those a test sets."""
    for name in [n for n in os.environ if n.startswith("ALTER_MCP_")]:
        monkeypatch.delenv(name)
    return monkeypatch


async def _checks(env: pytest.MonkeyPatch, **values: str | Path) -> dict[str, Check]:
    for name, value in values.items():
        env.setenv(f"ALTER_MCP_{name.upper()}", str(value))
    checks = await run_checks()
    names = [check.name for check in checks]
    assert len(names) == len(set(names)), f"one verdict per check: {names}"
    return dict(zip(names, checks, strict=True))


@contextlib.contextmanager
def tiny_filesystem(where: Path) -> Iterator[bool]:
    """Mount a 2 MiB tmpfs at ``where``; yield False (nothing mounted) when not permitted."""
    where.mkdir()
    if os.geteuid() != 0 or shutil.which("mount") is None:
        yield False
        return
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m,mode=0700", "tmpfs",
                              str(where)], capture_output=True, check=False).returncode == 0
    try:
        yield mounted
    finally:
        if mounted:
            subprocess.run(["umount", str(where)], check=True)


async def test_doctor_full_disk_is_reported_with_its_fix(doctor_env: pytest.MonkeyPatch,
                                                         tmp_path: Path) -> None:
    """A data directory on a filesystem with under MIN_FREE_BYTES free fails 'disk space' with
    the fix, while the other checks still give their own verdicts."""
    roomy = await _checks(doctor_env, data_dir=tmp_path / "roomy")
    assert roomy["disk space"].ok, roomy["disk space"]
    with tiny_filesystem(tmp_path / "small") as mounted:
        if mounted:
            checks = await _checks(doctor_env, data_dir=tmp_path / "small")
        else:  # not root: the statvfs seam reports what a 2 MiB filesystem would
            real = os.statvfs(tmp_path)
            tiny = os.statvfs_result((4096, 4096, 512, 500, 500, 0, 0, 0, 0, real.f_namemax))
            doctor_env.setenv("ALTER_MCP_DATA_DIR", str(tmp_path / "small"))
            checks = {c.name: c for c in await run_checks(statvfs=lambda _: tiny)}
    disk = checks["disk space"]
    assert not disk.ok
    assert "MiB free" in disk.detail and str(tmp_path / "small") in disk.detail
    assert f"{MIN_FREE_BYTES / 2**20:,.1f} MiB" in disk.detail
    assert disk.fix is not None and "ALTER_MCP_DATA_DIR" in disk.fix
    assert checks["database"].ok and checks["encryption key"].ok


def _overwrite_page_of(database: Path, table: str) -> int:
    """Break ``table``'s root B-tree page on disk (its cell count); return the page number."""
    with contextlib.closing(sqlite3.connect(database)) as conn:
        page: int = conn.execute("SELECT rootpage FROM sqlite_master WHERE name = ?",
                                 (table,)).fetchone()[0]
        size: int = conn.execute("PRAGMA page_size").fetchone()[0]
    with database.open("r+b") as file:
        file.seek((page - 1) * size + 3)  # the page header's two-byte number of cells
        file.write(b"\x00\x09")
    return page


async def test_doctor_quick_check_reports_a_corrupted_copy(doctor_env: pytest.MonkeyPatch,
                                                           tmp_path: Path) -> None:
    """A copy of a real vault.db with a page overwritten fails 'database integrity' (quick_check)
    with the restore fix; the intact original passes."""
    intact = await _checks(doctor_env, data_dir=tmp_path / "data")
    assert intact["database integrity"].ok, intact["database integrity"]
    damaged_dir = tmp_path / "damaged"
    shutil.copytree(tmp_path / "data", damaged_dir)
    assert not list(damaged_dir.glob("vault.db-*")), "the copy is one self-contained file"
    page = _overwrite_page_of(damaged_dir / "vault.db", "grants")
    checks = await _checks(doctor_env, data_dir=damaged_dir)
    integrity = checks["database integrity"]
    assert not integrity.ok
    assert "quick_check found" in integrity.detail and f"page {page}" in integrity.detail
    assert integrity.fix is not None and "backup" in integrity.fix
    again = await _checks(doctor_env, data_dir=tmp_path / "data")
    assert again["database integrity"].ok


async def test_doctor_unreachable_postgres_is_reported_with_its_fix(
        doctor_env: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """A PostgreSQL URL whose server has stopped fails 'database' with the fix, and the
    checks after it still run."""
    if find_bindir() is None:
        pytest.skip("PostgreSQL is not installed (scripts/install-system installs it)")
    with temporary_cluster() as cluster:
        url = cluster.create_database("doctor")
        up = await _checks(doctor_env, data_dir=tmp_path / "data", database_url=url)
        assert up["database"].ok and "postgresql schema" in up["database"].detail
        cluster.stop()
        down = await _checks(doctor_env, data_dir=tmp_path / "data", database_url=url)
    database = down["database"]
    assert not database.ok
    assert "Cannot open the PostgreSQL database" in database.detail
    assert database.fix is not None and "reachable" in database.fix
    assert "database integrity" not in down  # quick_check is SQLite's
    assert down["provider catalogue"].ok and down["disk space"].ok

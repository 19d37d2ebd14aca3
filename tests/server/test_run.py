"""Running the server: warmed and tuned at startup (imports, garbage collector)."""

from __future__ import annotations

import gc
import subprocess
import sys
import textwrap
import weakref

from alter_mcp.server.run import GC_THRESHOLDS, tune_gc_for_serving


class _Node:
    """A reference cycle's member: only the cyclic collector can free it."""

    def __init__(self) -> None:
        self.other: _Node | None = None


def _cycle() -> weakref.ref[_Node]:
    first, second = _Node(), _Node()
    first.other, second.other = second, first
    return weakref.ref(first)


def test_run_tune_gc_for_serving_freezes_startup_and_still_collects_later_cycles() -> None:
    """Objects alive at startup leave the collector's scans; a cycle made later is freed."""
    alive_at_startup = _Node()
    thresholds = gc.get_threshold()
    try:
        tune_gc_for_serving()
        assert gc.get_freeze_count() > 0
        assert gc.get_threshold() == GC_THRESHOLDS
        assert not any(o is alive_at_startup for o in gc.get_objects())  # frozen: not scanned
        later = _cycle()
        assert later() is not None
        gc.collect()
        assert later() is None
    finally:
        gc.unfreeze()
        gc.set_threshold(*thresholds)
    assert gc.get_freeze_count() == 0


def test_run_preload_lazy_imports_loads_what_the_first_call_would() -> None:
    """In a fresh interpreter, the modules FastMCP loads on a first call are loaded at startup."""
    script = textwrap.dedent("""
        import sys
        from alter_mcp.server.run import LAZY_IMPORTS, preload_lazy_imports
        before = [name for name in LAZY_IMPORTS if name in sys.modules]
        preload_lazy_imports()
        print(before, [name for name in LAZY_IMPORTS if name not in sys.modules])
    """)
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                         check=True, timeout=60)
    assert out.stdout.strip() == "[] []"

"""Running the server: the garbage collector is tuned for serving, and still collects."""

from __future__ import annotations

import gc
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

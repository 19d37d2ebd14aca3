"""Answer benchmark: what scrubbing the raw bytes and the cut edges costs per answer.

    python bench/answers.py [--rounds 7]

For answers of several sizes (a small JSON body, a 4 KB JSON echo, 256 KB and 1 MB of text,
and the 1 MB body cut to 64 KB), it times in one run, interleaved round by round:

- baseline: ``build_result`` of a base commit (default 99f915b, before this change), loaded
  from git into this process: body cut first, decoded, scrubbed as text only;
- new: ``build_result`` as the Sender now calls it (forms worked out per answer, bytes
  scrubbed, cut, edges trimmed, decoded, scrubbed again, surrogates replaced).

It prints each one's median per call, the new/baseline ratio (median over rounds) and its
spread (min-max over rounds).
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
import types
from collections.abc import Callable
from pathlib import Path
from typing import Any

from alter_mcp.proxy.inject import secret_forms
from alter_mcp.proxy.result import build_result
from alter_mcp.proxy.scrub import answer_forms

KEY = "q8/Jd+Zx0W3nK=pL7/vR+tY2mB9sH4cF6gA1eU5i"
SECRETS = secret_forms([KEY, f"Bearer {KEY}"])


def _text(size: int) -> bytes:
    line = b"The quick brown fox jumps over the lazy dog, 0123456789.\n"
    return (line * (size // len(line) + 1))[:size]


def _echo(size: int) -> bytes:
    """Return a JSON echo of about ``size`` bytes holding the key once."""
    return json.dumps({"headers": {"X-Api-Key": KEY, "Accept": "*/*"},
                       "data": _text(max(0, size - 200)).decode()}).encode()


CASES: tuple[tuple[str, bytes, str, int | None], ...] = (
    ("small JSON (26 B)", b'{"ok": true, "auth": true}', "application/json", None),
    ("JSON echo (4 KB)", _echo(4096), "application/json", None),
    ("text (256 KB)", _text(256 * 1024), "text/plain", None),
    ("text (1 MB)", _text(1024 * 1024), "text/plain", None),
    ("text 1 MB cut to 64 KB", _text(1024 * 1024), "text/plain; charset=utf-8", 64 * 1024),
)


def _old_build_result(ref: str) -> Callable[..., Any]:
    """Return build_result as it was at git ``ref`` (its imports still resolve here)."""
    root = Path(__file__).resolve().parent.parent
    source = subprocess.run(["git", "show", f"{ref}:alter_mcp/proxy/result.py"], cwd=root,
                            capture_output=True, text=True, check=True).stdout
    module = types.ModuleType("baseline_result")
    sys.modules[module.__name__] = module  # dataclasses look their module up there
    exec(compile(source, f"{ref}:result.py", "exec"), module.__dict__)
    found: Callable[..., Any] = module.build_result
    return found


OLD_BUILD: Callable[..., Any] = build_result


def _baseline(data: bytes, content_type: str, cap: int | None) -> object:
    data, truncated = (data[:cap], True) if cap is not None and len(data) > cap else (data,
                                                                                     False)
    return OLD_BUILD(status=200, method="GET", url="https://api.example.com/x",
                     raw_headers=[("content-type", content_type)], data=data,
                     truncated=truncated, secrets=SECRETS)


def _new(data: bytes, content_type: str, cap: int | None) -> object:
    forms = answer_forms(SECRETS, content_type)
    read = data[:cap + forms.margin] if cap is not None else data
    return build_result(status=200, method="GET", url="https://api.example.com/x",
                        raw_headers=[("content-type", content_type)], data=read,
                        truncated=len(read) < len(data), secrets=SECRETS, max_bytes=cap,
                        forms=forms)


def _per_call(fn: Callable[[bytes, str, int | None], object],
              case: tuple[str, bytes, str, int | None], budget: float) -> float:
    """Return seconds per call of ``fn`` on ``case``, run for about ``budget`` seconds."""
    _, data, content_type, cap = case
    calls, started = 0, time.perf_counter()
    while True:
        fn(data, content_type, cap)
        calls += 1
        elapsed = time.perf_counter() - started
        if elapsed >= budget:
            return elapsed / calls


def main() -> None:
    """Run every case, interleaved baseline/new per round, and print the table."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--budget", type=float, default=0.2, help="seconds per measurement")
    parser.add_argument("--baseline-ref", default="99f915b")
    args = parser.parse_args()
    global OLD_BUILD
    OLD_BUILD = _old_build_result(args.baseline_ref)
    print(f"{'answer':<26}{'baseline':>12}{'new':>12}{'ratio':>8}  spread")
    for case in CASES:
        name = case[0]
        old_times: list[float] = []
        new_times: list[float] = []
        for _ in range(args.rounds):
            old_times.append(_per_call(_baseline, case, args.budget))
            new_times.append(_per_call(_new, case, args.budget))
        ratios = [n / o for n, o in zip(new_times, old_times, strict=True)]
        print(f"{name:<26}{statistics.median(old_times) * 1e6:>10.1f}us"
              f"{statistics.median(new_times) * 1e6:>10.1f}us"
              f"{statistics.median(ratios):>7.2f}x  {min(ratios):.2f}-{max(ratios):.2f}")


if __name__ == "__main__":
    main()

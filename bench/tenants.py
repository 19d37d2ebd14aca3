"""Guard benchmark: what per-grant (templated) API hosts cost on the request path.

    python bench/tenants.py [--calls 20000] [--rounds 7]

Times ``prepare`` + ``inject`` (the destination guard and the credential injection, no
network) for three shipped providers in the same run, interleaved round by round:

- ``openai``: one static host (the baseline);
- ``shopify-admin``: a host template rendered from the grant's ``shop``;
- ``salesforce``: a whole-host value plus a static host.

Prints the median and spread (min..max over rounds) of microseconds per call, and each
provider's median ratio to the baseline.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from alter_mcp.providers import load_catalog
from alter_mcp.proxy.guard import prepare
from alter_mcp.proxy.inject import inject
from alter_mcp.redaction import Secret

CASES: dict[str, tuple[str, dict[str, str], dict[str, Secret]]] = {
    "openai": ("https://api.openai.com/v1/models", {},
               {"api_key": Secret("sk-bench-0123456789abcdef")}),
    "shopify-admin": ("https://acme.myshopify.com/admin/api/2025-01/shop.json",
                      {"shop": "acme"}, {"access_token": Secret("shpat_bench_0123456789")}),
    "salesforce": ("https://acme.my.salesforce.com/services/data/v62.0/limits",
                   {"instance": "acme.my.salesforce.com"},
                   {"access_token": Secret("00Dbench0123456789")}),
}


def runner(provider_id: str) -> Callable[[], None]:
    """Return one guarded, injected request for the provider's grant."""
    provider = load_catalog().get(provider_id)
    url, connection, credential = CASES[provider_id]

    def once() -> None:
        prepared = prepare(provider, "GET", url, query_params={"limit": 5},
                           headers={"Accept": "application/json"}, connection=connection)
        inject(prepared, provider, credential)

    return once


def main() -> None:
    """Run the benchmark and print the table."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=20000)
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args()
    runs = {pid: runner(pid) for pid in CASES}
    samples: dict[str, list[float]] = {pid: [] for pid in CASES}
    for run in runs.values():
        for _ in range(500):  # warm caches and the regex compiler
            run()
    order = list(runs)
    for _ in range(args.rounds):
        order = order[1:] + order[:1]  # rotate, so no provider always runs first
        for pid in order:
            run = runs[pid]
            started = time.perf_counter()
            for _ in range(args.calls):
                run()
            samples[pid].append((time.perf_counter() - started) / args.calls * 1e6)
    base = statistics.median(samples["openai"])
    print(f"{'provider':<15}{'median µs':>11}{'spread µs':>18}{'ratio':>8}")
    for pid, values in samples.items():
        median = statistics.median(values)
        spread = f"{min(values):.1f}..{max(values):.1f}"
        print(f"{pid:<15}{median:>11.1f}{spread:>18}{median / base:>8.2f}")


if __name__ == "__main__":
    main()

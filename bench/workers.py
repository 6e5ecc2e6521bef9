"""`gateway serve --workers 1` against `--workers 2` on the provider stand-in: throughput at 16 connections (not a
test; figures go to docs/benchmarks.md as measured, with the machine's state).

Both gateways are full (OpenBao, SQLite store, Redis rate limits, the whole pre-flight) and run side by side; rounds
alternate 1, 2, 1, 2, … so that a change in the machine's load hits both. wrk runs one thread.

    .venv/bin/python bench/workers.py --rounds 3 --seconds 10 [--redis redis://127.0.0.1:6379/0]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import statistics
import subprocess
import tempfile
from pathlib import Path

from stack import children, start_gateway, start_standin

from gateway.devstack.postgres import fresh_database

HERE = Path(__file__).resolve().parent


def wrk(url: str, key: str, connections: int, seconds: int, *, warmup: bool = False) -> dict[str, float]:
    out = subprocess.run(["wrk", "-t1", f"-c{connections}", f"-d{seconds}s", "--timeout", "10s",
                          "-s", str(HERE / "wrk" / "chat.lua"), url + "/v1/chat/completions"],
                         env={**os.environ, "BENCH_KEY": key}, capture_output=True, text=True, check=True).stdout
    match = re.search(r"^RESULT (\d+) (\d+) (\d+) (\d+) (\d+) (\d+)$", out, re.MULTILINE)
    if match is None:
        raise RuntimeError(f"wrk printed no result:\n{out}")
    requests, duration_us, p50, p99, non2xx, socket_errors = map(int, match.groups())
    if not warmup and (non2xx or socket_errors or not requests):
        raise RuntimeError(f"{url}: {non2xx} non-2xx answers, {socket_errors} socket errors of {requests}")
    return {"rps": requests / (duration_us / 1e6), "p50_ms": p50 / 1000, "p99_ms": p99 / 1000}


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--redis", default="redis://127.0.0.1:6379/0")
    parser.add_argument("--json", type=Path)
    parser.add_argument("--postgres", action="store_true",
                        help="Each gateway on a fresh database of the machine's Postgres instead of SQLite.")
    parser.add_argument("--work", type=Path, help="Keep the gateways' files (logs) here instead of a temporary folder.")
    args = parser.parse_args()
    load_before = os.getloadavg()
    results: dict[str, list[dict[str, float]]] = {"1": [], "2": []}
    with tempfile.TemporaryDirectory() as scratch, contextlib.ExitStack() as stores, children() as kids:
        folder = args.work or Path(scratch)
        standin = start_standin(kids)
        gateways = {}
        for workers in results:
            work = folder / f"w{workers}"
            work.mkdir(parents=True)
            url = stores.enter_context(fresh_database("gw_bench_")) if args.postgres else None
            gateways[workers] = start_gateway(work, standin, kids, extra_env={"GATEWAY_REDIS_URL": args.redis},
                                              serve_args=("--workers", workers), database_url=url)
        for gateway in gateways.values():
            wrk(gateway.url, gateway.key, args.connections, 5, warmup=True)
        for _ in range(args.rounds):
            for workers, gateway in gateways.items():
                results[workers].append(wrk(gateway.url, gateway.key, args.connections, args.seconds))
                print(f"workers={workers}: {results[workers][-1]}", flush=True)
    summary = {
        "store": "postgres" if args.postgres else "sqlite", "connections": args.connections, "seconds": args.seconds, "rounds": args.rounds, "cores": os.cpu_count(),
        "loadavg_before": load_before, "loadavg_after": os.getloadavg(), "rounds_raw": results,
        "median_rps": {w: statistics.median(r["rps"] for r in rs) for w, rs in results.items()},
        "median_p50_ms": {w: statistics.median(r["p50_ms"] for r in rs) for w, rs in results.items()},
        "ratio_rps_2_vs_1": statistics.median(b["rps"] / a["rps"] for a, b in zip(results["1"], results["2"],
                                                                                   strict=True)),
    }
    print(json.dumps(summary, indent=2))
    if args.json:
        args.json.write_text(json.dumps(summary, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

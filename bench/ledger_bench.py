"""Benchmark: reserve+settle pairs per second on SQLite and Postgres (not a test; run with `make bench-ledger`).

One operation = one reservation (conditional UPDATE + reservation row + ledger entry, one transaction) and its
settlement (conditional close + account update + two ledger entries, one transaction), through the same SqlLedger
the gateway uses. Each worker thread has its own account, as separate customers would.
"""

from __future__ import annotations

import argparse
import tempfile
import threading
import time
import uuid
from pathlib import Path

from gateway.credits.ledger import SqlLedger
from gateway.store.engine import open_store


def run(url: str, threads: int, seconds: float) -> float:
    ledger = SqlLedger(open_store(url))
    accounts = []
    for _ in range(threads):
        account = ledger.create_account("bench")
        ledger.top_up(account.id, 10**15, "bench")
        accounts.append(account.id)
    counts = [0] * threads
    stop = time.monotonic() + seconds

    def worker(index: int) -> None:
        prefix = uuid.uuid4().hex[:8]
        n = 0
        while time.monotonic() < stop:
            request_id = f"b{prefix}{n}"
            ledger.reserve(request_id=request_id, account_id=accounts[index], key_id="key_bench", amount=150,
                           cap=None)
            ledger.settle(request_id, 23)
            n += 1
        counts[index] = n

    started = time.monotonic()
    pool = [threading.Thread(target=worker, args=(i,)) for i in range(threads)]
    for thread in pool:
        thread.start()
    for thread in pool:
        thread.join()
    elapsed = time.monotonic() - started
    assert ledger.check() == [], "parity broke during the benchmark"
    return sum(counts) / elapsed


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--postgres", default="postgresql+psycopg://postgres@127.0.0.1:5432/test")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        for threads in (1, 4):
            url = f"sqlite:///{Path(folder) / f'bench{threads}.db'}"
            print(f"sqlite   threads={threads}: {run(url, threads, args.seconds):8.0f} reserve+settle/s", flush=True)
    import psycopg

    name = "gw_bench_" + uuid.uuid4().hex[:8]
    with psycopg.connect(host="127.0.0.1", dbname="test", user="postgres", autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        base = args.postgres.rsplit("/", 1)[0]
        for threads in (1, 4, 8):
            rate = run(f"{base}/{name}", threads, args.seconds)
            print(f"postgres threads={threads}: {rate:8.0f} reserve+settle/s", flush=True)
    finally:
        with psycopg.connect(host="127.0.0.1", dbname="test", user="postgres", autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


if __name__ == "__main__":
    main()

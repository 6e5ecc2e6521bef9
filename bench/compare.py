"""`make bench`: the comparison an operator makes, at equal cores, on loopback with wrk (not a test).

Every configuration may use every core of the machine (the report says how many processes each ran), and all call
the same provider stand-in:

  direct    the provider stand-in, direct
  litellm   stock LiteLLM proxy as its docs recommend (one uvicorn worker per core, `bench/litellm_alone.py
            --num_workers`), the model list and settings the gateway hands it, a no-op custom_auth
  before    the two-process shape: the gateway's full pre-flight (`bench/preflight.py`, the same composition root and
            pipeline, one worker per core) forwarding over HTTP to (litellm) on its own port
  after     `gateway serve --workers <cores>`: full pipeline, LiteLLM in-process
  trimmed   LiteLLM alone with the gateway's trims, same workers (`--trimmed`): after − trimmed in server CPU per
            request is the gateway's own CPU per request in situ (`pipeline_cpu_ms_per_request`)
  baseline  (only with --baseline-tree) `gateway serve` from another source tree, e.g. an earlier commit exported
            with `git archive`, measured in the same rounds: the before/after of a change, by the same method

Rounds alternate the configurations; in each, wrk runs one connection (latency P50/P99) and then sixteen
(throughput), and the server processes' CPU time (all processes of the configuration, workers included, from /proc)
per request is read. Ratios are taken within each round (neighbours in time) and the median over rounds is reported.
The harness rewrites the marked section of docs/benchmarks.md, and `--json PATH` writes the raw rounds and the median
ratios. Any non-2xx answer or socket error fails the run, and the ledger parity of both gateways is checked after.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import os
import platform
import re
import secrets
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import yaml
from stack import children, start_gateway, start_standin, write_policy

from gateway.boot.litellm_mount import build_config
from gateway.boot.secret import Secret
from gateway.credits.ledger import SqlLedger
from gateway.devstack.openbao import free_port, wait_http
from gateway.keys.format import KeyKind
from gateway.keys.hashing import KeyHasher
from gateway.keys.service import KeyService
from gateway.keys.store import SqlKeyStore
from gateway.policy import load_policy
from gateway.store.engine import open_store

HERE = Path(__file__).resolve().parent
DOCS = HERE.parent / "docs" / "benchmarks.md"
START, END = "<!-- bench:compare:start -->", "<!-- bench:compare:end -->"
NAMES = {"direct": "provider stand-in, direct",
         "litellm": "stock LiteLLM proxy (no-op custom_auth)",
         "before": "pre-flight process(es) → HTTP → stock LiteLLM",
         "after": "`gateway serve`, LiteLLM in-process",
         "trimmed": "LiteLLM alone with the gateway's trims",
         "baseline": "gateway from the baseline tree, LiteLLM in-process"}
ORDER = list(NAMES)
CONNECTIONS = (1, 16)


def cpu_seconds(pids: list[int]) -> tuple[float, float]:
    """User and system CPU time the processes have used so far (from /proc)."""
    user = system = 0
    for pid in pids:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        user, system = user + int(fields[11]), system + int(fields[12])  # utime, stime
    return user / os.sysconf("SC_CLK_TCK"), system / os.sysconf("SC_CLK_TCK")


def voluntary_switches(pids: list[int]) -> int:
    """Voluntary context switches so far, summed over every thread of the processes (from /proc): a thread that
    waits (for the GIL, a lock, a socket) switches out voluntarily, so hand-offs between threads show here."""
    total = 0
    for pid in pids:
        for task in Path(f"/proc/{pid}/task").iterdir():
            try:
                status = (task / "status").read_text()
            except OSError:
                continue  # the thread ended
            total += int(status.split("voluntary_ctxt_switches:", 1)[1].split()[0])
    return total


def process_tree(root: int) -> list[int]:
    """``root`` and every process descended from it (uvicorn's and the pre-flight's workers)."""
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                parents[int(entry.name)] = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
    tree, frontier = [root], [root]
    while frontier:
        frontier = [pid for pid, parent in parents.items() if parent in frontier]
        tree += frontier
    return tree


def wrk(url: str, key: str, connections: int, seconds: float, model: str, pids: list[int]) -> dict[str, float]:
    env = {**os.environ, "BENCH_KEY": key, "BENCH_MODEL": model}
    cpu_before, switches_before = cpu_seconds(pids), voluntary_switches(pids)
    out = subprocess.run(["wrk", "-t1", f"-c{connections}", f"-d{round(seconds)}s", "--timeout", "10s",
                          "-s", str(HERE / "wrk" / "chat.lua"), url + "/v1/chat/completions"],
                         env=env, capture_output=True, text=True, check=True).stdout
    match = re.search(r"^RESULT (\d+) (\d+) (\d+) (\d+) (\d+) (\d+)$", out, re.MULTILINE)
    if match is None:
        raise RuntimeError(f"wrk printed no result:\n{out}")
    requests, duration_us, p50, p99, non2xx, socket_errors = map(int, match.groups())
    if non2xx or socket_errors or not requests:
        raise RuntimeError(f"{url}: {non2xx} non-2xx answers, {socket_errors} socket errors of {requests}")
    cpu_after, switches = cpu_seconds(pids), voluntary_switches(pids) - switches_before
    user_ms, system_ms = ((after - before) * 1000 / requests for after, before in zip(cpu_after, cpu_before,
                                                                                     strict=True))
    return {"rps": requests / (duration_us / 1e6), "p50_ms": p50 / 1000, "p99_ms": p99 / 1000,
            "cpu_ms": user_ms + system_ms, "sys_ms": system_ms, "switches": switches / requests}


def first_answer(url: str, key: str, model: str) -> None:
    """One request, waited for: a fresh LiteLLM's first answer can take seconds (first-call imports and caches), which
    a timed wrk run would count as nothing served."""
    body = json.dumps({"model": model, "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 8}).encode()
    request = urllib.request.Request(url + "/v1/chat/completions", data=body, method="POST", headers={
        "content-type": "application/json", "authorization": f"Bearer {key}"})
    with urllib.request.urlopen(request, timeout=120) as answer:
        answer.read()


def machine() -> str:
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor() or "unknown CPU")
    mem_kib = int(next(line.split()[1] for line in Path("/proc/meminfo").read_text().splitlines()
                       if line.startswith("MemTotal")))
    wrk_version = subprocess.run(["wrk", "--version"], capture_output=True, text=True,
                                 check=False).stdout.split("\n")[0]  # wrk --version exits 1
    return (f"{os.cpu_count()} vCPU ({cpu}), {mem_kib / 1024 / 1024:.0f} GiB RAM, {platform.system()} "
            f"{platform.release()}, Python {platform.python_version()}, litellm {importlib.metadata.version('litellm')}"
            f", uvicorn {importlib.metadata.version('uvicorn')}, {wrk_version.strip()}")


def litellm_config(work: Path, standin_base: str) -> Path:
    """Stock LiteLLM's config: the dict the gateway hands LiteLLM, with a no-op custom_auth beside it on disk."""
    policy = load_policy(write_policy(work, standin_base))
    config = build_config(policy, Secret("sk-bench-" + secrets.token_urlsafe(24)),
                          {"standin": Secret("bench-" + secrets.token_urlsafe(16))})
    config["general_settings"]["custom_auth"] = "noop_auth.custom_auth"
    shutil.copy(HERE / "noop_auth.py", work / "noop_auth.py")
    path = work / "litellm-config.yaml"
    path.write_text(yaml.safe_dump(config))
    path.chmod(0o600)
    return path


def serve_supports_workers() -> bool:
    """Whether this tree's `gateway serve` takes --workers."""
    out = subprocess.run([str(Path(sys.executable).parent / "gateway"), "serve", "--help"], capture_output=True,
                         text=True, check=False)
    return "--workers" in out.stdout


def start_preflight(work: Path, standin: str, upstream: str, workers: int, redis_url: str,
                    started: list[subprocess.Popen[bytes]]) -> tuple[str, str, SqlLedger, subprocess.Popen[bytes]]:
    """The before shape's pre-flight: its own store, account and key, made with a pepper handed to it on stdin."""
    pepper, audit_key = secrets.token_urlsafe(32), secrets.token_urlsafe(32)
    database = f"sqlite:///{work / 'before.db'}"
    engine = open_store(database)
    ledger = SqlLedger(engine)
    account = ledger.create_account("bench")
    ledger.top_up(account.id, 10**15, "bench")
    key, _ = KeyService(SqlKeyStore(engine), KeyHasher(pepper.encode())).issue(
        KeyKind.CUSTOMER, name="bench", models=["chat-model"], account_id=account.id)
    port = free_port()
    redis = ["--redis-url", redis_url] if workers > 1 else []
    process = subprocess.Popen([sys.executable, str(HERE / "preflight.py"), "--port", str(port), "--upstream", upstream,
                                "--database", database, "--policy", str(write_policy(work, standin)),
                                "--workers", str(workers), *redis], stdin=subprocess.PIPE,
                               stdout=open(work / "preflight.log", "wb"), stderr=subprocess.STDOUT)  # noqa: SIM115
    started.append(process)
    assert process.stdin is not None
    process.stdin.write(json.dumps({"pepper": pepper, "audit_key": audit_key}).encode())
    process.stdin.close()
    url = f"http://127.0.0.1:{port}"
    wait_http(url + "/healthz", timeout=300)
    return url, key, ledger, process


def start_litellm(work: Path, env: dict[str, str], workers: int, name: str, *, trim: bool,
                  started: list[subprocess.Popen[bytes]]) -> tuple[str, subprocess.Popen[bytes]]:
    port = free_port()
    process = subprocess.Popen([sys.executable, str(HERE / "litellm_alone.py"), "--port", str(port),
                                "--num_workers", str(workers), *(["--trimmed"] if trim else [])],
                               env=env, stdout=open(work / f"{name}.log", "wb"),  # noqa: SIM115
                               stderr=subprocess.STDOUT)
    started.append(process)
    return f"http://127.0.0.1:{port}", process


def wait_settled(ledgers: list[SqlLedger]) -> None:
    """wrk cuts its last requests off mid-flight; give the gateways a moment to settle them, then check parity."""
    deadline = time.monotonic() + 15
    while any(ledger.open_reservations() for ledger in ledgers) and time.monotonic() < deadline:
        time.sleep(0.2)
    for ledger in ledgers:
        drifts, still_open = ledger.check(), ledger.open_reservations()
        if drifts or still_open:
            raise RuntimeError(f"ledger parity broke under the benchmark: {drifts!r}, {still_open} open")


def run(args: argparse.Namespace) -> dict[str, object]:
    work = Path(tempfile.mkdtemp(prefix="gateway-bench-"))
    cores = os.cpu_count() or 1
    workers = args.workers or cores
    gateway_workers = workers if serve_supports_workers() else 1
    serve_args = ("--workers", str(gateway_workers)) if gateway_workers > 1 else ()
    with children() as started:
        standin = start_standin(started)
        # (url, key, model, root process of the configuration)
        targets: dict[str, tuple[str, str, str, int]] = {
            "direct": (standin.removesuffix("/v1"), "bench", "upstream-chat", started[0].pid)}
        ledgers: list[SqlLedger] = []
        env = {k: v for k, v in os.environ.items() if not k.startswith(("GATEWAY_", "LITELLM_"))}
        env["CONFIG_FILE_PATH"] = str(litellm_config(work, standin))
        alone_url, alone = start_litellm(work, env, workers, "litellm", trim=False, started=started)
        targets["litellm"] = (alone_url, "bench", "chat-model", alone.pid)
        if "trimmed" in args.only:
            trimmed_url, trimmed = start_litellm(work, env, workers, "trimmed", trim=True, started=started)
            targets["trimmed"] = (trimmed_url, "bench", "chat-model", trimmed.pid)
        for name in ("litellm", "trimmed"):
            if name in targets:
                wait_http(targets[name][0] + "/health/liveliness", timeout=300)
        if "before" in args.only:
            pre_work = work / "before"
            pre_work.mkdir()
            url, key, ledger, process = start_preflight(pre_work, standin, alone_url, workers, args.redis_url,
                                                       started)
            ledgers.append(ledger)
            targets["before"] = (url, key, "chat-model", process.pid)
        if "after" in args.only:
            gw_work = work / "gateway"
            gw_work.mkdir()
            # More than one worker needs the rate limits in Redis (`gateway serve --workers` refuses otherwise).
            redis_env = {"GATEWAY_REDIS_URL": args.redis_url} if gateway_workers > 1 else {}
            gateway = start_gateway(gw_work, standin, started, log_level=args.log_level, serve_args=serve_args,
                                    extra_env=redis_env)
            ledgers.append(gateway.ledger)
            targets["after"] = (gateway.url, gateway.key, "chat-model", gateway.process.pid)
        if args.baseline_tree:
            base_work = work / "baseline"
            base_work.mkdir()
            baseline = start_gateway(base_work, standin, started, log_level=args.log_level,
                                     extra_env={"PYTHONPATH": str(args.baseline_tree.resolve())})
            ledgers.append(baseline.ledger)
            targets["baseline"] = (baseline.url, baseline.key, "chat-model", baseline.process.pid)
        pids = {name: process_tree(root) for name, (_, _, _, root) in targets.items()}
        if "before" in pids:
            pids["before"] += pids["litellm"]  # the before shape's CPU: its pre-flight's processes and LiteLLM's
        targets = {name: targets[name] for name in ORDER
                   if name in targets and (name in args.only or name == "baseline")}
        for name, (url, key, model, _) in targets.items():  # warm-up: imports, pools, first-call caches
            first_answer(url, key, model)
            wrk(url, key, 16, args.warmup, model, pids[name])
        rounds: dict[str, list[dict[str, float]]] = {f"{n}{c}": [] for n in targets for c in CONNECTIONS}
        for r in range(args.rounds):
            for name, (url, key, model, _) in targets.items():
                for connections in CONNECTIONS:
                    result = wrk(url, key, connections, args.seconds, model, pids[name])
                    rounds[f"{name}{connections}"].append(result)
                    print(f"round {r + 1} {name} c={connections}: P50 {result['p50_ms']:.2f} ms, "
                          f"P99 {result['p99_ms']:.2f} ms, {result['rps']:.0f} req/s, "
                          f"server CPU {result['cpu_ms']:.2f} ms/req ({result['sys_ms']:.2f} system), "
                          f"{result['switches']:.1f} voluntary switches/req", flush=True)
        wait_settled(ledgers)
    data: dict[str, object] = {
        "rounds": rounds, "machine": machine(), "seconds": args.seconds, "log_level": args.log_level,
        "date": time.strftime("%Y-%m-%d"), "cores": cores,
        "processes": {name: len(tree) for name, tree in pids.items()},
        "workers": {name: count for name, count in {"litellm": workers, "trimmed": workers, "before": workers,
                                                     "after": gateway_workers, "baseline": 1}.items()
                    if name in targets}}
    data["ratios"] = ratios(rounds)
    return data


def ratio(rounds: dict[str, list[dict[str, float]]], num: str, den: str, field: str) -> tuple[float, float, float]:
    """Median, lowest and highest over rounds of num/den measured in the same round (neighbours in time, so a drift
    of the machine's speed between rounds cancels out)."""
    values = [n[field] / d[field] for n, d in zip(rounds[num], rounds[den], strict=True)]
    return statistics.median(values), min(values), max(values)


def difference(rounds: dict[str, list[dict[str, float]]], a: str, b: str, field: str) -> tuple[float, float, float]:
    values = [x[field] - y[field] for x, y in zip(rounds[a], rounds[b], strict=True)]
    return statistics.median(values), min(values), max(values)


# The named figures of `--json` (issue 16): (name, how, numerator, denominator, field).
FIGURES = [
    ("after_vs_before_p50_c1", ratio, "after1", "before1", "p50_ms"),
    ("after_vs_before_rps_c16", ratio, "after16", "before16", "rps"),
    ("after_vs_litellm_p50_c1", ratio, "after1", "litellm1", "p50_ms"),
    ("after_vs_litellm_rps_c16", ratio, "after16", "litellm16", "rps"),
    ("pipeline_cpu_ms_per_request", difference, "after16", "trimmed16", "cpu_ms"),
    ("baseline_pipeline_cpu_ms_per_request", difference, "baseline16", "trimmed16", "cpu_ms"),
    ("after_vs_baseline_cpu_c16", ratio, "after16", "baseline16", "cpu_ms"),
    ("baseline_minus_after_switches_c16", difference, "baseline16", "after16", "switches"),
    ("before_vs_litellm_rps_c16", ratio, "before16", "litellm16", "rps"),
    ("after_vs_before_cpu_c16", ratio, "after16", "before16", "cpu_ms"),
]


def ratios(rounds: dict[str, list[dict[str, float]]]) -> dict[str, dict[str, float]]:
    out = {}
    for name, how, a, b, field in FIGURES:
        if a in rounds and b in rounds:
            median, low, high = how(rounds, a, b, field)
            out[name] = {"median": median, "min": low, "max": high}
    return out


GOALS = {"after_vs_before_p50_c1": ("≤ 0.95", lambda v: v <= 0.95),
         "after_vs_before_rps_c16": ("≥ 1.10", lambda v: v >= 1.10),
         "after_vs_litellm_p50_c1": ("≤ 1.05", lambda v: v <= 1.05),
         "after_vs_litellm_rps_c16": ("≥ 0.95", lambda v: v >= 0.95),
         "pipeline_cpu_ms_per_request": ("≤ 0.5 ms", lambda v: v <= 0.5)}


def summarize(data: dict[str, object]) -> str:
    rounds: dict[str, list[dict[str, float]]] = data["rounds"]  # type: ignore[assignment]
    figures: dict[str, dict[str, float]] = data["ratios"]  # type: ignore[assignment]
    processes: dict[str, int] = data["processes"]  # type: ignore[assignment]

    def span(key: str, field: str) -> str:
        values = [r[field] for r in rounds[key]]
        fmt = "{:,.0f}" if field == "rps" else "{:.1f}" if field == "switches" else "{:.2f}"
        median = statistics.median(values)
        return f"{fmt.format(median)} ({fmt.format(min(values))}–{fmt.format(max(values))})"

    n = len(next(iter(rounds.values())))
    lines = [
        (f"Measured {data['date']} with `make bench` ({n} alternating rounds, {data['seconds']:g} s per wrk run, "
         f"gateway log level {data['log_level']}). Machine: {data['machine']}. Every configuration could use all "
         f"{data['cores']} cores; workers: {json.dumps(data['workers'])}."),
        "",
        ("| configuration | server processes | P50 ms, c=1 | P99 ms, c=1 | req/s, c=16 | P99 ms, c=16 | "
         "server CPU ms/request, c=16 | voluntary switches/request, c=16 |"),
        "|---|---|---|---|---|---|---|---|",
    ]
    for name in ORDER:
        if name + "1" in rounds:
            lines.append(f"| {name}: {NAMES[name]} | {processes.get(name, '')} | {span(name + '1', 'p50_ms')} | "
                         f"{span(name + '1', 'p99_ms')} | {span(name + '16', 'rps')} | {span(name + '16', 'p99_ms')} | "
                         f"{span(name + '16', 'cpu_ms')} | {span(name + '16', 'switches')} |")
    note = ("Medians over rounds (lowest–highest in brackets). Ratios and differences are taken within each round, "
            "then the median over rounds (lowest–highest):")
    lines += ["", note, "", "| figure | measured | goal | met |", "|---|---|---|---|"]
    for name, value in figures.items():
        goal, check = GOALS.get(name, ("", None))
        met = "" if check is None else ("yes" if check(value["median"]) else "no")
        lines.append(f"| `{name}` | {value['median']:.3f} ({value['min']:.3f}–{value['max']:.3f}) | {goal} | {met} |")
    return "\n".join(lines)


def write_docs(text: str) -> None:
    doc = DOCS.read_text()
    if START not in doc or END not in doc:
        raise RuntimeError(f"{DOCS} has no {START} … {END} section")
    head, rest = doc.split(START, 1)
    _, tail = rest.split(END, 1)
    DOCS.write_text(f"{head}{START}\n{text}\n{END}{tail}")


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--log-level", default="INFO")
    parser.add_argument("--workers", type=int, default=0, help="workers per configuration (default: the cores)")
    parser.add_argument("--only", default="direct,litellm,before,after,trimmed",
                        help="the configurations to run (docs are written only when all five ran)")
    parser.add_argument("--baseline-tree", type=Path,
                        help="also measure `gateway serve` from this source tree (e.g. an earlier commit)")
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/15",
                        help="rate limits of the multi-worker gateway and pre-flight (both shapes alike)")
    parser.add_argument("--json", type=Path, help="also write the raw rounds and the median ratios here")
    parser.add_argument("--no-docs", action="store_true", help="print only; leave docs/benchmarks.md alone")
    args = parser.parse_args()
    args.only = set(args.only.split(","))
    if shutil.which("wrk") is None:
        print("wrk is not installed (make bench installs the Debian package)", file=sys.stderr)
        return 2
    data = run(args)
    if args.json:
        args.json.write_text(json.dumps(data, indent=1))
    text = summarize(data)
    print(text)
    if not args.no_docs and {"direct", "litellm", "before", "after", "trimmed"} <= args.only:
        write_docs(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())

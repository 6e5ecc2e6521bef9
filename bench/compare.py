"""`make bench`: the gateway side by side with what it replaces, on loopback with wrk (not a test).

Four configurations (five with e, which `make bench` includes), each one uvicorn worker, all against the same
provider stand-in:

  a  the provider stand-in, direct
  b  stock LiteLLM proxy alone, same model list and settings as the gateway gives it, a no-op custom_auth
  c  the two-process shape: a thin forwarder (bench/forwarder.py) in front of (b) on its own port
  d  the gateway, full pipeline (key lookup, rate limits, body checks, guardrails, credit reservation and
     settlement on SQLite), LiteLLM mounted in-process
  e  LiteLLM alone with the gateway's trims applied (bench/litellm_alone.py --trimmed): e against
     b is what the trims save, d against e what the gateway's own pipeline costs

Rounds alternate a b c d e a b c d e …; in each, wrk runs one connection (latency P50/P99) and then eight
connections (throughput), and the server processes' CPU time per request is read from /proc. The harness prints the
medians over rounds and the ratios (taken within each round), and rewrites the marked section of docs/benchmarks.md
with them and the machine description. Any non-2xx answer or socket error fails the run.
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
from pathlib import Path

import yaml
from stack import children, start_gateway, start_standin

from gateway.boot.litellm_mount import build_config
from gateway.boot.secret import Secret
from gateway.devstack.openbao import free_port, wait_http
from gateway.policy import load_policy

HERE = Path(__file__).resolve().parent
DOCS = HERE.parent / "docs" / "benchmarks.md"
START, END = "<!-- bench:compare:start -->", "<!-- bench:compare:end -->"
NAMES = {"a": "provider stand-in, direct", "b": "LiteLLM proxy alone (no-op custom_auth)",
         "c": "two processes: forwarder → LiteLLM", "d": "gateway, full pipeline, in-process",
         "e": "LiteLLM alone with the gateway's trims"}


def cpu_seconds(pids: list[int]) -> tuple[float, float]:
    """User and system CPU time the processes have used so far (from /proc)."""
    user = system = 0
    for pid in pids:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        user, system = user + int(fields[11]), system + int(fields[12])  # utime, stime
    return user / os.sysconf("SC_CLK_TCK"), system / os.sysconf("SC_CLK_TCK")


def wrk(url: str, key: str, connections: int, seconds: float, model: str, pids: list[int]) -> dict[str, float]:
    env = {**os.environ, "BENCH_KEY": key, "BENCH_MODEL": model}
    cpu_before = cpu_seconds(pids)
    out = subprocess.run(["wrk", "-t1", f"-c{connections}", f"-d{round(seconds)}s", "--timeout", "10s",
                          "-s", str(HERE / "wrk" / "chat.lua"), url + "/v1/chat/completions"],
                         env=env, capture_output=True, text=True, check=True).stdout
    match = re.search(r"^RESULT (\d+) (\d+) (\d+) (\d+) (\d+) (\d+)$", out, re.MULTILINE)
    if match is None:
        raise RuntimeError(f"wrk printed no result:\n{out}")
    requests, duration_us, p50, p99, non2xx, socket_errors = map(int, match.groups())
    if non2xx or socket_errors or not requests:
        raise RuntimeError(f"{url}: {non2xx} non-2xx answers, {socket_errors} socket errors of {requests}")
    cpu_after = cpu_seconds(pids)
    user_ms, system_ms = ((after - before) * 1000 / requests for after, before in zip(cpu_after, cpu_before,
                                                                                     strict=True))
    return {"rps": requests / (duration_us / 1e6), "p50_ms": p50 / 1000, "p99_ms": p99 / 1000,
            "cpu_ms": user_ms + system_ms, "sys_ms": system_ms}


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
    """Configuration (b): the dict the gateway hands LiteLLM, with a no-op custom_auth beside it on disk."""
    from stack import write_policy

    policy = load_policy(write_policy(work, standin_base))
    config = build_config(policy, Secret("sk-bench-" + secrets.token_urlsafe(24)),
                          {"standin": Secret("bench-" + secrets.token_urlsafe(16))})
    config["general_settings"]["custom_auth"] = "noop_auth.custom_auth"
    shutil.copy(HERE / "noop_auth.py", work / "noop_auth.py")
    path = work / "litellm-config.yaml"
    path.write_text(yaml.safe_dump(config))
    path.chmod(0o600)
    return path


def run(args: argparse.Namespace) -> dict[str, object]:
    work = Path(tempfile.mkdtemp(prefix="gateway-bench-"))
    with children() as started:
        standin = start_standin(started)
        gw_work = work / "gateway"
        gw_work.mkdir()
        gateway = start_gateway(gw_work, standin, started, log_level=args.log_level)
        alone_port, fwd_port, trimmed_port = free_port(), free_port(), free_port()
        env = {k: v for k, v in os.environ.items() if not k.startswith(("GATEWAY_", "LITELLM_"))}
        env["CONFIG_FILE_PATH"] = str(litellm_config(work, standin))
        alone = subprocess.Popen([sys.executable, str(HERE / "litellm_alone.py"), "--port", str(alone_port)],
                                 env=env, stdout=open(work / "litellm.log", "wb"),  # noqa: SIM115
                                 stderr=subprocess.STDOUT)
        forwarder = subprocess.Popen([sys.executable, str(HERE / "forwarder.py"), "--port", str(fwd_port),
                                      "--upstream", f"http://127.0.0.1:{alone_port}"])
        started += [alone, forwarder]
        if "e" in args.only:
            trimmed = subprocess.Popen([sys.executable, str(HERE / "litellm_alone.py"), "--port", str(trimmed_port),
                                        "--trimmed"], env=env, stdout=open(work / "litellm-trimmed.log", "wb"),  # noqa: SIM115
                                       stderr=subprocess.STDOUT)
            started.append(trimmed)
            wait_http(f"http://127.0.0.1:{trimmed_port}/health/liveliness", timeout=90)
        wait_http(f"http://127.0.0.1:{alone_port}/health/liveliness", timeout=90)
        wait_http(f"http://127.0.0.1:{fwd_port}/health/liveliness", timeout=30)
        # (url, key, model, the server processes whose CPU time counts for the configuration)
        targets = {
            "a": (standin.removesuffix("/v1"), "bench", "upstream-chat", [started[0].pid]),
            "b": (f"http://127.0.0.1:{alone_port}", "bench", "chat-model", [alone.pid]),
            "c": (f"http://127.0.0.1:{fwd_port}", "bench", "chat-model", [forwarder.pid, alone.pid]),
            "d": (gateway.url, gateway.key, "chat-model", [gateway.process.pid]),
        }
        if "e" in args.only:
            targets["e"] = (f"http://127.0.0.1:{trimmed_port}", "bench", "chat-model", [trimmed.pid])
        targets = {name: target for name, target in targets.items() if name in args.only}
        for url, key, model, pids in targets.values():  # warm-up: imports, pools, first-call caches
            wrk(url, key, 8, args.warmup, model, pids)
        rounds: dict[str, list[dict[str, float]]] = {f"{n}{c}": [] for n in targets for c in (1, 8)}
        for r in range(args.rounds):
            for name, (url, key, model, pids) in targets.items():
                for connections in (1, 8):
                    result = wrk(url, key, connections, args.seconds, model, pids)
                    rounds[f"{name}{connections}"].append(result)
                    print(f"round {r + 1} {name} c={connections}: P50 {result['p50_ms']:.2f} ms, "
                          f"P99 {result['p99_ms']:.2f} ms, {result['rps']:.0f} req/s, "
                          f"server CPU {result['cpu_ms']:.2f} ms/req ({result['sys_ms']:.2f} system)", flush=True)
        # wrk cuts its last requests off mid-flight; give the gateway a moment to settle them, then check parity.
        deadline = time.monotonic() + 15
        while gateway.ledger.open_reservations() and time.monotonic() < deadline:
            time.sleep(0.2)
        drifts, still_open = gateway.ledger.check(), gateway.ledger.open_reservations()
        if drifts or still_open:
            raise RuntimeError(f"ledger parity broke under the benchmark: {drifts!r}, {still_open} open")
    return {"rounds": rounds, "machine": machine(), "seconds": args.seconds, "log_level": args.log_level,
            "date": time.strftime("%Y-%m-%d")}


def summarize(data: dict[str, object]) -> str:
    rounds: dict[str, list[dict[str, float]]] = data["rounds"]  # type: ignore[assignment]

    def med(key: str, field: str) -> float:
        return statistics.median(r[field] for r in rounds[key])

    def span(key: str, field: str) -> str:
        values = [r[field] for r in rounds[key]]
        fmt = "{:,.0f}" if field == "rps" else "{:.2f}"
        return f"{fmt.format(med(key, field))} ({fmt.format(min(values))}–{fmt.format(max(values))})"

    n = len(rounds["a1"])
    lines = [
        (f"Measured {data['date']} with `make bench` ({n} alternating rounds, {data['seconds']:g} s per wrk run, "
         f"gateway log level {data['log_level']}). Machine: {data['machine']}."),
        "",
        "| configuration | P50 ms, c=1 | P99 ms, c=1 | req/s, c=8 | P99 ms, c=8 | server CPU ms/request, c=8 |",
        "|---|---|---|---|---|---|",
    ]
    for name in sorted(n for n in NAMES if n + "1" in rounds):
        lines.append(f"| ({name}) {NAMES[name]} | {span(name + '1', 'p50_ms')} | {span(name + '1', 'p99_ms')} | "
                     f"{span(name + '8', 'rps')} | {span(name + '8', 'p99_ms')} | {span(name + '8', 'cpu_ms')} |")
    def ratio(num: str, den: str, field: str) -> tuple[float, float, float]:
        """Median, lowest and highest over rounds of num/den measured in the same round (neighbours in time, so a
        drift of the machine's speed between rounds cancels out)."""
        values = [n[field] / d[field] for n, d in zip(rounds[num], rounds[den], strict=True)]
        return statistics.median(values), min(values), max(values)

    goals = [
        ("gateway / LiteLLM alone, P50 at c=1", ratio("d1", "b1", "p50_ms"), "≤ 1.03", lambda v: v <= 1.03),
        ("gateway / LiteLLM alone, throughput at c=8", ratio("d8", "b8", "rps"), "≥ 0.97", lambda v: v >= 0.97),
        ("gateway / two processes, P50 at c=1", ratio("d1", "c1", "p50_ms"), "≤ 0.95", lambda v: v <= 0.95),
        ("two processes / LiteLLM alone, P50 at c=1", ratio("c1", "b1", "p50_ms"), "", None),
        ("two processes / LiteLLM alone, throughput at c=8", ratio("c8", "b8", "rps"), "", None),
        ("gateway / LiteLLM alone, server CPU per request at c=8", ratio("d8", "b8", "cpu_ms"), "", None),
        ("gateway / two processes, server CPU per request at c=8", ratio("d8", "c8", "cpu_ms"), "", None),
    ]
    if "e1" in rounds:
        goals += [
            ("LiteLLM trimmed / LiteLLM alone, server CPU per request at c=8", ratio("e8", "b8", "cpu_ms"), "", None),
            ("gateway / LiteLLM trimmed, server CPU per request at c=8", ratio("d8", "e8", "cpu_ms"), "", None),
            ("gateway / LiteLLM trimmed, P50 at c=1", ratio("d1", "e1", "p50_ms"), "", None),
        ]
    note = ("Medians over rounds (lowest–highest in brackets). Ratios are taken within each round, then the median "
            "over rounds (lowest–highest):")
    lines += ["", note, "", "| ratio | measured | goal | met |", "|---|---|---|---|"]
    for label, (value, low, high), goal, check in goals:
        met = "" if check is None else ("yes" if check(value) else "no")
        lines.append(f"| {label} | {value:.3f} ({low:.3f}–{high:.3f}) | {goal} | {met} |")
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
    parser.add_argument("--only", default="abcd",
                        help="the configurations to run, e.g. bd or abcde (docs are written only when a-d all ran)")
    parser.add_argument("--json", type=Path, help="also write the raw rounds here")
    parser.add_argument("--no-docs", action="store_true", help="print only; leave docs/benchmarks.md alone")
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        print("wrk is not installed (make bench installs the Debian package)", file=sys.stderr)
        return 2
    data = run(args)
    if args.json:
        args.json.write_text(json.dumps(data, indent=1))
    if not set("abcd") <= set(args.only):
        return 0
    text = summarize(data)
    print(text)
    if not args.no_docs:
        write_docs(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())

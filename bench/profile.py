"""`make bench-profile`: where the gateway's time goes under load (not a test).

Starts the stand-in and a full gateway (as `make bench` does), drives it with wrk at eight connections, and samples
the gateway process with py-spy for the run. Writes a flame graph (SVG) and py-spy's collapsed stacks, and prints the
share of samples under the frames that matter: our pre-flight, LiteLLM's proxy layers, the HTTP client, the server.
"""

from __future__ import annotations

import argparse
import collections
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from stack import BIN, children, start_gateway, start_standin

HERE = Path(__file__).resolve().parent

# Buckets by the innermost matching frame marker (checked in order): a sample counts once, for the first marker
# found from the leaf upwards.
MARKERS = [
    ("gateway pre-flight and settlement", ("gateway/pipeline/", "gateway/credits/", "gateway/keys/",
                                            "gateway/audit/", "gateway/app.py")),
    ("LiteLLM logging / callbacks / cost", ("litellm_logging.py", "logging_callback", "cost_calculator",
                                             "proxy_track_cost_callback", "spend_tracking", "callback")),
    ("LiteLLM router", ("litellm/router.py", "router_utils")),
    ("LiteLLM proxy request handling", ("litellm/proxy/",)),
    ("LiteLLM provider call (openai client, httpx/aiohttp)", ("openai/", "httpx", "httpcore", "aiohttp")),
    ("LiteLLM core (utils, main)", ("litellm/",)),
    ("pydantic", ("pydantic",)),
    ("server (uvicorn, starlette, fastapi)", ("uvicorn/", "starlette/", "fastapi/", "h11/")),
    ("asyncio", ("asyncio/",)),
]


def bucket(stack: str) -> str:
    frames = stack.split(";")
    for frame in reversed(frames):
        for name, needles in MARKERS:
            if any(n in frame for n in needles):
                return name
    return "other"


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=int, default=20)
    parser.add_argument("--connections", type=int, default=8)
    parser.add_argument("--out", type=Path, default=Path("var/profile"))
    parser.add_argument("--gil", action="store_true", help="sample only the thread holding the GIL (CPU, not waits)")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="gateway-profile-"))
    with children() as started:
        gateway = start_gateway(work, start_standin(started), started, log_level="INFO")
        env = {**os.environ, "BENCH_KEY": gateway.key}
        lua = str(HERE / "wrk" / "chat.lua")
        url = gateway.url + "/v1/chat/completions"
        subprocess.run(["wrk", "-t1", "-c8", "-d5s", "-s", lua, url], env=env, check=True, capture_output=True)
        wrk = subprocess.Popen(["wrk", "-t1", f"-c{args.connections}", f"-d{args.seconds + 2}s", "-s", lua, url],
                               env=env, stdout=subprocess.PIPE, text=True)
        collapsed = args.out / "gateway.collapsed.txt"
        subprocess.run([str(BIN / "py-spy"), "record", "--pid", str(gateway.process.pid), "--duration",
                        str(args.seconds), "--rate", "250", "--format", "raw", "--output", str(collapsed),
                        "--nonblocking", *(["--gil"] if args.gil else [])], check=True, capture_output=True)
        subprocess.run([str(BIN / "py-spy"), "record", "--pid", str(gateway.process.pid), "--duration", "5",
                        "--rate", "250", "--output", str(args.out / "gateway.svg"), "--nonblocking"],
                       check=True, capture_output=True)
        print(wrk.communicate()[0].strip().splitlines()[-1])
    counts: collections.Counter[str] = collections.Counter()
    total = 0
    # Split on newlines only: frame names can hold other characters str.splitlines() would break on.
    for line in collapsed.read_bytes().decode("utf-8", "replace").split("\n"):
        if not line:
            continue
        stack, _, n = line.rpartition(" ")
        if "(idle)" in stack or stack.endswith("select (selectors.py)") or "epoll" in stack:
            continue
        counts[bucket(stack)] += int(n)
        total += int(n)
    print(f"{total} busy samples over {args.seconds} s at {args.connections} connections")
    for name, n in counts.most_common():
        print(f"  {n / total * 100:5.1f} %  {name}")
    print(f"collapsed stacks: {collapsed}; flame graph: {args.out / 'gateway.svg'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

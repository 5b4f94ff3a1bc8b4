"""Gateway benchmark: a cached endpoint under load against a bare aiohttp handler, plus start-up.

Starts a real `flow serve` and a bare aiohttp app (one JSON handler) on 127.0.0.1, drives each
with the same asyncio load generator (a separate process) for the same time and concurrency,
and prints requests per second and p50/p99 latency with the ratios; then the idle resident
memory of `flow serve` and its time from start to answering /health.

Run: `.venv/bin/python bench/gateway.py [--seconds 5] [--concurrency 8] [--endpoint /text/gen]`.
The endpoint defaults to /text/gen when the gateway serves it, else /hello.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
FLOW = str(Path(sys.executable).with_name("flow"))

BARE_APP = textwrap.dedent("""
    import sys
    from aiohttp import web

    async def handle(request):
        await request.read()
        return web.json_response({"outputs": {"text": "a haiku about rain"}})

    app = web.Application()
    app.router.add_post("/{tail:.*}", handle)
    web.run_app(app, host="127.0.0.1", port=int(sys.argv[1]), print=None, access_log=None)
""")

LOADGEN = textwrap.dedent("""
    import asyncio, json, sys, time
    import aiohttp

    async def main(url, body, seconds, concurrency):
        latencies, errors = [], 0
        deadline = time.perf_counter() + seconds
        async with aiohttp.ClientSession() as session:
            async def worker():
                nonlocal errors
                while time.perf_counter() < deadline:
                    start = time.perf_counter()
                    async with session.post(url, data=body, headers={"Content-Type": "application/json"}) as r:
                        await r.read()
                        if r.status != 200:
                            errors += 1
                    latencies.append(time.perf_counter() - start)
            await asyncio.gather(*(worker() for _ in range(concurrency)))
        print(json.dumps({"latencies": latencies, "errors": errors, "seconds": seconds}))

    asyncio.run(main(sys.argv[1], sys.argv[2].encode(), float(sys.argv[3]), int(sys.argv[4])))
""")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_health(url: str, proc: subprocess.Popen, timeout: float = 60) -> float:
    start = time.perf_counter()
    while time.perf_counter() - start < timeout:
        if proc.poll() is not None:
            raise RuntimeError("the server exited")
        try:
            with urllib.request.urlopen(url, timeout=1):
                return time.perf_counter() - start
        except OSError:
            time.sleep(0.01)
    raise TimeoutError(url)


def rss_bytes(pid: int) -> int:
    with open(f"/proc/{pid}/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def cpu_seconds(pid: int) -> float:
    """User plus system CPU time the process has used so far."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def load(url: str, body: dict, seconds: float, concurrency: int, pid: int | None = None) -> dict:
    cpu = cpu_seconds(pid) if pid else 0.0
    out = subprocess.run([sys.executable, "-c", LOADGEN, url, json.dumps(body), str(seconds), str(concurrency)],
                         capture_output=True, text=True, check=True)
    result = json.loads(out.stdout)
    lat = sorted(result["latencies"])
    used = (cpu_seconds(pid) - cpu) if pid else 0.0
    return {"rps": len(lat) / result["seconds"], "p50": lat[len(lat) // 2] * 1000,
            "p99": lat[min(len(lat) - 1, int(len(lat) * 0.99))] * 1000, "errors": result["errors"], "n": len(lat),
            "cpu_us": used / max(1, len(lat)) * 1e6}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=5)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--endpoint", default=None)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        port, bare_port = free_port(), free_port()
        env = {**os.environ, "FLOW_PORT": str(port), "FLOW_OUTPUT_DIR": f"{tmp}/out",
               "FLOW_JOBS_DB": f"{tmp}/jobs.sqlite3", "FLOW_MAX_QUEUED": "10000",
               "FLOW_MODELS_DIR": f"{tmp}/models", "FLOW_TEXT_MODEL": "tiny-llm", "HF_HUB_OFFLINE": "1"}
        # /text/gen runs on a tiny LLM built here (random weights, offline tokenizer): the point is
        # the gateway's overhead on a cached request, not the model.
        sys.path.insert(0, str(ROOT / "tests" / "text"))
        from llm_tiny import build_tiny_llm

        build_tiny_llm(Path(tmp) / "models" / "local" / "tiny-llm")
        started = time.perf_counter()
        server = subprocess.Popen([FLOW, "serve"], env=env, cwd=tmp, stdout=subprocess.DEVNULL,
                                  stderr=subprocess.DEVNULL)
        bare = subprocess.Popen([sys.executable, "-c", BARE_APP, str(bare_port)])
        try:
            up = wait_health(f"http://127.0.0.1:{port}/health", server)
            wait_health_bare(bare_port, bare)
            time.sleep(1.0)
            idle = rss_bytes(server.pid)
            endpoints = json.load(urllib.request.urlopen(f"http://127.0.0.1:{port}/endpoints"))
            paths = {e["path"] for e in endpoints}
            endpoint = args.endpoint or ("/text/gen" if "/text/gen" in paths else "/hello")
            body = {"prompt": "a haiku about rain", "seed": 1} if endpoint == "/text/gen" else {"name": "rain"}
            warm = urllib.request.Request(f"http://127.0.0.1:{port}{endpoint}", data=json.dumps(body).encode(),
                                          headers={"Content-Type": "application/json"})
            urllib.request.urlopen(warm, timeout=600).read()  # the first call loads and fills the cache
            flow = load(f"http://127.0.0.1:{port}{endpoint}", body, args.seconds, args.concurrency, server.pid)
            base = load(f"http://127.0.0.1:{bare_port}{endpoint}", body, args.seconds, args.concurrency, bare.pid)
            busy = rss_bytes(server.pid)
        finally:
            server.terminate()
            bare.terminate()
            server.wait(10)
            bare.wait(10)
    print(f"gateway benchmark: POST {endpoint} (cached after one warm call), {args.concurrency} concurrent "
          f"clients for {args.seconds:g} s each, load generator in its own process\n")
    print(f"{'server':<28}{'req/s':>10}{'p50 ms':>10}{'p99 ms':>10}{'CPU us/req':>12}{'errors':>8}")
    for name, r in ((f"flow serve {endpoint}", flow), ("bare aiohttp handler", base)):
        print(f"{name:<28}{r['rps']:>10.1f}{r['p50']:>10.2f}{r['p99']:>10.2f}{r['cpu_us']:>12.0f}{r['errors']:>8}")
    print(f"{'ratio flow / bare':<28}{flow['rps'] / base['rps']:>10.3f}{flow['p50'] / base['p50']:>10.1f}"
          f"{flow['p99'] / base['p99']:>10.1f}{flow['cpu_us'] / base['cpu_us']:>12.1f}")
    print(f"\nflow serve: /health answered {up:.2f} s after start; idle RSS {idle / 2**20:.0f} MiB, "
          f"after the load {busy / 2**20:.0f} MiB")


def wait_health_bare(port: int, proc: subprocess.Popen) -> None:
    start = time.perf_counter()
    while time.perf_counter() - start < 30:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return
        except OSError:
            time.sleep(0.01)
    raise TimeoutError("bare server")


if __name__ == "__main__":
    main()

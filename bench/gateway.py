"""Gateway benchmark: cached endpoints under load against a bare aiohttp handler, start-up, large
graphs and memory under a soak, in one run.

1. Load: a real `flow serve` and a bare aiohttp app (one JSON handler) on 127.0.0.1, each driven
   by the same asyncio load generator (a separate process) for the same time and concurrency:
   requests per second, p50/p99 latency and server CPU per request, with the ratios, for cached
   `POST /text/gen` (a tiny LLM built here) and `POST /hello`. Target: ratio >= 0.5. The two run
   in turn for --rounds rounds and the median round is shown (one 5 s run varies by about 10%
   on a shared 2-core machine).
2. Start-up: seconds from starting `flow serve` to its first /health answer, and its idle
   resident memory (target: under 1 s and 150 MiB).
3. Large graph: seconds from `POST /jobs` with a 50k-node chain to its 202, against a 2-node one.
4. Soak: 2,000 distinct jobs, each building ~1 MB of text through 20 cached nodes, on a server
   whose output cache is bounded at --soak-cache MiB: its RSS every 250 jobs, against that bound
   (target: RSS under the bound plus a fixed margin, flat once the cache is full).

Run: `.venv/bin/python bench/gateway.py [--seconds 5] [--rounds 3] [--concurrency 8] [--soak-jobs 2000]`
(`--only load,startup,large,soak` picks sections).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import subprocess
import sys
import tempfile
import textwrap
import time
import urllib.error
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
FLOW = str(Path(sys.executable).with_name("flow"))

# The baseline runs on the event loop `flow serve` runs on (server.new_event_loop: uvloop where
# installed), so that the ratio measures flow's own work, not a difference of loops.
BARE_APP = textwrap.dedent("""
    import sys
    sys.path.insert(0, sys.argv[2])
    from aiohttp import web
    from server import new_event_loop

    async def handle(request):
        await request.read()
        return web.json_response({"outputs": {"text": "a haiku about rain"}})

    app = web.Application()
    app.router.add_post("/{tail:.*}", handle)
    web.run_app(app, host="127.0.0.1", port=int(sys.argv[1]), print=None, access_log=None, loop=new_event_loop())
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


def post(url: str, body: dict, timeout: float = 600) -> tuple[int, dict]:
    request = urllib.request.Request(url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as answer:
            return answer.status, json.loads(answer.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"{}")


def chain(n: int, tag: str) -> dict:
    """n text.join nodes in a chain (as tests/gateway/test_serve_process.py's)."""
    nodes = {"n0": {"type": "text.join", "inputs": {"a": tag, "b": "0"}}}
    for i in range(1, n):
        nodes[f"n{i}"] = {"type": "text.join", "inputs": {"a": {"from": f"n{i - 1}", "output": "text"}, "b": "."}}
    return {"name": f"chain-{tag}", "nodes": nodes, "outputs": {"text": {"from": f"n{n - 1}", "output": "text"}}}


def doubling(tag: str, levels: int = 20) -> dict:
    """A job whose nodes build 2**levels characters of text (each node doubles the last), answering a few."""
    nodes = {"d0": {"type": "text.join", "inputs": {"a": tag, "b": "", "separator": ""}}}
    for i in range(1, levels + 1):
        last = {"from": f"d{i - 1}", "output": "text"}
        nodes[f"d{i}"] = {"type": "text.join", "inputs": {"a": last, "b": last, "separator": ""}}
    nodes["done"] = {"type": "text.template", "inputs": {"template": "{tag} done", "tag": tag,
                                                         "whole": {"from": f"d{levels}", "output": "text"}}}
    return {"name": "soak", "nodes": nodes, "outputs": {"text": {"from": "done", "output": "text"}}}


class Server:
    """A `flow serve` in a temporary folder, with extra settings."""

    def __init__(self, tmp: str, **settings: str):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        env = {**os.environ, "FLOW_PORT": str(self.port), "FLOW_OUTPUT_DIR": f"{tmp}/out",
               "FLOW_JOBS_DB": f"{tmp}/jobs-{self.port}.sqlite3", "FLOW_MODELS_DIR": f"{tmp}/models",
               "HF_HUB_OFFLINE": "1", "FLOW_MAX_QUEUED": "10000", **settings}
        self.started = time.perf_counter()
        self.proc = subprocess.Popen([FLOW, "serve"], env=env, cwd=tmp, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL)
        self.up = wait_health(f"{self.url}/health", self.proc)

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(30)


def large_graph(tmp: str, nodes: int) -> dict:
    server = Server(tmp)
    try:
        timings = {}
        for name, doc in (("2 nodes", chain(2, "small")), (f"{nodes // 1000}k nodes", chain(nodes, "large"))):
            started = time.perf_counter()
            status, _ = post(f"{server.url}/jobs", {"workflow": doc})
            timings[name] = (time.perf_counter() - started, status)
        return timings
    finally:
        server.stop()


def soak(tmp: str, jobs: int, cache_mib: int, every: int = 250) -> list[tuple[int, float]]:
    server = Server(tmp, FLOW_CACHE_BYTES=str(cache_mib << 20))
    curve = [(0, rss_bytes(server.proc.pid) / 2**20)]
    try:
        for i in range(1, jobs + 1):
            status, body = post(f"{server.url}/jobs?wait=true", {"workflow": doubling(f"job{i}")})
            if status != 200:
                raise RuntimeError(f"soak job {i}: {status} {body}")
            if i % every == 0:
                curve.append((i, rss_bytes(server.proc.pid) / 2**20))
        return curve
    finally:
        server.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=5)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=3, help="load rounds, flow and bare in turn (the median is shown)")
    parser.add_argument("--endpoint", default=None, help="one endpoint only (default: /text/gen and /hello)")
    parser.add_argument("--nodes", type=int, default=50_000, help="the large graph's nodes")
    parser.add_argument("--soak-jobs", type=int, default=2000)
    parser.add_argument("--soak-cache", type=int, default=256, help="the soak server's output cache bound, MiB")
    parser.add_argument("--only", default="load,startup,large,soak")
    args = parser.parse_args()
    only = set(args.only.split(","))
    if "load" in only or "startup" in only:
        for endpoint in ([args.endpoint] if args.endpoint else ["/text/gen", "/hello"]):
            load_section(args, endpoint)
    if "large" in only:
        with tempfile.TemporaryDirectory() as tmp:
            timings = large_graph(tmp, args.nodes)
        print(f"\nlarge graph: POST /jobs until 202\n{'graph':<14}{'seconds':>10}{'status':>8}")
        for name, (seconds, status) in timings.items():
            print(f"{name:<14}{seconds:>10.3f}{status:>8}")
    if "soak" in only:
        with tempfile.TemporaryDirectory() as tmp:
            curve = soak(tmp, args.soak_jobs, args.soak_cache)
        print(f"\nsoak: {args.soak_jobs} distinct jobs of ~2 MiB cached text each, output cache bound "
              f"{args.soak_cache} MiB\n{'jobs':>6}{'RSS MiB':>10}{'RSS - bound':>13}")
        for done, rss in curve:
            print(f"{done:>6}{rss:>10.0f}{rss - args.soak_cache:>13.0f}")


def load_section(args, endpoint: str) -> None:
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
        bare = subprocess.Popen([sys.executable, "-c", BARE_APP, str(bare_port), str(ROOT)])
        try:
            up = wait_health(f"http://127.0.0.1:{port}/health", server)
            wait_health_bare(bare_port, bare)
            time.sleep(1.0)
            idle = rss_bytes(server.pid)
            body = {"prompt": "a haiku about rain", "seed": 1} if endpoint == "/text/gen" else {"name": "rain"}
            warm = urllib.request.Request(f"http://127.0.0.1:{port}{endpoint}", data=json.dumps(body).encode(),
                                          headers={"Content-Type": "application/json"})
            urllib.request.urlopen(warm, timeout=600).read()  # the first call loads and fills the cache
            # Rounds alternate flow and bare: drift of the machine (another tenant, a warm or cold
            # cache) falls on both; the median round is the one reported.
            rounds = []
            for _ in range(max(1, args.rounds)):
                flow = load(f"http://127.0.0.1:{port}{endpoint}", body, args.seconds, args.concurrency, server.pid)
                base = load(f"http://127.0.0.1:{bare_port}{endpoint}", body, args.seconds, args.concurrency,
                            bare.pid)
                rounds.append((flow["rps"] / base["rps"], flow, base))
            rounds.sort(key=lambda r: r[0])
            _, flow, base = rounds[len(rounds) // 2]
            busy = rss_bytes(server.pid)
        finally:
            server.terminate()
            bare.terminate()
            server.wait(10)
            bare.wait(10)
    import importlib.util

    loop = "uvloop" if importlib.util.find_spec("uvloop") else "asyncio"  # as server.new_event_loop picks
    print(f"gateway benchmark: POST {endpoint} (cached after one warm call), {args.concurrency} concurrent "
          f"clients for {args.seconds:g} s each, load generator in its own process, both servers on {loop}'s "
          f"event loop; {len(rounds)} rounds, flow and bare in turn: the median round\n")
    print(f"{'server':<28}{'req/s':>10}{'p50 ms':>10}{'p99 ms':>10}{'CPU us/req':>12}{'errors':>8}")
    for name, r in ((f"flow serve {endpoint}", flow), ("bare aiohttp handler", base)):
        print(f"{name:<28}{r['rps']:>10.1f}{r['p50']:>10.2f}{r['p99']:>10.2f}{r['cpu_us']:>12.0f}{r['errors']:>8}")
    print(f"{'ratio flow / bare':<28}{flow['rps'] / base['rps']:>10.3f}{flow['p50'] / base['p50']:>10.1f}"
          f"{flow['p99'] / base['p99']:>10.1f}{flow['cpu_us'] / base['cpu_us']:>12.1f}")
    if len(rounds) > 1:
        print(f"{'ratio of each round':<28}" + "  ".join(f"{ratio:.3f}" for ratio, _, _ in rounds)
              + "  (sorted)")
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

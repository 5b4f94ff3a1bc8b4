"""Worker-mode benchmark: a real redis-server, a real `flow serve` and real `flow worker` processes.

1. Throughput: N CPU-bound jobs (chains of text nodes building a few MB of text; no model) through
   the gateway to 1 worker, then to 2: jobs per second and the ratio. On a machine with fewer free
   cores than workers the ratio says so (each worker runs one job at a time, on one core).
2. Broker overhead: sequential calls of the tiny `POST /hello` endpoint (cache off), answered once
   the job ended, in-process (no broker) against through the broker with one worker: mean and p50
   latency per job, the difference (ms) and the ratio.

3. Model affinity: 3 tiny local LLMs (built here, CPU), 2 workers whose model budgets hold one model
   each, 30 jobs naming a model at random (seeded), sent two at a time: model loads summed over
   the workers with FLOW_BROKER_AFFINITY on and off.

Run: `.venv/bin/python bench/workers.py [--jobs 24] [--calls 40] [--only throughput,latency,affinity]` (needs redis-server: `make test`
installs it).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT / "tests" / d) for d in ("workers", "gateway", "text", "")]

from gateway_support import FLOW, Served  # noqa: E402
from worker_servers import Redis  # noqa: E402

TERMINAL = ("finished", "failed", "cancelled", "interrupted")


def cpu_job(tag: str, n: int = 300, chunk: int = 20_000) -> dict:
    nodes = {"big": {"type": "primitive.text", "inputs": {"value": "x" * chunk}},
             "n0": {"type": "text.join", "inputs": {"a": tag, "b": "0"}}}
    for i in range(1, n):
        nodes[f"n{i}"] = {"type": "text.join", "inputs": {"a": {"from": f"n{i - 1}", "output": "text"},
                                                          "b": {"from": "big", "output": "value"}}}
    nodes["done"] = {"type": "text.template", "inputs": {"template": "{tag} done", "tag": tag,
                                                         "whole": {"from": f"n{n - 1}", "output": "text"}}}
    return {"name": f"cpu-{tag}", "nodes": nodes, "outputs": {"text": {"from": "done", "output": "text"}}}


def post(url: str, body: dict) -> dict:
    request = urllib.request.Request(url, data=json.dumps(body).encode(), method="POST",
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=300) as response:
        return json.loads(response.read())


class Stack:
    def __init__(self, tmp: Path, redis_url: str | None, workers: int, **env: str):
        self.env = {"FLOW_PROBE_DEVICE": "0", "FLOW_CACHE_BYTES": "0", "FLOW_LOG_LEVEL": "WARNING",
                    **({"FLOW_BROKER_URL": redis_url} if redis_url else {}), **env}
        if redis_url:
            import redis

            redis.Redis.from_url(redis_url).flushall()
        self.gateway = Served(tmp, self.env)
        self.workers = []
        for i in range(workers):
            log = open(tmp / f"worker{i}.log", "ab")
            self.workers.append(subprocess.Popen([FLOW, "worker", "--name", f"w{i}"], cwd=tmp, stdout=log,
                                                 stderr=subprocess.STDOUT, env={**self.gateway.env, **self.env}))
        self.gateway.start(timeout=60)
        if redis_url:
            import redis

            client = redis.Redis.from_url(redis_url)
            deadline = time.monotonic() + 60
            while not all(client.exists(f"flow:worker:w{i}") for i in range(workers)):
                assert time.monotonic() < deadline, "workers did not start"
                time.sleep(0.1)
            time.sleep(1.0)  # their Celery consumers connect after the presence appears

    def stop(self) -> None:
        for proc in self.workers:
            proc.terminate()
        for proc in self.workers:
            proc.wait(20)
        self.gateway.stop()


def throughput(tmp: Path, redis_url: str, workers: int, jobs: int) -> float:
    stack = Stack(tmp, redis_url, workers)
    try:
        started = time.perf_counter()
        ids = [stack.gateway.call("POST", "/jobs", {"workflow": cpu_job(f"j{i}")})[1]["id"] for i in range(jobs)]
        while True:
            states = [stack.gateway.call("GET", f"/jobs/{i}")[1]["state"] for i in ids]
            if all(s in TERMINAL for s in states):
                break
            time.sleep(0.05)
        took = time.perf_counter() - started
        assert set(states) == {"finished"}, states
        return jobs / took
    finally:
        stack.stop()


def latency(tmp: Path, redis_url: str | None, calls: int) -> list[float]:
    stack = Stack(tmp, redis_url, 1 if redis_url else 0)
    try:
        post(stack.gateway.url + "/hello", {"name": "warm-up"})
        took = []
        for i in range(calls):
            started = time.perf_counter()
            body = post(stack.gateway.url + "/hello", {"name": f"n{i}"})
            took.append((time.perf_counter() - started) * 1000)
            assert body.get("outputs", body)["text"] == f"Hello, n{i}!", body
        return took
    finally:
        stack.stop()


def model_loads(tmp: Path, redis_url: str, affinity: bool, jobs: int = 30) -> tuple[int, float]:
    """(model loads over both workers, seconds) for ``jobs`` text jobs over 3 tiny models."""
    import random

    import redis

    from llm_tiny import build_tiny_llm

    models = tmp / "models"
    names = [f"tiny-{c}" for c in "abc"]
    for name in names:
        build_tiny_llm(models / "local" / name)
    size = sum(f.stat().st_size for f in (models / "local" / names[0]).glob("*.safetensors"))
    budget = str(int(size * 1.5))  # one model on the "device", one offloaded at most
    stack = Stack(tmp, redis_url, 2, FLOW_MODELS_DIR=str(models), FLOW_MODEL_DEVICE="cpu",
                  FLOW_GPU_BUDGET_BYTES=budget, FLOW_CPU_BUDGET_BYTES="1", FLOW_GPU_RESERVE_BYTES="0",
                  FLOW_BROKER_AFFINITY="true" if affinity else "false", FLOW_TEXT_MODEL=names[0])
    order = random.Random(7).choices(names, k=jobs)
    try:
        started = time.perf_counter()
        for pair in range(0, jobs, 2):
            ids = []
            for model in order[pair:pair + 2]:
                doc = {"name": "gen", "nodes": {"gen": {"type": "text.generate", "inputs": {
                    "prompt": "hi", "model": model, "max_tokens": 4, "seed": 1}}},
                    "outputs": {"text": {"from": "gen", "output": "text"}}}
                ids.append(stack.gateway.call("POST", "/jobs", {"workflow": doc})[1]["id"])
            while True:
                jobs_ = [stack.gateway.call("GET", f"/jobs/{i}")[1] for i in ids]
                if all(j["state"] in TERMINAL for j in jobs_):
                    break
                time.sleep(0.02)
            assert {j["state"] for j in jobs_} == {"finished"}, jobs_
        took = time.perf_counter() - started
        time.sleep(4)  # the workers' presence carries their model managers' counters
        client = redis.Redis.from_url(redis_url)
        loads = 0
        for i in range(2):
            info = json.loads(client.get(f"flow:worker:w{i}"))
            loads += info["memory"]["counters"]["loads"]
        return loads, took
    finally:
        stack.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--jobs", type=int, default=24)
    parser.add_argument("--calls", type=int, default=40)
    parser.add_argument("--only", default="throughput,latency,affinity")
    args = parser.parse_args()
    only = set(args.only.split(","))
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    redis = Redis()
    rows = []

    def folder() -> Path:
        return Path(stack.enter_context(tempfile.TemporaryDirectory()))

    from contextlib import ExitStack

    try:
        with ExitStack() as stack:
            if "throughput" in only:
                one = throughput(folder(), redis.url(), 1, args.jobs)
                two = throughput(folder(), redis.url(), 2, args.jobs)
                rows += [(f"throughput, 1 worker ({args.jobs} CPU jobs)", f"{one:.2f} jobs/s"),
                         ("throughput, 2 workers", f"{two:.2f} jobs/s"), ("2 workers / 1 worker", f"{two / one:.2f}")]
            if "latency" in only:
                local = latency(folder(), None, args.calls)
                brokered = latency(folder(), redis.url(), args.calls)
                lm, bm = statistics.mean(local), statistics.mean(brokered)
                rows += [(f"/hello in-process, mean / p50 ({args.calls} calls)",
                          f"{lm:.1f} / {statistics.median(local):.1f} ms"),
                         ("/hello through the broker, mean / p50", f"{bm:.1f} / {statistics.median(brokered):.1f} ms"),
                         ("broker overhead per job", f"{bm - lm:.1f} ms (x{bm / lm:.1f})")]
            if "affinity" in only:
                with_, took_with = model_loads(folder(), redis.url(), True)
                without, took_without = model_loads(folder(), redis.url(), False)
                rows += [("model loads, 30 jobs / 3 models / 2 workers, affinity on", f"{with_} ({took_with:.1f} s)"),
                         ("model loads, affinity off", f"{without} ({took_without:.1f} s)")]
    finally:
        redis.stop()
    print(f"worker mode on {len(os.sched_getaffinity(0))} core(s)\n")
    print("| measure | value |")
    print("|---|---|")
    for name, value in rows:
        print(f"| {name} | {value} |")


if __name__ == "__main__":
    main()

"""Worker mode end to end: a real redis-server, a real `flow serve` gateway, real `flow worker` processes.

Jobs are small chains of real text nodes (no model: tiny and CPU-only); outputs are written by the
workers into the gateway's output folder (the shared folder) and served by the gateway.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "gateway"))

from gateway_support import FLOW, Served  # noqa: E402

pytestmark = pytest.mark.slow  # real processes: a gateway and workers start in a few seconds each

TERMINAL = ("finished", "failed", "cancelled", "interrupted")


def saved_text(tag: str, n: int = 3) -> dict:
    """A few text.join nodes and a text.save: a tiny job with an output file."""
    nodes = {"n0": {"type": "text.join", "inputs": {"a": tag, "b": "0"}}}
    for i in range(1, n):
        nodes[f"n{i}"] = {"type": "text.join", "inputs": {"a": {"from": f"n{i - 1}", "output": "text"}, "b": "."}}
    nodes["save"] = {"type": "text.save", "inputs": {"text": {"from": f"n{n - 1}", "output": "text"}}}
    return {"name": f"job-{tag}", "nodes": nodes,
            "outputs": {"text": {"from": f"n{n - 1}", "output": "text"}, "file": {"from": "save", "output": "path"}}}


def long_job(tag: str, n: int = 900, chunk: int = 10_000) -> dict:
    """Seconds of work in many short nodes (a cancel lands between two of them)."""
    nodes = {"big": {"type": "primitive.text", "inputs": {"value": "x" * chunk}},
             "n0": {"type": "text.join", "inputs": {"a": tag, "b": "0"}}}
    for i in range(1, n):
        nodes[f"n{i}"] = {"type": "text.join", "inputs": {"a": {"from": f"n{i - 1}", "output": "text"},
                                                          "b": {"from": "big", "output": "value"}}}
    nodes["done"] = {"type": "text.template", "inputs": {"template": "{tag} done", "tag": tag,
                                                         "whole": {"from": f"n{n - 1}", "output": "text"}}}
    return {"name": f"long-{tag}", "nodes": nodes, "outputs": {"text": {"from": "done", "output": "text"}}}


class Cluster:
    """A gateway and its workers over one redis-server, all on 127.0.0.1; everything stops at the end."""

    def __init__(self, tmp: Path, redis_url: str, **env: str):
        import redis

        self.tmp = tmp
        self.redis = redis.Redis.from_url(redis_url)
        self.redis.flushall()
        self.env = {"FLOW_BROKER_URL": redis_url, "FLOW_PROBE_DEVICE": "0", "FLOW_CACHE_BYTES": "0",
                    "FLOW_JOB_TIME_LIMIT": "60", "FLOW_REQUEUE_LIMIT": "1", "FLOW_LOG_LEVEL": "WARNING", **env}
        self.gateway = Served(tmp, self.env)
        self.workers: dict[str, subprocess.Popen] = {}

    def start_gateway(self) -> None:
        self.gateway.start(timeout=60)

    def start_worker(self, name: str) -> None:
        env = {**self.gateway.env, **self.env}
        log = open(self.tmp / f"worker-{name}.log", "ab")
        self.workers[name] = subprocess.Popen([FLOW, "worker", "--name", name], env=env, cwd=self.tmp,
                                              stdout=log, stderr=subprocess.STDOUT)

    def wait_workers(self, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if all(self.redis.exists(f"flow:worker:{name}") for name in self.workers):
                return
            for name, proc in self.workers.items():
                assert proc.poll() is None, (self.tmp / f"worker-{name}.log").read_text()
            time.sleep(0.1)
        raise TimeoutError("the workers did not come up")

    def submit(self, doc: dict) -> str:
        status, body = self.gateway.call("POST", "/jobs", {"workflow": doc})
        assert status == 202, body
        return body["id"]

    def job(self, job_id: str) -> dict:
        return self.gateway.call("GET", f"/jobs/{job_id}")[1]

    def wait_ended(self, ids: list[str], timeout: float = 90) -> dict[str, dict]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            jobs = {i: self.job(i) for i in ids}
            if all(j["state"] in TERMINAL for j in jobs.values()):
                return jobs
            time.sleep(0.1)
        raise AssertionError(f"not ended: { {i: j['state'] for i, j in jobs.items()} }")

    def wait_running(self, job_id: str, timeout: float = 60) -> dict:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            job = self.job(job_id)
            if job["state"] == "running" and job.get("worker"):
                return job
            assert job["state"] not in TERMINAL, job
            time.sleep(0.02)
        raise AssertionError(f"job {job_id} never ran")

    def tries(self, job_id: str) -> int:
        return int(self.redis.get(f"flow:tries:{job_id}") or 0)

    def jobs_run(self) -> dict[str, int]:
        found = {}
        for name in self.workers:
            raw = self.redis.get(f"flow:worker:{name}")
            found[name] = json.loads(raw)["jobs_run"] if raw else None
        return found

    def stop(self) -> None:
        for proc in self.workers.values():
            if proc.poll() is None:
                proc.terminate()
        for proc in self.workers.values():
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        self.gateway.stop()
        self.redis.close()


def sse_kinds(cluster, job_id: str) -> list[str]:
    """The event kinds the gateway streams for a job run on a worker, up to its terminal one."""
    import urllib.request

    kinds = []
    with urllib.request.urlopen(f"{cluster.gateway.url}/jobs/{job_id}/events", timeout=60) as stream:
        for raw in stream:
            line = raw.decode().strip()
            if line.startswith("event:"):
                kinds.append(line[6:].strip())
                if kinds[-1] in ("job.finished", "job.failed", "job.cancelled"):
                    return kinds
    return kinds


@pytest.fixture
def cluster(tmp_path, redis_server, request):
    made = Cluster(tmp_path, redis_server.url(), **getattr(request, "param", {}))
    yield made
    made.stop()


def test_two_workers_run_twenty_jobs_exactly_once_and_the_gateway_serves_their_files(cluster):
    cluster.start_worker("w1")
    cluster.start_worker("w2")
    cluster.start_gateway()
    cluster.wait_workers()
    ids = [cluster.submit(saved_text(f"t{i}")) for i in range(20)]
    jobs = cluster.wait_ended(ids)
    assert {j["state"] for j in jobs.values()} == {"finished"}, jobs
    for i, job_id in enumerate(ids):
        job = jobs[job_id]
        assert job["outputs"]["text"] == f"t{i} 0. . ." or job["outputs"]["text"].startswith(f"t{i}")
        assert job["attempts"] == 1 and cluster.tries(job_id) == 1  # run once
        with __import__("urllib.request").request.urlopen(cluster.gateway.url + job["files"]["file"]) as response:
            assert response.read().decode() == job["outputs"]["text"]
    listed = cluster.gateway.call("GET", "/jobs?limit=100")[1]["jobs"]
    assert sorted(j["id"] for j in listed) == sorted(ids)  # each once in the history
    time.sleep(4)  # the workers' presence (jobs run) renews every few seconds
    ran = cluster.jobs_run()
    assert sum(ran.values()) == 20 and all(n > 0 for n in ran.values()), ran  # both took jobs
    kinds = sse_kinds(cluster, cluster.submit(long_job("sse", n=800)))
    assert {"node.started", "node.finished"} <= set(kinds) and kinds[-1] == "job.finished", kinds
    broker = cluster.gateway.call("GET", "/health")[1]["broker"]
    assert broker["reachable"] and [w["name"] for w in broker["workers"]] == ["w1", "w2"]
    assert all(w["queues"] == ["gpu", "cpu"] and w["models"] == [] for w in broker["workers"])


def test_sigkill_of_a_worker_mid_job_hands_the_job_to_the_other(cluster):
    cluster.start_worker("w1")
    cluster.start_worker("w2")
    cluster.start_gateway()
    cluster.wait_workers()
    job_id = cluster.submit(long_job("k", n=1500))
    running = cluster.wait_running(job_id)
    victim = running["worker"]
    cluster.workers[victim].send_signal(signal.SIGKILL)
    cluster.workers[victim].wait(10)
    after = cluster.submit(saved_text("after"))  # the gateway keeps serving meanwhile
    jobs = cluster.wait_ended([job_id, after], timeout=120)
    assert jobs[job_id]["state"] == "finished" and jobs[job_id]["outputs"]["text"] == "k done", jobs[job_id]
    assert jobs[job_id]["attempts"] == 2 and cluster.tries(job_id) == 2
    assert jobs[after]["state"] == "finished"
    listed = [j["id"] for j in cluster.gateway.call("GET", "/jobs?limit=100")[1]["jobs"]]
    assert sorted(listed) == sorted([job_id, after])


def test_cancel_reaches_the_worker_running_the_job(cluster):
    cluster.start_worker("w1")
    cluster.start_gateway()
    cluster.wait_workers()
    job_id = cluster.submit(long_job("c", n=3000))
    waiting = cluster.submit(saved_text("waiting"))  # queued in the broker behind it
    cluster.wait_running(job_id)
    time.sleep(0.3)
    started = time.monotonic()
    status, body = cluster.gateway.call("DELETE", f"/jobs/{job_id}")
    assert status in (200, 202), body
    while cluster.job(job_id)["state"] not in TERMINAL:
        assert time.monotonic() - started < 1.0, "not cancelled within 1 s"
        time.sleep(0.01)
    took = time.monotonic() - started
    assert cluster.job(job_id)["state"] == "cancelled" and took < 1.0
    status, body = cluster.gateway.call("DELETE", f"/jobs/{waiting}")  # not started: ended at once
    job = cluster.wait_ended([waiting])[waiting]
    assert job["state"] in ("cancelled", "finished")  # it may have started meanwhile (then it finished)
    later = cluster.submit(saved_text("later"))  # the worker goes on taking jobs
    assert cluster.wait_ended([later])[later]["state"] == "finished"


def test_sigkill_of_the_gateway_with_jobs_in_the_broker(cluster):
    cluster.start_worker("w1")
    cluster.start_gateway()
    cluster.wait_workers()
    ids = [cluster.submit(long_job(f"g{i}", n=600)) for i in range(6)]
    waiting = [i for i in ids if cluster.job(i)["state"] not in TERMINAL]
    assert len(waiting) >= 3, "the jobs ended before the gateway was killed: nothing tested"
    cluster.gateway.kill()
    cluster.start_gateway()
    jobs = cluster.wait_ended(ids, timeout=120)
    assert {j["state"] for j in jobs.values()} == {"finished"}, jobs
    assert all(cluster.tries(i) == 1 for i in ids)  # each ran once, though sent again after the restart
    listed = [j["id"] for j in cluster.gateway.call("GET", "/jobs?limit=100")[1]["jobs"]]
    assert sorted(listed) == sorted(ids)


def test_without_a_broker_a_worker_refuses_to_start(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "FLOW_BROKER_URL"}
    done = subprocess.run([FLOW, "worker"], env={**env, "FLOW_BROKER_URL": ""}, cwd=tmp_path, capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 2 and "FLOW_BROKER_URL" in done.stderr


@pytest.mark.parametrize("cluster", [{"FLOW_REQUEUE_LIMIT": "0"}], indirect=True)
def test_a_job_whose_worker_dies_past_the_requeue_limit_ends_interrupted(cluster):
    cluster.start_worker("w1")
    cluster.start_worker("w2")
    cluster.start_gateway()
    cluster.wait_workers()
    job_id = cluster.submit(long_job("i", n=1500))
    victim = cluster.wait_running(job_id)["worker"]
    cluster.workers[victim].send_signal(signal.SIGKILL)
    job = cluster.wait_ended([job_id], timeout=60)[job_id]
    assert job["state"] == "interrupted" and "submit it again" in job["error"]["message"], job
    assert cluster.tries(job_id) == 1  # not run again
    assert cluster.redis.exists(f"flow:end:{job_id}")  # the broker's late redelivery of it is dropped
    later = cluster.submit(saved_text("later"))  # the other worker goes on
    assert cluster.wait_ended([later])[later]["state"] == "finished"

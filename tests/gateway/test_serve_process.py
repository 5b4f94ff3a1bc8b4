"""A real `flow serve` process on 127.0.0.1: crash recovery, and CLI parity in process and remote."""

from __future__ import annotations

import json
import subprocess
import time

import pytest

from gateway_support import FLOW, ROOT

pytestmark = pytest.mark.slow  # each test starts a real `flow serve` (3 to 20 s)


def text_chain(n: int, tag: str) -> dict:
    """n text.join nodes in a chain: a small workflow."""
    nodes = {"n0": {"type": "text.join", "inputs": {"a": tag, "b": "0"}}}
    for i in range(1, n):
        nodes[f"n{i}"] = {"type": "text.join", "inputs": {"a": {"from": f"n{i - 1}", "output": "text"}, "b": "."}}
    return {"name": f"chain-{tag}", "nodes": nodes, "outputs": {"text": {"from": f"n{n - 1}", "output": "text"}}}


def heavy_job(tag: str, n: int = 200, chunk: int = 50_000) -> dict:
    """Cheap to submit, ~0.5 s to run: each join appends a 50 kB text to a growing one (O(n^2) bytes)."""
    doc = text_chain(n, tag)
    doc["nodes"]["big"] = {"type": "primitive.text", "inputs": {"value": "x" * chunk}}
    for i in range(1, n):
        doc["nodes"][f"n{i}"]["inputs"]["b"] = {"from": "big", "output": "value"}
    doc["nodes"]["done"] = {"type": "text.template", "inputs": {
        "template": "{tag} done", "tag": tag, "whole": {"from": f"n{n - 1}", "output": "text"}}}
    doc["outputs"] = {"text": {"from": "done", "output": "text"}}
    return doc


def wait_all_ended(server, ids, timeout=120):
    deadline = time.time() + timeout
    while time.time() < deadline:
        states = {i: server.call("GET", f"/jobs/{i}")[1]["state"] for i in ids}
        if all(s in ("finished", "failed", "cancelled", "interrupted") for s in states.values()):
            return states
        time.sleep(0.2)
    raise AssertionError(f"jobs still not ended: {states}")


def test_serve_sigkill_loses_no_job(served):
    server = served(FLOW_JOB_WORKERS=1, FLOW_CACHE_BYTES=0)
    ids = []
    for i in range(20):
        # the first job runs for seconds, so the others are still waiting when the server dies
        status, body = server.call("POST", "/jobs", {"workflow": heavy_job(f"job{i}", n=600 if i == 0 else 100)})
        assert status == 202, body
        ids.append(body["id"])
    before = {i: server.call("GET", f"/jobs/{i}")[1]["state"] for i in ids}
    print("states before the kill:", sorted(before.values()))
    server.kill()
    server.start()  # same database, same port
    states = wait_all_ended(server, ids)
    assert set(states.values()) <= {"finished", "interrupted"}, states
    listed = server.call("GET", "/jobs?limit=500")[1]["jobs"]
    assert sorted(j["id"] for j in listed) == sorted(ids)  # each job once, none lost, none duplicated
    for job_id in ids:
        job = server.call("GET", f"/jobs/{job_id}?include=workflow")[1]
        if job["state"] == "finished":
            assert job["outputs"]["text"] == job["workflow"]["name"].split("-")[1] + " done"
            assert job["attempts"] <= 2
    # the kill caught jobs waiting, and each of them ran after the restart
    queued = [i for i, s in before.items() if s == "queued"]
    assert queued, f"no job was waiting when the server was killed: {before}"
    assert all(states[i] == "finished" for i in queued)


def test_serve_restart_marks_twice_interrupted_job(served, tmp_path):
    """A job cut short twice is reported interrupted, not run forever."""
    from engine.jobstore import JobRecord, JobStore

    store = JobStore(tmp_path / "jobs.sqlite3")
    record = store.add(JobRecord(id="crashed", name="x", state="running", workflow=text_chain(2, "x"),
                                 params={}, outputs=None, created=time.time(), attempts=2))
    again = store.add(JobRecord(id="once", name="y", state="running", workflow=text_chain(2, "y"),
                                params={}, outputs=None, created=time.time(), attempts=1))
    store.save(record), store.save(again)
    store.close()
    server = served()
    states = wait_all_ended(server, ["crashed", "once"])
    assert states == {"crashed": "interrupted", "once": "finished"}
    assert "submit it again" in server.call("GET", "/jobs/crashed")[1]["error"]["message"]


def flow(*args, env=None, cwd=None):
    return subprocess.run([FLOW, *args], capture_output=True, text=True, timeout=120, env=env, cwd=cwd)


def test_cli_endpoint_in_process_and_against_server_agree(served, tmp_path):
    import os

    server = served()
    env = {**os.environ, "FLOW_OUTPUT_DIR": str(tmp_path / "cli-out")}
    local = flow("hello", "--name", "Kim", "--json", env=env, cwd=tmp_path)
    remote = flow("hello", "--name", "Kim", "--json", "--server", server.url, env=env, cwd=tmp_path)
    assert local.returncode == 0 and remote.returncode == 0, local.stderr + remote.stderr
    a, b = json.loads(local.stdout), json.loads(remote.stdout)
    assert a["outputs"]["text"] == b["outputs"]["text"] == "Hello, Kim!"
    assert set(a) == set(b) and a["executed"] == b["executed"]
    positional = flow("hello", "Lee", "--json", "--server", server.url, env=env, cwd=tmp_path)
    assert json.loads(positional.stdout)["outputs"]["text"] == "Hello, Lee!"
    run_remote = flow("run", str(ROOT / "workflows" / "hello.json"), "-p", "name=Max", "--json",
                      "--server", server.url, env=env, cwd=tmp_path)
    assert json.loads(run_remote.stdout)["outputs"]["text"] == "Hello, Max!"
    bad = flow("hello", "--server", server.url, "--punctuation", "x", "--name", "[1", env=env, cwd=tmp_path)
    assert bad.returncode == 0  # "[1" is not JSON: sent as the text it is
    invalid = flow("run", str(ROOT / "workflows" / "hello.json"), "-p", "nobody=1", "--server", server.url,
                   env=env, cwd=tmp_path)
    assert invalid.returncode == 2 and "param 'nobody'" in invalid.stderr


def test_cli_run_against_server_with_token(served, tmp_path):
    import os

    server = served(FLOW_API_TOKEN="tok")
    env = {**os.environ}
    denied = flow("hello", "--server", server.url, env=env, cwd=tmp_path)
    assert denied.returncode == 1 and "API token" in denied.stderr
    allowed = flow("hello", "--server", server.url, "--token", "tok", "--json", env=env, cwd=tmp_path)
    assert allowed.returncode == 0 and json.loads(allowed.stdout)["outputs"]["text"] == "Hello, world!"


def test_serve_stops_promptly_with_a_websocket_and_an_event_stream_open(served):
    import asyncio

    import aiohttp

    server = served()

    async def scenario():
        async with aiohttp.ClientSession() as session:
            ws = await session.ws_connect(server.url + "/ws")
            started = time.perf_counter()
            server.proc.terminate()
            message = await ws.receive(timeout=20)
            assert message.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED, aiohttp.WSMsgType.CLOSING)
            server.proc.wait(20)
            return time.perf_counter() - started

    assert asyncio.run(scenario()) < 10


def test_serve_probes_the_device_in_a_child_and_stays_without_torch(served):
    """/health answers at once ("probing" until the child process knows); torch never loads in the gateway."""
    server = served(FLOW_PROBE_DEVICE="true")
    first = server.call("GET", "/health")[1]["models"]
    assert first["device"] in ("probing", "cpu"), first
    deadline = time.time() + 120
    while time.time() < deadline:
        models = server.call("GET", "/health")[1]["models"]
        if models["device"] != "probing":
            break
        time.sleep(0.2)
    assert models["device"] == "cpu" and "no GPU" in models["budget_source"], models
    assert models["torch"]["version"].startswith("2.13"), models  # what the child saw
    with open(f"/proc/{server.proc.pid}/maps") as maps:
        assert "libtorch" not in maps.read()  # the gateway itself never imported it

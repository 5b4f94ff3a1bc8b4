"""The gateway in process (aiohttp's test client): endpoints, jobs, events, errors, auth, files."""

from __future__ import annotations

import asyncio
import json
import os
from pathlib import Path

from gateway_support import run
from gateway.keys import JOBS
from zoo import chain


def test_gateway_endpoint_waits_and_returns_outputs_seeds_params_timings(gateway):
    async def scenario():
        async with gateway() as client:
            response = await client.post("/hello", json={"name": "Ann"})
            body = await response.json()
            assert response.status == 200, body
            assert body["state"] == "finished" and body["outputs"]["text"] == "Hello, Ann!"
            assert body["params"] == {"name": "Ann", "punctuation": "!"}  # defaults included: what was used
            assert set(body["timings"]) == {"greeting", "end", "save"} and body["seeds"] == {}
            saved = await client.get(body["files"]["file"])
            assert saved.status == 200 and await saved.text() == "Hello, Ann!"

    run(scenario())


def test_gateway_async_request_answers_202_with_job_url(gateway):
    async def scenario():
        async with gateway() as client:
            for request in (client.post("/test/slow?wait=false", json={"seconds": 0.2}),
                            client.post("/test/slow", json={"seconds": 0.2}, headers={"Prefer": "respond-async"})):
                response = await request
                body = await response.json()
                assert response.status == 202 and body["url"] == f"/jobs/{body['id']}"
                assert response.headers["Location"] == body["url"]
                for _ in range(100):
                    job = await (await client.get(body["url"])).json()
                    if job["state"] == "finished":
                        break
                    await asyncio.sleep(0.05)
                assert job["outputs"] == {"value": "done"} and "workflow" not in job  # only when asked
                job = await (await client.get(body["url"] + "?include=workflow")).json()
                assert job["workflow"]["name"] == "slow"

    run(scenario())


def test_gateway_waiting_past_timeout_answers_202(gateway):
    async def scenario():
        async with gateway() as client:
            response = await client.post("/test/slow?timeout=0.05", json={"seconds": 1})
            assert response.status == 202 and (await response.json())["state"] in ("queued", "running")

    run(scenario())


def test_gateway_invalid_body_is_400_with_every_problem(gateway):
    async def scenario():
        async with gateway() as client:
            response = await client.post("/hello", json={"nam": "x", "punctuation": 3})
            body = await response.json()
            assert response.status == 400 and body["error"]["type"] == "invalid_workflow"
            where = {(p.get("param"), p.get("input")) for p in body["error"]["problems"]}
            assert where == {("nam", None), ("punctuation", "b")}
            for raw in (b"{not json", b"[1, 2]"):
                response = await client.post("/hello", data=raw, headers={"Content-Type": "application/json"})
                body = await response.json()
                assert response.status == 400 and body["error"]["type"] == "invalid_request"
            response = await client.post("/test/slow?timeout=-1", json={})
            assert response.status == 400 and "timeout" in (await response.json())["error"]["message"]

    run(scenario())


def test_gateway_node_failure_is_json_with_node_and_no_traceback(gateway):
    async def scenario():
        async with gateway() as client:
            response = await client.post("/test/fail", json={})
            body = await response.json()
            assert response.status == 500 and body["state"] == "failed"
            assert "position" not in body and "node" not in body  # live fields end with the job
            assert body["error"]["node"] == "f" and body["error"]["node_type"] == "zoo.fail"
            assert "it broke" in body["error"]["message"] and "Traceback" not in json.dumps(body)
            missing = await client.get("/jobs/nope")
            assert missing.status == 404 and (await missing.json())["error"]["type"] == "not_found"
            wrong = await client.get("/nowhere")
            assert wrong.status == 404 and "error" in await wrong.json()

    run(scenario())


def test_gateway_post_jobs_runs_any_graph(gateway):
    async def scenario():
        async with gateway() as client:
            response = await client.post("/jobs?wait=true", json={"workflow": chain(50).doc})
            body = await response.json()
            assert response.status == 200 and body["outputs"] == {"x": 50}
            accepted = await client.post("/jobs", json={"workflow": chain(5).doc})
            assert accepted.status == 202
            bad = await client.post("/jobs", json={"workflow": {"nodes": {"a": {"type": "zoo.nope"}}}})
            assert bad.status == 400 and (await bad.json())["error"]["problems"][0]["node"] == "a"
            listing = await (await client.get("/jobs?limit=1")).json()
            assert len(listing["jobs"]) == 1 and "next" in listing
            older = await (await client.get(listing["next"])).json()
            assert older["jobs"][0]["id"] != listing["jobs"][0]["id"]

    run(scenario())


def test_gateway_cancel_queued_running_and_ended(gateway):
    async def scenario():
        async with gateway() as client:
            running = await (await client.post("/test/slow?wait=false", json={"seconds": 5})).json()
            queued = await (await client.post("/test/slow?wait=false", json={"seconds": 5})).json()
            await asyncio.sleep(0.2)
            state = await (await client.get(queued["url"])).json()
            assert state["state"] == "queued" and state["position"] == 1
            now = await (await client.get(running["url"])).json()
            assert now["state"] == "running" and now["node"] == "s"
            assert (await client.delete(queued["url"])).status == 200
            assert (await client.delete(running["url"])).status == 200
            for _ in range(100):
                if (await (await client.get(running["url"])).json())["state"] == "cancelled":
                    break
                await asyncio.sleep(0.05)
            assert (await (await client.get(queued["url"])).json())["state"] == "cancelled"
            again = await client.delete(running["url"])
            assert again.status == 409 and (await again.json())["error"]["type"] == "conflict"

    run(scenario())


def test_gateway_full_queue_is_429_with_retry_after(gateway):
    async def scenario():
        async with gateway(max_queued=1) as client:
            await client.post("/test/slow?wait=false", json={"seconds": 2})
            await asyncio.sleep(0.1)  # the first one runs; the next waits; the third is refused
            await client.post("/test/slow?wait=false", json={"seconds": 2})
            refused = await client.post("/test/slow?wait=false", json={"seconds": 2})
            assert refused.status == 429 and int(refused.headers["Retry-After"]) >= 1
            assert (await refused.json())["error"]["type"] == "queue_full"

    run(scenario())


def test_gateway_retry_after_follows_the_measured_job_time(gateway):
    async def scenario():
        async with gateway(max_queued=1) as client:
            for _ in range(2):  # two 0.6 s jobs measured: the mean is about 0.6 s
                assert (await client.post("/test/slow", json={"seconds": 0.6})).status == 200
            await client.post("/test/slow?wait=false", json={"seconds": 3})
            await asyncio.sleep(0.1)
            await client.post("/test/slow?wait=false", json={"seconds": 3})
            refused = await client.post("/test/slow?wait=false", json={"seconds": 3})
            assert refused.status == 429 and refused.headers["Retry-After"] == "1"  # ceil(0.6 s): not a guess
            client.app[JOBS]._mean_s = 40.0  # as if jobs took 40 s: one must end before a place frees
            refused = await client.post("/test/slow?wait=false", json={"seconds": 3})
            assert refused.headers["Retry-After"] == "40"

    run(scenario())


def test_gateway_sse_events_in_order_with_one_terminal_event(gateway):
    async def scenario():
        async with gateway() as client:
            job = await (await client.post("/test/slow?wait=false", json={"seconds": 0.3})).json()
            response = await client.get(f"/jobs/{job['id']}/events")
            assert response.headers["Content-Type"].startswith("text/event-stream")
            kinds = [line[7:] for line in (await response.text()).splitlines() if line.startswith("event: ")]
            assert kinds[0] == "job.state" and kinds[-1] == "job.finished"
            assert sum(k in ("job.finished", "job.failed", "job.cancelled") for k in kinds) == 1
            # it connected while the node ran: the state snapshot, then progress, then the node's end
            assert kinds.index("node.progress") < kinds.index("node.finished") < kinds.index("job.finished")
            after = await client.get(f"/jobs/{job['id']}/events")  # an ended job: state, then its terminal event
            kinds = [line[7:] for line in (await after.text()).splitlines() if line.startswith("event: ")]
            assert kinds == ["job.state", "job.finished"]

    run(scenario())


def test_gateway_websocket_streams_every_job_and_filters(gateway):
    async def scenario():
        async with gateway() as client:
            ws_all = await client.ws_connect("/ws")
            job = await (await client.post("/test/slow?wait=false", json={"seconds": 0.1})).json()
            ws_one = await client.ws_connect(f"/ws?job={job['id']}")
            seen = []
            while True:
                message = json.loads((await ws_all.receive(timeout=5)).data)
                seen.append(message["event"])
                if message["event"] in ("job.finished", "job.failed", "job.cancelled"):
                    break
            assert seen[0] == "job.queued" and seen[-1] == "job.finished" and "node.progress" in seen
            assert seen.count("job.finished") == 1
            other = await (await client.post("/hello?wait=false", json={})).json()
            await asyncio.sleep(0.2)
            filtered = []
            while True:
                try:
                    filtered.append(json.loads((await ws_one.receive(timeout=0.3)).data))
                except asyncio.TimeoutError:
                    break
            assert all(m["job_id"] == job["id"] for m in filtered) and other["id"] != job["id"]
            await ws_all.close()
            await ws_one.close()

    run(scenario())


def test_gateway_auth_token_required_except_health(gateway):
    async def scenario():
        async with gateway(api_token="s3cret") as client:
            assert (await client.get("/health")).status == 200
            denied = await client.post("/hello", json={})
            assert denied.status == 401 and (await denied.json())["error"]["type"] == "unauthorized"
            assert (await client.get("/jobs", headers={"Authorization": "Bearer wrong"})).status == 401
            ok = await client.post("/hello", json={}, headers={"Authorization": "Bearer s3cret"})
            assert ok.status == 200
            job = (await ok.json())["id"]
            # ?token= only where a browser cannot send a header (EventSource and WebSocket): tokens in
            # URLs end up in logs and histories
            assert (await client.get(f"/jobs/{job}/events?token=s3cret")).status == 200
            assert (await client.get("/jobs?token=s3cret")).status == 401
        async with gateway() as client:
            assert (await client.post("/hello", json={})).status == 200

    run(scenario())


def test_gateway_files_refuse_every_way_out(gateway, settings, tmp_path):
    async def scenario():
        async with gateway() as client:
            out = settings.output_dir
            out.mkdir(parents=True, exist_ok=True)
            (tmp_path / "secret.txt").write_text("secret")
            os.symlink(tmp_path / "secret.txt", out / "planted.txt")
            (out / "ok.txt").write_text("fine")
            assert await (await client.get("/files/ok.txt")).text() == "fine"
            for path in ("/files/../secret.txt", "/files/%2e%2e/secret.txt", "/files/..%2fsecret.txt",
                         "/files/%2Fetc%2Fpasswd", "/files//etc/passwd", "/files/planted.txt"):
                response = await client.get(path)
                assert response.status == 404, path
                assert "secret" not in await response.text()

    run(scenario())


def test_gateway_catalogue_openapi_and_docs(gateway):
    async def scenario():
        async with gateway() as client:
            nodes = await (await client.get("/nodes")).json()
            assert "text.join" in nodes and "zoo.sleep" in nodes
            endpoints = await (await client.get("/endpoints")).json()
            hello = next(e for e in endpoints if e["path"] == "/hello")
            assert hello["request"]["properties"]["name"]["default"] == "world"
            assert hello["outputs"] == {"text": "TEXT", "file": "TEXT"}
            names = {w["name"] for w in await (await client.get("/workflows")).json()}
            assert names == {"hello", "slow", "failing"}
            assert (await (await client.get("/workflows/hello")).json())["endpoint"] == "/hello"
            document = await (await client.get("/openapi.json")).json()
            from openapi_spec_validator import validate

            validate(document)
            assert "/hello" in document["paths"] and "/jobs/{id}/events" in document["paths"]
            page = await (await client.get("/docs")).text()
            assert "POST /hello" in page and "text.template" in page

    run(scenario())


def test_gateway_metrics_prometheus_text(gateway):
    async def scenario():
        async with gateway() as client:
            await client.post("/hello", json={})
            await client.post("/hello", json={})
            text = await (await client.get("/metrics")).text()
            assert 'flow_jobs{state="finished"} 2' in text
            # the repeat's save node is cached too (its file is still as written)
            assert 'flow_node_runs_total{type="text.save"} 1' in text
            assert 'flow_node_cache_hits_total{type="text.save"} 1' in text
            assert 'flow_node_cache_hits_total{type="text.join"} 1' in text
            assert "flow_process_resident_bytes" in text

    run(scenario())


def test_gateway_workflow_that_shadows_a_route_is_refused(gateway, workflows_dir):
    (workflows_dir / "bad.json").write_text(json.dumps({"endpoint": "/jobs/x", "nodes": {
        "a": {"type": "primitive.text", "inputs": {"value": "x"}}}}))

    async def scenario():
        async with gateway() as client:
            health = await (await client.get("/health")).json()
            assert "bad" in health["workflow_problems"]
            assert "/jobs/x" not in health["endpoints"]

    run(scenario())


def test_gateway_body_size_limit_and_cors(gateway):
    async def scenario():
        async with gateway(max_body_bytes=1024, cors_origins="http://app.example") as client:
            big = await client.post("/hello", data=b'{"name": "' + b"x" * 4096 + b'"}',
                                    headers={"Content-Type": "application/json"})
            assert big.status == 413 and (await big.json())["error"]["type"] == "too_large"
            preflight = await client.options("/hello", headers={"Origin": "http://app.example",
                                                                "Access-Control-Request-Method": "POST"})
            assert preflight.status == 204
            assert preflight.headers["Access-Control-Allow-Origin"] == "http://app.example"
            other = await client.get("/health", headers={"Origin": "http://elsewhere.example"})
            assert "Access-Control-Allow-Origin" not in other.headers

    run(scenario())


def test_gateway_models_api(registry, settings, tmp_path):
    from aiohttp.test_utils import TestClient, TestServer

    from engine import Engine
    from engine.models import ModelManager, ModelStore
    from server import create_app

    async def scenario():
        models = ModelManager(ModelStore(tmp_path / "models"), device="cpu", gpu_budget=1 << 20)
        engine = Engine(registry, models=models, output_dir=settings.output_dir)
        client = TestClient(TestServer(create_app(engine, settings.with_(probe_device=False))))
        await client.start_server()
        try:
            listing = await client.get("/models")
            assert listing.status == 200 and (await listing.json())["models"] == []
            loaded = await (await client.get("/models/loaded")).json()
            assert loaded["device"] == "cpu" and loaded["models"] == []
            unloaded = await client.post("/models/unload", json={})
            assert unloaded.status == 200 and (await unloaded.json())["unloaded"] == []
            for ref in ("hf:../../etc", "file:///etc/passwd", "x" * 10_000):
                refused = await client.post("/models/pull", json={"ref": ref})
                assert refused.status == 400, ref
                assert (await refused.json())["error"]["type"] == "invalid_model_ref"
            assert (await client.post("/models/pull", json={})).status == 400
            health = await (await client.get("/health")).json()
            assert health["models"]["device"] == "cpu"
        finally:
            await client.close()
            engine.close()

    run(scenario())


def test_gateway_repeat_request_answers_at_once_with_the_same_file(gateway):
    """An identical request while a long job holds the worker: every node is cached (its save node's
    too, while the file is there), so it does not wait for the long job, answers the file written
    the first time, and is a stored job; once that file is gone, a repeat writes it again."""

    async def scenario():
        async with gateway() as client:
            first = await (await client.post("/hello", json={"name": "Bo"})).json()
            slow = await (await client.post("/test/slow?wait=false", json={"seconds": 1.0})).json()
            await asyncio.sleep(0.1)
            assert (await (await client.get(slow["url"])).json())["state"] == "running"
            started = asyncio.get_running_loop().time()
            response = await client.post("/hello", json={"name": "Bo"})
            took = asyncio.get_running_loop().time() - started
            again = await response.json()
            assert response.status == 200 and again["state"] == "finished" and took < 0.5
            assert again["executed"] == [] and again["files"]["file"] == first["files"]["file"]  # no copy
            assert (await (await client.get(f"/jobs/{again['id']}")).json())["state"] == "finished"
            file = await client.get(first["files"]["file"])
            assert file.status == 200 and await file.text() == "Hello, Bo!"
            await asyncio.sleep(1.0)  # the long job ends
            Path(first["outputs"]["file"]).unlink()
            anew = await (await client.post("/hello", json={"name": "Bo"})).json()
            assert anew["executed"] == ["save"] and anew["files"]["file"] != first["files"]["file"]
            assert await (await client.get(anew["files"]["file"])).text() == "Hello, Bo!"
            # a fully cached job (every output in the cache) does not wait at all
            await (await client.post("/test/slow", json={"seconds": 0.2, "value": "v"})).json()
            slow = await (await client.post("/test/slow?wait=false", json={"seconds": 1.0})).json()
            await asyncio.sleep(0.1)
            started = asyncio.get_running_loop().time()
            cached = await (await client.post("/test/slow", json={"seconds": 0.2, "value": "v"})).json()
            assert asyncio.get_running_loop().time() - started < 0.5
            assert cached["state"] == "finished" and cached["executed"] == [] and cached["outputs"] == {"value": "v"}
            stored = await (await client.get(f"/jobs/{cached['id']}")).json()
            assert stored["state"] == "finished" and stored["outputs"] == {"value": "v"}

    run(scenario())


def test_gateway_malformed_multipart_bodies_are_400(gateway):
    """Multipart bodies broken as the fuzzer broke them (a part's header line that is not a header, a
    part cut short, no boundary at all) answer 400 naming the problem, never 500."""
    boundary = "e5947ff755fb6589371dca646723d996"
    bodies = [f"--{boundary}\r\n522275--{boundary}--\r\n",
              f"--{boundary}\r\nContent-Disposition: form-data; name=image; filename=a.png\r\n\r\nxyz",
              "no boundary here"]

    async def scenario():
        async with gateway() as client:
            answers = []
            for path in ("/inputs", "/products", "/v1/images/edits"):
                for body in bodies:
                    response = await client.post(path, data=body.encode(), headers={
                        "Content-Type": f"multipart/form-data; boundary={boundary}"})
                    answers.append((path, response.status, await response.json()))
            return answers

    for path, status, body in run(scenario()):
        assert status == 400, (path, body)
        message = body["error"]["message"] if isinstance(body["error"], dict) else body["error"]
        assert any(word in message for word in ("malformed", "cannot be read", "not a readable")), (path, message)

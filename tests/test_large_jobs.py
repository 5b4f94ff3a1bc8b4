"""Large graphs: built and planned off the event loop, cancelled promptly, their errors capped.

Bounds here are generous (a slow shared CI machine); bench/loop.py measures the real figures
against a running `flow serve`.
"""

from __future__ import annotations

import asyncio
import gc
import json
import threading
import time
import weakref

import pytest

from engine import FLOAT, Input, InvalidWorkflow, Node, Output, Problem, Registry
from zoo import chain

LARGE = 3000  # nodes: above engine.large.LARGE_GRAPH, small enough for a quick test


class Busy(Node):
    """Spin on the event loop's thread for a while (a cheap inline node, only slower)."""

    type = "testing.busy"
    blocking = False
    inputs = {"x": Input(FLOAT, "passed through", default=0.0),
              "seconds": Input(FLOAT, "how long to spin", default=0.001, minimum=0)}
    outputs = {"x": Output(FLOAT, "x")}

    def run(self, ctx, x, seconds):
        end = time.perf_counter() + seconds
        while time.perf_counter() < end:
            pass
        return {"x": x}


def busy_chain(n: int) -> dict:
    nodes = {"n0": {"type": "testing.busy", "inputs": {}}}
    for i in range(1, n):
        nodes[f"n{i}"] = {"type": "testing.busy", "inputs": {"x": {"from": f"n{i - 1}", "output": "x"}}}
    return {"name": "busy", "nodes": nodes, "outputs": {"x": {"from": f"n{n - 1}", "output": "x"}}}


def unknown_nodes(n: int) -> dict:
    return {"name": "invalid", "nodes": {f"n{i}": {"type": "nope.nothing", "inputs": {}} for i in range(n)}}


@pytest.fixture
def queue(tmp_path):
    """``queue(engine)`` -> a JobQueue over a store under tmp_path (start it inside the loop)."""
    from engine.jobs import JobQueue
    from engine.jobstore import JobStore

    stores = []

    def make(engine):
        stores.append(JobStore(tmp_path / "jobs.sqlite3"))
        return JobQueue(engine, stores[-1], present=lambda wf, result, job: {"outputs": result.outputs})

    yield make
    for store in stores:
        store.close()


def test_invalid_workflow_json_carries_the_first_problems_and_their_count():
    exc = InvalidWorkflow([Problem(f"bad {i}", node=f"n{i}") for i in range(5000)])
    body = exc.to_json()
    assert len(body["problems"]) == InvalidWorkflow.SHOWN == 100 and body["count"] == 5000
    assert body["problems"][0] == {"message": "bad 0", "node": "n0"}
    assert len(exc.problems) == 5000  # the CLI still lists every one
    assert str(exc).startswith("5000 problems") and str(exc).endswith("... and 4900 more")
    assert len(json.dumps(body)) < 20_000
    few = InvalidWorkflow([Problem("one")])
    assert few.to_json()["count"] == 1 and "more" not in str(few)
    # A client re-raising a server's capped list keeps the server's total.
    assert InvalidWorkflow(exc.shown, count=5000).count == 5000


def test_job_of_many_invalid_nodes_fails_with_a_capped_error(engine, queue):
    jobs = queue(engine)

    async def main():
        await jobs.start()
        try:
            with pytest.raises(InvalidWorkflow) as caught:
                await jobs.accept(unknown_nodes(LARGE), {})
        finally:
            await jobs.stop()
        return caught.value

    exc = asyncio.run(main())
    assert exc.count == LARGE and len(exc.to_json()["problems"]) == 100
    assert "unknown node type 'nope.nothing'" in exc.problems[-1].message


def test_gateway_error_body_of_many_invalid_nodes_is_capped(registry, tmp_path):
    from aiohttp.test_utils import TestClient, TestServer

    from engine import Engine, MemoryCache
    from engine.settings import Settings
    from server import create_app

    settings = Settings(output_dir=tmp_path / "out", workflows_dir=tmp_path, jobs_db=tmp_path / "jobs.sqlite3")
    engine = Engine(registry, cache=MemoryCache(1 << 20), output_dir=settings.output_dir)

    async def main():
        async with TestClient(TestServer(create_app(engine, settings))) as client:
            response = await client.post("/jobs", json={"workflow": unknown_nodes(LARGE)})
            return response.status, await response.read()

    try:
        status, raw = asyncio.run(main())
    finally:
        engine.close()
    error = json.loads(raw)["error"]
    assert status == 400 and len(error["problems"]) <= 100 and error["count"] == LARGE
    assert len(raw) < 64_000


def test_cancel_ends_a_large_running_job_promptly(tmp_path, queue):
    import nodes
    from engine import Engine, NullCache

    engine = Engine(Registry([*nodes.NODES, Busy]), cache=NullCache(), output_dir=tmp_path / "out")
    jobs = queue(engine)

    async def main():
        await jobs.start()
        events = jobs.subscribe()
        try:
            record = await jobs.accept(busy_chain(LARGE), {})  # ~3 s of inline work when left to run
            while (event := await events.next(30)).kind != "node.finished":
                pass
            asked = time.monotonic()
            jobs.cancel(record.id)
            while not (event := await events.next(30)).terminal:
                pass
            took = time.monotonic() - asked
            return event, (await jobs.wait(record.id, 10)).state, took
        finally:
            jobs.unsubscribe(events)
            await jobs.stop()
            engine.close()

    terminal, state, took = asyncio.run(main())
    assert terminal.kind == "job.cancelled" and state == "cancelled"
    assert took < 2.0  # bench/loop.py: well under 0.2 s for 100k nodes


def test_large_graph_is_compiled_and_planned_off_the_event_loop(engine, queue, monkeypatch):
    import engine.executor as executor

    threads: dict[str, set[int]] = {"compile": set(), "plan": set()}
    compile_workflow, plan = executor.compile_workflow, executor.Engine.plan

    def recording_compile(*args, **kwargs):
        threads["compile"].add(threading.get_ident())
        return compile_workflow(*args, **kwargs)

    def recording_plan(self, *args, **kwargs):
        threads["plan"].add(threading.get_ident())
        return plan(self, *args, **kwargs)

    monkeypatch.setattr(executor, "compile_workflow", recording_compile)
    monkeypatch.setattr(executor.Engine, "plan", recording_plan)
    jobs = queue(engine)

    async def main():
        await jobs.start()
        try:
            record = await jobs.accept(chain(LARGE).doc, {})
            return threading.get_ident(), await jobs.wait(record.id, 60)
        finally:
            await jobs.stop()

    loop_thread, done = asyncio.run(main())
    assert done.state == "finished" and done.result["outputs"] == {"x": LARGE}
    assert threads["compile"] and threads["plan"]
    assert loop_thread not in threads["compile"] | threads["plan"]


def test_engine_keeps_no_workflow_alive_after_its_run(engine):
    workflow = chain(20).build()
    gone = weakref.ref(workflow)
    assert engine.run_sync(workflow).outputs == {"x": 20}
    del workflow
    gc.collect()
    assert gone() is None  # the compiled form holds it weakly: no job's graph is kept for good


def test_job_store_lists_jobs_without_their_workflow(tmp_path):
    from engine.jobstore import FINISHED, JobRecord, JobStore

    store = JobStore(tmp_path / "jobs.sqlite3")
    try:
        doc = chain(3).doc
        store.add(JobRecord(id="a", name="a", state="queued", workflow=doc, params={}, outputs=None,
                            created=time.time()))
        record = store.get("a")
        record.state, record.result = FINISHED, {"outputs": {"x": 3}}
        store.save(record)
        assert [r.workflow for r in store.page()] == [None]
        assert [r.workflow for r in store.with_state(FINISHED)] == [None]
        again = store.get("a")
        assert again.workflow == doc and again.result == {"outputs": {"x": 3}}
        assert store.get("a", workflow=False).workflow is None
    finally:
        store.close()


def test_large_json_round_trips():
    from engine import large

    values = [
        {}, [], {"a": 1}, chain(2500).doc,
        {"timings": {f"n{i}": i * 1e-6 for i in range(3001)}, "executed": [f"n{i}" for i in range(2001)],
         "keys": {1: 2, 2.5: 3, False: 4, None: [1] * 1500}},
        [[1] * 1500, {"a": [2] * 1001}], list(range(1001)),
    ]
    for value in values:
        expected = json.loads(json.dumps(value))
        assert json.loads(large.dumps(value)) == expected
        assert large.loads(json.dumps(value)) == expected


def test_quiet_gc_pauses_collection_while_building_then_freezes_what_was_built():
    from engine.large import LARGE_GRAPH, quiet_gc, settle_gc

    if not gc.isenabled():
        pytest.skip("the garbage collector is off in this process")
    try:
        with quiet_gc(nodes=LARGE_GRAPH):
            assert gc.isenabled()  # a small graph pauses nothing
        with quiet_gc():
            assert not gc.isenabled()
            with quiet_gc(nodes=LARGE_GRAPH + 1):
                assert not gc.isenabled()
            assert not gc.isenabled()  # still inside the outer pause
        assert gc.isenabled() and gc.get_freeze_count() > 0
    finally:
        settle_gc()
    assert gc.get_freeze_count() == 0

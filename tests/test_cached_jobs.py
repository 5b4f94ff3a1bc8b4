"""Fully cached jobs end on submission (no worker, no queue), stored once with their end; the job
store's log is checkpointed by its own thread, never inside a commit on the event loop."""

from __future__ import annotations

import asyncio
import sqlite3
import time

import pytest

from engine import BOOL, FLOAT, JSON, Input, Node, Output
from engine.jobs import JobQueue
from engine.jobstore import JobStore

ADD = {"name": "add", "params": {"a": {"description": "first", "bind": [{"node": "sum", "input": "a"}]}},
       "nodes": {"sum": {"type": "zoo.add", "inputs": {"a": 1, "b": 2}},
                 "next": {"type": "zoo.inc", "inputs": {"x": {"from": "sum", "output": "sum"}}}},
       "outputs": {"x": {"from": "next", "output": "x"}}}
SLEEP = {"name": "sleep", "nodes": {"s": {"type": "zoo.sleep", "inputs": {"seconds": 0.5, "value": 1}}},
         "outputs": {"value": {"from": "s", "output": "value"}}}


@pytest.fixture
def store(tmp_path):
    store = JobStore(tmp_path / "jobs.sqlite3")
    yield store
    store.close()


@pytest.fixture
def statements(store, monkeypatch) -> list[str]:
    """The kind of every write ("insert", "update") the store commits from now on."""
    written: list[str] = []
    real = store._transaction
    monkeypatch.setattr(store, "_transaction", lambda ops: (written.extend(op[0] for op in ops), real(ops)))
    return written


def make_queue(engine, store) -> JobQueue:
    return JobQueue(engine, store, present=lambda wf, result, job: {"outputs": result.outputs,
                                                                     "executed": result.executed})


def test_cached_job_ends_on_submission_behind_a_running_job(engine, store):
    """A job whose outputs are all cached ends at once, even while another job holds the only worker."""

    async def main():
        queue = make_queue(engine, store)
        await queue.start()
        first = await queue.accept(ADD, {"a": 5})  # runs its nodes: fills the cache
        assert (await queue.wait(first.id, 10)).result == {"outputs": {"x": 8}, "executed": ["sum", "next"],
                                                           "params": {"a": 5}}
        slow = await queue.accept(SLEEP)
        await asyncio.sleep(0.05)
        assert queue.get(slow.id).state == "running"
        events = queue.subscribe()
        started = time.perf_counter()
        again = await queue.accept(ADD, {"a": 5})
        took = time.perf_counter() - started
        seen = [event.kind for event in (events.queue.get_nowait() for _ in range(events.queue.qsize()))
                if event.job_id == again.id]
        in_memory = queue.get(again.id)
        await queue.wait(slow.id, 10)
        await queue.stop()
        return again, in_memory, took, seen, queue.get(slow.id)

    again, in_memory, took, seen, slow = asyncio.run(main())
    assert again.state == in_memory.state == "finished" and took < 0.4  # not after the 0.5 s job
    assert again.result == {"outputs": {"x": 8}, "executed": [], "params": {"a": 5}}
    assert again.attempts == 1 and again.started == again.ended
    # published once stored: the same kinds a queued run emits, in order, one terminal event
    assert seen == ["job.queued", "job.started", "node.cached", "job.finished"]
    assert slow.state == "finished"
    stored = store.get(again.id)
    assert stored.state == "finished" and stored.result == again.result and stored.workflow == ADD


def test_uncached_or_changed_job_still_runs_in_the_queue(engine, store):
    """Another param value misses the cache: that job runs its nodes in the queue, as before."""

    async def main():
        queue = make_queue(engine, store)
        await queue.start()
        one = await queue.accept(ADD, {"a": 1})
        two = await queue.accept(ADD, {"a": 2}, wait_stored=False)
        assert two.state == "queued"
        await queue.stored(two.id)
        results = [(await queue.wait(job.id, 10)).result for job in (one, two)]
        await queue.stop()
        return results

    one, two = asyncio.run(main())
    assert one["executed"] == two["executed"] == ["sum", "next"]
    assert two["outputs"] == {"x": 5}  # (2 + 2) + 1


def test_cached_job_is_written_once_with_its_end(engine, store, statements):
    """One insert and no update for a job that ended on submission."""

    async def main():
        queue = make_queue(engine, store)
        await queue.start()
        await queue.wait((await queue.accept(ADD, {"a": 3})).id, 10)
        await asyncio.sleep(0.05)  # the first job's end is committed
        statements.clear()
        cached = await queue.accept(ADD, {"a": 3}, wait_stored=False)
        await queue.stored(cached.id)
        await queue.stop()
        return cached

    cached = asyncio.run(main())
    assert cached.state == "finished" and statements == ["insert"]


def test_checkpoints_run_in_their_own_thread_not_in_commits(tmp_path, monkeypatch):
    """Commits leave the log to the checkpointer thread, which empties it into the database."""
    monkeypatch.setattr("engine.jobstore._Checkpoints.IDLE_S", 0.05)
    store = JobStore(tmp_path / "jobs.sqlite3")
    wal = tmp_path / "jobs.sqlite3-wal"
    with store._db() as db:
        assert db.execute("PRAGMA wal_autocheckpoint").fetchone()[0] == 0  # never inside a commit
    from engine.jobstore import JobRecord

    for i in range(50):
        store.add(JobRecord(id=f"job{i}", name="x", state="finished", workflow={"nodes": {}}, params={},
                            outputs=None, created=time.time()))
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and store._checkpoints._commits:
        time.sleep(0.02)
    assert store._checkpoints._commits == 0
    # another connection that never reads the log sees every job in the database file
    store.close()
    assert not wal.exists() or wal.stat().st_size == 0  # closing truncated it
    with sqlite3.connect(tmp_path / "jobs.sqlite3") as db:
        assert db.execute("SELECT COUNT(*) FROM jobs").fetchone()[0] == 50


class MaybeCheap(Node):
    """Sleep in a thread unless told it is cheap (then inline): its place is known only at run time."""

    type = "testing.maybe_cheap"
    inputs = {"seconds": Input(FLOAT, "how long", minimum=0), "cheap_": Input(BOOL, "run inline", default=False)}
    outputs = {"ran": Output(JSON, "when it ran: [start, end]")}

    @classmethod
    def cheap(cls, inputs, run) -> bool:
        return bool(inputs.get("cheap_"))

    def run(self, ctx, seconds, cheap_):
        start = time.perf_counter()
        time.sleep(seconds)
        return {"ran": [start, time.perf_counter()]}


def maybe(seconds: float, cheap: bool, tag: str) -> dict:
    return {"name": f"maybe-{tag}", "nodes": {"m": {"type": "testing.maybe_cheap",
                                                     "inputs": {"seconds": seconds, "cheap_": cheap}},
                                               "tag": {"type": "zoo.const", "inputs": {"value": tag}}},
            "outputs": {"ran": {"from": "m", "output": "ran"}, "tag": {"from": "tag", "output": "value"}}}


@pytest.fixture
def maybe_engine(registry, tmp_path):
    from engine import Engine, MemoryCache, Registry

    engine = Engine(Registry([*registry, MaybeCheap]), cache=MemoryCache(1 << 20),
                    output_dir=tmp_path / "out")
    yield engine
    engine.close()


def test_waiting_caller_runs_a_cheap_job_itself_when_the_queue_is_idle(maybe_engine, store, statements):
    """Nothing queued, a worker free: the job runs in accept (ended on return), written as one row."""

    async def main():
        queue = make_queue(maybe_engine, store)
        await queue.start()
        record = await queue.accept(maybe(0.0, True, "a"), waiting=True, wait_stored=False)
        state = record.state
        await queue.stored(record.id)
        await asyncio.sleep(0.05)
        await queue.stop()
        return state, record

    state, record = asyncio.run(main())
    assert state == "finished" and record.result["executed"] == ["m", "tag"]
    assert statements == ["insert"]  # its start and its end went into its insert
    assert store.get(record.id).state == "finished"


def test_caller_run_job_holds_the_only_worker_place(maybe_engine, store):
    """A job its caller runs that goes to a thread after all still counts as the one running job:
    a job queued meanwhile starts after it ends, and a waiting caller behind it queues."""

    async def main():
        queue = make_queue(maybe_engine, store)
        await queue.start()
        first = asyncio.ensure_future(queue.accept(maybe(0.3, False, "first"), waiting=True))
        await asyncio.sleep(0.05)
        assert queue._running == 1
        second = await queue.accept(maybe(0.0, False, "second"))
        third = await queue.accept(maybe(0.0, True, "third"), waiting=True, wait_stored=False)
        assert (second.state, third.state) == ("queued", "queued")
        first = await first
        ends = [await queue.wait(job.id, 10) for job in (first, second, third)]
        await queue.stop()
        return ends

    first, second, third = asyncio.run(main())
    assert [job.state for job in (first, second, third)] == ["finished"] * 3
    assert first.result["outputs"]["ran"][1] <= second.result["outputs"]["ran"][0]
    assert second.result["outputs"]["ran"][1] <= third.result["outputs"]["ran"][0]


def _counting_plans(engine, monkeypatch) -> list[int]:
    made: list[int] = []
    real = engine.plan_now
    monkeypatch.setattr(engine, "plan_now", lambda *a, **k: (made.append(1), real(*a, **k))[1])
    return made


def test_repeat_of_an_endpoint_request_reuses_its_plan_while_the_cache_holds_it(engine, store, monkeypatch):
    """A long-lived workflow's identical request, once it ended from the cache, is not validated or
    planned again: the same result and events, a stored job of its own. Another param, another
    output list, or the cache losing the values, plan anew."""
    from engine import Workflow

    add = Workflow.from_dict(ADD)
    plans = _counting_plans(engine, monkeypatch)

    async def main():
        queue = make_queue(engine, store)
        await queue.start()
        ran = await queue.wait((await queue.accept(add, {"a": 5}, repeats=True)).id, 10)
        cached = await queue.wait((await queue.accept(add, {"a": 5}, repeats=True)).id, 10)
        planned = len(plans)
        events = queue.subscribe()
        repeat = await queue.wait((await queue.accept(add, {"a": 5}, repeats=True)).id, 10)
        seen = [event.kind for event in (events.queue.get_nowait() for _ in range(events.queue.qsize()))
                if event.job_id == repeat.id]
        assert len(plans) == planned  # neither validated nor planned
        assert [r.plan.hits for r in queue._repeats.values()] == [{}]  # no cached value held past the cache's bound
        other = await queue.wait((await queue.accept(add, {"a": 6}, repeats=True)).id, 10)
        narrowed = await queue.wait((await queue.accept(add, {"a": 5}, outputs=["x"], repeats=True)).id, 10)
        assert len(plans) == planned + 2
        engine.cache.clear()
        again = await queue.wait((await queue.accept(add, {"a": 5}, repeats=True)).id, 10)
        await queue.stop()
        return ran, cached, repeat, seen, other, narrowed, again

    ran, cached, repeat, seen, other, narrowed, again = asyncio.run(main())
    assert ran.result["executed"] == ["sum", "next"] and cached.result["executed"] == []
    assert repeat.result == cached.result and repeat.id != cached.id and repeat.state == "finished"
    assert seen == ["job.queued", "job.started", "node.cached", "job.finished"]
    assert store.get(repeat.id).result == cached.result  # a stored job like any other
    assert other.result["outputs"] == {"x": 9} and other.result["executed"] == ["sum", "next"]
    assert narrowed.result["outputs"] == {"x": 8} and narrowed.result["executed"] == []
    assert again.result["executed"] == ["sum", "next"]  # the cache lost the values: run again


def test_repeats_are_not_remembered_for_drawn_seeds_or_one_off_workflows(engine, store, monkeypatch):
    """A drawn seed makes each run another (nothing to reuse); a workflow parsed for one request
    (a dict, or `repeats` not given) is never remembered."""
    from engine import Workflow

    rand = Workflow.from_dict({"name": "rand", "nodes": {"r": {"type": "zoo.rand", "inputs": {}}},
                               "outputs": {"value": {"from": "r", "output": "value"}}})
    seeded = Workflow.from_dict({"name": "seeded", "nodes": {"r": {"type": "zoo.rand", "inputs": {"seed": 3}}},
                                 "outputs": {"value": {"from": "r", "output": "value"}}})

    async def main():
        queue = make_queue(engine, store)
        await queue.start()
        drawn = [(await queue.wait((await queue.accept(rand, repeats=True)).id, 10)).result for _ in range(3)]
        for _ in range(3):
            await queue.wait((await queue.accept(ADD, {"a": 1}, repeats=True)).id, 10)
            await queue.wait((await queue.accept(Workflow.from_dict(ADD), {"a": 1})).id, 10)
        remembered_before = len(queue._repeats)
        for _ in range(3):
            await queue.wait((await queue.accept(seeded, repeats=True)).id, 10)
        await queue.stop()
        return drawn, remembered_before, len(queue._repeats)

    drawn, before, after = asyncio.run(main())
    assert len({result["outputs"]["value"] for result in drawn}) == 3  # every run drew its own seed
    assert before == 0 and after == 1  # only the given seed's workflow

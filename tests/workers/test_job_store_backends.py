"""The job store's contract, run on SQLite and on a real PostgreSQL server (``store_target``).

Each test runs twice: on a SQLite file and on a fresh database of a PostgreSQL server the session
started (tests/workers/worker_servers.py). Same interface, same semantics: accepted before
acknowledged, group commit, documents stored once per hash, paging, recovery by a queue.
"""

from __future__ import annotations

import asyncio
import time

import pytest

from zoo import chain


def open_(target):
    from engine.pgstore import open_store

    return open_store(target)


def record(job_id: str, doc: dict | None = None, state: str = "queued", outputs=None, **extra):
    from engine.jobstore import JobRecord

    return JobRecord(id=job_id, name=job_id, state=state, workflow=doc if doc is not None else chain(3).doc,
                     params={"p": job_id}, outputs=outputs, created=time.time(), **extra)


def document_rows(store) -> int:
    with store._db() as db:
        row = db.execute("SELECT COUNT(*) AS n FROM documents").fetchone()
    return row["n"] if isinstance(row, dict) else row[0]


@pytest.fixture
def store(store_target):
    store = open_(store_target)
    yield store
    store.close()


def test_open_store_picks_the_backend_by_target(store_target):
    from engine.jobstore import JobStore
    from engine.pgstore import PgJobStore

    store = open_(store_target)
    try:
        assert isinstance(store, JobStore)
        assert isinstance(store, PgJobStore) == str(store_target).startswith("postgresql://")
    finally:
        store.close()


def test_add_get_save_and_reads_without_the_workflow(store):
    from engine.jobstore import FINISHED

    doc = chain(3).doc
    added = store.add(record("a", doc))
    assert added.seq > 0
    got = store.get("a")
    assert got.workflow == doc and got.params == {"p": "a"} and got.state == "queued" and got.result is None
    got.state, got.result, got.ended, got.attempts = FINISHED, {"outputs": {"x": 3}}, time.time(), 1
    store.save(got)
    assert [r.workflow for r in store.page()] == [None]
    assert [r.workflow for r in store.with_state(FINISHED)] == [None]
    again = store.get("a")
    assert again.workflow == doc and again.result == {"outputs": {"x": 3}} and again.attempts == 1
    assert store.get("a", workflow=False).workflow is None
    assert store.get("missing") is None and store.get("missing", workflow=False) is None


def test_error_outputs_and_odd_values_round_trip(store):
    job = record("e", outputs=["x"])
    job.params = {"text": "naïve \u0000 zero", "n": 1.5, "list": [1, {"a": None}]}
    store.add(job)
    job.state, job.error = "failed", {"type": "node_failed", "message": "bad \u0000 input", "node": "n1"}
    job.result = {"score": float("nan")}  # not strict JSON: stored as Python writes it
    store.save(job)
    got = store.get("e")
    assert got.outputs == ["x"] and got.params == job.params and got.error == job.error
    assert got.result["score"] != got.result["score"]  # NaN survives


def test_paging_newest_first_by_state_and_counts(store):
    for i in range(25):
        store.add(record(f"j{i:02d}", state="finished" if i % 2 else "queued"))
    first = store.page(limit=10)
    assert [r.id for r in first] == [f"j{i:02d}" for i in range(24, 14, -1)]
    second = store.page(limit=10, before=first[-1].seq)
    assert [r.id for r in second] == [f"j{i:02d}" for i in range(14, 4, -1)]
    assert [r.id for r in store.page(limit=10, before=second[-1].seq)] == [f"j{i:02d}" for i in range(4, -1, -1)]
    finished = store.page(state="finished", limit=100)
    assert len(finished) == 12 and all(r.state == "finished" for r in finished)
    assert [r.id for r in store.with_state("queued")] == [f"j{i:02d}" for i in range(0, 25, 2)]  # oldest first
    assert store.counts() == {"queued": 13, "finished": 12}


def test_a_workflow_document_is_stored_once_per_hash(store):
    doc = chain(4).doc
    for i in range(5):
        store.add(record(f"same{i}", doc))
    store.add(record("other", chain(5).doc))
    assert document_rows(store) == 2
    assert all(store.get(f"same{i}").workflow == doc for i in range(5))


def test_writes_on_the_loop_share_one_commit_and_resolve_once_committed(store_target):
    store = open_(store_target)
    commits = []
    real = store._transaction
    store._transaction = lambda ops: (commits.append(len(ops)), real(ops))[1]

    async def main():
        futures = [store.add_async(record(f"g{i}")) for i in range(40)]
        assert not any(f.done() for f in futures)  # nothing written before the loop's turn ends
        await asyncio.gather(*futures)

    try:
        asyncio.run(main())
        assert commits == [40]
        assert store.counts() == {"queued": 40}
        assert all(r.seq > 0 for r in store.with_state("queued"))
    finally:
        store.close()
    reopened = open_(store_target)  # committed: another connection (another gateway) sees them
    try:
        assert reopened.counts() == {"queued": 40}
    finally:
        reopened.close()


def test_a_job_added_and_ended_in_one_group_is_written_once_with_its_end(store):
    from engine.jobstore import FINISHED

    calls = []
    real = store._transaction
    store._transaction = lambda ops: (calls.append([op[0] for op in ops]), real(ops))[1]

    async def main():
        job = record("quick")
        added = store.add_async(job)
        job.state, job.started = "running", time.time()
        store.save_later(job)
        job.state, job.ended, job.result = FINISHED, time.time(), {"outputs": {"x": 1}}
        await asyncio.gather(added, store.save_async(job))

    asyncio.run(main())
    assert calls == [["insert"]]
    got = store.get("quick")
    assert got.state == FINISHED and got.result == {"outputs": {"x": 1}} and got.ended is not None


def test_a_bad_write_in_a_group_fails_alone(store):
    store.add(record("dup"))

    async def main():
        good, bad = store.add_async(record("fresh")), store.add_async(record("dup"))
        results = await asyncio.gather(good, bad, return_exceptions=True)
        return results

    results = asyncio.run(main())
    assert results[0] is None and isinstance(results[1], Exception)
    assert store.get("fresh") is not None and store.counts() == {"queued": 2}


def test_a_document_whose_only_write_failed_is_written_by_the_next_job(store):
    """A document counts as stored only once committed: its rolled-back write is made again."""
    store.add(record("taken"))
    doc = {"name": "fresh-doc", "nodes": {"a": {"type": "text.join", "inputs": {"a": "x", "b": "y"}}}}
    with pytest.raises(Exception):
        store.add(record("taken", doc))  # a duplicate id: its document's insert is rolled back with it
    store.add(record("next", doc))
    assert store.get("next").workflow == doc


def test_a_direct_write_on_the_loop_goes_after_the_grouped_ones(store):
    async def main():
        job = record("order")
        store.add_async(job)  # not awaited: the direct save below must flush it first
        job.state = "cancelled"
        store.save(job)

    asyncio.run(main())
    assert store.get("order").state == "cancelled"


def test_save_later_is_committed_without_anyone_waiting(store):
    async def main():
        job = record("later")
        await store.add_async(job)
        job.state, job.started, job.attempts = "running", time.time(), 1
        store.save_later(job)
        await asyncio.sleep(0.05)

    asyncio.run(main())
    got = store.get("later")
    assert got.state == "running" and got.attempts == 1


def test_close_writes_what_is_waiting(store_target):
    store = open_(store_target)

    async def main():
        store.add_async(record("pending"))

    asyncio.run(main())  # the loop ended before its flush ran
    store.close()
    again = open_(store_target)
    try:
        assert again.get("pending") is not None
    finally:
        again.close()


def test_reads_from_other_threads(store):
    store.add(record("t"))

    async def main():
        return await asyncio.gather(*(asyncio.to_thread(store.get, "t") for _ in range(8)))

    assert all(r.id == "t" for r in asyncio.run(main()))


def test_a_large_workflow_round_trips(store):
    doc = chain(2500).doc
    store.add(record("big", doc))
    assert store.get("big").workflow == doc


def test_job_queue_runs_and_recovers_on_the_store(engine, store_target):
    """The gateway's queue over each store: jobs run, end stored; a restart requeues a cut-short job."""
    from engine.jobs import JobQueue

    store = open_(store_target)
    for job_id, attempts in (("cut", 1), ("twice", 2)):  # a previous process died running them
        job = record(job_id, chain(2).doc, state="running", attempts=attempts)
        job.params = {}
        store.add(job)
    queue = JobQueue(engine, store, present=lambda wf, result, job: {"outputs": result.outputs})

    async def main():
        await queue.start()
        try:
            jobs = [await queue.accept(chain(3).doc) for _ in range(5)]
            ended = [await queue.wait(job.id, 10) for job in jobs]
            cut = await queue.wait("cut", 10)
        finally:
            await queue.stop()
        return ended, cut

    try:
        ended, cut = asyncio.run(main())
        assert [r.state for r in ended] == ["finished"] * 5 and all(r.result["outputs"] == {"x": 3} for r in ended)
        assert cut.state == "finished" and cut.attempts == 2 and cut.result["outputs"] == {"x": 2}
        assert store.get("twice").state == "interrupted"
        assert store.counts() == {"finished": 6, "interrupted": 1}
    finally:
        store.close()


def test_settings_keep_a_database_url_as_it_is():
    from engine.settings import Settings

    url = "postgresql://flow:secret@db:5432/flow"
    assert Settings.from_env({"FLOW_JOBS_DB": url}).jobs_db == url
    assert str(Settings.from_env({"FLOW_JOBS_DB": "~/jobs.sqlite3"}).jobs_db).endswith("/jobs.sqlite3")


def test_postgres_errors_never_show_the_password(postgres_server):
    from engine.pgstore import PgJobStore, redact

    url = f"postgresql://flow:hunter2@127.0.0.1:{postgres_server.port}/no_such_database"
    assert redact(url) == f"postgresql://flow:***@127.0.0.1:{postgres_server.port}/no_such_database"
    with pytest.raises(ConnectionError) as caught:
        PgJobStore(url)
    assert "hunter2" not in str(caught.value) and "no_such_database" in str(caught.value)


def test_two_gateways_share_one_postgres_history(postgres_url):
    a, b = open_(postgres_url), open_(postgres_url)
    try:
        a.add(record("from-a"))
        b.add(record("from-b"))
        assert {r.id for r in a.page()} == {r.id for r in b.page()} == {"from-a", "from-b"}
        assert document_rows(a) == 1  # the same workflow from both: one document
    finally:
        a.close(), b.close()


def test_products_stay_in_sqlite_when_jobs_are_in_postgres(tmp_path, monkeypatch):
    from engine.products import ProductStore

    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    monkeypatch.chdir(tmp_path)  # a URL taken for a path would make a folder "postgresql:" here
    store = ProductStore("postgresql://flow@db:5432/flow", tmp_path / "out")
    assert store.path == tmp_path / "data" / "flow" / "products.sqlite3" and store.path.is_file()
    assert not (tmp_path / "postgresql:").exists()


def test_the_gateway_keeps_its_jobs_in_postgres(engine, postgres_url, tmp_path):
    """create_app picks the store FLOW_JOBS_DB names: jobs posted to the gateway land in PostgreSQL."""
    from aiohttp.test_utils import TestClient, TestServer

    from engine.settings import Settings
    from server import create_app

    settings = Settings.from_env({"FLOW_JOBS_DB": postgres_url, "FLOW_PROBE_DEVICE": "0"},
                                 output_dir=tmp_path / "out", workflows_dir=tmp_path)

    async def main():
        async with TestClient(TestServer(create_app(engine, settings))) as client:
            posted = await (await client.post("/jobs?timeout=10", json={"workflow": chain(4).doc})).json()
            listed = await (await client.get("/jobs")).json()
            return posted, listed

    posted, listed = asyncio.run(main())
    assert posted["state"] == "finished", posted
    assert [j["id"] for j in listed["jobs"]] == [posted["id"]]
    store = open_(postgres_url)
    try:
        assert store.get(posted["id"]).result["outputs"] == {"x": 4}
    finally:
        store.close()

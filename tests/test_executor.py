"""The executor: what runs, what comes from cache, concurrency, cancellation, seeds, failures."""

from __future__ import annotations

import json
import asyncio
import threading
import time

import pytest

from engine import Cancelled, CancelToken, InvalidWorkflow, NodeError, Workflow
from zoo import G, Sleep, chain, link


def diamond() -> G:
    """a -> b, a -> c, (b, c) -> d; and an independent e -> f."""
    return (G().node("a", "zoo.inc", x=0)
            .node("b", "zoo.add", a=link("a", "x"), b=10)
            .node("c", "zoo.add", a=link("a", "x"), b=20)
            .node("d", "zoo.add", a=link("b", "sum"), b=0)
            .node("d2", "zoo.add", a=link("c", "sum"))
            .node("e", "zoo.inc", x=5).node("f", "zoo.inc", x=link("e", "x"))
            .output("d", "d", "sum").output("d2", "d2", "sum").output("f", "f", "x"))


def test_executor_first_run_executes_everything_in_order(engine):
    result = engine.run_sync(diamond().build())
    assert result.outputs == {"d": 11, "d2": 21, "f": 7}
    assert set(result.executed) == {"a", "b", "c", "d", "d2", "e", "f"}
    assert result.executed.index("a") < result.executed.index("b") < result.executed.index("d")
    assert result.cached == []


def test_executor_changed_input_reexecutes_exactly_downstream(engine):
    g = diamond().param("offset", ("c", "b"), default=20)
    wf = g.build()
    engine.run_sync(wf)
    result = engine.run_sync(wf, {"offset": 30})
    assert set(result.executed) == {"c", "d2"}
    assert result.outputs == {"d": 11, "d2": 31, "f": 7}
    # what the changed nodes needed came from cache; untouched branches were served at their ends
    assert set(result.cached) == {"a", "d", "f"}


def test_executor_edited_document_reuses_cache_of_unchanged_nodes(engine):
    engine.run_sync(diamond().build())
    edited = diamond()
    edited.doc["nodes"]["b"]["inputs"]["b"] = 11
    result = engine.run_sync(edited.build())
    assert set(result.executed) == {"b", "d"}
    assert result.outputs["d"] == 12


def test_executor_fully_cached_rerun_runs_nothing(engine, events):
    wf = diamond().build()
    engine.run_sync(wf)
    result = engine.run_sync(wf, listener=events)
    assert result.executed == []
    assert set(result.cached) == {"d", "d2", "f"}
    assert events.kinds() == ["job.started", "node.cached", "node.cached", "node.cached", "job.finished"]


def test_executor_runs_10000_node_chain_without_recursion(engine):
    wf = chain(10_000).build()
    result = engine.run_sync(wf)
    assert result.outputs == {"x": 10_000}
    assert len(result.executed) == 10_000
    again = engine.run_sync(wf)
    assert again.executed == [] and again.cached == ["n9999"]


def test_executor_requested_outputs_prune_the_rest(engine):
    result = engine.run_sync(diamond().build(), outputs=["f"])
    assert set(result.executed) == {"e", "f"}
    assert result.outputs == {"f": 7}
    with pytest.raises(InvalidWorkflow, match="unknown output 'nope'"):
        engine.run_sync(diamond().build(), outputs=["nope"])


def test_executor_independent_slow_branches_overlap(engine):
    Sleep.intervals.clear()
    wf = (G().node("s1", "zoo.sleep", seconds=0.4, value=1).node("s2", "zoo.sleep", seconds=0.4, value=2)
          .output("a", "s1", "value").output("b", "s2", "value").build())
    result = engine.run_sync(wf)
    assert result.outputs == {"a": 1, "b": 2}
    (a0, a1), (b0, b1) = Sleep.intervals["s1"], Sleep.intervals["s2"]
    assert a0 < b1 and b0 < a1, "the two branches did not run at the same time"


def test_executor_blocking_nodes_run_in_worker_threads(engine):
    wf = G().node("t", "zoo.thread_name").output("name", "t", "name").build()
    assert engine.run_sync(wf).outputs["name"].startswith("flow-node")


def test_executor_async_node_runs(engine):
    wf = G().node("e", "zoo.async_echo", text="hi").output("t", "e", "text").build()
    assert engine.run_sync(wf).outputs == {"t": "hi"}


@pytest.mark.parametrize("cooperative", [True, False])
def test_executor_cancel_mid_graph_stops_promptly(engine, events, cooperative):
    wf = (G().node("first", "zoo.inc", x=1)
          .node("slow", "zoo.sleep", seconds=5, value=link("first", "x"), cooperative=cooperative)
          .node("after", "zoo.const", value=link("slow", "value")).output("x", "after", "value").build())
    token = CancelToken()
    cancelled_at = []

    def listener(event):
        events(event)
        if event.kind == "node.started" and event.node == "slow":
            def later():
                time.sleep(0.1)
                cancelled_at.append(time.perf_counter())
                token.cancel("stop")
            threading.Thread(target=later).start()

    with pytest.raises(Cancelled):
        engine.run_sync(wf, listener=listener, cancel=token)
    assert time.perf_counter() - cancelled_at[0] < 2.0
    started = [e.node for e in events if e.kind == "node.started"]
    assert started == ["first", "slow"]
    terminal = [e for e in events if e.terminal]
    assert [e.kind for e in terminal] == ["job.cancelled"] and events[-1] is terminal[0]


def test_executor_abandoned_thread_reports_nothing_after_the_terminal_event(engine, events):
    """A node that ignores cancellation keeps running in its thread; its progress is dropped."""
    wf = G().node("slow", "zoo.sleep", seconds=0.5, cooperative=False).output("v", "slow", "value").build()

    async def scenario():
        token = CancelToken()
        task = asyncio.ensure_future(engine.run(wf, listener=events, cancel=token))
        await asyncio.sleep(0.1)
        token.cancel()
        with pytest.raises(Cancelled):
            await task
        await asyncio.sleep(0.6)  # the thread finishes meanwhile, reporting progress

    asyncio.run(scenario())
    assert events[-1].kind == "job.cancelled"


def test_executor_cancel_inside_long_inline_chain(engine, events):
    token = CancelToken()

    def listener(event):
        events(event)
        if event.kind == "node.finished" and event.node == "n100":
            token.cancel()

    with pytest.raises(Cancelled):
        engine.run_sync(chain(10_000).build(), listener=listener, cancel=token)
    finished = sum(1 for e in events if e.kind == "node.finished")
    assert 100 <= finished < 10_000
    assert events[-1].kind == "job.cancelled"


def test_executor_unset_seed_is_drawn_reported_and_not_served_from_cache(engine):
    wf = G().node("r", "zoo.rand").output("v", "r", "value").build()
    first, second = engine.run_sync(wf), engine.run_sync(wf)
    assert first.executed == ["r"] and second.executed == ["r"]
    assert first.seeds["r"] != second.seeds["r"]
    assert first.outputs["v"] != second.outputs["v"]
    # The reported seed reproduces the output; as the same key, it is served from cache.
    fixed = G().node("r", "zoo.rand", seed=first.seeds["r"]).output("v", "r", "value").build()
    replay = engine.run_sync(fixed)
    assert replay.outputs == first.outputs and replay.cached == ["r"]


def test_executor_fixed_seed_is_cached_and_reported(engine):
    wf = G().node("r", "zoo.rand", seed=42).output("v", "r", "value").build()
    first, second = engine.run_sync(wf), engine.run_sync(wf)
    assert first.seeds == second.seeds == {"r": 42}
    assert first.executed == ["r"] and second.cached == ["r"] and second.outputs == first.outputs


def test_executor_seed_param_drawn_when_unset(engine):
    wf = G().node("r", "zoo.rand").param("seed", ("r", "seed"), default=None).output("v", "r", "value").build()
    drawn = engine.run_sync(wf)
    fixed = engine.run_sync(wf, {"seed": drawn.seeds["r"]})
    assert fixed.outputs == drawn.outputs and fixed.cached == ["r"]


def test_executor_volatile_node_reruns_with_its_downstream(engine):
    wf = (G().node("c", "zoo.clock").node("k", "zoo.const", value=link("c", "now"))
          .output("now", "k", "value").build())
    engine.run_sync(wf)
    again = engine.run_sync(wf)
    assert again.executed == ["c", "k"]


def test_executor_failure_names_node_type_and_cause(engine, events):
    wf = (G().node("a", "zoo.inc", x=1).node("boom", "zoo.fail", message="kaput", x=link("a", "x"))
          .output("o", "boom", "never").build())
    with pytest.raises(NodeError) as info:
        engine.run_sync(wf, listener=events)
    assert info.value.node == "boom" and info.value.node_type == "zoo.fail"
    assert isinstance(info.value.cause, RuntimeError) and "kaput" in str(info.value)
    assert [e.kind for e in events if e.terminal] == ["job.failed"]
    failed = next(e for e in events if e.kind == "job.failed")
    assert failed.node == "boom" and "kaput" in failed.message


def test_executor_failure_in_thread_node_stops_sibling_branch(engine, events):
    wf = (G().node("slow", "zoo.sleep", seconds=5).node("boom", "zoo.fail", message="bad")
          .output("a", "slow", "value").output("b", "boom", "never").build())
    started = time.perf_counter()
    with pytest.raises(NodeError):
        engine.run_sync(wf, listener=events)
    assert time.perf_counter() - started < 3.0


def test_executor_bad_return_shape_is_a_node_failure(engine):
    wf = G().node("b", "zoo.bad_return").output("a", "b", "a").build()
    with pytest.raises(NodeError, match=r"returned \['b'\]; expected a dict with outputs \['a'\]"):
        engine.run_sync(wf)


def test_executor_events_carry_job_id_and_one_terminal_event(engine, events):
    result = engine.run_sync(diamond().build(), listener=events, job_id="job-1")
    assert result.job_id == "job-1"
    assert all(e.job_id == "job-1" for e in events)
    assert [e.kind for e in events if e.terminal] == ["job.finished"] and events[-1].terminal
    for event in events:  # O(1) in size: scalars only, never the graph's state
        assert all(isinstance(v, (str, int, float, bool, type(None))) for v in event.to_json().values())


def test_executor_progress_from_thread_arrives_as_events(engine, events):
    wf = G().node("s", "zoo.sleep", seconds=0.05).output("v", "s", "value").build()
    engine.run_sync(wf, listener=events)
    progress = [e for e in events if e.kind == "node.progress"]
    assert progress and all(e.node == "s" and e.total == 0.05 for e in progress)
    assert events.kinds().index("node.started") < events.kinds().index("node.progress") \
        < events.kinds().index("node.finished")


def test_executor_engine_listener_sees_every_job(engine, events):
    unsubscribe = engine.subscribe(events)
    engine.run_sync(chain(3).build())
    unsubscribe()
    engine.run_sync(chain(4).build())
    assert events.kinds().count("job.started") == 1


def test_executor_failing_listener_does_not_fail_the_job(engine, caplog):
    def broken(event):
        raise ValueError("listener bug")

    assert engine.run_sync(chain(2).build(), listener=broken).outputs == {"x": 2}
    assert "listener" in caplog.text


def test_executor_concurrent_jobs_on_one_loop(engine):
    wf = (G().node("s", "zoo.sleep", seconds=0.2).node("k", "zoo.inc", x=1)
          .param("x", ("k", "x")).output("x", "k", "x").output("v", "s", "value").build())

    async def both():
        return await asyncio.gather(engine.run(wf, {"x": 1}), engine.run(wf, {"x": 2}))

    a, b = asyncio.run(both())
    assert (a.outputs["x"], b.outputs["x"]) == (2, 3)


def test_executor_save_nodes_write_under_output_dir(engine, tmp_path):
    from pathlib import Path

    hello = Workflow.load(Path(__file__).resolve().parent.parent / "workflows" / "hello.json")
    result = engine.run_sync(hello, {"name": "tests"})
    path = Path(result.outputs["file"])
    assert result.outputs["text"] == "Hello, tests!"
    assert path.read_text() == "Hello, tests!"
    assert path.is_relative_to((tmp_path / "out").resolve())
    # An identical run is answered from the cache, its save node too: the file written then, no
    # copy. Another name writes a new file; so does a repeat once the earlier file is gone, or
    # changed, or when the document differs (the sidecar carries it).
    again = engine.run_sync(hello, {"name": "tests"})
    assert again.executed == [] and "save" in again.cached and Path(again.outputs["file"]) == path
    other = engine.run_sync(hello, {"name": "others"})
    assert other.executed == ["greeting", "end", "save"]
    assert Path(other.outputs["file"]) != path and Path(other.outputs["file"]).read_text() == "Hello, others!"
    path.unlink()
    fresh = engine.run_sync(hello, {"name": "tests"})
    assert fresh.executed == ["save"] and Path(fresh.outputs["file"]) not in (path, Path(other.outputs["file"]))
    assert Path(fresh.outputs["file"]).read_text() == "Hello, tests!"
    assert sorted(p.name for p in path.parent.iterdir()) == [  # the first one's sidecar was left
        "greeting_00001.txt.json", "greeting_00002.txt", "greeting_00002.txt.json", "greeting_00003.txt",
        "greeting_00003.txt.json"]
    Path(fresh.outputs["file"]).write_text("edited by hand")
    edited = engine.run_sync(hello, {"name": "tests"})
    assert edited.executed == ["save"] and Path(edited.outputs["file"]).read_text() == "Hello, tests!"
    assert Path(fresh.outputs["file"]).read_text() == "edited by hand"  # never written over
    renamed = Workflow.from_dict({**hello.doc, "description": "another document, the same nodes"})
    elsewhere = engine.run_sync(renamed, {"name": "tests"})
    assert elsewhere.executed == ["save"] and elsewhere.outputs["file"] != edited.outputs["file"]
    assert engine.run_sync(renamed, {"name": "tests"}).outputs["file"] == elsewhere.outputs["file"]


def test_executor_cached_save_covers_every_param_and_seed_of_the_run(engine):
    """A save node's cache key covers what its sidecar describes: every param's value and every seed
    of the run, also those of nodes it does not read; a drawn seed makes every run write anew."""
    from pathlib import Path

    wf = Workflow.from_dict({
        "name": "save-and-draw",
        "params": {"text": {"description": "what to save", "default": "hi", "bind": [{"node": "save", "input": "text"}]},
                   "seed": {"description": "drawn when not given", "bind": [{"node": "draw", "input": "seed"}]}},
        "nodes": {"save": {"type": "text.save", "inputs": {"text": "hi", "prefix": "cover/t"}},
                  "draw": {"type": "zoo.rand", "inputs": {}}},
        "outputs": {"file": {"from": "save", "output": "path"}, "n": {"from": "draw", "output": "value"}},
    })
    first = engine.run_sync(wf, {"seed": 5})
    assert engine.run_sync(wf, {"seed": 5}).outputs["file"] == first.outputs["file"]
    other_seed = engine.run_sync(wf, {"seed": 6})
    assert other_seed.outputs["file"] != first.outputs["file"]
    described = json.loads(Path(other_seed.outputs["file"] + ".json").read_text())
    assert described["workflow"]["params"]["seed"]["default"] == 6
    drawn = [engine.run_sync(wf).outputs["file"] for _ in range(2)]
    assert len({*drawn, first.outputs["file"], other_seed.outputs["file"]}) == 4


def test_executor_run_info_reproduces_a_run_with_drawn_seeds(registry, tmp_path):
    """Save nodes embed ctx.run.reproducible(): running that document gives the same outputs."""
    from engine import Engine, Input, JSON, Node, NullCache, Output, Registry

    class Provenance(Node):
        """Return the reproducible document of the run."""

        type = "zoo.provenance"
        blocking = False
        volatile = True
        inputs = {"x": Input(JSON, "ignored", default=None)}
        outputs = {"doc": Output(JSON, "the document")}

        def run(self, ctx, x):
            return {"doc": ctx.run.reproducible()}

    engine = Engine(Registry([*registry, Provenance]), cache=NullCache(), output_dir=tmp_path)
    g = (G().node("r", "zoo.rand").node("r2", "zoo.rand", scale=link("k", "value"))
         .node("k", "primitive.float", value=2.0)
         .node("p", "zoo.provenance", x=link("r", "value"))
         .param("scale", ("r", "scale"), default=1.0).param("seed2", ("r2", "seed"))
         .output("v", "r", "value").output("v2", "r2", "value").output("doc", "p", "doc"))
    g.doc["params"]["seed2"]["default"] = None
    first = engine.run_sync(g.build(), {"scale": 3.0})
    replay = engine.run_sync(Workflow.from_dict(first.outputs["doc"]))
    assert replay.outputs["v"] == first.outputs["v"] and replay.outputs["v2"] == first.outputs["v2"]
    assert replay.seeds == first.seeds
    assert all(body["version"] >= 1 for body in first.outputs["doc"]["nodes"].values())  # versions travel too
    engine.close()


def test_executor_fingerprint_reruns_a_node_when_what_it_reads_changed(registry, tmp_path):
    """A node reading a file is served from cache while the file is unchanged, and re-run after."""
    import os

    from engine import Engine, Input, MemoryCache, Node, Output, Registry, TEXT

    class ReadFile(Node):
        """Read a text file under the output folder."""

        type = "zoo.read_file"
        blocking = False
        inputs = {"path": Input(TEXT, "relative path")}
        outputs = {"text": Output(TEXT, "the file's text")}

        @classmethod
        def fingerprint(cls, inputs, files):
            stat = (files.root / inputs["path"]).stat()
            return [stat.st_size, stat.st_mtime_ns]

        def run(self, ctx, path):
            return {"text": (ctx.files.root / path).read_text()}

    (tmp_path / "a.txt").write_text("one")
    engine = Engine(Registry([*registry, ReadFile]), cache=MemoryCache(1 << 20), output_dir=tmp_path)
    wf = (G().node("r", "zoo.read_file", path="a.txt").node("j", "text.join", a=link("r", "text"), b="!")
          .output("t", "j", "text").build())
    assert engine.run_sync(wf).outputs == {"t": "one !"}
    assert engine.run_sync(wf).executed == []
    (tmp_path / "a.txt").write_text("two")
    os.utime(tmp_path / "a.txt", ns=(1, 10**18))  # a distinct mtime even on coarse clocks
    again = engine.run_sync(wf)
    assert again.outputs == {"t": "two !"} and again.executed == ["r", "j"]
    engine.close()

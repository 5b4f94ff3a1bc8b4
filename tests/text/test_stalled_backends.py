"""No wedged workers: a backend that stalls mid-stream never holds the engine's threads.

The attack: an Ollama server that answers one NDJSON line and then nothing. Each job reading
such a stream is cancelled at its time limit; its stream is closed so the thread returns, a
thread that still does not return is counted as stuck and replaced, and later jobs (a
`text.save`, the `/hello` endpoint) run as usual. The stand-in below is a real HTTP server.
"""

from __future__ import annotations

import asyncio
import json
import select
import socket
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from engine import TEXT, Cancelled, CancelToken, Engine, Input, Node, NodeError, NullCache, Output, Registry
from engine.threads import NodeThreads

STALL = "stall:latest"


# -- the stalling stand-in ---------------------------------------------------------------------


class StallingServer:
    """Ollama (and OpenAI-compatible) stand-in: metadata answers at once, every stream sends one line, then nothing."""

    def __init__(self):
        self.release = threading.Event()  # set when the test ends: stalled handlers return
        self.streams = 0  # streams started
        self.closed = 0  # streams the client closed while the server stalled
        self.lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _StallHandler)
        self._server.daemon_threads = True
        self._server.state = self
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"

    def start(self) -> "StallingServer":
        threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
        return self

    def stop(self) -> None:
        self.release.set()
        self._server.shutdown()
        self._server.server_close()

    def wait_closed(self, count: int, timeout: float) -> bool:
        """True once `count` stalled streams were closed by their client."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.closed >= count:
                return True
            time.sleep(0.02)
        return self.closed >= count


class _StallHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def send_json(self, body) -> None:
        data = json.dumps(body).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self):
        details = {"format": "gguf", "family": "llama"}
        if self.path == "/api/tags":
            return self.send_json({"models": [{"name": STALL, "model": STALL, "size": 1000, "digest": "d" * 64,
                                               "modified_at": "2025-01-01T00:00:00Z", "details": details}]})
        if self.path == "/api/ps":
            return self.send_json({"models": [{"name": STALL, "model": STALL, "size": 1000, "size_vram": 1000,
                                               "digest": "d" * 64, "details": details,
                                               "expires_at": "2030-01-01T00:00:00Z"}]})
        self.send_response(404)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def do_POST(self):
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        if self.path == "/api/show":
            return self.send_json({"modelfile": "", "parameters": "", "template": "", "model_info": {},
                                   "details": {}, "capabilities": ["completion"]})
        first = {
            "/api/pull": {"status": "pulling manifest"},
            "/api/chat": {"model": STALL, "created_at": "2025-01-01T00:00:00Z", "done": False,
                          "message": {"role": "assistant", "content": "Hel"}},
            "/api/generate": {"model": STALL, "created_at": "2025-01-01T00:00:00Z", "done": False, "response": "Hel"},
            "/v1/chat/completions": {"id": "c", "object": "chat.completion.chunk", "created": 0, "model": "stall",
                                     "choices": [{"index": 0, "delta": {"content": "Hel"}, "finish_reason": None}]},
        }[self.path]
        sse = self.path.startswith("/v1/")
        line = (b"data: " + json.dumps(first).encode() + b"\n\n") if sse else json.dumps(first).encode() + b"\n"
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream" if sse else "application/x-ndjson")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        self.wfile.write(b"%x\r\n%s\r\n" % (len(line), line))
        self.wfile.flush()
        st: StallingServer = self.server.state
        with st.lock:
            st.streams += 1
        self._stall(st)

    def _stall(self, st: StallingServer) -> None:
        """Send nothing more; note when the client closes the connection."""
        while not st.release.is_set():
            readable, _, _ = select.select([self.connection], [], [], 0.05)
            if readable:
                try:
                    gone = self.connection.recv(1, socket.MSG_PEEK) == b""
                except OSError:
                    gone = True
                if gone:
                    with st.lock:
                        st.closed += 1
                    break
        self.close_connection = True


@pytest.fixture
def stalling():
    server = StallingServer().start()
    yield server
    server.stop()


# -- the small pieces --------------------------------------------------------------------------


def test_cancel_callbacks_run_once_and_can_be_unregistered():
    token, calls = CancelToken(), []
    token.on_cancel(lambda: calls.append("a"))
    unregister = token.on_cancel(lambda: calls.append("never"))
    token.on_cancel(lambda: 1 / 0)  # a failing callback stops neither the others nor the canceller
    token.on_cancel(lambda: calls.append("b"))
    unregister()
    token.cancel("stop")
    token.cancel("again")
    assert calls == ["a", "b"]
    token.on_cancel(lambda: calls.append("late"))()  # registered after the fact: runs at once
    assert calls == ["a", "b", "late"]


def _wait_for(condition, timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.01)
    return condition()


def test_node_threads_count_abandoned_work_and_keep_running_new_work():
    pool, never = NodeThreads(2), threading.Event()
    try:
        stuck = [pool.submit(never.wait, job="j1", node=f"n{i}", node_type="testing.wedge") for i in range(2)]
        assert _wait_for(lambda: all(f.running() for f in stuck))
        queued = pool.submit(lambda: "queued")  # both threads are busy with live work: it waits
        time.sleep(0.05)
        assert not queued.done() and pool.stuck() == 0
        for future in stuck:
            pool.abandon(future)  # their job ended; the threads did not return
        assert queued.result(timeout=2) == "queued"
        assert pool.stuck() == 2
        assert sorted(d["node"] for d in pool.stuck_nodes()) == ["n0", "n1"]
        assert all(d["node_type"] == "testing.wedge" and d["stuck_s"] >= 0 for d in pool.stuck_nodes())
        # Two workers' worth of new work runs at once, beside the two stuck threads.
        together = threading.Barrier(3)  # breaks (and fails the test) unless both run while the test waits
        running = [pool.submit(lambda: together.wait(timeout=2)) for _ in range(2)]
        together.wait(timeout=2)
        for future in running:
            future.result(timeout=2)  # BrokenBarrierError had they not run at once
        never.set()  # the stuck threads return: counted no more, and the spare threads end
        assert _wait_for(lambda: pool.stuck() == 0 and pool._threads <= 2)
    finally:
        never.set()
        pool.close()


def test_node_threads_stop_growing_at_the_cap(caplog):
    pool, never = NodeThreads(1, max_stuck=1), threading.Event()
    try:
        for _ in range(2):
            future = pool.submit(never.wait)
            assert _wait_for(future.running)
            pool.abandon(future)
        held = pool.submit(lambda: "ran")
        time.sleep(0.1)
        assert not held.done() and pool.stuck() == 2  # two threads, the cap: new work waits...
        assert "new node work waits" in caplog.text
        never.set()
        assert held.result(timeout=2) == "ran"  # ...until a stuck one returns
    finally:
        never.set()
        pool.close()


def test_close_waits_for_abandoned_work_only_a_grace():
    pool, never = NodeThreads(1), threading.Event()
    future = pool.submit(never.wait)
    assert _wait_for(future.running)
    pool.abandon(future)
    started = time.monotonic()
    pool.close(grace=0.2)
    assert time.monotonic() - started < 1
    never.set()


def test_cancelling_the_asyncio_future_abandons_the_work():
    pool, never = NodeThreads(1), threading.Event()

    async def main():
        waiter = pool.run(asyncio.get_running_loop(), never.wait, job="j", node="n", node_type="t")
        await asyncio.sleep(0.05)
        waiter.cancel()
        await asyncio.sleep(0)
        return await asyncio.wrap_future(pool.submit(lambda: "next"))

    try:
        assert asyncio.run(main()) == "next"
        assert pool.stuck_nodes()[0]["node"] == "n"
    finally:
        never.set()
        pool.close()


# -- a job's time limit frees its capacity, even when its thread never returns --------------------


class Wedge(Node):
    """Block until the test releases it, ignoring cancellation (a backend with no timeout)."""

    type = "testing.wedge"
    volatile = True
    inputs = {"label": Input(TEXT, "anything", default="")}
    outputs = {"text": Output(TEXT, "never produced in time")}
    release = threading.Event()  # replaced by the `wedge` fixture in each test

    def run(self, ctx, label):
        self.release.wait()
        return {"text": label}


@pytest.fixture
def wedge():
    """A fresh release of the `testing.wedge` nodes; they all return when the test ends."""
    Wedge.release = threading.Event()
    yield Wedge.release
    Wedge.release.set()


def test_time_limit_frees_capacity_even_when_threads_never_return(tmp_path, wedge):
    import nodes
    from zoo import G

    from engine.jobs import JobQueue
    from engine.jobstore import JobStore

    engine = Engine(Registry([*nodes.NODES, Wedge]), cache=NullCache(), output_dir=tmp_path / "out", workers=2)
    queue = JobQueue(engine, JobStore(tmp_path / "jobs.sqlite3"), present=lambda wf, result, job: {},
                     time_limit=0.3)

    async def main():
        await queue.start()
        try:
            wedged = [queue.submit(G().node("w", "testing.wedge", label=str(i)).build(), name="wedge")
                      for i in range(3)]  # more than the engine's two threads
            save = queue.submit(G().node("s", "text.save", text="still here", prefix="alive").build(), name="save")
            started = time.monotonic()
            done = await queue.wait(save.id, 10)
            took = time.monotonic() - started
            return [await queue.wait(r.id, 1) for r in wedged], done, took
        finally:
            await queue.stop()

    wedged, save, took = asyncio.run(main())
    assert [r.state for r in wedged] == ["cancelled"] * 3
    assert all("time limit" in r.error["message"] for r in wedged)
    assert save.state == "finished", save.error
    assert took < 3  # three time limits of 0.3 s, then the save: no job waited for a stuck thread
    stuck = engine.stuck_workers()
    assert [s["node_type"] for s in stuck] == ["testing.wedge"] * 3
    wedge.set()
    assert _wait_for(lambda: engine.stuck_workers() == [])
    engine.close()


def test_a_cancelled_run_counts_its_stuck_thread_and_the_next_run_goes_ahead(tmp_path, wedge):
    from zoo import G

    import nodes

    engine = Engine(Registry([*nodes.NODES, Wedge]), cache=NullCache(), output_dir=tmp_path / "out", workers=1)
    token = CancelToken()
    threading.Timer(0.2, token.cancel).start()
    with pytest.raises(Cancelled):
        engine.run_sync(G().node("w", "testing.wedge").build(), cancel=token)
    assert [s["node"] for s in engine.stuck_workers()] == ["w"]
    result = engine.run_sync(G().node("s", "text.save", text="next", prefix="next").build())
    assert Path(result.outputs["s.path"]).read_text() == "next"
    wedge.set()
    engine.close()


# -- real backends against the stalling server -------------------------------------------------


def _pull(server, manager):
    return "model.pull", {"ref": "ollama:stall"}


def _ollama_chat(server, manager):
    return "text.generate", {"prompt": "hi", "model": "ollama:stall", "seed": 1}


def _openai_chat(server, manager):
    return "text.generate", {"prompt": "hi", "model": "openai:stall", "seed": 1}


def _manager(make_manager, server, **timeouts):
    from engine.settings import Settings
    from nodes.llm import TextBackends

    return make_manager(server.url, config=TextBackends(Settings(openai_base_url=server.url + "/v1", **timeouts)))


@pytest.mark.parametrize("job", [_pull, _ollama_chat, _openai_chat], ids=["ollama-pull", "ollama-chat", "openai-chat"])
def test_cancelling_a_job_closes_its_stalled_stream(job, stalling, make_manager, make_engine):
    from zoo import G

    manager = _manager(make_manager, stalling)
    engine = make_engine(manager)
    node_type, inputs = job(stalling, manager)
    token, cancelled_at = CancelToken(), []

    def time_limit():  # once the server stalls (importing a client may take a while first)
        _wait_for(lambda: stalling.streams == 1, timeout=20)
        time.sleep(0.2)
        cancelled_at.append(time.monotonic())
        token.cancel("time limit reached")

    threading.Thread(target=time_limit, daemon=True).start()
    with pytest.raises(Cancelled, match="time limit"):
        engine.run_sync(G().node("n", node_type, **inputs).build(), cancel=token)
    assert time.monotonic() - cancelled_at[0] < 1
    assert stalling.streams == 1
    assert stalling.wait_closed(1, timeout=3), "the stalled stream was never closed"
    assert _wait_for(lambda: engine.stuck_workers() == [], timeout=3), engine.stuck_workers()


@pytest.mark.parametrize("job, message", [
    (_pull, r"sent nothing for 0\.4 s"), (_ollama_chat, r"sent nothing for 0\.4 s"),
    (_openai_chat, r"timed out on stall .*0\.4 s between reads")], ids=["ollama-pull", "ollama-chat", "openai-chat"])
def test_a_stalled_stream_fails_at_the_read_timeout(job, message, stalling, make_manager, make_engine):
    """Without any cancel, the read timeout (per read) ends the request with an error that says what happened."""
    from zoo import G

    manager = _manager(make_manager, stalling, backend_read_timeout=0.4)
    manager.store.ollama.read_timeout = 0.4  # the pull's client (the face builds it from the same setting)
    engine = make_engine(manager)
    node_type, inputs = job(stalling, manager)
    started = time.monotonic()
    with pytest.raises(NodeError, match=message):
        engine.run_sync(G().node("n", node_type, **inputs).build())
    assert time.monotonic() - started < 5  # one read timeout (and one retry of the OpenAI client at most)


# -- the whole server ----------------------------------------------------------------------------


@pytest.mark.slow  # over 3 s
def test_gateway_keeps_serving_after_stalled_pulls_time_out(stalling, tmp_path):
    """Five pulls from a stalling Ollama, each cut at the time limit, then /hello (text.save) still runs."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "gateway"))
    from gateway_support import Served

    server = Served(tmp_path, {"FLOW_OLLAMA_URL": stalling.url, "FLOW_JOB_TIME_LIMIT": "0.6", "FLOW_WORKERS": "4",
                               "FLOW_JOB_WORKERS": "1", "FLOW_PROBE_DEVICE": "false"})
    server.start()
    try:
        jobs = []
        for _ in range(5):
            status, body = server.call("POST", "/models/pull", {"ref": "ollama:stall"})
            assert status == 202, body
            jobs.append(body["id"])
        status, body = server.call("POST", "/text/gen?wait=false", {"prompt": "hi", "model": "ollama:stall"})
        assert status == 202, body
        jobs.append(body["id"])

        def ended() -> bool:
            return all(server.call("GET", f"/jobs/{j}")[1]["state"] == "cancelled" for j in jobs)

        assert _wait_for(ended, timeout=15), [server.call("GET", f"/jobs/{j}")[1] for j in jobs]
        # Every stream the server stalled was closed when its job ended (at least the four that would
        # otherwise hold all of FLOW_WORKERS; the text job may end before its client is even imported).
        assert stalling.streams >= 4
        assert stalling.wait_closed(stalling.streams, timeout=3), (stalling.streams, stalling.closed)
        status, body = server.call("POST", "/hello", {"name": "after the stall"})
        assert status == 200, body
        assert "Hello, after the stall!" in json.dumps(body)
        status, health = server.call("GET", "/health")
        assert status == 200
    finally:
        server.stop()

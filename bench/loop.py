"""Event-loop benchmark: a large job must never block the gateway, must cancel fast, and its errors are capped.

Starts a real `flow serve`; a separate process asks `/health` every 10 ms on a kept-alive
connection and records each answer's latency, so any stall of the server's event loop shows as
a slow `/health`. The baseline is the same measurement on the idle server, in the same run.
Scenarios (a chain of 100k `text.join` nodes, as in tests/gateway/test_serve_process.py):

  idle               /health latency with nothing to do (the baseline)
  submit 2 nodes     time from POST /jobs to 202 for a tiny job (the baseline for submit)
  submit 100k        time to 202 for the 100k-node chain, and the worst /health meanwhile
  run 100k           from 202 to job finished: the worst /health while it runs and ends
  submit+run 100k    a second chain (other literals: nothing cached), from POST until it has run
                     for --cancel-after seconds
  cancel 100k        DELETE while it runs: the worst /health, and the time until the job is
                     cancelled (by /health's job counts) and until the SSE `job.cancelled` event
  invalid 100k       100k nodes of an unknown type: time to 400, response body size

Targets: worst /health <= baseline + 50 ms; cancel <= 200 ms; error body <= 64 kB.
Run with `.venv/bin/python bench/loop.py [--nodes N]`.
"""

from __future__ import annotations

import argparse
import http.client
import json
import multiprocessing
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests" / "gateway"))

from gateway_support import Served  # noqa: E402

POLL_S = 0.010
TERMINAL = {"job.finished", "job.failed", "job.cancelled"}


def text_chain(n: int, tag: str) -> dict:
    """n text.join nodes in a chain."""
    nodes = {"n0": {"type": "text.join", "inputs": {"a": tag, "b": "0"}}}
    for i in range(1, n):
        nodes[f"n{i}"] = {"type": "text.join", "inputs": {"a": {"from": f"n{i - 1}", "output": "text"}, "b": "."}}
    return {"name": f"chain-{tag}", "nodes": nodes, "outputs": {"text": {"from": f"n{n - 1}", "output": "text"}}}


def invalid_graph(n: int) -> dict:
    """n nodes of a type nobody registered: n problems."""
    return {"name": "invalid", "nodes": {f"n{i}": {"type": "nope.nothing", "inputs": {}} for i in range(n)}}


# -- the /health poller (its own process: the benchmark's own work never delays it) ----------------

def poll_health(port: int, stop, out) -> None:
    """GET /health every POLL_S until ``stop``; sends [(monotonic sent, latency)] through ``out``."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    samples = []
    while not stop.is_set():
        sent = time.monotonic()
        try:
            conn.request("GET", "/health")
            conn.getresponse().read()
        except (OSError, http.client.HTTPException):
            conn.close()
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
            continue
        samples.append((sent, time.monotonic() - sent))
        pause = POLL_S - (time.monotonic() - sent)
        if pause > 0:
            time.sleep(pause)
    out.send(samples)


class Poller:
    """The /health poller process; :meth:`samples` stops it and returns what it measured."""

    def __init__(self, port: int):
        ctx = multiprocessing.get_context("spawn")
        self._stop = ctx.Event()
        self._recv, send = ctx.Pipe(duplex=False)
        self._proc = ctx.Process(target=poll_health, args=(port, self._stop, send), daemon=True)
        self._proc.start()

    def samples(self) -> list[tuple[float, float]]:
        self._stop.set()
        samples = self._recv.recv()
        self._proc.join(10)
        return samples


# -- talking to the server (blocking: this process's delays do not matter) -------------------------

class Client:
    def __init__(self, port: int):
        self.port = port

    def call(self, method: str, path: str, body: bytes | None = None) -> tuple[int, bytes]:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=300)
        try:
            conn.request(method, path, body=body, headers={"Content-Type": "application/json"})
            response = conn.getresponse()
            return response.status, response.read()
        finally:
            conn.close()

    def counts(self) -> dict[str, int]:
        return json.loads(self.call("GET", "/health")[1])["jobs"]

    def wait_counts(self, state: str, at_least: int, timeout: float, every: float = 0.002) -> float:
        """Poll /health until ``state`` has ``at_least`` jobs; the monotonic time it was seen."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.counts().get(state, 0) >= at_least:
                return time.monotonic()
            time.sleep(every)
        raise TimeoutError(f"no {at_least} {state} jobs after {timeout} s: {self.counts()}")


class EventReader(threading.Thread):
    """Reads a job's SSE stream until its terminal event; ``seen`` maps each event kind to when it first came.

    The stream of a 100k-node job is some 60k events a second: it is scanned in large reads, not
    parsed line by line, or the server drops this listener for falling behind.
    """

    KINDS = (b"job.state", *(kind.encode() for kind in TERMINAL))

    def __init__(self, port: int, job_id: str):
        super().__init__(daemon=True)
        self.port, self.job_id = port, job_id
        self.seen: dict[str, float] = {}
        self.started = threading.Event()  # the stream is open and its first event came
        self.ended = threading.Event()
        self.dropped = False
        self.start()

    def run(self) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=300)
        tail = b""
        try:
            conn.request("GET", f"/jobs/{self.job_id}/events", headers={"Connection": "close"})
            response = conn.getresponse()
            while not self.seen.keys() & TERMINAL:
                data = response.read1(1 << 16)
                if not data:
                    self.dropped = True  # the server ended the stream before the terminal event
                    return
                now, text = time.monotonic(), tail + data
                tail = text[-32:]  # an event name may straddle two reads
                for kind in self.KINDS:
                    if b"event: " + kind in text:
                        self.seen.setdefault(kind.decode(), now)
                self.started.set()
        finally:
            self.started.set()
            self.ended.set()
            conn.close()


# -- measuring -----------------------------------------------------------------------------------

class Window:
    """A named stretch of monotonic time; its row reports the /health latencies that overlapped it."""

    def __init__(self, name: str):
        self.name, self.start, self.end = name, time.monotonic(), None
        self.facts: dict[str, str] = {}

    def close(self) -> "Window":
        self.end = time.monotonic()
        return self


def latencies(samples, window: Window) -> list[float]:
    return [lat for sent, lat in samples if sent < window.end and sent + lat > window.start]


def fmt_ms(seconds: float) -> str:
    return f"{seconds * 1000:8.1f}"


def table(windows: list[Window], samples) -> str:
    head = f"{'scenario':<16} {'wall ms':>8} {'n':>5} {'p50 ms':>8} {'max ms':>8} {'max-base':>8}  facts"
    rows = [head, "-" * len(head)]
    base = None
    for w in windows:
        lats = latencies(samples, w) or [float("nan")]
        worst = max(lats)
        if base is None:
            base = worst
        rows.append(f"{w.name:<16} {fmt_ms(w.end - w.start)} {len(lats):>5} {fmt_ms(statistics.median(lats))} "
                    f"{fmt_ms(worst)} {fmt_ms(worst - base)}  " + ", ".join(f"{k}={v}" for k, v in w.facts.items()))
    return "\n".join(rows)


def run_scenarios(args, bodies: dict[str, bytes]) -> tuple[list[Window], list[tuple[float, float]]]:
    """One round against a fresh `flow serve`: the scenarios' windows and every /health sample."""
    n = args.nodes
    with tempfile.TemporaryDirectory() as tmp:
        server = Served(Path(tmp), {"FLOW_PROBE_DEVICE": "false", "FLOW_JOB_WORKERS": "1"})
        server.start(timeout=60)
        client = Client(server.port)
        poller = Poller(server.port)
        windows: list[Window] = []
        try:
            time.sleep(0.5)  # the poller's first connection
            w = Window("idle")
            time.sleep(2.0)
            windows.append(w.close())

            w = Window("submit 2 nodes")
            status, _ = client.call("POST", "/jobs", bodies["small"])
            windows.append(w.close())
            w.facts["status"] = str(status)
            client.wait_counts("finished", 1, 30)

            # A full run: submit, then run to the end.
            w = Window(f"submit {n // 1000}k")
            status, body = client.call("POST", "/jobs", bodies["a"])
            windows.append(w.close())
            w.facts["status"] = str(status)
            run = Window(f"run {n // 1000}k")
            client.wait_counts("finished", 2, 600, every=0.05)
            windows.append(run.close())

            # Cancel while it runs.
            w = Window(f"submit+run {n // 1000}k")
            status, body = client.call("POST", "/jobs", bodies["b"])
            job_id = json.loads(body)["id"]
            client.wait_counts("running", 1, 120, every=0.01)
            time.sleep(args.cancel_after)
            reader = EventReader(server.port, job_id)
            reader.started.wait(10)
            windows.append(w.close())
            w = Window(f"cancel {n // 1000}k")
            status, _ = client.call("DELETE", f"/jobs/{job_id}")
            answered = time.monotonic()
            if status != 200:  # it ended first: too few nodes for --cancel-after
                windows.append(w.close())
                w.facts.update({"status": str(status), "note": "ended before the DELETE"})
            else:
                cancelled = client.wait_counts("cancelled", 1, 60)
                reader.ended.wait(60)
                windows.append(w.close())
                w.facts.update({"status": str(status), "DELETE ms": f"{(answered - w.start) * 1000:.0f}",
                                "state ms": f"{(cancelled - w.start) * 1000:.0f}"})
            if status != 200:
                pass
            elif "job.cancelled" in reader.seen:
                w.facts["SSE ms"] = f"{(reader.seen['job.cancelled'] - w.start) * 1000:.0f}"
            else:
                w.facts["SSE"] = "dropped (fell behind)" if reader.dropped else f"no terminal: {sorted(reader.seen)}"

            w = Window(f"invalid {n // 1000}k")
            status, body = client.call("POST", "/jobs", bodies["invalid"])
            windows.append(w.close())
            error = json.loads(body)["error"]
            w.facts.update({"status": str(status), "body kB": f"{len(body) / 1024:.1f}",
                            "problems": str(len(error.get("problems", []))), "count": str(error.get("count", "-"))})
        finally:
            samples = poller.samples()
            server.stop()
    return windows, samples


def summary(rounds: list[tuple[list[Window], list]]) -> str:
    """Per scenario, the median over rounds of its worst /health and of each numeric fact."""
    head = f"{'scenario':<16} {'max ms per round':<28} {'median':>8}  median facts"
    rows = [head, "-" * len(head)]
    for i, first in enumerate(rounds[0][0]):
        worst = [max(latencies(samples, windows[i]) or [float("nan")]) * 1000 for windows, samples in rounds]
        facts = {}
        for key in first.facts:
            values = [windows[i].facts.get(key, "") for windows, _ in rounds]
            numbers = [float(v) for v in values if v.replace(".", "", 1).isdigit()]
            facts[key] = f"{statistics.median(numbers):g}" if len(numbers) == len(values) else "/".join(values)
        rows.append(f"{first.name:<16} {' '.join(f'{v:.0f}' for v in worst):<28} {statistics.median(worst):8.1f}  "
                    + ", ".join(f"{k}={v}" for k, v in facts.items()))
    return "\n".join(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nodes", type=int, default=100_000, help="nodes in the large graphs")
    parser.add_argument("--cancel-after", type=float, default=0.5, help="seconds into the run to cancel")
    parser.add_argument("--rounds", type=int, default=1,
                        help="repeat against a fresh server each time; a summary gives medians (a busy machine is noisy)")
    parser.add_argument("--timeline", action="store_true",
                        help="also print each scenario's start and end (time.monotonic) and each /health over 30 ms")
    args = parser.parse_args()
    n = args.nodes
    bodies = {"a": {"workflow": text_chain(n, "a")}, "b": {"workflow": text_chain(n, "b")},
              "small": {"workflow": text_chain(2, "s")}, "invalid": {"workflow": invalid_graph(n)}}
    bodies = {key: json.dumps(body).encode() for key, body in bodies.items()}
    rounds = []
    for _ in range(max(1, args.rounds)):
        windows, samples = run_scenarios(args, bodies)
        rounds.append((windows, samples))
        print(f"flow serve, {n} nodes; /health every {POLL_S * 1000:.0f} ms from another process "
              f"({len(samples)} answers); max-base = worst latency minus the idle worst")
        print(table(windows, samples), flush=True)
        if args.timeline:
            for w in windows:
                print(f"{w.name:<16} {w.start:.3f} .. {w.end:.3f}")
            print("slow /health:", ", ".join(f"{sent:.3f}+{lat * 1000:.0f}ms" for sent, lat in samples if lat > 0.03))
    if len(rounds) > 1:
        print(f"\nsummary of {len(rounds)} rounds")
        print(summary(rounds))


if __name__ == "__main__":
    main()

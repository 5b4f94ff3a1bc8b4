"""Stub nodes and a small graph builder for engine tests."""

from __future__ import annotations

import asyncio
import random
import threading
import time

from engine import BOOL, FLOAT, INT, JSON, TEXT, Input, Node, Output, Seed, Workflow


class Const(Node):
    """Emit a JSON value."""

    type = "zoo.const"
    blocking = False
    inputs = {"value": Input(JSON, "any value")}
    outputs = {"value": Output(JSON, "the value")}

    def run(self, ctx, value):
        return {"value": value}


class Inc(Node):
    """Add one to an integer (cheap, inline)."""

    type = "zoo.inc"
    blocking = False
    inputs = {"x": Input(INT, "a number", default=0)}
    outputs = {"x": Output(INT, "x + 1")}

    def run(self, ctx, x):
        return {"x": x + 1}


class Add(Node):
    """Add two integers."""

    type = "zoo.add"
    blocking = False
    inputs = {"a": Input(INT, "first"), "b": Input(INT, "second", default=0, minimum=-1000, maximum=1000)}
    outputs = {"sum": Output(INT, "a + b")}

    def run(self, ctx, a, b):
        return {"sum": a + b}


class Sleep(Node):
    """Sleep in a worker thread, recording when it ran; checks cancellation if asked."""

    type = "zoo.sleep"
    intervals: dict[str, tuple[float, float]] = {}
    inputs = {
        "seconds": Input(FLOAT, "how long", minimum=0),
        "value": Input(JSON, "passed through", default=None),
        "cooperative": Input(BOOL, "check for cancellation while sleeping", default=True),
    }
    outputs = {"value": Output(JSON, "the value")}

    def run(self, ctx, seconds, value, cooperative):
        start = time.perf_counter()
        end = start + seconds
        while time.perf_counter() < end:
            if cooperative:
                ctx.check_cancelled()
            time.sleep(min(0.01, max(0.0, end - time.perf_counter())))
            ctx.progress(time.perf_counter() - start, seconds)
        Sleep.intervals[ctx.node_id] = (start, time.perf_counter())
        return {"value": value}


class Fail(Node):
    """Raise an error."""

    type = "zoo.fail"
    blocking = False
    inputs = {"message": Input(TEXT, "the error message"), "x": Input(JSON, "ignored", default=None)}
    outputs = {"never": Output(JSON, "never produced")}

    def run(self, ctx, message, x):
        raise RuntimeError(message)


class Rand(Node):
    """A random number from a seed."""

    type = "zoo.rand"
    blocking = False
    inputs = {"seed": Seed(), "scale": Input(FLOAT, "multiplier", default=1.0)}
    outputs = {"value": Output(FLOAT, "random number in [0, scale)")}

    def run(self, ctx, seed, scale):
        return {"value": random.Random(seed).random() * scale}


class AsyncEcho(Node):
    """Echo a text after an asynchronous pause."""

    type = "zoo.async_echo"
    inputs = {"text": Input(TEXT, "text")}
    outputs = {"text": Output(TEXT, "the text")}

    async def run(self, ctx, text):
        await asyncio.sleep(0.01)
        return {"text": text}


class Clock(Node):
    """The current time (varies by design)."""

    type = "zoo.clock"
    blocking = False
    volatile = True
    inputs = {}
    outputs = {"now": Output(FLOAT, "seconds since the epoch")}

    def run(self, ctx):
        return {"now": time.time()}


class BadReturn(Node):
    """Return the wrong shape."""

    type = "zoo.bad_return"
    blocking = False
    inputs = {}
    outputs = {"a": Output(INT, "a")}

    def run(self, ctx):
        return {"b": 1}


class ThreadName(Node):
    """Report the thread that ran the node."""

    type = "zoo.thread_name"
    inputs = {"x": Input(JSON, "ignored", default=None)}
    outputs = {"name": Output(TEXT, "thread name")}

    def run(self, ctx, x):
        return {"name": threading.current_thread().name}


ZOO = [Const, Inc, Add, Sleep, Fail, Rand, AsyncEcho, Clock, BadReturn, ThreadName]


class Recorder(list):
    """A listener that keeps every event."""

    def __call__(self, event) -> None:
        self.append(event)

    def kinds(self) -> list[str]:
        return [e.kind for e in self]


def link(node: str, output: str) -> dict:
    """A link input."""
    return {"from": node, "output": output}


class G:
    """A tiny builder for workflow documents."""

    def __init__(self):
        self.doc: dict = {"nodes": {}}

    def node(self, nid: str, type_: str, **inputs) -> "G":
        self.doc["nodes"][nid] = {"type": type_, "inputs": inputs}
        return self

    def param(self, name: str, *binds: tuple[str, str], **extra) -> "G":
        self.doc.setdefault("params", {})[name] = {
            "description": f"param {name}", "bind": [{"node": n, "input": i} for n, i in binds], **extra}
        return self

    def output(self, name: str, node: str, output: str) -> "G":
        self.doc.setdefault("outputs", {})[name] = link(node, output)
        return self

    def build(self) -> Workflow:
        return Workflow.from_dict(self.doc)


def chain(n: int) -> G:
    """zoo.inc x n, output `x` at the end."""
    g = G().node("n0", "zoo.inc", x=0)
    for i in range(1, n):
        g.node(f"n{i}", "zoo.inc", x=link(f"n{i - 1}", "x"))
    return g.output("x", f"n{n - 1}", "x")

"""Engine overhead benchmark: per-node cost of chains and fan-outs of cheap nodes.

Prints a table of microseconds per node for each phase, the ratio against a bare Python loop
that calls the same node functions (the floor any engine pays), and `flow --help` wall time
against `python -c pass`. Targets: full run <= 50 us/node, fully cached re-run <= 10 us/node,
`flow --help` <= 0.3 s. Run with `make bench` or `.venv/bin/python bench/engine.py [--quick]`.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from engine import Engine, Input, INT, MemoryCache, Node, Output, Registry, Workflow  # noqa: E402


class Inc(Node):
    """Add a step to a number (the cheap node every shape is made of)."""

    type = "bench.inc"
    blocking = False
    inputs = {"x": Input(INT, "a number", default=0), "k": Input(INT, "the step", default=1)}
    outputs = {"x": Output(INT, "x + k")}

    def run(self, ctx, x, k):
        return {"x": x + k}


def chain_doc(n: int) -> dict:
    nodes = {"n0": {"type": "bench.inc", "inputs": {"x": 0}}}
    for i in range(1, n):
        nodes[f"n{i}"] = {"type": "bench.inc", "inputs": {"x": {"from": f"n{i - 1}", "output": "x"}}}
    last = f"n{n - 1}"
    return {"nodes": nodes, "outputs": {"x": {"from": last, "output": "x"}},
            "params": {"head": {"description": "head input", "bind": [{"node": "n0", "input": "x"}]},
                       "leaf": {"description": "last node's step", "bind": [{"node": last, "input": "k"}],
                                "default": 1}}}


def fanout_doc(n: int) -> dict:
    nodes = {"root": {"type": "bench.inc", "inputs": {"x": 0}}}
    outputs = {}
    for i in range(n - 1):
        nodes[f"l{i}"] = {"type": "bench.inc", "inputs": {"x": {"from": "root", "output": "x"}}}
        outputs[f"l{i}"] = {"from": f"l{i}", "output": "x"}
    return {"nodes": nodes, "outputs": outputs,
            "params": {"head": {"description": "root input", "bind": [{"node": "root", "input": "x"}]},
                       "leaf": {"description": "one leaf's step", "bind": [{"node": "l0", "input": "k"}],
                                "default": 1}}}


def best(fn, repeat: int) -> float:
    """Best of ``repeat`` timings (seconds): the least disturbed by neighbours on shared machines."""
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def bare_loop(doc: dict) -> None:
    """The floor: call each node's run in document order, passing values through a dict."""
    node = Inc()
    values = {}
    for nid, body in doc["nodes"].items():
        x = body["inputs"]["x"]
        if isinstance(x, dict):
            x = values[x["from"]]["x"]
        values[nid] = node.run(None, x=x, k=body["inputs"].get("k", 1))


def measure(shape: str, n: int, repeat: int) -> list[tuple[str, float]]:
    """Microseconds per node for each phase of one shape."""
    doc = chain_doc(n) if shape == "chain" else fanout_doc(n)
    text = json.dumps(doc)
    with tempfile.TemporaryDirectory() as tmp:
        engine = Engine(Registry([Inc]), cache=MemoryCache(1 << 30), output_dir=tmp, workers=2)
        rows = []
        rows.append(("bare loop (floor)", best(lambda: bare_loop(doc), repeat)))
        rows.append(("load: JSON + schema check", best(lambda: Workflow.loads(text), repeat)))
        wf = Workflow.loads(text)

        def compile_fresh():
            engine._compiled.clear()
            engine.compile(wf)

        rows.append(("compile: validate + order + keys", best(compile_fresh, repeat)))
        engine.compile(wf)

        def cold_run():
            engine.cache.clear()
            engine.run_sync(wf, {"head": 0})

        rows.append(("full run (compiled, cold cache)", best(cold_run, repeat)))
        engine.run_sync(wf, {"head": 0})
        rows.append(("fully cached re-run", best(lambda: engine.run_sync(wf, {"head": 0}), repeat)))
        heads = iter(range(1, 10**9))
        rows.append(("re-run, head changed", best(lambda: engine.run_sync(wf, {"head": next(heads)}), repeat)))
        leaves = iter(range(1, 10**9))
        rows.append(("re-run, one leaf changed",
                     best(lambda: engine.run_sync(wf, {"head": 0, "leaf": next(leaves)}), repeat)))

        def end_to_end():
            fresh = Workflow.loads(text)
            engine.cache.clear()
            engine.run_sync(fresh, {"head": 0})

        rows.append(("end to end: load + compile + cold run", best(end_to_end, max(1, repeat // 2))))
        engine.close()
    return [(name, seconds / n * 1e6) for name, seconds in rows]


def wall(cmd: list[str], repeat: int) -> float:
    return best(lambda: subprocess.run(cmd, check=True, capture_output=True, cwd=ROOT), repeat)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="sizes 1,000 only, fewer repeats")
    args = parser.parse_args()
    sizes = [1000] if args.quick else [1000, 10_000]
    repeat = 3 if args.quick else 5
    print(f"flow engine benchmark (python {sys.version.split()[0]}, best of {repeat}); microseconds per node\n")
    for shape in ("chain", "fanout"):
        for n in sizes:
            rows = measure(shape, n, repeat)
            floor = rows[0][1]
            print(f"{shape} of {n:,} nodes")
            print(f"  {'phase':<42}{'us/node':>10}{'x floor':>10}  target")
            for name, us in rows:
                target = {"full run (compiled, cold cache)": "<= 50", "fully cached re-run": "<= 10"}.get(name, "")
                print(f"  {name:<42}{us:>10.2f}{us / floor:>10.1f}  {target}")
            print()
    flow = str(Path(sys.executable).with_name("flow"))
    help_s = statistics.median(wall([flow, "--help"], 1) for _ in range(5))
    pass_s = statistics.median(wall([sys.executable, "-c", "pass"], 1) for _ in range(5))
    print(f"`flow --help`: {help_s:.3f} s   `python -c pass`: {pass_s:.3f} s   ratio {help_s / pass_s:.1f}x   "
          f"target <= 0.3 s")


if __name__ == "__main__":
    main()

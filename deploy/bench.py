"""`flow bench`: what flow costs on this machine, as a table to paste into an issue.

Four sections, each timed here, in this process:

* the machine: the device models run on, torch and its ROCm/CUDA version, the GPU, fp16 or fp32;
* engine overhead: a chain of text nodes run once (microseconds per node) and again (all cached);
* a cached request: the saved `/hello` endpoint through the real gateway application (in
  process, over loopback), requests per second and mean milliseconds;
* one generation per modality (image, text, music) with the model each endpoint uses by
  default, when it is on this machine: seconds, seconds per step (denoising step, or token),
  and the peak memory (VRAM on a GPU, the process's resident memory on the CPU). A model that
  is not here is reported as skipped, never downloaded.

Outputs go to a temporary folder; nothing is left behind but the table.
"""

from __future__ import annotations

import asyncio
import json
import resource
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

#: the generations: name, saved workflow, params (small: this times the card, not the art), its steps
GENERATIONS: tuple[tuple[str, str, dict[str, Any]], ...] = (
    ("image", "image_gen", {"prompt": "a lighthouse at dusk", "width": 512, "height": 512, "steps": 4, "seed": 1}),
    ("text", "text_gen", {"prompt": "Write one sentence about rain.", "max_tokens": 32, "seed": 1,
                          "temperature": 0}),
    ("music", "music_gen", {"prompt": "calm piano", "duration": 2.0, "seed": 1}),
)


@dataclass
class Row:
    """One line of the table."""

    what: str
    result: str
    detail: str = ""


def machine(models) -> list[Row]:
    """The device, torch, ROCm or CUDA, the GPU and the precision models load in."""
    from engine.models.device import dtype_for, torch_info

    device = models.device  # probes here: a command may import torch
    info = torch_info() or {}
    gpu = info.get("gpu") or "none (the CPU runs the models)"
    backend = f"ROCm/HIP {info['hip']}" if info.get("hip") else f"CUDA {info['cuda']}" if info.get("cuda") else "CPU"
    precision = {"float16": "fp16", "float32": "fp32"}[dtype_for(device)]
    return [Row("device", device, models.report().budget_source), Row("torch", info.get("version", "not installed"),
                                                                       backend),
            Row("GPU", gpu), Row("precision", precision, "the dtype models load in on this device")]


def engine_overhead(engine, nodes: int = 1000) -> list[Row]:
    """A chain of `nodes` text.join nodes: the first run, then the same run from the cache."""
    from engine import Workflow

    doc = {"name": "bench-chain", "nodes": {"n0": {"type": "text.join", "inputs": {"a": "bench", "b": "0"}}}}
    for i in range(1, nodes):
        doc["nodes"][f"n{i}"] = {"type": "text.join", "inputs": {"a": {"from": f"n{i - 1}", "output": "text"},
                                                                 "b": "."}}
    doc["outputs"] = {"text": {"from": f"n{nodes - 1}", "output": "text"}}
    workflow = Workflow.from_dict(doc)
    started = time.perf_counter()
    engine.run_sync(workflow)
    first = time.perf_counter() - started
    started = time.perf_counter()
    again = engine.run_sync(workflow)
    cached = time.perf_counter() - started
    if again.executed:
        raise RuntimeError(f"the cached re-run ran {len(again.executed)} nodes again")
    return [Row(f"engine, {nodes}-node chain", f"{first / nodes * 1e6:.1f} us/node", f"compiled and run: {first * 1000:.0f} ms"),
            Row("engine, same chain again", f"{cached * 1000:.2f} ms", "served from the output cache")]


def cached_request(engine, settings, requests: int = 300) -> list[Row]:
    """`POST /hello` through the gateway application on loopback, after one warm call."""
    from aiohttp.test_utils import TestClient, TestServer

    from server import create_app

    async def measure() -> float:
        app = create_app(engine, settings.with_(probe_device=False))
        async with TestClient(TestServer(app)) as client:
            for _ in range(3):
                await (await client.post("/hello", json={"name": "bench"})).read()
            started = time.perf_counter()
            for _ in range(requests):
                response = await client.post("/hello", json={"name": "bench"})
                await response.read()
                if response.status != 200:
                    raise RuntimeError(f"/hello answered {response.status}")
            return time.perf_counter() - started

    took = asyncio.run(measure())
    return [Row("cached request, POST /hello", f"{requests / took:.0f} req/s",
                f"{took / requests * 1000:.2f} ms each, one client, this process")]


def generations(engine, catalogue, store, only: set[str] | None = None) -> list[Row]:
    """One generation per modality with the endpoint's default model, when that model is here."""
    from engine.errors import FlowError

    rows = []
    for name, workflow_name, params in GENERATIONS:
        if only is not None and name not in only:
            continue
        workflow = catalogue.workflows.get(workflow_name)
        if workflow is None:
            rows.append(Row(name, "skipped", f"no saved workflow {workflow_name}"))
            continue
        model = _model_of(workflow, params)
        if not model and name == "text" and "text" in engine.config:  # the text nodes' own default
            model = engine.config["text"].default_model("chat", engine.models.ollama is not None)
            params = {**params, "model": model}
        missing = _missing(store, model) if model else None
        if missing:
            rows.append(Row(name, "skipped", missing))
            continue
        try:
            seconds, result, peak = _timed(engine, lambda: engine.run_sync(workflow, params))
        except FlowError as exc:
            rows.append(Row(name, "failed", str(exc)[:160]))
            continue
        steps, unit = _steps(name, params, result)
        per_step = f"{seconds / steps:.3f} s/{unit}" if steps else ""
        rows.append(Row(f"{name} ({model or 'default'})", f"{seconds:.2f} s", f"{per_step}, peak {peak}".lstrip(", ")))
    return rows


def _model_of(workflow, params: dict) -> str:
    declared = workflow.params.get("model")
    return str(params.get("model") or (declared.default if declared is not None else "") or "")


def _missing(store, model: str) -> str | None:
    """Why `model` cannot run here without a download (None when it can)."""
    from engine.errors import FlowError

    try:
        ref = store.parse(model)
    except FlowError as exc:
        return str(exc)[:160]
    if ref.source == "ollama":
        return None  # the Ollama server says (a missing one fails with its own message)
    try:
        store.path(ref)
    except FlowError:
        return f"{model} is not on this machine (flow pull {model})"
    return None


def _timed(engine, call: Callable[[], Any]) -> tuple[float, Any, str]:
    torch = _torch_if_gpu(engine)
    if torch is not None:
        torch.cuda.reset_peak_memory_stats()
    started = time.perf_counter()
    result = call()
    seconds = time.perf_counter() - started
    if torch is not None:
        peak = f"{torch.cuda.max_memory_allocated() / 2**30:.2f} GiB VRAM"
    else:
        peak = f"{resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20:.2f} GiB RSS (CPU)"
    return seconds, result, peak


def _torch_if_gpu(engine):
    if engine.models is None or engine.models.device == "cpu":
        return None
    import torch

    return torch


def _steps(name: str, params: dict, result) -> tuple[int, str]:
    if name == "image":
        return int(params.get("steps") or 0), "step"
    usage = next((v for v in result.outputs.values() if isinstance(v, dict) and "completion_tokens" in v), None)
    if usage:
        return int(usage.get("completion_tokens") or 0), "token"
    if name == "music":
        return int(float(params.get("duration") or 0) * 50), "token"  # MusicGen: 50 tokens a second
    return 0, ""


def run(settings, *, with_models: bool = True, only: set[str] | None = None) -> list[Row]:
    """Every section on an engine of `settings` whose outputs go to a temporary folder."""
    from cli_run import build_engine
    from engine.catalogue import Catalogue

    with tempfile.TemporaryDirectory(prefix="flow-bench-") as tmp:
        settings = settings.with_(output_dir=Path(tmp) / "out", jobs_db=Path(tmp) / "jobs.sqlite3",
                                  pull_on_demand=False)
        engine = build_engine(settings)
        try:
            rows = machine(engine.models) if engine.models is not None else []
            rows += engine_overhead(engine)
            rows += cached_request(engine, settings)
            if with_models and engine.models is not None:
                catalogue = Catalogue(engine, settings.workflows_dir)
                rows += generations(engine, catalogue, engine.models.store, only)
        finally:
            engine.close()
    return rows


def render(rows: list[Row]) -> str:
    """The table (Markdown, so it pastes into an issue as is)."""
    lines = ["| what | result | detail |", "|---|---|---|"]
    lines += [f"| {r.what} | {r.result} | {r.detail} |" for r in rows]
    return "\n".join(lines)


def as_json(rows: list[Row]) -> str:
    """The rows as JSON (`flow bench --json`)."""
    return json.dumps([vars(r) for r in rows], indent=2)

"""Image benchmark: engine overhead against calling the same diffusers pipeline directly.

Rows: import time, cold load (first request through the engine: model load + placement + run), warm
image.generate through the engine against the same pipeline called directly (same steps, same
size; the ratio's target is <= 1.03), and an identical request served from the output cache.
Engine and direct runs alternate so a busy neighbour slows both alike; medians are reported.
Usage: python bench/image.py [--model REF] [--size 256] [--steps 8] [--runs 7] [--device cpu|cuda]
Without --model it builds the tests' tiny Stable Diffusion in a temporary folder.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import nodes  # noqa: E402
from engine import Engine, MemoryCache, NullCache, Workflow  # noqa: E402
from engine.models import ModelManager, ModelStore  # noqa: E402


def doc(model: str, size: int, steps: int, seed: int) -> dict:
    return {"nodes": {"gen": {"type": "image.generate", "inputs": {
        "prompt": "a red cat", "width": size, "height": size, "steps": steps, "seed": seed, "model": model}}},
        "outputs": {"images": {"from": "gen", "output": "images"}}}


def timed(fn) -> float:
    started = time.perf_counter()
    fn()
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="", help="model reference (default: a tiny SD built here)")
    parser.add_argument("--models-dir", default="", help="models folder for --model (default: FLOW_MODELS_DIR)")
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--device", default="")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        models_dir = Path(args.models_dir or os.environ.get("FLOW_MODELS_DIR") or tmp)
        model = args.model
        if not model:
            from tiny import tiny_stable_diffusion

            tiny_stable_diffusion(models_dir / "local" / "tiny-sd")
            model = "tiny-sd"
        manager = ModelManager(ModelStore(models_dir), device=args.device or None)
        registry = nodes.registry()
        engine = Engine(registry, cache=NullCache(), models=manager, output_dir=Path(tmp) / "out")
        cached = Engine(registry, cache=MemoryCache(1 << 30), models=manager, output_dir=Path(tmp) / "out")
        try:
            rows = measure(engine, cached, manager, model, args)
        finally:
            engine.close()
            cached.close()
    print(f"\nimage.generate, {model}, {args.size}x{args.size}, {args.steps} steps, device {manager.device}")
    print(f"{'measure':<44} {'seconds':>10}")
    for name, value in rows:
        print(f"{name:<44} {value:>10.4f}" if isinstance(value, float) else f"{name:<44} {value:>10}")


def measure(engine: Engine, cached: Engine, manager: ModelManager, model: str, args) -> list[tuple[str, object]]:
    import torch

    from nodes.image.pipes import VARIANT, loader

    def imports():
        import diffusers

        diffusers.AutoPipelineForText2Image, diffusers.StableDiffusionPipeline  # noqa: B018 (lazy modules)

    imported = timed(imports)
    wf = Workflow.from_dict(doc(model, args.size, args.steps, seed=1))
    cold = timed(lambda: engine.run_sync(wf))
    with manager.lease(model, loader(manager.device), variant=VARIANT) as pipes:
        direct_pipe = pipes.for_task("text2img")  # the same weights, called as diffusers' docs show

        def direct():
            with torch.inference_mode():
                direct_pipe("a red cat", width=args.size, height=args.size, num_inference_steps=args.steps,
                            guidance_scale=0.0, generator=torch.Generator("cpu").manual_seed(1))
            if manager.device != "cpu":
                torch.cuda.synchronize()

        direct()  # warm both paths once more
    engine.run_sync(wf)
    through, plain = [], []
    for _ in range(args.runs):
        through.append(timed(lambda: engine.run_sync(wf)))
        with manager.lease(model, loader(manager.device), variant=VARIANT):
            plain.append(timed(direct))
    cached.run_sync(wf)
    hit = [timed(lambda: cached.run_sync(wf)) for _ in range(args.runs)]
    engine_s, direct_s = statistics.median(through), statistics.median(plain)
    return [
        ("cold: importing diffusers (once per process)", imported),
        ("cold: first request (load + place + run)", cold),
        ("warm: diffusers pipeline called directly", direct_s),
        ("warm: through the engine (image.generate)", engine_s),
        ("engine / direct (target <= 1.03)", f"{engine_s / direct_s:.3f}"),
        ("identical request from the output cache", statistics.median(hit)),
        ("model loads from disk (all requests)", str(manager.counters.loads)),
    ]


if __name__ == "__main__":
    main()

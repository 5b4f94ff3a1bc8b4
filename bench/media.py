"""Benchmark music.generate and video.generate against calling the pipelines directly, both warm.

The engine side runs a one-node workflow (no output cache, so it really runs) through an
Engine with a ModelManager; the direct side loads the same folder with from_pretrained and
calls generate / the pipeline with the same arguments. Prints median seconds and the ratio
(target <= 1.03). Tiny models are built in a temporary folder unless real ones are named.
Usage: python bench/media.py [--runs 7] [--device cpu|cuda] [--root DIR --music NAME --video NAME]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests" / "media"))


def timed(direct, through, runs: int) -> tuple[float, float]:
    """Median seconds of each, run alternately so that a busy neighbour slows both alike."""
    direct(), through()  # warm: load, allocate, compile kernels
    times: tuple[list, list] = ([], [])
    for _ in range(runs):
        for fn, kept in zip((direct, through), times):
            start = time.perf_counter()
            fn()
            kept.append(time.perf_counter() - start)
    return statistics.median(times[0]), statistics.median(times[1])


def direct_music(folder: Path, device: str, args):
    import torch
    from transformers import AutoProcessor, MusicgenForConditionalGeneration

    dtype = torch.float32 if device == "cpu" else torch.float16
    net = MusicgenForConditionalGeneration.from_pretrained(folder, dtype=dtype, use_safetensors=True).to(device).eval()
    processor = AutoProcessor.from_pretrained(folder)
    tokens = round(args.seconds * net.config.audio_encoder.frame_rate) + net.decoder.config.num_codebooks - 1

    def run():
        inputs = processor(text=["calm piano"], padding=True, return_tensors="pt").to(device)
        with torch.inference_mode():
            torch.manual_seed(1)
            out = net.generate(**inputs, do_sample=True, max_new_tokens=tokens, guidance_scale=3.0, top_k=250)
        return out[0].float().cpu().numpy()

    return run


def direct_video(folder: Path, device: str, args):
    import torch
    from diffusers import DiffusionPipeline

    dtype = torch.float32 if device == "cpu" else torch.float16
    pipe = DiffusionPipeline.from_pretrained(folder, dtype=dtype, use_safetensors=True).to(device)
    pipe.set_progress_bar_config(disable=True)

    def run():
        with torch.inference_mode():
            out = pipe(prompt="a bird over the ocean", num_frames=args.frames, width=args.size, height=args.size,
                       num_inference_steps=args.steps, guidance_scale=5.0,
                       generator=torch.Generator("cpu").manual_seed(1), output_type="np")
        return out.frames[0]

    return run


def engine_run(engine, doc):
    from engine import Workflow

    workflow = Workflow.from_dict(doc)
    return lambda: engine.run_sync(workflow)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--root", type=Path, help="a model store folder holding the models under local/")
    parser.add_argument("--music", default="musicgen-tiny")
    parser.add_argument("--video", default="wan-tiny")
    parser.add_argument("--seconds", type=float, default=5.0, help="music length")
    parser.add_argument("--frames", type=int, default=17)
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--steps", type=int, default=10)
    args = parser.parse_args()

    import nodes
    from engine import Engine, NullCache
    from engine.models import ModelManager, ModelStore

    with tempfile.TemporaryDirectory() as tmp:
        root = args.root
        if root is None:
            from tiny_media import build_musicgen, build_wan

            root = Path(tmp) / "models"
            build_musicgen(root / "local" / args.music)
            build_wan(root / "local" / args.video)
        manager = ModelManager(ModelStore(root), device=args.device)
        engine = Engine(nodes.registry(), cache=NullCache(), models=manager, output_dir=Path(tmp) / "out", workers=2)
        music_doc = {"nodes": {"m": {"type": "music.generate", "inputs": {
            "prompt": "calm piano", "duration": args.seconds, "seed": 1, "model": args.music}}}}
        video_doc = {"nodes": {"v": {"type": "video.generate", "inputs": {
            "prompt": "a bird over the ocean", "frames": args.frames, "width": args.size, "height": args.size,
            "steps": args.steps, "seed": 1, "model": args.video}}}}
        rows = [
            (f"music.generate {args.seconds:g} s", direct_music(root / "local" / args.music, args.device, args),
             engine_run(engine, music_doc)),
            (f"video.generate {args.frames}x{args.size}px {args.steps} steps",
             direct_video(root / "local" / args.video, args.device, args), engine_run(engine, video_doc)),
        ]
        print(f"device {args.device}, {args.runs} warm runs each, median seconds")
        print(f"{'task':<36}{'direct':>10}{'engine':>10}{'ratio':>8}")
        for name, direct, through in rows:
            d, e = timed(direct, through, args.runs)
            print(f"{name:<36}{d:>10.4f}{e:>10.4f}{e / d:>8.3f}")
        engine.close()


if __name__ == "__main__":
    main()

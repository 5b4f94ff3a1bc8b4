"""Benchmark text.generate through the engine against the model's own `generate`, warm, same tokens.

Both sides use the same loaded model object (leased from the model manager), the same chat
prompt, seed and sampling settings, so they produce the same tokens (checked). Runs alternate
and medians are compared: the ratio is the engine's overhead (target <= 1.05). Time to first
token (as the node reports it) is shown against the total.
Usage: python bench/text.py [--tokens 64] [--runs 15] [--hidden 32] [--layers 2] [--threads 1]
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
sys.path.insert(0, str(ROOT / "tests" / "text"))  # the tiny model recipe the tests use

import torch  # noqa: E402
from llm_tiny import build_tiny_llm  # noqa: E402

import nodes  # noqa: E402
from engine import Engine, NullCache, Workflow  # noqa: E402
from engine.models import ModelManager, ModelStore  # noqa: E402
from nodes.llm.hf_backend import _loader  # noqa: E402

PROMPT, SYSTEM = "Write a short poem about the river and the stone.", "You are a poet."


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tokens", type=int, default=64)
    parser.add_argument("--runs", type=int, default=15)
    parser.add_argument("--hidden", type=int, default=32, help="hidden size of the tiny model")
    parser.add_argument("--layers", type=int, default=2)
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads")
    parser.add_argument("--seed", type=int, default=5)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    with tempfile.TemporaryDirectory() as tmp:
        build_tiny_llm(Path(tmp) / "local" / "tiny", hidden=args.hidden, layers=args.layers)
        manager = ModelManager(ModelStore(tmp), device="cpu")
        engine = Engine(nodes.registry(), cache=NullCache(), models=manager, output_dir=Path(tmp) / "out", workers=2)
        workflow = Workflow.from_dict({"nodes": {"gen": {"type": "text.generate", "inputs": {
            "prompt": PROMPT, "system": SYSTEM, "model": "tiny", "max_tokens": args.tokens, "seed": args.seed,
            "temperature": 0.8, "top_p": 0.9}}}})

        def through_engine():
            start, cpu = time.perf_counter(), time.process_time()
            result = engine.run_sync(workflow)
            took = (time.perf_counter() - start, time.process_time() - cpu)
            return took, result.outputs["gen.text"], result.outputs["gen.usage"]

        with manager.lease("tiny", _loader("causal-lm", "cpu"), variant="causal-lm") as (model, tokenizer):
            messages = [{"role": "system", "content": SYSTEM}, {"role": "user", "content": PROMPT}]

            def direct():
                start, cpu = time.perf_counter(), time.process_time()
                encoded = tokenizer.apply_chat_template(messages, add_generation_prompt=True, return_tensors="pt",
                                                        return_dict=True)
                torch.manual_seed(args.seed)
                with torch.inference_mode():
                    out = model.generate(**encoded, max_new_tokens=args.tokens, do_sample=True, temperature=0.8,
                                         top_p=0.9, top_k=0, pad_token_id=tokenizer.pad_token_id)
                text = tokenizer.decode(out[0, encoded["input_ids"].shape[-1]:], skip_special_tokens=True)
                took = (time.perf_counter() - start, time.process_time() - cpu)
                return took, text, int(out.shape[-1] - encoded["input_ids"].shape[-1])

            through_engine(), direct()  # warm: model loaded, kernels and code paths touched
            engine_s, direct_s, ttft = [], [], []
            for _ in range(args.runs):
                seconds, text, usage = through_engine()
                engine_s.append(seconds)
                ttft.append(usage["first_token_s"])
                seconds, direct_text, tokens = direct()
                direct_s.append(seconds)
                if direct_text != text:
                    sys.exit(f"the engine and the direct call produced different text:\n{text!r}\n{direct_text!r}")
        engine.close()

    params = sum(p.numel() for p in model.parameters())
    print(f"text.generate benchmark: tiny Llama ({params:,} parameters), {tokens} tokens generated, "
          f"{args.runs} warm runs each, torch threads {args.threads}, CPU")
    print(f"{'':36}{'median':>10}{'min':>10}{'max':>10}")

    def row(name: str, values: list[float]) -> float:
        values = [v * 1e3 for v in values]
        print(f"{name:36}{statistics.median(values):>8.1f}ms{min(values):>8.1f}ms{max(values):>8.1f}ms")
        return statistics.median(values)

    wall_direct = row("direct model.generate, wall", [w for w, _ in direct_s])
    wall_engine = row("text.generate via engine, wall", [w for w, _ in engine_s])
    cpu_direct = row("direct model.generate, CPU time", [c for _, c in direct_s])
    cpu_engine = row("text.generate via engine, CPU time", [c for _, c in engine_s])
    first = row("time to first token (node usage)", ttft)
    print(f"ratio engine / direct: {wall_engine / wall_direct:.3f} wall, {cpu_engine / cpu_direct:.3f} CPU time "
          f"(target <= 1.05); first token at {first / wall_engine:.1%} of the engine's total; "
          f"{wall_direct / max(tokens, 1):.2f} ms per token direct")
    print("(CPU time is the process's, all threads: on a busy shared machine it is the steadier of the two)")


if __name__ == "__main__":
    main()

"""Benchmark the model manager: requests alternate between three models under a budget that fits two.

Compares, in one run: the manager (offload to RAM, drop when RAM is full), reloading from disk
for every request, and keeping everything on the device (which exceeds the budget).
Usage: python bench/models.py [--mib 64] [--requests 30] [--device cpu|cuda]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import torch  # noqa: E402
from safetensors.torch import load_file, save_file  # noqa: E402

from engine.models import ModelManager, ModelStore  # noqa: E402

MiB = 1 << 20


class Net(torch.nn.Module):
    """A square linear layer whose weights come from a safetensors file."""

    def __init__(self, side: int):
        super().__init__()
        self.layer = torch.nn.Linear(side, side, bias=False)

    def forward(self, x):
        return self.layer(x)


def make_models(root: Path, mib: int) -> int:
    side = int((mib * MiB / 4) ** 0.5)
    for i, name in enumerate("abc"):
        folder = root / "local" / name
        folder.mkdir(parents=True)
        save_file({"layer.weight": torch.randn(side, side, generator=torch.Generator().manual_seed(i))},
                  folder / "model.safetensors")
    return side


def loader(side: int):
    def load(path: Path) -> Net:
        net = Net(side)
        net.load_state_dict(load_file(path / "model.safetensors"))
        return net

    return load


def run(manager: ModelManager, load, requests: int, side: int, device: str, per_request_unload: bool):
    x = torch.ones(1, side, device=device)
    times, peak = [], 0
    for i in range(requests):
        name = "abc"[i % 3]
        start = time.perf_counter()
        with manager.lease(name, load) as net:
            net(x).sum().item()
        times.append(time.perf_counter() - start)
        peak = max(peak, manager.report().used)
        if per_request_unload:
            manager.unload()
    return times, peak, manager.counters


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mib", type=int, default=64, help="size of each model in MiB")
    parser.add_argument("--requests", type=int, default=30)
    parser.add_argument("--device", default=None, help="cpu or cuda (default: probe)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        side = make_models(Path(tmp), args.mib)
        store = ModelStore(tmp)
        size = side * side * 4
        budget = int(size * 2.5)  # fits two models, not three
        make = lambda budget_: ModelManager(store, device=args.device, gpu_budget=budget_, cpu_budget=4 * size)
        managed = make(budget)
        device = managed.device
        rows = {
            "manager (budget fits 2)": run(managed, loader(side), args.requests, side, device, False),
            "reload every time": run(make(budget), loader(side), args.requests, side, device, True),
            "keep everything": run(make(10 * size), loader(side), args.requests, side, device, False),
        }
    report = managed.report()
    print(f"device: {device}; budget {budget / MiB:.0f} MiB ({report.budget_source})")
    if device == "cpu":
        print("no GPU here: the 'GPU' is the configured budget; moves to it and offloads are accounting only")
    print(f"3 models of {size / MiB:.0f} MiB, {args.requests} requests cycling a, b, c\n")
    base_reload = statistics.mean(rows["reload every time"][0])
    base_keep = statistics.mean(rows["keep everything"][0])
    head = f"{'strategy':<26}{'loads':>6}{'offloads':>9}{'drops':>6}{'peak MiB':>9}{'ms/lease':>9}{'median':>8}" \
           f"{'vs reload':>10}{'vs keep-all':>12}"
    print(head)
    print("-" * len(head))
    for name, (times, peak, counters) in rows.items():
        mean = statistics.mean(times)
        over = " (over budget)" if peak > budget else ""
        print(f"{name:<26}{counters.loads:>6}{counters.offloads:>9}{counters.drops:>6}{peak / MiB:>9.0f}"
              f"{mean * 1000:>9.2f}{statistics.median(times) * 1000:>8.2f}{base_reload / mean:>9.1f}x{base_keep / mean:>11.2f}x{over}")
    print("\nms/lease is the mean (first loads included); ratios use it: vs reload = times faster than "
          "reloading from disk, vs keep-all = speed relative to keeping all three on the device.")


if __name__ == "__main__":
    main()

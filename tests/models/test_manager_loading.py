"""Loads are serialised (diffusers patches torch process-wide while loading); oversized pipelines
run with model CPU offload instead of being refused."""

from __future__ import annotations

import threading
import time

import torch

MiB = 1 << 20


class Blob(torch.nn.Module):
    """A module holding `nbytes` as float32 parameters."""

    def __init__(self, nbytes: int):
        super().__init__()
        self.weight = torch.nn.Parameter(torch.zeros(nbytes // 4))


def test_manager_serialises_loads_of_different_models(make_manager):
    manager = make_manager(budget_mib=100)
    active, peak, lock = [0], [0], threading.Lock()

    def loader(path):
        with lock:
            active[0] += 1
            peak[0] = max(peak[0], active[0])
        time.sleep(0.1)
        with lock:
            active[0] -= 1
        return Blob(MiB)

    def lease(name):
        with manager.lease(name, loader):
            pass

    threads = [threading.Thread(target=lease, args=(name,)) for name in "abc"]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert peak[0] == 1 and manager.counters.loads == 3


class FakePipeline:
    """Duck-types a diffusers pipeline: components, and model CPU offload."""

    def __init__(self):
        self.components = {"big": Blob(6 * MiB), "small": Blob(2 * MiB), "scheduler": object()}
        self.offloaded = False

    def enable_model_cpu_offload(self):
        self.offloaded = True


def test_manager_runs_a_pipeline_larger_than_the_budget_with_cpu_offload(make_manager, monkeypatch):
    from engine.models.device import DeviceBudget

    manager = make_manager(budget_mib=7)
    # a GPU device without a GPU: placement of a hooked model moves nothing
    monkeypatch.setattr(manager, "_probe", lambda: DeviceBudget("cuda", 7 * MiB, "test"))
    with manager.lease("a", lambda path: FakePipeline()) as pipe:
        assert pipe.offloaded
        report = manager.report()
        assert report.used == 6 * MiB  # only the largest component is counted on the device
    assert manager.counters.low_memory_switches == 1


def test_manager_still_refuses_an_oversized_model_that_cannot_offload(make_manager):
    import pytest

    from engine.errors import OutOfMemory

    manager = make_manager(budget_mib=4)
    with pytest.raises(OutOfMemory, match="needs 8.00 MiB but only 4.00 MiB"):
        with manager.lease("a", lambda path: Blob(8 * MiB)):
            pass


def test_lower_memory_reaches_the_vae_of_a_pipeline_that_moved_the_switches_there():
    from engine.models.sizes import lower_memory

    class Vae:
        def __init__(self):
            self.on = []

        def enable_slicing(self):
            self.on.append("slicing")

        def enable_tiling(self):
            self.on.append("tiling")

    class Pipeline:
        def __init__(self):
            self.vae = Vae()

        def enable_attention_slicing(self):
            self.vae.on.append("attention")

    pipe = Pipeline()
    assert lower_memory(pipe, "cpu") == ["enable_vae_slicing", "enable_vae_tiling", "enable_attention_slicing"]
    assert pipe.vae.on == ["slicing", "tiling", "attention"]

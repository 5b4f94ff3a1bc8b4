"""The manager on a real GPU (CUDA or ROCm): detected budget, sizes against the allocator, real OOM."""

from __future__ import annotations

import pytest
import torch

from engine.errors import OutOfMemory
from engine.models import ModelManager

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA/ROCm GPU")]
MiB = 1 << 20


def blob(mib: int):
    return lambda path: torch.nn.Linear(mib * MiB // 4, 1, bias=False)


def test_gpu_budget_is_detected_and_sizes_match_the_allocator(store):
    manager = ModelManager(store, gpu_reserve=512 * MiB)
    total = torch.cuda.mem_get_info()[1]
    assert manager.device == "cuda" and manager.budget == total - 512 * MiB
    before = torch.cuda.memory_allocated()
    with manager.lease("a", blob(64)) as model:
        assert next(model.parameters()).is_cuda
        assert torch.cuda.memory_allocated() - before == manager.loaded()[0].size == 64 * MiB


def test_gpu_offload_under_a_budget_below_two_models(store):
    manager = ModelManager(store, gpu_budget=100 * MiB)
    for name in "ab":
        with manager.lease(name, blob(64)):
            pass
    places = {m.ref[-1]: m.place for m in manager.loaded()}
    assert places == {"a": "cpu", "b": "device"} and manager.counters.offloads == 1
    with manager.lease("a", blob(64)) as model:
        assert next(model.parameters()).is_cuda


def test_gpu_real_allocation_failure_becomes_our_error(store):
    manager = ModelManager(store)
    total = torch.cuda.mem_get_info()[1]

    def too_big(model):
        return torch.empty(2 * total, dtype=torch.uint8, device="cuda")

    with pytest.raises(OutOfMemory, match="ran out of memory"):
        manager.run("a", blob(1), too_big)
    assert manager.run("a", blob(1), lambda model: "still usable") == "still usable"

"""The out-of-memory ladder with torch's real OutOfMemoryError: free and retry, lower memory, clear error."""

from __future__ import annotations

import pytest
import torch

from engine.errors import OutOfMemory

MiB = 1 << 20


class SlicingModel(torch.nn.Module):
    """A tiny model with diffusers' lower-memory switches; its work fails with OOM until sliced."""

    def __init__(self):
        super().__init__()
        self.weight = torch.nn.Parameter(torch.zeros(MiB // 4))
        self.modes: list[str] = []

    def enable_attention_slicing(self):
        self.modes.append("attention")

    def enable_vae_tiling(self):
        self.modes.append("tiling")

    def enable_model_cpu_offload(self):  # must not be used on a CPU device
        raise AssertionError("CPU offload switched on without a GPU")


def failing(times: int):
    """Work that raises torch's real out-of-memory error `times` times, then answers 'done'."""
    calls = []

    def work(model):
        calls.append(1)
        if len(calls) <= times:
            raise torch.OutOfMemoryError("HIP out of memory. Tried to allocate 2.00 GiB")
        return "done"

    return work, calls


def test_oom_once_frees_idle_models_and_retries(make_manager, loader_of):
    manager = make_manager(10)
    with manager.lease("a", loader_of(4)):
        pass
    work, calls = failing(1)
    assert manager.run("b", loader_of(4), work) == "done"
    assert len(calls) == 2 and manager.counters.oom_retries == 1
    assert {m.ref[-1]: m.place for m in manager.loaded()} == {"a": "cpu", "b": "device"}


def test_oom_twice_switches_to_lower_memory_modes(make_manager):
    manager = make_manager(10)
    calls = []

    def work(model):
        calls.append(1)
        if not model.modes:
            raise torch.OutOfMemoryError("CUDA out of memory")
        return model.modes

    assert manager.run("a", lambda path: SlicingModel(), work) == ["tiling", "attention"]
    assert len(calls) == 3
    assert manager.counters.oom_retries == 2 and manager.counters.low_memory_switches == 1
    assert manager.loaded()[0].low_memory == ("enable_vae_tiling", "enable_attention_slicing")


@pytest.mark.parametrize("model_loader", [lambda path: SlicingModel(), lambda path: torch.nn.Linear(4, 4)])
def test_oom_always_raises_a_clear_error_and_the_manager_stays_usable(make_manager, loader_of, model_loader):
    manager = make_manager(10)
    work, calls = failing(99)
    with pytest.raises(OutOfMemory) as caught:
        manager.run("a", model_loader, work)
    message = str(caught.value)
    assert "model " in message and "/a" in message and "budget 10.00 MiB" in message
    assert "HIP out of memory" in message and "try a smaller size" in message
    assert len(calls) == (3 if isinstance(model_loader(None), SlicingModel) else 2)
    assert manager.loaded()[0].pinned == 0
    assert manager.run("b", loader_of(1), lambda model: "fine") == "fine"


def test_oom_inside_a_plain_lease_becomes_our_error(make_manager, loader_of):
    manager = make_manager(10)
    with manager.lease("a", loader_of(1)):
        pass
    with pytest.raises(OutOfMemory, match="ran out of memory"):
        with manager.lease("b", loader_of(1)):
            raise torch.OutOfMemoryError("CUDA out of memory")
    assert {m.ref[-1]: (m.place, m.pinned) for m in manager.loaded()} == {"a": ("cpu", 0), "b": ("device", 0)}
    with pytest.raises(KeyError):  # other errors pass through untouched
        with manager.lease("b", loader_of(1)):
            raise KeyError("x")


def test_oom_while_moving_to_the_device_retries_once(make_manager, loader_of):
    class Stubborn(torch.nn.Linear):
        fails = 1

        def to(self, *args, **kwargs):
            if Stubborn.fails:
                Stubborn.fails -= 1
                raise torch.OutOfMemoryError("HIP out of memory while moving")
            return super().to(*args, **kwargs)

    manager = make_manager(10)
    with manager.lease("a", loader_of(1)):
        pass
    with manager.lease("b", lambda path: Stubborn(4, 4)) as model:
        assert isinstance(model, Stubborn)
    assert manager.counters.oom_retries == 1 and manager.counters.offloads == 1

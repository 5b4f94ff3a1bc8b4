"""Music and video on a real GPU (CUDA or ROCm): half precision, same seed same output, memory measured."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from test_media_music import music
from test_media_video import video

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA/ROCm GPU")]


@pytest.fixture
def gpu_engine(registry, models_dir, tmp_path):
    from engine import Engine, NullCache
    from engine.models import ModelManager, ModelStore

    manager = ModelManager(ModelStore(models_dir), device="cuda")
    eng = Engine(registry, cache=NullCache(), models=manager, output_dir=tmp_path / "out", workers=2)
    yield eng
    eng.close()


@pytest.mark.parametrize("make, output, values", [(music, "audio", "samples"), (video, "video", "frames")])
def test_gpu_same_seed_same_output_in_half_precision(gpu_engine, make, output, values, capsys):
    torch.cuda.reset_peak_memory_stats()
    first = gpu_engine.run_sync(make(seed=5))
    again = gpu_engine.run_sync(make(seed=5))
    assert gpu_engine.models.device == "cuda"
    assert gpu_engine.models.loaded()[0].place == "device"
    assert np.array_equal(getattr(first.outputs[output], values), getattr(again.outputs[output], values))
    with capsys.disabled():
        print(f"\n{output}: {again.timings} s per node, peak {torch.cuda.max_memory_allocated() / 2**20:.1f} MiB")

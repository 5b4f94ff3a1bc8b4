"""Image nodes under the model manager: the out-of-memory ladder, cancellation between steps, the GPU."""

from __future__ import annotations

import time

import pytest
import torch
from image_helpers import TINY, gen_doc, pixels

from engine import Cancelled, CancelToken, NodeError, Workflow
from nodes.image.pipes import VARIANT, loader


def leased(manager):
    """The pipelines object the image nodes lease (same reference and variant: the same entry)."""
    with manager.lease(TINY, loader("cpu"), variant=VARIANT) as pipes:
        return pipes


def hooked(pipes, hook):
    """Run `hook(calls)` before every UNet forward (one per denoising step at guidance 0)."""
    calls = []

    def pre(module, args):
        calls.append(1)
        hook(calls)

    return pipes.base.unet.register_forward_pre_hook(pre), calls


def test_oom_ladder_switches_vae_tiling_slicing_and_attention_slicing_then_succeeds(make_engine, manager):
    pipes = leased(manager)

    def until_tiled(calls):
        if not pipes.base.vae.use_tiling:  # a real torch error, as a too-small GPU raises it
            raise torch.OutOfMemoryError("HIP out of memory. Tried to allocate 2.00 GiB (test hook)")

    handle, calls = hooked(pipes, until_tiled)
    try:
        result = make_engine(cache=False).run_sync(Workflow.from_dict(gen_doc(seed=1)))
    finally:
        handle.remove()
    assert len(calls) == 2 + 2  # two failed attempts, then both steps of the third
    assert manager.counters.oom_retries == 2 and manager.counters.low_memory_switches == 1
    assert manager.loaded()[0].low_memory == ("enable_vae_slicing", "enable_vae_tiling", "enable_attention_slicing")
    assert pipes.base.vae.use_slicing and pipes.base.vae.use_tiling
    processors = {type(p).__name__ for p in pipes.base.unet.attn_processors.values()}
    assert processors == {"SlicedAttnProcessor"}
    # The tiny VAE's tiles are 32 px, so this 64 px image really was decoded tile by tile.
    assert result.outputs["images"].size == (64, 64) and pixels(result.outputs["images"]).std() > 0


def test_oom_that_never_fits_is_a_clear_error_and_the_model_stays_usable(image_engine, manager):
    pipes = leased(manager)

    def always(calls):
        raise torch.OutOfMemoryError("HIP out of memory (test hook)")

    handle, _ = hooked(pipes, always)
    try:
        with pytest.raises(NodeError) as caught:
            image_engine.run_sync(Workflow.from_dict(gen_doc()))
    finally:
        handle.remove()
    message = str(caught.value)
    assert "'gen' (image.generate)" in message and "ran out of memory" in message
    assert "lower-memory modes on: enable_vae_slicing" in message
    assert manager.loaded()[0].pinned == 0
    assert image_engine.run_sync(Workflow.from_dict(gen_doc(seed=2))).outputs["images"].size == (64, 64)


def test_cancel_stops_between_diffusion_steps_and_frees_the_model(image_engine, manager, events):
    pipes = leased(manager)
    token = CancelToken()

    def cancel_on_second_step(calls):
        if len(calls) == 2:
            token.cancel("stopped by the test")

    handle, calls = hooked(pipes, cancel_on_second_step)
    try:
        with pytest.raises(Cancelled):
            image_engine.run_sync(Workflow.from_dict(gen_doc(steps=20)), cancel=token, listener=events)
        # The run ends at once; the worker thread unwinds at its next check (the end of the step).
        deadline = time.monotonic() + 30
        while manager.loaded()[0].pinned and time.monotonic() < deadline:
            time.sleep(0.01)
    finally:
        handle.remove()
    assert manager.loaded()[0].pinned == 0
    assert len(calls) == 2  # the step in flight finished; no further step started
    assert "job.cancelled" in events.kinds() and "job.finished" not in events.kinds()


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA/ROCm GPU")
def test_gpu_generates_in_half_precision_and_measures_memory(registry, models_dir, tmp_path):
    from engine import Engine, NullCache
    from engine.models import ModelManager, ModelStore

    manager = ModelManager(ModelStore(models_dir), device="cuda")
    engine = Engine(registry, cache=NullCache(), models=manager, output_dir=tmp_path / "out")
    try:
        engine.run_sync(Workflow.from_dict(gen_doc(steps=2)))  # warm: load and place
        torch.cuda.reset_peak_memory_stats()
        started = time.perf_counter()
        result = engine.run_sync(Workflow.from_dict(gen_doc(steps=20, width=256, height=256)))
        per_step = (time.perf_counter() - started) / 20
    finally:
        engine.close()
    pipes = leased_on(manager)
    assert pipes.base.unet.dtype == torch.float16 and pipes.base.device.type == "cuda"
    measured = manager.report().used
    print(f"\nGPU: {per_step * 1000:.2f} ms/step; manager measured {measured} B, "
          f"torch max allocated {torch.cuda.max_memory_allocated()} B")
    assert result.outputs["images"].size == (256, 256) and measured <= torch.cuda.max_memory_allocated()


def leased_on(manager):
    with manager.lease(TINY, loader(manager.device), variant=VARIANT) as pipes:
        return pipes

"""horde:MODEL through image.generate and image.edit, against the local AI Horde stand-in (never the internet)."""

from __future__ import annotations

import base64
import io
import json
import threading
import time

import pytest

from engine import Workflow
from engine.errors import NodeError

GEN = {
    "nodes": {
        "gen": {"type": "image.generate", "inputs": {"prompt": "a red fox", "negative_prompt": "blurry",
                                                     "width": 64, "height": 128, "steps": 4, "guidance": 5.0,
                                                     "scheduler": "euler_ancestral", "seed": 41, "batch_size": 2,
                                                     "model": "horde:stable_diffusion"}},
        "save": {"type": "image.save", "inputs": {"images": {"from": "gen", "output": "images"},
                                                  "prefix": "image/horde"}},
    },
    "outputs": {"file": {"from": "save", "output": "path"}, "images": {"from": "gen", "output": "images"}},
}


def _workflow(**gen_inputs) -> Workflow:
    doc = json.loads(json.dumps(GEN))
    doc["nodes"]["gen"]["inputs"].update(gen_inputs)
    return Workflow.from_dict(doc)


def test_horde_generation_end_to_end_with_metadata_seeds_and_progress(horde, horde_settings, horde_engine, events):
    from PIL import Image

    from engine.embedded import read_description

    engine = horde_engine(horde_settings())
    engine.subscribe(events)
    result = engine.run_sync(_workflow())

    # one POST /generate/async, exactly as the v2 API documents it
    [(_, _, headers)] = [r for r in horde.requests if r[1] == "/api/v2/generate/async"]
    assert headers["apikey"] == "0000000000" and headers["Client-Agent"].startswith("flow:")
    [job] = horde.jobs.values()
    assert job.body["prompt"] == "a red fox ### blurry" and job.body["models"] == ["stable_diffusion"]
    assert job.body["r2"] is True
    assert job.body["params"] == {"cfg_scale": 5.0, "width": 64, "height": 128, "steps": 4, "seed": "41", "n": 2,
                                  "seed_variation": 1, "sampler_name": "k_euler_a"}
    # polled, then the status fetched once; R2 downloads served by the stand-in
    assert len(horde.paths("GET")) >= 3 and len([p for p in horde.paths() if "/generate/status/" in p]) == 1
    assert len([p for p in horde.paths() if p.startswith("/r2/")]) == 2
    assert not horde.deleted

    images = result.outputs["images"]
    assert len(images) == 2 and images.size == (64, 128)
    assert [p["seed"] for p in images.params] == [41, 42]  # the seeds Horde reports
    assert images.params[0]["provider"] == "horde" and images.params[0]["worker"] == "standin-worker"
    assert images.params[0]["model"] == "horde:stable_diffusion"
    expected = Image.open(io.BytesIO(horde.webp(job, 1))).convert("RGB")
    assert images.images[1].tobytes() == expected.tobytes()

    # saved like any image: parameters and a re-runnable workflow embedded, with Horde's seed
    embedded = read_description(result.outputs["file"])
    assert embedded["params"]["provider"] == "horde" and embedded["params"]["seed"] == 41
    assert embedded["workflow"]["nodes"]["gen"]["inputs"]["seed"] == 41
    assert embedded["workflow"]["nodes"]["gen"]["inputs"]["model"] == "horde:stable_diffusion"

    messages = [e.message for e in events if e.kind == "node.progress" and e.message]
    assert any("queue position" in m for m in messages), messages


def test_base64_webp_answers_are_decoded_too(horde, horde_settings, horde_engine):
    horde.r2 = False
    result = horde_engine(horde_settings()).run_sync(_workflow(batch_size=1, seed=7))
    assert not [p for p in horde.paths() if p.startswith("/r2/")]
    assert result.outputs["images"].params[0]["seed"] == 7 and result.outputs["images"].size == (64, 128)


def test_checks_back_off_on_429_and_never_break_the_rate_limits(horde, horde_settings, horde_engine):
    horde.check_429s = 3
    result = horde_engine(horde_settings(horde_poll_interval=0.1)).run_sync(_workflow(batch_size=1))
    assert len(result.outputs["images"]) == 1
    checks = horde.check_times
    assert all(sum(1 for t in checks if 0 <= t - start < 1.0) <= 10 for start in checks)


def test_strict_privacy_refuses_horde_before_any_request(horde, horde_settings, horde_engine):
    engine = horde_engine(horde_settings(privacy="strict"))
    with pytest.raises(NodeError, match=r"horde:stable_diffusion is served by AI Horde.*privacy is strict") as info:
        engine.run_sync(_workflow())
    assert info.value.status == 403 and info.value.cause.kind == "privacy_refused"
    assert horde.requests == []


def test_node_privacy_strict_with_flexible_server_refuses_too(horde, horde_settings, horde_engine):
    """Per-node privacy on the shared rule: the image node's own `privacy` input, as the text nodes'."""
    from engine import routing
    from engine.errors import PrivacyRefused

    settings = horde_settings()
    with pytest.raises(PrivacyRefused, match="set by this node's privacy input"):
        routing.check("horde:x", settings, "strict")
    routing.check("horde:x", settings, "flexible")
    routing.check("hf:org/model", settings.with_(privacy="strict"))  # local: never refused
    with pytest.raises(NodeError, match="privacy is strict") as info:  # the server allows it; the node does not
        horde_engine(settings).run_sync(_workflow(privacy="strict"))
    assert info.value.status == 403 and horde.requests == []


def test_loras_on_a_horde_model_are_refused_not_dropped(horde, horde_settings, horde_engine):
    with pytest.raises(NodeError, match="takes no LoRA files") as info:
        horde_engine(horde_settings()).run_sync(_workflow(loras=[{"path": "loras/x.safetensors", "weight": 0.5}]))
    assert info.value.status == 422 and horde.requests == []  # an input the node cannot use


@pytest.mark.parametrize("setup, kind, status, fix", [
    ({"fault": True}, "backend_failed", 502, "faulted"),
    ({"impossible": True}, "backend_unavailable", 503, "is_possible false"),
    ({"async_status": 429}, "rate_limited", 429, "FLOW_HORDE_API_KEY"),
    ({"async_status": 403}, "remote_refused", 502, "KudosUpfront"),
])
def test_horde_failures_become_clear_errors(horde, horde_settings, horde_engine, setup, kind, status, fix):
    for key, value in setup.items():
        setattr(horde, key, value)
    with pytest.raises(NodeError) as info:
        horde_engine(horde_settings()).run_sync(_workflow(batch_size=1))
    assert info.value.cause.kind == kind and info.value.status == status
    assert fix in str(info.value) and "Traceback" not in str(info.value)
    if setup.get("impossible"):
        assert horde.deleted  # a request no worker can serve is not left in the queue


def test_cancel_mid_queue_sends_delete_within_one_poll_interval(horde, horde_settings, horde_engine):
    import asyncio

    from engine.cancel import CancelToken
    from engine.errors import Cancelled

    horde.queue_s, horde.queue = 30.0, 12
    engine = horde_engine(horde_settings(horde_poll_interval=1.0))
    errors = []

    async def main():
        token = CancelToken()
        task = asyncio.create_task(engine.run(_workflow(batch_size=1), cancel=token))
        while not horde.check_times:
            await asyncio.sleep(0.02)
        started = time.monotonic()
        token.cancel("the test cancels")
        try:
            await task
        except (Cancelled, NodeError, asyncio.CancelledError) as exc:
            errors.append(exc)
        while not horde.deleted and time.monotonic() - started < 5:
            await asyncio.sleep(0.02)
        return time.monotonic() - started

    took = asyncio.run(main())
    assert horde.deleted == list(horde.jobs), horde.requests
    assert took < 1.0 + 0.5  # within one poll interval (1 s), with slack for a busy machine


def test_timeout_cancels_the_request_on_the_horde(horde, horde_settings, horde_engine):
    horde.queue_s = 30.0
    with pytest.raises(NodeError, match="did not finish in 1 s.*FLOW_HORDE_TIMEOUT"):
        horde_engine(horde_settings(horde_timeout=1.0, horde_poll_interval=0.2)).run_sync(_workflow(batch_size=1))
    assert horde.deleted == list(horde.jobs)


def test_image_edit_img2img_and_inpainting_go_to_horde_with_the_source(horde, horde_settings, horde_engine):
    from PIL import Image

    buffer = io.BytesIO()
    Image.new("RGBA", (64, 64), (10, 200, 30, 255)).save(buffer, format="PNG")
    data = base64.b64encode(buffer.getvalue()).decode()
    doc = {
        "nodes": {
            "load": {"type": "image.load", "inputs": {"data": data}},
            "edit": {"type": "image.edit", "inputs": {"image": {"from": "load", "output": "image"},
                                                      "prompt": "make it blue", "strength": 0.6, "steps": 10,
                                                      "seed": 5, "model": "horde:stable_diffusion"}},
        },
        "outputs": {"image": {"from": "edit", "output": "image"}},
    }
    engine = horde_engine(horde_settings())
    out = engine.run_sync(Workflow.from_dict(doc)).outputs["image"]
    [job] = horde.jobs.values()
    assert job.body["source_processing"] == "img2img" and job.body["params"]["denoising_strength"] == 0.6
    source = Image.open(io.BytesIO(base64.b64decode(job.body["source_image"])))
    assert source.format == "WEBP" and source.size == (64, 64)
    assert out.params[0]["task"] == "img2img" and out.params[0]["provider"] == "horde" and out.params[0]["seed"] == 5

    doc["nodes"]["edit"]["inputs"]["mask"] = {"from": "load", "output": "mask"}
    doc["nodes"]["edit"]["inputs"]["seed"] = 6
    engine.run_sync(Workflow.from_dict(doc))
    inpaint = [j for j in horde.jobs.values() if j is not job][0]
    assert inpaint.body["source_processing"] == "inpainting" and "source_mask" in inpaint.body

    doc["nodes"]["edit"]["inputs"].pop("mask")
    doc["nodes"]["edit"]["inputs"]["mode"] = "instruct"
    with pytest.raises(NodeError, match="AI Horde cannot do 'instruct'"):
        engine.run_sync(Workflow.from_dict(doc))
    assert len(horde.jobs) == 2


def test_flexible_privacy_falls_back_from_a_missing_local_model_and_reports_it(horde, horde_settings, horde_engine,
                                                                             events):
    engine = horde_engine(horde_settings(image_fallback_model="horde:stable_diffusion"))
    engine.subscribe(events)
    out = engine.run_sync(_workflow(model="hf:nobody/missing-model", batch_size=1, seed=3)).outputs["images"]
    assert out.params[0]["fallback_from"] == "hf:nobody/missing-model"
    assert out.params[0]["model"] == "horde:stable_diffusion" and out.params[0]["provider"] == "horde"
    assert any(e.kind == "node.progress" and "fallback" in (e.message or "") and "hf:nobody/missing-model"
               in e.message for e in events)


def test_strict_privacy_never_falls_back_to_horde(horde, horde_settings, horde_engine):
    engine = horde_engine(horde_settings(privacy="strict", image_fallback_model="horde:stable_diffusion"))
    with pytest.raises(NodeError, match=r"not available locally.*fallback model horde:stable_diffusion was not "
                                        r"tried: privacy is strict") as info:
        engine.run_sync(_workflow(model="hf:nobody/missing-model", batch_size=1))
    assert info.value.status == 404 and horde.requests == []


def test_auto_uses_the_fallback_when_the_local_default_is_absent(horde, horde_settings, horde_engine, events):
    engine = horde_engine(horde_settings(image_fallback_model="horde:stable_diffusion"))
    engine.subscribe(events)
    out = engine.run_sync(_workflow(model="auto", batch_size=1, seed=9)).outputs["images"]
    assert out.params[0]["model"] == "horde:stable_diffusion" and len(horde.jobs) == 1
    assert any("auto:" in (e.message or "") for e in events if e.kind == "node.progress")


def test_unreachable_horde_names_the_setting(horde_settings, horde_engine):
    with pytest.raises(NodeError, match="did not answer.*FLOW_HORDE_URL") as info:
        horde_engine(horde_settings(horde_url="http://127.0.0.1:9/api/v2")).run_sync(_workflow(batch_size=1))
    assert info.value.status == 503


def test_a_size_horde_cannot_make_is_refused_before_any_request(horde, horde_settings, horde_engine):
    with pytest.raises(NodeError, match="width.*AI Horde takes multiples of 64; give e.g. 64") as info:
        horde_engine(horde_settings()).run_sync(_workflow(width=72, batch_size=1))
    assert info.value.status == 422 and horde.requests == []


def test_auto_sees_a_local_model_on_disk(tmp_path):
    from types import SimpleNamespace

    from engine.models import ModelManager, ModelStore
    from nodes.image.horde import _present

    (tmp_path / "local" / "my-sd").mkdir(parents=True)
    manager = ModelManager(ModelStore(tmp_path), device="cpu", gpu_budget=1 << 30, cpu_budget=1 << 30)
    ctx = SimpleNamespace(models=manager)
    assert _present(ctx, str(tmp_path / "local" / "my-sd"))
    assert not _present(ctx, "hf:nobody/absent") and not _present(SimpleNamespace(models=None), "hf:a/b")

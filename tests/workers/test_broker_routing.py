"""The broker's pure parts: capability queues, the delivery settings, events across the wire."""

from __future__ import annotations

from engine import broker
from engine import events as ev


def test_jobs_go_to_the_queue_of_what_they_need():
    assert broker.queue_for({"nodes": {"a": {"type": "text.join", "inputs": {}},
                                       "b": {"type": "web.extract", "inputs": {}}}}) == "cpu"
    assert broker.queue_for({"nodes": {"g": {"type": "image.generate", "inputs": {"model": "hf:x/y"}}}}) == "gpu"
    assert broker.queue_for({"nodes": {"t": {"type": "text.generate", "inputs": {}}}}) == "gpu"  # local default
    cloud = {"nodes": {"t": {"type": "text.generate", "inputs": {"model": "openai:gpt-4o-mini"}}}}
    assert broker.queue_for(cloud) == "cpu"  # an OpenAI-compatible cloud model needs no GPU here
    assert broker.queue_for({}) == broker.queue_for(None) == "cpu"
    assert broker.model_of({"nodes": {"a": {"type": "text.join", "inputs": {}},
                                      "g": {"type": "image.generate", "inputs": {"model": "hf:a/b"}}}}) == "hf:a/b"
    horde = {"nodes": {"g": {"type": "image.generate", "inputs": {"model": "horde:stable_diffusion"}}}}
    assert broker.queue_for(horde) == "cpu"  # a remote provider's call needs no GPU here


def test_every_node_that_takes_a_model_has_a_capability():
    """A node type with a model picker runs a model: a new one must not land on CPU workers by omission."""
    import nodes

    takes_model = {cls.type for cls in nodes.registry() if any(spec.widget == "model" for spec in cls.inputs.values())}
    assert takes_model <= broker.GPU_TYPES, takes_model - broker.GPU_TYPES
    upscale = {"nodes": {"u": {"type": "image.upscale", "inputs": {"scale": 2}}}}
    assert broker.queue_for(upscale) == "cpu"  # Lanczos: no model
    assert broker.queue_for(upscale, None) == "cpu"
    upscale["nodes"]["u"]["inputs"]["model"] = "hf:stabilityai/sd-x2-latent-upscaler"
    assert broker.queue_for(upscale) == "gpu"


def test_a_model_given_through_a_param_routes_the_job():
    """Endpoint requests name their model in params, not in the workflow's literals."""
    import json
    from pathlib import Path

    text_gen = json.loads((Path(__file__).resolve().parents[2] / "workflows" / "text_gen.json").read_text())
    assert broker.queue_for(text_gen, {"prompt": "hi"}) == "gpu"  # the default: a local model
    assert broker.queue_for(text_gen, {"prompt": "hi", "model": "openai:gpt-4o-mini"}) == "cpu"
    assert broker.model_of(text_gen, {"model": "hf:org/llm"}) == "hf:org/llm"  # affinity sees it
    assert broker.model_of(text_gen, {"prompt": "hi"}) is None  # "" default: the node's own default
    literal = {"params": {"m": {"description": "m", "default": "hf:d/e", "bind": [{"node": "g", "input": "model"}]}},
               "nodes": {"g": {"type": "image.generate", "inputs": {"model": "hf:a/b"}}}}
    assert broker.model_of(literal) == "hf:d/e" and broker.model_of(literal, {"m": "hf:x/y"}) == "hf:x/y"


def test_the_visibility_timeout_is_above_the_job_time_limit():
    assert broker.visibility_timeout(3600) > 3600
    assert broker.visibility_timeout(0) >= 86400  # no limit: a day


def test_celery_is_configured_for_late_acks_and_one_job_at_a_time():
    app = broker.celery_app("redis://127.0.0.1:1/0", 120)
    conf = app.conf
    assert conf.task_acks_late and conf.task_reject_on_worker_lost and conf.worker_prefetch_multiplier == 1
    assert conf.broker_transport_options["visibility_timeout"] > 120


def test_events_cross_the_wire_with_the_gateway_job_id():
    for event in (ev.NodeStarted("w", node="n1", node_type="text.join"),
                  ev.NodeProgress("w", node="n1", node_type="x", done=2, total=5, message="step"),
                  ev.JobStarted("w", to_run=3, cached=1),
                  ev.JobFailed("w", error="node_failed", message="m", node="n")):
        back = broker.event_from_json(event.to_json(), "gateway-id")
        assert type(back) is type(event) and back.job_id == "gateway-id"
        assert {**back.to_json(), "job_id": "w"} == event.to_json()
    assert broker.event_from_json({"event": "no.such"}, "x") is None


def test_urls_lose_their_password():
    assert broker.redact("redis://:pw@host:6379/0") == "redis://:***@host:6379/0"
    assert broker.redact("redis://host:6379/0") == "redis://host:6379/0"

"""compose.yaml's worker mode: a Redis broker and a GPU worker sharing the gateway's outputs volume."""

from __future__ import annotations

from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parent.parent.parent


def compose() -> dict:
    return yaml.safe_load((REPO / "compose.yaml").read_text())


def test_the_workers_profile_adds_a_broker_and_a_gpu_worker():
    services = compose()["services"]
    redis, worker = services["redis"], services["worker"]
    assert redis["profiles"] == worker["profiles"] == ["workers"]
    assert "--appendonly" in redis["command"] and redis["healthcheck"]["test"][0] == "CMD"
    assert worker["command"][:2] == ["flow", "worker"]
    assert worker["devices"] == ["/dev/kfd", "/dev/dri"] and worker["image"] == services["flow"]["image"]
    assert worker["environment"]["FLOW_BROKER_URL"].endswith("redis://redis:6379/0}")
    assert worker["depends_on"] == {"redis": {"condition": "service_healthy"}}
    assert worker["ports"] == []  # a worker serves nothing


def test_the_worker_writes_where_the_gateway_serves_from():
    services = compose()["services"]
    worker, gateway = services["worker"], services["flow"]
    outputs = [v for v in worker["volumes"] if v.endswith(":/data/outputs")]
    assert outputs and outputs == [v for v in gateway["volumes"] if v.endswith(":/data/outputs")]
    assert worker["environment"]["FLOW_OUTPUT_DIR"] == gateway["environment"]["FLOW_OUTPUT_DIR"]

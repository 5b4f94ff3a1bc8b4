"""Model affinity against a real redis-server: a job naming a model goes to the worker holding it."""

from __future__ import annotations

import asyncio
import json
import time

from engine.jobstore import JobRecord


def waiting_for(model: str | None):
    from engine.broker import _Waiting

    inputs = {"model": model} if model else {}
    record = JobRecord(id="job1", name="x", state="queued", params={}, outputs=None, created=time.time(),
                       workflow={"nodes": {"g": {"type": "image.generate", "inputs": inputs}}})
    return _Waiting(record, None, None)


def test_a_job_goes_to_the_worker_holding_its_model_else_to_its_capability_queue(redis_server):
    import redis

    from engine.broker import Dispatcher

    url = redis_server.url(5)
    client = redis.Redis.from_url(url)
    client.flushdb()
    dispatcher = Dispatcher(url, job_time_limit=60)
    try:
        client.set("flow:model:hf:tiny/a", "w9", ex=30)  # what worker w9's presence says it holds
        client.set("flow:worker:w9", json.dumps({"name": "w9"}), ex=30)
        held, other = waiting_for("hf:tiny/a"), waiting_for("hf:tiny/b")
        asyncio.run(dispatcher._send(held))
        asyncio.run(dispatcher._send(other))
        assert held.sent_to == "worker.w9" and other.sent_to == "gpu"
        assert client.llen("worker.w9") == 1 and client.llen("gpu") == 1  # Celery's messages, in Redis lists
        again = waiting_for("hf:tiny/a")
        asyncio.run(dispatcher._send(again, affinity=False))  # its worker went away: any worker may take it
        assert again.sent_to == "gpu" and client.llen("gpu") == 2
        message = json.loads(client.lindex("worker.w9", 0))
        assert json.loads(__import__("base64").b64decode(message["body"]))[0][0]["id"] == "job1"
    finally:
        dispatcher.close()
        client.flushdb()
        client.close()

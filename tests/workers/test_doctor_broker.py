"""`flow doctor`'s broker check against a real redis-server (and a port where nothing listens)."""

from __future__ import annotations

import json

from deploy.doctor_broker import check_broker
from deploy.verdict import Status
from worker_servers import free_port


def test_no_broker_is_the_in_process_default():
    check = check_broker("")
    assert check.status is Status.PASS and "runs jobs itself" in check.message


def test_a_broker_that_does_not_answer_fails_without_showing_its_password():
    check = check_broker(f"redis://:s3cret@127.0.0.1:{free_port()}/0", timeout=1)
    assert check.status is Status.FAIL and "does not answer" in check.message
    assert "s3cret" not in check.message and "flow worker" not in check.fix and "redis" in check.fix.lower()


def test_a_broker_without_workers_warns_then_lists_them(redis_server):
    import redis

    client = redis.Redis.from_url(redis_server.url(3))
    client.flushdb()
    try:
        check = check_broker(redis_server.url(3))
        assert check.status is Status.WARN and "no worker" in check.message and "flow worker" in check.fix
        client.set("flow:worker:gpu0", json.dumps({"name": "gpu0", "queues": ["gpu", "cpu"], "models": []}), ex=30)
        check = check_broker(redis_server.url(3))
        assert check.status is Status.PASS and "1 worker(s): gpu0 (gpu,cpu)" in check.message
        assert check.details["workers"][0]["name"] == "gpu0"
    finally:
        client.flushdb()
        client.close()

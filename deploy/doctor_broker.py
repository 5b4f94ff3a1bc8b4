"""`flow doctor`'s worker-mode check: the broker (FLOW_BROKER_URL) answers, and which workers do."""

from __future__ import annotations

from .verdict import Check, Status


def check_broker(url: str, timeout: float = 3.0) -> Check:
    """The Redis broker answers a PING; the workers whose presence is fresh are listed (none: a warning)."""
    if not url:
        return Check("broker", Status.PASS, "FLOW_BROKER_URL not set: the gateway runs jobs itself")
    from engine.broker import redact, workers

    shown = redact(url)
    try:
        import redis
    except ImportError:
        return Check("broker", Status.FAIL, f"FLOW_BROKER_URL={shown} but the redis client is not installed",
                     "pip install -e '.[workers]' (celery, redis, psycopg)")
    client = redis.Redis.from_url(url, socket_connect_timeout=timeout, socket_timeout=timeout)
    try:
        client.ping()
        found = workers(client)
    except (redis.RedisError, OSError, ValueError) as exc:
        return Check("broker", Status.FAIL, f"the broker {shown} does not answer ({type(exc).__name__}: {exc})",
                     "start Redis (compose: `docker compose up -d redis`) or fix FLOW_BROKER_URL")
    finally:
        client.close()
    details = {"workers": found}
    if not found:
        return Check("broker", Status.WARN, f"the broker {shown} answers, but no worker does: jobs will wait",
                     "start one per GPU: `FLOW_BROKER_URL=... flow worker` (compose: the worker service)", details)
    names = ", ".join(f"{w['name']} ({','.join(w.get('queues') or [])})" for w in found)
    return Check("broker", Status.PASS, f"the broker {shown} answers; {len(found)} worker(s): {names}",
                 details=details)

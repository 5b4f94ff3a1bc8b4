"""The OpenAPI document tells the truth: every route, the statuses each can answer, the events it streams."""

from __future__ import annotations

import asyncio
import dataclasses
import json

import jsonschema
import pytest
from gateway_support import run

from gateway.api_schemas import event_classes, event_schemas

ROUTE_PARAM_SUFFIXES = (":.+}",)  # aiohttp's `{name:.+}` is OpenAPI's `{name}`


def _validator(document: dict, ref: str) -> jsonschema.Draft202012Validator:
    """A validator of one component (``#/components/schemas/X``) with the document's refs resolvable."""
    return jsonschema.Draft202012Validator({"$ref": ref, "components": document["components"]})


def _served_operations(app) -> set[tuple[str, str]]:
    operations = set()
    for route in app.router.routes():
        info = route.resource.get_info() if route.resource is not None else {}
        path = info.get("path") or info.get("formatter")
        if route.method in ("HEAD", "*") or path is None or "prefix" in info:
            continue  # HEAD mirrors GET; /web/ is the page's static folder
        for suffix in ROUTE_PARAM_SUFFIXES:
            path = path.replace(suffix, "}")
        operations.add((route.method.lower(), path))
    return operations


def test_openapi_declares_exactly_the_routes_the_gateway_serves(gateway):
    async def scenario():
        async with gateway() as client:
            document = await (await client.get("/openapi.json")).json()
            declared = {(method, path) for path, item in document["paths"].items() for method in item}
            assert declared == _served_operations(client.server.app)

    run(scenario())


def test_openapi_every_operation_declares_its_error_statuses(gateway):
    async def scenario():
        async with gateway() as client:
            document = await (await client.get("/openapi.json")).json()
        for path, item in document["paths"].items():
            for method, operation in item.items():
                responses = operation["responses"]
                where = f"{method.upper()} {path}"
                assert {"403", "500"} <= set(responses), where  # the guard, and the last resort
                if path not in ("/", "/health", "/web/{path}"):  # open: no token needed
                    assert "401" in responses and "WWW-Authenticate" in responses["401"]["headers"], where
                body = operation.get("requestBody", {}).get("content", {})
                if "application/json" in body:
                    assert {"400", "413", "415"} <= set(responses), where
                if "202" in responses:
                    assert responses["202"]["headers"]["Location"]["required"], where
                    assert "Retry-After" in responses["429"]["headers"], where
                for status, response in responses.items():
                    if status >= "400" and status != "416":  # 416: a file's unsatisfiable range, no body
                        schema = json.dumps(response["content"]["application/json"]["schema"])
                        expected = ("OpenAIError" if path.startswith("/v1/") else "OllamaError"
                                    if path.startswith("/api/") else "/Error")
                        assert expected in schema, (where, status)

    run(scenario())


@pytest.mark.parametrize("cls", event_classes(), ids=lambda c: c.kind)
def test_openapi_event_schema_is_the_dataclass(cls):
    schema = event_schemas()[cls.__name__ + "Event"]
    fields = {f.name for f in dataclasses.fields(cls)}
    assert set(schema["properties"]) == fields | {"event"} and set(schema["required"]) == fields | {"event"}
    jsonschema.validate(cls(job_id="j").to_json(), schema)


def test_openapi_events_fit_what_jobs_stream_over_websocket_and_sse(gateway):
    """Every event kind a job can emit, as received, fits the declared `Event` and SSE schemas."""

    async def scenario():
        async with gateway() as client:
            document = await (await client.get("/openapi.json")).json()
            ws = await client.ws_connect("/ws")
            await client.post("/hello", json={})
            await client.post("/hello", json={})  # node.cached
            await client.post("/test/fail", json={})  # job.failed, node.failed
            await client.post("/test/slow", json={"seconds": 0.3})  # node.progress
            slow = await (await client.post("/test/slow?wait=false", json={"seconds": 5, "value": "x"})).json()
            await asyncio.sleep(0.2)
            await client.delete(slow["url"])  # job.cancelled
            received = []
            while True:
                message = await ws.receive_json(timeout=10)
                received.append(message)
                if message["event"] == "job.cancelled":
                    break
            await ws.close()
            stream = await (await client.get(slow["url"] + "/events")).text()
        events = _validator(document, "#/components/schemas/Event")
        for message in received:
            events.validate(message)
        assert {m["event"] for m in received} == {cls.kind for cls in event_classes()}
        sse = document["paths"]["/jobs/{id}/events"]["get"]["responses"]["200"]["content"]["text/event-stream"]
        frames = _sse_frames(stream)
        assert [f["event"] for f in frames] == ["job.state", "job.cancelled"]
        for frame in frames:
            _validate_sse(document, sse["schema"], frame)

    run(scenario())


def _sse_frames(text: str) -> list[dict]:
    frames = []
    for block in text.strip().split("\n\n"):
        fields = dict(line.split(": ", 1) for line in block.splitlines() if not line.startswith(":"))
        frames.append({"event": fields.get("event", "message"), "data": fields["data"]})
    return frames


def _validate_sse(document: dict, schema: dict, frame: dict) -> None:
    """One SSE frame against the declared per-event schema (its data: JSON, checked by its contentSchema)."""
    branch = next(b for b in schema["oneOf"] if b["properties"]["event"]["const"] == frame["event"])
    jsonschema.validate(frame, branch)
    content = branch["properties"]["data"]["contentSchema"]
    jsonschema.Draft202012Validator({**content, "components": document["components"]}).validate(
        json.loads(frame["data"]))

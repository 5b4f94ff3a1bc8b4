"""The gateway's OpenAPI 3.1 document, made from the route table and the saved endpoints.

Every route's operation comes from gateway/routes.py (each declares every status it can answer);
the bodies' and events' schemas from gateway/api_schemas.py (events derived from their
dataclasses). tests/gateway/test_openapi.py checks the document against the routes the app
serves and the events; tests/gateway/test_fuzz.py checks that a real server answers only what
it declares.
"""

from __future__ import annotations

from engine.catalogue import Catalogue

from .api_schemas import components
from .presets import request_additions
from .routes import Route
from .spec import answer_json, job_answers, json_content, op, run_params

_DESCRIPTION = (
    "Text, image, music and video generation as workflow graphs on one GPU. Each endpoint is a saved "
    "workflow; its request body fills the params. Errors: `{\"error\": {\"type\", \"message\", "
    "\"problems\"?}}` (the /v1 routes: OpenAI's `{\"error\": {\"message\", \"type\", \"param\", \"code\"}}`). "
    "Every route refuses a foreign Host or Origin (403) and, when a token is set, a request without it (401); "
    "a method a path does not serve answers 405 with Allow. Events: `GET /jobs/{id}/events` (Server-Sent "
    "Events) and `GET /ws` (WebSocket), each message one `Event` (see components).")


def build_openapi(catalogue: Catalogue, routes: list[Route], version: str) -> dict:
    """The OpenAPI document (3.1, whose schemas are JSON Schema 2020-12 like our nodes')."""
    paths: dict = {}
    preset_fields = request_additions(catalogue)
    for path, endpoint in sorted(catalogue.endpoints.items()):
        request = endpoint.request_schema()
        # {"preset": NAME} and the presets' own params (gateway/presets.py); the endpoint's own win
        request["properties"] = {**preset_fields.get(path, {}), **request["properties"]}
        answers = job_answers(default_async=False)
        if endpoint.workflow.answer == "outputs":  # the outputs object alone
            names = sorted(endpoint.output_types())
            answers["200"] = answer_json({"type": "object", "required": names, "properties": {n: {} for n in names}},
                                         "finished: its outputs (the job's URL in Content-Location)")
        paths[path] = {"post": op(
            endpoint.summary, "endpoints", answers, params=run_params(False),
            body=json_content(request), body_required=False,
            op_id="run_" + endpoint.name.replace("/", "_"), description=endpoint.workflow.description)}
    for route in routes:
        paths.setdefault(route.spec_path, {})[route.method.lower()] = route.operation(route.summary)
    return {
        "openapi": "3.1.0",
        "info": {"title": "flow", "version": version, "description": _DESCRIPTION},
        "paths": paths,
        "components": {
            "schemas": components(),
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer", "description": "FLOW_API_TOKEN, when one is set"},
                "token_query": {"type": "apiKey", "in": "query", "name": "token",
                                "description": "the token as ?token= (only where a browser cannot send a header: "
                                               "EventSource and WebSocket)"}},
        },
        "security": [{"bearer": []}, {}],
    }

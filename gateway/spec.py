"""How a route is described in the OpenAPI document: its answers, parameters and body.

One table says what each status means; the helpers below build an operation from it, and
gateway/routes.py describes each route with them (the route table is the one source of the
document, the docs page and the README's table).
"""

from __future__ import annotations

from engine.errors import named_errors

from .api_schemas import REF

# -- responses -----------------------------------------------------------------------------------

#: what each status the gateway answers means (the document's and the /docs page's words)
STATUSES = {
    400: "invalid request or workflow: every problem, located",
    401: "missing or wrong API token (only when the server has one, FLOW_API_TOKEN)",
    403: "refused: a Host that does not name this server, a foreign Origin, a cross-site request, "
         "or a remote model the privacy setting does not allow",
    404: "not found",
    409: "conflict: the job already ended, or was cancelled while this request waited",
    413: "request body too large (FLOW_MAX_BODY_BYTES)",
    415: "the body's Content-Type is not one this route takes (JSON: application/json)",
    422: "a node could not use an input value (the job failed; the error names the input)",
    429: "the queue is full; retry after Retry-After seconds",
    500: "internal error (the server log has the details)",
    502: "a backend answered with an error, or with an answer flow could not use",
    503: "a backend is unavailable (e.g. the Ollama server), or out of memory",
}
#: statuses a job that did not finish answers with (its body is the failed job; see gateway/present.py)
_JOB_FAILURES = tuple(sorted({cls.status for cls in named_errors().values()} - {401, 413, 415, 429}))
#: statuses every route can answer: the token, the Host/Origin guard, the last-resort 500
_GUARD = (401, 403, 500)
_HEADERS = {
    401: {"WWW-Authenticate": {"schema": {"type": "string"}, "description": "Bearer realm"}},
    429: {"Retry-After": {"required": True, "schema": {"type": "integer", "minimum": 1},
                          "description": "seconds to wait before retrying"}},
}


def answer_json(schema: dict | str, description: str, headers: dict | None = None) -> dict:
    ref = {"$ref": REF + schema} if isinstance(schema, str) else schema
    body: dict = {"description": description, "content": {"application/json": {"schema": ref}}}
    if headers:
        body["headers"] = headers
    return body


def errors(*codes: int, jobs: bool = False, token: bool = True) -> dict:
    """The gateway's error responses: ``codes`` and the guard's; where ``jobs``, a failed job's body too."""
    answers = {}
    for code in sorted(set(codes) | set(_GUARD) - ({401} if not token else set())):
        options, why = ["Error"], STATUSES[code]
        if jobs and code in _JOB_FAILURES:
            options.append("FailedJob")
            why += ("; or the failed job's body" if code != 404 else
                    "; or the failed job's body (e.g. a model that is not pulled, with the command that pulls it)")
        answers[str(code)] = _response(options, why, code)
    return answers


def openai_errors(*codes: int) -> dict:
    """The /v1 error responses: OpenAI's body, whichever part of the gateway answers."""
    return {str(code): _response(["OpenAIError"], STATUSES[code], code) for code in sorted(set(codes) | set(_GUARD))}


def ollama_errors(*codes: int) -> dict:
    """The /api error responses: Ollama's body ``{"error": "message"}``, whichever part of the gateway answers."""
    return {str(code): _response(["OllamaError"], STATUSES[code], code) for code in sorted(set(codes) | set(_GUARD))}


def _response(schemas: list[str], description: str, code: int) -> dict:
    refs = [{"$ref": REF + name} for name in schemas]
    return answer_json(refs[0] if len(refs) == 1 else {"anyOf": refs}, description, _HEADERS.get(code))


_LOCATION = {"Location": {"required": True, "schema": {"type": "string"}, "description": "the job's URL"}}


def job_answers(default_async: bool) -> dict:
    """What a request that runs a job answers: 200 with the result, or 202 with the job's URL."""
    accepted = answer_json("JobAccepted", "accepted" + (" (the default here)" if default_async else
                                                   ": asynchronous, or still running at the timeout"), _LOCATION)
    return {"200": answer_json("Job", "finished: outputs, seeds, params used, timings"), "202": accepted,
            **errors(400, 404, 409, 413, 415, 422, 429, 502, 503, jobs=True)}


def query(name: str, schema: dict, description: str) -> dict:
    return {"name": name, "in": "query", "required": False, "schema": schema, "description": description}


def path_param(name: str, description: str) -> dict:
    return {"name": name, "in": "path", "required": True, "schema": {"type": "string", "minLength": 1},
            "description": description}


MEDIA = query("media", {"enum": ["url", "base64"], "default": "url"}, "base64: media outputs inline as well")


def run_params(default_async: bool) -> list[dict]:
    return [
        query("wait", {"type": "boolean", "default": not default_async},
               "false: answer 202 with the job URL at once; true: wait for the result (bounded by timeout)"),
        query("timeout", {"type": "number", "minimum": 0, "maximum": 86400},
               "seconds to wait before answering 202 (default FLOW_REQUEST_TIMEOUT)"),
        MEDIA,
        {"name": "Prefer", "in": "header", "required": False, "schema": {"type": "string"},
         "description": "respond-async: answer 202 at once (like wait=false)"},
    ]


def op(summary: str, tag: str, responses: dict, *, params: list | None = None, body: dict | None = None,
        body_required: bool = True, op_id: str | None = None, description: str | None = None,
        security: list | None = None) -> dict:
    op: dict = {"summary": summary, "tags": [tag]}
    if description:
        op["description"] = description
    if op_id:
        op["operationId"] = op_id
    if params:
        op["parameters"] = params
    if body is not None:
        op["requestBody"] = {"required": body_required, "content": body}
    op["responses"] = responses
    if security is not None:
        op["security"] = security
    return op


def get_op(summary: str, schema: dict | str, tag: str, *codes: int, params: list | None = None,
         content_type: str = "application/json", **extra) -> dict:
    ref = {"$ref": REF + schema} if isinstance(schema, str) else schema
    ok = {"200": {"description": "OK", "content": {content_type: {"schema": ref}}}}
    return op(summary, tag, {**ok, **errors(*codes)}, params=params, **extra)


def json_content(schema: dict | str) -> dict:
    return {"application/json": {"schema": {"$ref": REF + schema} if isinstance(schema, str) else schema}}


def file_answers(token: bool = True) -> dict:
    any_file = {"*/*": {"schema": {}}}
    return {"200": {"description": "the file", "content": any_file},
            "206": {"description": "the requested range", "content": any_file},
            "304": {"description": "not modified since If-Modified-Since"},
            "416": {"description": "the range is not satisfiable"}, **errors(404, token=token)}

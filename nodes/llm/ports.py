"""Inputs the text nodes share, how their prompts are built, and structured answers with one retry."""

from __future__ import annotations

import json
import re
from typing import Any

from engine import FLOAT, INT, JSON, TEXT, Input, InvalidInput, Output
from engine.errors import BackendFailed, FlowError
from engine.node import json_problem

from .backend import complete
from .config import DEFAULTS
from .types import OPENAI_MODEL, Reply, Request

_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.\-]*:")

MAX_TOKENS = 32768
MAX_CHARS = 200_000


def model_input(task: str = "chat") -> Input:
    """The `model` input; empty means the default for the task."""
    with_ollama, in_process = DEFAULTS[task]
    return Input(TEXT, "model reference: ollama:NAME[:TAG], hf:ORG/NAME, a local model folder, or openai:MODEL "
                       f"(the configured OpenAI-compatible server); empty = the default: {with_ollama} when an "
                       f"Ollama server is configured, else {in_process} in-process", default="", maxLength=256,
                 widget="model")


def privacy_input() -> Input:
    """The per-node privacy; the stricter of it and the server's FLOW_PRIVACY applies."""
    return Input(TEXT, "strict: this request never leaves the machine; flexible: a remote openai: model is "
                       "allowed when the server's FLOW_PRIVACY is flexible too (the stricter one wins)",
                 default="flexible", enum=["strict", "flexible"])


def max_tokens_input(default: int) -> Input:
    """The most tokens to generate."""
    return Input(INT, f"most tokens to generate (1 to {MAX_TOKENS})", default=default, minimum=1, maximum=MAX_TOKENS)


def temperature_input(default: float) -> Input:
    """Sampling temperature."""
    return Input(FLOAT, "sampling temperature, 0 to 2; 0 = always the likeliest token", default=default,
                 minimum=0, maximum=2)


def top_p_input() -> Input:
    """Nucleus sampling mass."""
    return Input(FLOAT, "nucleus sampling: sample from the likeliest tokens covering this probability mass",
                 default=0.9, exclusiveMinimum=0, maximum=1)


def stop_input() -> Input:
    """Stop strings (`type` is Input's own parameter, so the array schema goes in `allOf`)."""
    return Input(JSON, "strings that end the answer (not included in it), at most 8", default=[],
                 allOf=[{"type": "array", "items": {"type": "string", "minLength": 1}, "maxItems": 8}])


def usage_output() -> Output:
    """The `usage` output of the generating nodes."""
    return Output(JSON, "usage: prompt_tokens, completion_tokens, first_token_s and total_s (from the request, "
                        "a model load included; plus the server's own durations), done_reason, model, backend")


def text_input(description: str, **constraints) -> Input:
    """A required, non-empty text."""
    return Input(TEXT, description, minLength=1, maxLength=MAX_CHARS, widget="multiline", **constraints)


def blank_problems(literals: dict, names: tuple[str, ...]):
    """(input, message) for each literal text input that is only whitespace."""
    for name in names:
        value = literals.get(name)
        if isinstance(value, str) and value and not value.strip():
            yield name, "is only whitespace; give some text"


def model_problems(literals: dict):
    """(input, message) when a literal `model` is a malformed reference (folders are checked when run)."""
    model = literals.get("model")
    if not isinstance(model, str) or not _SCHEME.match(model):
        return
    if model.startswith("openai:"):
        if not OPENAI_MODEL.match(model[len("openai:"):]):
            yield "model", f"{model!r} is not an OpenAI model reference; write openai:MODEL, e.g. openai:gpt-4o-mini"
        return
    from engine.models import parse_ref

    try:
        parse_ref(model)
    except FlowError as exc:
        yield "model", str(exc).replace("a model folder under a configured root", "a local model folder")


def require_text(**texts: str) -> None:
    """Refuse an empty or whitespace-only text that arrived by link (literals are checked earlier)."""
    for name, value in texts.items():
        if not value.strip():
            raise InvalidInput(name, "empty or only whitespace; give the model some text")


def build_messages(system: str, context: Any, prompt: str) -> list[dict]:
    """System prompt (with the JSON context appended) and the user's prompt, as chat messages."""
    parts = [system.strip()] if system.strip() else []
    if context:
        parts.append("Context (JSON):\n" + json.dumps(context, ensure_ascii=False, indent=2))
    messages = [{"role": "system", "content": "\n\n".join(parts)}] if parts else []
    return [*messages, {"role": "user", "content": prompt}]


def parse_answer(text: str, schema: dict | None) -> tuple[Any, str | None]:
    """The JSON value in `text` and None, or None and what is wrong with it."""
    body = text.strip()
    if body.startswith("```"):  # some models fence their JSON even when asked not to
        body = body.strip("`").removeprefix("json").strip()
    shown = body if len(body) <= 80 else body[:77] + "..."
    try:
        value = json.loads(body)
    except json.JSONDecodeError as exc:
        return None, f"the answer is not JSON ({exc.msg} at character {exc.pos}): {shown!r}"
    except (ValueError, RecursionError) as exc:  # a number of over 4300 digits, nesting too deep to read
        return None, f"the answer is not JSON that can be read ({type(exc).__name__}: {exc}): {shown!r}"
    unfit = json_problem(value)  # NaN, Infinity (1e400 reads as that), absurd nesting: no output may hold them
    if unfit is not None:
        return None, f"the answer is not JSON that can be used ({unfit}): {shown!r}"
    if schema is not None:
        from jsonschema import Draft202012Validator

        errors = sorted(Draft202012Validator(schema).iter_errors(value), key=lambda e: list(e.absolute_path))
        if errors:
            where = "/".join(map(str, errors[0].absolute_path)) or "the answer"
            return None, f"{where}: {errors[0].message}"
    return value, None


def structured(ctx, model: str, privacy: str, request: Request, schema: dict | None,
               what: str, task: str = "chat") -> tuple[Any, Reply]:
    """Ask for a JSON answer (fitting `schema`); an invalid answer is retried once, then a clear error."""
    reply = complete(ctx, model, privacy, request, task)
    value, problem = parse_answer(reply.text, schema)
    if problem is None:
        return value, reply
    ctx.log.warning("invalid %s from %s (%s); retrying once", what, reply.usage.get("model"), problem)
    retry = Request(**{**vars(request), "seed": None if request.seed is None else request.seed + 1,
                       "messages": [*request.messages, {"role": "assistant", "content": reply.text},
                                    {"role": "user", "content": f"That answer was invalid: {problem}. Answer again "
                                                                "with JSON only, fitting the requested format."}]})
    reply = complete(ctx, model, privacy, retry, task)
    value, problem = parse_answer(reply.text, schema)
    if problem is None:
        reply.usage["retried"] = True
        return value, reply
    raise BackendFailed(f"model {reply.usage.get('model')} gave no valid {what} in 2 attempts (last: {problem}); use a "
                    "larger model, or one served by Ollama or an OpenAI-compatible server, which constrain "
                    "structured output")

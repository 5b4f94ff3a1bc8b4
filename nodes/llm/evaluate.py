"""text.evaluate: score a text against criteria with an LLM, through structured output checked by its schema."""

from __future__ import annotations

import json

from engine import JSON, TEXT, Input, Node, Output, Seed

from .ports import (MAX_CHARS, blank_problems, max_tokens_input, model_input, model_problems, privacy_input,
                    require_text, structured, temperature_input, text_input)
from .types import Request

MAX_CRITERIA = 20
_NAME = {"type": "string", "minLength": 1, "maxLength": 64, "pattern": r"\S"}

SYSTEM = ("You are a strict, fair evaluator. Score the text on each criterion from 0 (worst) to 10 (best), give a "
          "one-sentence reason for each score, and an overall score from 0 to 10. Answer with JSON only.")


def result_schema(names: list[str]) -> dict:
    """The JSON Schema of an evaluation of these criteria: scores, reasons, overall."""

    def per_criterion(value: dict) -> dict:
        return {"type": "object", "properties": {n: value for n in names}, "required": names,
                "additionalProperties": False}

    return {
        "type": "object",
        "properties": {
            "scores": per_criterion({"type": "integer", "minimum": 0, "maximum": 10}),
            "reasons": per_criterion({"type": "string"}),
            "overall": {"type": "number", "minimum": 0, "maximum": 10},
        },
        "required": ["scores", "reasons", "overall"],
        "additionalProperties": False,
    }


class Evaluate(Node):
    """Score a text against criteria (0-10 each, an overall score and reasons) as schema-checked JSON."""

    type = "text.evaluate"
    inputs = {
        "text": text_input("the text to evaluate"),
        "criteria": Input(JSON, 'what to score: a list of names (["clarity", "accuracy"]) or a rubric, name -> what '
                                'it means ({"clarity": "easy to follow on first reading"})', default=["quality"],
                          anyOf=[{"type": "array", "items": _NAME, "minItems": 1, "maxItems": MAX_CRITERIA,
                                  "uniqueItems": True},
                                 {"type": "object", "additionalProperties": {"type": "string"},
                                  "propertyNames": _NAME, "minProperties": 1, "maxProperties": MAX_CRITERIA}]),
        "reference": Input(TEXT, "optional reference answer or source to compare with (empty: none)", default="",
                           maxLength=MAX_CHARS, widget="multiline"),
        "model": model_input(),
        "max_tokens": max_tokens_input(1024),
        "temperature": temperature_input(0.0),
        "seed": Seed(),
        "privacy": privacy_input(),
    }
    outputs = {
        "result": Output(JSON, '{"scores": {criterion: 0-10}, "reasons": {criterion: text}, "overall": 0-10}'),
        "usage": Output(JSON, "usage of the answer kept (tokens, durations, model, backend; retried: true when the "
                              "first answer was invalid)"),
    }

    @classmethod
    def check(cls, literals, given):
        yield from model_problems(literals)
        yield from blank_problems(literals, ("text",))

    def run(self, ctx, text, criteria, reference, model, max_tokens, temperature, seed, privacy):
        require_text(text=text)
        rubric = {name: "" for name in criteria} if isinstance(criteria, list) else dict(criteria)
        names = list(rubric)
        schema = result_schema(names)
        lines = [f"- {name}" + (f": {meaning}" if meaning else "") for name, meaning in rubric.items()]
        prompt = "Criteria:\n" + "\n".join(lines)
        if reference.strip():
            prompt += f"\n\nReference:\n{reference}"
        prompt += f"\n\nText to evaluate:\n{text}\n\nAnswer with JSON fitting this schema:\n{json.dumps(schema)}"
        request = Request([{"role": "system", "content": SYSTEM}, {"role": "user", "content": prompt}],
                          max_tokens, temperature, 1.0, (), seed, schema)
        result, reply = structured(ctx, model, privacy, request, schema, "evaluation")
        return {"result": result, "usage": reply.usage}

"""Saved workflows and the endpoints they declare, with request schemas derived from their params.

A workflow with an ``endpoint`` becomes a route of the gateway and a `flow` subcommand, with no
code: its params are the request body, described by the JSON Schema of the inputs they fill.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .compile import CompiledWorkflow
from .errors import InvalidWorkflow
from .executor import Engine
from .workflow import Workflow

#: node namespace -> the kind of model its model inputs take (engine.models.store.LocalModel.kind)
MODEL_KINDS = {"image": "image", "video": "video", "music": "audio", "text": "text"}


@dataclass(frozen=True, slots=True)
class Endpoint:
    """A saved workflow served as ``POST path``."""

    name: str
    path: str
    workflow: Workflow
    compiled: CompiledWorkflow

    @property
    def summary(self) -> str:
        """One line for tables and OpenAPI."""
        return (self.workflow.description or self.name).strip().splitlines()[0]

    def request_schema(self) -> dict:
        """JSON Schema of the request body: one property per param, from the inputs it fills."""
        properties, required = {}, []
        effective = self.compiled.effective_params({})
        for name, info in self.compiled.params.items():
            specs = [spec.schema for spec in info.specs if spec.schema is not None]
            schema: dict[str, Any] = dict(specs[0]) if len(specs) == 1 else {"allOf": specs}
            schema["description"] = info.description
            schema["x-flow-type"] = info.type.value
            widgets = {spec.widget for spec in info.specs}
            if len(widgets) == 1 and None not in widgets:
                schema["x-flow-widget"] = widgets.pop()  # the form's control (engine/node.py WIDGETS)
                if schema["x-flow-widget"] == "model":  # the kind of model its picker offers (image, text...)
                    kinds = {MODEL_KINDS.get(self.compiled.steps[node].cls.type.split(".")[0])
                             for node, _ in info.bind}
                    if len(kinds) == 1 and None not in kinds:
                        schema["x-flow-model-kind"] = kinds.pop()
            if name in effective:
                schema["default"] = effective[name]
            properties[name] = schema
            if info.required:
                required.append(name)
        body = {"type": "object", "properties": properties, "additionalProperties": False}
        if required:
            body["required"] = required
        return body

    def output_types(self) -> dict[str, str]:
        """Result name -> value type."""
        steps = self.compiled.steps
        return {name: steps[link.node].cls.outputs[link.output].type.value
                for name, link in self.compiled.outputs.items()}

    def describe(self) -> dict:
        """The endpoint's entry in ``GET /endpoints``."""
        return {"path": self.path, "method": "POST", "workflow": self.name, "summary": self.summary,
                "description": self.workflow.description, "request": self.request_schema(),
                "outputs": self.output_types()}


class Catalogue:
    """The saved workflows of a folder and the endpoints among them; problems are kept, not raised."""

    def __init__(self, engine: Engine, folder: str | Path, log: logging.Logger | None = None, *,
                 reserved: tuple[str, ...] = ()):
        self.engine = engine
        self.folder = Path(folder)
        #: path prefixes an endpoint may not take (the gateway's own routes: gateway/routes.py)
        self.reserved = reserved
        self.log = log or logging.getLogger("flow.catalogue")
        self.workflows: dict[str, Workflow] = {}
        self.endpoints: dict[str, Endpoint] = {}
        self.problems: dict[str, list[str]] = {}
        self.reload()

    def reload(self) -> None:
        """Read the folder again (``*.json`` and ``presets/*.json``)."""
        workflows, endpoints, problems = {}, {}, {}
        paths = sorted(self.folder.glob("*.json")) + sorted(self.folder.glob("presets/*.json"))
        for path in paths:
            name = path.relative_to(self.folder).with_suffix("").as_posix()
            try:
                workflow = Workflow.load(path)
                compiled = self.engine.compile(workflow)
            except InvalidWorkflow as exc:
                problems[name] = [str(p) for p in exc.problems]
                self.log.warning("workflow %s is invalid and not served:\n%s", name, exc)
                continue
            workflows[name] = workflow
            path_ = workflow.endpoint
            if path_ is None:
                continue
            clash = next((r for r in self.reserved if path_ == r or path_.startswith(r + "/")), None)
            if clash or path_ in endpoints:
                why = f"reserved by the gateway ({clash})" if clash else f"already served by {endpoints[path_].name}"
                problems[name] = [f"endpoint {path_} is {why}"]
                self.log.warning("workflow %s: endpoint %s is %s", name, path_, why)
                continue
            endpoints[path_] = Endpoint(name, path_, workflow, compiled)
        self.workflows, self.endpoints, self.problems = workflows, endpoints, problems

    def describe_workflows(self) -> list[dict]:
        """``GET /workflows``: name, description, endpoint, params."""
        return [{"name": name, "description": wf.description, "endpoint": wf.endpoint,
                 "params": {p: {"description": d.description} for p, d in wf.params.items()}}
                for name, wf in self.workflows.items()]

"""Presets over HTTP: saved preset workflows (``workflows/presets/*.json``) run by name through an endpoint.

``POST /image/gen {"preset": "portrait", "prompt": "...", "width": 640}`` runs the preset
workflow ``presets/portrait``: its literal inputs (size, steps, style...) apply, its own params
are filled from the body, and any other param of the endpoint that the body gives is written
over the preset's literal on top (request params win). ``GET /presets`` lists every preset with
its fixed params (the literals the preset sets, by the endpoint's param names) and its open
params (what a request fills).
"""

from __future__ import annotations

import copy
from typing import Any

from aiohttp import web

from engine.catalogue import Catalogue, Endpoint
from engine.errors import InvalidRequest
from engine.workflow import Workflow

from .keys import CATALOGUE

PREFIX = "presets/"
#: the body field naming a preset
FIELD = "preset"


def presets(catalogue: Catalogue) -> dict[str, Workflow]:
    """Preset name (without ``presets/``) -> its workflow."""
    return {name[len(PREFIX):]: wf for name, wf in catalogue.workflows.items() if name.startswith(PREFIX)}


def _fixed(preset: Workflow, endpoint: Endpoint | None) -> dict[str, Any]:
    """The literals ``preset`` sets, named by the endpoint's params where one binds that input, else node.input."""
    by_input = {}
    if endpoint is not None:
        for name, decl in endpoint.workflow.params.items():
            for node, input_ in decl.bind:
                by_input.setdefault((node, input_), name)
    bound = {pair for decl in preset.params.values() for pair in decl.bind}
    fixed = {}
    for nid, node in preset.nodes.items():
        for input_, value in node.literals.items():
            if (nid, input_) in bound or input_ in ("images",):
                continue
            fixed[by_input.get((nid, input_), f"{nid}.{input_}")] = value
    return fixed


def _endpoint_of(catalogue: Catalogue, preset: Workflow) -> Endpoint | None:
    """The endpoint a preset belongs to: the one whose workflow has the same node types (image_gen for images)."""
    types = {n.type for n in preset.nodes.values()}
    fits = [(len(own), path) for path, e in catalogue.endpoints.items()
            if (own := {n.type for n in e.workflow.nodes.values()}) <= types]
    return catalogue.endpoints[max(fits)[1]] if fits else None


def request_additions(catalogue: Catalogue) -> dict[str, dict[str, dict]]:
    """Endpoint path -> the body properties its presets add: ``preset`` (their names) and each preset's own
    open params (e.g. watercolor's ``subject``), for the endpoint's request schema in the OpenAPI document."""
    found: dict[str, dict[str, dict]] = {}
    for entry in describe(catalogue):
        if entry["endpoint"] is None:
            continue
        added = found.setdefault(entry["endpoint"], {"preset": {
            "enum": [], "description": "run this saved preset (GET /presets): its settings, the other params on top"}})
        added["preset"]["enum"].append(entry["name"])
        for name, schema in entry["request"]["properties"].items():
            added.setdefault(name, {**schema, "description": f"{schema.get('description', '')} "
                                                             f"(preset {entry['name']})".strip()})
    return found


def describe(catalogue: Catalogue) -> list[dict]:
    """``GET /presets``: name, description, endpoint, fixed params (with values) and open params."""
    listed = []
    for name, preset in sorted(presets(catalogue).items()):
        endpoint = _endpoint_of(catalogue, preset)
        listed.append({
            "name": name, "workflow": PREFIX + name, "description": preset.description,
            "endpoint": endpoint.path if endpoint else None,
            "fixed": _fixed(preset, endpoint),
            "open": {p: {"description": d.description, **({"default": d.default} if d.has_default else {})}
                     for p, d in preset.params.items()},
            # the open params as a request body schema (the web page's preset form)
            "request": Endpoint(PREFIX + name, endpoint.path if endpoint else "", preset,
                                catalogue.engine.compile(preset)).request_schema(),
        })
    return listed


async def list_presets(request: web.Request) -> web.Response:
    return web.json_response({"presets": describe(request.app[CATALOGUE])})


def apply(catalogue: Catalogue, endpoint: Endpoint, params: Any) -> tuple[Workflow, Any]:
    """The workflow and params a request runs: the endpoint's own, or with ``"preset"`` the preset's, the
    endpoint's other params written over its literals."""
    if not isinstance(params, dict) or FIELD not in params:
        return endpoint.workflow, params
    rest = dict(params)
    name = rest.pop(FIELD)
    found = presets(catalogue)
    preset = found.get(name) if isinstance(name, str) else None
    if preset is None:
        raise InvalidRequest(f"preset {name!r} does not exist; GET /presets lists them: {', '.join(sorted(found))}")
    home = _endpoint_of(catalogue, preset)
    if home is None or home.path != endpoint.path:
        raise InvalidRequest(f"preset {name!r} is not a preset of {endpoint.path}; post it to "
                             f"{home.path if home else 'POST /jobs as the workflow presets/' + name}")
    doc = copy.deepcopy(preset.doc)
    for key in [k for k in rest if k not in preset.params]:
        decl = endpoint.workflow.params.get(key)
        targets = [(node, input_) for node, input_ in (decl.bind if decl else ()) if node in doc["nodes"]]
        if not targets:
            raise InvalidRequest(f"param {key!r} is not one preset {name!r} takes; its open params are "
                                 f"{', '.join(preset.params) or 'none'}, and the fixed ones "
                                 f"{', '.join(_fixed(preset, endpoint)) or 'none'} may be given on top")
        value = rest.pop(key)
        for node, input_ in targets:  # request params on top of the preset's literals
            doc["nodes"][node].setdefault("inputs", {})[input_] = value
    doc.pop("endpoint", None)
    return Workflow.from_dict(doc, source=preset.source), rest

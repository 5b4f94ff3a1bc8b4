"""A human-readable API page (``GET /docs``), from the same catalogue and route table as /openapi.json."""

from __future__ import annotations

import json
from html import escape

from engine.catalogue import Catalogue
from engine.registry import Registry

from .api_schemas import event_schemas
from .routes import Route
from .spec import STATUSES

_STYLE = """body{font:15px/1.5 system-ui,sans-serif;max-width:60rem;margin:2rem auto;padding:0 1rem;color:#222}
code,pre{font:13px ui-monospace,monospace;background:#f4f4f4;padding:.1rem .3rem;border-radius:3px}
pre{padding:.6rem;overflow:auto}table{border-collapse:collapse;width:100%;margin:.5rem 0 1.5rem}
td,th{border-bottom:1px solid #ddd;padding:.3rem .5rem;text-align:left;vertical-align:top}h2{margin-top:2.5rem}"""


def render_docs(catalogue: Catalogue, registry: Registry, routes: list[Route]) -> str:
    """The page: endpoints with their request fields, the routes (from the route table), and the node catalogue."""
    parts = [f"<!doctype html><html lang=en><meta charset=utf-8><title>flow API</title><style>{_STYLE}</style>",
             "<h1>flow API</h1><p>Every endpoint is a saved workflow: the JSON body fills its params. "
             "Add <code>?wait=false</code> (or <code>Prefer: respond-async</code>) for 202 and a job URL; "
             "<code>?media=base64</code> to inline media. Machine-readable: "
             "<a href=/openapi.json>/openapi.json</a>.</p>", "<h2>Endpoints</h2>"]
    for path, endpoint in sorted(catalogue.endpoints.items()):
        schema = endpoint.request_schema()
        required = set(schema.get("required", []))
        parts.append(f"<h3><code>POST {escape(path)}</code></h3><p>{escape(endpoint.workflow.description)}</p>")
        parts.append("<table><tr><th>field</th><th>type</th><th>default</th><th>description</th></tr>")
        for name, prop in schema["properties"].items():
            default = json.dumps(prop["default"]) if "default" in prop else ("required" if name in required else "")
            parts.append(f"<tr><td><code>{escape(name)}</code></td><td>{escape(prop.get('x-flow-type', ''))}</td>"
                         f"<td>{escape(default)}</td><td>{escape(prop.get('description', ''))}</td></tr>")
        parts.append("</table>")
        example = {k: v.get("default") for k, v in schema["properties"].items() if "default" in v}
        parts.append(f"<pre>curl --json '{escape(json.dumps(example))}' http://HOST{escape(path)}</pre>")
    parts.append("<h2>Routes</h2><table>")
    for route in routes:
        parts.append(f"<tr><td>{route.method}</td><td><code>{escape(route.spec_path)}</code></td>"
                     f"<td>{escape(route.summary)}</td></tr>")
    parts.append("</table>")
    parts += _errors_and_events()
    parts.append("<h2>Nodes</h2><table><tr><th>type</th><th>inputs</th><th>outputs</th><th></th></tr>")
    for type_id, entry in registry.describe().items():
        ins = ", ".join(f"{n}: {s['type']}" for n, s in entry["inputs"].items())
        outs = ", ".join(f"{n}: {s['type']}" for n, s in entry["outputs"].items())
        parts.append(f"<tr><td><code>{escape(type_id)}</code></td><td>{escape(ins)}</td><td>{escape(outs)}</td>"
                     f"<td>{escape(entry['description'])}</td></tr>")
    parts.append("</table></html>")
    return "".join(parts)


def _errors_and_events() -> list[str]:
    """The statuses and the event kinds, from the same tables as /openapi.json."""
    parts = ["<h2>Errors</h2><p>Every error is JSON: <code>{\"error\": {\"type\", \"message\", \"problems\"?}}"
             "</code> (the <code>/v1</code> routes: OpenAI's <code>{\"error\": {\"message\", \"type\", \"param\", "
             "\"code\"}}</code>); a job that did not finish answers its own body with its <code>error</code>.</p>"
             "<table><tr><th>status</th><th>when</th></tr>"]
    parts += [f"<tr><td>{code}</td><td>{escape(why)}</td></tr>" for code, why in STATUSES.items()]
    parts.append("</table><h2>Events</h2><p><code>GET /jobs/{id}/events</code> (Server-Sent Events: "
                 "<code>event: KIND</code>, <code>data: JSON</code>) and <code>GET /ws</code> (WebSocket: one JSON "
                 "object per message, its kind in <code>event</code>).</p>"
                 "<table><tr><th>event</th><th>fields</th><th></th></tr>")
    for schema in event_schemas().values():
        fields = ", ".join(f"{name}: {_type(prop)}" for name, prop in schema["properties"].items() if name != "event")
        parts.append(f"<tr><td><code>{escape(schema['properties']['event']['const'])}</code></td>"
                     f"<td>{escape(fields)}</td><td>{escape(schema['description'])}</td></tr>")
    parts.append("</table>")
    return parts


def _type(schema: dict) -> str:
    kind = schema.get("type", "any")
    return " | ".join(kind) if isinstance(kind, list) else kind

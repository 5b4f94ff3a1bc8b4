"""A missing required param in an HTTP request: the 400 body names the JSON field, never a CLI flag."""

from __future__ import annotations

import json

from gateway_support import run

NEEDS_WHO = {"endpoint": "/greet", "description": "greets WHO",
             "params": {"who": {"description": "who to greet", "bind": [{"node": "g", "input": "template"}]}},
             "nodes": {"g": {"type": "text.template"}}, "outputs": {"text": {"from": "g", "output": "text"}}}


def test_gateway_missing_param_hint_names_the_json_field(gateway, workflows_dir):
    (workflows_dir / "greet.json").write_text(json.dumps(NEEDS_WHO))

    async def scenario():
        async with gateway() as client:
            response = await client.post("/greet", json={})
            body = await response.json()
            assert response.status == 400, body
            [problem] = body["error"]["problems"]
            assert problem["param"] == "who" and '"who"' in problem["message"]
            assert "--param" not in json.dumps(body) and "--who" not in json.dumps(body)

    run(scenario())

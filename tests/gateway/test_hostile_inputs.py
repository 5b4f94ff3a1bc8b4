"""Requests a review tried as an attacker would: each answers a 4xx (never a 500) and starts nothing."""

from __future__ import annotations

import http.server
import threading

from aiohttp import FormData, MultipartWriter

from gateway_support import run


def _nested_form() -> MultipartWriter:
    """A multipart/form-data body whose one part is itself a multipart body."""
    outer = MultipartWriter("form-data")
    inner = MultipartWriter("mixed")
    inner.append(b"\x89PNG not really", {"Content-Type": "image/png"})
    part = outer.append(inner)
    part.set_content_disposition("form-data", name="file", filename="x.png")
    return outer


def test_a_nested_form_part_answers_400_on_products_and_inputs(gateway, tmp_path):
    async def main():
        async with gateway(input_dir=tmp_path / "inputs") as client:
            products = await client.post("/products", data=_nested_form())
            inputs = await client.post("/inputs", data=_nested_form())
            return (products.status, await products.json()), (inputs.status, await inputs.json())

    for status, body in run(main()):
        assert status == 400 and "multipart body itself" in body["error"]["message"], body


def test_product_form_fields_are_parsed_strictly(gateway):
    async def main():
        answers = []
        async with gateway() as client:
            for name in ("facts", "source_urls"):
                form = FormData(default_to_multipart=True)
                form.add_field("name", "bag")
                form.add_field(name, "[" * 200_000)  # nests past any parser's recursion
                response = await client.post("/products", data=form)
                answers.append((response.status, await response.json()))
            form = FormData(default_to_multipart=True)
            form.add_field("name", "bag")
            form.add_field("facts", '{"weight": NaN}')
            response = await client.post("/products", data=form)
            answers.append((response.status, await response.json()))
        return answers

    for status, body in run(main()):
        assert status == 400, body


def test_a_raw_input_body_keeps_the_servers_body_limit(gateway, tmp_path):
    async def main():
        async with gateway(input_dir=tmp_path / "inputs", max_body_bytes=1024) as client:
            response = await client.post("/inputs", data=b"\x89PNG" + b"0" * 5000,
                                         headers={"Content-Type": "image/png"})
            return response.status, await response.json()

    status, body = run(main())
    assert status == 413 and "1024" in body["error"]["message"], body


def test_ollama_requests_check_every_field_before_a_job_starts(gateway):
    async def main():
        async with gateway() as client:
            embed = await client.post("/api/embed", json={"model": "x", "input": "a", "options": 5})
            generate = await client.post("/api/generate", json={"model": "x", "prompt": "hi", "stream": "yes"})
            jobs = await (await client.get("/jobs")).json()
            return (embed.status, await embed.json()), (generate.status, await generate.json()), jobs

    embed, generate, jobs = run(main())
    assert embed[0] == 400 and "'options' must be an object" in embed[1]["error"]
    assert generate[0] == 400 and "'stream'" in generate[1]["error"]
    assert jobs["jobs"] == []  # the refused generate queued nothing


def test_chat_images_are_counted_before_any_is_fetched(gateway):
    parts = [{"type": "text", "text": "what is this?"}] + [
        {"type": "image_url", "image_url": {"url": f"http://192.0.2.1/{i}.png"}} for i in range(17)]

    async def main():
        async with gateway() as client:
            response = await client.post("/v1/chat/completions",
                                         json={"model": "x", "messages": [{"role": "user", "content": parts}]})
            return response.status, await response.json()

    status, body = run(main())
    assert status == 400 and "at most 16 images" in body["error"]["message"], body


def test_fetch_sends_a_non_ascii_path_percent_encoded():
    from engine.fetch import fetch

    seen = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            seen.append(self.path)
            self.send_response(200)
            self.send_header("Content-Type", "text/plain")
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"ok")

        def log_message(self, *args):
            pass

    server = http.server.HTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        found = fetch(f"http://127.0.0.1:{server.server_port}/caf\u00e9?q=\u00fc", max_bytes=100, timeout=5,
                      allow_private=True)
    finally:
        server.shutdown()
    assert found.body == b"ok" and seen == ["/caf%C3%A9?q=%C3%BC"]


def test_health_names_the_models_ollama_holds():
    """/health asks Ollama what it holds; a model loaded there is named, not reported as Ollama being down."""
    from types import SimpleNamespace

    from engine.models.ollama import OllamaModel
    from gateway.health import _model_health

    ollama = SimpleNamespace(loaded=lambda: [OllamaModel("llama3.2:latest", 2 << 30, 2 << 30)])
    models = SimpleNamespace(report=lambda: SimpleNamespace(to_json=lambda: {"device": "cpu"}), probing=False,
                             torch=None, ollama=ollama)
    assert _model_health(models)["ollama"] == {"reachable": True, "loaded": ["llama3.2:latest"]}

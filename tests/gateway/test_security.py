"""A real `flow serve`, attacked: file reads, cross-site requests, DNS rebinding, hostile bodies and headers.

Each test is an attack that worked before the gateway was hardened; each must now be refused
with a 4xx (never a 500, never the file's bytes) while the server keeps serving.
"""

from __future__ import annotations

import asyncio
import base64
import http.client
import json
import subprocess

import pytest

from gateway_support import FLOW, Served

PASSWD = "/etc/passwd"
SECRET = "s3cret-token"
EVIL = "http://evil.example"


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """Defaults but two: the job database placed inside the output folder (it must still never be
    served) and one extra allowed host name."""
    tmp = tmp_path_factory.mktemp("security")
    server = Served(tmp, {"FLOW_JOBS_DB": str(tmp / "out" / "jobs.sqlite3"), "FLOW_ALLOWED_HOSTS": "flow.lan",
                          "FLOW_PROBE_DEVICE": "false"})
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def locked(tmp_path_factory):
    """A server with an API token."""
    tmp = tmp_path_factory.mktemp("security-token")
    server = Served(tmp, {"FLOW_API_TOKEN": SECRET, "FLOW_PROBE_DEVICE": "false"})
    server.start()
    yield server
    server.stop()


def raw(server: Served, method: str, path: str, body: bytes | None = None, headers: dict | None = None,
        host: str | None = None) -> tuple[int, bytes, http.client.HTTPMessage]:
    """One request with exactly these headers (http.client writes str header values as latin-1 bytes)."""
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
    try:
        conn.putrequest(method, path, skip_host=True, skip_accept_encoding=True)
        conn.putheader("Host", host if host is not None else f"127.0.0.1:{server.port}")
        for name, value in (headers or {}).items():
            conn.putheader(name, value)
        if body is not None:
            conn.putheader("Content-Length", str(len(body)))
        conn.endheaders(body)
        response = conn.getresponse()
        return response.status, response.read(), response.headers
    finally:
        conn.close()


def post_json(server: Served, path: str, doc, headers: dict | None = None):
    return raw(server, "POST", path, json.dumps(doc).encode(), {"Content-Type": "application/json", **(headers or {})})


def error_of(body: bytes) -> dict:
    return json.loads(body)["error"]


def passwd_workflow(path: str) -> dict:
    return {"workflow": {"name": "x", "nodes": {"p": {"type": "primitive.json",
                                                      "inputs": {"value": {"url": "u", "path": path}}}}}}


# -- 1. files ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("path", [PASSWD, "../../../etc/passwd", "out/../../../../etc/passwd", "jobs.sqlite3"])
def test_security_json_shaped_like_media_is_never_read(server, path):
    first_line = open(PASSWD).readline().strip().encode()
    status, body, _ = post_json(server, "/jobs?wait=true&media=base64", passwd_workflow(path))
    assert status == 200, body
    assert first_line not in body and base64.b64encode(first_line)[:12] not in body
    job = json.loads(body)
    assert list(job["outputs"].values()) == [{"url": "u", "path": path}]  # the value as given, nothing read
    status, body, _ = raw(server, "GET", f"/jobs/{job['id']}?media=base64")
    assert status == 200 and first_line not in body and b'"b64"' not in body


def test_security_endpoint_media_inline_reads_only_real_outputs(server):
    status, body, _ = post_json(server, "/hello?media=base64", {"name": "you"})
    assert status == 200, body
    assert json.loads(body)["outputs"]["text"] == "Hello, you!"
    assert b"root:" not in body


@pytest.mark.parametrize("path", ["/files/jobs.sqlite3", "/files/jobs.sqlite3-wal", "/files/jobs.sqlite3-shm",
                                  "/files/.hidden", "/files/hello/.x", "/files/..%2f..%2fetc%2fpasswd",
                                  "/files/%2Fetc%2Fpasswd", "/files//etc/passwd"])
def test_security_files_never_serves_databases_hidden_or_outside_files(server, path):
    post_json(server, "/hello", {})  # the database and its WAL exist now
    (server.tmp / "out" / ".hidden").write_text("hidden")
    status, body, _ = raw(server, "GET", path)
    assert status == 404, (path, body)
    assert b"SQLite" not in body and b"root:" not in body and b"hidden" not in body.replace(b"/files", b"")


def test_security_default_job_database_is_outside_the_output_folder():
    from engine.settings import Settings

    settings = Settings()
    assert settings.output_dir.resolve() not in settings.jobs_db.resolve().parents


def test_security_saved_html_cannot_run_as_the_gateway(server):
    (server.tmp / "out" / "page.html").write_text("<script>fetch('/jobs')</script>")
    status, _, headers = raw(server, "GET", "/files/page.html")
    assert status == 200
    assert "sandbox" in headers["Content-Security-Policy"] and headers["X-Content-Type-Options"] == "nosniff"


# -- 2. and 3. cross-site: Origin, Host, body types ---------------------------------------------------

def _post_paths(server: Served) -> list[str]:
    status, body, _ = raw(server, "GET", "/openapi.json")
    assert status == 200
    paths = json.loads(body)["paths"]
    return sorted(p for p, ops in paths.items() if "post" in ops and "{" not in p)


def test_security_foreign_origin_is_refused_on_every_post_route(server):
    posts = _post_paths(server)
    assert {"/jobs", "/hello", "/workflows/extract", "/v1/chat/completions"} <= set(posts)
    for path in posts:
        status, body, _ = post_json(server, path, {}, {"Origin": EVIL})
        assert status == 403, (path, body)
    status, body, _ = raw(server, "GET", "/jobs", headers={"Origin": EVIL})
    assert status == 403 and error_of(body)["type"] == "forbidden"
    status, _, _ = raw(server, "GET", "/jobs", headers={"Origin": "null"})
    assert status == 403


def test_security_same_origin_and_plain_clients_are_served(server):
    assert post_json(server, "/hello", {}, {"Origin": f"http://127.0.0.1:{server.port}"})[0] == 200
    assert post_json(server, "/hello", {})[0] == 200  # curl and scripts send no Origin


def test_security_cross_site_fetch_without_origin_is_refused(server):
    status, _, _ = raw(server, "GET", "/jobs", headers={"Sec-Fetch-Site": "cross-site", "Sec-Fetch-Mode": "no-cors"})
    assert status == 403
    # following a link to the page from elsewhere still works
    status, _, _ = raw(server, "GET", "/", headers={"Sec-Fetch-Site": "cross-site", "Sec-Fetch-Mode": "navigate"})
    assert status in (200, 302)


@pytest.mark.parametrize("content_type", ["text/plain", "application/x-www-form-urlencoded",
                                          "multipart/form-data; boundary=x", None])
def test_security_non_json_bodies_are_refused_with_415(server, content_type):
    headers = {} if content_type is None else {"Content-Type": content_type}
    for path in ("/jobs", "/hello"):
        status, body, _ = raw(server, "POST", path, json.dumps(passwd_workflow(PASSWD)).encode(), headers)
        assert status == 415, (path, content_type, body)
        assert "Content-Type: application/json" in error_of(body)["message"]


@pytest.mark.parametrize("host", ["evil.example", "evil.example:8000", "127.0.0.1.evil.example", "flow.lan.evil"])
def test_security_foreign_host_is_refused(server, host):
    status, body, _ = raw(server, "GET", "/jobs", host=host)
    assert status == 403, body
    assert "FLOW_ALLOWED_HOSTS" in error_of(body)["message"]
    assert raw(server, "POST", "/hello", b"{}", {"Content-Type": "application/json"}, host=host)[0] == 403


@pytest.mark.parametrize("host", ["localhost", "127.0.0.1", "[::1]:8000", "flow.lan", "FLOW.LAN:80", "app.localhost"])
def test_security_own_host_names_are_served(server, host):
    assert raw(server, "GET", "/health", host=host)[0] == 200


def test_security_websocket_from_a_foreign_origin_is_refused(server):
    import aiohttp

    async def scenario():
        async with aiohttp.ClientSession() as session:
            with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
                await session.ws_connect(server.url + "/ws", headers={"Origin": EVIL})
            assert refused.value.status == 403
            ws = await session.ws_connect(server.url + "/ws", headers={"Origin": server.url})
            await ws.close()

    asyncio.run(scenario())


# -- tokens ------------------------------------------------------------------------------------------

def test_security_token_in_the_query_only_for_event_streams(locked):
    auth = {"Authorization": f"Bearer {SECRET}"}
    status, body, _ = post_json(locked, "/hello?wait=false", {}, auth)
    assert status == 202, body
    job = json.loads(body)["id"]
    assert raw(locked, "GET", f"/jobs?token={SECRET}")[0] == 401
    assert raw(locked, "GET", f"/jobs/{job}?token={SECRET}")[0] == 401
    assert post_json(locked, f"/hello?token={SECRET}", {})[0] == 401
    assert raw(locked, "GET", f"/jobs/{job}/events?token={SECRET}")[0] == 200
    assert raw(locked, "GET", f"/jobs/{job}", headers=auth)[0] == 200

    import aiohttp

    async def websocket():
        async with aiohttp.ClientSession() as session:
            ws = await session.ws_connect(f"{locked.url}/ws?token={SECRET}")
            await ws.close()
            with pytest.raises(aiohttp.WSServerHandshakeError):
                await session.ws_connect(f"{locked.url}/ws?token=wrong")

    asyncio.run(websocket())


@pytest.mark.parametrize("value", ["Bearer \xff\xfe", "\xff", "Bearer " + "x" * 8000, "bearer wrong"])
def test_security_hostile_authorization_headers_answer_401(locked, value):
    status, body, _ = raw(locked, "GET", "/jobs", headers={"Authorization": value})
    assert status == 401, body


def test_security_non_utf8_headers_never_answer_500(server):
    for headers, host in (({"X-Anything": "\xff\xfe"}, None), ({"Origin": "http://\xff"}, None), ({}, "\xff.lan"),
                          ({"Prefer": "\xff"}, None), ({"Content-Type": "application/\xff"}, None)):
        status, body, _ = raw(server, "POST", "/hello", b"{}", headers, host=host)
        assert 200 <= status < 500, (headers, host, status, body)


def test_security_serve_refuses_a_public_address_without_a_token(tmp_path):
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "FLOW_PROBE_DEVICE": "false"}
    done = subprocess.run([FLOW, "serve", "--host", "0.0.0.0", "--port", "1"], env=env, cwd=tmp_path,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    assert "without an API token" in done.stderr and "--insecure-no-token" in done.stderr
    # published on loopback only (a container's port mapping): no token needed
    loopback = Served(tmp_path, {"FLOW_HOST": "0.0.0.0", "FLOW_PUBLISHED_HOST": "127.0.0.1",
                                 "FLOW_PROBE_DEVICE": "false"})
    loopback.start()
    try:
        assert loopback.call("GET", "/health")[0] == 200
    finally:
        loopback.stop()


# -- 6. hostile bodies and queries ------------------------------------------------------------------

HOSTILE_BODIES = {
    "deep json": b"[" * 100_000 + b"]" * 100_000,
    "deep object": b'{"workflow":' * 5000 + b"1" + b"}" * 5000,
    "huge integer": b'{"name": ' + b"9" * 5000 + b"}",
    "nan": b'{"name": NaN}',
    "infinity": b'{"name": Infinity}',
    "overflowing float": b'{"name": 1e999}',
    "not an object": b"[1, 2]",
    "invalid utf-8": b'{"name": "\xff"}',
    "truncated": b'{"name": "x',
}


@pytest.mark.parametrize("name", sorted(HOSTILE_BODIES))
def test_security_hostile_json_bodies_answer_400(server, name):
    for path in ("/hello", "/jobs", "/v1/chat/completions"):
        status, body, _ = raw(server, "POST", path, HOSTILE_BODIES[name], {"Content-Type": "application/json"})
        assert status == 400, (name, path, body[:300])
        error = error_of(body)
        assert error["message"] and "Traceback" not in error["message"]


def test_security_deep_literal_in_a_workflow_is_refused(server):
    value: object = "leaf"
    for _ in range(500):
        value = {"v": value}
    doc = {"workflow": {"name": "deep", "nodes": {"p": {"type": "primitive.json", "inputs": {"value": value}}}}}
    status, body, _ = post_json(server, "/jobs?wait=true", doc)
    assert status == 400, body[:300]


@pytest.mark.parametrize("query", ["before=%C2%B2", "before=99999999999999999999", "before=-1", "limit=nan",
                                   "limit=0", "limit=1e9", "state=%00", "state=nope", "limit=%C2%B2"])
def test_security_bad_query_parameters_answer_400(server, query):
    status, body, _ = raw(server, "GET", f"/jobs?{query}")
    assert status == 400, (query, body)
    assert error_of(body)["type"] == "invalid_request"


@pytest.mark.parametrize("query", ["wait=maybe", "media=file", "timeout=-1", "timeout=nan"])
def test_security_bad_endpoint_query_parameters_answer_400(server, query):
    assert post_json(server, f"/hello?{query}", {})[0] == 400


def test_security_v1_errors_use_openai_shape(server):
    bad_part = {"model": "", "messages": [{"role": "user", "content": [{"type": "text", "text": 5}]}]}
    for body in (bad_part, {"messages": []}):
        status, raw_body, _ = post_json(server, "/v1/chat/completions", body)
        assert status == 400, raw_body
        error = error_of(raw_body)
        assert set(error) == {"message", "type", "param", "code"}
    status, raw_body, _ = raw(server, "POST", "/v1/embeddings", b"nope", {"Content-Type": "application/json"})
    assert status == 400 and set(error_of(raw_body)) == {"message", "type", "param", "code"}


def test_security_web_404s_have_a_json_body(server):
    for path in ("/web/nope.js", "/web/", "/nope"):
        status, body, _ = raw(server, "GET", path)
        assert status in (403, 404), path
        assert error_of(body)["message"], path


def test_security_the_server_still_serves_after_the_attacks(server):
    status, body, _ = post_json(server, "/hello", {"name": "still here"})
    assert status == 200 and json.loads(body)["outputs"]["text"] == "Hello, still here!"


def test_security_the_page_behind_a_tls_proxy_is_its_own_origin(server):
    # Caddy or nginx terminate TLS and pass Host through: the page's Origin is https, this server sees http
    status, body, _ = raw(server, "POST", "/hello", b"{}", {"Content-Type": "application/json",
                                                           "Origin": "https://flow.lan"}, host="flow.lan")
    assert status == 200, body
    status, _, _ = raw(server, "POST", "/hello", b"{}", {"Content-Type": "application/json",
                                                        "Origin": "https://other.lan"}, host="flow.lan")
    assert status == 403


def _job(nodes: dict) -> dict:
    return {"workflow": {"name": "bad-input", "nodes": nodes}}


# Why item 6 of the security issue, each over HTTP against a real server: 4xx naming what is wrong.
BAD_INPUTS = {
    "json.get of a missing path": ("/jobs?wait=true", _job({"g": {"type": "json.get", "inputs": {
        "value": {"a": 1}, "path": "b.c"}}}), 422),
    "image.load of a folder": ("/jobs?wait=true", _job({"l": {"type": "image.load", "inputs": {"path": "."}}}), 422),
    "image.load of a file that is not an image": ("/jobs?wait=true", _job({"l": {"type": "image.load", "inputs": {
        "path": "hello/not-an-image.txt"}}}), 422),
    "image.load of a missing file": ("/jobs?wait=true", _job({"l": {"type": "image.load", "inputs": {
        "path": "nope.png"}}}), 422),
    "a 999-character file name": ("/jobs?wait=true", _job({"s": {"type": "text.save", "inputs": {
        "text": "x", "prefix": "a" * 999}}}), 400),
    "no image to /image/edit": ("/image/edit", {"prompt": "a cat"}, 422),
    "a path-tricked remote model": ("/text/gen", {"prompt": "hi", "model": "openai:../x"}, 400),
    "an empty text to evaluate": ("/text/eval", {"text": "  "}, 422),
    "a fractional batch size": ("/image/gen", {"prompt": "a cat", "batch_size": 2.5}, 400),
}


@pytest.mark.parametrize("what", sorted(BAD_INPUTS))
def test_security_bad_node_inputs_answer_4xx_naming_the_input(server, what):
    (server.tmp / "out" / "hello").mkdir(parents=True, exist_ok=True)
    (server.tmp / "out" / "hello" / "not-an-image.txt").write_text("plain text")
    path, body, expected = BAD_INPUTS[what]
    status, raw_body, _ = post_json(server, path, body)
    assert status == expected, (what, raw_body[:400])
    text = raw_body.decode()
    assert "Traceback" not in text and str(server.tmp) not in text  # no server paths, no traceback
    error = json.loads(raw_body)["error"]
    if expected == 422:
        assert error["input"] and error["node"], error  # names the node and the input

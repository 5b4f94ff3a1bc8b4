"""The gateway's access log: one `flow.access` line per request, with the job id when there is one."""

from __future__ import annotations

import logging
import re

import pytest

from gateway_support import FLOW, Served, free_port, run
from zoo import chain


def _lines(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "flow.access"]


def test_access_log_names_method_path_status_duration_and_job(gateway, caplog):
    caplog.set_level(logging.INFO, logger="flow.access")

    async def scenario():
        async with gateway() as client:
            assert (await client.get("/health")).status == 200
            accepted = await client.post("/jobs", json={"workflow": chain(2).doc})
            job = (await accepted.json())["id"]
            assert accepted.status == 202
            assert (await client.get(f"/jobs/{job}")).status == 200
            assert (await client.get("/nowhere")).status == 404
            return job

    job = run(scenario())
    lines = _lines(caplog)
    assert any(re.fullmatch(r"GET /health 200 \d+\.\d ms", line) for line in lines), lines
    assert any(re.fullmatch(rf"POST /jobs 202 \d+\.\d ms job={job}", line) for line in lines), lines
    assert any(re.fullmatch(rf"GET /jobs/{job} 200 \d+\.\d ms job={job}", line) for line in lines), lines
    assert any(re.fullmatch(r"GET /nowhere 404 \d+\.\d ms", line) for line in lines), lines  # no job id


@pytest.mark.slow
def test_serve_reads_dotenv_and_writes_the_access_log(tmp_path):
    server = Served(tmp_path, {})
    del server.env["FLOW_PORT"]  # the port comes from .env only
    server.env.pop("FLOW_LOG_LEVEL", None)
    (tmp_path / ".env").write_text(f"# the port of this test\nFLOW_PORT='{server.port}'\nFLOW_LOG_LEVEL=info\n")
    server.start()
    try:
        status, body = server.call("POST", "/jobs", {"workflow": {
            "name": "one", "nodes": {"j": {"type": "text.join", "inputs": {"a": "a", "b": "b"}}},
            "outputs": {"text": {"from": "j", "output": "text"}}}})
        assert status == 202, body
    finally:
        server.stop()
    log = (tmp_path / f"serve-{server.port}.log").read_text()
    assert re.search(r"INFO flow\.access: GET /health 200 \d+\.\d ms", log), log
    assert re.search(rf"INFO flow\.access: POST /jobs 202 \d+\.\d ms job={body['id']}", log), log


@pytest.mark.slow
def test_serve_shell_environment_wins_over_dotenv(tmp_path):
    server = Served(tmp_path, {"FLOW_LOG_LEVEL": "WARNING"})  # FLOW_PORT from the shell too
    (tmp_path / ".env").write_text(f"FLOW_PORT={free_port()}\nFLOW_LOG_LEVEL=DEBUG\n")
    server.start()  # answers on the shell's port
    server.stop()
    log = (tmp_path / f"serve-{server.port}.log").read_text()
    assert "flow.access" not in log and "DEBUG" not in log, log


def test_serve_refuses_a_log_level_it_does_not_know(tmp_path):
    import subprocess

    done = subprocess.run([FLOW, "serve"], cwd=tmp_path, capture_output=True, text=True, timeout=60,
                          env={**Served(tmp_path, {}).env, "FLOW_LOG_LEVEL": "loud"})
    assert done.returncode == 2 and "FLOW_LOG_LEVEL" in done.stderr, done.stderr


def test_access_lines_skip_logging_only_where_the_text_is_the_same(capsys):
    """`info_line` formats a line itself only when the record would reach the handler `configure`
    installed and nothing else; the text is what logging writes. Another handler gets the record."""
    from gateway import logs

    root = logging.getLogger()
    saved = root.handlers[:], root.level, logs._installed
    root.handlers = []
    try:
        logs.configure("INFO")
        handler = logs._installed
        assert handler is not None and root.handlers == [handler]
        logs.info_line(logging.getLogger("flow.access"), "GET /x 200 1.0 ms")
        logging.getLogger("flow.access").info("%s", "GET /y 200 1.0 ms")
        direct, through_logging = [line.rstrip("\n") for line in handler._lines[-2:]]
        stamp = r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}"
        assert re.fullmatch(stamp + r" INFO flow\.access: GET /x 200 1\.0 ms", direct), direct
        assert re.fullmatch(stamp + r" INFO flow\.access: GET /y 200 1\.0 ms", through_logging), through_logging
        seen = []
        other = logging.Handler()
        other.emit = seen.append
        root.addHandler(other)
        logs.info_line(logging.getLogger("flow.access"), "GET /z 200 1.0 ms")
        assert [r.getMessage() for r in seen] == ["GET /z 200 1.0 ms"]  # the record, not a line
        root.removeHandler(other)
        logging.getLogger("flow.access").setLevel(logging.WARNING)
        count = len(handler._lines)
        logs.info_line(logging.getLogger("flow.access"), "GET /quiet 200 1.0 ms")
        assert len(handler._lines) == count  # below the level: nothing
    finally:
        logging.getLogger("flow.access").setLevel(logging.NOTSET)
        handler.flush()
        root.handlers, root.level, logs._installed = saved

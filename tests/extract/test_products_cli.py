"""`flow products`: create, list, show, describe, delete, on this machine's job database and on a gateway."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from extract_support import MODEL
from extract_site import png_bytes

FLOW = str(Path(sys.executable).with_name("flow"))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "gateway"))


def flow(env, cwd, *args, check=True):
    done = subprocess.run([FLOW, "products", *args], env=env, cwd=cwd, capture_output=True, text=True, timeout=180)
    if check:
        assert done.returncode == 0, done.stderr
    return done


@pytest.fixture
def env(tmp_path, ollama):
    return {**os.environ, "FLOW_OLLAMA_URL": ollama.url, "FLOW_OUTPUT_DIR": str(tmp_path / "out"),
            "FLOW_MODELS_DIR": str(tmp_path / "models"), "FLOW_JOBS_DB": str(tmp_path / "jobs.sqlite3"),
            "FLOW_FETCH_ALLOW_PRIVATE": "true"}


def test_products_cli_here(env, tmp_path, site):
    picture = tmp_path / "bag.png"
    picture.write_bytes(png_bytes((20, 12)))
    made = json.loads(flow(env, tmp_path, "create", "Trailblazer 40L", "--image", str(picture),
                           "--url", site.url("/product"), "--notes", "ships fast", "--json").stdout)
    assert made["name"] == "Trailblazer 40L" and len(made["images"]) == 1
    assert (tmp_path / "out" / made["images"][0]["path"]).read_bytes().startswith(b"\x89PNG")
    listed = flow(env, tmp_path, "list").stdout
    assert made["id"] in listed and "not described" in listed
    described = json.loads(flow(env, tmp_path, "describe", made["id"], "--tone", "playful", "--model", MODEL,
                                "--vision-model", MODEL, "--seed", "2", "--json").stdout)
    assert described["description"]["tone"] == "playful" and described["describe"]["state"] == "finished"
    shown = json.loads(flow(env, tmp_path, "show", made["id"], "--json").stdout)
    assert shown["description"] == described["description"]
    assert flow(env, tmp_path, "delete", made["id"]).stdout.strip() == made["id"]
    missing = flow(env, tmp_path, "show", made["id"], check=False)
    assert missing.returncode == 1 and "no product" in missing.stderr and "Traceback" not in missing.stderr
    bad = flow(env, tmp_path, "create", "x", "--url", "ftp://nope", check=False)
    assert bad.returncode == 1 and "not an http(s) URL" in bad.stderr


def test_products_cli_on_a_gateway(env, tmp_path, site):
    from gateway_support import Served

    server = Served(tmp_path, {k: v for k, v in env.items() if k.startswith("FLOW_")} | {"FLOW_PROBE_DEVICE": "false"})
    server.start(timeout=60)
    try:
        picture = tmp_path / "bag.png"
        picture.write_bytes(png_bytes((20, 12)))
        remote = ["--server", server.url]
        made = json.loads(flow(env, tmp_path, "create", "Remote bag", "--image", str(picture), "--url",
                               site.url("/product"), "--json", *remote).stdout)
        assert len(made["images"]) == 1 and made["images"][0]["path"].startswith(f"products/{made['id']}/")
        assert made["id"] in flow(env, tmp_path, "list", *remote).stdout
        described = json.loads(flow(env, tmp_path, "describe", made["id"], "--model", MODEL, "--vision-model", MODEL,
                                    "--json", *remote).stdout)
        assert described["describe"]["state"] == "finished" and described["description"]["title"]
        assert flow(env, tmp_path, "delete", made["id"], *remote).stdout.strip() == made["id"]
    finally:
        server.stop()

"""`flow bench`: the table a user pastes into an issue, timed for real on this machine."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
FLOW = str(Path(sys.executable).with_name("flow"))


@pytest.mark.slow
def test_flow_bench_times_engine_request_and_a_text_generation(tmp_path):
    sys.path.insert(0, str(ROOT / "tests" / "text"))
    from llm_tiny import build_tiny_llm

    build_tiny_llm(tmp_path / "models" / "local" / "tiny-llm")
    env = {**os.environ, "FLOW_MODELS_DIR": str(tmp_path / "models"), "FLOW_TEXT_MODEL": "tiny-llm",
           "FLOW_OUTPUT_DIR": str(tmp_path / "out"), "HF_HUB_OFFLINE": "1", "HOME": str(tmp_path)}
    done = subprocess.run([FLOW, "bench", "--json"], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=600)
    assert done.returncode == 0, done.stderr
    rows = {row["what"]: row for row in json.loads(done.stdout)}
    assert rows["device"]["result"] == "cpu" and rows["precision"]["result"] == "fp32"
    assert rows["torch"]["result"].startswith("2.13")
    assert rows["engine, 1000-node chain"]["result"].endswith("us/node")
    assert float(rows["cached request, POST /hello"]["result"].split()[0]) > 0
    text = rows["text (tiny-llm)"]
    assert text["result"].endswith(" s") and "s/token" in text["detail"] and "RSS (CPU)" in text["detail"]
    # models that are not here are skipped with the command that gets them, never downloaded
    assert rows["image"]["result"] == "skipped" and "flow pull hf:stabilityai/sd-turbo" in rows["image"]["detail"]
    assert not (tmp_path / "models" / "hf").exists() or not any((tmp_path / "models" / "hf").iterdir())
    assert not (tmp_path / "out").exists()  # outputs went to a temporary folder


def test_flow_bench_without_models_prints_a_markdown_table(tmp_path):
    env = {**os.environ, "FLOW_MODELS_DIR": str(tmp_path / "models"), "HOME": str(tmp_path),
           "FLOW_MODEL_DEVICE": "cpu"}
    done = subprocess.run([FLOW, "bench", "--no-models"], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.strip().splitlines()
    assert lines[0] == "| what | result | detail |" and any("cached request" in line for line in lines)
    assert not any(line.startswith("| image") for line in lines)

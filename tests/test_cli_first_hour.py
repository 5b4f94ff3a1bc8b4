"""The first hour with `flow`: validating saved workflows, hints that fit the command, near misses, progress."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from cli import main
from cli_run import Progress

ROOT = Path(__file__).resolve().parent.parent
SAVED = sorted((ROOT / "workflows").rglob("*.json"))


@pytest.fixture
def runner(tmp_path, monkeypatch):
    monkeypatch.setenv("FLOW_OUTPUT_DIR", str(tmp_path / "out"))
    monkeypatch.setenv("FLOW_WORKFLOWS_DIR", str(ROOT / "workflows"))
    monkeypatch.chdir(tmp_path)  # no .env of the checkout
    return CliRunner()


@pytest.mark.parametrize("path", SAVED, ids=[p.relative_to(ROOT / "workflows").as_posix() for p in SAVED])
def test_cli_validate_passes_every_saved_workflow_as_a_definition(runner, path):
    result = runner.invoke(main, ["validate", str(path)])
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith("ok: ") and "invalid" not in result.output


def test_cli_validate_lists_what_a_run_needs_without_failing(runner):
    result = runner.invoke(main, ["validate", str(ROOT / "workflows" / "text_edit.json")])
    assert result.exit_code == 0, result.output
    assert "needs: text, instruction" in result.stdout


def test_cli_validate_with_params_checks_the_run_missing_values_included(runner):
    result = runner.invoke(main, ["validate", str(ROOT / "workflows" / "text_gen.json"), "--param", "seed=1"])
    assert result.exit_code == 2
    assert "param 'prompt': required" in result.stderr and "--param prompt=VALUE" in result.stderr


def test_cli_endpoint_hint_names_the_subcommand_forms_not_param(runner):
    result = runner.invoke(main, ["text", "gen"])
    assert result.exit_code == 2
    assert "--prompt VALUE" in result.stderr and 'text gen "VALUE"' in result.stderr
    assert "--param" not in result.stderr


def test_cli_endpoint_hint_for_a_second_param_is_its_option(runner):
    result = runner.invoke(main, ["text", "edit", "some text"])
    assert result.exit_code == 2
    assert "--instruction VALUE" in result.stderr and "--param" not in result.stderr


@pytest.mark.parametrize("typed, nearest", [
    ("text-gen", "flow text gen"), ("text_gen", "flow text gen"), ("image-gen", "flow image gen"),
    ("valdate", "flow validate"),
])
def test_cli_unknown_command_suggests_the_nearest(runner, typed, nearest):
    result = runner.invoke(main, [typed])
    assert result.exit_code == 2
    assert f"did you mean `{nearest}`?" in result.output


def test_cli_unknown_command_far_from_all_says_only_no_such_command(runner):
    result = runner.invoke(main, ["xyzzy"])
    assert result.exit_code == 2 and "did you mean" not in result.output


def test_cli_endpoint_help_states_the_schema_constraints(runner):
    result = runner.invoke(main, ["video", "gen", "--help"])
    assert result.exit_code == 0, result.output
    assert "a multiple of 8; 16 to 1920" in " ".join(result.output.split())


def test_progress_line_shows_share_rate_and_time_left():
    now = [100.0]
    progress = Progress(enabled=True, clock=lambda: now[0])
    event = {"node": "gen", "node_type": "image.generate", "done": 0, "total": 30}
    assert progress.progress_line(event) == "  … gen (image.generate) 0/30 0%"
    now[0], event["done"] = 104.0, 10
    assert progress.progress_line(event) == "  … gen (image.generate) 10/30 33% 2.5/s 8s left"
    now[0], event["done"], event["message"] = 340.0, 20, "denoising"
    assert progress.progress_line(event) == "  … gen (image.generate) 20/30 67% 0.0833/s 2m00s left denoising"


def test_progress_line_without_total_shows_the_count_only():
    progress = Progress(enabled=True, clock=lambda: 5.0)
    assert progress.progress_line({"node": "n", "node_type": "t", "done": 3}) == "  … n (t) 3"

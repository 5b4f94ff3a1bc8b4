"""compose.yaml and .env.example: the schema, the GPU plumbing, health checks, documented variables."""

from __future__ import annotations

import hashlib
import json
import re
import subprocess
import sys
from dataclasses import fields

import pytest
from deploy_support import REPO

from deploy.config_checks import COMPOSE_GFX_OVERRIDE, COMPOSE_GROUP_IDS
from deploy.host import documented_variables, read_dotenv
from engine.settings import Settings

SCHEMA_DIR = REPO / "tests/deploy/compose-spec"
GPU_SERVICES = ("ollama", "flow")
CPU_SERVICES = ("ollama-cpu", "flow-cpu")
WORKER_SERVICES = ("redis", "worker")  # profile workers: tests/workers/test_compose_workers.py
# ${NAME}, ${NAME:-default}, ${NAME-default}, ${NAME:?err}; `$$` is a literal dollar
_INTERPOLATION = re.compile(r"(?<!\$)\$\{([A-Za-z_][A-Za-z0-9_]*)(?:(:?[-?+])([^}]*))?\}")


def _compose_text() -> str:
    """compose.yaml without its comment lines (Compose does not interpolate comments)."""
    lines = (REPO / "compose.yaml").read_text().splitlines()
    return "\n".join(line for line in lines if not line.lstrip().startswith("#"))


def _defaults(text: str) -> dict[str, str]:
    """Each interpolated variable's default in compose.yaml (all uses must agree)."""
    found: dict[str, set[str]] = {}
    for name, op, default in _INTERPOLATION.findall(text):
        if op in {"-", ":-"}:
            found.setdefault(name, set()).add(default)
    for name, values in found.items():
        assert len(values) == 1, f"{name} has several defaults in compose.yaml: {values}"
    return {name: values.pop() for name, values in found.items()}


def test_vendored_schema_is_the_one_recorded_in_source_md():
    digest = hashlib.sha256((SCHEMA_DIR / "compose-spec.json").read_bytes()).hexdigest()
    assert digest in (SCHEMA_DIR / "SOURCE.md").read_text()
    assert "Apache License" in (SCHEMA_DIR / "LICENSE").read_text()


def test_compose_validates_against_the_compose_specification(compose):
    import jsonschema

    schema = json.loads((SCHEMA_DIR / "compose-spec.json").read_text())
    validator = jsonschema.Draft202012Validator(schema)
    errors = [f"{e.json_path}: {e.message}" for e in validator.iter_errors(compose)]
    assert errors == []


def test_the_schema_check_catches_a_broken_service(compose):
    import copy

    import jsonschema

    broken = copy.deepcopy(compose)
    broken["services"]["flow"]["depends_on"]["ollama"]["condition"] = "service_ready"
    broken["services"]["flow"]["healthcheck"]["intervall"] = "5s"
    validator = jsonschema.Draft202012Validator(json.loads((SCHEMA_DIR / "compose-spec.json").read_text()))
    assert len(list(validator.iter_errors(broken))) >= 2


def test_profiles_split_the_gpu_and_cpu_stacks(compose):
    services = compose["services"]
    assert set(services) == {*GPU_SERVICES, *CPU_SERVICES, *WORKER_SERVICES}
    for name in GPU_SERVICES:
        assert services[name]["profiles"] == ["gpu"]
    for name in CPU_SERVICES:
        assert services[name]["profiles"] == ["cpu"]
        assert "devices" not in services[name] and "group_add" not in services[name]
        assert "HSA_OVERRIDE_GFX_VERSION" not in services[name].get("environment", {})


@pytest.mark.parametrize("name", GPU_SERVICES)
def test_gpu_services_get_the_devices_groups_and_override(compose, name):
    service = compose["services"][name]
    assert service["devices"] == ["/dev/kfd", "/dev/dri"]
    assert service["group_add"] == ["${VIDEO_GID:-44}", "${RENDER_GID:-109}"]
    assert service["environment"]["HSA_OVERRIDE_GFX_VERSION"] == "${HSA_OVERRIDE_GFX_VERSION-10.3.0}"


def test_doctor_knows_compose_defaults():
    defaults = _defaults(_compose_text())
    assert defaults["HSA_OVERRIDE_GFX_VERSION"] == COMPOSE_GFX_OVERRIDE
    assert {"video": int(defaults["VIDEO_GID"]), "render": int(defaults["RENDER_GID"])} == COMPOSE_GROUP_IDS


@pytest.mark.parametrize("name", [*GPU_SERVICES, *CPU_SERVICES])
def test_every_service_has_volumes_a_health_check_and_the_network(compose, name):
    service = compose["services"][name]
    assert service["volumes"], name
    assert service["healthcheck"]["test"][0] == "CMD"
    assert {"interval", "timeout", "retries", "start_period"} <= set(service["healthcheck"])
    assert list(service["networks"]) == ["flow"]
    assert service["restart"] == "unless-stopped"
    for volume in service["volumes"]:
        assert volume.split(":")[0] in compose["volumes"], volume


@pytest.mark.parametrize("name, ollama", [("flow", "ollama"), ("flow-cpu", "ollama-cpu")])
def test_flow_starts_after_ollama_is_healthy_and_finds_it_by_name(compose, name, ollama):
    services = compose["services"]
    flow = services[name]
    assert flow["depends_on"] == {ollama: {"condition": "service_healthy"}}
    assert flow["environment"]["FLOW_OLLAMA_URL"] == "http://ollama:11434"
    # reachable as `ollama` in both profiles: by its service name, or by a network alias
    if ollama != "ollama":
        assert services[ollama]["networks"]["flow"]["aliases"] == ["ollama"]


@pytest.mark.parametrize("name", ["flow", "flow-cpu"])
def test_flow_serves_the_gateway_with_its_data_on_volumes(compose, name):
    flow = compose["services"][name]
    assert flow["command"] == ["flow", "serve", "--host", "0.0.0.0", "--port", "8000"]
    assert flow["ports"] == ["${GATEWAY_BIND:-127.0.0.1}:${GATEWAY_PORT:-8000}:8000"]
    targets = {v.split(":")[1] for v in flow["volumes"]}
    assert targets == {"/data/models", "/data/outputs", "/data/db"}
    env = flow["environment"]
    assert env["FLOW_MODELS_DIR"] == "/data/models" and env["FLOW_OUTPUT_DIR"] == "/data/outputs"
    assert env["FLOW_JOBS_DB"].startswith("/data/db/")
    assert flow["env_file"] == [{"path": ".env", "required": False}]


def test_ollama_keeps_its_models_on_a_volume_and_is_pinned(compose):
    for name in ("ollama", "ollama-cpu"):
        ollama = compose["services"][name]
        assert ollama["volumes"] == ["ollama-models:/root/.ollama"]
        assert ollama["healthcheck"]["test"] == ["CMD", "ollama", "list"]
        assert ":latest" not in ollama["image"] and "${OLLAMA_VERSION:-" in ollama["image"]
    assert compose["services"]["ollama"]["image"].endswith("-rocm")


def _run_health_check(command: list[str], url: str) -> int:
    assert command[:2] == ["CMD", "python3"]
    code = command[-1].replace("http://127.0.0.1:8000", url)
    return subprocess.run([sys.executable, *command[2:-1], code], capture_output=True, timeout=30).returncode


def test_flow_health_check_command_asks_the_gateway_for_health(compose, ollama_server, closed_port_url):
    command = compose["services"]["flow"]["healthcheck"]["test"]
    assert "http://127.0.0.1:8000/health" in command[-1]
    # the test server answers 404 on /health: unhealthy; pointed at /api/tags (200): healthy
    assert _run_health_check(command, ollama_server.url) != 0
    assert _run_health_check([*command[:-1], command[-1].replace("/health", "/api/tags")], ollama_server.url) == 0
    assert _run_health_check(command, closed_port_url) != 0


# ---- .env.example ----


def _entries(example: str) -> list[tuple[int, str]]:
    lines = example.splitlines()
    return [(i, m.group(1)) for i, line in enumerate(lines)
            if (m := re.match(r"^#?\s*([A-Z][A-Z0-9_]*)=", line))]


def test_every_compose_variable_is_documented(env_example):
    used = set(_INTERPOLATION.findall(_compose_text()))
    names = {name for name, _, _ in used}
    assert names, "compose.yaml interpolates nothing?"
    assert names - documented_variables(env_example) == set()


def test_every_setting_is_documented(env_example):
    names = {f"FLOW_{f.name.upper()}" for f in fields(Settings)}
    assert names - documented_variables(env_example) == set()


def test_every_documented_flow_variable_is_a_setting(env_example):
    settings = {f"FLOW_{f.name.upper()}" for f in fields(Settings)}
    documented = {name for _, name in _entries(env_example) if name.startswith("FLOW_")}
    assert len(documented) >= 20, documented
    assert documented - settings == set()  # flow reads no FLOW_ variable that is not a setting


def test_every_documented_variable_has_a_comment_above(env_example):
    lines = env_example.splitlines()
    entries = _entries(env_example)
    assert len(entries) >= 30
    for index, name in entries:
        above = lines[index - 1]
        assert above.startswith("#") and not re.match(r"^#\s*[A-Z][A-Z0-9_]*=", above), name


def test_example_defaults_agree_with_compose(env_example):
    example = dict(re.findall(r"^([A-Z][A-Z0-9_]*)=(.*)$", env_example, re.M))
    for name, default in _defaults(_compose_text()).items():
        assert example[name] == default, name


def test_example_values_parse_as_settings(env_example, tmp_path):
    env = tmp_path / ".env"
    env.write_text(env_example)
    settings = Settings.from_env(read_dotenv(env))
    assert settings.gpu_reserve_bytes == 2 << 30 and settings.ollama_url == ""  # no Ollama until the user names one

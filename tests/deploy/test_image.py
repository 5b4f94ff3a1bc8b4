"""The Dockerfile, its build-time pins (docker/pins.py), the entry point and .dockerignore."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
import tomllib

import pytest
from deploy_support import REPO

sys.path.insert(0, str(REPO / "docker"))
import pins  # noqa: E402  (docker/ is not a package: the Dockerfile runs it as a script)

DOCKERFILE = (REPO / "Dockerfile").read_text()


def _instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with line continuations joined and comments dropped."""
    text = re.sub(r"\\\n", " ", "\n".join(l for l in DOCKERFILE.splitlines() if not l.lstrip().startswith("#")))
    return [(m.group(1).upper(), m.group(2).strip())
            for m in re.finditer(r"^\s*([A-Za-z]+)\s+(.*)$", text, re.M)]


def _compose_env_default(name: str) -> str:
    return re.search(rf"\${{{name}:-([^}}]+)}}", (REPO / "compose.yaml").read_text()).group(1)


def test_dockerfile_builds_from_a_pinned_rocm_pytorch_base():
    steps = _instructions()
    base = dict(a.split("=", 1) for kind, a in steps if kind == "ARG" and "=" in a)["BASE_IMAGE"]
    assert re.fullmatch(r"rocm/pytorch:rocm[\d.]+_ubuntu[\d.]+_py3\.\d+_pytorch_release_[\d.]+", base), base
    assert [a for kind, a in steps if kind == "FROM"] == ["${BASE_IMAGE}"]
    assert _compose_env_default("ROCM_PYTORCH_IMAGE") == base
    assert re.search(rf"^ROCM_PYTORCH_IMAGE={re.escape(base)}$", (REPO / ".env.example").read_text(), re.M)


def test_dockerfile_never_installs_an_unpinned_torch():
    runs = " ".join(a for kind, a in _instructions() if kind == "RUN")
    installs = re.findall(r"pip install ([^&;]*)", runs)
    assert installs
    for args in installs:
        assert " -c " in f" {args} " or "--index-url" in args, args
        assert not re.search(r"(?<![\w\"=])torch(?![\w=])", args), args
    # the only direct torch install is the pinned CPU wheel, from the index the cpu profile gives
    assert '"torch==$(sed -n \'s/^torch==//p\' constraints.txt)"' in runs


def test_dockerfile_runs_the_gateway_like_compose(compose):
    steps = dict(_instructions())
    assert steps["CMD"] == '["flow", "serve", "--host", "0.0.0.0", "--port", "8000"]'
    assert steps["EXPOSE"] == "8000"
    assert steps["ENTRYPOINT"] == '["/app/docker/entrypoint.sh"]'
    assert "/health" in steps["HEALTHCHECK"]
    assert os.access(REPO / "docker/entrypoint.sh", os.X_OK)
    cpu_args = compose["services"]["flow-cpu"]["build"]["args"]
    assert cpu_args["TORCH_INDEX_URL"] == "https://download.pytorch.org/whl/cpu"


def test_dockerignore_keeps_secrets_and_local_state_out():
    ignored = (REPO / ".dockerignore").read_text().splitlines()
    for entry in (".env", ".venv", ".git", "outputs"):
        assert entry in ignored
    assert "!.env.example" in ignored
    for needed in ("docker", "engine", "nodes", "workflows", "pyproject.toml", "constraints.txt", "cli.py"):
        assert needed not in ignored


# ---- docker/pins.py ----

PYPROJECT = {"project": {"dependencies": ["click==8.5.1", "jsonschema==4.26.0"],
                         "optional-dependencies": {"models": ["torch==2.13.0", "diffusers==0.99.0"]}}}
CONSTRAINTS = "# pins\ntorch==2.13.0\nattrs==26.1.0\nTorchVision==0.28.0\n"


def test_pins_replace_the_torch_family_with_what_the_image_has():
    installed = {"torch": "2.6.0+rocm6.4.3.git2fb0ac2b", "torchvision": "0.21.0+rocm6.4.3"}
    constraints, requirements = pins.pins(CONSTRAINTS, PYPROJECT, installed)
    assert constraints.splitlines() == ["# pins", "attrs==26.1.0", "torch==2.6.0+rocm6.4.3.git2fb0ac2b",
                                        "torchvision==0.21.0+rocm6.4.3"]
    assert requirements.splitlines() == ["click==8.5.1", "jsonschema==4.26.0", "diffusers==0.99.0",
                                         "torch==2.6.0+rocm6.4.3.git2fb0ac2b", "torchvision==0.21.0+rocm6.4.3"]


def test_pins_refuse_an_image_without_torch():
    with pytest.raises(ValueError, match="no torch in the base image"):
        pins.pins(CONSTRAINTS, PYPROJECT, {})


def test_pins_script_on_the_real_project_files(tmp_path):
    out_c, out_r = tmp_path / "c.txt", tmp_path / "r.txt"
    done = subprocess.run([sys.executable, str(REPO / "docker/pins.py"), "--constraints", str(REPO / "constraints.txt"),
                           "--pyproject", str(REPO / "pyproject.toml"), "--out-constraints", str(out_c),
                           "--out-requirements", str(out_r)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    import importlib.metadata

    torch = importlib.metadata.version("torch")
    assert f"torch=={torch}" in out_c.read_text().splitlines()
    requirements = out_r.read_text().splitlines()
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    for requirement in project["dependencies"]:
        assert requirement in requirements
    assert [r for r in requirements if pins.requirement_name(r) == "torch"] == [f"torch=={torch}"]


# ---- docker/entrypoint.sh ----


def _entrypoint(tmp_path, fake_bin, pull_on_start: str, *command: str):
    env = {"PATH": f"{fake_bin.path}:/usr/bin:/bin", "PULL_ON_START": pull_on_start,
           "PULL_MARKER": str(tmp_path / "marker")}
    return subprocess.run(["sh", str(REPO / "docker/entrypoint.sh"), *command], env=env,
                          capture_output=True, text=True, timeout=30)


def _wait_for(path, seconds=10.0):
    deadline = time.monotonic() + seconds
    while not path.exists() and time.monotonic() < deadline:
        time.sleep(0.02)
    return path.exists()


@pytest.fixture
def fake_flow(fake_bin, tmp_path):
    log = tmp_path / "flow.log"
    fake_bin("flow", f'echo "$*" >> {log}\n[ "$2" != "bad:model" ]\n')
    return log


def test_entrypoint_runs_the_command_and_pulls_nothing_by_default(tmp_path, fake_bin, fake_flow):
    done = _entrypoint(tmp_path, fake_bin, "", "echo", "serving")
    assert done.returncode == 0 and done.stdout.strip() == "serving"
    assert not fake_flow.exists() and not (tmp_path / "marker").exists()


def test_entrypoint_pulls_the_listed_models_once(tmp_path, fake_bin, fake_flow):
    done = _entrypoint(tmp_path, fake_bin, "ollama:llama3.2, hf:stabilityai/sd-turbo", "true")
    assert done.returncode == 0
    assert _wait_for(tmp_path / "marker")
    assert fake_flow.read_text().splitlines() == ["pull ollama:llama3.2", "pull hf:stabilityai/sd-turbo"]
    _entrypoint(tmp_path, fake_bin, "ollama:llama3.2 hf:stabilityai/sd-turbo", "true")
    time.sleep(0.3)  # a second start would have pulled by now
    assert len(fake_flow.read_text().splitlines()) == 2


def test_entrypoint_retries_after_a_failed_pull(tmp_path, fake_bin, fake_flow):
    _entrypoint(tmp_path, fake_bin, "bad:model", "true")
    deadline = time.monotonic() + 10
    while not fake_flow.exists() and time.monotonic() < deadline:
        time.sleep(0.02)
    time.sleep(0.2)
    assert fake_flow.read_text().splitlines() == ["pull bad:model"]
    assert not (tmp_path / "marker").exists()


def test_the_package_list_ships_every_python_package():
    # a wheel (pip install .) ships only the listed packages: a folder missing here is missing there
    listed = set(tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    found = {".".join(p.parent.relative_to(REPO).parts) for top in ("engine", "nodes", "gateway")
             for p in (REPO / top).rglob("__init__.py") if "__pycache__" not in p.parts}
    assert found - listed == set()


def test_the_image_serves_the_web_page_and_workflows_from_the_source_tree():
    # the gateway reads web/ and workflows/ beside its code: the image installs flow editable
    runs = " ".join(a for kind, a in _instructions() if kind == "RUN")
    assert re.search(r"pip install -c \S+ -e \.", runs), runs
    ignored = (REPO / ".dockerignore").read_text().split()
    assert "web" not in ignored and "workflows" not in ignored

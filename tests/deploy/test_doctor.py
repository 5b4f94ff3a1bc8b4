"""`flow doctor`: every check's outcomes on fake hosts (real files, real programs, a real server)."""

from __future__ import annotations

import json
import os

import pytest
from deploy_support import REPO, ROCMINFO_6750XT, add_docker

from deploy import config_checks, doctor, host_checks
from deploy.host import (
    Account, Commands, Gpu, documented_variables, gpus_from_rocminfo, gpus_from_sysfs, read_dotenv,
)
from deploy.verdict import Status
from engine.models.sizes import GiB
from engine.settings import Settings

ALICE = Account("alice", 1000, frozenset({"alice", "video", "render"}))
RX6750XT = Gpu("gfx1031", "AMD Radeon RX 6750 XT", 12 * GiB)
GROUPS = """\
    root:x:0:
    video:x:44:alice
    render:x:992:alice
    alice:x:1000:
"""


def no_hip():
    return None


# ---- docker and compose ----


def test_check_docker_passes_with_the_docker_cli(fake_bin):
    add_docker(fake_bin)
    check = host_checks.check_docker(Commands(fake_bin.path), inside_container=False)
    assert check.status is Status.PASS and "28.2.2" in check.message


def test_check_docker_fails_without_docker(fake_bin):
    check = host_checks.check_docker(Commands(fake_bin.path), inside_container=False)
    assert check.status is Status.FAIL and "docs.docker.com" in check.fix


def test_check_docker_is_not_needed_inside_a_container(fake_bin):
    assert host_checks.check_docker(Commands(fake_bin.path), inside_container=True).status is Status.PASS


@pytest.mark.parametrize("version, status", [("2.29.1", Status.PASS), ("v2.24.0", Status.PASS),
                                             ("2.20.3", Status.WARN)])
def test_check_compose_judges_the_plugin_version(fake_bin, version, status):
    add_docker(fake_bin, compose_version=version)
    assert host_checks.check_compose(Commands(fake_bin.path), inside_container=False).status is status


def test_check_compose_fails_with_only_compose_v1(fake_bin):
    add_docker(fake_bin, compose_version=None)
    fake_bin("docker-compose", 'echo "docker-compose version 1.29.2"\n')
    check = host_checks.check_compose(Commands(fake_bin.path), inside_container=False)
    assert check.status is Status.FAIL
    assert "v1" in check.message and "docker-compose-plugin" in check.fix


@pytest.mark.parametrize("daemon, status", [(True, Status.PASS), (False, Status.WARN)])
def test_check_docker_engine_reports_the_daemon(fake_bin, daemon, status):
    add_docker(fake_bin, daemon=daemon)
    check = host_checks.check_docker_engine(Commands(fake_bin.path), inside_container=False)
    assert check.status is status
    if not daemon:
        assert "Cannot connect" in check.message and "usermod -aG docker" in check.fix


def test_commands_report_a_hanging_program_as_timed_out(fake_bin):
    fake_bin("slow", "sleep 5\n")
    assert Commands(fake_bin.path, timeout=0.2).run("slow").returncode == 124


# ---- ROCm, the GPU and its override ----


def test_check_rocm_passes_when_rocminfo_runs(fake_bin, host):
    fake_bin("rocminfo", f"cat <<'EOF'\n{ROCMINFO_6750XT}EOF\n")
    host.rocm_version("6.4.3")
    check = host_checks.check_rocm(Commands(fake_bin.path), host.root, no_hip, gpu=True)
    assert check.status is Status.PASS and "6.4.3" in check.message


@pytest.mark.parametrize("gpu, status", [(True, Status.FAIL), (False, Status.WARN)])
def test_check_rocm_reports_a_broken_rocminfo(fake_bin, host, gpu, status):
    fake_bin("rocminfo", 'echo "hsa api call failure at: /dev/kfd: Permission denied" >&2\nexit 1\n')
    check = host_checks.check_rocm(Commands(fake_bin.path), host.root, no_hip, gpu=gpu)
    assert check.status is status and "Permission denied" in check.message


def test_check_rocm_accepts_a_rocm_build_of_torch(fake_bin, host):
    check = host_checks.check_rocm(Commands(fake_bin.path), host.root, lambda: "6.4.43482", gpu=True)
    assert check.status is Status.PASS and "6.4.43482" in check.message


def test_check_rocm_warns_when_the_host_has_no_rocm_tools(fake_bin, host):
    check = host_checks.check_rocm(Commands(fake_bin.path), host.root, no_hip, gpu=True)
    assert check.status is Status.WARN and "rocminfo" in check.fix


@pytest.mark.parametrize("target, gfx", [(100301, "gfx1031"), (100300, "gfx1030"), (110000, "gfx1100"),
                                         (90010, "gfx90a"), (90012, "gfx90c")])
def test_gpus_from_sysfs_names_the_isa(host, target, gfx):
    host.gpu(target=target)
    assert [g.gfx for g in gpus_from_sysfs(host.root)] == [gfx]


def test_gpus_from_sysfs_reads_vram_and_skips_cpu_nodes(host):
    host.gpu(vram=12 * GiB)
    assert gpus_from_sysfs(host.root) == [Gpu("gfx1031", "", 12 * GiB)]


def test_gpus_from_sysfs_is_empty_without_the_driver(host):
    assert gpus_from_sysfs(host.root) == []


def test_gpus_from_rocminfo_lists_gpu_agents_only():
    assert gpus_from_rocminfo(ROCMINFO_6750XT) == [Gpu("gfx1031", "AMD Radeon RX 6750 XT")]


@pytest.mark.parametrize("gpu, status", [(True, Status.FAIL), (False, Status.PASS)])
def test_check_gpu_without_a_card(gpu, status):
    check = host_checks.check_gpu([], gpu=gpu)
    assert check.status is status
    assert ("COMPOSE_PROFILES=cpu" in check.fix) is gpu


def test_check_gpu_describes_the_card():
    check = host_checks.check_gpu([RX6750XT], gpu=True)
    assert check.status is Status.PASS
    assert check.message == "gfx1031 (AMD Radeon RX 6750 XT), 12.0 GiB"
    assert check.details["gpus"][0]["vram_bytes"] == 12 * GiB


@pytest.mark.parametrize("gfx, env, status", [
    ("gfx1031", {"HSA_OVERRIDE_GFX_VERSION": "10.3.0"}, Status.PASS),
    ("gfx1031", {}, Status.PASS),  # compose.yaml's default applies
    ("gfx1031", {"HSA_OVERRIDE_GFX_VERSION": ""}, Status.FAIL),
    ("gfx1031", {"HSA_OVERRIDE_GFX_VERSION": "11.0.0"}, Status.FAIL),
    ("gfx1102", {"HSA_OVERRIDE_GFX_VERSION": "11.0.0"}, Status.PASS),
    ("gfx1100", {"HSA_OVERRIDE_GFX_VERSION": ""}, Status.PASS),
    ("gfx1100", {}, Status.WARN),  # compose.yaml's 10.3.0 reaches a card that needs none
])
def test_check_gfx_override_fits_the_card(gfx, env, status):
    check = config_checks.check_gfx_override([Gpu(gfx)], env)
    assert check.status is status
    if status is Status.FAIL:
        assert "HSA_OVERRIDE_GFX_VERSION=10.3.0" in check.fix


def test_check_gfx_override_without_a_gpu_passes():
    assert config_checks.check_gfx_override([], {}).status is Status.PASS


# ---- groups and devices ----


def test_check_groups_passes_for_a_member(host):
    host.groups(GROUPS)
    assert host_checks.check_groups(ALICE, host.root / "etc/group", gpu=True).status is Status.PASS


@pytest.mark.parametrize("gpu, status", [(True, Status.FAIL), (False, Status.WARN)])
def test_check_groups_reports_a_missing_membership(host, gpu, status):
    host.groups(GROUPS.replace("render:x:992:alice", "render:x:992:"))
    bob = Account("alice", 1000, frozenset({"alice", "video"}))
    check = host_checks.check_groups(bob, host.root / "etc/group", gpu=gpu)
    assert check.status is status
    assert "render" in check.message and "usermod -aG video,render alice" in check.fix


def test_check_groups_asks_to_log_in_again_after_usermod(host):
    host.groups(GROUPS)
    stale = Account("alice", 1000, frozenset({"alice"}))
    check = host_checks.check_groups(stale, host.root / "etc/group", gpu=True)
    assert check.status is Status.WARN and "log out" in check.fix


def test_check_groups_passes_for_root(host):
    host.groups(GROUPS)
    assert host_checks.check_groups(Account("root", 0, frozenset({"root"})), host.root / "etc/group", True).status is Status.PASS


def test_check_groups_accepts_a_host_without_a_render_group(host):
    host.groups("video:x:44:alice\n")
    check = host_checks.check_groups(Account("alice", 1000, frozenset({"video"})), host.root / "etc/group", True)
    assert check.status is Status.PASS and "no render group" in check.message


@pytest.mark.parametrize("env, status", [({}, Status.WARN), ({"RENDER_GID": "992"}, Status.PASS),
                                         ({"RENDER_GID": "992", "VIDEO_GID": "45"}, Status.WARN)])
def test_check_group_ids_compares_env_with_the_host(host, env, status):
    host.groups(GROUPS)
    check = config_checks.check_group_ids(host.root / "etc/group", env)
    assert check.status is status
    if status is Status.WARN and "RENDER_GID" not in env:
        assert "RENDER_GID=992" in check.fix


def test_check_devices_passes_with_kfd_and_a_render_node(host):
    host.devices()
    check = host_checks.check_devices(host.root / "dev", gpu=True)
    assert check.status is Status.PASS and "renderD128" in check.message


@pytest.mark.parametrize("kfd, renders, missing", [(False, (128,), "kfd"), (True, (), "renderD*")])
def test_check_devices_fails_when_a_device_is_missing(host, kfd, renders, missing):
    host.devices(kfd=kfd, renders=renders)
    check = host_checks.check_devices(host.root / "dev", gpu=True)
    assert check.status is Status.FAIL and missing in check.message and "amdgpu" in check.fix
    assert host_checks.check_devices(host.root / "dev", gpu=False).status is Status.PASS


def test_check_devices_fails_when_access_is_denied(host):
    host.devices()
    kfd = str(host.root / "dev/kfd")
    # tests run as root here, which bypasses file modes: the access predicate stands in for them
    check = host_checks.check_devices(host.root / "dev", gpu=True, access=lambda path, mode: path != kfd)
    assert check.status is Status.FAIL and kfd in check.message and "usermod" in check.fix


# ---- .env, Ollama, disk, budgets ----


def test_check_env_file_warns_when_missing(tmp_path):
    check = config_checks.check_env_file(tmp_path / ".env", REPO / ".env.example", Settings, {})
    assert check.status is Status.WARN and check.fix.startswith("cp .env.example .env")


def test_check_env_file_passes_for_the_example(tmp_path):
    env = tmp_path / ".env"
    env.write_text((REPO / ".env.example").read_text())
    assert config_checks.check_env_file(env, REPO / ".env.example", Settings, {}).status is Status.PASS


def test_check_env_file_fails_on_a_value_that_does_not_parse(tmp_path):
    env = tmp_path / ".env"
    env.write_text("FLOW_WORKERS=four\n")
    check = config_checks.check_env_file(env, REPO / ".env.example", Settings, {})
    assert check.status is Status.FAIL and "FLOW_WORKERS" in check.message


def test_check_env_file_warns_on_an_unknown_flow_variable(tmp_path):
    env = tmp_path / ".env"
    env.write_text("FLOW_WORKER=2\nFLOW_API_TOKEN=secret\nSOMETHING_ELSE=1\n")
    check = config_checks.check_env_file(env, REPO / ".env.example", Settings, {})
    assert check.status is Status.WARN and "FLOW_WORKER" in check.message
    assert "FLOW_API_TOKEN" not in check.message  # a setting, documented in .env.example


def test_check_ollama_lists_the_models(ollama_server):
    ollama_server.models = ["llama3.2:latest", "qwen2.5:7b"]
    check = config_checks.check_ollama(ollama_server.url)
    assert check.status is Status.PASS
    assert check.details["models"] == ["llama3.2:latest", "qwen2.5:7b"]
    assert ollama_server.requests == ["/api/tags"]


def test_check_ollama_without_models_says_how_to_pull(ollama_server):
    ollama_server.models = []
    check = config_checks.check_ollama(ollama_server.url + "/")
    assert check.status is Status.WARN and check.fix == "docker compose exec ollama ollama pull llama3.2"


def test_check_ollama_warns_when_nothing_listens(closed_port_url):
    check = config_checks.check_ollama(closed_port_url, timeout=1.0)
    assert check.status is Status.WARN and "not reachable" in check.message
    assert "docker compose up -d ollama" in check.fix


def test_check_ollama_notices_a_server_that_is_not_ollama(ollama_server):
    ollama_server.mode = "html"
    check = config_checks.check_ollama(ollama_server.url)
    assert check.status is Status.WARN and "not like an Ollama server" in check.message


@pytest.mark.parametrize("need, want, status", [(0, 0, Status.PASS), (0, 1 << 60, Status.WARN),
                                                (1 << 60, 1 << 60, Status.FAIL)])
def test_check_disk_compares_free_space_with_thresholds(tmp_path, need, want, status):
    check = host_checks.check_disk(tmp_path / "not/yet/created", need_bytes=need, want_bytes=want)
    assert check.status is status
    assert check.details["free_bytes"] > 0


@pytest.mark.parametrize("changes, mem, status, words", [
    ({}, 32 * GiB, Status.PASS, "GPU budget 10.0 GiB of 12.0 GiB"),
    ({"gpu_budget_bytes": 16 * GiB}, 32 * GiB, Status.FAIL, "more than the card"),
    ({"gpu_budget_bytes": 11 * GiB}, 32 * GiB, Status.WARN, "less than the reserve"),
    ({"gpu_reserve_bytes": 12 * GiB}, 32 * GiB, Status.FAIL, "leaves nothing"),
    ({"cpu_budget_bytes": 40 * GiB}, 32 * GiB, Status.FAIL, "more than this machine"),
    ({"cpu_budget_bytes": 28 * GiB}, 32 * GiB, Status.WARN, "over 3/4"),
])
def test_check_budgets_fit_the_card_and_the_ram(changes, mem, status, words):
    check = config_checks.check_budgets(Settings().with_(**changes), [RX6750XT], mem)
    assert check.status is status and words in check.message


def test_check_budgets_without_a_gpu_is_accounting_only():
    check = config_checks.check_budgets(Settings().with_(gpu_budget_bytes=64 * GiB), [], None)
    assert check.status is Status.PASS and "accounting only" in check.message


@pytest.mark.parametrize("profiles, gpu", [("", True), ("gpu", True), ("cpu", False), ("cpu,gpu", True)])
def test_wants_gpu_follows_compose_profiles(profiles, gpu):
    assert config_checks.wants_gpu({"COMPOSE_PROFILES": profiles}) is gpu


def test_read_dotenv_reads_compose_style_lines(tmp_path):
    env = tmp_path / ".env"
    env.write_text('# note\nA=1\nexport B="two words"\nC=3 # trailing\nD=\'#not a comment\'\nE=\n\n')
    assert read_dotenv(env) == {"A": "1", "B": "two words", "C": "3", "D": "#not a comment", "E": ""}


def test_documented_variables_counts_set_and_commented_ones():
    assert documented_variables("# note\nA=1\n# B=2\n#C=\nnot=this\n") == {"A", "B", "C"}


# ---- the whole run, and the CLI ----


def _ready_host(host, fake_bin, tmp_path, ollama_url, override="10.3.0"):
    host.gpu().devices().groups(GROUPS).meminfo().rocm_version()
    add_docker(fake_bin)
    fake_bin("rocminfo", f"cat <<'EOF'\n{ROCMINFO_6750XT}EOF\n")
    env = tmp_path / ".env"
    env.write_text(f"COMPOSE_PROFILES=gpu\nHSA_OVERRIDE_GFX_VERSION={override}\nRENDER_GID=992\n"
                   f"FLOW_OLLAMA_URL={ollama_url}\nFLOW_MODELS_DIR={tmp_path / 'models'}\n")
    return env


def test_diagnose_a_ready_host_passes(host, fake_bin, tmp_path, ollama_server):
    env = _ready_host(host, fake_bin, tmp_path, ollama_server.url)
    report = doctor.diagnose({"PATH": fake_bin.path}, root=host.root, account=ALICE, env_file=env,
                             example_file=REPO / ".env.example", hip_version=no_hip)
    statuses = {c.name: c.status for c in report.checks}
    assert report.ok, doctor.render(report)
    assert all(s is Status.PASS for n, s in statuses.items() if n != "disk"), statuses
    gpu = next(c for c in report.checks if c.name == "gpu")
    assert gpu.message == "gfx1031 (AMD Radeon RX 6750 XT), 12.0 GiB"  # sysfs memory, rocminfo name
    assert {c.name for c in report.checks} == {
        "docker", "compose", "docker_engine", "rocm", "gpu", "gfx_override", "groups", "group_ids",
        "devices", "env_file", "ollama", "disk", "budgets", "broker"}


def test_diagnose_fails_on_a_wrong_override_and_renders_the_fix(host, fake_bin, tmp_path, ollama_server):
    env = _ready_host(host, fake_bin, tmp_path, ollama_server.url, override="")
    report = doctor.diagnose({"PATH": fake_bin.path}, root=host.root, account=ALICE, env_file=env,
                             example_file=REPO / ".env.example", hip_version=no_hip)
    assert not report.ok
    text = doctor.render(report)
    assert "[FAIL] gfx_override" in text and "fix: set HSA_OVERRIDE_GFX_VERSION=10.3.0 in .env" in text
    assert text.splitlines()[-1].endswith("not ready")


def test_diagnose_the_shell_environment_wins_over_dotenv(host, fake_bin, tmp_path, ollama_server):
    env = _ready_host(host, fake_bin, tmp_path, ollama_server.url, override="")
    report = doctor.diagnose({"PATH": fake_bin.path, "HSA_OVERRIDE_GFX_VERSION": "10.3.0"}, root=host.root,
                             account=ALICE, env_file=env, hip_version=no_hip)
    assert report.ok, doctor.render(report)


def _invoke(args, env):
    from click.testing import CliRunner

    from cli import main

    return CliRunner().invoke(main, ["doctor", *args], env=env, catch_exceptions=False)


def test_cli_doctor_json_shape_and_exit_zero(tmp_path, fake_bin, ollama_server):
    add_docker(fake_bin)
    env = tmp_path / ".env"
    env.write_text(f"FLOW_OLLAMA_URL={ollama_server.url}\nFLOW_MODELS_DIR={tmp_path}\n")
    result = _invoke(["--json", "--profile", "cpu", "--env-file", str(env)], {"PATH": fake_bin.path})
    body = json.loads(result.output)
    assert result.exit_code == 0, result.output
    assert body["ok"] is True
    for check in body["checks"]:
        assert set(check) == {"name", "status", "message", "fix", "details"}
        assert check["status"] in {"pass", "warn", "fail"}
    by_name = {c["name"]: c for c in body["checks"]}
    assert by_name["ollama"]["details"]["models"] == ["llama3.2:latest"]


def test_cli_doctor_exits_non_zero_when_a_check_fails(tmp_path, fake_bin, closed_port_url):
    add_docker(fake_bin)
    env = tmp_path / ".env"
    env.write_text(f"FLOW_WORKERS=many\nFLOW_OLLAMA_URL={closed_port_url}\n")
    result = _invoke(["--profile", "cpu", "--env-file", str(env)], {"PATH": fake_bin.path})
    assert result.exit_code == 1
    assert "[FAIL] env_file" in result.output and "FLOW_WORKERS" in result.output


@pytest.mark.skipif(os.path.exists("/dev/kfd"), reason="this machine has an AMD GPU driver")
def test_cli_doctor_gpu_profile_fails_on_a_machine_without_an_amd_gpu(tmp_path, fake_bin, closed_port_url):
    add_docker(fake_bin)
    env = tmp_path / ".env"
    env.write_text(f"FLOW_OLLAMA_URL={closed_port_url}\nFLOW_MODELS_DIR={tmp_path}\n")
    result = _invoke(["--json", "--profile", "gpu", "--env-file", str(env)], {"PATH": fake_bin.path})
    assert result.exit_code == 1
    failed = {c["name"] for c in json.loads(result.output)["checks"] if c["status"] == "fail"}
    assert {"gpu", "devices"} <= failed

"""Model references: valid forms parse to one canonical text; hostile ones are refused without touching disk."""

from __future__ import annotations

import os
import sys

import pytest

from engine.errors import InvalidModelRef
from engine.models import ModelRef, parse_ref


@pytest.mark.parametrize("text, expected", [
    ("hf:stabilityai/sd-turbo", ModelRef("hf", "stabilityai/sd-turbo")),
    ("hf:Wan-AI/Wan2.1-T2V-1.3B-Diffusers@main", ModelRef("hf", "Wan-AI/Wan2.1-T2V-1.3B-Diffusers", "main")),
    ("hf:facebook/musicgen-small@refs/pr/1", ModelRef("hf", "facebook/musicgen-small", "refs/pr/1")),
    ("HF:org/name@" + "a" * 40, ModelRef("hf", "org/name", "a" * 40)),
    ("ollama:llama3.2", ModelRef("ollama", "llama3.2", "latest")),
    ("ollama:qwen2.5:7b", ModelRef("ollama", "qwen2.5", "7b")),
    ("ollama:library/llama3.2:latest", ModelRef("ollama", "library/llama3.2", "latest")),
])
def test_refs_parse_valid_forms(text, expected):
    ref = parse_ref(text)
    assert ref == expected
    assert parse_ref(str(ref)) == ref  # the canonical text parses back to the same reference


def test_refs_local_folder_under_a_root(tmp_path):
    root = tmp_path / "local"
    (root / "tiny-sd").mkdir(parents=True)
    by_name = parse_ref("tiny-sd", [root])
    assert by_name.source == "local" and by_name.path == (root / "tiny-sd").resolve()
    assert parse_ref(str(root / "tiny-sd"), [root]) == by_name
    with pytest.raises(InvalidModelRef, match="no model folder 'missing'"):
        parse_ref("missing", [root])


def test_refs_symlink_out_of_a_root_is_refused(tmp_path):
    root, outside = tmp_path / "local", tmp_path / "secret"
    root.mkdir()
    outside.mkdir()
    (root / "escape").symlink_to(outside)
    with pytest.raises(InvalidModelRef, match="symlink"):
        parse_ref("escape", [root])


HOSTILE = [
    "hf:../../etc",
    "hf:org/../../etc",
    "hf:org/name@../../../etc/passwd",
    "hf:org/name@main/../x",
    "hf:org--x/name",
    "hf:/etc/passwd",
    "hf:org",
    "ollama:../../etc/passwd",
    "ollama:llama3.2:../x",
    "/etc/passwd",
    "/etc",
    "../../etc/passwd",
    "a/../../b",
    "./x",
    "file:///etc/passwd",
    "http://evil.example/model",
    "s3:bucket/model",
    "x" * 10_000,
    "hf:org/na\x00me",
    "tiny\x00/../../etc",
    "hf:org/name\n",
    "",
    None,
    42,
]


@pytest.mark.parametrize("text", HOSTILE, ids=lambda t: repr(t)[:30])
def test_refs_hostile_are_refused_without_touching_disk(tmp_path, monkeypatch, text):
    root = tmp_path / "local"
    root.mkdir()
    touched = []
    for name in ("stat", "lstat", "listdir", "scandir", "mkdir", "open", "readlink"):
        real = getattr(os, name)
        monkeypatch.setattr(os, name, lambda *a, _real=real, _name=name, **k: touched.append((_name, a)) or _real(*a, **k))
    opened = []

    def audit(event, args):
        if event in ("open", "os.listdir", "os.scandir", "os.mkdir", "os.symlink") and not opened_frozen:
            opened.append((event, args))

    opened_frozen = False
    sys.addaudithook(audit)
    try:
        with pytest.raises(InvalidModelRef) as caught:
            parse_ref(text, [root])
    finally:
        opened_frozen = True
    message = str(caught.value)
    assert len(message) < 400 and ("hf:" in message or "ollama:" in message)  # says what to write instead
    assert touched == [] and opened == []
    assert list(root.iterdir()) == []

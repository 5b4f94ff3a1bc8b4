"""Model references: `hf:ORG/NAME[@REV]`, `ollama:NAME[:TAG]`, or a folder under a local root.

Parsing is strict and lexical first: a hostile reference (`..`, an absolute path outside the
roots, an unknown URL scheme, control characters, absurd lengths) is refused before anything
on disk is looked at. Only a reference that already looks legitimate has its real path
(symlinks resolved) compared with its root.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Sequence

from ..errors import InvalidModelRef

MAX_REF_LENGTH = 256
#: checkpoint files refused: unpickling them can run arbitrary code
PICKLE_SUFFIXES = (".ckpt", ".pt", ".pth", ".bin", ".pkl")

_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.\-]*):")
# The Hub's own rules: letters, digits, '-', '_', '.'; at most 96 characters; no '--' or '..'.
_HF_PART = r"[A-Za-z0-9](?:[A-Za-z0-9_.\-]{0,94}[A-Za-z0-9_])?"
_HF_REPO = re.compile(rf"^{_HF_PART}/{_HF_PART}$")
# Branches, tags, commit hashes and `refs/pr/N`; the revision becomes a folder name in the cache.
_HF_REV = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,99}(?:/[A-Za-z0-9][A-Za-z0-9_.\-]{0,99}){0,3}$")
# Ollama: [host/][namespace/]model[:tag], e.g. llama3.2, qwen2.5:7b, library/llama3.2:latest.
_OLLAMA_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,99}(?:/[A-Za-z0-9][A-Za-z0-9_.\-]{0,99}){0,2}$")
_OLLAMA_TAG = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.\-]{0,127}$")
_LOCAL_PART = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.\- ]{0,127}$")

_HELP = "use hf:ORG/NAME[@REVISION], ollama:NAME[:TAG], or a model folder under {roots}"


@dataclass(frozen=True, slots=True)
class ModelRef:
    """A validated model reference; `str(ref)` is its canonical text."""

    source: Literal["hf", "ollama", "local"]
    #: `ORG/NAME` for hf, `NAME` for ollama, the resolved folder for local
    name: str
    #: hf revision or ollama tag (`None` = the default branch / `latest`)
    revision: str | None = None

    def __str__(self) -> str:
        if self.source == "hf":
            return f"hf:{self.name}" + (f"@{self.revision}" if self.revision else "")
        if self.source == "ollama":
            return f"ollama:{self.ollama_name}"
        return self.name

    @property
    def ollama_name(self) -> str:
        """`NAME:TAG`, the name the Ollama server knows this model by (tag `latest` when none was given)."""
        return f"{self.name}:{self.revision or 'latest'}"

    @property
    def path(self) -> Path:
        """The folder of a local reference."""
        if self.source != "local":
            raise InvalidModelRef(f"model {self} is not a local folder")
        return Path(self.name)

    def pull_command(self) -> str | None:
        """The exact command that fetches this model, or None for a local folder."""
        return None if self.source == "local" else f"flow pull {self}"


def parse_ref(text: object, roots: Sequence[str | os.PathLike] = ()) -> ModelRef:
    """Validate a model reference; raise :class:`InvalidModelRef` saying what is wrong and what to write."""
    help_ = _HELP.format(roots=", ".join(repr(os.fspath(r)) for r in roots) or "a configured root")
    if not isinstance(text, str):
        raise InvalidModelRef(f"a model reference must be a string, got {type(text).__name__}; {help_}")
    shown = text if len(text) <= 80 else text[:77] + "..."
    if not text:
        raise InvalidModelRef(f"the model reference is empty; {help_}")
    if len(text) > MAX_REF_LENGTH:
        raise InvalidModelRef(f"model reference {shown!r} is {len(text)} characters long (at most {MAX_REF_LENGTH}); {help_}")
    if any(ord(c) < 32 or ord(c) == 127 for c in text):
        raise InvalidModelRef(f"model reference {shown!r} contains control characters; {help_}")
    scheme = _SCHEME.match(text)
    if scheme:
        kind, rest = scheme.group(1).lower(), text[scheme.end():]
        if kind == "hf":
            return _parse_hf(text, rest)
        if kind == "ollama":
            return _parse_ollama(text, rest)
        raise InvalidModelRef(f"model reference {shown!r}: the scheme {kind!r} is not supported; {help_}")
    return _parse_local(text, roots, help_)


def _parse_hf(text: str, rest: str) -> ModelRef:
    repo, _, revision = rest.partition("@")
    if not _HF_REPO.match(repo) or ".." in repo or "--" in repo:
        raise InvalidModelRef(
            f"model reference {text!r}: {repo!r} is not a Hugging Face repository id; write hf:ORG/NAME "
            "(letters, digits, '-', '_', '.'; e.g. hf:stabilityai/sd-turbo)"
        )
    if "@" in rest and (not _HF_REV.match(revision) or ".." in revision):
        raise InvalidModelRef(
            f"model reference {text!r}: revision {revision!r} is not a branch, tag or commit hash; "
            "write hf:ORG/NAME@main or @<40-hex commit>"
        )
    return ModelRef("hf", repo, revision or None)


def _parse_ollama(text: str, rest: str) -> ModelRef:
    name, colon, tag = rest.partition(":")
    if not _OLLAMA_NAME.match(name) or ".." in name:
        raise InvalidModelRef(
            f"model reference {text!r}: {name!r} is not an Ollama model name; write e.g. ollama:llama3.2 "
            "or ollama:qwen2.5:7b"
        )
    if colon and not _OLLAMA_TAG.match(tag):
        raise InvalidModelRef(f"model reference {text!r}: tag {tag!r} is not valid; write e.g. ollama:qwen2.5:7b")
    return ModelRef("ollama", name, tag or "latest")


def _parse_local(text: str, roots: Sequence[str | os.PathLike], help_: str) -> ModelRef:
    if not roots:
        raise InvalidModelRef(f"model reference {text!r} looks like a local folder but no local roots are configured; {help_}")
    relative = text
    if os.path.isabs(text):
        # Lexical check first: an absolute path outside every root is refused without touching disk.
        norm = os.path.normpath(text)
        for root in roots:
            root_norm = os.path.normpath(os.path.abspath(root))
            if os.path.commonpath([root_norm, norm]) == root_norm and norm != root_norm:
                relative = os.path.relpath(norm, root_norm)
                roots = [root]
                break
        else:
            raise InvalidModelRef(f"model folder {text!r} is outside the allowed roots; {help_}")
    parts = relative.split("/")
    if any(part in ("", ".", "..") or not _LOCAL_PART.match(part) for part in parts) or len(parts) > 8:
        raise InvalidModelRef(
            f"model folder {text!r} is not a plain relative path (no '..', '.', empty parts or odd characters); {help_}"
        )
    for root in roots:
        real_root = os.path.realpath(root)
        candidate = os.path.realpath(os.path.join(real_root, relative))
        if os.path.commonpath([real_root, candidate]) != real_root:
            raise InvalidModelRef(f"model folder {text!r} leads outside {os.fspath(root)!r} (through a symlink)")
        if os.path.isdir(candidate):
            return ModelRef("local", candidate)
        if os.path.isfile(candidate):
            suffix = os.path.splitext(candidate)[1].lower()
            if suffix == ".safetensors":  # a single-file checkpoint (SD 1.5, 2.x, SDXL), as A1111 and ComfyUI load
                return ModelRef("local", candidate)
            if suffix in PICKLE_SUFFIXES:
                raise InvalidModelRef(f"model file {text!r} is a pickle checkpoint ({suffix}), which can run code "
                                      "when loaded; flow loads safetensors only: use the .safetensors release of "
                                      "the model, or convert it once in a sandbox")
    raise InvalidModelRef(f"no model folder {text!r} under {', '.join(repr(os.fspath(r)) for r in roots)}; {help_}")

"""Hugging Face models on disk: the hub cache layout, choosing files, and pulling them.

Files live in the hub's own cache layout under `<models_dir>/hf` (`models--ORG--NAME/
{blobs,snapshots,refs}`), so blobs are shared between revisions and other hub tools can read
it. Reading that layout needs no import of huggingface_hub; pulling does (imported in the
function). Only what a pipeline loads is fetched: configs, tokenizers and safetensors, never
pickles or Python files (remote code is never trusted).
"""

from __future__ import annotations

import errno
import json
import os
import re
import socket
import threading
from pathlib import Path
from typing import Callable, Iterable
from urllib.parse import quote, urlsplit

from ..errors import FlowError, InvalidModelRef, ModelNotFound, PullFailed
from .ollama import PullProgress
from .refs import ModelRef

DEFAULT_ENDPOINT = "https://huggingface.co"
_COMMIT = re.compile(r"^[0-9a-f]{40}$")
_SMALL_FILES = (".json", ".txt", ".model", ".jinja")
_SHARD = re.compile(r"-\d{5}-of-\d{5}$")


def repo_dir(cache: Path, repo: str) -> Path:
    """The cache folder of a repository (`models--ORG--NAME`)."""
    return cache / ("models--" + repo.replace("/", "--"))


def _marker(cache: Path, ref: ModelRef) -> Path:
    # Present while a pull of this revision is under way or was interrupted.
    return cache / ".flow-incomplete" / quote(f"{ref.name.replace('/', '--')}@{ref.revision or 'main'}", safe="@.-_")


def snapshot(cache: Path, ref: ModelRef) -> Path | None:
    """The complete local snapshot of an hf reference, or None if it was never pulled (or not fully)."""
    revision = ref.revision or "main"
    folder = repo_dir(cache, ref.name)
    if _COMMIT.match(revision):
        commit = revision
    else:
        try:
            commit = (folder / "refs" / revision).read_text().strip()
        except OSError:
            return None
    path = folder / "snapshots" / commit
    if not path.is_dir() or _marker(cache, ref).exists():
        return None
    return path


def require_snapshot(cache: Path, ref: ModelRef) -> Path:
    """The local snapshot of `ref`, or :class:`ModelNotFound` with the pull command."""
    path = snapshot(cache, ref)
    if path is None:
        detail = "an earlier pull was interrupted" if _marker(cache, ref).exists() else "not pulled yet"
        raise ModelNotFound(str(ref), ref.pull_command(), detail)
    return path


def _variant_of(name: str) -> str | None:
    """`unet.fp16.safetensors` -> 'fp16'; `model.safetensors.index.fp16.json` -> 'fp16'; else None."""
    if ".safetensors.index." in name:
        middle = name.split(".safetensors.index.", 1)[1].rsplit(".json", 1)[0]
        return middle or None
    parts = name.split(".")
    if len(parts) >= 3 and parts[-1] == "safetensors":
        return _SHARD.sub("", parts[-2])
    return None


def select_files(paths: Iterable[str], components: Iterable[str] | None, variant: str | None) -> list[str]:
    """The repository files a pipeline or model needs: configs, tokenizers, safetensors (of `variant` when asked).

    `components` are the folders listed in a diffusers `model_index.json` (None for a plain
    model); other files, such as single-file checkpoints at the root, are skipped.
    """
    paths = sorted(paths)
    if components is not None:
        allowed = set(components)
        paths = [p for p in paths if p == "model_index.json" or p.split("/", 1)[0] in allowed and "/" in p]
    weights: dict[str, list[str]] = {}
    chosen = []
    for path in paths:
        folder, _, name = path.rpartition("/")
        is_index = ".safetensors.index." in name
        if name.endswith(".safetensors") or is_index:
            if components is None and folder:
                continue  # plain models keep their weights at the root; subfolders hold extras
            weights.setdefault(folder, []).append(path)
        elif name.endswith(_SMALL_FILES) and ".bin.index." not in name:
            chosen.append(path)
    for files in weights.values():
        wanted = [f for f in files if variant and _variant_of(f.rpartition("/")[2]) == variant]
        chosen += wanted or [f for f in files if _variant_of(f.rpartition("/")[2]) is None]
    return sorted(chosen)


class _Progress:
    """A tqdm stand-in for huggingface_hub that forwards the byte count to a callback, drawing nothing."""

    lock = threading.Lock()

    def __init__(self, report: Callable[[int, int | None], None] | None, **kwargs):
        self.report = report
        self.desc = str(kwargs.get("desc") or "")
        self.unit = kwargs.get("unit")
        self.total = kwargs.get("total")
        self.n = kwargs.get("initial") or 0

    def update(self, n: int | float | None = 1) -> None:
        with self.lock:
            self.n += n or 0
            # The hub aggregates every file's bytes into its "Reconstructing" bar; report that one.
            if self.report is not None and self.unit == "B" and self.desc.startswith("Reconstruct"):
                self.report(int(self.n), int(self.total) if self.total else None)

    def refresh(self, *args, **kwargs) -> None:
        pass

    def close(self) -> None:
        pass

    def set_description(self, desc: str | None = None, refresh: bool = True) -> None:
        pass

    set_description_str = set_description

    def set_postfix_str(self, s: str = "", refresh: bool = True) -> None:
        pass

    @property
    def format_dict(self) -> dict:
        return {"rate": None}

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        pass


def pull(
    cache: Path,
    ref: ModelRef,
    *,
    endpoint: str = DEFAULT_ENDPOINT,
    token: str | None = None,
    variant: str | None = None,
    progress: Callable[[PullProgress], None] | None = None,
    timeouts: tuple[float, float],
) -> Path:
    """Download what `ref` needs into the cache and return its snapshot folder; a re-run resumes.

    `timeouts` (connect, read) bound every hub request that has no timeout of its own.
    """
    from huggingface_hub import HfApi, hf_hub_download, snapshot_download
    from huggingface_hub.hf_api import RepoFile
    from huggingface_hub.errors import GatedRepoError, HfHubHTTPError, RepositoryNotFoundError, RevisionNotFoundError

    text = str(ref)
    revision = ref.revision or "main"
    say = progress or (lambda p: None)
    marker = _marker(cache, ref)
    marker.parent.mkdir(parents=True, exist_ok=True)
    resuming = marker.exists()
    marker.touch()
    fetching = False  # set once files may land in the cache: only then is a failed pull left to resume
    _bound_hub_requests(*timeouts)
    try:
        # 1. Resolve the revision to a commit and list its files.
        say(PullProgress(text, "resolving revision"))
        api = HfApi(endpoint=endpoint, token=token or None)
        commit = api.model_info(ref.name, revision=revision).sha
        paths = [f.path for f in api.list_repo_tree(ref.name, revision=commit, recursive=True)
                 if isinstance(f, RepoFile)]
        # 2. A diffusers pipeline names its component folders in model_index.json.
        components = None
        if "model_index.json" in paths:
            fetching = True
            index = hf_hub_download(ref.name, "model_index.json", revision=commit, cache_dir=cache,
                                    endpoint=endpoint, token=token or None, tqdm_class=_silent)
            components = [k for k, v in json.loads(Path(index).read_text()).items()
                          if not k.startswith("_") and isinstance(v, list) and v[0] is not None]
        files = select_files(paths, components, variant)
        if not any(f.endswith(".safetensors") for f in files):
            raise InvalidModelRef(
                f"{text} has no .safetensors weights{f' of variant {variant!r}' if variant else ''}; flow loads "
                "only safetensors (pickled weights can run code) - pick a repository that ships them"
            )
        # 3. Fetch; files already in the cache are skipped, so a re-run resumes where it stopped.
        say(PullProgress(text, f"fetching {len(files)} files"))

        def report(done: int, total: int | None) -> None:
            say(PullProgress(text, "downloading", done, total))

        fetching = True
        folder = snapshot_download(
            ref.name, revision=commit, cache_dir=cache, endpoint=endpoint, token=token or None,
            allow_patterns=[_escape(f) for f in files], max_workers=4,
            tqdm_class=lambda **kw: _Progress(report, **kw),
        )
    except (RepositoryNotFoundError, GatedRepoError) as exc:
        gated = isinstance(exc, GatedRepoError)
        raise InvalidModelRef(
            f"{text}: the repository is {'gated' if gated else 'not found or private'} at {endpoint}; check the "
            "name, and for gated or private models accept its terms on the website and set HF_TOKEN"
        ) from exc
    except RevisionNotFoundError as exc:
        raise InvalidModelRef(f"{text}: revision {revision!r} does not exist; use a branch, tag or commit of the repo") from exc
    except (HfHubHTTPError, OSError) as exc:
        raise _failure(text, endpoint, cache, exc, fetching) from exc
    except Exception as exc:
        if type(exc).__module__.startswith(("httpx", "huggingface_hub")):
            raise _failure(text, endpoint, cache, exc, fetching) from exc
        raise
    finally:
        if not fetching and not resuming:  # nothing was fetched: no pull is left half done
            marker.unlink(missing_ok=True)
    # 4. Record the branch name -> commit, as the hub client does, and mark the pull complete.
    if not _COMMIT.match(revision):
        ref_file = repo_dir(cache, ref.name) / "refs" / revision
        ref_file.parent.mkdir(parents=True, exist_ok=True)
        ref_file.write_text(commit)
    marker.unlink(missing_ok=True)
    say(PullProgress(text, "success"))
    return Path(folder)


def _failure(text: str, endpoint: str, cache: Path, exc: BaseException, fetching: bool) -> FlowError:
    """The named error for a failed pull, saying what happened: refused, not found, unreachable, disk full."""
    status = getattr(getattr(exc, "response", None), "status_code", None)
    host = urlsplit(endpoint).hostname or endpoint
    if status in (401, 403):
        return InvalidModelRef(
            f"{text}: {endpoint} refused access ({status}); for a gated or private model accept its terms on "
            "the website and set HF_TOKEN to a token that may read it")
    if status == 404:
        return InvalidModelRef(f"{text}: not found at {endpoint} (404); check the name and the revision")
    chain = [exc]
    while (chain[-1].__cause__ or chain[-1].__context__) and len(chain) < 8:
        chain.append(chain[-1].__cause__ or chain[-1].__context__)
    words = " ".join(str(e) for e in chain).lower()
    if any(isinstance(e, OSError) and e.errno == errno.ENOSPC for e in chain) or "no space left" in words:
        return PullFailed(text, f"the disk holding {cache} is full; free some space")
    if any(isinstance(e, socket.gaierror) for e in chain) or any(w in words for w in _DNS_FAILURES):
        reason = (f"cannot resolve {host}: this machine is offline or its DNS failed; check the network "
                  "(or HF_ENDPOINT)")
    elif type(exc).__name__ == "OfflineModeIsEnabled":
        reason = "HF_HUB_OFFLINE is set, so the hub is not asked; unset it"
    elif type(exc).__name__ in ("ConnectError", "ConnectTimeout", "ConnectionError"):
        reason = f"cannot connect to {endpoint}: offline, or the host is down; check the network (or HF_ENDPOINT)"
    else:
        detail = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        return PullFailed(text, f"{type(exc).__name__}: {detail}" if status is None else detail)
    return PullFailed(text, reason, resumable=fetching)


_DNS_FAILURES = ("name or service not known", "temporary failure in name resolution", "nodename nor servname",
                 "getaddrinfo failed", "no address associated with hostname", "name resolution")


def _bound_hub_requests(connect: float, read: float) -> None:
    """Give each request of the hub's shared client a connect and read timeout where the hub set none.

    The hub times its downloads and metadata calls itself (HF_HUB_DOWNLOAD_TIMEOUT and
    HF_HUB_ETAG_TIMEOUT, 10 s each; kept as they are), but lists a repository's files, ours and
    inside snapshot_download, with no timeout at all: a hub that stalls there would hold the
    worker thread for good. A request hook fills the gaps. It is set again on each pull, as the
    hub replaces its client after a connection error.
    """
    from huggingface_hub import get_session

    def bound(request) -> None:
        timeout = dict(request.extensions.get("timeout") or {})
        for part, seconds in (("connect", connect), ("read", read), ("write", read), ("pool", read)):
            if timeout.get(part) is None:
                timeout[part] = seconds
        request.extensions = {**request.extensions, "timeout": timeout}

    bound.flow_bounds = True
    session = get_session()
    hooks = session.event_hooks
    others = [h for h in hooks["request"] if not getattr(h, "flow_bounds", False)]
    session.event_hooks = {**hooks, "request": [*others, bound]}


def _silent(**kwargs) -> _Progress:
    return _Progress(None, **kwargs)


def _escape(path: str) -> str:
    # allow_patterns are fnmatch patterns; file names with [ ] * ? must match literally.
    return re.sub(r"([\[\]*?])", r"[\1]", path)


def local_models(cache: Path) -> Iterable[tuple[str, int, Path]]:
    """Complete hf snapshots in the cache as (ref, bytes, folder)."""
    if not cache.is_dir():
        return
    for folder in sorted(cache.glob("models--*--*")):
        repo = folder.name[len("models--"):].replace("--", "/", 1)
        refs = folder / "refs"
        for ref_file in sorted(refs.rglob("*")) if refs.is_dir() else []:
            if not ref_file.is_file():
                continue
            revision = ref_file.relative_to(refs).as_posix()
            ref = ModelRef("hf", repo, None if revision == "main" else revision)
            path = snapshot(cache, ref)
            if path is not None:
                yield str(ref), dir_bytes(path), path


def dir_bytes(path: Path) -> int:
    """Bytes of all files under a folder (symlinks followed, as the hub cache uses them)."""
    return sum(os.stat(p).st_size for p in path.rglob("*") if p.is_file())

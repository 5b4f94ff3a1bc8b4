"""How job results look over HTTP: text inline, media as files with URLs (and base64 on request)."""

from __future__ import annotations

import base64
import json
import math
import os
from typing import Any

from engine.errors import status_of
from engine.executor import RunResult
from engine.jobstore import JobRecord
from engine.media import MediaValue
from engine.paths import OutputFiles, UnsafePath, relative_to, servable_file, servable_name
from engine.saving import saved_files
from engine.workflow import Workflow

_JSON_SCALARS = (str, int, float, bool, type(None))

def _finite(value: Any) -> Any:
    """``value`` with every NaN or infinite float replaced by None (JSON has no such numbers)."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    return value


def dumps(value: Any) -> str:
    """Strict JSON for responses: never the bare NaN/Infinity tokens Python's json writes by default."""
    try:
        return _STRICT(value)
    except ValueError:
        return _STRICT(_finite(value))


# one encoder for every response (json.dumps with any option builds an encoder per call)
_STRICT = json.JSONEncoder(allow_nan=False, default=str).encode


def job_status(error: dict | None) -> int:
    """The status a failed job answers: that of its cause (e.g. a missing model: 404), else of its error."""
    error = error or {}
    if isinstance(error.get("status"), int):
        return error["status"]
    return status_of(error.get("cause"), status_of(error.get("type")))


class Presenter:
    """Turns run results into JSON for the job record, and job records into response bodies."""

    def __init__(self, output_dir: str | os.PathLike):
        self.root = output_dir
        self.files = OutputFiles(output_dir)
        self._prefix = os.path.join(os.path.realpath(output_dir), "")  # the real root, with a final "/"

    def url(self, path: str | os.PathLike) -> str | None:
        """``/files/<relative path>`` for a servable file under the output folder, else None.

        A path under the real root (what the engine's save nodes return) is checked as a string
        plus one stat, not resolved twice: serving it resolves it again anyway (``servable_file``).
        """
        text = os.path.normpath(os.fspath(path))
        if text.startswith(self._prefix):
            relative = text[len(self._prefix):]
            if servable_name(relative) and os.path.isfile(text):
                return "/files/" + relative
            return None
        relative = relative_to(self.root, path)  # reached through a symlink or a relative root
        return None if relative is None else "/files/" + relative

    def result_json(self, workflow: Workflow, result: RunResult, job_id: str) -> dict:
        """What a finished job stores: outputs (media as their one file: the saved one, else written), files, seeds, timings."""
        outputs: dict[str, Any] = {}
        files: dict[str, str | list[str]] = {}
        media: list[str] = []  # outputs that are media by their type (only these are ever read back)
        for name, value in result.outputs.items():
            if isinstance(value, _JSON_SCALARS) or isinstance(value, (list, dict)):
                outputs[name] = value
                if isinstance(value, str) and len(value) < 4096 and os.path.isabs(value):
                    url = self.url(value)  # e.g. the path a save node returns
                    if url is not None:
                        files[name] = url
                elif isinstance(value, list) and 0 < len(value) <= 64 and all(
                        isinstance(v, str) and len(v) < 4096 and os.path.isabs(v) for v in value):
                    urls = [self.url(v) for v in value]  # e.g. the paths image.save returns: URLs only
                    if None not in urls:
                        files[name] = urls
            elif isinstance(value, MediaValue):
                outputs[name] = self._media_files(value, name, job_id)
                many = isinstance(outputs[name], list)
                files[name] = [f["url"] for f in outputs[name]] if many else outputs[name]["url"]
                media.append(name)
            else:
                outputs[name] = f"<{type(value).__name__}>"  # no JSON form (and no repr: it may hold paths)
        return {"outputs": _finite(outputs), "files": files, "media": media, "seeds": result.seeds,
                "timings": result.timings, "elapsed": result.elapsed, "executed": result.executed,
                "cached": result.cached}

    def _media_files(self, value: MediaValue, name: str, job_id: str) -> dict | list[dict]:
        """``{url, path}`` of the file a media output is in (a list for a batch a save node wrote).

        The file(s) a save node of this job wrote it to (never a path from a JSON value), else
        one written now under ``jobs/<id>/``: each result is one file, whichever face shows it.
        """
        saved = saved_files(value, job_id)
        paths = saved if isinstance(saved, list) else [saved] if saved else []
        found = [relative for p in paths if (relative := relative_to(self.root, p)) is not None]
        if not found or len(found) != len(paths):
            found, saved = [relative_to(self.root, value.write_file(self.files, f"jobs/{job_id}/{name}"))], None
        entries = [{"url": "/files/" + relative, "path": relative} for relative in found]
        return entries if isinstance(saved, list) else entries[0]

    def job_json(self, record: JobRecord, *, inline: bool = False, with_workflow: bool = False) -> dict:
        """The job as a response body; ``inline`` adds base64 of each media output."""
        body = record.to_json(with_workflow=with_workflow)
        if inline and isinstance(body.get("outputs"), dict):
            outputs = body["outputs"] = dict(body["outputs"])
            for name in body.get("media") or ():  # media by the type the job produced, never by shape
                value = outputs.get(name)
                outputs[name] = [self._inline(v) for v in value] if isinstance(value, list) else self._inline(value)
        return body

    def job_text(self, record: JobRecord, *, inline: bool = False, with_workflow: bool = False) -> str:
        """:meth:`job_json` as JSON text; the result the store encoded is spliced in, not encoded again."""
        result = record.result_text
        if inline or not result or result == "{}" or record.result is None:
            return dumps(self.job_json(record, inline=inline, with_workflow=with_workflow))
        head = record.to_json(with_workflow=with_workflow, with_result=False)
        for key in record.result:
            head.pop(key, None)  # the result's value wins (its "params": the values used), as in to_json
        return dumps(head)[:-1] + ", " + result[1:] if head else result

    def _inline(self, value: dict) -> dict:
        if not isinstance(value, dict):
            return value
        try:
            path = servable_file(self.root, value["path"])
            return {**value, "b64": base64.b64encode(path.read_bytes()).decode()}
        except (UnsafePath, OSError):
            return value  # the file was removed since: the URL answers 404 the same way

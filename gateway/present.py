"""How job results look over HTTP: text inline, media as files with URLs (and base64 on request)."""

from __future__ import annotations

import base64
import os
from pathlib import Path
from typing import Any

from engine.executor import RunResult
from engine.jobstore import JobRecord
from engine.media import MediaValue
from engine.paths import OutputFiles
from engine.workflow import Workflow

_JSON_SCALARS = (str, int, float, bool, type(None))

# HTTP status of each named error kind (engine/errors.py and the gateway's own); unnamed: 500.
STATUS = {"invalid_workflow": 400, "invalid_request": 400, "invalid_model_ref": 400, "unsafe_path": 404,
          "not_found": 404, "model_not_found": 404, "conflict": 409, "queue_full": 429,
          "out_of_memory": 503, "node_failed": 500, "cancelled": 409}


def job_status(error: dict | None) -> int:
    """The status a failed job answers: that of its cause (e.g. a missing model: 404), else of its error."""
    error = error or {}
    return STATUS.get(error.get("cause", ""), STATUS.get(error.get("type", ""), 500))


class Presenter:
    """Turns run results into JSON for the job record, and job records into response bodies."""

    def __init__(self, output_dir: str | os.PathLike):
        self.root = Path(output_dir)
        self.files = OutputFiles(output_dir)

    def url(self, path: str | os.PathLike) -> str | None:
        """``/files/<relative path>`` for a file under the output folder, else None."""
        real, root = os.path.realpath(path), os.path.realpath(self.root)
        if os.path.commonpath([real, root]) != root or not os.path.isfile(real):
            return None
        return "/files/" + Path(os.path.relpath(real, root)).as_posix()

    def result_json(self, workflow: Workflow, result: RunResult, job_id: str) -> dict:
        """What a finished job stores: outputs (media written to files), files, seeds, timings."""
        outputs: dict[str, Any] = {}
        files: dict[str, str] = {}
        for name, value in result.outputs.items():
            if isinstance(value, _JSON_SCALARS) or isinstance(value, (list, dict)):
                outputs[name] = value
                if isinstance(value, str) and len(value) < 4096 and os.path.isabs(value):
                    url = self.url(value)  # e.g. the path a save node returns
                    if url is not None:
                        files[name] = url
            elif isinstance(value, MediaValue):
                path = value.write_file(self.files, f"jobs/{job_id}/{name}")
                url = self.url(path)
                outputs[name] = {"url": url, "path": Path(os.path.relpath(path, self.root)).as_posix()}
                files[name] = url
            else:
                outputs[name] = repr(value)
        return {"outputs": outputs, "files": files, "seeds": result.seeds, "timings": result.timings,
                "elapsed": result.elapsed, "executed": result.executed, "cached": result.cached}

    def job_json(self, record: JobRecord, *, inline: bool = False, with_workflow: bool = False) -> dict:
        """The job as a response body; ``inline`` adds base64 of each media output."""
        body = record.to_json(with_workflow=with_workflow)
        if inline and isinstance(body.get("outputs"), dict):
            body["outputs"] = {name: self._inline(value) for name, value in body["outputs"].items()}
        return body

    def _inline(self, value: Any) -> Any:
        if isinstance(value, dict) and set(value) == {"url", "path"}:
            path = self.root / value["path"]
            if path.is_file():
                return {**value, "b64": base64.b64encode(path.read_bytes()).decode()}
        return value

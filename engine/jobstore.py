"""Job records persisted in SQLite: an accepted job is written before it is acknowledged."""

from __future__ import annotations

import json
import sqlite3
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

QUEUED, RUNNING, FINISHED, FAILED, CANCELLED, INTERRUPTED = (
    "queued", "running", "finished", "failed", "cancelled", "interrupted")
TERMINAL = frozenset({FINISHED, FAILED, CANCELLED, INTERRUPTED})
STATES = (QUEUED, RUNNING, FINISHED, FAILED, CANCELLED, INTERRUPTED)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (
    seq      INTEGER PRIMARY KEY AUTOINCREMENT,
    id       TEXT NOT NULL UNIQUE,
    name     TEXT NOT NULL,
    state    TEXT NOT NULL,
    workflow TEXT NOT NULL,
    params   TEXT NOT NULL,
    outputs  TEXT,
    created  REAL NOT NULL,
    started  REAL,
    ended    REAL,
    attempts INTEGER NOT NULL DEFAULT 0,
    result   TEXT,
    error    TEXT
);
CREATE INDEX IF NOT EXISTS jobs_state ON jobs (state, seq);
"""


@dataclass(slots=True)
class JobRecord:
    """One job as stored: what to run, its state and, once ended, its result or error."""

    id: str
    name: str
    state: str
    workflow: dict
    params: dict
    outputs: list[str] | None
    created: float
    seq: int = 0
    started: float | None = None
    ended: float | None = None
    attempts: int = 0
    result: dict | None = None
    error: dict | None = None
    extra: dict = field(default_factory=dict)  # live, not stored: position, current node, progress

    @property
    def terminal(self) -> bool:
        """True once the job ended (finished, failed, cancelled or interrupted)."""
        return self.state in TERMINAL

    def to_json(self, *, with_workflow: bool = False) -> dict:
        """The job as the API shows it."""
        body: dict[str, Any] = {
            "id": self.id, "name": self.name, "state": self.state, "created": self.created,
            "started": self.started, "ended": self.ended, "attempts": self.attempts, "params": self.params,
        }
        if self.started is not None:
            body["duration"] = (self.ended or time.time()) - self.started
        body.update(self.extra)
        if self.result is not None:
            body.update(self.result)
        if self.error is not None:
            body["error"] = self.error
        if with_workflow:
            body["workflow"] = self.workflow
        return body


class JobStore:
    """The jobs table. WAL mode: a commit survives the process being killed at any point."""

    def __init__(self, path: str | Path):
        self.path = str(path)
        if self.path != ":memory:":
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        self._db.row_factory = sqlite3.Row
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.executescript(_SCHEMA)

    def close(self) -> None:
        """Close the database."""
        self._db.close()

    def add(self, job: JobRecord) -> JobRecord:
        """Insert a new job; sets its ``seq``."""
        cur = self._db.execute(
            "INSERT INTO jobs (id, name, state, workflow, params, outputs, created) VALUES (?, ?, ?, ?, ?, ?, ?)",
            (job.id, job.name, job.state, json.dumps(job.workflow), json.dumps(job.params),
             None if job.outputs is None else json.dumps(job.outputs), job.created))
        job.seq = cur.lastrowid
        return job

    def save(self, job: JobRecord) -> None:
        """Write a job's state, times, attempts, result and error."""
        self._db.execute(
            "UPDATE jobs SET state=?, started=?, ended=?, attempts=?, result=?, error=? WHERE id=?",
            (job.state, job.started, job.ended, job.attempts,
             None if job.result is None else json.dumps(job.result),
             None if job.error is None else json.dumps(job.error), job.id))

    def get(self, job_id: str) -> JobRecord | None:
        """The job with this id, or None."""
        row = self._db.execute("SELECT * FROM jobs WHERE id=?", (job_id,)).fetchone()
        return None if row is None else _record(row)

    def page(self, *, state: str | None = None, limit: int = 50, before: int | None = None) -> list[JobRecord]:
        """Newest first; ``before`` is a ``seq`` to continue from (the previous page's last)."""
        sql, args = "SELECT * FROM jobs WHERE 1=1", []
        if state is not None:
            sql += " AND state=?"
            args.append(state)
        if before is not None:
            sql += " AND seq<?"
            args.append(before)
        sql += " ORDER BY seq DESC LIMIT ?"
        args.append(limit)
        return [_record(row) for row in self._db.execute(sql, args)]

    def with_state(self, state: str) -> list[JobRecord]:
        """Every job in ``state``, oldest first."""
        return [_record(row) for row in self._db.execute("SELECT * FROM jobs WHERE state=? ORDER BY seq", (state,))]

    def counts(self) -> dict[str, int]:
        """Number of jobs per state."""
        return {row[0]: row[1] for row in self._db.execute("SELECT state, COUNT(*) FROM jobs GROUP BY state")}


def _record(row: sqlite3.Row) -> JobRecord:
    return JobRecord(
        id=row["id"], name=row["name"], state=row["state"], workflow=json.loads(row["workflow"]),
        params=json.loads(row["params"]), outputs=None if row["outputs"] is None else json.loads(row["outputs"]),
        created=row["created"], seq=row["seq"], started=row["started"], ended=row["ended"],
        attempts=row["attempts"], result=None if row["result"] is None else json.loads(row["result"]),
        error=None if row["error"] is None else json.loads(row["error"]),
    )

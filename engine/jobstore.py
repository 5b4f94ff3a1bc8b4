"""Job records persisted in SQLite: an accepted job is written before it is acknowledged."""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

from . import large

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
CREATE TABLE IF NOT EXISTS workflows (
    id  TEXT PRIMARY KEY,
    doc TEXT NOT NULL
);
"""
# The workflow document lives in a table of its own (jobs.workflow is '' for new jobs; older
# databases kept it there): SQLite rewrites a whole row on every UPDATE, and a state change must
# not rewrite a 10 MB graph. Listing jobs never reads it either.
_COLUMNS = "seq, id, name, state, params, outputs, created, started, ended, attempts, result, error"



@dataclass(slots=True)
class JobRecord:
    """One job as stored: what to run, its state and, once ended, its result or error."""

    id: str
    name: str
    state: str
    workflow: dict | None  # None when read without it (JobStore.page, with_state)
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


#: workflow documents up to this size stay in the job's row; larger ones go to the workflows table,
#: so that every state update of a large job does not rewrite megabytes
_INLINE_DOC = 64 << 10


class JobStore:
    """The jobs table. WAL mode: a commit survives the process being killed at any point.

    Safe to use from several threads: each thread has its own connection (WAL lets readers go on
    while a thread writes a large job), so the event loop never waits for a write it did not make.
    An in-memory database has one connection, shared under a lock.
    """

    def __init__(self, path: str | Path):
        self.path = str(path)
        self._local = threading.local()
        self._lock = threading.Lock()  # guards _connections (and the one in-memory connection)
        self._connections: list[sqlite3.Connection] = []
        self._shared: sqlite3.Connection | None = None
        if self.path == ":memory:":
            self._shared = self._connect()
        else:
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        with self._db() as db:
            db.execute("PRAGMA journal_mode=WAL")
            db.executescript(_SCHEMA)

    def _connect(self) -> sqlite3.Connection:
        db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False, timeout=30)
        db.row_factory = sqlite3.Row
        db.execute("PRAGMA synchronous=NORMAL")
        with self._lock:
            self._connections.append(db)
        return db

    @contextmanager
    def _db(self) -> Iterator[sqlite3.Connection]:
        if self._shared is not None:
            with self._lock:
                yield self._shared
            return
        db = getattr(self._local, "db", None)
        if db is None:
            db = self._local.db = self._connect()
        yield db

    def close(self) -> None:
        """Close the database (every thread's connection)."""
        with self._lock:
            connections, self._connections = self._connections, []
        for db in connections:
            db.close()

    def add(self, job: JobRecord) -> JobRecord:
        """Insert a new job; sets its ``seq``. A large workflow takes a while: call it off the event loop."""
        doc = large.dumps(job.workflow)
        row = (job.id, job.name, job.state, json.dumps(job.params),
               None if job.outputs is None else json.dumps(job.outputs), job.created)
        if len(doc) <= _INLINE_DOC:  # one statement, one commit: what every small endpoint call costs
            with self._db() as db:
                cur = db.execute("INSERT INTO jobs (id, name, state, params, outputs, created, workflow) "
                                 "VALUES (?, ?, ?, ?, ?, ?, ?)", (*row, doc))
            job.seq = cur.lastrowid
            return job
        with self._db() as db:
            db.execute("BEGIN IMMEDIATE")
            try:
                cur = db.execute("INSERT INTO jobs (id, name, state, params, outputs, created, workflow) "
                                 "VALUES (?, ?, ?, ?, ?, ?, '')", row)
                db.execute("INSERT INTO workflows (id, doc) VALUES (?, ?)", (job.id, doc))
            except BaseException:
                db.execute("ROLLBACK")
                raise
            db.execute("COMMIT")
        job.seq = cur.lastrowid
        return job

    def save(self, job: JobRecord) -> None:
        """Write a job's state, times, attempts, result and error."""
        values = (job.state, job.started, job.ended, job.attempts,
                  None if job.result is None else large.dumps(job.result),
                  None if job.error is None else json.dumps(job.error), job.id)
        with self._db() as db:
            db.execute("UPDATE jobs SET state=?, started=?, ended=?, attempts=?, result=?, error=? WHERE id=?", values)

    def get(self, job_id: str, *, workflow: bool = True) -> JobRecord | None:
        """The job with this id (and its workflow, unless ``workflow`` is false), or None."""
        with self._db() as db:
            if not workflow:
                row = db.execute(f"SELECT {_COLUMNS} FROM jobs WHERE id=?", (job_id,)).fetchone()
                return None if row is None else _record(row)
            row = db.execute(f"SELECT {_COLUMNS}, coalesce(w.doc, j.workflow) AS doc FROM jobs j "
                             "LEFT JOIN workflows w USING (id) WHERE id=?", (job_id,)).fetchone()
        return None if row is None else _record(row, large.loads(row["doc"]))

    def page(self, *, state: str | None = None, limit: int = 50, before: int | None = None) -> list[JobRecord]:
        """Newest first, without their workflows; ``before`` is a ``seq`` to continue from (the last one's)."""
        sql, args = f"SELECT {_COLUMNS} FROM jobs WHERE 1=1", []
        if state is not None:
            sql += " AND state=?"
            args.append(state)
        if before is not None:
            sql += " AND seq<?"
            args.append(before)
        sql += " ORDER BY seq DESC LIMIT ?"
        args.append(limit)
        with self._db() as db:
            rows = db.execute(sql, args).fetchall()
        return [_record(row) for row in rows]

    def with_state(self, state: str) -> list[JobRecord]:
        """Every job in ``state``, oldest first, without their workflows (``get`` has them)."""
        with self._db() as db:
            rows = db.execute(f"SELECT {_COLUMNS} FROM jobs WHERE state=? ORDER BY seq", (state,)).fetchall()
        return [_record(row) for row in rows]

    def counts(self) -> dict[str, int]:
        """Number of jobs per state."""
        with self._db() as db:
            return {row[0]: row[1] for row in db.execute("SELECT state, COUNT(*) FROM jobs GROUP BY state")}


def _record(row: sqlite3.Row, workflow: dict | None = None) -> JobRecord:
    return JobRecord(
        id=row["id"], name=row["name"], state=row["state"], workflow=workflow,
        params=json.loads(row["params"]), outputs=None if row["outputs"] is None else json.loads(row["outputs"]),
        created=row["created"], seq=row["seq"], started=row["started"], ended=row["ended"],
        attempts=row["attempts"], result=None if row["result"] is None else large.loads(row["result"]),
        error=None if row["error"] is None else json.loads(row["error"]),
    )

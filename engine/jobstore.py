"""Job records persisted in SQLite: an accepted job is written before it is acknowledged.

Writes made on the event loop are grouped into one transaction every few turns of the loop (group
commit, GROUP_TURNS): N jobs accepted at once cost one commit, not N, and a job that ends within its group
is one row written once. The log's checkpoints (the part that syncs files) run in a thread of
their own, never inside a commit on the loop. A caller that must not go on before its write is
durable (acknowledging a job, ending it) awaits :meth:`JobStore.add_async` /
:meth:`JobStore.save_async`; a write nobody waits for (a job starting) is
:meth:`JobStore.save_later`. Writes are applied in the order they were made; a state update
superseded by a later one of the same job in the same group is skipped.

Workflow documents are stored once per distinct document, by hash: a saved endpoint called a
million times stores its workflow once, and each job row holds the hash.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
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
CREATE TABLE IF NOT EXISTS documents (
    hash TEXT PRIMARY KEY,
    doc  TEXT NOT NULL
);
"""
# The workflow document lives in a table of its own, once per distinct document (jobs.doc_hash
# names it; jobs.workflow is '' for new jobs). Older databases kept it in jobs.workflow, or in
# `workflows` by job id: both are still read. SQLite rewrites a whole row on every UPDATE, and a
# state change must not rewrite a 10 MB graph; listing jobs never reads it either.
_COLUMNS = "seq, id, name, state, params, outputs, created, started, ended, attempts, result, error"
_JOINED = ", ".join("j." + column for column in _COLUMNS.split(", "))
_SAVE_SQL = "UPDATE jobs SET state=?, started=?, ended=?, attempts=?, result=?, error=? WHERE id=?"
_INSERT_SQL = ("INSERT INTO jobs (id, name, state, params, outputs, created, doc_hash, started, ended, attempts, "
               "result, error, workflow) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, '')")
#: how long writes made on the event loop gather before they are committed together (0: a few turns
#: of the loop, GROUP_TURNS); a job that ends within it is written once (its row with its end),
#: and a burst of requests shares one commit
GROUP_DELAY_S = 0.0
#: with GROUP_DELAY_S 0, the turns of the loop a group gathers: two (a job queued now usually runs
#: in the next turn, a cached one ends at once: its row and its end are written as one); under
#: load (the last group held more than one job) six, so that one commit holds more requests
#: (measured at 8 concurrent clients: about 5 a commit against 3, a quarter less store CPU a job).
#: A lone request is not held back: each turn costs an idle loop a poll of its sockets.
GROUP_TURNS = 2
GROUP_TURNS_BUSY = 6
#: writes grouped into one transaction at most (a burst larger than this takes several)
_GROUP = 512
_log = logging.getLogger("flow.jobs")



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
    #: the workflow document's hash, once known (an endpoint's workflow computes it once)
    digest: str | None = None
    #: ``result`` as strict JSON text, once the store wrote it: a response splices it in, not encoding it twice
    result_text: str | None = None

    @property
    def terminal(self) -> bool:
        """True once the job ended (finished, failed, cancelled or interrupted)."""
        return self.state in TERMINAL

    def to_json(self, *, with_workflow: bool = False, with_result: bool = True) -> dict:
        """The job as the API shows it (without the result's keys when ``with_result`` is false)."""
        body: dict[str, Any] = {
            "id": self.id, "name": self.name, "state": self.state, "created": self.created,
            "started": self.started, "ended": self.ended, "attempts": self.attempts, "params": self.params,
        }
        if self.started is not None:
            body["duration"] = (self.ended or time.time()) - self.started
        body.update(self.extra)
        if self.result is not None and with_result:
            body.update(self.result)
        if self.error is not None:
            body["error"] = self.error
        if with_workflow:
            body["workflow"] = self.workflow
        return body


def result_text(job: JobRecord) -> str | None:
    """The result's JSON text; kept on the record (``result_text``) when it is strict JSON, for responses."""
    result = job.result
    if result is None:
        return None
    if job.result_text is not None:
        return job.result_text
    if isinstance(result, dict) and len(result) <= 64 and not any(map(large.is_large, result.values())):
        try:
            job.result_text = _STRICT(result)
            return job.result_text
        except ValueError:  # NaN or infinity somewhere: stored as Python writes it, not spliced into answers
            pass
    return large.dumps(result)


# one encoder, not one per call (json.dumps with an option builds one each time)
_STRICT = json.JSONEncoder(allow_nan=False).encode


def document_digest(text: str) -> str:
    """The hash a workflow document is stored under."""
    return hashlib.sha256(text.encode()).hexdigest()


class JobStore:
    """The jobs table. WAL mode: a commit survives the process being killed at any point.

    Writes made on the event loop are grouped into one transaction per turn of the loop (see the
    module's doc); a write from another thread is its own transaction. Each thread has its own
    connection (WAL lets readers go on while another commits). An in-memory database has one
    connection, shared under a lock. A subclass for another database (engine/pgstore.py) changes
    the connection, the SQL below, :meth:`_begun` and :meth:`_seq`.
    """

    _SAVE_SQL = _SAVE_SQL
    _INSERT_SQL = _INSERT_SQL
    _DOC_SQL = "INSERT OR IGNORE INTO documents (hash, doc) VALUES (?, ?)"

    def __init__(self, path: str | Path):
        self.path = str(path)
        self._start()
        if self.path == ":memory:":
            self._shared = self._connect()
        else:
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        with self._db() as db:
            db.execute("PRAGMA journal_mode=WAL")
            db.executescript(_SCHEMA)
            if "doc_hash" not in {row[1] for row in db.execute("PRAGMA table_info(jobs)")}:
                db.execute("ALTER TABLE jobs ADD COLUMN doc_hash TEXT")  # a database from before documents
        if self._shared is None:
            self._checkpoints = _Checkpoints(self._connect)

    def _start(self) -> None:
        """The state every store starts with (before its database is opened)."""
        self._local = threading.local()
        self._lock = threading.Lock()  # guards _connections (and the one in-memory connection)
        self._connections: list = []
        self._shared: sqlite3.Connection | None = None
        self._known: set[str] = set()  # document hashes committed by this store
        self._group: list[tuple] = []  # writes made on the event loop since the last flush
        self._group_thread = 0  # the event loop's thread (the only one that groups writes)
        self._busy = False  # the last group held more than one write: gather the next one longer
        self._checkpoints: _Checkpoints | None = None  # a file database's checkpointer thread

    def _connect(self) -> sqlite3.Connection:
        db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False, timeout=30)
        db.row_factory = sqlite3.Row
        db.execute("PRAGMA synchronous=NORMAL")
        if self._shared is None and self.path != ":memory:":
            # No commit checkpoints (copies the log into the database and syncs both, milliseconds
            # on the event loop every ~200 commits): the checkpointer thread does (_Checkpoints).
            db.execute("PRAGMA wal_autocheckpoint=0")
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
        """Write what is waiting, close the database (every thread's connection)."""
        if self._group:
            self._flush()
        if self._checkpoints is not None:
            self._checkpoints.close()
        with self._lock:
            connections, self._connections = self._connections, []
        for db in connections:
            db.close()

    # -- writing -------------------------------------------------------------------------------

    def add(self, job: JobRecord) -> JobRecord:
        """Insert a new job, committed on return; sets its ``seq``. Any thread (a large job's: not the loop)."""
        self._flush_first()
        self._transaction([self._insert(job)])
        return job

    def save(self, job: JobRecord) -> None:
        """Write a job's state, times, attempts, result and error, committed on return."""
        self._flush_first()
        self._transaction([self._update(job)])

    def _flush_first(self) -> None:
        """On the event loop, grouped writes go first: a direct write must not be overtaken by an older one."""
        if self._group and self._group_thread == threading.get_ident():
            self._flush()

    def add_async(self, job: JobRecord) -> asyncio.Future:
        """:meth:`add` on the event loop, in one transaction with the other writes of this turn of the
        loop; await the future it returns (it resolves once the job is committed)."""
        return self._grouped(self._insert(job))

    def save_async(self, job: JobRecord) -> asyncio.Future:
        """:meth:`save` on the event loop, grouped the same way: a future that resolves once committed."""
        return self._grouped(self._update(job))

    def save_later(self, job: JobRecord) -> None:
        """:meth:`save` grouped with the next flush, that nobody waits for (a failure is logged): a job starting."""
        self._grouped(self._update(job))

    def _grouped(self, op: tuple) -> asyncio.Future:
        loop = asyncio.get_running_loop()
        future = loop.create_future()
        if not self._group:
            self._group_thread = threading.get_ident()
            if GROUP_DELAY_S:
                loop.call_later(GROUP_DELAY_S, self._flush)
            else:
                loop.call_soon(self._flush_after, (GROUP_TURNS_BUSY if self._busy else GROUP_TURNS) - 1)
        self._group.append((*op, future))
        return future

    def _flush_after(self, turns: int) -> None:
        """:meth:`_flush` once ``turns`` more turns of the loop have run (see GROUP_TURNS)."""
        if turns:
            asyncio.get_running_loop().call_soon(self._flush_after, turns - 1)
        else:
            self._flush()

    def _flush(self) -> None:
        group, self._group = self._group, []
        if not group:  # flushed early by a direct write
            return
        self._busy = len(group) > 1
        # Only a job's last state update in the group is written: into its insert, when the
        # group has that too (a job that ended within the group is one row written once).
        last = {op[1].id: i for i, op in enumerate(group) if op[0] == "update"}
        wanted = []
        for i, op in enumerate(group):
            if op[0] == "insert":
                update = last.pop(op[1].id, None)  # (state, started, ended, attempts, result, error, id)
                if update is not None:
                    state, *times_result = group[update][2][:6]
                    op = (op[0], op[1], (*op[2][:2], state, *op[2][3:7], *times_result), *op[3:])
                wanted.append(op)
            elif last.get(op[1].id) == i:
                wanted.append(op)
        try:
            self._transaction(wanted)
            failed = {}
        except Exception:
            failed = {}
            for op in wanted:  # each on its own: one bad write (a duplicate id) must not fail the others
                try:
                    self._transaction([op])
                except Exception as exc:
                    _log.error("job %s: could not write it to the job store: %s", op[1].id, exc)
                    failed[op[1].id] = exc
        for op in group:
            future, exc = op[4], failed.get(op[1].id)
            if future.done():
                continue
            if exc is None:
                future.set_result(None)
            else:
                future.set_exception(exc)
                future.exception()  # retrieved: a "running" write nobody awaits logs nothing more

    def _insert(self, job: JobRecord) -> tuple:
        doc = None
        if job.digest is None or job.digest not in self._known:
            doc = large.dumps(job.workflow)
            job.digest = job.digest or document_digest(doc)
        row = (job.id, job.name, job.state, json.dumps(job.params),
               None if job.outputs is None else json.dumps(job.outputs), job.created, job.digest, *self._update(job)[2][1:6])
        return ("insert", job, row, doc)

    @staticmethod
    def _update(job: JobRecord) -> tuple:
        # The values as they are now: the record may change again before the writer gets to it.
        values = (job.state, job.started, job.ended, job.attempts, result_text(job),
                  None if job.error is None else json.dumps(job.error), job.id)
        return ("update", job, values, None)

    def _transaction(self, ops: list[tuple]) -> None:
        """Apply ``ops`` (inserts and updates) in one transaction of this thread's connection."""
        written = []
        with self._begun() as db:
            for kind, job, values, doc, *_ in ops:
                if kind == "update":
                    db.execute(self._SAVE_SQL, values)
                    continue
                if doc is not None:
                    db.execute(self._DOC_SQL, (job.digest, doc))
                    written.append(job.digest)
                job.seq = self._seq(db.execute(self._INSERT_SQL, values))
        self._known.update(written)  # once committed: a document rolled back is written again next time
        if self._checkpoints is not None:
            self._checkpoints.committed()

    @contextmanager
    def _begun(self) -> Iterator[sqlite3.Connection]:
        """This thread's connection inside a write transaction, committed on exit (rolled back on an error)."""
        with self._db() as db:
            db.execute("BEGIN IMMEDIATE")
            try:
                yield db
            except BaseException:
                db.execute("ROLLBACK")
                raise
            db.execute("COMMIT")

    @staticmethod
    def _seq(cursor) -> int:
        """The ``seq`` of the row an insert's cursor wrote."""
        return cursor.lastrowid

    # -- reading -------------------------------------------------------------------------------

    #: the SQL dialect's parameter placeholder (PostgreSQL's store: "%s")
    _P = "?"
    #: a job with its workflow document: stored once by hash, or (older databases) by job id, or in the row
    _WITH_DOC = (f"SELECT {_JOINED}, coalesce(d.doc, w.doc, j.workflow) AS doc FROM jobs j "
                 "LEFT JOIN documents d ON d.hash = j.doc_hash LEFT JOIN workflows w ON w.id = j.id WHERE j.id=?")

    def get(self, job_id: str, *, workflow: bool = True) -> JobRecord | None:
        """The job with this id (and its workflow, unless ``workflow`` is false), or None."""
        with self._db() as db:
            if not workflow:
                row = db.execute(f"SELECT {_COLUMNS} FROM jobs WHERE id={self._P}", (job_id,)).fetchone()
                return None if row is None else _record(row)
            row = db.execute(self._WITH_DOC, (job_id,)).fetchone()
        return None if row is None else _record(row, large.loads(row["doc"]))

    def page(self, *, state: str | None = None, limit: int = 50, before: int | None = None) -> list[JobRecord]:
        """Newest first, without their workflows; ``before`` is a ``seq`` to continue from (the last one's)."""
        p, sql, args = self._P, f"SELECT {_COLUMNS} FROM jobs WHERE 1=1", []
        if state is not None:
            sql += f" AND state={p}"
            args.append(state)
        if before is not None:
            sql += f" AND seq<{p}"
            args.append(before)
        sql += f" ORDER BY seq DESC LIMIT {p}"
        args.append(limit)
        with self._db() as db:
            rows = db.execute(sql, args).fetchall()
        return [_record(row) for row in rows]

    def with_state(self, state: str) -> list[JobRecord]:
        """Every job in ``state``, oldest first, without their workflows (``get`` has them)."""
        with self._db() as db:
            rows = db.execute(f"SELECT {_COLUMNS} FROM jobs WHERE state={self._P} ORDER BY seq", (state,)).fetchall()
        return [_record(row) for row in rows]

    def counts(self) -> dict[str, int]:
        """Number of jobs per state."""
        with self._db() as db:
            rows = db.execute("SELECT state, COUNT(*) AS n FROM jobs GROUP BY state").fetchall()
        return {row["state"]: row["n"] for row in rows}


class _Checkpoints:
    """A thread that checkpoints the write-ahead log, so that commits on the event loop never do.

    A checkpoint copies committed pages from the log into the database and syncs both files: some
    milliseconds, which SQLite would otherwise spend inside whichever commit crossed its
    threshold (on the event loop, every couple of hundred jobs). Here it runs once every
    :data:`EVERY` commits or :data:`IDLE_S` seconds after the last one, as a PASSIVE checkpoint
    (it never blocks a writer or a reader); the log restarts from its beginning once a checkpoint
    has copied all of it. Durability is unchanged: a commit is in the log before it returns.
    """

    EVERY = 200
    IDLE_S = 1.0

    def __init__(self, connect) -> None:
        self._connect = connect
        self._due = threading.Event()
        self._commits = 0  # since the last checkpoint (written on the loop, read here: a hint, no lock)
        self._closing = False
        self._thread = threading.Thread(target=self._loop, name="flow-jobs-checkpoint", daemon=True)
        self._thread.start()

    def committed(self) -> None:
        """Count a commit; wakes the thread every EVERY commits."""
        self._commits += 1
        if self._commits >= self.EVERY:
            self._due.set()

    def close(self) -> None:
        """Stop the thread after one last checkpoint."""
        self._closing = True
        self._due.set()
        self._thread.join(30)

    def _loop(self) -> None:
        db = self._connect()
        try:
            while not self._closing:
                self._due.wait(self.IDLE_S)
                self._due.clear()
                if self._commits:
                    self._commits = 0
                    self._checkpoint(db, "PASSIVE")
            self._checkpoint(db, "TRUNCATE")  # closing: the log goes into the database, and is emptied
        finally:
            db.close()

    @staticmethod
    def _checkpoint(db: sqlite3.Connection, mode: str) -> None:
        try:
            db.execute(f"PRAGMA wal_checkpoint({mode})")
        except sqlite3.Error as exc:  # busy or locked: the next one catches up (the log only grows meanwhile)
            _log.warning("job store checkpoint (%s) failed: %s", mode, exc)


def _record(row: sqlite3.Row, workflow: dict | None = None) -> JobRecord:
    return JobRecord(
        id=row["id"], name=row["name"], state=row["state"], workflow=workflow,
        params=json.loads(row["params"]), outputs=None if row["outputs"] is None else json.loads(row["outputs"]),
        created=row["created"], seq=row["seq"], started=row["started"], ended=row["ended"],
        attempts=row["attempts"], result=None if row["result"] is None else large.loads(row["result"]),
        error=None if row["error"] is None else json.loads(row["error"]),
    )


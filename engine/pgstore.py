"""Job records in PostgreSQL, for several gateways sharing one queue and history.

`FLOW_JOBS_DB=postgresql://USER:PASSWORD@HOST:5432/DB` selects it (:func:`open_store`); SQLite
stays the default. :class:`PgJobStore` is a :class:`~engine.jobstore.JobStore` with another
database under it: the same group commit (writes made on the event loop share one transaction,
``add_async``/``save_async`` resolve once committed, ``save_later`` is fire-and-forget), the same
documents-by-hash table, the same reads (``get``, ``page``, ``with_state``, ``counts``). Only the
connection, the SQL dialect and the transaction differ.

psycopg 3 is imported when the store opens, never at module import (a SQLite user needs none of it).
Each thread has its own connection (psycopg connections serialise their commands); the schema is
created under an advisory lock so that gateways starting together do not race on it.
"""

from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

from .jobstore import _COLUMNS, JobStore

_SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (
    seq      BIGSERIAL PRIMARY KEY,
    id       TEXT NOT NULL UNIQUE,
    name     TEXT NOT NULL,
    state    TEXT NOT NULL,
    workflow TEXT NOT NULL DEFAULT '',
    params   TEXT NOT NULL,
    outputs  TEXT,
    created  DOUBLE PRECISION NOT NULL,
    started  DOUBLE PRECISION,
    ended    DOUBLE PRECISION,
    attempts INTEGER NOT NULL DEFAULT 0,
    result   TEXT,
    error    TEXT,
    doc_hash TEXT
);
CREATE INDEX IF NOT EXISTS jobs_state ON jobs (state, seq);
CREATE TABLE IF NOT EXISTS documents (
    hash TEXT PRIMARY KEY,
    doc  TEXT NOT NULL
);
"""
#: the advisory lock the schema is created under (any constant: "flow" in ASCII)
_SCHEMA_LOCK = 0x666C6F77
_JOINED = ", ".join("j." + column for column in _COLUMNS.split(", "))
_SAVE_SQL = "UPDATE jobs SET state=%s, started=%s, ended=%s, attempts=%s, result=%s, error=%s WHERE id=%s"
_INSERT_SQL = ("INSERT INTO jobs (id, name, state, params, outputs, created, doc_hash, started, ended, attempts, "
               "result, error, workflow) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, '') RETURNING seq")
_DOC_SQL = "INSERT INTO documents (hash, doc) VALUES (%s, %s) ON CONFLICT (hash) DO NOTHING"
#: seconds to wait for the server to accept a connection
CONNECT_TIMEOUT_S = 10


def is_url(target: str | Path) -> bool:
    """True when ``FLOW_JOBS_DB`` names a PostgreSQL server rather than a SQLite file."""
    return isinstance(target, str) and target.startswith(("postgresql://", "postgres://"))


def open_store(target: str | Path) -> JobStore:
    """The job store ``FLOW_JOBS_DB`` names: PostgreSQL for a ``postgresql://`` URL, else a SQLite file."""
    if is_url(target):
        return PgJobStore(str(target))
    return JobStore(target)


def redact(url: str) -> str:
    """The URL without its password, for logs and error messages."""
    head, sep, tail = url.partition("://")
    if "@" not in tail:
        return url
    credentials, _, rest = tail.rpartition("@")
    user = credentials.split(":", 1)[0]
    return f"{head}{sep}{user}:***@{rest}" if ":" in credentials else url


class PgJobStore(JobStore):
    """The jobs table in PostgreSQL; see the module's doc. Same interface as :class:`JobStore`."""

    def __init__(self, url: str):  # not super().__init__ (SQLite's file and pragmas): the same state, its schema
        self.path = url
        self._start()
        with self._begun() as db:
            db.execute("SELECT pg_advisory_xact_lock(%s)", (_SCHEMA_LOCK,))
            db.execute(_SCHEMA)

    def __repr__(self) -> str:
        return f"PgJobStore({redact(self.path)!r})"

    def _connect(self):
        import psycopg
        from psycopg.rows import dict_row

        try:
            db = psycopg.connect(self.path, autocommit=True, row_factory=dict_row, connect_timeout=CONNECT_TIMEOUT_S)
        except psycopg.OperationalError as exc:
            # the driver's message may quote the URL: never the password
            raise ConnectionError(f"cannot reach the job database {redact(self.path)}: "
                                  f"{str(exc).replace(self.path, redact(self.path))}") from None
        with self._lock:
            self._connections.append(db)
        return db

    @contextmanager
    def _db(self) -> Iterator[Any]:
        db = getattr(self._local, "db", None)
        if db is None or db.closed:
            db = self._local.db = self._connect()
        yield db

    # -- writing: JobStore's, in this dialect ------------------------------------------------------

    _SAVE_SQL, _INSERT_SQL, _DOC_SQL = _SAVE_SQL, _INSERT_SQL, _DOC_SQL

    @contextmanager
    def _begun(self) -> Iterator[Any]:
        with self._db() as db, db.transaction():
            yield db

    @staticmethod
    def _seq(cursor) -> int:
        return cursor.fetchone()["seq"]

    # -- reading: JobStore's, in this dialect ------------------------------------------------------

    _P = "%s"
    _WITH_DOC = (f"SELECT {_JOINED}, coalesce(d.doc, j.workflow) AS doc FROM jobs j "
                 "LEFT JOIN documents d ON d.hash = j.doc_hash WHERE j.id=%s")

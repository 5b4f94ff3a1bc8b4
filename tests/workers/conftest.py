"""Fixtures of the worker and job-store tests: a real PostgreSQL and a real Redis, started once."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from worker_servers import Postgres, Redis  # noqa: E402


@pytest.fixture(scope="session")
def postgres_server():
    """One PostgreSQL server for the session; skipped, with the reason, only when it cannot run here."""
    pytest.importorskip("psycopg", reason="psycopg is not installed (pip install -e '.[workers]')")
    try:
        server = Postgres()
    except FileNotFoundError as exc:
        pytest.skip(str(exc))
    yield server
    server.stop()


@pytest.fixture
def postgres_url(postgres_server):
    """A fresh database on the session's server."""
    return postgres_server.new_database()


@pytest.fixture(scope="session")
def redis_server():
    """One redis-server for the session."""
    try:
        server = Redis()
    except FileNotFoundError as exc:
        pytest.skip(str(exc))
    yield server
    server.stop()


@pytest.fixture(params=["sqlite", "postgresql"])
def store_target(request, tmp_path):
    """Where a job store lives: a SQLite file, then a PostgreSQL database (each test runs on both)."""
    if request.param == "sqlite":
        return tmp_path / "jobs.sqlite3"
    return request.getfixturevalue("postgres_url")

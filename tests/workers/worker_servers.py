"""Real servers for the worker and job-store tests: PostgreSQL and Redis on free loopback ports.

Both are Debian packages (the Makefile's test target installs them); each runs from a fresh
temporary folder and is stopped by the caller (the fixtures in conftest.py). PostgreSQL refuses to
run as root: as root, the folder is handed to the ``postgres`` user and the server runs as it.
"""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_port(port: int, timeout: float = 30.0, proc: subprocess.Popen | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"the server exited with {proc.returncode} before listening on {port}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nothing listens on 127.0.0.1:{port} after {timeout} s")


def postgres_bin(name: str) -> str | None:
    """A PostgreSQL server program (initdb, pg_ctl, postgres): on PATH or in Debian's versioned folder."""
    found = shutil.which(name)
    if found:
        return found
    candidates = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))
    return candidates[-1] if candidates else None


class Postgres:
    """A PostgreSQL server on a free loopback port, trusting local connections; :meth:`stop` removes it."""

    def __init__(self) -> None:
        initdb, postgres = postgres_bin("initdb"), postgres_bin("postgres")
        if not (initdb and postgres):
            raise FileNotFoundError("PostgreSQL's server programs (initdb, postgres) are not installed "
                                    "(Debian: apt-get install postgresql; `make test` does)")
        self.folder = Path(tempfile.mkdtemp(prefix="flow-pg-"))
        self.port = free_port()
        self.prefix: list[str] = []
        if os.geteuid() == 0:  # initdb and postgres refuse root
            import pwd

            user = pwd.getpwnam("postgres")
            os.chown(self.folder, user.pw_uid, user.pw_gid)
            self.prefix = [shutil.which("runuser") or "runuser", "-u", "postgres", "--"]
        data = self.folder / "data"
        done = subprocess.run([*self.prefix, initdb, "-D", str(data), "-U", "postgres", "--auth=trust",
                               "--no-sync", "-E", "UTF8", "--locale=C.UTF-8"],
                              capture_output=True, text=True, timeout=120)
        if done.returncode != 0:
            raise RuntimeError(f"initdb failed: {done.stderr[-2000:]}")
        self.log = open(self.folder / "server.log", "wb")
        self.proc = subprocess.Popen(
            [*self.prefix, postgres, "-D", str(data), "-p", str(self.port), "-h", "127.0.0.1",
             "-k", str(self.folder), "-c", "fsync=off", "-c", "synchronous_commit=off",
             "-c", "full_page_writes=off", "-c", "max_connections=200"],
            stdout=self.log, stderr=subprocess.STDOUT)
        try:
            wait_port(self.port, proc=self.proc)
            self._ready()
        except Exception:
            self.stop()
            raise
        self._databases = 0

    def _ready(self, timeout: float = 30.0) -> None:
        import psycopg

        deadline = time.monotonic() + timeout
        while True:
            try:
                psycopg.connect(self.url("postgres"), connect_timeout=2).close()
                return
            except psycopg.OperationalError:  # "the database system is starting up"
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)

    def url(self, database: str) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"

    def new_database(self) -> str:
        """A fresh, empty database's URL (one per test: no test sees another's jobs)."""
        import psycopg

        self._databases += 1
        name = f"flow_test_{self._databases}"
        with psycopg.connect(self.url("postgres"), autocommit=True) as db:
            db.execute(f"DROP DATABASE IF EXISTS {name}")
            db.execute(f"CREATE DATABASE {name}")
        return self.url(name)

    def stop(self) -> None:
        import signal

        if self.proc.poll() is None:
            # the server itself (under runuser, a child of ours); SIGINT is its "fast" shutdown
            # (SIGTERM's "smart" one waits for every client to leave)
            try:
                pid = int((self.folder / "data" / "postmaster.pid").read_text().split()[0])
                os.kill(pid, signal.SIGINT)
            except (OSError, ValueError, IndexError):
                self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()
        shutil.rmtree(self.folder, ignore_errors=True)


class Redis:
    """A redis-server on a free loopback port, without persistence; :meth:`stop` ends it."""

    def __init__(self) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            raise FileNotFoundError("redis-server is not installed (Debian: apt-get install redis-server; "
                                    "`make test` does)")
        self.folder = Path(tempfile.mkdtemp(prefix="flow-redis-"))
        self.port = free_port()
        self.proc = subprocess.Popen(
            [binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
             "--dir", str(self.folder), "--protected-mode", "yes"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            wait_port(self.port, proc=self.proc)
        except Exception:
            self.stop()
            raise

    def url(self, db: int = 0) -> str:
        return f"redis://127.0.0.1:{self.port}/{db}"

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        shutil.rmtree(self.folder, ignore_errors=True)

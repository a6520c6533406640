"""A real PostgreSQL server for the memory and vector-store tests: one per session, on loopback.

The server comes from the ``pgserver`` wheel when it is installed (it bundles pgvector), else
from Debian's ``postgresql`` package (``pg_config --bindir``, or ``/usr/lib/postgresql/*/bin``;
no pgvector). ``initdb`` and ``pg_ctl`` run on a temporary folder and a free loopback port, as an
unprivileged user when the tests run as root (PostgreSQL refuses to run as root). Each test gets
a fresh database. Without a server the tests skip, saying why - except in CI (``CI=true``), where
they fail: there the server must be installed (``.ci/run``).
"""

from __future__ import annotations

import importlib.util
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import uuid
from dataclasses import dataclass
from pathlib import Path

import pytest


@dataclass
class PostgresServer:
    port: int
    pgvector: bool

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"

    def fresh_database(self) -> str:
        import psycopg

        name = f"t_{uuid.uuid4().hex[:12]}"
        with psycopg.connect(self.url(), autocommit=True) as conn:
            conn.execute(f"CREATE DATABASE {name}")
        return self.url(name)


def _bindir() -> tuple[Path, bool] | None:
    """Where initdb and pg_ctl are, and whether that build has pgvector."""
    wheel = importlib.util.find_spec("pgserver")  # found, not imported: importing it starts nothing we need
    if wheel is not None and wheel.origin:
        bundled = Path(wheel.origin).parent / "pginstall" / "bin"
        if (bundled / "initdb").exists():
            return bundled, True
    candidates = []
    if shutil.which("pg_config"):
        found = subprocess.run(["pg_config", "--bindir"], capture_output=True, text=True, check=False)
        candidates.append(Path(found.stdout.strip()))
    candidates += sorted(Path("/usr/lib/postgresql").glob("*/bin"), reverse=True)
    for bindir in candidates:
        if (bindir / "initdb").exists() and (bindir / "pg_ctl").exists():
            return bindir, False
    return None


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _unavailable(reason: str):
    if os.environ.get("CI") == "true":
        pytest.fail(f"{reason}; CI must run the PostgreSQL tests (.ci/run installs the server)")
    pytest.skip(reason)


@pytest.fixture(scope="session")
def postgres_server():
    """Start PostgreSQL once for the session; stop it and delete its folder at the end."""
    found = _bindir()
    if found is None:
        _unavailable("no PostgreSQL server binaries (install Debian's postgresql, or pip install pgserver)")
    bindir, pgvector = found
    user = None
    if os.geteuid() == 0:
        names = [entry.pw_name for entry in pwd.getpwall()]
        user = "postgres" if "postgres" in names else "nobody"
    folder = Path(tempfile.mkdtemp(prefix="roadmap-pg-"))
    if user:
        shutil.chown(folder, user)
    data, port = folder / "data", _free_port()

    def run(*command: str) -> None:
        subprocess.run(command, check=True, capture_output=True, user=user, cwd=folder)

    try:
        run(str(bindir / "initdb"), "-D", str(data), "-U", "postgres", "-A", "trust", "--no-sync")
        run(str(bindir / "pg_ctl"), "-D", str(data), "-l", str(folder / "log"), "-w", "start",
            "-o", f"-h 127.0.0.1 -p {port} -k {folder} -F")
    except subprocess.CalledProcessError as exc:
        shutil.rmtree(folder, ignore_errors=True)
        _unavailable(f"PostgreSQL did not start ({exc.stderr.decode(errors='replace').strip()[-300:]})")
    try:
        yield PostgresServer(port, pgvector)
    finally:
        subprocess.run([str(bindir / "pg_ctl"), "-D", str(data), "-m", "immediate", "stop"],
                       capture_output=True, user=user, check=False)
        shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture
def postgres_url(postgres_server):
    """A fresh, empty database on the session's server: ``postgresql://postgres@127.0.0.1:PORT/t_...``."""
    return postgres_server.fresh_database()


@pytest.fixture
def pgvector_url(postgres_server):
    """A fresh database on a server that has pgvector."""
    if not postgres_server.pgvector:
        _unavailable("this PostgreSQL has no pgvector (pip install pgserver, which bundles it)")
    return postgres_server.fresh_database()

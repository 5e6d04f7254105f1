"""A throwaway PostgreSQL server in a temporary directory, for the tests and the benchmarks.

Debian's server binaries (``/usr/lib/postgresql/<major>/bin``) are run as they are: initdb,
then ``pg_ctl start`` on a loopback port with trust authentication, the data directory and
socket in a fresh temporary directory. initdb refuses to run as root, so as root the server
runs as the ``postgres`` user (``runuser``) in a directory that user owns. Databases are made
and dropped per test with pytest-postgresql's ``DatabaseJanitor``.

Example::

    server = PgServer.start()
    url = server.url("postgres")
    ...
    server.stop()
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from bench.ports import free_port

USER = "postgres"


class PgUnavailableError(RuntimeError):
    """No PostgreSQL server can be started here; the message says why (tests skip on it)."""


def find_bindir() -> Path:
    """The newest installed server's bin directory (initdb, pg_ctl)."""
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"), key=lambda p: int(p.parts[-3]))
    if found:
        return found[-1].parent
    initdb = shutil.which("initdb")
    if initdb:
        return Path(initdb).parent
    raise PgUnavailableError(
        "PostgreSQL server binaries not found (Debian: apt-get install postgresql)"
    )


@dataclass
class PgServer:
    """One running server: ``url(dbname)``, ``stop``, ``start_again``, ``destroy``."""

    bindir: Path
    root: Path
    port: int
    as_user: list[str]

    @classmethod
    def start(cls) -> PgServer:
        bindir = find_bindir()
        as_user: list[str] = []
        root = Path(tempfile.mkdtemp(prefix="softsensor-pg-"))
        if os.geteuid() == 0:
            try:
                entry = pwd.getpwnam(USER)
            except KeyError:
                raise PgUnavailableError(f"running as root and no {USER!r} user") from None
            os.chown(root, entry.pw_uid, entry.pw_gid)
            as_user = ["runuser", "-u", USER, "--"]
        server = cls(bindir, root, free_port(), as_user)
        server._run(
            "initdb", "-D", str(root / "data"), "-U", USER, "--auth=trust", "-E", "UTF8",
            "--no-sync", "--no-instructions",
        )  # fmt: skip
        server.start_again()
        return server

    def _run(self, tool: str, *args: str) -> None:
        cmd = [*self.as_user, str(self.bindir / tool), *args]
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=False)
        if done.returncode != 0:
            raise PgUnavailableError(f"{tool} failed ({done.returncode}): {done.stderr[-2000:]}")

    def start_again(self) -> None:
        """Start (or restart after ``stop``/``kill``) the server on the same port and data."""
        options = (
            f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1 -c max_connections=200"
        )
        self._run(
            "pg_ctl", "-D", str(self.root / "data"), "-o", options,
            "-l", str(self.root / "server.log"), "-w", "-t", "60", "start",
        )  # fmt: skip

    def stop(self, mode: str = "fast") -> None:
        """Stop the server (``immediate``: as a crash, recovered from the WAL at start)."""
        self._run("pg_ctl", "-D", str(self.root / "data"), "-m", mode, "-w", "stop")

    def url(self, dbname: str) -> str:
        return f"postgresql://{USER}@127.0.0.1:{self.port}/{dbname}"

    def destroy(self) -> None:
        with contextlib.suppress(PgUnavailableError):
            self.stop("immediate")
        shutil.rmtree(self.root, ignore_errors=True)

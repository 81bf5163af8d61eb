"""A real PostgreSQL server for tests, from Debian's `postgresql` package (initdb + postgres).

One cluster in a temp dir, on a free port bound to 127.0.0.1 only (Unix socket in the same dir),
trust authentication for the `postgres` role, fsync off (a throwaway cluster). PostgreSQL refuses
to run as root, so as root the cluster is made and run as the `postgres` system user (setpriv).
The server runs in its own process group, killed as a whole by `stop()`. Each test gets its own
database (`new_database`), so tests never share rows.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import subprocess
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

from .milvus_server import free_port, kill_group


def _bin_dir() -> Path | None:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(Path(p).parts[-3]))
    return Path(found[-1]).parent if found else None


def unavailable_reason() -> str | None:
    """Why a PostgreSQL server cannot run here, or None when it can."""
    if _bin_dir() is None:
        return "PostgreSQL is not installed (apt-get install postgresql: /usr/lib/postgresql/*/bin/initdb)"
    if os.geteuid() == 0:
        try:
            pwd.getpwnam("postgres")
        except KeyError:
            return "running as root and there is no 'postgres' user to run PostgreSQL as"
    try:
        import asyncpg  # noqa: F401
    except ImportError:
        return "the asyncpg driver is not installed (pip install -e '.[postgres]')"
    return None


@dataclass
class PostgresServer:
    base_dir: Path
    port: int = 0
    _proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def url_of(self, database: str) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"

    def _as_owner(self) -> list[str]:
        if os.geteuid() != 0:
            return []
        user = pwd.getpwnam("postgres")
        return ["setpriv", f"--reuid={user.pw_uid}", f"--regid={user.pw_gid}", "--init-groups"]

    def start(self, timeout: float = 30.0) -> None:
        bin_dir = _bin_dir()
        assert bin_dir is not None
        data = self.base_dir / "data"
        self.base_dir.mkdir(parents=True, exist_ok=True)
        if os.geteuid() == 0:
            user = pwd.getpwnam("postgres")
            os.chown(self.base_dir, user.pw_uid, user.pw_gid)
        subprocess.run(
            [*self._as_owner(), str(bin_dir / "initdb"), "-D", str(data), "-U", "postgres", "--auth=trust"]
            + ["--encoding=UTF8", "--locale=C.UTF-8", "--no-sync"],
            check=True,
            capture_output=True,
            cwd="/",
        )
        self.port = free_port()
        settings = ["-c", "listen_addresses=127.0.0.1", "-c", f"unix_socket_directories={self.base_dir}"]
        settings += ["-c", "fsync=off", "-c", "synchronous_commit=off", "-c", "full_page_writes=off"]
        log = open(self.base_dir / "postgres.log", "ab")  # noqa: SIM115 (owned by the child)
        self._proc = subprocess.Popen(
            [*self._as_owner(), str(bin_dir / "postgres"), "-D", str(data), "-p", str(self.port), *settings],
            cwd="/",
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        log.close()
        try:
            self._wait_ready(bin_dir, timeout)
        except BaseException:
            self.stop()
            raise

    def _wait_ready(self, bin_dir: Path, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._proc is None or self._proc.poll() is not None:
                raise RuntimeError(f"PostgreSQL exited during start-up; see {self.base_dir / 'postgres.log'}")
            ready = subprocess.run(
                [str(bin_dir / "pg_isready"), "-h", "127.0.0.1", "-p", str(self.port), "-U", "postgres"],
                capture_output=True,
            )
            if ready.returncode == 0:
                return
            time.sleep(0.1)
        raise TimeoutError(f"PostgreSQL was not ready within {timeout:.0f} s; see {self.base_dir / 'postgres.log'}")

    def psql(self, sql: str, database: str = "postgres") -> str:
        bin_dir = _bin_dir()
        assert bin_dir is not None
        out = subprocess.run(
            [str(bin_dir / "psql"), "-h", "127.0.0.1", "-p", str(self.port), "-U", "postgres", "-d", database]
            + ["-v", "ON_ERROR_STOP=1", "-Atc", sql],
            check=True,
            capture_output=True,
            text=True,
        )
        return out.stdout

    def new_database(self, icu_locale: str | None = None) -> str:
        """A fresh empty database's URL; with `icu_locale` (e.g. "en-US") its default collation is that
        locale's, not the cluster's byte order (C.UTF-8)."""
        name = f"t_{uuid.uuid4().hex[:16]}"
        icu = f" LOCALE_PROVIDER icu ICU_LOCALE '{icu_locale}' TEMPLATE template0" if icu_locale else ""
        self.psql(f"CREATE DATABASE {name}{icu}")
        return self.url_of(name)

    def stop(self) -> None:
        proc, self._proc = self._proc, None
        if proc is None:
            return
        kill_group(proc)
        shutil.rmtree(self.base_dir, ignore_errors=True)

"""A throwaway PostgreSQL server for the tests, standard library only.

`python3 scripts/test.py` starts one before pytest and exports its URL as POND_TEST_PG_URL;
tests/pg.py starts one itself when pytest runs alone. The cluster lives in a temporary
folder, listens on 127.0.0.1 on a free port (its socket in the same folder), trusts local
connections and runs without fsync: it is thrown away when the run ends.

PostgreSQL refuses to run as root, so as root the server runs as the `postgres` user of the
Debian package, or as a system user `pond-pg` created for it when that one is missing."""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path

SUPERUSER = "pond"
FALLBACK_USER = "pond-pg"


class PgUnavailable(RuntimeError):
    """No server could be started; the message says why (English: it reaches pytest skips)."""


def find_bin_dir() -> Path | None:
    """The newest /usr/lib/postgresql/<major>/bin with initdb and pg_ctl (Debian layout),
    else initdb on PATH."""
    found: list[tuple[int, Path]] = []
    for folder in glob.glob("/usr/lib/postgresql/*/bin"):
        path = Path(folder)
        if (path / "initdb").exists() and (path / "pg_ctl").exists():
            try:
                found.append((int(path.parent.name.split(".")[0]), path))
            except ValueError:
                continue
    if found:
        return max(found)[1]
    initdb = shutil.which("initdb")
    return Path(initdb).parent if initdb else None


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _server_user() -> str | None:
    """Who runs the server: None (ourselves) unless we are root."""
    if os.geteuid() != 0:
        return None
    for name in ("postgres", FALLBACK_USER):
        try:
            pwd.getpwnam(name)
            return name
        except KeyError:
            continue
    useradd = shutil.which("useradd")
    if useradd is None:
        raise PgUnavailable("running as root and no unprivileged user for PostgreSQL")
    subprocess.run(
        [useradd, "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", FALLBACK_USER],
        check=True,
        capture_output=True,
    )
    return FALLBACK_USER


class TempServer:
    """start() -> URL of the `postgres` database as superuser `pond`; stop() removes it all."""

    def __init__(self, bin_dir: Path | None = None) -> None:
        self.bin_dir = bin_dir or find_bin_dir()
        self.folder: Path | None = None
        self.url = ""
        self._user: str | None = None

    def _run(self, *cmd: str) -> subprocess.CompletedProcess[str]:
        prefix = ["runuser", "-u", self._user, "--"] if self._user else []
        return subprocess.run(
            [*prefix, *cmd], capture_output=True, text=True, timeout=120, check=False
        )

    def start(self) -> str:
        if self.bin_dir is None:
            raise PgUnavailable("PostgreSQL binaries not found (/usr/lib/postgresql/*/bin)")
        self._user = _server_user()
        self.folder = Path(tempfile.mkdtemp(prefix="pond-pg-"))
        if self._user:
            info = pwd.getpwnam(self._user)
            os.chown(self.folder, info.pw_uid, info.pw_gid)
        data = self.folder / "data"
        init = self._run(
            str(self.bin_dir / "initdb"),
            "-D", str(data),
            "-U", SUPERUSER,
            "--auth=trust",
            "--encoding=UTF8",
            "--no-locale",
            "--no-sync",
        )  # fmt: skip
        if init.returncode != 0:
            self.stop()
            raise PgUnavailable(f"initdb failed: {init.stderr.strip()[-500:]}")
        for _attempt in range(3):
            port = _free_port()
            options = (
                f"-h 127.0.0.1 -p {port} -k {self.folder} "
                "-c fsync=off -c synchronous_commit=off -c full_page_writes=off "
                "-c max_connections=200"
            )
            started = self._run(
                str(self.bin_dir / "pg_ctl"),
                "-D", str(data),
                "-o", options,
                "-l", str(self.folder / "server.log"),
                "-w", "-t", "60",
                "start",
            )  # fmt: skip
            if started.returncode == 0:
                self.url = f"postgresql://{SUPERUSER}@127.0.0.1:{port}/postgres"
                return self.url
        log = self.folder / "server.log"
        tail = log.read_text(errors="replace")[-500:] if log.exists() else started.stderr
        self.stop()
        raise PgUnavailable(f"PostgreSQL did not start: {tail.strip()}")

    def stop(self) -> None:
        """Idempotent; also after a failed start."""
        if self.folder is None:
            return
        data = self.folder / "data"
        if self.bin_dir is not None and (data / "postmaster.pid").exists():
            pg_ctl = str(self.bin_dir / "pg_ctl")
            self._run(pg_ctl, "-D", str(data), "-m", "immediate", "-w", "stop")
        shutil.rmtree(self.folder, ignore_errors=True)
        self.folder = None
        self.url = ""

"""One bot per data directory: an OS lock (flock) on ``<data_dir>/pond.lock`` held for the
life of the process.

The kernel drops the lock when the process ends, however it ends (kill -9 included), so
a stale lock cannot block a restart, and two bots started in the same instant cannot both
win (the heartbeat check they used to rely on raced). The file holds the owner's pid, for
the message only: the lock, not the file, decides. The command-line tools never take the
lock; they ask ``holder()`` whether a bot is running and hand their work to it."""

from __future__ import annotations

import contextlib
import fcntl
import os
import time
from pathlib import Path

from .errors import StoreError

__all__ = ["LOCK_FILE", "InstanceLock", "InstanceLocked", "holder", "running"]

LOCK_FILE = "pond.lock"


class InstanceLocked(StoreError):
    """Another process holds the data directory."""

    def __init__(self, data_dir: Path, pid: int | None) -> None:
        who = f"pid {pid}" if pid else "pid 未知"
        super().__init__(
            f"另一个 pond 机器人（{who}）正在使用数据目录 {data_dir}。同一个数据目录只能运行一个"
            "机器人：请先停止它（或用 --data-dir 指定另一个目录）再启动。"
        )
        self.pid = pid


def _read_pid(fd: int) -> int | None:
    with contextlib.suppress(OSError, ValueError):
        text = os.pread(fd, 32, 0).decode("ascii", "replace").strip()
        return int(text) if text else None
    return None


class InstanceLock:
    """``acquire()`` or InstanceLocked naming the holder's pid; ``release()`` at exit."""

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = Path(data_dir)
        self.path = self.data_dir / LOCK_FILE
        self._fd: int | None = None

    @property
    def held(self) -> bool:
        return self._fd is not None

    def acquire(self) -> None:
        if self._fd is not None:
            return
        self.data_dir.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            # A command-line tool asking holder() holds a shared lock for an instant: try
            # for a second before concluding that another bot owns the directory.
            for attempt in range(10):
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if attempt == 9:
                        raise InstanceLocked(self.data_dir, _read_pid(fd)) from None
                    time.sleep(0.1)
        except BaseException:
            os.close(fd)
            raise
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode("ascii"), 0)
        self._fd = fd

    def release(self) -> None:
        fd, self._fd = self._fd, None
        if fd is not None:
            # The pid is left in the file on purpose: it is only read while the lock is held.
            with contextlib.suppress(OSError):
                fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)

    def __enter__(self) -> InstanceLock:
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


def holder(data_dir: Path) -> int | None:
    """The pid of the bot holding ``data_dir`` (0 if its pid is unknown), or None when no
    bot holds it. Never creates anything."""
    path = Path(data_dir) / LOCK_FILE
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:  # no lock file: no bot has ever run here (or the dir is not ours)
        return None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return _read_pid(fd) or 0
        except OSError:
            return None
        fcntl.flock(fd, fcntl.LOCK_UN)
        return None
    finally:
        os.close(fd)


def running(data_dir: Path) -> bool | None:
    """Whether a bot runs on ``data_dir``, by the lock: True or False, or None when no bot
    that takes the lock has ever run there (then only a heartbeat can tell)."""
    if not (Path(data_dir) / LOCK_FILE).exists():
        return None
    return holder(data_dir) is not None

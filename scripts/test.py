"""The whole check, as CI runs it: `python3 scripts/test.py` (installs what it needs first).

ruff on all Python code, mypy --strict on pond/ and plugins/, then pytest. Extra arguments
go to pytest (e.g. `python3 scripts/test.py -k outbox`).

The WeChat end-to-end tests run the reference puppet server (Node.js, tests/puppet_server):
its npm packages are installed from the lock file when missing or changed, and Node.js
itself with apt-get when it is missing and we run as root (CI containers).

The browser tests (tests/browser.py) drive Debian's Chromium, installed the same way with a
Chinese font for legible screenshots; its path reaches them as POND_CHROMIUM.

The PostgreSQL tests run against a real server: Debian's `postgresql` package (apt-get as
root when missing), a throwaway cluster on 127.0.0.1 started before pytest and removed
after it, also when the run fails or is interrupted; its URL reaches them as POND_TEST_PG_URL."""

from __future__ import annotations

import functools
import hashlib
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _env import ROOT, ensure_venv
from _pg import PgUnavailable, TempServer, find_bin_dir

HELP = """用法：python3 scripts/test.py [pytest 的参数…]

全部检查，和 CI 一样：ruff 检查全部 Python 代码，mypy --strict 检查 pond/ 和 plugins/，然后 pytest。
多出来的参数交给 pytest（例如 python3 scripts/test.py -k outbox）。第一次运行会先装好需要的东西：
开发依赖、端到端测试用的 puppet 服务（Node.js）；以 root 运行时用 apt-get 装 Chromium、字体和
PostgreSQL。PostgreSQL 的测试用一个临时数据库服务（只监听 127.0.0.1），测试结束后删除。"""

if __name__ == "__main__" and sys.argv[1:] in (["-h"], ["--help"]):
    print(HELP)
    sys.exit(0)

ensure_venv(dev=True)


def run(*cmd: str) -> int:
    print("$", " ".join(cmd), flush=True)
    return subprocess.run([sys.executable, "-m", *cmd], cwd=ROOT).returncode


def can_apt() -> bool:
    return hasattr(os, "geteuid") and os.geteuid() == 0 and shutil.which("apt-get") is not None


def apt_get(*args: str) -> None:
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    # dpkg's per-package chatter would bury the test output; apt's errors go to stderr.
    subprocess.run(["apt-get", *args], env=env, stdout=subprocess.DEVNULL, check=False)


@functools.cache
def apt_update() -> None:
    """Once per run, however many steps install something."""
    apt_get("update", "-qq")


def apt_install(*packages: str) -> None:
    apt_update()
    apt_get("install", "-y", "-qq", *packages)


PUPPET_SERVER = ROOT / "tests" / "puppet_server"
NODE_MIN = 16


def node_major() -> int:
    node = shutil.which("node")
    if node is None:
        return 0
    result = subprocess.run([node, "--version"], capture_output=True, text=True)
    try:
        return int(result.stdout.strip().lstrip("v").split(".")[0])
    except ValueError:
        return 0


def ensure_node() -> bool:
    """Node.js and npm for the puppet server; apt-get them as root when missing."""
    if (node_major() == 0 or shutil.which("npm") is None) and can_apt():
        print("正在安装 Node.js（apt-get install nodejs npm）…", flush=True)
        apt_install("nodejs", "npm")
    major = node_major()
    if major == 0 or shutil.which("npm") is None:
        print("Node.js/npm not found: the WeChat end-to-end tests will be skipped", flush=True)
        return False
    if major < NODE_MIN:
        print(f"Node.js {major} is too old for the puppet server (needs {NODE_MIN}+)", flush=True)
    return True


def ensure_puppet_server() -> None:
    """`npm ci` in tests/puppet_server when node_modules is missing or the lock changed."""
    if not ensure_node():
        return
    lock = PUPPET_SERVER / "package-lock.json"
    stamp = PUPPET_SERVER / "node_modules" / ".pond-lock-sha256"
    wanted = hashlib.sha256(lock.read_bytes()).hexdigest()
    if stamp.exists() and stamp.read_text() == wanted:
        return
    print("正在安装测试用的 puppet 服务（npm ci，tests/puppet_server）…", flush=True)
    npm = shutil.which("npm") or "npm"
    command = [npm, "ci", "--no-audit", "--no-fund", "--loglevel=error"]
    if subprocess.run(command, cwd=PUPPET_SERVER).returncode == 0:
        stamp.write_text(wanted)
    else:
        print("npm ci failed: the WeChat end-to-end tests will fail", flush=True)


def find_chromium() -> str | None:
    """The same search as tests/browser.py's chromium_path(), less POND_CHROMIUM."""
    if os.access("/usr/bin/chromium", os.X_OK):
        return "/usr/bin/chromium"
    return shutil.which("chromium") or shutil.which("chromium-browser")


def has_chinese_font() -> bool:
    fc_list = shutil.which("fc-list")
    if fc_list is None:
        return False
    result = subprocess.run([fc_list, ":lang=zh", "family"], capture_output=True, text=True)
    return bool(result.stdout.strip())


def ensure_chromium() -> None:
    """Debian's Chromium for the browser tests; apt-get it as root when missing.

    Without a Chinese font the report's screenshots show boxes instead of labels, so a small
    one (1.6 MB) comes along."""
    chosen = os.environ.get("POND_CHROMIUM")
    chromium = chosen if chosen and os.access(chosen, os.X_OK) else find_chromium()
    missing = [] if chromium else ["chromium"]
    if not has_chinese_font():
        missing.append("fonts-wqy-microhei")
    if missing and can_apt():
        print(f"正在安装浏览器测试所需的 {' '.join(missing)}（apt-get）…", flush=True)
        apt_install(*missing)
        chromium = chromium or find_chromium()
    if chromium is None:
        print("Chromium not found: the browser tests will be skipped", flush=True)
        return
    os.environ["POND_CHROMIUM"] = chromium


def start_postgresql() -> TempServer | None:
    """A throwaway PostgreSQL for the tests (see scripts/_pg.py); apt-get it as root when
    missing. Its URL reaches the tests as POND_TEST_PG_URL."""
    if os.environ.get("POND_TEST_PG_URL"):
        return None  # the caller provides one
    if find_bin_dir() is None and can_apt():
        print("正在安装 PostgreSQL（apt-get install postgresql）…", flush=True)
        apt_install("postgresql")
    server = TempServer()
    try:
        os.environ["POND_TEST_PG_URL"] = server.start()
    except (PgUnavailable, OSError, subprocess.SubprocessError) as error:
        print(f"PostgreSQL 无法启动，用到它的测试将跳过（{error}）", flush=True)
        return None
    print(f"测试用 PostgreSQL 已启动：{os.environ['POND_TEST_PG_URL']}", flush=True)
    return server


def main() -> int:
    ensure_puppet_server()
    ensure_chromium()
    # A CI job cancelled with SIGTERM still runs the finally below (the server is removed).
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
    server = start_postgresql()
    try:
        return run_steps()
    finally:
        if server is not None:
            server.stop()


def run_steps() -> int:
    steps = [
        ("ruff", "check", "pond", "plugins", "scripts", "tests", "examples", "bot.py"),
        ("mypy", "examples"),
        ("mypy", "pond", "plugins"),
        ("pytest", "-q", *sys.argv[1:]),
    ]
    failed = [step[0] for step in steps if run(*step) != 0]
    if failed:
        print("FAILED:", ", ".join(failed), flush=True)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

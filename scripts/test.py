"""The whole check, as CI runs it: `python3 scripts/test.py` (installs what it needs first).

ruff on all Python code, mypy --strict on pond/ and plugins/, then pytest. Extra arguments
go to pytest (e.g. `python3 scripts/test.py -k outbox`).

The WeChat end-to-end tests run the reference puppet server (Node.js, tests/puppet_server):
its npm packages are installed from the lock file when missing or changed, and Node.js
itself with apt-get when it is missing and we run as root (CI containers)."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _env import ROOT, ensure_venv

ensure_venv(dev=True)


def run(*cmd: str) -> int:
    print("$", " ".join(cmd), flush=True)
    return subprocess.run([sys.executable, "-m", *cmd], cwd=ROOT).returncode


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
    if node_major() == 0 or shutil.which("npm") is None:
        is_root = hasattr(os, "geteuid") and os.geteuid() == 0
        if is_root and shutil.which("apt-get"):
            print("正在安装 Node.js（apt-get install nodejs npm）…", flush=True)
            env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
            subprocess.run(["apt-get", "update", "-qq"], env=env, check=False)
            subprocess.run(
                ["apt-get", "install", "-y", "-qq", "nodejs", "npm"], env=env, check=False
            )
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


def main() -> int:
    ensure_puppet_server()
    steps = [
        ("ruff", "check", "pond", "plugins", "scripts", "tests", "bot.py"),
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

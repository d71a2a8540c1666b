"""Set-up on first run, standard library only: create .venv beside the project, install the
pinned requirements into it when they change, and re-run the command inside it.

Set POND_NO_VENV=1 to use the current interpreter as it is (packaged installs, containers)."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
VENV = ROOT / ".venv"
PYTHON = VENV / "bin" / "python"


def _requirements_hash(files: list[Path]) -> str:
    digest = hashlib.sha256()
    for path in files:
        digest.update(path.read_bytes())
    return digest.hexdigest()


def ensure_venv(dev: bool = False) -> None:
    chinese_argparse()
    if os.environ.get("POND_NO_VENV") == "1":
        return
    if sys.version_info < (3, 11):  # noqa: UP036  (users run this with any python3)
        sys.exit(f"pond needs Python 3.11 or newer; this is {sys.version.split()[0]}")
    req = ROOT / ("requirements-dev.txt" if dev else "requirements.txt")
    files = [ROOT / "requirements.txt", req]
    stamp = VENV / (".pond-dev-req" if dev else ".pond-req")
    wanted = _requirements_hash(files)
    inside = Path(sys.prefix).resolve() == VENV.resolve()
    if inside and stamp.exists() and stamp.read_text() == wanted:
        return
    if not PYTHON.exists():
        print("首次运行：正在创建虚拟环境 .venv …", file=sys.stderr, flush=True)
        venv.EnvBuilder(with_pip=True).create(VENV)
    if not stamp.exists() or stamp.read_text() != wanted:
        print(f"正在安装依赖（{req.name}）…", file=sys.stderr, flush=True)
        subprocess.run(
            [
                str(PYTHON),
                "-m",
                "pip",
                "install",
                "--quiet",
                "--disable-pip-version-check",
                "-r",
                str(req),
            ],
            check=True,
        )
        stamp.write_text(wanted)
    if not inside:
        os.execv(str(PYTHON), [str(PYTHON), *sys.argv])


def bootstrap(venv: bool = True) -> None:
    """What a tool does first when run as a program (scripts/ is then sys.path[0]): re-run
    inside .venv with the pinned requirements, and make the project's packages importable."""
    if venv:
        ensure_venv()
    else:
        chinese_argparse()
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))


# argparse's own words (usage, option titles, errors) in the operators' language.
_ARGPARSE_ZH = {
    "usage: ": "用法：",
    "positional arguments": "参数",
    "options": "选项",
    "show this help message and exit": "显示本说明并退出",
    "%(prog)s: error: %(message)s\n": "%(prog)s：错误：%(message)s（--help 查看用法）\n",
    "argument %(argument_name)s: %(message)s": "参数 %(argument_name)s：%(message)s",
    "the following arguments are required: %s": "缺少参数：%s",
    "unrecognized arguments: %s": "不认识的参数：%s",
    "invalid choice: %(value)r (choose from %(choices)s)": "不能是 %(value)r，可选：%(choices)s",
    "invalid %(type)s value: %(value)r": "%(value)r 格式不对",
    "expected one argument": "后面要跟一个值",
    "expected at most one argument": "后面最多跟一个值",
    "expected at least one argument": "后面至少跟一个值",
    "not allowed with argument %s": "不能和 %s 一起用",
    "one of the arguments %s is required": "需要其中一个：%s",
    "ambiguous option: %(option)s could match %(matches)s": "%(option)s 不明确，可能是 %(matches)s",
    "ignored explicit argument %r": "多余的值 %r",
    "can't open '%(filename)s': %(error)s": "打不开 %(filename)s：%(error)s",
}


def chinese_argparse() -> None:
    """Make argparse's usage line, section titles and error messages Chinese (the help of
    each option is written in Chinese by each tool)."""
    import argparse

    argparse._ = lambda text: _ARGPARSE_ZH.get(text, text)  # type: ignore[attr-defined]
    # An option without its own metavar is shown with its English name in capitals
    # (--contacts CONTACTS): show 值 ("a value") instead.
    argparse.HelpFormatter._get_default_metavar_for_optional = (  # type: ignore[method-assign]
        lambda self, action: "值"
    )

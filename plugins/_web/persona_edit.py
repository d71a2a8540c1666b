"""The 人设 editor's file side: which template a key names (only inside the persona folder,
never through a symlink), a trial of an edit through the bot's own persona loader, and an
atomic save.

The trial copies the persona folder to a temporary one, puts the edit in, and loads it
with `Persona` exactly as the bot does at start and on hot reload: the same sandbox, the
same limits, every template parsed and trial-rendered with its sample values. A refused
edit is reported with file:line and never touches the real folder."""

from __future__ import annotations

import os
import re
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from pond import Persona, PersonaError

# persona/<plugin>/<name>.j2, named as the persona README asks (letters, digits, _ and -).
_PART = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$")
MAX_SOURCE = 20_000


@dataclass(frozen=True)
class Trial:
    problems: list[str] = field(default_factory=list)  # "persona/x/y.j2:3: reason"
    previews: list[tuple[str, str]] = field(default_factory=list)  # (layer, text)

    @property
    def ok(self) -> bool:
        return not self.problems


def parts(key: str) -> tuple[str, str] | None:
    plugin, sep, name = key.partition("/")
    if not sep or not _PART.match(plugin) or not _PART.match(name):
        return None  # "../x", "/etc/passwd", "a/b/c", "_layers/..." never name a template
    return plugin, name


def locate(root: Path, key: str) -> Path | None:
    """The brand template file of `key`, or None: a key that is no plain plugin/name, a
    file that does not exist, a symlink (file or folder), or anything resolving outside."""
    split = parts(key)
    if split is None:
        return None
    folder = root / split[0]
    path = folder / f"{split[1]}.j2"
    if folder.is_symlink() or path.is_symlink() or not path.is_file():
        return None
    if not path.resolve().is_relative_to(root.resolve()):
        return None
    return path


def read(path: Path) -> str:
    """The file's text, refusing to follow a symlink put there since `locate` looked."""
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    with os.fdopen(fd, encoding="utf-8") as handle:
        return handle.read(MAX_SOURCE + 1)


def listing(root: Path, query: str = "") -> dict[str, list[str]]:
    """Editable keys by plugin; with `query`, those whose key or text contains it."""
    wanted = query.strip().lower()
    found: dict[str, list[str]] = {}
    for folder in sorted(root.iterdir()):
        if folder.is_symlink() or not folder.is_dir() or parts(f"{folder.name}/x") is None:
            continue
        for path in sorted(folder.glob("*.j2")):
            key = f"{folder.name}/{path.stem}"
            if locate(root, key) is None:
                continue
            if wanted and wanted not in key.lower() and wanted not in read(path).lower():
                continue
            found.setdefault(folder.name, []).append(key)
    return found


def trial(root: Path, key: str, source: str, max_chars: int, cache: Path) -> Trial:
    """Load the persona folder with `source` as `key`'s template (in a copy); blocking."""
    split = parts(key)
    if split is None:
        raise ValueError(key)
    with tempfile.TemporaryDirectory(prefix="pond-persona-trial-") as folder:
        copy = Path(folder) / root.resolve().name  # problems then read "persona/..."
        shutil.copytree(root, copy, symlinks=True)
        (copy / split[0] / f"{split[1]}.j2").write_text(source, encoding="utf-8")
        try:
            persona = Persona(copy, max_chars=max_chars, code_cache=cache)
        except PersonaError as error:
            return Trial(problems=[str(e) for e in error.errors])
        previews: list[tuple[str, str]] = []
        for layer in persona.layer_names():
            try:
                shown = persona.render_sample(key, layer)
            except (PersonaError, KeyError, ValueError):
                continue
            previews.extend((layer, r.text) for r in shown if (layer, r.text) not in previews)
        return Trial(previews=previews)


def save(path: Path, source: str) -> None:
    """Replace the file atomically (a crash leaves the old or the new text, never half)."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(source)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)  # replaces the name; never writes through a symlink
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise

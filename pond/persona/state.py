"""Loading a whole persona folder into a `_State` that can be served.

`_build` reads persona.toml and the shared files, builds the sandbox, and loads every base
template and layer override, keeping the last good version of a file that broke on reload.
"""

from __future__ import annotations

import traceback
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jinja2

from pond.persona.codecache import CodeCache, SharedFilesCache
from pond.persona.errors import PersonaError, say
from pond.persona.files import (
    BRAND,
    CONFIG_FILE,
    VOICE_FILE,
    _classify,
    _Layer,
    _origin,
    _parse_config,
    _read,
)
from pond.persona.sandbox import _Env, _make_env
from pond.persona.templates import _TOO_DEEP, _describe, _Entry, _load_entry, syntax_problem


@dataclass
class _State:
    env: _Env
    brand: Mapping[str, Any]
    layers: dict[str, _Layer]
    entries: dict[tuple[str, str], _Entry]
    voice: jinja2.Template | None
    fingerprint: tuple[object, ...]
    modules: dict[tuple[str, ...], Any] = field(default_factory=dict)


def _voice_module(voice: jinja2.Template, variables: Mapping[str, Any]) -> Any:
    return voice.make_module(dict(variables))


def _build(
    root: Path,
    label: str,
    paths: Iterable[str],
    previous: _State | None,
    cache: CodeCache | None = None,
    fallbacks: Sequence[Path] = (),
) -> tuple[_State | None, list[PersonaError]]:
    """Load a persona folder. Returns (None, errors) when the whole load must be refused."""

    def shown(rel: str) -> str:
        return f"{label}/{rel}"

    files = _classify(paths)
    try:
        config_text = _read(root, CONFIG_FILE, label) if files.config else ""
        brand, layers = _parse_config(config_text, shown(CONFIG_FILE))
        shared = {rel: _read(root, rel, label) for rel in files.shared}
    except PersonaError as err:
        return None, [err]
    env = _make_env(brand, shared, label)
    if cache is not None:
        env.bytecode_cache = SharedFilesCache(cache, brand)
    for rel in shared:
        try:
            env.get_template(rel)
        except jinja2.TemplateSyntaxError as exc:
            syntax = say(
                "syntax_file",
                "syntax error (line {line}): {detail}",
                line=exc.lineno,
                detail=syntax_problem(exc.message or ""),
            )
            return None, [PersonaError(shown(rel), exc.lineno, syntax)]
        except (RecursionError, MemoryError, SyntaxError):
            the_file = say("the_file", "the file")
            return None, [PersonaError(shown(rel), None, say("too_deep", _TOO_DEEP, what=the_file))]
    voice = env.get_template(VOICE_FILE) if VOICE_FILE in shared else None
    contexts: dict[str, Mapping[str, Any]] = {BRAND: {}}
    contexts.update((name, layer.vars) for name, layer in layers.items())
    modules: dict[str, Any] = {}
    for name, context in contexts.items():
        if voice is None:
            modules[name] = None
            continue
        try:
            modules[name] = _voice_module(voice, context)
        except Exception as exc:
            frames = [
                f.lineno
                for f in traceback.extract_tb(exc.__traceback__)
                if f.filename == shown(VOICE_FILE)
            ]
            reason = (
                _describe(exc)
                if name == BRAND
                else say(
                    "voice_layer",
                    "{detail} with the vars of layer {layer!r}",
                    detail=_describe(exc),
                    layer=name,
                )
            )
            return None, [PersonaError(shown(VOICE_FILE), frames[-1] if frames else None, reason)]

    errors = [PersonaError(shown(rel), None, reason) for rel, reason in files.misplaced]
    entries: dict[tuple[str, str], _Entry] = {}
    refused = False

    def load(layer: str, key: str, rel: str) -> None:
        nonlocal refused
        path = shown(rel)
        kwargs: dict[str, Any] = {
            "key": key,
            "layer": layer,
            "path": path,
            "context": contexts[layer],
            "voice": modules[layer],
            "cache": cache,
            "brand": brand,
        }
        try:
            folder = _origin(root, fallbacks, rel)
            entries[layer, key] = _load_entry(env, text=_read(folder, rel, label), **kwargs)
            return
        except PersonaError as err:
            failure = err
        old = previous.entries.get((layer, key)) if previous else None
        if old is None or old.path != path:
            errors.append(failure)
            return
        try:
            entries[layer, key] = _load_entry(env, text=old.source, **kwargs)
        except PersonaError:
            refused = True  # the last good version broke too: persona.toml or a shared file did it
            errors.append(failure)
            return
        errors.append(
            PersonaError(
                failure.file,
                failure.line,
                say(
                    "kept",
                    "{reason}; the last good version keeps serving",
                    reason=failure.reason,
                ),
            )
        )

    for key, rel in files.bases:
        load(BRAND, key, rel)
    for layer, key, rel in files.overrides:
        if layer not in layers:
            errors.append(
                PersonaError(
                    shown(rel),
                    None,
                    say(
                        "unknown_layer_file",
                        "unknown layer {layer!r}: add a [layers.{layer}] table to {file}",
                        layer=layer,
                        file=CONFIG_FILE,
                    ),
                )
            )
        elif (BRAND, key) not in entries:
            errors.append(
                PersonaError(
                    shown(rel),
                    None,
                    say(
                        "no_base",
                        "overrides {key!r}, which has no working base file {base}",
                        key=key,
                        base=shown(key + ".j2"),
                    ),
                )
            )
        else:
            load(layer, key, rel)
    if cache is not None:
        cache.save()
    if refused:
        errors.insert(
            0,
            PersonaError(
                label,
                None,
                say(
                    "reload_refused",
                    "reload refused: the change breaks templates that were working; "
                    "the previous persona keeps serving",
                ),
            ),
        )
        return None, errors
    fingerprint = (
        config_text,
        tuple(sorted(shared.items())),
        tuple(sorted((layer, key, e.source) for (layer, key), e in entries.items())),
    )
    return _State(env, brand, layers, entries, voice, fingerprint), errors

"""`Persona`, the public API: render keys for a chat, resolve layers, poll for changes."""

from __future__ import annotations

import asyncio
import logging
import random
import threading
from collections import OrderedDict
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pond.persona.codecache import CodeCache
from pond.persona.errors import PersonaError, UnknownKeyError, _combine, say
from pond.persona.files import BRAND, CONFIG_FILE, VOICE_GLOBAL, _scan, _Snapshot
from pond.persona.limits import cancellable
from pond.persona.state import _build, _State, _voice_module
from pond.persona.templates import _describe, _Entry, _locate

log = logging.getLogger("pond.persona")

ELLIPSIS = "…"
VARIANT_MEMORY = 50_000
"""How many (chat, key) pairs remember their last variant; the oldest are forgotten first."""

_VOICE_CACHE = 256  # voice modules cached per layer chain before the cache is cleared

RELOAD_TIMEOUT_S = 30.0
"""How long loading a whole folder may take (at start, or a reload). Each render is bounded
(pond.persona.limits); this bounds a folder of many slow-but-allowed ones."""


@contextmanager
def _stopped_after(seconds: float) -> Iterator[threading.Event]:
    """An event set after `seconds`: renders started under `cancellable(event)` give up at
    their next step. Each render is bounded; this bounds a whole folder of them."""
    stop = threading.Event()
    timer = threading.Timer(seconds, stop.set)
    timer.daemon = True
    timer.start()
    try:
        yield stop
    finally:
        timer.cancel()


@dataclass(frozen=True)
class Rendered:
    key: str
    text: str
    layer: str
    variant: int


# Built states of unchanged folders (same files, sizes, mtimes): a process that builds
# several Apps (tests, the CLI next to checks) trial-renders every template only once.
# A state is never mutated after it is built, except for its lazily made voice modules.
_BUILT: dict[tuple[str, object], _State] = {}


class Persona:
    """All persona templates of one folder, ready to render.

    `Persona(root)` loads and trial-renders everything and raises PersonaError if anything is
    broken. `render()` picks a variant (never the same one twice in a row in one chat),
    resolves layers and caps the length. `reload_if_changed()` is meant to be polled.
    With `code_cache` (a file), compiled variants are kept there for the next start.
    """

    def __init__(
        self,
        root: Path,
        *,
        max_chars: int = 1500,
        rng: random.Random | None = None,
        variant_memory: int = VARIANT_MEMORY,
        code_cache: Path | None = None,
    ) -> None:
        if max_chars < 2:
            raise ValueError("max_chars must be at least 2")
        self._root = Path(root)
        self._label = self._root.resolve().name or str(root)
        self._max_chars = max_chars
        self._rng = rng if rng is not None else random.Random()
        self._variant_memory = variant_memory
        self._last: OrderedDict[tuple[str, str], int] = OrderedDict()
        self._version = 1
        self._reloading = False
        self._cache = CodeCache(code_cache) if code_cache is not None else None
        if not self._root.is_dir():
            raise PersonaError(str(root), None, say("no_folder", "persona folder not found"))
        self._fallbacks: tuple[Path, ...] = ()
        self._snapshot = _scan(self._root)
        cache_key = (str(self._root.resolve()), tuple(sorted(self._snapshot.items())))
        state = _BUILT.get(cache_key)
        if state is None:
            with _stopped_after(RELOAD_TIMEOUT_S) as stop, cancellable(stop):
                state, errors = _build(self._root, self._label, self._snapshot, None, self._cache)
            if errors or state is None:
                raise _combine(errors)
            while len(_BUILT) >= 4:
                _BUILT.pop(next(iter(_BUILT)))
            _BUILT[cache_key] = state
        self._state = state
        log.info("persona loaded: %d keys, %d layers", len(self.keys()), len(state.layers))

    # ---------------------------------------------------------------- queries

    @property
    def version(self) -> int:
        """1 after loading; +1 on every reload that changed what is served."""
        return self._version

    def keys(self) -> list[str]:
        """Sorted keys of the base templates ("plugin/name")."""
        return sorted(key for layer, key in self._state.entries if layer == BRAND)

    def layer_names(self) -> list[str]:
        """ "brand" first, then the layers of persona.toml in file order."""
        return [BRAND, *self._state.layers]

    def has(self, key: str) -> bool:
        return (BRAND, key) in self._state.entries

    def file_for(self, key: str, layer: str = BRAND) -> str:
        """The file that serves `key` in `layer` (its override, else the base file)."""
        self._layer(layer)
        entry = self._state.entries.get((layer, key)) or self._base(key)
        return entry.path

    def require(self, keys: Iterable[str], *, owner: str) -> None:
        """Fail fast when a plugin needs keys that have no template file."""
        missing = [key for key in keys if not self.has(key)]
        if not missing:
            return
        paths = [self._expected_path(key) for key in missing]
        listed = [f"{key} ({path})" for key, path in zip(missing, paths, strict=True)]
        raise PersonaError(
            paths[0],
            None,
            say(
                "required",
                "plugin {plugin!r} needs persona key(s) with no template: {keys}",
                plugin=owner,
                keys=listed,
            ),
        )

    def layers_for(
        self, *, contact_id: str | None, room_id: str | None, tags: Iterable[str]
    ) -> list[str]:
        """Layers that apply, most specific first: contact, room, segments (by tag), brand.

        Within one kind, layers keep their persona.toml order.
        """
        if isinstance(tags, str):
            raise TypeError("tags must be an iterable of tags, not one str")
        tagset = set(tags)
        layers = self._state.layers.values()
        return [
            *(lay.name for lay in layers if lay.kind == "contact" and contact_id in lay.members),
            *(lay.name for lay in layers if lay.kind == "room" and room_id in lay.members),
            *(lay.name for lay in layers if lay.kind == "segment" and tagset & lay.members),
            BRAND,
        ]

    # ---------------------------------------------------------------- rendering

    def render(
        self,
        key: str,
        /,
        *,
        chat_id: str,
        contact_id: str | None = None,
        room_id: str | None = None,
        tags: Iterable[str] = (),
        **variables: object,
    ) -> Rendered:
        """Render `key` for one chat. Call variables win over layer vars over brand vars."""
        state, entry, chain, context = self._resolve(key, contact_id, room_id, tags, variables)
        index = self._pick(chat_id, key, len(entry.variants))
        rendered = self._render_variant(state, entry, index, chain, context)
        if len(entry.variants) > 1:
            self._remember(chat_id, key, index)
        return rendered

    def _resolve(
        self,
        key: str,
        contact_id: str | None,
        room_id: str | None,
        tags: Iterable[str],
        variables: dict[str, object],
    ) -> tuple[_State, _Entry, tuple[str, ...], dict[str, Any]]:
        """The entry the most specific layer serves for `key`, and its render context."""
        state = self._state
        chain = tuple(self.layers_for(contact_id=contact_id, room_id=room_id, tags=tags))
        served = (state.entries[lay, key] for lay in chain if (lay, key) in state.entries)
        entry = next(served, self._base(key))
        context = self._layer_vars(state, chain)
        context.update(variables)
        return state, entry, chain, context

    def render_sample(self, key: str, layer: str = BRAND) -> list[Rendered]:
        """Every variant of `key` as `layer` serves it, rendered with its sample values."""
        state = self._state
        self._layer(layer)
        entry = state.entries.get((layer, key)) or self._base(key)
        chain = (BRAND,) if layer == BRAND else (layer, BRAND)
        context = self._layer_vars(state, chain)
        context.update(entry.samples)
        return [
            self._render_variant(state, entry, index, chain, context)
            for index in range(len(entry.variants))
        ]

    def render_variants(
        self,
        key: str,
        /,
        *,
        contact_id: str | None = None,
        room_id: str | None = None,
        tags: Iterable[str] = (),
        **variables: object,
    ) -> list[Rendered]:
        """Every variant of `key` rendered with the given variables, as `render` would serve
        them, without touching the variant memory: checks and previews of copy whose variables
        come from data (a content calendar's post and its `vars`)."""
        state, entry, chain, context = self._resolve(key, contact_id, room_id, tags, variables)
        return [
            self._render_variant(state, entry, index, chain, context)
            for index in range(len(entry.variants))
        ]

    # ---------------------------------------------------------------- hot reload

    def add_folder(self, folder: Path) -> list[PersonaError]:
        """A plugin's own templates (Plugin(persona_dir=...)), under the brand's: a brand
        file with the same path overrides the plugin's. Loaded now; problems returned."""
        if not folder.is_dir():
            return [PersonaError(str(folder), None, say("no_folder", "persona folder not found"))]
        if folder.resolve() in {f.resolve() for f in self._fallbacks}:
            return []
        self._fallbacks = (*self._fallbacks, folder)
        return self.reload_if_changed()

    def reload_if_changed(self) -> list[PersonaError]:
        """Poll the folder; reload what changed. Returns the problems found (or [])."""
        snapshot = self._changed()
        if isinstance(snapshot, list) or snapshot is None:
            return snapshot or []
        with _stopped_after(RELOAD_TIMEOUT_S) as stop:
            return self._apply(self._load(snapshot, self._state, stop))

    async def reload_in_worker(self, *, timeout: float = RELOAD_TIMEOUT_S) -> list[PersonaError]:
        """`reload_if_changed`, with the loading and trial renders in a worker thread, so the
        event loop keeps serving while they run. A load still running after `timeout` seconds
        is stopped (its renders give up at their next step) and refused."""
        if self._reloading:
            return []  # the running reload will see the same files
        snapshot = self._changed()
        if isinstance(snapshot, list) or snapshot is None:
            return snapshot or []
        cancel = threading.Event()
        work = asyncio.get_running_loop().run_in_executor(
            None, self._load, snapshot, self._state, cancel
        )
        self._reloading = True
        try:
            loaded = await asyncio.wait_for(asyncio.shield(work), timeout)
        except TimeoutError:
            cancel.set()  # the worker stops soon; its result is dropped
            log.warning(
                "persona reload stopped after %g s; version %d keeps serving",
                timeout,
                self._version,
            )
            return [
                PersonaError(
                    self._label,
                    None,
                    say(
                        "reload_slow",
                        "reload stopped: loading took longer than {seconds} s; "
                        "the previous persona keeps serving",
                        seconds=f"{timeout:g}",
                    ),
                )
            ]
        except asyncio.CancelledError:
            cancel.set()  # the bot is stopping: do not keep a thread busy for nothing
            raise
        finally:
            self._reloading = False
        return self._apply(loaded)

    def _changed(self) -> _Snapshot | list[PersonaError] | None:
        """The folder's new snapshot, None when nothing changed, or the error reading it.
        The snapshot is taken as seen: a refused or stopped load is retried only once the
        files change again."""
        try:
            snapshot = _scan(self._root, self._fallbacks)
        except OSError as exc:
            return [
                PersonaError(
                    self._label,
                    None,
                    say("folder_unreadable", "cannot read persona folder: {error}", error=exc),
                )
            ]
        if snapshot == self._snapshot:
            return None
        self._snapshot = snapshot
        return snapshot

    def _load(
        self, snapshot: _Snapshot, previous: _State, cancel: threading.Event | None
    ) -> tuple[_State | None, list[PersonaError]]:
        """Build a new state; reads `previous` but changes nothing (it may run in a thread)."""
        try:
            with cancellable(cancel):
                return _build(
                    self._root, self._label, snapshot, previous, self._cache, self._fallbacks
                )
        except Exception as exc:  # a bug here must not stop a running bot
            log.exception("persona reload failed")
            return None, [
                PersonaError(
                    self._label, None, say("reload_failed", "reload failed: {error!r}", error=exc)
                )
            ]

    def _apply(self, loaded: tuple[_State | None, list[PersonaError]]) -> list[PersonaError]:
        state, errors = loaded
        for err in errors:
            log.warning("persona: %s", err)
        if state is None:
            log.warning("persona reload refused; version %d keeps serving", self._version)
            return errors
        changed = state.fingerprint != self._state.fingerprint
        self._state = state
        if changed:
            self._version += 1
            log.info("persona reloaded: version %d, %d keys", self._version, len(self.keys()))
        return errors

    # ---------------------------------------------------------------- internals

    def _expected_path(self, key: str) -> str:
        return f"{self._label}/{key}.j2"

    def _base(self, key: str) -> _Entry:
        entry = self._state.entries.get((BRAND, key))
        if entry is None:
            raise UnknownKeyError(
                self._expected_path(key),
                None,
                say("unknown_key", "unknown persona key {key!r}: no template file", key=key),
            )
        return entry

    def _layer(self, layer: str) -> None:
        if layer != BRAND and layer not in self._state.layers:
            raise PersonaError(
                f"{self._label}/{CONFIG_FILE}",
                None,
                say("unknown_layer", "unknown layer {layer!r}", layer=layer),
            )

    @staticmethod
    def _layer_vars(state: _State, chain: Sequence[str]) -> dict[str, Any]:
        merged: dict[str, Any] = {}
        for layer in reversed(chain):
            if layer != BRAND:
                merged.update(state.layers[layer].vars)
        return merged

    def _voice_for(self, state: _State, chain: tuple[str, ...]) -> Any:
        if state.voice is None:
            return None
        module = state.modules.get(chain)
        if module is None:
            if len(state.modules) >= _VOICE_CACHE:
                state.modules.clear()
            module = _voice_module(state.voice, self._layer_vars(state, chain))
            state.modules[chain] = module
        return module

    def _pick(self, chat_id: str, key: str, count: int) -> int:
        if count == 1:
            return 0
        last = self._last.get((chat_id, key))
        if last is None or last >= count:
            return self._rng.randrange(count)
        index = self._rng.randrange(count - 1)
        return index + 1 if index >= last else index

    def _remember(self, chat_id: str, key: str, index: int) -> None:
        memory = self._last
        memory[chat_id, key] = index
        memory.move_to_end((chat_id, key))
        while len(memory) > self._variant_memory:
            memory.popitem(last=False)

    def _render_variant(
        self,
        state: _State,
        entry: _Entry,
        index: int,
        chain: tuple[str, ...],
        context: dict[str, Any],
    ) -> Rendered:
        variant = entry.variants[index]
        where = say(
            "where",
            "{key} ({layer}, variant {n})",
            key=entry.key,
            layer=entry.layer,
            n=variant.number,
        )
        try:
            voice = self._voice_for(state, chain)
            if voice is not None:
                context = {**context, VOICE_GLOBAL: voice}
            text = variant.template.render(context).strip()
        except Exception as exc:
            line, via = _locate(exc, variant, state.env)
            raise PersonaError(
                entry.path,
                line,
                say("render", "{what}: {detail}{via}", what=where, detail=_describe(exc), via=via),
            ) from exc
        if not text:
            raise PersonaError(
                entry.path,
                variant.line,
                say("rendered_empty", "{what}: rendered empty text", what=where),
            )
        if len(text) > self._max_chars:
            log.warning(
                "persona %s rendered %d chars; cut to %d", where, len(text), self._max_chars
            )
            text = text[: self._max_chars - 1] + ELLIPSIS
        log.debug("persona %s: %r", where, text)
        return Rendered(key=entry.key, text=text, layer=entry.layer, variant=index)

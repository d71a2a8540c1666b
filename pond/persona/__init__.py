"""Persona: the brand voice, kept in Jinja2 templates that copywriters edit.

Layout of a persona folder (persona/README.md is the copywriter's guide)::

    persona/persona.toml                         brand variables and layers
    persona/_voice.j2                            shared macros, available everywhere as `voice`
    persona/<plugin>/<name>.j2                   key "plugin/name"; variants split by `---`
    persona/_layers/<layer>/<plugin>/<name>.j2   one layer's override of one key

Every variant of every file is parsed and trial-rendered with its sample variables when the
persona is loaded, so a broken template is refused with file:line before a customer sees it.
`Persona.reload_if_changed()` is a cheap poll: changed files that break keep their last good
version serving; a broken persona.toml or shared template keeps the whole previous state.

Templates run in Jinja2's `ImmutableSandboxedEnvironment` with `StrictUndefined`; they can
import or include only shared `_*.j2` files that were read at load time.
"""

from __future__ import annotations

from pond.persona.engine import Persona, Rendered
from pond.persona.errors import PersonaError, UnknownKeyError
from pond.persona.files import BRAND

__all__ = ["BRAND", "Persona", "PersonaError", "Rendered", "UnknownKeyError"]

"""Compiled templates that count their own work.

Jinja's sandbox routes calls, attribute lookups and chosen operators through the environment,
but not loop iterations, `~`, literal text or includes. `_CodeGenerator` routes those too:
every `{% for %}` iterates through `environment.guard_iter` (one step per item), `~` builds
through `environment.concat_checked`, each block of literal text is charged before it is
written, and includes/imports/extends take a step. `BoundedTemplate` renders inside a budget
and stops collecting output once it is over the output limit.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import jinja2
from jinja2 import nodes
from jinja2.compiler import CodeGenerator, Frame
from jinja2.environment import TemplateModule
from jinja2.runtime import Context

from pond.persona.limits import RenderLimitError, bounded

_GUARD_ITER = "guard_iter"


class _CodeGenerator(CodeGenerator):
    def visit_For(self, node: nodes.For, frame: Frame) -> None:
        # Jinja allows no custom node types: the wrapper is a call of an environment
        # attribute, which the parser never produces, written directly by visit_Call.
        wrapped = nodes.Call(nodes.EnvironmentAttribute(_GUARD_ITER), [node.iter], [], None, None)
        guarded = nodes.For(
            node.target,
            wrapped,
            node.body,
            node.else_,
            node.test,
            node.recursive,
            lineno=node.lineno,
        )
        super().visit_For(guarded, frame)

    def visit_Call(self, node: nodes.Call, frame: Frame, forward_caller: bool = False) -> None:
        callee = node.node
        if isinstance(callee, nodes.EnvironmentAttribute) and callee.name == _GUARD_ITER:
            self.write(f"environment.{_GUARD_ITER}(")
            self.visit(node.args[0], frame)
            self.write(")")
            return
        super().visit_Call(node, frame, forward_caller=forward_caller)

    def visit_Concat(self, node: nodes.Concat, frame: Frame) -> None:
        self.write("environment.concat_checked((")
        for arg in node.nodes:
            self.visit(arg, frame)
            self.write(", ")
        self.write("), context.eval_ctx.autoescape)")

    def visit_Output(self, node: nodes.Output, frame: Frame) -> None:
        # Literal text repeated by a loop or a macro is text built like any other.
        literal = sum(len(n.data) for n in node.nodes if isinstance(n, nodes.TemplateData))
        if literal:
            self.writeline(f"environment.charge_text({literal})")
        super().visit_Output(node, frame)

    def visit_Include(self, node: nodes.Include, frame: Frame) -> None:
        self.writeline("environment.tick()")
        super().visit_Include(node, frame)

    def visit_Import(self, node: nodes.Import, frame: Frame) -> None:
        self.writeline("environment.tick()")
        super().visit_Import(node, frame)

    def visit_FromImport(self, node: nodes.FromImport, frame: Frame) -> None:
        self.writeline("environment.tick()")
        super().visit_FromImport(node, frame)

    def visit_Extends(self, node: nodes.Extends, frame: Frame) -> None:
        self.writeline("environment.tick()")
        super().visit_Extends(node, frame)


def _collect(chunks: Iterable[str], limit: int) -> str:
    parts: list[str] = []
    total = 0
    for chunk in chunks:
        total += len(chunk)
        if total > limit:
            raise RenderLimitError(
                "output", "the template writes more than {limit} characters", limit=limit
            )
        parts.append(chunk)
    return "".join(parts)


class BoundedTemplate(jinja2.Template):
    """A template whose renders (and module builds) always run inside a budget."""

    def render(self, *args: Any, **kwargs: Any) -> str:
        context = self.new_context(dict(*args, **kwargs))
        with bounded() as budget:
            try:
                return _collect(self.root_render_func(context), budget.limits.output)
            except Exception:
                self.environment.handle_exception()

    def make_module(
        self,
        vars: dict[str, Any] | None = None,
        shared: bool = False,
        locals: Mapping[str, Any] | None = None,
    ) -> TemplateModule:
        with bounded():
            return super().make_module(vars, shared, locals)

    def _get_default_module(self, ctx: Context | None = None) -> TemplateModule:
        with bounded():
            return super()._get_default_module(ctx)

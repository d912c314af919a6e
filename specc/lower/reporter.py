"""Located diagnostics for the lowering modules, and the help texts they share.

A help that suggests values offers them (`Help`, `Values`) rather than writing them in
its text: `specc.fixes` keeps those that work for the whole spec.
"""

from __future__ import annotations

from specc import names
from specc.diagnostics import Clause, Diagnostics, Help, Span, Values
from specc.kinds.base import axis_sizes
from specc.source import Document, YamlPath


class Reporter:
    """Reports problems at a path of the spec, and says where a layer comes from."""

    def __init__(self, document: Document, diagnostics: Diagnostics) -> None:
        self.document = document
        self.diagnostics = diagnostics
        self.spec_file = names.file_label(document.file)

    def span(self, path: YamlPath, *, key: bool = False) -> Span:
        return self.document.span(path, key=key)

    def where(self, path: YamlPath) -> str:
        """`spec.yaml:12`, for the comments of generated code and the plan."""
        return f"{self.spec_file}:{self.document.line(path)}"

    def error(
        self,
        code: str,
        message: str,
        path: YamlPath,
        help: str | Help | None = None,
        *,
        key: bool = False,
    ) -> None:
        """Report at the value at `path`, or at its key (`key`)."""
        self.diagnostics.error(code, message, self.span(path, key=key), help=help)

    def warning(
        self, code: str, message: str, path: YamlPath, help: str | Help | None = None
    ) -> None:
        self.diagnostics.warning(code, message, self.span(path), help=help)

    def check_divisible(
        self,
        size: int,
        group: int,
        group_name: str,
        label: str,
        owner: str,
        path: YamlPath,
        *,
        help: str | Help | None = None,
        code: str = "E301",
    ) -> bool:
        """Report `label size of owner` (at `path`) unless `group` divides it."""
        if size % group == 0:
            return True
        self.error(
            code,
            f"{label} {size} of {owner} is not divisible by {group_name} {group}",
            path,
            help=help or divisibility_help(size, group, group_name, path),
        )
        return False


def divisibility_help(size: int, group: int, group_name: str, path: YamlPath) -> Help:
    """Sizes near `size` that `group` divides (at `path`), or group sizes that divide it."""
    below = size - size % group
    above = below + group
    multiples = (below, above) if below > 0 else (above,)
    return Help.of(
        Clause(
            f"make the size a multiple of {group} ({{}})",
            Values(path, multiples, separator=" or "),
        ),
        Clause(
            f"use a {group_name} size that divides {size}: {{}}",
            axis_sizes(size, group, group_name),
        ),
    )

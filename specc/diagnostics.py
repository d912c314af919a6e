"""Diagnostics: what went wrong, where in the spec, and how to fix it.

Every stage reports problems as `Diagnostic` values instead of raising, so a run can
collect all of them and print them at once, in file order. Only the CLI decides how
they look (see `report.py`) and what exit code they mean.

A help may offer values (`Help`, `Values`): sizes that would divide, the key a typo
meant. Stages offer candidates; `specc.fixes` keeps only those that, applied to the
spec, remove the diagnostic and add no error, and turns each into a `Fix`: the edits
of the file (or of a `--set`) that apply it, which `--format json` prints.
"""

from __future__ import annotations

import dataclasses
import enum
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from specc.codes import CODES

# A place in the spec: keys and list indices from the top, e.g. ("layers", 2, "split").
YamlPath = tuple[str | int, ...]


class Severity(str, enum.Enum):
    ERROR = "error"
    WARNING = "warning"


@dataclass(frozen=True, order=True)
class Span:
    """A region of a source file; lines and columns count from 1, as editors do."""

    file: str
    line: int
    column: int
    end_line: int
    end_column: int

    @classmethod
    def whole_file(cls, file: str) -> Span:
        return cls(file, 1, 1, 1, 1)


# -- suggestions ---------------------------------------------------------------------------

# What an offered value does at its path.
VALUE = "value"  # the value at the path becomes it (the key is added when absent)
KEY = "key"  # the key at the path is renamed to it
TEXT = "text"  # the text of `Values.span` is replaced by it (a string of YAML)
SET = "set"  # the --set `Values.replaces` becomes `<size>=<it>`, the size named by the path


@dataclass(frozen=True)
class Values:
    """Values offered for one place of the spec, best first; the help shows those that work.

    `path` is where they go: a path from the top of the spec, or (a `str`) a key of the
    layer whose rule reports, which the lowering walk turns into a path. `labels` are
    how the help shows each value (default: the value itself).
    """

    path: YamlPath | str
    candidates: tuple[Any, ...]
    separator: str = ", "
    action: str = VALUE
    labels: tuple[str, ...] | None = None
    span: Span | None = None  # for TEXT: the text replaced
    replaces: str | None = None  # for SET: the --set argument (name=value) replaced

    def label(self, index: int) -> str:
        if self.labels is not None:
            return self.labels[index]
        return show_value(self.candidates[index])

    def at(self, base: YamlPath) -> Values:
        """With a layer's key resolved against the layer's path `base`."""
        if isinstance(self.path, str):
            return dataclasses.replace(self, path=(*base, self.path))
        return self


@dataclass(frozen=True)
class Clause:
    """A piece of a help: text, with `{}` where `values` go when it offers some."""

    text: str
    values: Values | None = None


@dataclass(frozen=True)
class Help:
    """A help text: `lead`, then clauses joined by `joiner` ("a, or b").

    A clause offering values is shown with those of its values that work, and left out
    when none does; `otherwise` is shown when nothing is left.
    """

    clauses: tuple[Clause, ...]
    joiner: str = ", or "
    otherwise: str | None = None
    lead: str = ""

    @classmethod
    def of(
        cls,
        *parts: str | Clause,
        joiner: str = ", or ",
        otherwise: str | None = None,
        lead: str = "",
    ) -> Help:
        clauses = tuple(Clause(p) if isinstance(p, str) else p for p in parts)
        return cls(clauses, joiner, otherwise, lead)

    def values(self) -> list[Values]:
        return [c.values for c in self.clauses if c.values is not None]

    def at(self, base: YamlPath) -> Help:
        clauses = tuple(
            Clause(c.text, c.values.at(base)) if c.values is not None else c for c in self.clauses
        )
        return dataclasses.replace(self, clauses=clauses)

    def render(self, label: Callable[[Values, int], str | None] | None = None) -> str | None:
        """The text, offering the values `label` shows (None: leave it out); without
        `label`, every value as it is shown."""
        shown = []
        for clause in self.clauses:
            values = clause.values
            if values is None:
                if "{}" not in clause.text:
                    shown.append(clause.text)
                continue
            labels = (
                values.label(i) if label is None else label(values, i)
                for i in range(len(values.candidates))
            )
            kept = [text for text in labels if text is not None]
            if kept:
                shown.append(clause.text.replace("{}", _join(kept, values.separator)))
        return self.lead + self.joiner.join(shown) if shown else self.otherwise


def _join(items: list[str], separator: str) -> str:
    if separator == " or " and len(items) > 2:
        return ", ".join(items[:-1]) + " or " + items[-1]
    return separator.join(items)


def path_text(path: YamlPath) -> str:
    """`layers[2].split`, as messages name a place of the spec."""
    text = ""
    for part in path:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text


def show_value(value: Any) -> str:
    """A value as a help shows it (and as YAML reads it back)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "null"
    return str(value)


@dataclass(frozen=True)
class Edit:
    """One change of a spec file (`span` replaced by `text`) or of a `--set` override.

    `path` is the spec's place the edit changes (`sizes.hidden` when a reference leads
    there), `value` its new value; an override edit has `override`, the size's name,
    and no span.
    """

    path: YamlPath
    value: Any
    text: str
    span: Span | None = None
    override: str | None = None
    replaces: str | None = None  # the --set argument it replaces (default: the size's own)


@dataclass(frozen=True)
class Fix:
    """A suggestion that works: its edits, applied together, remove the diagnostic and
    add no error. `label` is how the help shows it."""

    label: str
    edits: tuple[Edit, ...]


@dataclass(frozen=True)
class Diagnostic:
    """One problem found, where it is, and how to fix it (`help`, `fixes`)."""

    severity: Severity
    code: str
    message: str
    span: Span
    help: str | None = None
    # The help as offered, before its values were checked (None: a plain help).
    offered: Help | None = field(default=None, compare=False, repr=False)
    fixes: tuple[Fix, ...] = ()

    def __post_init__(self) -> None:
        if self.code not in CODES:
            raise ValueError(f"diagnostic code {self.code} is not registered in specc/codes.py")

    @property
    def sort_key(self) -> tuple[str, int, int, str]:
        return (self.span.file, self.span.line, self.span.column, self.code)


@dataclass
class Diagnostics:
    """An ordered collection that stages append to; errors decide whether to go on."""

    items: list[Diagnostic] = field(default_factory=list)

    def error(self, code: str, message: str, span: Span, help: str | Help | None = None) -> None:
        self.add(Severity.ERROR, code, message, span, help)

    def warning(self, code: str, message: str, span: Span, help: str | Help | None = None) -> None:
        self.add(Severity.WARNING, code, message, span, help)

    def add(
        self, severity: Severity, code: str, message: str, span: Span, help: str | Help | None
    ) -> None:
        offered = help if isinstance(help, Help) else None
        text = help.render() if isinstance(help, Help) else help
        self.items.append(
            Diagnostic(severity, code, _one_line(message), span, _one_line_help(text), offered)
        )

    def extend(self, other: Diagnostics) -> None:
        self.items.extend(other.items)

    @property
    def error_count(self) -> int:
        return sum(1 for d in self.items if d.severity is Severity.ERROR)

    @property
    def has_errors(self) -> bool:
        return self.error_count > 0

    @property
    def warnings(self) -> list[Diagnostic]:
        return [d for d in self.items if d.severity is Severity.WARNING]

    def sorted(self) -> list[Diagnostic]:
        return sorted(self.items, key=lambda d: d.sort_key)


# A diagnostic is one line by contract (`file:line:col: ...`); a name from the spec
# may hold a line break, which is shown escaped instead.
_LINE_BREAK = re.compile("[\r\n\x0b\x0c\x1c-\x1e\x85\u2028\u2029]")


def _one_line(text: str) -> str:
    return _LINE_BREAK.sub(lambda m: m.group().encode("unicode_escape").decode(), text)


def _one_line_help(text: str | None) -> str | None:
    return None if text is None else _one_line(text)


class SpecError(Exception):
    """Raised at a stage boundary when the collected diagnostics contain errors."""

    def __init__(self, diagnostics: Diagnostics) -> None:
        self.diagnostics = diagnostics
        first = diagnostics.sorted()[0] if diagnostics.items else None
        super().__init__(first.message if first else "invalid spec")

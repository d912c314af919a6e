"""Diagnostics: what went wrong, where in the spec, and how to fix it.

Every stage reports problems as `Diagnostic` values instead of raising, so a run can
collect all of them and print them at once, in file order. Only the CLI decides how
they look (see `report.py`) and what exit code they mean.
"""

from __future__ import annotations

import dataclasses
import enum
import re
from dataclasses import dataclass, field

from specc.codes import CODES


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


@dataclass(frozen=True)
class Diagnostic:
    severity: Severity
    code: str
    message: str
    span: Span
    help: str | None = None

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

    def error(self, code: str, message: str, span: Span, help: str | None = None) -> None:
        self.items.append(
            Diagnostic(Severity.ERROR, code, _one_line(message), span, _one_line_help(help))
        )

    def warning(self, code: str, message: str, span: Span, help: str | None = None) -> None:
        self.items.append(
            Diagnostic(Severity.WARNING, code, _one_line(message), span, _one_line_help(help))
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

    def annotate(self, notes: dict[Span, str]) -> None:
        """Say where a value came from (an override) in every diagnostic located on it."""
        self.items = [
            dataclasses.replace(d, message=f"{d.message} ({notes[d.span]})")
            if d.span in notes
            else d
            for d in self.items
        ]

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

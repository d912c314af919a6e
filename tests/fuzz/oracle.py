"""What must hold of specc's answer to any spec, and of any package it generates.

`diagnostic_problems` checks `specc validate` in its three formats against the spec's
text: exit 0 or 2 and nothing else, every diagnostic located on a line and column that
exist, text output made only of the documented line forms, JSON and GitHub output
agreeing with it. `Vocabulary` checks generated code: every identifier is a word of
the templates (as the golden trees and templates/ show them) or a name from the spec,
and every string literal and comment is one the golden trees contain, once numbers,
the package name and the spec's file name are masked.
"""

from __future__ import annotations

import ast
import io
import json
import keyword
import re
import tokenize
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from specc import kinds
from specc.codes import CODES
from specc.spec.models import LAYER_KINDS
from tests.support.cli import Run
from tests.support.paths import GOLDEN, REPO, golden_specs

# YAML's line breaks (Python's str.splitlines adds \x0b, \x0c, \x1c-\x1e, which YAML forbids).
_YAML_BREAK = re.compile("\r\n|[\n\r\x85\u2028\u2029]")
_SUMMARY = re.compile(r"specc: \d+ errors?, \d+ warnings?")
_MORE = re.compile(r"\.\.\.and \d+ more")
_GITHUB = re.compile(r"::(error|warning) file=[^,]*,line=\d+,col=\d+,endLine=\d+,endColumn=\d+,")
# Whatever a terminal or an editor may take for the end of a line.
_LINE_BREAK = re.compile("[\n\r\x0b\x0c\x1c-\x1e\x85\u2028\u2029]")
# How pydantic words its errors; specc translates them into its own messages.
_PYDANTIC = re.compile(r"\bshould (be|have)\b|after validation|Input should|Field required")
RECORD_KEYS = {"file", "line", "column", "end", "severity", "code", "message", "help", "fixes"}


def source_lines(text: str) -> list[str]:
    """The file's lines as YAML counts them; the piece after a final break counts too."""
    return _YAML_BREAK.split(text.removeprefix("\ufeff"))


def diagnostic_problems(
    shown: str, text: str, plain: Run, as_json: Run, github: Run | None = None, limit: int = 50
) -> list[str]:
    """Everything wrong with specc's answer about the spec `text`, read as file `shown`."""
    problems: list[str] = []
    runs = {"text": plain, "json": as_json} | ({"github": github} if github else {})
    for name, run in runs.items():
        if run.code not in (0, 2):
            problems.append(f"{name}: exit {run.code}")
        if "Traceback" in run.stdout + run.stderr:
            problems.append(f"{name}: prints a traceback")
        try:
            (run.stdout + run.stderr).encode("utf-8")
        except UnicodeEncodeError as error:
            problems.append(f"{name}: output cannot be written as UTF-8: {error}")
    if problems:
        return problems
    codes = {run.code for run in runs.values()}
    if len(codes) > 1:
        problems.append(f"exit codes differ between formats: {codes}")
    try:
        records = json.loads(as_json.stdout)
    except json.JSONDecodeError as error:
        return [*problems, f"--format json does not parse: {error}\n{as_json.stdout}"]
    if not isinstance(records, list):
        return [*problems, "--format json is not a list"]
    lines = source_lines(text)
    problems += _record_problems(records, shown, lines)
    errors = [r for r in records if r.get("severity") == "error"]
    if (plain.code == 2) != bool(errors):
        problems.append(f"exit {plain.code} with {len(errors)} errors")
    if records != sorted(records, key=lambda r: (r["line"], r["column"])):
        problems.append("diagnostics are not in file order")
    problems += _text_problems(plain.stderr, shown, lines, records, limit)
    if plain.stdout or as_json.stderr:
        problems.append(f"unexpected output: {plain.stdout!r} {as_json.stderr!r}")
    if github is not None:
        emitted = github.stdout.split("\n")[:-1]
        if len(emitted) != len(records) or not all(_GITHUB.match(line) for line in emitted):
            problems.append(f"--format github does not match the JSON:\n{github.stdout}")
    return problems


def first_error(as_json: Run) -> dict | None:
    """The error `--format json` lists first (records are in file order)."""
    errors = [r for r in json.loads(as_json.stdout) if r["severity"] == "error"]
    return errors[0] if errors else None


def _record_problems(records: list, shown: str, lines: list[str]) -> list[str]:
    problems = []
    for record in records:
        if not isinstance(record, dict) or set(record) != RECORD_KEYS:
            problems.append(f"malformed JSON record {record!r}")
            continue
        where = f"{record['line']}:{record['column']}"
        code, severity = record["code"], record["severity"]
        if record["file"] != shown:
            problems.append(f"record names file {record['file']!r}, not {shown!r}")
        if code not in CODES or severity != {"E": "error", "W": "warning"}[code[0]]:
            problems.append(f"unknown code or wrong severity: {code} {severity}")
        if not 1 <= record["line"] <= len(lines):
            problems.append(f"{code} at {where}: the file has {len(lines)} lines")
        elif not 1 <= record["column"] <= len(lines[record["line"] - 1]) + 1:
            problems.append(f"{code} at {where}: line {record['line']} is shorter")
        end = record["end"]
        if (end["line"], end["column"]) < (record["line"], record["column"]):
            problems.append(f"{code} at {where}: ends before it starts ({end})")
        if _PYDANTIC.search(record["message"]):
            problems.append(
                f"{code} at {where}: pydantic's words, untranslated: {record['message']}"
            )
        if _LINE_BREAK.search(record["message"] + (record["help"] or "")):
            problems.append(f"{code} at {where}: message spans lines: {record['message']!r}")
    return problems


def _text_problems(
    stderr: str, shown: str, lines: list[str], records: list, limit: int
) -> list[str]:
    """The text report is made of headers, source and caret lines, helps and a summary."""
    header = re.compile(
        re.escape(shown) + r":(\d+):(\d+): (error|warning)\[([EW]\d{3})\]: (.*)"
    )  # fmt: skip
    out = stderr.split("\n")
    if out and out[-1] == "":
        out.pop()
    if not records:
        return [] if not out else [f"diagnostics in text but none in JSON:\n{stderr}"]
    problems: list[str] = []
    headers = []
    i = 0
    while i < len(out):
        match = header.fullmatch(out[i])
        if match is None:
            break
        line, column = int(match[1]), int(match[2])
        headers.append((line, column, match[4]))
        i += 1
        source = lines[line - 1] if 1 <= line <= len(lines) else ""
        if i < len(out) and out[i].startswith(f"{line} | "):
            # A BOM is no character of line 1 for YAML's columns, but may be shown;
            # what a terminal cannot show may be shown as U+FFFD.
            visible = "".join(c if c.isprintable() or c == "\t" else "\ufffd" for c in source)
            shown_as = {source, "\ufeff" + source, visible}
            if out[i] not in {f"{line} | {text}" for text in shown_as}:
                problems.append(f"line {line} is shown as {out[i]!r}, not {source!r}")
            gutter = " " * len(str(line)) + " | " + " " * (column - 1)
            caret = out[i + 1] if i + 1 < len(out) else ""
            if not (caret.startswith(gutter) and re.fullmatch(r"\^+", caret[len(gutter) :])):
                problems.append(f"caret line {caret!r} does not point at column {column}")
            i += 2
        elif source.strip():
            problems.append(f"{shown}:{line}: the source line is not shown")
        if i < len(out) and out[i].startswith("  help: "):
            i += 1
    if len(records) > limit and i < len(out) and _MORE.fullmatch(out[i]):
        i += 1
    if i < len(out) and _SUMMARY.fullmatch(out[i]):
        i += 1
    else:
        problems.append("no summary line")
    if i != len(out):
        problems.append(f"text line {i + 1} is not a diagnostic line: {out[i]!r}")
    wanted = [(r["line"], r["column"], r["code"]) for r in records][:limit]
    if headers != wanted:
        problems.append(f"text diagnostics {headers} differ from JSON {wanted}")
    return problems


# -- plans -------------------------------------------------------------------------------


def plan_problems(plan: dict) -> list[str]:
    """What in a plan contradicts itself or the pipeline rules the README states.

    Every repetition of a repeat has a stage; stages never go back and none is empty;
    a tied head runs on its table's stage; a top-level layer reading a model input
    runs on stage 0, where inputs arrive.
    """
    problems = []
    model = next(c for c in plan["classes"] if c["name"] == "Model")
    steps = [s for s in model["steps"] if s["step"] in ("layer", "repeat")]
    by_name = {s["name"]: s for s in steps}
    inputs = {item["name"] for item in plan["inputs"]}
    order: list[int] = []
    for step in steps:
        name = step["name"]
        if step["step"] == "repeat":
            if len(step["stages"]) != step["times"]:
                problems.append(f"repeat {name}: {step['times']} times, stages {step['stages']}")
            order += step["stages"]
            continue
        if step["kind"] == "lm_head" and step["attributes"].get("tied_to"):
            table = by_name.get(step["attributes"]["tied_to"])
            if table is None or table.get("stage") != step["stage"]:
                problems.append(f"tied head {name} on stage {step['stage']}, its table not")
            continue
        order.append(step["stage"])
        read = {a["name"] for a in step["call_arguments"] if isinstance(a, dict) and "name" in a}
        if read & inputs and step["stage"] != 0:
            problems.append(f"{name} reads an input on stage {step['stage']}")
    if order != sorted(order):
        problems.append(f"stages go back: {order}")
    if set(order) != set(range(plan["mesh"]["pipeline"])):
        problems.append(f"stages {sorted(set(order))} for pipeline {plan['mesh']['pipeline']}")
    return problems


# -- generated code ----------------------------------------------------------------------

_HEADER = re.compile(r"# Generated by specc \S+ from (.*); do not edit\.")
_SAFE_LABEL = re.compile(r"[A-Za-z0-9._+-]+")
_WORD = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def mask(text: str, label: str | None) -> str:
    """`text` with the spec's file label and every number replaced."""
    if label:
        text = text.replace(label, "<file>")
    text = re.sub(r"\d+(?:\.\d+)?(?:e[-+]?\d+)?", "N", text)
    text = re.sub(r"N(?:,N)+", "N", text)
    return re.sub(r"\[N(?:, N)*\]", "[N]", text)


_QUOTED_NAME = re.compile(r"`([A-Za-z_][A-Za-z0-9_]*)`")
# training.py's NO_DECAY: a parameter's full name as a regular expression, as the
# source spells it: "^model\\.h\\.0\\.ln_1\\.weight$".
_ESCAPED_DOT = "\\\\."
_PARAMETER_PATTERN = re.compile(r'"\^model\\\\\.(.+)\$"')
# shards.py's VALID_ROWS: parameters by their full names, "h.0.wte.weight".
_PARAMETER_NAME = re.compile(r'"([A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z0-9_]+)+)"')


def parameter_parts(text: str) -> list[str] | None:
    """The dotted parts of a literal naming a parameter (numbers left out), or None."""
    found = _PARAMETER_PATTERN.fullmatch(text)
    parts = found[1].split(_ESCAPED_DOT) if found else None
    if parts is None and (found := _PARAMETER_NAME.fullmatch(text)):
        parts = found[1].split(".")
    if parts is None:
        return None
    return [part for part in parts if not part.isdigit() and part != "\\\\d+"]


def masked_variants(
    text: str, package: str, label: str | None, names: set[str] = frozenset()
) -> set[str]:
    """`text` masked, with each choice of the package name's occurrences replaced.

    A package may be named like a word the template writes (the golden `single` and
    "a single group"), so which occurrences came from the plan is not known. Names of
    the spec quoted in backticks (a repeat's docstring) become `<layer>`.
    """
    if label:
        text = text.replace(label, "<file>")
    text = _QUOTED_NAME.sub(lambda m: "`<layer>`" if m[1] in names else m[0], text)
    pattern = rf"(?<![A-Za-z0-9_]){re.escape(package)}(?![A-Za-z0-9_])"
    spots = [m.span() for m in re.finditer(pattern, text)][:6]
    variants = set()
    for choice in range(2 ** len(spots)):
        pieces, start = [], 0
        for bit, (begin, end) in enumerate(spots):
            if choice >> bit & 1:
                pieces += [text[start:begin], "<name>"]
                start = end
        variants.add(mask("".join(pieces) + text[start:], None))
    return variants


@dataclass
class Tokens:
    names: set[str] = field(default_factory=set)
    strings: set[str] = field(default_factory=set)
    comment_words: set[str] = field(default_factory=set)
    label: str | None = None
    problems: list[str] = field(default_factory=list)


def read_tokens(package: Path) -> Tokens:
    """Identifiers, string literals and comment words of every .py file of a package."""
    found = Tokens()
    for path in sorted(package.glob("*.py")):
        text = path.read_text(encoding="utf-8")
        first = text.split("\n", 1)[0]
        header = _HEADER.fullmatch(first)
        if header is None:
            found.problems.append(f"{path.name}: first line is not the header: {first!r}")
            continue
        label = header[1]
        if not _SAFE_LABEL.fullmatch(label) or label != (found.label or label):
            found.problems.append(f"{path.name}: unsafe or inconsistent file label {label!r}")
        found.label = label
        pieces: list[str] = []  # implicitly joined string literals, read as one
        for token in tokenize.generate_tokens(io.StringIO(text).readline):
            if token.type == tokenize.STRING:
                pieces.append(token.string)
                continue
            if token.type == tokenize.NL and pieces:
                continue
            if pieces:
                found.strings |= _joined(pieces)
                pieces = []
            if token.type == tokenize.NAME:
                found.names.add(token.string)
            elif token.type == tokenize.COMMENT and token.start[0] > 1:
                found.comment_words |= set(_WORD.findall(token.string.replace(label, " ")))
    return found


def _joined(pieces: list[str]) -> set[str]:
    """One literal for `"a " "b"`, written as generated code writes a literal; f-strings
    (which the templates write themselves) each as they are."""
    if len(pieces) == 1 or any("f" in piece[: piece.index(piece[-1])].lower() for piece in pieces):
        return set(pieces)
    return {json.dumps("".join(ast.literal_eval(piece) for piece in pieces))}


def spec_names(data: object, *, defaults_too: bool = True) -> list[str]:
    """Every `name` given anywhere in a spec, and the default names of its layers.

    As the README states them: an unnamed layer is `<kind>_<index>`, and inside a
    residual its default name starts with the residual's name and `_`.
    """
    names: list[str] = []

    def walk(node: object) -> None:
        if isinstance(node, dict):
            if isinstance(node.get("name"), str):
                names.append(node["name"])
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    def defaults(layers: object, prefix: str) -> None:
        for index, layer in enumerate(layers if isinstance(layers, list) else []):
            if not isinstance(layer, dict) or not isinstance(layer.get("kind"), str):
                continue
            name = layer.get("name")
            if not isinstance(name, str):
                name = f"{prefix}{layer['kind']}_{index}"
                names.append(name)
            inner = f"{name}_" if layer["kind"] == "residual" else ""
            defaults(layer.get("layers"), inner)

    walk(data)
    if isinstance(data, dict) and defaults_too:
        defaults(data.get("layers"), "")
    return names


def derived_names(data: object) -> list[str]:
    """Identifiers generated code derives from the spec's names and nesting.

    A repeat `blocks` gets a class `BlocksLayer` and, with a pipeline, a constant
    `BLOCKS_STAGES`; a residual nested n deep keeps its input in `residual_<n>`.
    """
    found: list[str] = []

    def visit(layers: object, depth: int, top: bool) -> None:
        for index, layer in enumerate(layers if isinstance(layers, list) else []):
            if not isinstance(layer, dict):
                continue
            kind = layer.get("kind")
            if kind == "repeat" and top:
                name = layer.get("name") or f"repeat_{index}"
                pascal = "".join(part[:1].upper() + part[1:] for part in str(name).split("_"))
                found.extend([f"{pascal}Layer", f"{str(name).upper()}_STAGES"])
            if kind == "residual":
                found.append(f"residual_{depth}" if depth else "residual")
            visit(layer.get("layers"), depth + (kind == "residual"), top and kind == "residual")

    visit(data.get("layers") if isinstance(data, dict) else None, 0, True)
    return found


def compiler_words() -> set[str]:
    """Words of the string literals lowering writes into comments (why a gather is
    inserted, and so on): specc's own text, whatever the spec says."""
    words: set[str] = set()
    paths = [*(REPO / "specc" / "lower").glob("*.py"), *(REPO / "specc" / "kinds").glob("*.py")]
    for path in sorted(paths):
        source = path.read_text(encoding="utf-8")
        for token in tokenize.generate_tokens(io.StringIO(source).readline):
            if token.type == tokenize.STRING:
                words |= set(_WORD.findall(re.sub(r"{.*?}", " ", token.string)))
    return words


def template_words() -> set[str]:
    """Identifiers written literally in the templates (the package's, and the classes of
    layers.py the kinds define), outside Jinja expressions."""
    sources = [path.read_text() for path in (REPO / "templates").rglob("*.jinja")]
    sources += [template.source for template in kinds.CLASSES.values()]
    words: set[str] = set()
    for source in sources:
        text = re.sub(r"{{.*?}}|{%.*?%}|{#.*?#}", " ", source, flags=re.DOTALL)
        words |= set(_WORD.findall(text))
    return words


@dataclass
class Vocabulary:
    """What generated code may contain besides the names of its own spec."""

    names: set[str]
    strings: set[str]  # masked
    comment_words: set[str]

    @classmethod
    def from_golden(cls) -> Vocabulary:
        names, strings, words = set(keyword.kwlist), set(), set()
        golden_names: set[str] = set()
        for spec in golden_specs():
            data = yaml.safe_load(spec.read_text(encoding="utf-8"))
            golden_names |= set(spec_names(data))
            tokens = read_tokens(GOLDEN / spec.stem / data["name"])
            names |= tokens.names
            words |= tokens.comment_words
            spec_own = set(spec_names(data))
            for string in tokens.strings:
                strings |= masked_variants(string, data["name"], tokens.label, spec_own)
        # Layer kinds come from a closed set (E205 refuses any other), so comments may
        # name them whether or not a golden tree does.
        # Lowering names the SBP of split activations by their rank (at most 8 dims).
        splits = {f"FEATURE_SPLIT_{rank}D" for rank in range(2, 9)}
        fixed = template_words() | set(LAYER_KINDS) | splits
        # A golden spec's names are its own, not template words.
        comments = words | fixed | names | compiler_words()
        return cls((names - golden_names) | fixed, strings, comments)

    def problems(self, package_dir: Path, names: list[str], package: str) -> list[str]:
        """What in the package at `package_dir` comes from neither templates nor `names`."""
        tokens = read_tokens(package_dir)
        problems = list(tokens.problems)
        for name in sorted(tokens.names - self.names - set(names)):
            problems.append(f"identifier {name!r} is neither a template word nor a spec name")
        for string in sorted(tokens.strings):
            if masked_variants(string, package, tokens.label, set(names)) & self.strings:
                continue
            parts = parameter_parts(string)
            if parts is not None:  # a parameter's name: spec names and attributes
                unknown = [p for p in parts if p not in self.names and p not in names]
                if unknown:
                    problems.append(f"parameter name {string!r} holds unknown {unknown}")
            else:
                problems.append(f"string literal {string!r} is not one the golden trees hold")
        for word in sorted(tokens.comment_words - self.comment_words - set(names)):
            problems.append(f"comment word {word!r} comes from neither templates nor the spec")
        return problems

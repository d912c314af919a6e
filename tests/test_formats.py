"""The machine formats: GitHub workflow commands that cannot be broken by what they carry,
and JSON records whose keys, types and order CI scripts may rely on.
"""

from __future__ import annotations

import json
import re

import pytest

from specc import report
from specc.codes import CODES
from specc.diagnostics import Diagnostic, Severity, Span
from tests.support.cli import specc
from tests.support.paths import INVALID, SPECS

# A sample of the corpus: YAML, schema, name and plan errors, a warning, several per file.
SAMPLE = [
    "yaml_syntax_colon",
    "duplicate_key",
    "many_schema_errors",
    "package_name_injection",
    "layer_name_newline",
    "many_plan_errors",
    "gather_warning_and_error",
]
RECORD_KEYS = ["file", "line", "column", "end", "severity", "code", "message", "help", "fixes"]
COMMAND = re.compile(
    r"::(?P<severity>error|warning) "
    r"file=(?P<file>[^,:]*),line=(?P<line>\d+),col=(?P<col>\d+),"
    r"endLine=(?P<end_line>\d+),endColumn=(?P<end_col>\d+),title=specc (?P<code>[EW]\d{3})"
    r"::(?P<message>[^\r\n]*)"
)


def unescape(text: str) -> str:
    """What the Actions runner makes of escaped data (actions/toolkit, command.ts)."""
    for escaped, raw in (("%0D", "\r"), ("%0A", "\n"), ("%3A", ":"), ("%2C", ","), ("%25", "%")):
        text = text.replace(escaped, raw)
    return text


def diagnostic(message: str, file: str = "spec.yaml", help: str | None = None) -> Diagnostic:
    return Diagnostic(Severity.ERROR, "E200", message, Span(file, 3, 5, 3, 9), help)


def test_github_escapes_percent_cr_and_lf_in_the_message():
    item = diagnostic("100% sure\r\nsecond line", help="use 50%\nor less")
    line = report.github([item])
    assert line == (
        "::error file=spec.yaml,line=3,col=5,endLine=3,endColumn=9,title=specc E200"
        "::100%25 sure%0D%0Asecond line%0Ahelp: use 50%25%0Aor less\n"
    )


def test_github_escapes_colon_and_comma_in_properties():
    item = diagnostic("bad", file="dir,1/a:b%c\nd.yaml")
    line = report.github([item])
    assert line.startswith("::error file=dir%2C1/a%3Ab%25c%0Ad.yaml,line=3,")
    assert line.count("::") == 2  # only the command's own separators remain


def test_github_escaping_round_trips():
    """Whatever the text holds, the runner recovers it exactly, from one line per problem."""
    nasty = "a%0A b::c, d:e\r\nf%25 %%"
    items = [diagnostic(nasty, file=nasty + ".yaml", help=nasty), diagnostic("plain")]
    lines = report.github(items).splitlines()
    assert len(lines) == 2
    match = COMMAND.fullmatch(lines[0])
    assert match is not None, lines[0]
    assert unescape(match["file"]) == nasty + ".yaml"
    assert unescape(match["message"]) == f"{nasty}\nhelp: {nasty}"
    assert COMMAND.fullmatch(lines[1])["message"] == "plain"


def test_github_output_has_no_help_line_when_there_is_no_help():
    assert report.github([diagnostic("no help here")]).endswith("::no help here\n")


def test_github_output_of_the_corpus_is_one_command_per_diagnostic():
    names = [f"{case}.yaml" for case in SAMPLE]
    run = specc("validate", "--format", "github", *names, cwd=INVALID)
    records = json.loads(specc("validate", "--format", "json", *names, cwd=INVALID).stdout)
    assert run.code == 2 and run.stderr == ""
    lines = run.stdout.splitlines()
    assert len(lines) == len(records)
    for line, record in zip(lines, records, strict=True):
        match = COMMAND.fullmatch(line)
        assert match is not None, line
        assert unescape(match["file"]) == record["file"]
        assert (int(match["line"]), int(match["col"])) == (record["line"], record["column"])
        end = (int(match["end_line"]), int(match["end_col"]))
        assert end == (record["end"]["line"], record["end"]["column"])
        assert (match["severity"], match["code"]) == (record["severity"], record["code"])
        help_ = f"\nhelp: {record['help']}" if record["help"] else ""
        assert unescape(match["message"]) == record["message"] + help_


@pytest.mark.parametrize("case", SAMPLE)
def test_json_records_have_stable_keys_and_types(case):
    run = specc("validate", "--format", "json", f"{case}.yaml", cwd=INVALID)
    assert run.code == 2 and run.stderr == ""
    records = json.loads(run.stdout)
    assert isinstance(records, list) and records
    for record in records:
        assert list(record) == RECORD_KEYS  # documented order, nothing more
        assert record["file"] == f"{case}.yaml"  # the path as given on the command line
        assert all(type(record[key]) is int and record[key] >= 1 for key in ("line", "column"))
        assert list(record["end"]) == ["line", "column"]
        assert all(type(value) is int for value in record["end"].values())
        assert (record["end"]["line"], record["end"]["column"]) >= (
            record["line"],
            record["column"],
        )
        assert record["severity"] in ("error", "warning")
        assert record["code"] in CODES
        assert record["code"][0] == ("E" if record["severity"] == "error" else "W")
        assert isinstance(record["message"], str) and record["message"]
        assert record["help"] is None or (isinstance(record["help"], str) and record["help"])
        for fix in record["fixes"]:
            assert list(fix) == ["label", "edits"] and fix["label"] in record["help"]
            for edit in fix["edits"]:
                assert list(edit)[:2] == ["path", "value"]
                assert list(edit)[2:] in (["set"], ["line", "column", "end", "text"])
    positions = [(r["line"], r["column"], r["code"]) for r in records]
    assert positions == sorted(positions)  # file order


@pytest.mark.parametrize("case", SAMPLE)
def test_json_and_text_report_the_same_problems(case):
    text = specc("validate", f"{case}.yaml", cwd=INVALID).stderr
    records = json.loads(specc("validate", "--format", "json", f"{case}.yaml", cwd=INVALID).stdout)
    headers = re.findall(r"^(\S+?):(\d+):(\d+): (error|warning)\[(\w+)\]: ", text, re.MULTILINE)
    assert headers == [
        (r["file"], str(r["line"]), str(r["column"]), r["severity"], r["code"]) for r in records
    ]


def test_json_is_an_empty_list_for_a_valid_spec_and_keeps_file_order():
    valid = str(SPECS / "huge_mlp_2d.yaml")
    run = specc("validate", "--format", "json", valid)
    assert (run.code, run.stdout, run.stderr) == (0, "[]\n", "")
    run = specc("validate", "--format", "json", "zero_size.yaml", "bool_size.yaml", cwd=INVALID)
    assert [r["file"] for r in json.loads(run.stdout)] == ["zero_size.yaml", "bool_size.yaml"]


def test_json_output_is_plain_ascii_with_escapes():
    """Non-ASCII names and control characters survive as JSON escapes, one parse away."""
    run = specc("validate", "--format", "json", "package_name_unicode.yaml", cwd=INVALID)
    assert run.stdout.isascii()
    assert "m\u043edel" in json.loads(run.stdout)[0]["message"]
    newline = specc("validate", "--format", "json", "layer_name_newline.yaml", cwd=INVALID)
    assert '"fc\\nimport os"' in json.loads(newline.stdout)[0]["message"]


@pytest.mark.parametrize(
    ("case", "raw", "token"),
    [
        ("crlf_line_endings", b"\r\n", "7"),
        ("bom_crlf_typo", b"\xef\xbb\xbf", "nmae"),
        ("utf8_bom_first_key", b"\xef\xbb\xbf", "spec"),
        ("long_line_value", b"out_features: 100}", "100"),
        ("unicode_before_error", "📐".encode(), '"éa"'),
    ],
)
def test_positions_count_characters_on_lines_editors_see(case, raw, token):
    """CRLF ends one line, a BOM takes no column, columns past 100 and after non-ASCII
    characters count characters: the span of the first problem is exactly `token`."""
    data = (INVALID / f"{case}.yaml").read_bytes()
    assert raw in data, "the case must keep its bytes (CRLF, BOM): check git's autocrlf"
    lines = data.decode("utf-8").removeprefix("\ufeff").splitlines()
    run = specc("validate", "--format", "json", f"{case}.yaml", cwd=INVALID)
    first = json.loads(run.stdout)[0]
    assert first["end"]["line"] == first["line"]
    assert lines[first["line"] - 1][first["column"] - 1 : first["end"]["column"] - 1] == token

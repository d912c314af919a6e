"""libyaml and PyYAML's pure loader give specc the same document, span for span.

specc composes YAML with libyaml where it reads the text as the pure loader does
(specc/source/loaders.py lists where they part), and with the pure loader, the
reference, everywhere else. These tests read every spec of the repository, generated
long specs, random specs and the inputs the two loaders disagree on both ways, and
require the same data, spans, refused paths and diagnostics.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import yaml

from specc.diagnostics import Diagnostics
from specc.source import MAX_DEPTH, loaders, parse_spec_text
from tests.fuzz.strategies import sample
from tests.support.paths import CASES, INVALID, REPO, SPECS

pytestmark = pytest.mark.skipif(not yaml.__with_libyaml__, reason="PyYAML without libyaml")

REGRESSIONS = REPO / "tests" / "regressions"
CORPUS = sorted(
    [
        *SPECS.glob("*.yaml"),
        *CASES.glob("*.yaml"),
        *INVALID.glob("*.yaml"),
        *REGRESSIONS.glob("*.yaml"),
    ]
)


@contextmanager
def pure_loader_only() -> Iterator[None]:
    saved = loaders.use_libyaml
    loaders.use_libyaml = False
    try:
        yield
    finally:
        loaders.use_libyaml = saved


def read(text: str) -> tuple[object, ...]:
    """Everything parse_spec_text gives later stages, in a comparable form."""
    diagnostics = Diagnostics()
    try:
        document = parse_spec_text(text, "spec.yaml", diagnostics)
    except Exception as exc:  # an open bug (tests/fuzz/known.py) must at least be the same
        return ("raised", type(exc).__name__, str(exc))
    if document is None:
        return (None, diagnostics.items)
    return (
        repr(document.data),  # repr tells 1, 1.0 and True apart, and keeps key order
        dict(document.value_spans),
        dict(document.key_spans),
        document.refused,
        diagnostics.items,
    )


def assert_same_document(text: str) -> None:
    fast = read(text)
    with pure_loader_only():
        reference = read(text)
    assert fast == reference


def libyaml_reads(text: str) -> bool:
    try:
        loaders.compose_libyaml(text, MAX_DEPTH)
    except loaders.Unsure:
        return False
    return True


def chain(layers: int, *, flow: bool = False, aliases: bool = False, crlf: bool = False) -> str:
    """A long spec like issue 17's: two linears for every activation."""
    lines = ["# a long chain", "specc: 1", "name: chain", "device: cpu", "inputs:"]
    lines += ["  - name: x", "    shape: &shape [8, 64]" if aliases else "    shape: [8, 64]"]
    lines.append("layers:")
    for i in range(layers):
        if i % 3 == 2:
            act = "relu" if i % 2 else "gelu"
            if aliases and i > 5:
                lines.append(f"  - *{act}")
            else:
                anchor = f"&{act} " if aliases else ""
                lines.append(f"  - {anchor}{{kind: {act}}}" if flow else f"  - {anchor}kind: {act}")
        elif flow:
            lines.append(f"  - {{kind: linear, name: fc{i}, in_features: 64, out_features: 64}}")
        else:
            lines += [f"  - kind: linear  # layer {i}", f"    name: 'fc{i}'"]
            lines += [
                "    in_features: 64",
                '    out_features: "64"' if i == 7 else "    out_features: 64",
            ]
    text = "\n".join(lines) + "\n"
    return text.replace("\n", "\r\n") if crlf else text


@pytest.mark.parametrize("path", CORPUS, ids=lambda p: p.stem)
def test_every_spec_of_the_repository_reads_alike(path: Path) -> None:
    assert_same_document(path.read_bytes().decode("utf-8"))


def test_libyaml_reads_the_example_specs() -> None:
    """The fast path is taken for ordinary specs, not only claimed."""
    for path in SPECS.glob("*.yaml"):
        assert libyaml_reads(path.read_text(encoding="utf-8")), path.name


@pytest.mark.parametrize(
    "options",
    [{}, {"flow": True}, {"aliases": True}, {"crlf": True}, {"flow": True, "aliases": True}],
    ids=lambda o: "-".join(o) or "block",
)
def test_long_generated_specs_read_alike(options: dict[str, bool]) -> None:
    text = chain(2000, **options)
    assert libyaml_reads(text)
    assert_same_document(text)


def test_random_specs_read_alike() -> None:
    cases = sample(17, 400)
    for case in cases:
        assert_same_document(case.text)
    assert sum(libyaml_reads(case.text) for case in cases) > len(cases) // 2


# Inputs where libyaml alone would answer differently (a mark, or accepting what the
# pure loader refuses): each must leave libyaml's path and still read as the pure loader.
DIFFERENT = {
    "no_final_newline": "specc: 1\nname: x",
    "no_final_newline_nested": "layers:\n  - kind: relu",
    "tab_after_colon": "specc:\t1\n",
    "tab_in_flow": "shape: [8,\t16]\n",
    "tab_before_comment": "specc: 1\t# one\n",
    "question_mark_in_flow_scalar": "inputs: [{name: x?y}]\n",
    "tag_before_comma_in_flow": "shape: [!t, 2]\n",
    "comment_glued_to_block_scalar": "name: |-# note\n  x\n",
    "bom_after_the_start": "specc: 1\nname: a\ufeffb\n",
    "empty_flow_value": "inputs: [{name: , shape: [8]}]\n",
    "empty_flow_value_at_end": "parallel: {data: }\n",
    "control_character": "specc: 1\nname: a\x07b\n",
    "unclosed_bracket": "shape: [8, 16\n",
    "yaml_1_3_directive": "%YAML 1.3\n---\nspecc: 1\n",
    "deeper_than_the_walker_accepts": "a: " + "[" * (MAX_DEPTH + 1) + "]" * (MAX_DEPTH + 1) + "\n",
}


@pytest.mark.parametrize("text", DIFFERENT.values(), ids=DIFFERENT.keys())
def test_inputs_the_loaders_read_apart_go_to_the_pure_loader(text: str) -> None:
    assert not libyaml_reads(text)
    assert_same_document(text)


# Inputs the loaders read alike, which libyaml keeps.
ALIKE = {
    "crlf": "specc: 1\r\nlayers:\r\n  - kind: relu\r\n",
    "lone_cr": "specc: 1\rlayers:\r  - kind: relu\r\n",
    "nel_ls_ps": "specc: 1\x85name: a\u2028layers:\u2029  - kind: relu\n",
    "leading_bom": "\ufeffspecc: 1\nname: x\n",
    "unicode": 'name: "é📐x"\nother: 日本\n',
    "empty_block_value": "specc:\nname: x\n",
    "empty_quoted_value_in_flow": 'inputs: [{name: ""}]\n',
    "anchors": "a: &x [1, 2]\nb: *x\n",
    "block_scalars": "a: |\n  x\n\nb: >-\n  y\n  z\n",
    "multi_line_scalars": 'a: x\n  y\nb: "p\n\n  q"\n',
    "document_markers": "%YAML 1.1\n---\nspecc: 1\n...\n",
    "duplicate_key": "specc: 1\nspecc: 2\n",
}


@pytest.mark.parametrize("text", ALIKE.values(), ids=ALIKE.keys())
def test_inputs_the_loaders_read_alike_stay_with_libyaml(text: str) -> None:
    assert libyaml_reads(text)
    assert_same_document(text)


def test_the_ascii_scan_agrees_with_the_general_one() -> None:
    """ASCII text is checked one feature at a time (issue 17): the verdict must not change."""
    alphabet = "ab1 :-#|>+%?!.{}[]YAML\n\r\t\x07\x0b\x7f"
    rng = random.Random(17)
    texts = [
        "".join(rng.choice(alphabet) for _ in range(rng.randrange(12))) + "\n"
        for _ in range(20_000)
    ]
    texts += ["%YAML 1.1\n", "%YAML 1.1#\n", "a: |-#x\n", "a: >+2#\n", "x%y\n", " %TAG\n"]
    for text in texts:
        general = loaders._PURE_ONLY.search(text) is None
        assert loaders.libyaml_reads_alike(text) == general, repr(text)


def test_libyaml_stops_before_the_walker_would() -> None:
    """libyaml's composer recurses in C; test_hostile crashes it without this guard."""
    deep = "[" * 100_000 + "]" * 100_000 + "\n"
    with pytest.raises(loaders.Unsure):
        loaders.compose_libyaml(deep, MAX_DEPTH)
    deepest_read = "a: " + "[" * MAX_DEPTH + "]" * MAX_DEPTH + "\n"  # the root is at depth 0
    assert libyaml_reads(deepest_read)
    assert_same_document(deepest_read)


def test_alias_bomb_is_reported_alike() -> None:
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    lines += [f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 10) + "]" for i in range(1, 10)]
    text = "\n".join(lines) + "\n"
    assert libyaml_reads(text)
    assert_same_document(text)

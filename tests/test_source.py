"""The source stage's own shortcuts change nothing a caller sees.

The walker calls the safe constructor's functions directly and reads plain decimals
itself: values and types are still the ones `yaml.safe_load` builds. Parsing pauses
the garbage collector: it is left as the caller had it.
"""

from __future__ import annotations

import gc

import pytest
import yaml

from specc.diagnostics import Diagnostics
from specc.source import parse_spec_text

PLAIN = [
    "0", "7", "42", "010", "0x1F", "0b101", "0o17", "1_000", "+5", "-3", "-0", "190:20:30",
    "00", "9" * 40, "1.5", "-2.", "1e3", "1.0e+3", "6.8523015e+5", "190:20:30.15", "yes",
    "No", "on", "OFF", "true", "False", "~", "null", "Null", "", "x", "0x", "1_", "12a",
    "'7'", '"7"', "'true'",
]  # fmt: skip
TAGGED = [
    "!!int 7", "!!int \u0661\u0662", "!!int \uff11\uff12", "!!int 0_1", "!!int +0x1F", "!!float 16",
    "!!float 1_0.5", "!!bool yes", "!!null ~", "!!str 7", "!!str true",
]  # fmt: skip


def walked(text: str) -> object:
    diagnostics = Diagnostics()
    document = parse_spec_text(f"a: {text}\n", "spec.yaml", diagnostics)
    assert document is not None and not diagnostics.items
    return document.data["a"]


@pytest.mark.parametrize("text", PLAIN + TAGGED)
def test_scalars_are_the_values_and_types_safe_load_builds(text: str) -> None:
    expected = yaml.safe_load(f"a: {text}\n")["a"]
    value = walked(text)
    assert (type(value), value) == (type(expected), expected)


@pytest.mark.parametrize("text", [".inf", "-.inf", ".NaN", "!!float .inf", "2001-12-14"])
def test_infinities_and_dates_stay_text(text: str) -> None:
    assert walked(text) == text.removeprefix("!!float ")


@pytest.mark.parametrize("enabled", [True, False])
def test_the_garbage_collector_is_left_as_it_was(enabled: bool) -> None:
    was = gc.isenabled()
    try:
        (gc.enable if enabled else gc.disable)()
        assert parse_spec_text("specc: 1\n", "spec.yaml", Diagnostics()) is not None
        assert parse_spec_text("[", "spec.yaml", Diagnostics()) is None
        assert gc.isenabled() == enabled
    finally:
        (gc.enable if was else gc.disable)()

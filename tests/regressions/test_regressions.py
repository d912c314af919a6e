"""Specs the fuzzer (tests/test_fuzz.py, tests/test_soundness.py) found specc mishandling.

Each YAML file here is a reproducer; its first lines say what went wrong, and its test
states the behaviour specc has had since the fix. A bug not fixed yet gets a test
marked xfail(strict=True) and an entry in tests/fuzz/known.py, which keeps the random
tests away from it meanwhile; once specc is fixed the test XPASSes, which fails the
run: then drop the marker and the entry.
"""

from __future__ import annotations

import json
import os
import re
import resource
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.cli import specc

HERE = Path(__file__).parent
_LINE_BREAK = re.compile("[\n\r\x0b\x0c\x1c-\x1e\x85\u2028\u2029]")


def spec(name: str) -> str:
    assert (HERE / name).is_file(), name
    return name


def validate(name: str, *options: str):
    return specc("validate", *options, spec(name), cwd=HERE)


def build(name: str, out: Path):
    return specc("build", spec(name), "-o", str(out), cwd=HERE)


def test_nonprintable_character_is_a_located_error():
    """Was: PyYAML's reader raised outside specc's try block, exit 3 with a traceback."""
    run = validate("nonprintable_in_comment.yaml")
    assert run.code == 2 and "Traceback" not in run.stderr, run.stderr
    assert run.stderr.startswith("nonprintable_in_comment.yaml:1:41: error[E100]: "), run.stderr


def test_control_character_after_lone_cr_line_ends_is_located_where_it_is():
    """Was: placed at 1:138, only \\n counting as a line break."""
    run = validate("control_char_after_cr.yaml")
    assert run.stderr.startswith("control_char_after_cr.yaml:3:7: error[E100]: "), run.stderr


def test_control_character_after_a_bom_is_located_where_it_is():
    """Was: 1:47, the BOM counted as a column (YAML's marks and the line shown skip it)."""
    run = validate("control_char_after_bom.yaml")
    assert run.stderr.startswith("control_char_after_bom.yaml:1:46: error[E100]: "), run.stderr


def test_huge_mesh_is_answered_within_bounds():
    """Was: lowering built all 4,294,967,296 ranks: MemoryError, exit 3."""

    def cap_memory():
        resource.setrlimit(resource.RLIMIT_AS, (1 << 30, 1 << 30))

    result = subprocess.run(
        [sys.executable, "-m", "specc", "validate", spec("huge_mesh.yaml")],
        cwd=HERE,
        capture_output=True,
        text=True,
        timeout=60,
        preexec_fn=cap_memory,
        check=False,
    )
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr[-2000:]
    assert result.stderr.startswith("huge_mesh.yaml:5:11: error[E204]: "), result.stderr


def test_world_size_can_be_stated(tmp_path):
    """Was: a 131072-rank mesh was valid, but an error once its world_size was stated."""
    text = (HERE / spec("world_size_cap.yaml")).read_text(encoding="utf-8")
    stated = tmp_path / "stated.yaml"
    stated.write_text(text.replace("tensor: 2}", "tensor: 2, world_size: 131072}"))
    assert "world_size: 131072" in stated.read_text()
    unsaid, said = validate("world_size_cap.yaml"), specc("validate", str(stated))
    assert unsaid.code == said.code, (unsaid.stderr, said.stderr)


@pytest.mark.parametrize("name", ["version_true.yaml", "version_float.yaml"])
def test_format_version_is_strict(name):
    """Was: pydantic's Literal[1] accepted true and 1.0 (both == 1)."""
    run = validate(name)
    assert run.code == 2, run.stderr
    assert f"{name}:2:8: error[E20" in run.stderr


def test_too_long_a_list_is_e209():
    """Was: E202 in pydantic's words ("List should have at most 8 items ...")."""
    run = validate("shape_nine_dims.yaml")
    assert run.code == 2
    assert "error[E209]" in run.stderr and "should have" not in run.stderr, run.stderr


def test_messages_stay_on_one_line():
    """Was: the E205 message quoted an unknown kind raw, line breaks included."""
    run = validate("kind_with_newline.yaml", "--format", "json")
    records = json.loads(run.stdout)
    assert [r["code"] for r in records] == ["E205", "E205"]
    assert not [r["message"] for r in records if _LINE_BREAK.search(r["message"])]


def test_source_line_is_shown_for_cr_line_ends():
    """Was: the report split lines on \\n only, YAML also on a lone \\r (and U+0085,
    U+2028, U+2029): the source line under a diagnostic was missing or another line."""
    run = validate("cr_line_ends.yaml")
    assert run.stderr.startswith("cr_line_ends.yaml:8:18: error[E200]: "), run.stderr
    assert "\n8 |   - {kind: relu, bad: 1}\n" in run.stderr, run.stderr


def test_a_tagged_scalar_that_is_no_number_is_a_located_error():
    """Was: `!!float 16|1-` raised in PyYAML's constructor, exit 3 with a traceback."""
    run = validate("tagged_scalar_not_a_number.yaml")
    assert run.code == 2 and "Traceback" not in run.stderr, run.stderr
    assert run.stderr.startswith("tagged_scalar_not_a_number.yaml:7:26: error[E"), run.stderr


def test_empty_layer_name_is_refused():
    run = validate("empty_layer_name.yaml")
    assert run.stderr.startswith("empty_layer_name.yaml:8:59: error[E207]: "), run.stderr


def test_messages_quoting_refused_names_stay_on_one_line():
    run = validate("name_with_newline.yaml", "--format", "json")
    records = json.loads(run.stdout)
    assert {"E207", "W501", "E303"} <= {r["code"] for r in records}, records
    assert not [r["message"] for r in records if _LINE_BREAK.search(r["message"])]


@pytest.mark.parametrize(
    ("name", "command"),
    [
        ("select_token_only.yaml", ["check"]),
        ("node_counts_long_line.yaml", ["format", "--check"]),
        ("layernorm_without_linear.yaml", ["check"]),
        ("long_package_name.yaml", ["format", "--check"]),
        ("rmsnorm_long_signature.yaml", ["format", "--check"]),
        ("long_repeat_name_pipelined.yaml", ["format", "--check"]),
    ],
)
def test_generated_code_is_clean_for_ruff(name, command, tmp_path):
    """Was: NODE_COUNTS on one line; `import math` unused; lines ruff rewraps."""
    run = build(name, tmp_path)
    assert run.code == 0, run.stderr
    result = subprocess.run(
        [sys.executable, "-m", "ruff", *command, "--isolated", "--no-cache", str(tmp_path)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_a_tied_head_does_not_count_as_a_stage():
    """Was: ValueError from balancing (exit 3) for 1 unit on 2 stages."""
    run = validate("tied_head_fills_no_stage.yaml")
    assert run.code == 2 and "Traceback" not in run.stderr, run.stderr
    assert run.stderr.startswith("tied_head_fills_no_stage.yaml:6:22: error[E315]: "), run.stderr
    assert "a tied lm_head shares its table's stage" in run.stderr


def test_a_head_tied_to_an_unnamed_table_runs_on_its_stage():
    """Was: balanced onto stage 1, its table on stage 0: a placement error at run time."""
    run = specc("plan", "--json", spec("tied_head_unnamed_table.yaml"), cwd=HERE)
    assert run.code == 0, run.stderr
    model = next(c for c in json.loads(run.stdout)["classes"] if c["name"] == "Model")
    stages = {s["name"]: s["stage"] for s in model["steps"] if s["step"] == "layer"}
    assert stages == {"embedding_0": 0, "layernorm_1": 1, "relu_2": 1, "lm_head_3": 0}, stages


def test_each_split_activation_rank_has_its_own_sbp_constant():
    """Was: FEATURE_SPLIT = (S(2),) used for a [batch, features] activation too."""
    run = specc("plan", "--json", spec("split_constants_per_rank.yaml"), cwd=HERE)
    assert run.code == 0, run.stderr
    constants = {c["name"]: c["sbp"] for c in json.loads(run.stdout)["sbp_constants"]}
    assert constants["FEATURE_SPLIT_3D"] == ["S(2)"], constants
    assert constants["FEATURE_SPLIT_2D"] == ["S(1)"], constants


def test_a_gather_states_its_gradient(tmp_path):
    """Was: `to_global(sbp=ACTIVATION)` alone, which aborts OneFlow's CPU graph training
    (tests/test_soundness.py trains this spec as a graph)."""
    run = build("gather_in_a_graph.yaml", tmp_path)
    assert run.code == 0, run.stderr
    model = (tmp_path / "gather_in_a_graph" / "model.py").read_text(encoding="utf-8")
    assert "hidden.to_global(sbp=ACTIVATION, grad_sbp=FEATURE_SPLIT_2D)" in model


def test_inputs_cannot_take_the_names_of_generated_locals():
    """Was: `def forward(self, hidden, hidden)`, an internal error (exit 3)."""
    run = validate("input_named_hidden.yaml")
    assert run.code == 2 and "Traceback" not in run.stderr, run.stderr
    assert run.stderr.startswith("input_named_hidden.yaml:11:12: error[E207]: "), run.stderr


def test_balancing_keeps_input_readers_on_stage_zero():
    """Was: balanced onto stage 1, then refused with E313."""
    run = specc("plan", "--json", spec("balanced_input_reader.yaml"), cwd=HERE)
    assert run.code == 0, run.stderr
    model = next(c for c in json.loads(run.stdout)["classes"] if c["name"] == "Model")
    stages = {
        step["name"]: step.get("stages", step.get("stage"))
        for step in model["steps"]
        if step["step"] in ("layer", "repeat")
    }
    assert stages == {
        "wte": 0,
        "blocks": [0, 0],
        "token_type_embedding_2": 0,
        "linear_3": 1,
    }, stages


@pytest.mark.parametrize("name", ["rich_package.yaml", "google_package.yaml"])
def test_accepted_package_names_can_be_imported_beside_oneflow(name, tmp_path):
    """Was: accepted, then `import oneflow` failed (rich) or found another package (google)."""
    run = build(name, tmp_path)
    if run.code == 2:  # refusing the name is a fix, if it says where and why
        assert run.stderr.startswith(f"{name}:4:7: error[E207]: "), run.stderr
        return
    pytest.importorskip("oneflow", reason="OneFlow is needed to import generated packages")
    assert run.code == 0, run.stderr
    package = name.removesuffix("_package.yaml")
    result = subprocess.run(
        [
            sys.executable,
            "-c",
            f"import oneflow, {package}; print(oneflow.__version__, {package}.Model.__name__)",
        ],
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(tmp_path)},
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    assert result.returncode == 0 and "Model" in result.stdout, result.stderr[-2000:]


def test_repeats_that_would_share_a_class_are_refused():
    """Was: `a_b` and `a__b` both became `class ABLayer`; exit 0, `a_b` without parameters."""
    run = validate("repeats_one_class.yaml")
    assert run.code == 2, run.stderr
    assert run.stderr.startswith(
        "repeats_one_class.yaml:17:11: error[E208]: repeats `a_b` (at 12:11) and `a__b` would "
        "both generate the class `ABLayer`\n"
    ), run.stderr
    assert "help: rename one of them, e.g. `a__b_2`" in run.stderr


def test_a_layer_named_placement_is_refused():
    """Was: built, then a TypeError at run time: it replaced the repeat body's placement."""
    run = validate("placement_in_pipelined_repeat.yaml")
    assert run.code == 2, run.stderr
    assert (
        "placement_in_pipelined_repeat.yaml:16:30: error[E207]: `placement` cannot be a name in "
        "generated code: it is already used by nn.Module or by the generated code"
    ) in run.stderr


def test_more_heads_than_hidden_features_is_an_error_not_a_crash():
    """Was: ZeroDivisionError in the attention's cost formula, exit 3."""
    run = validate("heads_above_hidden.yaml")
    assert run.code == 2 and "Traceback" not in run.stderr, run.stderr
    assert "error[E312]: hidden size 15 is not divisible by heads 34" in run.stderr


def test_every_reproducer_has_a_test():
    """Every YAML here is named by a test of this file (read from its source, so the
    answer does not depend on which tests ran before)."""
    named = set(re.findall(r'"([\w.-]+\.yaml)"', Path(__file__).read_text(encoding="utf-8")))
    assert {p.name for p in HERE.glob("*.yaml")} <= named

"""`specc plan SPEC --svg FILE`: a self-contained SVG naming every rank and stage."""

from __future__ import annotations

import xml.etree.ElementTree as ET

import pytest

from tests.support.cli import specc
from tests.support.paths import CASES, SPECS

SVG = "{http://www.w3.org/2000/svg}"


@pytest.mark.parametrize(
    "spec, sets, ranks, stages",
    [
        (
            SPECS / "gpt2.yaml",
            ["data=2", "tensor=2", "pipeline=2", "accumulation=4", "vocab_multiple=128"],
            8,
            2,
        ),
        (CASES / "mlp_2d_train.yaml", [], 4, 1),
        (SPECS / "vit_base16.yaml", ["data=4", "pipeline=4", "accumulation=4"], 16, 4),
    ],
)
def test_the_picture_is_well_formed_and_names_every_rank_and_stage(
    tmp_path, spec, sets, ranks, stages
):
    out = tmp_path / "plan.svg"
    arguments = [a for pair in sets for a in ("--set", pair)]
    run = specc("plan", str(spec), *arguments, "--device-memory", "80GiB", "--svg", str(out))
    assert run.code == 0, run.stderr
    root = ET.parse(out).getroot()  # well-formed XML
    assert root.tag == f"{SVG}svg"
    texts = [t.text or "" for t in root.iter(f"{SVG}text")]
    for rank in range(ranks):
        assert f"rank {rank}" in texts, rank
    for stage in range(stages):
        assert f"stage {stage}" in texts, stage
    assert any(t.startswith("device memory 80.0 GiB") for t in texts)
    # Self-contained: nothing fetched, nothing run.
    text = out.read_text()
    assert "<script" not in text and "href" not in text and "http://www.w3.org/2000/svg" in text


def test_an_unwritable_svg_is_an_error(tmp_path):
    run = specc("plan", str(CASES / "mlp_2d_train.yaml"), "--svg", str(tmp_path / "no" / "a.svg"))
    assert run.code == 2
    assert "cannot write" in run.stderr

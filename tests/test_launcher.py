"""Generated packages under the real OneFlow launcher on CPU, against single-process twins.

Launches cost seconds each, so every world size gets one parity launch covering all
its cases; the two tutorial specs also run their own `python -m <package>` smoke run.
"""

from __future__ import annotations

import re
import subprocess
import sys

import pytest

from tests.support.cli import specc
from tests.support.launcher import launch
from tests.support.paths import CASES, REPO, SPECS

pytest.importorskip("oneflow", reason="OneFlow is needed to run generated packages")
pytestmark = pytest.mark.launcher

PARITY = REPO / "tests" / "launch" / "parity.py"
WORLDS = {
    1: ["single"],
    2: ["tp2_chain", "rms_decoder", "gelu_tanh", "decoder_gqa"],
    4: ["mlp_2d_small", "dp4", "tp4"],
}


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    out = tmp_path_factory.mktemp("built")
    for spec in [*SPECS.glob("*.yaml"), *CASES.glob("*.yaml")]:
        assert specc("build", str(spec), "-o", str(out)).code == 0
        plan = specc("plan", "--json", str(spec))
        (out / f"{spec.stem}.json").write_text(plan.stdout, encoding="utf-8")
    return out


def parity_arguments(built, names):
    return [f"{name}={built / name}.json" for name in names]


def assert_parity(records, names, world):
    assert sorted((r["package"], r["rank"]) for r in records) == sorted(
        (name, rank) for name in names for rank in range(world)
    )
    for record in records:
        assert record["errors"] == [], record
        assert record["max_diff"] < 1e-4


def test_parity_on_one_process(built):
    result = subprocess.run(
        [sys.executable, str(PARITY), *parity_arguments(built, WORLDS[1])],
        cwd=built,
        env={"PYTHONPATH": str(built), "PATH": ""},
        capture_output=True,
        text=True,
        check=False,
        timeout=300,
    )
    from tests.support.launcher import Launch

    run = Launch(result.returncode, result.stdout, result.stderr)
    assert run.returncode == 0, run.explain()
    assert_parity(run.records(), WORLDS[1], 1)


@pytest.mark.parametrize("world", [2, 4])
def test_parity_under_the_launcher(built, world):
    run = launch(
        world, [str(PARITY), *parity_arguments(built, WORLDS[world])], pythonpath=[built], cwd=built
    )
    assert run.returncode == 0, run.explain()
    assert_parity(run.records(), WORLDS[world], world)


@pytest.mark.parametrize(
    ("package", "world", "local_shape"),
    [("huge_fc", 2, "[32, 16384]"), ("huge_mlp_2d", 4, "[16, 1024]")],
)
def test_tutorial_packages_print_their_local_shapes(built, package, world, local_shape):
    run = launch(world, ["-m", package], pythonpath=[built], cwd=built)
    assert run.returncode == 0, run.explain()
    printed = dict(re.findall(r"rank (\d+): local output shape (\[[\d, ]+\])", run.stdout))
    assert printed == {str(rank): local_shape for rank in range(world)}, run.stdout


def test_wrong_world_size_is_a_clear_error(built):
    result = subprocess.run(
        [sys.executable, "-m", "huge_mlp_2d"],
        cwd=built,
        env={"PYTHONPATH": str(built)},
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert (
        "huge_mlp_2d was compiled for 4 processes (data 2 x tensor 2 x pipeline 1) but runs on 1;"
        " launch it with: python -m oneflow.distributed.launch --nproc_per_node 4 -m huge_mlp_2d"
    ) in result.stderr

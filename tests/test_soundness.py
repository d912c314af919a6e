"""What specc accepts runs, and what it refuses really fails: both under OneFlow's launcher.

The sample is drawn from random.Random(SEED), SEED being fixed unless $SPECC_FUZZ_SEED
sets another (`today` for today's date, so each day tries new specs); a failure names
the seed and the spec to replay it.

* test_accepted_specs_run (C): random accepted specs (features <= 32, batch <= 16, on
  1, 2 and 4 processes, data/tensor/pipeline meshes, some with `training:` batching,
  hand-set stages or `${...}` sizes; about half transformer stacks, so that every layer
  kind runs) are built and run by tests/launch/soundness.py, one launch per world
  size: parameters and output have the planned SBP, stage and local shapes, and
  forward, backward and SGD steps match a single-process twin (tests/launch/parity.py).
  No spec may fail with a shape or SBP error. A control package with a falsified plan
  rides along in the 2-process launch and must be reported.
* test_accepted_specs_train_as_graphs (C'): 8 random stacks with a loss (4 on 2 and 4 on
  4 processes, most of them pipelined where the draw allows) train 3 steps through the
  generated TrainGraph (micro-batches, stages) against the twin, and their EvalGraph
  matches the eager model.
* test_refused_mistakes_really_fail (D): random specs with exactly one divisibility or
  shape mistake are refused with that one error, and the mistake, forced into plain
  OneFlow code in one launch on 4 processes, really goes wrong. OneFlow 0.9 splits an
  uneven size unevenly instead of failing: 10 rows over 4 ranks are held as 3, 3, 2, 2,
  so the per-rank shapes specc's plan states (size // group on every rank) would be
  false on some rank, and layers that assume equal parts would disagree (for a `row`
  linear the partial sums still add up, only the shapes differ). With fewer rows than
  ranks it is worse: to_global raises "(1 vs 2)" on some ranks while the others abort
  ("Check failed: bs.At(id).size() > 0"), so such cases are left out of the one
  launch. A shape mismatch makes OneFlow raise on every rank: matmul "RuntimeError:
  (8 vs 7)", layer_norm "Given normalized_shape=(5,), expected input with shape
  [*, 5,], but got input of size oneflow.Size([6, 8])".
  The transformer mistakes go the same ways: an mlp's ffn or an embedding's vocabulary
  not divisible by tensor is an uneven split like a `col` linear's; heads that do not
  divide hidden, or that tensor does not divide, make the query's reshape into
  (heads // tensor) heads of hidden // heads columns, as LiBai's attention does it,
  fail ("shape '[...]' is invalid for input of size ...").
"""

from __future__ import annotations

import json
import random
import time
from pathlib import Path

import pytest

from specc.spec.models import LAYER_KINDS
from tests.fuzz import known
from tests.fuzz.stacks import StackDraft
from tests.fuzz.strategies import RUN, RandomChooser, draw_case, single_mistake
from tests.support.cli import specc
from tests.support.launcher import launch
from tests.support.paths import REPO
from tests.support.seed import fuzz_seed

pytest.importorskip("oneflow", reason="OneFlow is needed to run generated packages")
pytestmark = pytest.mark.launcher

SEED = fuzz_seed()
DRIVER = REPO / "tests" / "launch" / "soundness.py"
PER_WORLD = {1: 16, 2: 24, 4: 32}
GRAPH_PER_WORLD = {2: 4, 4: 4}
MISTAKES = {
    **{"col": 2, "row": 2, "batch": 2, "in_features": 2, "features": 2},
    **{"heads": 2, "heads_split": 2, "ffn": 1, "vocab": 1},
}
# Packages the harness itself imports under these names.
HARNESS = {"parity", "soundness", "fuzz_control", "gather_in_a_graph"}
# A package whose plan is then falsified: the driver must report it, or it checks nothing.
CONTROL = """specc: 1
name: fuzz_control
device: cpu
parallel: {tensor: 2}
inputs:
  - {name: x, shape: [4, 8], split: none}
layers:
  - {kind: linear, in_features: 8, out_features: 6, split: col}
  - {kind: linear, in_features: 6, out_features: 4, split: row}
"""


def add_control(out) -> str:
    """Build CONTROL into `out` with a plan that lies about the output's local shape."""
    spec = out.parent / "fuzz_control.yaml"
    spec.write_text(CONTROL, encoding="utf-8")
    assert specc("build", str(spec), "-o", str(out)).code == 0
    plan = json.loads(specc("plan", "--json", str(spec)).stdout)
    plan["outputs"][-1]["layout"]["local_shape"][0] += 1
    (out / "fuzz_control.json").write_text(json.dumps(plan), encoding="utf-8")
    return f"fuzz_control={out / 'fuzz_control.json'}"


def build_with_plan(text: str, spec: Path, out: Path, package: str, seed: int) -> bool:
    """Write `text` to `spec` and build it into `out`, its plan beside it as
    `<package>.json` for the driver; False when specc refused it (never a crash)."""
    spec.parent.mkdir(exist_ok=True)
    spec.write_text(text, encoding="utf-8")
    run = specc("build", str(spec), "-o", str(out))
    assert run.code in (0, 2), f"seed {seed}: exit {run.code}\n{run.stderr}\n{text}"
    if run.code != 0:
        return False
    plan = specc("plan", "--json", str(spec))
    (out / f"{package}.json").write_text(plan.stdout, encoding="utf-8")
    return True


def replay(seed: int) -> str:
    return f"SPECC_FUZZ_SEED={seed}"


def draw_accepted(tmp_path, kinds: dict[str, int]) -> dict[int, list[tuple[str, str]]]:
    """Build PER_WORLD accepted random specs per world size: {world: [(package, spec)]}.

    The last few places of each world wait for specs with a layer kind none before had,
    so that (most days) every kind runs; after 1500 draws any accepted spec will do.
    """
    ch = RandomChooser(random.Random(SEED))
    chosen: dict[int, list[tuple[str, str]]] = {world: [] for world in PER_WORLD}
    missing = set(LAYER_KINDS)
    for index in range(3000):
        if all(len(chosen[w]) >= n for w, n in PER_WORLD.items()):
            break
        case = draw_case(ch, RUN, mutate_percent=0, plain=index % 2 == 0)
        world, package = case.draft.world, case.draft.package
        if known.open_bugs(case):
            continue
        if not case.draft.has_parameters():
            continue  # parity's backward pass needs something that takes a gradient
        taken = {name for name, _ in chosen[world]}
        if len(chosen[world]) >= PER_WORLD[world] or package in taken | HARNESS:
            continue
        waiting = min(len(missing), 4) if index < 1500 else 0
        if len(chosen[world]) >= PER_WORLD[world] - waiting and not missing & case.draft.kinds():
            continue
        spec = tmp_path / "specs" / f"{index}.yaml"
        if not build_with_plan(case.text, spec, tmp_path / f"world{world}", package, SEED):
            continue  # a tricky name refused
        chosen[world].append((package, case.text))
        missing -= case.draft.kinds()
        draft = case.draft
        for what, present in (
            (f"data {draft.data} x tensor {draft.tensor} x pipeline {draft.pipeline}", True),
            ("training", draft.training is not None),
            ("explicit stages", draft.has_explicit_stages()),
            ("3+ dimensions", len(draft.shape) > 2),
            ("sizes", "sizes:" in case.text),
            *((f"kind {kind}", True) for kind in draft.kinds()),
        ):
            kinds[what] = kinds.get(what, 0) + present
    assert all(len(chosen[w]) == n for w, n in PER_WORLD.items()), (SEED, chosen)
    return chosen


def test_accepted_specs_run(tmp_path):
    started = time.monotonic()
    kinds: dict[str, int] = {}
    chosen = draw_accepted(tmp_path, kinds)
    failures = []
    timings = {}
    for world, packages in chosen.items():
        out = tmp_path / f"world{world}"
        arguments = [f"{package}={out / package}.json" for package, _ in packages]
        if world == 2:
            arguments.append(add_control(out))
        began = time.monotonic()
        run = launch(
            world, [str(DRIVER), "parity", *arguments], pythonpath=[out], cwd=out, timeout=400
        )
        timings[world] = round(time.monotonic() - began, 1)
        records = run.records()
        if world == 2:
            control = [r for r in records if r.get("package") == "fuzz_control"]
            assert len(control) == 2 and all(r["errors"] for r in control), (
                f"the falsified control plan was not reported: {control}\n{run.explain()}"
            )
        failures += package_failures(run, world, packages)
    count = sum(len(p) for p in chosen.values())
    print(f"seed {SEED}: {count} accepted specs ran, launches {timings}s, "
          f"{time.monotonic() - started:.1f}s in all; {kinds}")  # fmt: skip
    assert not failures, "\n\n".join(failures)
    assert count >= 40


def package_failures(run, world: int, packages: list[tuple[str, str]]) -> list[str]:
    """Each package's errors, from every rank; a launch that died says so."""
    records = run.records()
    failures = []
    for package, text in packages:
        mine = [r for r in records if r.get("package") == package]
        errors = sorted({e for r in mine for e in r["errors"]})
        if len(mine) != world:
            errors.append(f"{len(mine)} of {world} ranks reported (exit {run.returncode})")
        if errors:
            where = f"world {world}, package {package}, {replay(SEED)}"
            failures.append(f"{where}:\n  " + "\n  ".join(errors) + f"\n{text}")
    if run.returncode != 0 and not failures:
        failures.append(f"world {world}: launch failed, {replay(SEED)}\n{run.explain()}")
    return failures


def draw_trainable(tmp_path) -> tuple[dict[int, list[tuple[str, str]]], dict[int, int]]:
    """GRAPH_PER_WORLD accepted stacks with a loss, half of them pipelined if they can be."""
    ch = RandomChooser(random.Random(SEED + 2))
    chosen: dict[int, list[tuple[str, str]]] = {world: [] for world in GRAPH_PER_WORLD}
    pipelined = dict.fromkeys(GRAPH_PER_WORLD, 0)
    for index in range(3000):
        if all(len(chosen[w]) >= n for w, n in GRAPH_PER_WORLD.items()):
            break
        case = draw_case(ch, RUN, mutate_percent=0, plain=True)
        draft, world = case.draft, case.draft.world
        if not isinstance(draft, StackDraft) or not draft.loss or world not in chosen:
            continue
        if not draft.has_parameters():
            continue  # an optimizer needs something to train
        wanted = GRAPH_PER_WORLD[world]
        taken = {name for name, _ in chosen[world]}
        if len(chosen[world]) >= wanted or draft.package in taken | HARNESS:
            continue
        flat = len(chosen[world]) - pipelined[world]
        if draft.pipeline == 1 and flat >= wanted // 2 and index < 1500:
            continue
        spec = tmp_path / "graph_specs" / f"{index}.yaml"
        out = tmp_path / f"graph{world}"
        if not build_with_plan(case.text, spec, out, draft.package, SEED + 2):
            continue  # a tricky name refused
        chosen[world].append((draft.package, case.text))
        pipelined[world] += draft.pipeline > 1
    assert all(len(chosen[w]) == n for w, n in GRAPH_PER_WORLD.items()), (SEED + 2, chosen)
    return chosen, pipelined


def test_accepted_specs_train_as_graphs(tmp_path):
    started = time.monotonic()
    chosen, pipelined = draw_trainable(tmp_path)
    failures = []
    # A fixed spec rides along: tests/regressions/gather_in_a_graph.yaml.
    regression = (REPO / "tests" / "regressions" / "gather_in_a_graph.yaml").read_text(
        encoding="utf-8"
    )
    spec = tmp_path / "graph_specs" / "gather_in_a_graph.yaml"
    assert build_with_plan(regression, spec, tmp_path / "graph2", "gather_in_a_graph", SEED)
    chosen[2].append(("gather_in_a_graph", regression))
    for world, packages in chosen.items():
        out = tmp_path / f"graph{world}"
        arguments = [f"{package}={out / package}.json" for package, _ in packages]
        run = launch(
            world, [str(DRIVER), "graph", *arguments], pythonpath=[out], cwd=out, timeout=400
        )
        failures += package_failures(run, world, packages)
    count = sum(len(p) for p in chosen.values()) - 1
    print(f"seed {SEED + 2}: {count} random stacks trained as graphs in "
          f"{time.monotonic() - started:.1f}s, {sum(pipelined.values())} pipelined")  # fmt: skip
    assert not failures, "\n\n".join(failures)


def draw_mistakes(tmp_path) -> list[dict]:
    """Random specs with one mistake each, refused with exactly that error."""
    ch = RandomChooser(random.Random(SEED + 1))
    wanted = dict(MISTAKES)
    cases = []
    for index in range(5000):
        if not any(wanted.values()):
            break
        case = single_mistake(ch)
        kind = case.mistake["kind"]
        if known.open_bugs(case):
            continue
        if not wanted.get(kind):
            continue
        spec = tmp_path / f"mistake{index}.yaml"
        spec.write_text(case.text, encoding="utf-8")
        run = specc("validate", "--format", "json", str(spec))
        errors = [d for d in json.loads(run.stdout) if d["severity"] == "error"]
        if len(errors) != 1:  # the mistake spilled over into a second one: draw again
            assert run.code == 2 and errors, f"seed {SEED + 1}: mistake accepted\n{case.text}"
            continue
        assert errors[0]["code"] in case.expect, (SEED + 1, errors, case.text)
        split = split_of(case.mistake)
        if split and split[0] < split[1]:
            continue  # fewer rows than ranks: OneFlow aborts the job (see the docstring)
        wanted[kind] -= 1
        cases.append({"id": index, "spec": case.text, **case.mistake})
    assert not any(wanted.values()), (SEED + 1, wanted)
    return cases


def split_of(mistake: dict) -> tuple[int, int] | None:
    """The size a divisibility mistake splits, and over how many ranks."""
    return {
        "col": lambda: (mistake["out_features"], mistake["tensor"]),
        "row": lambda: (mistake["in_features"], mistake["tensor"]),
        "batch": lambda: (mistake["batch"], mistake["data"]),
        "ffn": lambda: (mistake.get("ffn"), mistake["tensor"]),
        "vocab": lambda: (mistake.get("vocab"), mistake["tensor"]),
        "heads_split": lambda: (mistake["hidden"], mistake["tensor"]),
    }.get(mistake["kind"], lambda: None)()


def test_refused_mistakes_really_fail(tmp_path):
    cases = draw_mistakes(tmp_path)
    path = tmp_path / "mistakes.json"
    path.write_text(json.dumps(cases), encoding="utf-8")
    run = launch(4, [str(DRIVER), "mistakes", str(path)], pythonpath=[tmp_path], cwd=tmp_path)
    assert run.returncode == 0, run.explain()
    records = run.records()
    failures = []
    for case in cases:
        mine = [r for r in records if r["case"] == case["id"]]
        assert len(mine) == 4, (case, mine)
        held = [r for r in mine if r["in_placement"]]
        what = f"{case['kind']} mistake (seed {SEED + 1}):\n{case['spec']}\nranks: {held}"
        if case["kind"] in ("in_features", "features"):
            if not all(r["error"] for r in mine):
                failures.append(f"OneFlow accepted the {what}")
            continue
        if case["kind"] == "heads":  # a local reshape: ranks outside the mesh hold nothing
            if not held or not all(r["error"] for r in held):
                failures.append(f"OneFlow accepted the {what}")
            continue
        if case["kind"] == "heads_split" and any(r["error"] for r in held):
            continue  # a rank's columns are no whole number of heads
        if all(r["error"] for r in held):
            continue  # OneFlow refused the uneven split outright
        size, group = split_of(case)
        parts = [r["local"]["split"] for r in held]
        # The plan would state size // group on every rank; OneFlow holds ceil or floor.
        if all(part == size // group for part in parts):
            failures.append(f"OneFlow split {size} over {group} evenly in the {what}")
    print(f"seed {SEED + 1}: {len(cases)} refused mistakes forced into OneFlow")
    assert not failures, "\n\n".join(failures)

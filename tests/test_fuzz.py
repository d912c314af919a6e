"""Random specs through the CLI: located diagnostics or a clean, deterministic build.

Specs come from tests/fuzz/strategies.py (chains of linears, norms and activations) and
tests/fuzz/stacks.py (transformer stacks: embeddings, attention, mlp, residual, repeat,
heads, loss), some with `sizes:` and `${...}`: valid by construction, then (often)
broken by one mutation that knows which codes specc must report. Hypothesis draws them
from a fixed seed (tests/support/seed.py): SPECC_FUZZ_SEED=<int> replays another run,
SPECC_FUZZ_SEED=today draws today's examples (a failure prints its spec, and hypothesis
keeps failing examples in .hypothesis/ and replays them first).

* test_validate_answers_every_spec (A): exit 0 or 2, never 3 or a traceback; every
  diagnostic located on a line and column of the file, in every format; the codes a
  mutation calls for are reported, and the first error is the mistake itself, on its
  line, where the mutation knows it (a misspelled key, a duplicated key or section, a
  list written for a mapping, an unquoted reference); a spec valid by construction is
  accepted; every layer kind occurs in some accepted spec.
* test_accepted_specs_build (B): a spec specc accepts builds twice to identical bytes,
  every file compiles, its plan keeps the pipeline rules (oracle.plan_problems), and a
  sample passes `ruff check` and `ruff format --check`.
* test_generated_code_holds_only_plan_words (7): every identifier of the generated code
  is a template word or a name from the spec; strings and comments are ones the golden
  trees hold, up to numbers, the package name and the file name.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, assume, given, note, settings
from hypothesis import seed as hypothesis_seed

from specc import names
from specc.spec.models import LAYER_KINDS
from tests.fuzz import known, oracle
from tests.fuzz.strategies import FUZZ, cases
from tests.support.cli import specc
from tests.support.seed import fuzz_seed, scaled

SEED = fuzz_seed()
VALIDATE_EXAMPLES = scaled(2000)
BUILD_EXAMPLES = scaled(200)
VOCABULARY_EXAMPLES = scaled(150)
RUFF_SAMPLE = scaled(50)


def fuzz_settings(examples: int):
    def apply(test):
        test = settings(
            max_examples=examples,
            deadline=None,
            suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
            print_blob=True,
        )(test)
        return hypothesis_seed(SEED)(test)

    return apply


class Counter:
    def __init__(self) -> None:
        self.counts: dict[str, int] = {}

    def add(self, key: str) -> None:
        self.counts[key] = self.counts.get(key, 0) + 1

    def report(self, what: str, started: float) -> None:
        total = sum(self.counts.values())
        print(f"{what}: {total} examples in {time.monotonic() - started:.1f}s: {self.counts}")


def test_validate_answers_every_spec():
    directory = Path(tempfile.mkdtemp(prefix="specc-fuzz-"))
    seen = Counter()
    accepted_kinds: set[str] = set()
    started = time.monotonic()

    @fuzz_settings(VALIDATE_EXAMPLES)
    @given(cases(FUZZ))
    def validate(case):
        assume(not known.open_bugs(case))
        note(f"file {case.file_name!r}:\n{case.text}")
        (directory / case.file_name).write_bytes(case.text.encode("utf-8", "surrogatepass"))
        runs = [
            specc("validate", *options, case.file_name, cwd=directory)
            for options in ([], ["--format", "json"], ["--format", "github"])
        ]
        problems = oracle.diagnostic_problems(case.file_name, case.text, *runs)
        if not problems:
            reported = {record["code"] for record in json.loads(runs[1].stdout)}
            if case.expect == frozenset() and runs[0].code != 0:
                problems.append("a spec valid by construction was refused")
            elif case.expect and not (runs[0].code == 2 and reported & case.expect):
                problems.append(f"expected one of {sorted(case.expect)}, got {sorted(reported)}")
            elif case.location and not any(
                (r["line"], r["column"]) == case.location and r["code"] in case.expect
                for r in json.loads(runs[1].stdout)
            ):
                problems.append(f"expected {sorted(case.expect)} at {case.location}")
            elif (
                case.first_line is not None
                and (first := oracle.first_error(runs[1]))
                and (first["line"] != case.first_line or first["code"] not in case.expect)
            ):
                problems.append(
                    f"the first error is {first['code']} at line {first['line']}, not "
                    f"{sorted(case.expect)} at the mistake, line {case.first_line}"
                )
        assert not problems, "\n".join([*problems, "--- stderr:", runs[0].stderr])
        seen.add(f"exit {runs[0].code}")
        if runs[0].code == 0 and case.mutation == "none":
            accepted_kinds.update(case.draft.kinds())

    try:
        validate()
    finally:
        shutil.rmtree(directory, ignore_errors=True)
        seen.report("validate", started)
    assert sum(seen.counts.values()) >= VALIDATE_EXAMPLES
    assert seen.counts.get("exit 0", 0) >= VALIDATE_EXAMPLES // 10, seen.counts
    # The generator reaches every layer kind in a spec specc accepts.
    assert set(LAYER_KINDS) <= accepted_kinds, set(LAYER_KINDS) - accepted_kinds


def package_tree(root: Path) -> dict[str, bytes]:
    return {
        str(path.relative_to(root)): path.read_bytes()
        for path in sorted(root.rglob("*"))
        if path.is_file() and "__pycache__" not in path.parts
    }


def build(case, directory: Path, out: str):
    spec = directory / case.file_name
    spec.write_text(case.text, encoding="utf-8")
    return specc("build", case.file_name, "-o", out, cwd=directory)


def test_accepted_specs_build(tmp_path):
    keep = tmp_path / "ruff"
    keep.mkdir()
    seen = Counter()
    started = time.monotonic()

    @fuzz_settings(BUILD_EXAMPLES)
    @given(cases(FUZZ, mutate_percent=10))
    def build_twice(case):
        assume(not known.open_bugs(case))
        note(f"file {case.file_name!r}:\n{case.text}")
        work = Path(tempfile.mkdtemp(dir=tmp_path))
        try:
            first = build(case, work, "one")
            if first.code != 0:
                assert first.code == 2 and "Traceback" not in first.stderr, first.stderr
                assert not (work / "one").exists(), "a refused spec wrote something"
                seen.add("refused")
                return
            second = build(case, work, "two")
            assert second.code == 0, second.stderr
            plan = specc("plan", "--json", case.file_name, cwd=work)
            assert plan.code == 0, plan.stderr
            problems = oracle.plan_problems(json.loads(plan.stdout))
            assert not problems, "\n".join(problems)
            package = case.draft.package
            one, two = package_tree(work / "one"), package_tree(work / "two")
            assert one == two, "the same spec built twice differs"
            assert set(one) >= {f"{package}/{f}" for f in ("__init__.py", "model.py")}
            for name, content in one.items():
                if name.endswith(".py"):
                    compile(content, name, "exec")
            kept = keep / str(seen.counts.get("built", 0))
            if seen.counts.get("built", 0) < RUFF_SAMPLE:
                shutil.copytree(work / "one" / package, kept / package)
                (kept / "spec.yaml").write_text(case.text, encoding="utf-8")
            seen.add("built")
        finally:
            shutil.rmtree(work, ignore_errors=True)

    build_twice()
    seen.report("build", started)
    assert seen.counts.get("built", 0) >= BUILD_EXAMPLES // 2, seen.counts
    assert len(list(keep.glob("*/spec.yaml"))) == RUFF_SAMPLE
    for command in (
        ["check", "--isolated", "--no-cache", "--extend-select", "E501"],
        ["format", "--isolated", "--check", "--no-cache"],
    ):
        result = subprocess.run(
            [sys.executable, "-m", "ruff", *command, str(keep)],
            cwd=tmp_path,
            capture_output=True,
            text=True,
            check=False,
        )
        output = result.stdout + result.stderr
        assert result.returncode == 0, output + _specs_named_in(output, keep)


def _specs_named_in(output: str, keep: Path) -> str:
    """The specs of the kept packages that ruff's output mentions."""
    return "".join(
        f"\n--- {spec}:\n{spec.read_text(encoding='utf-8')}"
        for spec in sorted(keep.glob("*/spec.yaml"))
        if f"{spec.parent}/" in output
    )


@pytest.fixture(scope="module")
def vocabulary():
    return oracle.Vocabulary.from_golden()


def test_generated_code_holds_only_plan_words(vocabulary, tmp_path):
    seen = Counter()
    started = time.monotonic()

    @fuzz_settings(VOCABULARY_EXAMPLES)
    @given(cases(FUZZ, mutate_percent=0))
    def scan(case):
        assume(not known.open_bugs(case))
        note(f"file {case.file_name!r}:\n{case.text}")
        work = Path(tempfile.mkdtemp(dir=tmp_path))
        try:
            run = build(case, work, "out")
            if run.code != 0:
                seen.add("refused")
                return
            data = yaml.safe_load(case.text)
            spec_names = oracle.spec_names(data)
            # Names of inputs and layers; the package name has rules of its own.
            inner = {"inputs": data.get("inputs"), "layers": data.get("layers")}
            given = oracle.spec_names(inner, defaults_too=False)
            refused = [n for n in given if names.identifier_problem(n) is not None]
            if names.identifier_problem(data["name"], package=True) is not None:
                refused.append(data["name"])
            assert not refused, f"accepted names the naming authority refuses: {refused}"
            package = case.draft.package
            derived = spec_names + oracle.derived_names(data)
            problems = vocabulary.problems(work / "out" / package, derived, package)
            assert not problems, "\n".join(problems)
            seen.add("scanned")
        finally:
            shutil.rmtree(work, ignore_errors=True)

    scan()
    seen.report("vocabulary", started)
    assert seen.counts.get("scanned", 0) >= VOCABULARY_EXAMPLES // 2, seen.counts


def test_vocabulary_is_not_vacuous(vocabulary, tmp_path):
    """The scan flags a string, an identifier and a comment word no template wrote."""
    run = specc("build", str(Path(__file__).parent / "cases" / "single.yaml"), "-o", str(tmp_path))
    assert run.code == 0, run.stderr
    model = next(tmp_path.glob("*/model.py"))
    model.write_text(model.read_text() + '\nINJECTED = "rm -rf"  # sneaky\n', encoding="utf-8")
    problems = "\n".join(vocabulary.problems(model.parent, [], model.parent.name))
    assert "'INJECTED'" in problems and "rm -rf" in problems and "'sneaky'" in problems

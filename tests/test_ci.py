"""specc in other repositories' CI: the pre-commit hook and the README's CI snippets."""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.support.paths import INVALID, REPO, SPECS

MANIFEST = REPO / ".pre-commit-hooks.yaml"
# The keys pre-commit accepts in a manifest hook (pre_commit/clientlib.py).
HOOK_KEYS = {
    "id", "name", "entry", "language", "alias", "files", "exclude", "types", "types_or",
    "exclude_types", "additional_dependencies", "args", "always_run", "fail_fast",
    "pass_filenames", "description", "language_version", "log_file",
    "minimum_pre_commit_version", "require_serial", "stages", "verbose",
}  # fmt: skip


def hook() -> dict:
    hooks = yaml.safe_load(MANIFEST.read_text(encoding="utf-8"))
    assert isinstance(hooks, list)
    (found,) = [h for h in hooks if h.get("id") == "specc-validate"]
    return found


def console_script(name: str) -> str:
    """The script pip installs for `name`, next to the interpreter running the tests."""
    script = shutil.which(name, path=str(Path(sys.executable).parent))
    assert script, f"no `{name}` script beside {sys.executable}"
    return script


def run_entry(entry: str, filenames: list[str], cwd: Path) -> subprocess.CompletedProcess:
    """Run a hook as pre-commit does: its entry split like a shell would, then the files."""
    command, *arguments = shlex.split(entry)
    return subprocess.run(
        [console_script(command), *arguments, *filenames],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_manifest_is_a_valid_pre_commit_hook():
    found = hook()
    assert {"id", "name", "entry", "language"} <= set(found) <= HOOK_KEYS
    assert found["language"] == "python" and found["pass_filenames"] is True
    assert all(isinstance(found[key], str) for key in ("id", "name", "entry", "files"))
    # language: python installs this repository; the entry must be one of its scripts.
    pyproject = (REPO / "pyproject.toml").read_text(encoding="utf-8")
    command = shlex.split(found["entry"])[0]
    assert re.search(rf'^{command} = "specc\.cli:main"$', pyproject, re.MULTILINE)


@pytest.mark.parametrize(
    ("path", "checked"),
    [
        ("specs/huge_mlp_2d.yaml", True),
        ("specs/nested/model.yml", True),
        ("services/trainer/specs/gpt.yaml", True),
        ("models/gpt.specc.yaml", True),
        ("gpt.specc.yml", True),
        (".github/workflows/ci.yaml", False),
        ("specs.yaml", False),
        ("myspecs/model.yaml", False),
        ("specs/README.md", False),
        ("docker-compose.yaml", False),
    ],
)
def test_hook_checks_spec_files_only(path, checked):
    # pre-commit matches `files` with re.search on the path relative to the repository.
    assert bool(re.search(hook()["files"], path)) is checked


def test_hook_entry_validates_the_files_it_is_given(tmp_path):
    specs = tmp_path / "specs"
    specs.mkdir()
    shutil.copy(SPECS / "huge_mlp_2d.yaml", specs / "good.yaml")
    shutil.copy(INVALID / "world_size_mismatch.yaml", specs / "broken.yaml")
    entry = hook()["entry"]

    good = run_entry(entry, ["specs/good.yaml"], tmp_path)
    assert (good.returncode, good.stdout, good.stderr) == (0, "", "")

    both = run_entry(entry, ["specs/good.yaml", "specs/broken.yaml"], tmp_path)
    assert both.returncode == 2
    assert both.stderr.startswith("specs/broken.yaml:7:15: error[E300]: ")
    assert both.stderr.endswith("specc: 1 error, 0 warnings\n")


def runner_env() -> dict[str, str]:
    """The environment with specc's scripts first on PATH, as after `pip install`."""
    return {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}


def ci_section() -> str:
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    start = readme.index("\n## Use specc in CI\n")
    end = readme.index("\n## ", start + 1)
    return readme[start:end]


def yaml_blocks() -> list[dict]:
    blocks = re.findall(r"^```yaml\n(.*?)^```$", ci_section(), re.DOTALL | re.MULTILINE)
    return [yaml.safe_load(block) for block in blocks]


def test_readme_ci_snippets_are_valid_yaml():
    workflow, pre_commit = yaml_blocks()
    steps = workflow["jobs"]["validate"]["steps"]
    assert steps[0]["uses"].startswith("actions/checkout@")
    assert steps[1]["with"]["python-version"] == "3.11"
    (hooks,) = [repo["hooks"] for repo in pre_commit["repos"]]
    assert [h["id"] for h in hooks] == [hook()["id"]]


def test_readme_workflow_commands_pass_on_this_repository():
    """The workflow's specc steps, run from the repository root as the runner would
    (warnings, if any, do not fail them)."""
    workflow, _ = yaml_blocks()
    runs = [step["run"] for step in workflow["jobs"]["validate"]["steps"] if "run" in step]
    commands = [run for run in runs if run.startswith("specc ")]
    assert any("--format github" in command for command in commands)
    for command in commands:
        result = subprocess.run(
            ["bash", "-c", command],
            cwd=REPO,
            env=runner_env(),
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert result.returncode == 0, (command, result.stdout, result.stderr)
        assert "error" not in result.stdout + result.stderr, command


def test_readme_workflow_annotates_a_broken_spec(tmp_path):
    (tmp_path / "specs").mkdir()
    shutil.copy(INVALID / "many_schema_errors.yaml", tmp_path / "specs" / "bad.yaml")
    workflow, _ = yaml_blocks()
    runs = [step["run"] for step in workflow["jobs"]["validate"]["steps"] if "run" in step]
    (command,) = [run for run in runs if "--format github" in run]
    result = subprocess.run(
        ["bash", "-c", command],
        cwd=tmp_path,
        env={"PATH": f"{Path(sys.executable).parent}:/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2
    lines = result.stdout.splitlines()
    assert lines and all(line.startswith("::error file=specs/bad.yaml,line=") for line in lines)

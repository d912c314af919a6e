"""The compiler's stages import each other in one direction only.

source -> spec -> lower/plan -> render -> emit; `plan` knows nothing of the spec or of
jinja2, the kinds reach the lowering only through `Context`, only render lays out
Python text, and templates hold no arithmetic.
"""

from __future__ import annotations

import ast
import os
import re
import subprocess
import sys

from tests.support.paths import REPO

SPECC = REPO / "specc"
# What each module may import from specc (besides the leaf modules below).
ALLOWED = {
    "source": set(),
    "plan": set(),
    "kinds": {"plan", "source"},
    "spec": {"source", "names", "kinds"},
    "lower": {"source", "spec", "plan", "names", "kinds"},
    "estimate": {"plan", "kinds"},
    "layout": {"plan"},
    "render": {"plan", "kinds", "layout"},
    "emit": set(),
    "schema": {"spec"},
    "fixes": {"source", "spec"},
}
LEAVES = {"diagnostics", "codes", "__init__"}


def specc_imports(path):
    tree = ast.parse(path.read_text())
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("specc"):
            parts = node.module.split(".")
            if len(parts) == 1:
                found |= {alias.name for alias in node.names}
            else:
                found.add(parts[1])
        elif isinstance(node, ast.Import):
            found |= {a.name.split(".")[1] for a in node.names if a.name.startswith("specc.")}
    return found - LEAVES - {"__version__"}


def test_imports_flow_one_way():
    for stage, allowed in ALLOWED.items():
        paths = [SPECC / f"{stage}.py"] if (SPECC / f"{stage}.py").exists() else []
        paths += list((SPECC / stage).glob("*.py")) if (SPECC / stage).is_dir() else []
        assert paths, stage
        for path in paths:
            extra = specc_imports(path) - allowed - {stage}
            assert not extra, f"{path.relative_to(REPO)} imports {sorted(extra)}"


def test_plan_and_render_do_not_touch_pydantic_or_yaml():
    for name in ("plan.py", "render.py", "emit.py"):
        text = (SPECC / name).read_text()
        assert "pydantic" not in text and "import yaml" not in text, name


def test_templates_do_no_arithmetic():
    for template in (REPO / "templates").rglob("*.jinja"):
        for expression in re.findall(r"{{(.*?)}}|{%(.*?)%}", template.read_text()):
            text = "".join(expression)
            assert not re.search(r"\s[-+*/%]\s|\|\s*(length|sum|round|int)\b", text), (
                f"{template.name}: {text.strip()}"
            )


def test_only_render_lays_out_python():
    """Lowering computes, rendering lays out: nothing else imports the layout module."""
    for path in SPECC.rglob("*.py"):
        if path.stem not in ("render", "layout"):
            assert "layout" not in specc_imports(path), path.relative_to(REPO)


def test_kinds_do_not_reach_into_lowering():
    """A kind module sees the walk only through `specc.kinds.base.Context`."""
    for path in (SPECC / "kinds").glob("*.py"):
        assert not {"lower", "spec", "render"} & specc_imports(path), path.relative_to(REPO)


def _modules_after(*argv: str) -> set[str]:
    """The modules a fresh interpreter has imported after running `specc *argv`."""
    script = (
        "import sys\n"
        "from specc.cli import main\n"
        f"status = main({list(argv)!r})\n"
        "print()\n"
        "print(status, *sorted(sys.modules))\n"
    )
    run = subprocess.run(
        [sys.executable, "-c", script], cwd=REPO, capture_output=True, text=True, check=True
    )
    status, *modules = run.stdout.splitlines()[-1].split()
    assert status == "0", run.stderr
    return set(modules)


def test_validate_imports_only_what_it_needs():
    """`specc validate` starts without Jinja2 and the stages after lowering (issue 17: a cold
    start is mostly imports); `build` needs them. Timing is benchmarks/cold_start.py's."""
    validating = _modules_after("validate", str(REPO / "specs" / "gpt2.yaml"))
    for module in ("jinja2", "specc.render", "specc.layout", "specc.emit", "specc.fixes"):
        assert module not in validating, module
    # Nor what only a YAML syntax error, `plan --apply` or a bug in specc needs.
    for module in ("specc.source.slips", "tempfile", "traceback"):
        assert module not in validating, module
    assert {"specc.spec", "specc.lower"} <= validating
    planning = _modules_after("plan", str(REPO / "specs" / "gpt2.yaml"))
    assert "jinja2" not in planning


def _plugins_setting(script: str, **env: str) -> str:
    """What PYDANTIC_DISABLE_PLUGINS is after `script`, in a fresh interpreter."""
    environment = {k: v for k, v in os.environ.items() if k != "PYDANTIC_DISABLE_PLUGINS"}
    script += "\nimport os\nprint(os.environ.get('PYDANTIC_DISABLE_PLUGINS'))"
    run = subprocess.run(
        [sys.executable, "-c", script],
        cwd=REPO,
        env={**environment, **env},
        capture_output=True,
        text=True,
        check=True,
    )
    return run.stdout.splitlines()[-1]


def test_only_the_command_line_turns_pydantic_plugins_off():
    """Finding pydantic's plugins reads every installed package's entry points (issue 17:
    a cold start), so `specc.cli.main` turns them off before pydantic is imported, unless
    the user said otherwise; the library leaves the setting to its caller."""
    _plugins_setting("import sys, specc.cli\nassert 'pydantic' not in sys.modules")
    assert _plugins_setting("import specc.api") == "None"
    command = "from specc.cli import main\nmain(['codes'])"
    assert _plugins_setting(command) == "__all__"
    assert _plugins_setting(command, PYDANTIC_DISABLE_PLUGINS="logfire") == "logfire"

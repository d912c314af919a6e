"""The `specc` command: argument handling and printing only; the work is in `specc.api`.

Exit codes (also in the README):
  0  success
  1  warnings under --strict, or `schema --check` found the committed schema stale
  2  invalid input: a spec error, an unreadable file, an output that cannot be written
  3  internal error in specc (a bug: the traceback is printed; please report it)
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from specc import __version__, codes, report
from specc.diagnostics import Diagnostic

# The commands import `api` and `schema`, and with them pydantic, when they run: after
# `main` has told pydantic to load no plugins.
if TYPE_CHECKING:
    from specc import api

OK, DRIFT, INVALID, INTERNAL = 0, 1, 2, 3


def main(argv: Sequence[str] | None = None) -> int:
    # pydantic plugins (packages that watch every model's validation: tracers, loggers)
    # have no business in specc's own models, and finding them reads the entry points of
    # every installed package, 5 ms of each start here (issue 17). A user's setting wins;
    # the library (`specc.api`) leaves the variable alone.
    os.environ.setdefault("PYDANTIC_DISABLE_PLUGINS", "__all__")
    parser = _parser()
    arguments = parser.parse_args(argv)
    try:
        return int(arguments.run(arguments))
    except KeyboardInterrupt:
        return 130
    except Exception:
        import traceback  # only for a bug: `specc validate` starts without it (issue 17)

        traceback.print_exc()
        print(
            f"specc {__version__}: internal error (a bug in specc, not in your spec); "
            "please report it with the spec and the traceback above",
            file=sys.stderr,
        )
        return INTERNAL


def _parser() -> argparse.ArgumentParser:
    from specc import schema

    parser = argparse.ArgumentParser(
        prog="specc",
        description="Compile a YAML model spec into a package of parallel OneFlow modules.",
    )
    parser.add_argument("--version", action="version", version=f"specc {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    build = commands.add_parser("build", help="validate a spec and write its package")
    build.add_argument("spec", help="the spec file")
    build.add_argument("-o", "--out", default="build", help="directory to write the package into")
    build.add_argument(
        "--force", action="store_true", help="replace a directory specc did not write"
    )
    _override_option(build)
    _diagnostic_options(build)
    build.set_defaults(run=_build)

    validate = commands.add_parser("validate", help="check specs; print every problem found")
    validate.add_argument("specs", nargs="+", help="spec files")
    _override_option(validate)
    _diagnostic_options(validate)
    validate.set_defaults(run=_validate)

    plan = commands.add_parser(
        "plan",
        help="print the lowered plan of a spec, and its memory and communication per rank",
    )
    plan.add_argument("spec", help="the spec file")
    plan.add_argument("--json", action="store_true", help="print the whole plan as JSON")
    plan.add_argument(
        "--device-memory",
        type=_bytes,
        metavar="SIZE",
        help="each device's memory, e.g. 80GiB: say whether every rank fits",
    )
    plan.add_argument(
        "--svg", metavar="FILE", help="also draw the plan: ranks, layers, memory, collectives"
    )
    plan.add_argument(
        "--world",
        type=_positive,
        metavar="N",
        help="plan for N devices: rank every data x tensor x pipeline and batch split",
    )
    plan.add_argument(
        "--gpus-per-node",
        type=_positive,
        default=8,
        metavar="G",
        help="devices per node; tensor groups stay inside one (default 8)",
    )
    plan.add_argument(
        "--global-batch",
        type=_positive,
        metavar="B",
        help="samples per step the planner splits (default: the spec's)",
    )
    plan.add_argument(
        "--apply", action="store_true", help="with --world: write the best sizes into the spec"
    )
    _override_option(plan)
    _diagnostic_options(plan)
    plan.set_defaults(run=_plan)

    schema_cmd = commands.add_parser("schema", help="print or check the spec's JSON Schema")
    schema_cmd.add_argument(
        "--check", action="store_true", help=f"fail (exit 1) if {schema.SCHEMA_PATH} is stale"
    )
    schema_cmd.add_argument("--path", default=schema.SCHEMA_PATH, help="the committed schema")
    schema_cmd.add_argument("--write", action="store_true", help="write the schema to --path")
    schema_cmd.set_defaults(run=_schema)

    codes_cmd = commands.add_parser("codes", help="list the diagnostic codes")
    codes_cmd.set_defaults(run=lambda _: print(codes.markdown_table(), end="") or OK)
    return parser


def _override_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        dest="overrides",
        help="override a size from the spec's `sizes:` (repeatable)",
    )


def _diagnostic_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--format", choices=report.FORMATS, default="text", help="diagnostics format"
    )
    parser.add_argument("--strict", action="store_true", help="treat warnings as failures (exit 1)")
    parser.add_argument(
        "--color", choices=("auto", "always", "never"), default="auto", help="colour text output"
    )
    parser.add_argument(
        "--max-diagnostics", type=int, default=50, metavar="N", help="show at most N per file"
    )


def _build(arguments: argparse.Namespace) -> int:
    from specc import api
    from specc.emit import OutputError  # not imported by the other commands

    try:
        result = api.build(
            arguments.spec,
            Path(arguments.out),
            force=arguments.force,
            overrides=arguments.overrides,
        )
    except OutputError as error:
        print(f"specc: error: {error}", file=sys.stderr)
        return INVALID
    status = _show([result], arguments)
    if result.package_dir is not None:
        print(f"wrote {result.package_dir}", file=sys.stderr)
    return status


def _validate(arguments: argparse.Namespace) -> int:
    from specc import api

    results = [api.check(path, arguments.overrides) for path in arguments.specs]
    return _show(results, arguments)


def _plan(arguments: argparse.Namespace) -> int:
    from specc import api
    from specc.estimate import estimate
    from specc.estimate.text import report_text

    if arguments.world is not None:
        return _plan_world(arguments)
    for option in ("apply", "global_batch"):
        if getattr(arguments, option):
            flag = "--" + option.replace("_", "-")
            print(f"specc plan: error: {flag} needs --world N", file=sys.stderr)
            return INVALID
    result = api.check(arguments.spec, arguments.overrides)
    if arguments.format == "json" and not arguments.json:
        # One JSON document: the diagnostics and the report (docs/plan-report.md).
        plan = result.plan
        estimated = None if plan is None else estimate(plan, arguments.device_memory)
        status = _show([result], arguments, quiet=True)
        document = {
            "diagnostics": json.loads(report.as_json(result.diagnostics.sorted())),
            "report": None if estimated is None else estimated.to_dict(),
        }
        print(json.dumps(document, indent=2))
        return status
    status = _show([result], arguments)
    if result.plan is None:
        return status
    if arguments.json:
        print(result.plan.to_json(), end="")
        return status
    estimated = estimate(result.plan, arguments.device_memory)
    print(result.plan.to_text() + report_text(estimated), end="")
    if arguments.svg:
        from specc.estimate.picture import picture

        try:
            with open(arguments.svg, "w", encoding="utf-8") as file:
                file.write(picture(result.plan, estimated))
        except OSError as error:
            print(f"specc plan: error: cannot write {arguments.svg}: {error}", file=sys.stderr)
            return INVALID
        print(f"wrote {arguments.svg}", file=sys.stderr)
    return status


def _plan_world(arguments: argparse.Namespace) -> int:
    """The planner: every layout of --world devices, ranked; --apply writes the best."""
    from specc import planner, source
    from specc.diagnostics import Diagnostics

    path = arguments.spec
    diagnostics = Diagnostics()
    text = source.read_text(path, diagnostics)
    if text is None:
        print(report.text(diagnostics.sorted(), {}), end="", file=sys.stderr)
        return INVALID
    try:
        planned = planner.plan_world(
            path,
            text,
            arguments.overrides,
            world=arguments.world,
            gpus_per_node=arguments.gpus_per_node,
            device_memory=arguments.device_memory,
            global_batch=arguments.global_batch,
        )
    except planner.PlannerError as error:
        print(f"specc plan: error: {error}", file=sys.stderr)
        return INVALID
    if arguments.format == "json":
        print(json.dumps(planned.to_dict(), indent=2))
    else:
        print(planner.planned_text(planned), end="")
    if not planned.ranked:
        print(f"specc plan: error: no layout of {arguments.world} devices works", file=sys.stderr)
        return INVALID
    if arguments.apply:
        chosen = planned.ranked[0]
        try:
            changed = planner.apply(path, text, chosen)
        except planner.PlannerError as error:
            print(f"specc plan: error: {error}", file=sys.stderr)
            return INVALID
        try:
            _replace_text(path, changed)
        except OSError as error:
            print(f"specc plan: error: cannot write {path}: {error}", file=sys.stderr)
            return INVALID
        print(f"wrote {chosen.sizes} into {path}", file=sys.stderr)
    return OK


def _replace_text(path: str, text: str) -> None:
    """Write `text` to `path` whole or not at all: a file beside it, renamed over it."""
    import tempfile  # imported by its one use: `specc validate` starts without it (issue 17)

    directory = os.path.dirname(os.path.abspath(path))
    handle, temporary = tempfile.mkstemp(dir=directory, prefix=".specc-", suffix=".yaml")
    try:
        with os.fdopen(handle, "w", encoding="utf-8", newline="") as file:
            file.write(text)
        shutil.copymode(path, temporary)
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        raise


def _positive(text: str) -> int:
    """argparse's type for counts: a whole number of at least 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{value} is not 1 or more")
    return value


def _bytes(text: str) -> int:
    """argparse's type for sizes: a bad one is a usage error (exit 2), not a traceback."""
    from specc.estimate.units import parse_bytes

    try:
        return parse_bytes(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def _schema(arguments: argparse.Namespace) -> int:
    from specc import schema

    text = schema.schema_text()
    path = Path(arguments.path)
    if arguments.check:
        if not path.is_file():
            where = "is not a file" if path.exists() else "does not exist"
            print(
                f"specc: error: {path} {where}; run `specc schema --check` where the committed "
                "schema is (the repository root), give its place with --path, or write it "
                "with `specc schema --write`",
                file=sys.stderr,
            )
            return INVALID
        try:
            current = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as error:
            print(f"specc: error: cannot read {path}: {error}", file=sys.stderr)
            return INVALID
        if current != text:
            print(f"{path} is out of date; run `specc schema --write`", file=sys.stderr)
            return DRIFT
        print(f"{path} is up to date", file=sys.stderr)
        return OK
    if arguments.write:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
        return OK
    print(text, end="")
    return OK


def _show(results: list[api.Result], arguments: argparse.Namespace, *, quiet: bool = False) -> int:
    """Print the diagnostics of every result (unless `quiet`); return the exit status they
    call for."""
    sources: dict[str, str] = {}
    everything: list[Diagnostic] = []
    shown = []
    for result in results:
        if result.text is not None:
            sources[result.path] = result.text
        ordered = result.diagnostics.sorted()
        everything += ordered
        shown.append(ordered)
    if quiet:
        pass
    elif arguments.format == "json":
        print(report.as_json(everything), end="")
    elif arguments.format == "github":
        print(report.github(everything), end="")
    else:
        colour = _use_colour(arguments.color)
        for ordered in shown:
            text = report.text(ordered, sources, colour=colour, limit=arguments.max_diagnostics)
            print(text, end="", file=sys.stderr)
        if everything:
            print(f"specc: {report.summary(everything)}", file=sys.stderr)
    if any(d.severity.value == "error" for d in everything):
        return INVALID
    if arguments.strict and everything:
        return DRIFT
    return OK


def _use_colour(choice: str) -> bool:
    if choice != "auto":
        return choice == "always"
    return "NO_COLOR" not in os.environ and sys.stderr.isatty()

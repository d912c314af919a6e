"""Run the specc CLI in-process, as a user would from a directory."""

from __future__ import annotations

import contextlib
import io
import os
from dataclasses import dataclass
from pathlib import Path

from specc.cli import main


@dataclass
class Run:
    code: int
    stdout: str
    stderr: str


def specc(*arguments: str, cwd: Path | None = None) -> Run:
    out, err = io.StringIO(), io.StringIO()
    previous = Path.cwd()
    try:
        if cwd is not None:
            os.chdir(cwd)
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            code = main(list(arguments))
    finally:
        os.chdir(previous)
    return Run(code, out.getvalue(), err.getvalue())

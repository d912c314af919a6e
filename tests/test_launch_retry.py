"""The test launcher runs a launch again only when OneFlow itself aborted, and only once.

A retry that swallowed our own failures would turn the launcher tests into tests that pass
without checking; these hold that it does not, without starting OneFlow.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support import launcher
from tests.support.launcher import UPSTREAM_ABORTS, Launch

TEARDOWN = f"F20261125 22:56:09.132436 19123 {UPSTREAM_ABORTS[0]} \n*** Check failure stack"


def scripted(monkeypatch, *runs: Launch) -> list[Launch]:
    """Make each launch return the next of `runs`; what is left over is returned."""
    left = list(runs)
    monkeypatch.setattr(launcher, "_launch_once", lambda *args, **kwargs: left.pop(0))
    return left


def run(reset=None) -> Launch:
    return launcher.launch(2, ["program.py"], pythonpath=[], cwd=Path("."), reset=reset)


def test_an_upstream_abort_is_run_again_and_the_second_run_counts(monkeypatch):
    second = Launch(0, '{"rank": 0}', "")
    left = scripted(monkeypatch, Launch(1, "", TEARDOWN), second)
    with pytest.warns(UserWarning, match="OneFlow's own abort"):
        assert run() is second
    assert left == []


def test_what_the_first_run_left_is_reset_before_the_second(monkeypatch):
    events = []
    runs = iter([Launch(1, "", TEARDOWN), Launch(0, "", "")])

    def once(*args, **kwargs):
        events.append("launch")
        return next(runs)

    monkeypatch.setattr(launcher, "_launch_once", once)
    with pytest.warns(UserWarning):
        run(reset=lambda: events.append("reset"))
    assert events == ["launch", "reset", "launch"]


def test_an_upstream_abort_twice_fails(monkeypatch):
    again = Launch(1, "", TEARDOWN)
    scripted(monkeypatch, Launch(1, "", TEARDOWN), again, Launch(0, "", ""))
    with pytest.warns(UserWarning):
        assert run() is again


@pytest.mark.parametrize(
    "failed",
    [
        Launch(1, "", "AssertionError: losses differ"),
        Launch(1, "", "F20261125 actor.cpp:120] Check failed: something else"),
        Launch(0, "", TEARDOWN),  # printed, but the launch passed: nothing to run again
    ],
)
def test_anything_else_is_returned_as_it_is(monkeypatch, failed):
    left = scripted(monkeypatch, failed, Launch(0, "", ""))
    assert run(reset=lambda: pytest.fail("reset without a second run")) is failed
    assert len(left) == 1

"""SPECC_TEST_ORDER=reverse runs the tests in reverse order, to show none depends on another."""

from __future__ import annotations

import os

import pytest


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if os.environ.get("SPECC_TEST_ORDER") == "reverse":
        items.reverse()

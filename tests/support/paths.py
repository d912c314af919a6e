"""Where the test inputs and expectations live."""

from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
SPECS = REPO / "specs"
CASES = REPO / "tests" / "cases"
GOLDEN = REPO / "tests" / "golden"
INVALID = REPO / "tests" / "invalid"


def golden_specs() -> list[Path]:
    """Every spec whose generated package is kept as a golden tree."""
    return sorted(SPECS.glob("*.yaml")) + sorted(CASES.glob("*.yaml"))


def invalid_specs() -> list[Path]:
    return sorted(INVALID.glob("*.yaml"))

"""The fuzz seed and scale, so that `make test` and CI run the same examples every time.

SPECC_FUZZ_SEED=<int> replays another run's examples, SPECC_FUZZ_SEED=today draws
today's (a fresh sample each day, as a nightly job would); without it the seed is
fixed. SPECC_FUZZ_SCALE=<fraction> runs a fraction of the examples (`make quick`).
"""

from __future__ import annotations

import datetime
import os

FIXED_SEED = 20261125


def fuzz_seed() -> int:
    value = os.environ.get("SPECC_FUZZ_SEED", "").strip()
    if value == "today":
        return int(datetime.date.today().strftime("%Y%m%d"))
    return int(value) if value else FIXED_SEED


def scaled(examples: int) -> int:
    """`examples`, times SPECC_FUZZ_SCALE (at least one)."""
    return max(1, round(examples * float(os.environ.get("SPECC_FUZZ_SCALE") or 1)))

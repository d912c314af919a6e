"""Pipeline stage assignment: cut the model's units into contiguous, balanced stages.

A unit is a top-level layer or one repetition of a `repeat` (so a stack of blocks can
be cut between stages). Balancing minimises the heaviest stage's weight (parameters;
an LM head weighs as much as the table it uses), keeping every stage non-empty and
the order of units. Used by lowering; it knows nothing of specs or plans.
"""

from __future__ import annotations

from collections.abc import Sequence


def balance(weights: Sequence[int], stages: int) -> list[int]:
    """The stage of each unit: contiguous, non-empty stages, the heaviest as light as can be.

    Among the cuts whose heaviest stage is lightest, the one with the smallest sum of
    squared stage weights wins, so the other stages are balanced too (a heavy first
    stage, say an embedding, does not leave the rest lopsided). Remaining ties give
    the later stages the extra units, as LiBai does. Needs len(weights) >= stages.

    >>> balance([10, 1, 1, 1, 1, 10], 2)
    [0, 0, 0, 1, 1, 1]
    >>> balance([40, 1, 7, 7, 7, 7, 7, 7], 3)
    [0, 1, 1, 1, 1, 2, 2, 2]
    """
    count = len(weights)
    if stages < 1 or count < stages:
        raise ValueError(f"cannot cut {count} units into {stages} non-empty stages")
    prefix = [0]
    for weight in weights:
        prefix.append(prefix[-1] + weight)
    heaviest = _partition(prefix, stages, max)[0]
    _, assignment = _partition(
        prefix, stages, lambda previous, part: previous + part * part, limit=heaviest
    )
    return assignment


def _partition(prefix, stages, combine, limit=None):  # type: ignore[no-untyped-def]
    """Dynamic programme over cut points: best cost of units[:i] in k stages."""
    count = len(prefix) - 1
    infinity = float("inf")
    best = [[infinity] * (count + 1) for _ in range(stages + 1)]
    cut = [[0] * (count + 1) for _ in range(stages + 1)]
    best[0][0] = 0
    for k in range(1, stages + 1):
        for i in range(k, count - (stages - k) + 1):
            for j in range(k - 1, i):
                part = prefix[i] - prefix[j]
                if best[k - 1][j] == infinity or (limit is not None and part > limit):
                    continue
                cost = combine(best[k - 1][j], part)
                if cost < best[k][i] or (cost == best[k][i] and j < cut[k][i]):
                    best[k][i], cut[k][i] = cost, j
    assignment = [0] * count
    end = count
    for k in range(stages, 0, -1):
        start = cut[k][end]
        assignment[start:end] = [k - 1] * (end - start)
        end = start
    return best[stages][count], assignment

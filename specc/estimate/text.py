"""The report for people: what `specc plan` prints after the plan."""

from __future__ import annotations

from specc.estimate.report import FAMILIES, Report
from specc.estimate.units import size_text

_OPTIMIZERS = {"adamw": "AdamW", "sgd": "SGD"}
_PHASES = ("forward", "backward", "step")


def report_text(report: Report) -> str:
    """Memory per rank, activations per stage, and every collective of a training step."""
    m, p = report.micro_batches, report.pipeline
    states = report.optimizer_states
    moments = f"{states} fp32 moment{'s' if states != 1 else ''} per parameter"
    lines = [
        f"estimate per rank of one training step: {m} micro-batch{'es' if m > 1 else ''}, "
        f"{report.precision} activations ({report.activation_bytes} bytes), fp32 weights "
        f"and gradients, {_OPTIMIZERS[report.optimizer]} ({moments}), ZeRO stage {report.zero}"
        + (", recomputed repetitions" if report.recompute else "")
        + (", sequence parallel" if report.sequence_parallel else ""),
        "stages (activations of one micro-batch; "
        + (f"1F1B keeps min({m}, {p} - stage) in flight):" if p > 1 else "one at a time):"),
    ]
    for stage in report.stages:
        lines.append(
            f"  stage {stage.index} ({', '.join(stage.layers)}), {ranks_text(stage.ranks)}: "
            f"{flops_text(stage.flops)} forward, activations "
            f"{size_text(stage.activations)} x {stage.in_flight} in flight"
        )
    lines.append("memory per rank:")
    for memory in report.memory:
        lines.append(
            f"  {ranks_text(memory.ranks)}: parameters {size_text(memory.parameters)}"
            f" + gradients {size_text(memory.gradients)} + optimizer "
            f"{size_text(memory.optimizer)} + activations {size_text(memory.activations)}"
            f" = {size_text(memory.total)}"
        )
    if report.device_memory is not None:
        limit = size_text(report.device_memory)
        for memory in report.memory:
            spare = report.device_memory - memory.total
            one = len(memory.ranks) == 1
            verdict = (
                f"{'fits' if one else 'fit'}, {size_text(spare)} to spare"
                if spare >= 0
                else f"{'does' if one else 'do'} not fit, {size_text(-spare)} over"
            )
            lines.append(f"  device memory {limit}: {ranks_text(memory.ranks)} {verdict}")
    lines.append(
        f"communication per training step (forward and backward x {m} "
        f"micro-batch{'es' if m > 1 else ''}, "
        "the gradients' reduction once; bytes each rank holds, then sends):"
    )
    width = max((len(c.what) for c in report.collectives), default=0)
    if not report.collectives:
        lines.append("  none")
    for stage in report.stages:
        own = sorted(
            (c for c in report.collectives if c.stage == stage.index),
            key=lambda c: _PHASES.index(c.phase),
        )
        if not own:
            continue
        lines.append(f"  stage {stage.index}:")
        for c in own:
            group = f"{c.group} ({c.group_size})" if c.kind != "send" else c.group
            times = f" x {c.per_step}" if c.per_step > 1 else ""
            lines.append(
                f"    {c.phase:<8} {c.kind:<14} {group:<18} {c.what:<{width}}  "
                f"{size_text(c.bytes):>10}, sends {size_text(c.traffic)}{times}"
            )
    lines.append("sent per rank per step:")
    for stage in report.stages:
        parts = [
            f"{family} {size_text(report.traffic(stage.index, family))}"
            for family in FAMILIES
            if report.traffic(stage.index, family)
        ]
        lines.append(
            f"  stage {stage.index}: {', '.join(parts) or 'nothing'}"
            + (f" = {size_text(report.traffic(stage.index))}" if len(parts) > 1 else "")
        )
    return "\n".join(lines) + "\n"


def ranks_text(ranks: tuple[int, ...]) -> str:
    """(0, 1, 2, 3) -> `ranks 0-3`; (0, 2) -> `ranks 0, 2`; (0,) -> `rank 0`."""
    if len(ranks) == 1:
        return f"rank {ranks[0]}"
    if len(ranks) > 2 and list(ranks) == list(range(ranks[0], ranks[-1] + 1)):
        return f"ranks {ranks[0]}-{ranks[-1]}"
    return "ranks " + ", ".join(map(str, ranks))


def flops_text(flops: int) -> str:
    """1.5e12 -> `1.50 TFLOP`."""
    value, unit = float(flops), "FLOP"
    for prefix in ("k", "M", "G", "T", "P"):
        if value < 1000:
            break
        value, unit = value / 1000, f"{prefix}FLOP"
    return f"{value:.3g} {unit}"

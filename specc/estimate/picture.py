"""The plan as a picture: `specc plan SPEC --svg plan.svg`.

One self-contained SVG (no scripts, fonts or links): a column per pipeline stage
holding its ranks as cells (rows data replicas, columns tensor ranks), the stage's
layers under it, the sends between stages as arrows; below, one stacked bar per rank
(parameters, gradients, optimizer state, activations) against the device's memory;
and each stage's collectives per step. Everything drawn is the estimate's; this module
only places it.
"""

from __future__ import annotations

from xml.sax.saxutils import escape, quoteattr

from specc.estimate.report import Report
from specc.estimate.text import ranks_text
from specc.estimate.units import size_text
from specc.plan import Plan, RankGrid

COLOURS = {
    "parameters": "#4e79a7",
    "gradients": "#f28e2b",
    "optimizer": "#59a14f",
    "activations": "#e15759",
}
STAGE_WIDTH, GAP, MARGIN = 300, 60, 24
LINE = 15  # text line height


class _Canvas:
    def __init__(self) -> None:
        self.items: list[str] = []

    def rect(self, x: float, y: float, w: float, h: float, fill: str, **extra: str) -> None:
        attributes = "".join(f" {k.replace('_', '-')}={quoteattr(v)}" for k, v in extra.items())
        self.items.append(
            f'<rect x="{x:.1f}" y="{y:.1f}" width="{w:.1f}" height="{h:.1f}" '
            f'fill="{fill}"{attributes}/>'
        )

    def text(self, x: float, y: float, words: str, size: int = 12, **extra: str) -> None:
        attributes = "".join(f" {k.replace('_', '-')}={quoteattr(v)}" for k, v in extra.items())
        self.items.append(
            f'<text x="{x:.1f}" y="{y:.1f}" font-size="{size}"{attributes}>{escape(words)}</text>'
        )

    def line(self, x1: float, y1: float, x2: float, y2: float, stroke: str, **extra: str) -> None:
        attributes = "".join(f" {k.replace('_', '-')}={quoteattr(v)}" for k, v in extra.items())
        self.items.append(
            f'<line x1="{x1:.1f}" y1="{y1:.1f}" x2="{x2:.1f}" y2="{y2:.1f}" '
            f'stroke="{stroke}"{attributes}/>'
        )


def picture(plan: Plan, report: Report) -> str:
    """The SVG document of a plan and its estimate."""
    canvas = _Canvas()
    stages = report.stages
    width = max(
        2 * MARGIN + len(stages) * STAGE_WIDTH + (len(stages) - 1) * GAP,
        760,
    )
    y: float = MARGIN + 4
    mesh = f"data {report.data} x tensor {report.tensor} x pipeline {report.pipeline}"
    canvas.text(MARGIN, y + 12, f"{plan.package}: {mesh} = {plan.mesh.world_size} ranks", 18)
    y += 22
    canvas.text(
        MARGIN,
        y + 12,
        f"one training step: {report.micro_batches} micro-batch(es), {report.precision}, "
        f"{report.optimizer}, ZeRO {report.zero}" + (", recompute" if report.recompute else ""),
        12,
        fill="#555",
    )
    y += 30
    y = _mesh(canvas, plan, report, y)
    y = _bars(canvas, report, y + 20, width)
    y = _collectives(canvas, report, y + 20)
    height = y + MARGIN
    body = "\n  ".join(canvas.items)
    return (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height:.0f}" '
        f'viewBox="0 0 {width} {height:.0f}" font-family="sans-serif">\n'
        f"  <title>{escape(plan.package)}: {escape(mesh)}</title>\n"
        f'  <rect width="100%" height="100%" fill="white"/>\n'
        f"  {body}\n</svg>\n"
    )


def _grid(ranks: RankGrid) -> list[list[int]]:
    """A stage's ranks as rows (data replicas) of columns (tensor ranks)."""
    if ranks and isinstance(ranks[0], tuple):
        return [list(row) for row in ranks if isinstance(row, tuple)]
    return [[rank for rank in ranks if isinstance(rank, int)]]


def _mesh(canvas: _Canvas, plan: Plan, report: Report, top: float) -> float:
    """Each stage's ranks, its layers, and the sends between stages; the bottom."""
    bottom = top
    data_rows = plan.mesh.data if plan.mesh.tensor > 1 or plan.mesh.data == 1 else 1
    for index, stage in enumerate(report.stages):
        x = MARGIN + index * (STAGE_WIDTH + GAP)
        rows = _grid(plan.mesh.stages[index].ranks) if plan.mesh.stages else []
        if data_rows == 1 and plan.mesh.data > 1:  # data only: one rank per row
            rows = [[rank] for row in rows for rank in row]
        columns = max((len(row) for row in rows), default=1)
        cell = min(44.0, (STAGE_WIDTH - 60) / max(columns, 1))
        height = 40 + len(rows) * (cell + 4) + 10
        canvas.rect(x, top, STAGE_WIDTH, height, "#f4f6fa", stroke="#8894a8", rx="6")
        canvas.text(x + 10, top + 18, f"stage {stage.index}", 14, font_weight="bold")
        canvas.text(x + STAGE_WIDTH - 10, top + 18, "tensor \u2192", 11, text_anchor="end")
        canvas.text(x + 10, top + 34, "data \u2193", 11)
        for r, row in enumerate(rows):
            for c, rank in enumerate(row):
                cx, cy = x + 50 + c * (cell + 4), top + 40 + r * (cell + 4)
                canvas.rect(cx, cy, cell, cell, "#cfe0f5", stroke="#4e79a7")
                canvas.text(
                    cx + cell / 2,
                    cy + cell / 2 + 4,
                    f"rank {rank}" if cell >= 40 else str(rank),
                    9 if cell >= 40 else 8,
                    text_anchor="middle",
                )
        ly = top + height + 16
        canvas.text(x, ly, f"{stage.parameters:,} parameters", 11, fill="#555")
        for layer in stage.layers:
            ly += LINE
            canvas.text(x + 8, ly, layer, 12)
        bottom = max(bottom, ly)
        if index + 1 < len(report.stages):
            _arrows(canvas, report, index, x + STAGE_WIDTH, top + height / 2)
    canvas.items.insert(
        0,
        '<defs><marker id="arrow" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="6" '
        'markerHeight="6" orient="auto"><path d="M0,0 L10,5 L0,10 z" fill="#333"/>'
        "</marker></defs>",
    )
    return bottom


def _arrows(canvas: _Canvas, report: Report, stage: int, left: float, middle: float) -> None:
    """The bytes sent each micro-batch from `stage` to the next, and back."""
    sends = [c for c in report.collectives if c.kind == "send"]
    ahead = sum(c.bytes for c in sends if c.group == f"stage {stage} -> {stage + 1}")
    back = sum(c.bytes for c in sends if c.group == f"stage {stage + 1} -> {stage}")
    centre = left + GAP / 2
    for size, y, start, end in ((ahead, middle - 10, left + 4, left + GAP - 6),
                                (back, middle + 24, left + GAP - 4, left + 6)):  # fmt: skip
        if size:
            canvas.line(start, y, end, y, "#333", stroke_width="2", marker_end="url(#arrow)")
            canvas.text(centre, y - 5, size_text(size), 9, text_anchor="middle")


def _bars(canvas: _Canvas, report: Report, top: float, width: float) -> float:
    """A stacked bar of memory per rank against the device limit; the bottom."""
    canvas.text(MARGIN, top + 12, "memory per rank at the peak of a step", 14, font_weight="bold")
    top += 22
    for number, (part, colour) in enumerate(COLOURS.items()):
        canvas.rect(MARGIN + 110 * number, top, 12, 12, colour)
        canvas.text(MARGIN + 110 * number + 16, top + 10, part, 11)
    top += 22
    label = 90
    span = width - 2 * MARGIN - label - 90
    peak = max((m.total for m in report.memory), default=1)
    scale = max(peak, report.device_memory or 0, 1)
    ranks = sorted((rank, m) for m in report.memory for rank in m.ranks)
    bar = 14 if len(ranks) <= 64 else 6
    for number, (rank, memory) in enumerate(ranks):
        y = top + number * (bar + 3)
        canvas.text(MARGIN, y + bar - 3, f"rank {rank}", 10 if bar > 8 else 6)
        x: float = MARGIN + label
        for part, colour in COLOURS.items():
            size = getattr(memory, part)
            w = span * size / scale
            canvas.rect(x, y, w, bar, colour)
            x += w
        canvas.text(x + 6, y + bar - 3, size_text(memory.total), 10 if bar > 8 else 6)
    bottom = top + len(ranks) * (bar + 3)
    if report.device_memory is not None:
        limit = MARGIN + label + span * report.device_memory / scale
        canvas.line(limit, top - 6, limit, bottom + 4, "#000", stroke_dasharray="4 3")
        canvas.text(
            limit, bottom + 18, f"device memory {size_text(report.device_memory)}", 11,
            text_anchor="end",
        )  # fmt: skip
        bottom += 20
    return bottom


def _collectives(canvas: _Canvas, report: Report, top: float) -> float:
    """Each stage's collectives per step; the bottom."""
    canvas.text(MARGIN, top + 12, "collectives per training step", 14, font_weight="bold")
    y = top + 16
    for stage in report.stages:
        own = [c for c in report.collectives if c.stage == stage.index]
        y += LINE + 4
        canvas.text(
            MARGIN, y, f"stage {stage.index} ({ranks_text(stage.ranks)})", 12, font_weight="bold"
        )
        if not own:
            y += LINE
            canvas.text(MARGIN + 12, y, "none", 11, fill="#555")
        for c in own:
            y += LINE
            times = f" x {c.per_step}" if c.per_step > 1 else ""
            group = c.group if c.kind == "send" else f"{c.group} ({c.group_size})"
            canvas.text(
                MARGIN + 12,
                y,
                f"{c.phase} {c.kind} over {group}: {c.what}, {size_text(c.bytes)}{times}",
                11,
            )
    return y

"""Which pipeline stage each top-level layer (and each repetition of a repeat) runs on."""

from __future__ import annotations

from specc.diagnostics import Diagnostics
from specc.source import Document, YamlPath
from specc.spec import (
    Attention,
    Embedding,
    Layer,
    LMHead,
    Repeat,
    Residual,
    Spec,
    TokenTypeEmbedding,
    walk_layers,
)
from specc.stages import balance


def assign_stages(
    spec: Spec, document: Document, diagnostics: Diagnostics, weights: list[list[int]] | None
) -> list[tuple[int, ...]]:
    """The pipeline stage of every top-level layer (one per repetition for a repeat).

    Explicit `stage`/`stages` are checked (in range, never going back, every stage
    used); without them the units are balanced by weight. Never drops or repeats a
    layer: every unit gets exactly one stage.
    """
    pipeline = spec.parallel.pipeline
    counts = [layer.times if isinstance(layer, Repeat) else 1 for layer in spec.layers]
    refs = walk_layers(spec)
    # The top-level layers' names, given or default, as generated code calls them.
    top = [ref.name for ref in refs if len(ref.path) == 2]
    for ref in refs:
        if len(ref.path) > 2 and ref.layer.stage is not None:  # inside a residual or repeat
            diagnostics.error(
                "E313",
                f"layer `{ref.name}` sets `stage` inside a residual or repeat body",
                document.span((*ref.path, "stage")),
                help="set `stage` on the top-level layer, or `stages` on the repeat",
            )
    heads = _tied_heads(spec, top)
    readers = _input_readers(spec)
    pinned = max(readers, default=-1)
    # A tied head runs on its table's stage, and the top-level layers up to the last
    # one reading a model input run on stage 0 (inputs arrive there): neither can fill
    # a stage of its own.
    units = sum(
        count for index, count in enumerate(counts) if index not in heads and index > pinned
    ) + (pinned >= 0)
    if units < pipeline:
        reasons = []
        if heads:
            reasons.append("a tied lm_head shares its table's stage")
        if pinned >= 0:
            reasons.append(f"the layers up to `{top[pinned]}`, which reads an input, share stage 0")
        why = f" ({'; '.join(reasons)})" if reasons else ""
        diagnostics.error(
            "E315",
            f"pipeline {pipeline} needs at least {pipeline} layers or repetitions, the model "
            f"has {units}{why}",
            document.span(("parallel", "pipeline")),
            help=f"use pipeline {units} or less, or more layers",
        )
        return [(0,) * c for c in counts]
    explicit = any(
        layer.stage is not None or (isinstance(layer, Repeat) and layer.stages is not None)
        for index, layer in enumerate(spec.layers)
        if index not in heads
    )
    if explicit:
        result = _explicit_stages(spec, document, diagnostics, counts, heads)
    elif weights is None:
        return [(0,) * c for c in counts]
    else:
        # A tied head joins its table's unit: it computes where the table lives.
        weights = [list(w) for w in weights]
        for head, table in heads.items():
            weights[table][0] += weights[head][0]
        kept = [i for i in range(len(counts)) if i not in heads and i > pinned]
        first = [sum(sum(weights[i]) for i in range(pinned + 1) if i not in heads)]
        flat = balance(first * (pinned >= 0) + [w for i in kept for w in weights[i]], pipeline)
        flat = flat[1:] if pinned >= 0 else flat
        result, start = [(0,) * count for count in counts], 0
        for index in kept:
            result[index] = tuple(flat[start : start + counts[index]])
            start += counts[index]
    for head, table in heads.items():
        layer = spec.layers[head]
        if layer.stage is not None and layer.stage != result[table][0]:
            diagnostics.error(
                "E314",
                f"lm_head `{top[head]}` is tied to a table on stage {result[table][0]}, and runs "
                f"there, not on stage {layer.stage}",
                document.span(("layers", head, "stage")),
                help="remove its `stage`: a tied head always runs on its table's stage",
            )
        result[head] = result[table]
    # Every unit exactly once: a repeat with fewer stages would build fewer repetitions.
    assert [len(stages) for stages in result] == counts, (result, counts)
    return result


def _tied_heads(spec: Spec, top: list[str]) -> dict[int, int]:
    """Top-level tied heads and the top-level embedding whose table each uses.

    OneFlow 0.9 cannot send a variable to another stage inside a CPU graph, and a
    copied one gets wrong gradients there; so the head runs on its table's stage, the
    activations travel back to it instead.
    """
    embeddings = {
        top[index]: index for index, layer in enumerate(spec.layers) if isinstance(layer, Embedding)
    }
    return {
        index: embeddings[layer.tied_to]
        for index, layer in enumerate(spec.layers)
        if isinstance(layer, LMHead) and layer.tied_to in embeddings
    }


def _input_readers(spec: Spec) -> list[int]:
    """Top-level layers that read a model input besides the stream (token types, a mask).

    A repeat carries inputs along to its repetitions' stages; other layers get them
    only on stage 0.
    """

    def reads(layer: Layer) -> bool:
        if isinstance(layer, TokenTypeEmbedding):
            return True
        if isinstance(layer, Attention):
            return layer.mask is not None
        return isinstance(layer, Residual) and any(reads(inner) for inner in layer.layers)

    return [index for index, layer in enumerate(spec.layers) if reads(layer)]


def _explicit_stages(
    spec: Spec,
    document: Document,
    diagnostics: Diagnostics,
    counts: list[int],
    heads: dict[int, int],
) -> list[tuple[int, ...]]:
    pipeline = spec.parallel.pipeline
    result: list[tuple[int, ...]] = []
    current = 0
    for index, (layer, count) in enumerate(zip(spec.layers, counts, strict=True)):
        path: YamlPath = ("layers", index)
        if index in heads:
            result.append((0,))  # set to its table's stage by the caller
            continue
        where = path
        if isinstance(layer, Repeat) and layer.stages is not None:
            where = (*path, "stages")
            given = list(layer.stages)
            if len(given) != count:
                diagnostics.error(
                    "E314",
                    f"`stages` lists {len(given)} stages for {count} repetitions",
                    document.span(where),
                    help=f"give one stage per repetition ({count})",
                )
                given = (given + [given[-1]] * count)[:count]
        elif layer.stage is not None:
            where = (*path, "stage")
            given = [layer.stage] * count
        else:
            given = [current] * count
        for stage in given:
            if stage >= pipeline:
                diagnostics.error(
                    "E314",
                    f"stage {stage} is out of range for pipeline {pipeline}",
                    document.span(where),
                    help=f"stages are 0 to {pipeline - 1}",
                )
            elif stage < current:
                diagnostics.error(
                    "E314",
                    f"stage {stage} comes after stage {current}; stages must not go backwards",
                    document.span(where),
                    help=f"use stage {current} or later here, or move the layer",
                )
            current = max(current, min(stage, pipeline - 1))
        result.append(tuple(max(0, min(s, pipeline - 1)) for s in given))
    used = {s for unit in result for s in unit}
    for stage in range(pipeline):
        if stage not in used:
            diagnostics.error(
                "E315",
                f"pipeline stage {stage} has no layer",
                document.span(("parallel", "pipeline")),
                help="give it layers with `stage`, or use fewer stages",
            )
    return result
